"""The services' live version on the console comes from the Lambda alias itself (GetAlias, read once per
alias as ``GET /api/services`` is served), not from the deployment records; when the alias cannot be read
the API says so (``live_version_source: unavailable``, ``live_version: null``, the reason) instead of
showing a version from the records as the truth. The real read function through the embedded Lambda
Invoke (the API Gateway HTTP API event the local console server sends); the fault is botocore's, injected
by a hook on the GetAlias call (back-off on the simulated clock)."""

from __future__ import annotations

import json
from typing import Any

from control_support import promoted

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.console_server import LocalCredentials, http_api_event
from deployguard_local.emulator import EmbeddedAws, sample_handler


def _services(embedded: EmbeddedAws) -> tuple[dict[str, dict[str, Any]], int]:
    """``GET /api/services`` from the read function, by service; and the GetAlias calls it made."""
    credentials = LocalCredentials()
    calls: list[str] = []
    events = clients.client("lambda").meta.events
    events.register("before-call.lambda.GetAlias", lambda **_: calls.append("GetAlias"), unique_id="live-count")
    try:
        event = http_api_event("GET", "/api/services", {}, b"", credentials.claims(credentials.read_token))
        payload, errored = embedded.invoke("ConsoleReadFunction", event)
    finally:
        events.unregister("before-call.lambda.GetAlias", unique_id="live-count")
    assert not errored and payload["statusCode"] == 200, payload
    return {card["service"]: card for card in json.loads(payload["body"])}, len(calls)


def test_the_live_version_is_the_aliass_not_the_records(embedded: EmbeddedAws) -> None:
    """checkout-api's record says promoted to 2, but someone put the alias back on 1 by hand: the console
    says 1 (read from the alias). payments-api is mid-canary: its alias's version, and the split. Each alias
    is read once in the request."""
    checkout = promoted(embedded, "checkout-api")
    LambdaTrafficShifter(checkout).rollback()  # by hand, outside DeployGuard: no record says so
    versions = embedded.deploy_sample_function("payments-api", "live", sample_handler)
    payments = LambdaTarget(function_name="payments-api", alias="live", stable_version=versions[0],
                            new_version=versions[1])  # fmt: skip
    DeploymentRepository().create_deployment(
        Deployment(deployment_id="dep-payments-api", service="payments-api", environment="production",
                   version=versions[1], target=payments, status=DeploymentStatus.IN_PROGRESS, canary_weight=0.1)
    )  # fmt: skip
    LambdaTrafficShifter(payments).shift(0.1)
    cards, reads = _services(embedded)
    lambda_services = [c for c in cards.values() if c["latest"] and c["latest"]["target"]["kind"] == "lambda"]
    assert reads == len({(c["latest"]["target"]["function_name"], c["latest"]["target"]["alias"])
                         for c in lambda_services})  # fmt: skip
    card = cards["checkout-api"]
    assert card["latest"]["decision"] == "promoted" and card["latest"]["target"]["new_version"] == "2"
    assert (card["live_version"], card["live_version_source"], card["live_version_note"]) == ("1", "alias", None)
    card = cards["payments-api"]
    assert (card["live_version"], card["live_version_source"]) == ("1", "alias")
    assert card["live_version_note"] == "the alias splits its traffic: 10% to version 2"


def test_an_alias_that_cannot_be_read_is_said_unknown_not_guessed(embedded: EmbeddedAws, faults: FaultInjector) -> None:
    """Lambda's control plane is out for GetAlias (every attempt): the card says the live version is
    unavailable and why; it gives no version from the records (which say 2), and the request still
    succeeds."""
    promoted(embedded, "checkout-api")
    plan = faults.on("lambda", "GetAlias", [], then="outage")
    cards, _ = _services(embedded)
    assert plan.injected >= 1
    card = cards["checkout-api"]
    assert (card["live_version"], card["live_version_source"]) == (None, "unavailable")
    assert card["live_version_note"].startswith("cannot read alias checkout-api:live: ")
