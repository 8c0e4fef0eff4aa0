"""The console's HTTP API on 127.0.0.1 over the embedded AWS: a control verb whose DynamoDB write fails after
its effect answers 502 naming the upstream (not 500), and the repeat finishes what the first left (the audit
entry and the announcement, once); the body's media type is checked before the body (415)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from control_support import canary_in_flight

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import ConsoleServer, LocalCredentials


@pytest.fixture
def server(embedded: Any) -> Iterator[tuple[ConsoleServer, LocalCredentials]]:
    credentials = LocalCredentials()
    console = ConsoleServer(embedded, credentials, 0).start()
    try:
        yield console, credentials
    finally:
        console.stop()


def _post(
    server: tuple[ConsoleServer, LocalCredentials], path: str, data: bytes, content_type: str | None
) -> tuple[int, dict[str, Any]]:
    console, credentials = server
    request = urllib.request.Request(console.url + path, data=data, method="POST")
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    request.add_header("Authorization", f"Bearer {credentials.write_token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_abort_whose_audit_write_fails_answers_502_and_the_repeat_finishes_it(
    embedded: Any, faults: Any, server: Any
) -> None:
    target = canary_in_flight(embedded, "checkout-api")

    def audit_of_the_rollback(request: Any) -> bool:
        body = getattr(request, "body", b"") or b""
        text = body.decode() if isinstance(body, bytes) else str(body)
        return '"rolled_back"' in text and "AUDIT#" in text

    faults.on("dynamodb", "PutItem", ["throttle"] * 20, when=audit_of_the_rollback)
    body = json.dumps({"reason": "bad release"}).encode()
    status, answer = _post(server, "/api/deployments/dep-checkout-api/control/abort", body, "application/json")
    assert status == 502, answer
    assert answer["message"].startswith("AWS refused the action: ThrottlingException from DynamoDB PutItem")
    faults.clear()
    record = DeploymentRepository().get_deployment("dep-checkout-api")
    assert (record.status, record.decision) == (DeploymentStatus.ROLLED_BACK, "aborted")
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version

    status, answer = _post(server, "/api/deployments/dep-checkout-api/control/abort", body, "application/json")
    assert status == 200 and answer["changed"] is False
    trail = [(e.action, e.details.get("outcome")) for e in DeploymentRepository().audit_trail("dep-checkout-api")]
    assert trail == [("rolled_back", None), ("control_abort", "done"), ("control_abort", "unchanged")]
    titles = sorted(e.title for e in DeploymentRepository().events("dep-checkout-api"))
    assert titles == ["Canary Abort by local-operator", "Rollback Completed"]


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_json_body_not_sent_as_json_is_415_naming_the_header(
    embedded: Any, server: Any, content_type: str | None
) -> None:
    canary_in_flight(embedded, "checkout-api")
    body = json.dumps({"reason": "look"}).encode()
    if content_type is None:  # urllib would add a form type: a raw request without the header
        status, answer = _post_without_content_type(server, "/api/deployments/dep-checkout-api/control/pause", body)
    else:
        status, answer = _post(server, "/api/deployments/dep-checkout-api/control/pause", body, content_type)
    assert status == 415, answer
    assert answer == {
        "message": "console request: the body must be sent as application/json",
        "field": "header.content-type",
    }
    assert not DeploymentRepository().get_deployment("dep-checkout-api").control.paused


@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "Application/Json; charset=UTF-8", "application/json"])
def test_a_json_media_type_in_any_case_is_json(embedded: Any, server: Any, content_type: str) -> None:
    canary_in_flight(embedded, "checkout-api")
    body = json.dumps({"reason": "look"}).encode()
    status, answer = _post(server, "/api/deployments/dep-checkout-api/control/pause", body, content_type)
    assert status == 200 and answer["changed"] is True, answer
    assert DeploymentRepository().get_deployment("dep-checkout-api").control.paused


def _post_without_content_type(
    server: tuple[ConsoleServer, LocalCredentials], path: str, data: bytes
) -> tuple[int, dict[str, Any]]:
    import http.client
    from urllib.parse import urlsplit

    console, credentials = server
    where = urlsplit(console.url)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=10)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Authorization", f"Bearer {credentials.write_token}")
        connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()
