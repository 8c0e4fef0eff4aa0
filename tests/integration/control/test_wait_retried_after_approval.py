"""The approval wait's task retried (its Lambda invoke failed after a person approved): the retry must not
take the approval back (waiting again, a new token nobody will answer); it answers its new token at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from control_support import canary_in_flight, control_service

from deployguard.aws import clients
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.emulator import EmbeddedAws

CONFIG = Path(__file__).resolve().parents[3] / "examples" / "deployguard.yaml"


@pytest.fixture
def aws() -> Iterator[Any]:
    with EmbeddedAws(config_file=CONFIG) as embedded:
        yield embedded


def _ask(aws: Any, deployment_id: str, verb: str, by: str) -> Any:
    return control_service(aws).apply(
        deployment_id, ControlRequest(verb=verb, actor=by, reason=f"{verb} from the test")
    )  # type: ignore[arg-type]


def test_a_retried_wait_after_the_approval_answers_its_token_and_keeps_the_approval(aws: Any) -> None:
    canary_in_flight(aws, "checkout-api")
    service = control_service(aws)
    service.wait_for_approval("dep-checkout-api", "tok-1")
    answered: list[dict[str, Any]] = []
    events = clients.client("stepfunctions").meta.events

    def seen(params: dict[str, Any], **_: Any) -> Any:  # Step Functions takes the answer (the tokens are made up)
        answered.append(json.loads(params["body"]))
        return SimpleNamespace(status_code=200, headers={}), {}

    events.register("before-call.states.SendTaskSuccess", seen, unique_id="test-wait-retried")
    try:
        assert _ask(aws, "dep-checkout-api", "approve", by="alice").changed
        service.wait_for_approval("dep-checkout-api", "tok-2")  # the task's retry, with its own token
    finally:
        events.unregister("before-call.states.SendTaskSuccess", unique_id="test-wait-retried")
    assert [a["taskToken"] for a in answered] == ["tok-1", "tok-2"]
    control = DeploymentRepository().get_deployment("dep-checkout-api").control
    assert not control.awaiting_approval and control.approved_by == "alice" and control.promote_requested
