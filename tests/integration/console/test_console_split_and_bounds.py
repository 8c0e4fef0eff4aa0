"""The console over HTTP on 127.0.0.1, routed as template.yaml routes it: reads reach
ConsoleReadFunction, which makes no write call and refuses writes; writes reach ConsoleWriteFunction;
input outside deployguard.inbound's bounds is refused with a 400 naming the field, before any route runs.

An embedded AWS of its own (no demo run): a few seconds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import requests

from deployguard.aws import clients
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import ConsoleServer, LocalCredentials, http_api_event
from deployguard_local.demo import DEMO_CONFIG
from deployguard_local.emulator import EmbeddedAws, _environment
from deployguard_local.receivers import local_receivers

READS = [
    "/api/canaries",
    "/api/deployments?limit=5",
    "/api/deployments/dg-split-1",
    "/api/deployments/dg-split-1/timeline",
    "/api/deployments/dg-split-1/report?format=json",
    "/api/services",
    "/api/incidents?all=true",
    "/api/whoami",
    "/openapi.json",
    "/",
]
READ_VERBS = ("Get", "List", "Describe", "BatchGet", "Query", "Scan")


@dataclass
class Console:
    server: ConsoleServer
    aws: EmbeddedAws
    credentials: LocalCredentials

    def headers(self, who: str = "writer") -> dict[str, str]:
        token = self.credentials.write_token if who == "writer" else self.credentials.read_token
        return {"Authorization": f"Bearer {token}"}

    def functions_invoked(self) -> list[str]:
        return [name.rsplit("-", 1)[-1] for name, _ in self.aws.registry.invocations]


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    with (
        local_receivers(echo=None) as receivers,
        _environment({f"DEMO_{kind.upper()}_URL": url for kind, url in receivers.urls.items()}),
        EmbeddedAws(config_file=DEMO_CONFIG) as aws,
    ):
        target = LambdaTarget(function_name="orders-api", alias="live", stable_version="1", new_version="2")
        DeploymentRepository().create_deployment(
            Deployment(deployment_id="dg-split-1", service="orders-api", environment="production", version="2",
                       target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=0.1)
        )  # fmt: skip
        credentials = LocalCredentials()
        server = ConsoleServer(aws, credentials, port=0).start()
        try:
            yield Console(server, aws, credentials)
        finally:
            server.stop()


def _operations_during(call: Any) -> list[str]:
    """``service:Operation`` of every AWS call made while ``call`` runs (botocore's before-call event on
    fresh clients of the default session: every DeployGuard client is one of them)."""
    made: list[str] = []

    def record(model: Any, **_: Any) -> None:
        made.append(f"{model.service_model.service_name}:{model.name}")

    session = boto3._get_default_session()
    session.events.register("before-call", record, unique_id="console-split-recorder")
    clients.reset()
    try:
        call()
    finally:
        session.events.unregister("before-call", unique_id="console-split-recorder")
        clients.reset()
    return made


def test_reads_go_to_the_read_function_and_make_no_write_call(console: Console) -> None:
    before = len(console.aws.registry.invocations)

    def read_everything() -> None:
        for path in READS:
            response = requests.get(f"{console.server.url}{path}", headers=console.headers("reader"), timeout=30)
            assert response.status_code == 200, (path, response.text[:300])

    operations = _operations_during(read_everything)
    invoked = console.functions_invoked()[before:]
    assert invoked == ["ConsoleReadFunction"] * len(READS)
    served = [op for op in operations if op != "lambda:Invoke"]  # the local API Gateway's own calls
    assert served and all(op.split(":", 1)[1].startswith(READ_VERBS) for op in served), served


def _control(console: Console, verb: str, reason: str) -> requests.Response:
    url = f"{console.server.url}/api/deployments/dg-split-1/control/{verb}"
    return requests.post(url, json={"reason": reason}, headers=console.headers(), timeout=30)


def test_writes_go_to_the_write_function(console: Console) -> None:
    before = len(console.aws.registry.invocations)
    response = _control(console, "pause", "look at the graphs")
    assert response.status_code == 200, response.text
    # the pause's announcement goes out through SNS, which invokes the notification router asynchronously (its own
    # thread): once it is delivered, the request reached the write function alone, and the router the announcement
    # (read before that, the router's invocation was in the list or not, as the threads ran)
    console.aws.invoker.drain()
    assert sorted(console.functions_invoked()[before:]) == ["ConsoleWriteFunction", "NotificationRouterFunction"]
    control = DeploymentRepository().get_deployment("dg-split-1").control
    assert control.paused and control.last_actor == "local-operator"
    resumed = _control(console, "resume", "fine")
    assert resumed.status_code == 200, resumed.text
    console.aws.invoker.drain()  # its announcement too: nothing of this test still runs in the next


def test_each_function_refuses_the_others_requests(console: Console) -> None:
    """Even an API Gateway route pointed at the wrong function cannot make the read function write."""
    claims = console.credentials.claims(console.credentials.write_token)
    body = json.dumps({"reason": "routed wrong"}).encode()
    write = http_api_event("POST", "/api/deployments/dg-split-1/control/abort", {}, body, claims)
    payload, errored = console.aws.invoke("ConsoleReadFunction", write)
    assert not errored and payload["statusCode"] == 405, payload
    assert "read function takes no writes" in json.loads(payload["body"])["message"]
    assert payload["headers"]["Allow"] == "GET, HEAD"
    assert DeploymentRepository().get_deployment("dg-split-1").status == DeploymentStatus.IN_PROGRESS
    read = http_api_event("GET", "/api/canaries", {}, b"", claims)
    payload, errored = console.aws.invoke("ConsoleWriteFunction", read)
    assert not errored and payload["statusCode"] == 405 and payload["headers"]["Allow"] == "POST", payload
    unrouted = requests.delete(f"{console.server.url}/api/canaries", headers=console.headers(), timeout=30)
    assert unrouted.status_code == 404  # no DELETE route: API Gateway itself answers


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "words"),
    [
        ("POST", "/api/deployments/dg-split-1/control/pause", "x" * 20_000, "body", "at most 16384"),
        ("POST", "/api/deployments/dg-split-1/control/pause", "[" * 40 + "]" * 40, "body", "nested more than 32"),
        ("POST", "/api/deployments/dg-split-1/control/pause", "{not json", "body", "not a JSON document"),
        ("POST", "/api/deployments/dg-split-1/control/pause", "{}", "body.reason", "Field required"),
        ("POST", "/api/deployments/dg-split-1/control/pause", '{"reason": "x", "force": true}', "body.force",
         "Extra inputs"),
        ("POST", "/api/deployments/dg-split-1/control/pause", '{"reason": ""}', "body.reason", "at least 1"),
        ("POST", "/api/incidents/in$1/acknowledge", "{}", "path.incident_id", "pattern"),
        ("POST", "/api/services/.hidden/emergency-rollback", '{"reason": "r", "confirm": ".hidden"}',
         "path.service", "pattern"),
        ("POST", "/api/services/checkout-api/emergency-rollback", '{"reason": "r", "confirm": "checkout-api"}',
         "body.from_version", "Field required"),
        ("GET", "/api/deployments/" + "d" * 200, None, "path.deployment_id", "at most 128"),
        ("GET", "/api/deployments/a%27%20or%201%3D1", None, "path.deployment_id", "pattern"),
        ("GET", "/api/deployments?service=" + "s" * 3000, None, "query", "at most 2048"),
        ("GET", "/api/deployments?limit=100000", None, "query.limit", "less than or equal to 200"),
        ("GET", "/api/deployments?since=%C2%B2d", None, "query.since", "neither a duration"),  # "²d"
        ("GET", "/api/deployments?since=99999999999d", None, "query.since", "neither a duration"),
        ("GET", "/api/deployments?since=9999999w", None, "query.since", "more than 100 years"),
        ("GET", "/api/deployments?since=2026-13-01", None, "query.since", "neither a duration"),
        ("GET", "/api/deployments?cursor=zzz", None, "query.cursor", "not a cursor"),
    ],
)  # fmt: skip
def test_input_outside_the_bounds_is_refused_naming_the_field(
    console: Console, method: str, path: str, body: str | None, field: str, words: str
) -> None:
    before = DeploymentRepository().get_deployment("dg-split-1").version_counter
    response = requests.request(
        method, f"{console.server.url}{path}", data=body, headers={**console.headers(),
        "Content-Type": "application/json"}, timeout=30,
    )  # fmt: skip
    assert response.status_code == 400, (response.status_code, response.text[:300])
    answer = response.json()
    assert answer["field"] == field and f"field {field}" in answer["message"], answer
    assert words in answer["message"], answer
    assert DeploymentRepository().get_deployment("dg-split-1").version_counter == before  # nothing written


def test_whoami_promises_no_write_to_an_iam_caller(console: Console) -> None:
    """IAM mode: API Gateway decides each write route by the caller's policies, which the read function cannot
    see: can_write is null (unknown), not true; a JWT caller's scopes still answer it."""
    event = http_api_event("GET", "/api/whoami", {}, b"", None)
    event["requestContext"]["authorizer"] = {"iam": {"userArn": "arn:aws:iam::123456789012:user/reader"}}
    payload, errored = console.aws.invoke("ConsoleReadFunction", event)
    assert not errored and payload["statusCode"] == 200, payload
    assert json.loads(payload["body"]) == {
        "identity": "arn:aws:iam::123456789012:user/reader", "kind": "iam", "can_write": None, "name": None,
    }  # fmt: skip
    jwt = requests.get(f"{console.server.url}/api/whoami", headers=console.headers("reader"), timeout=30).json()
    assert (jwt["kind"], jwt["can_write"]) == ("jwt", False)
