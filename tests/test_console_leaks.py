"""What the console tells its callers, through the real console functions and the local server on the embedded
AWS: AWS's own error text (role ARN, account id) stays in the log, a JWT caller is audited by issuer and subject,
a bad emergency-rollback body is named without being echoed, and the local server refuses what API Gateway would
(a protected route without a token) and a Host that is not this machine (DNS rebinding)."""

from __future__ import annotations

import http.client
import json
from typing import Any

import botocore.exceptions

from deployguard.aws import clients
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import ConsoleServer, LocalCredentials, http_api_event
from deployguard_local.emulator import sample_handler

SECRET = "arn:aws:sts::123456789012:assumed-role/deployguard-ConsoleRole-1A2B3C/fn is not authorized"


def _in_flight(embedded: Any) -> LambdaTarget:
    versions = embedded.deploy_sample_function("checkout-api", "live", sample_handler)
    target = LambdaTarget(
        function_name="checkout-api", alias="live", stable_version=versions[0], new_version=versions[1]
    )
    DeploymentRepository().create_deployment(
        Deployment(deployment_id="d1", service="checkout-api", environment="production", version=versions[1],
                   target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=0.1)
    )  # fmt: skip
    return target


def _denied(**_: Any) -> None:
    raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDeniedException", "Message": SECRET}}, "Call")


def test_an_alias_aws_refuses_to_read_shows_the_code_not_the_role(embedded: Any) -> None:
    _in_flight(embedded)
    events = clients.client("lambda").meta.events
    events.register("before-call.lambda.GetAlias", _denied, unique_id="deny")
    try:
        event = http_api_event("GET", "/api/services", {}, b"", {"sub": "u-1", "scope": "deployguard/read"})
        payload, errored = embedded.invoke("ConsoleReadFunction", event)
    finally:
        events.unregister("before-call.lambda.GetAlias", unique_id="deny")
    assert not errored and payload["statusCode"] == 200
    [card] = [c for c in json.loads(payload["body"]) if c["service"] == "checkout-api"]
    assert card["live_version_note"] == "cannot read alias checkout-api:live: AccessDeniedException"
    assert "123456789012" not in payload["body"]


def test_a_write_aws_refuses_answers_502_with_the_code_only(embedded: Any) -> None:
    target = _in_flight(embedded)
    events = clients.client("lambda").meta.events
    events.register("before-call.lambda.UpdateAlias", _denied, unique_id="deny")
    try:
        claims = {"sub": "u-1", "scope": "deployguard/read deployguard/write"}
        event = http_api_event("POST", "/api/deployments/d1/control/abort", {"content-type": "application/json"},
                               b'{"reason":"stop"}', claims)  # fmt: skip
        payload, errored = embedded.invoke("ConsoleWriteFunction", event)
    finally:
        events.unregister("before-call.lambda.UpdateAlias", unique_id="deny")
    assert not errored and payload["statusCode"] == 502, payload
    assert (
        json.loads(payload["body"])["message"] == "AWS refused the action: AccessDeniedException (details in the log)"
    )
    assert "123456789012" not in payload["body"] and target.function_name not in payload["body"]


def test_a_jwt_caller_is_audited_by_issuer_and_subject_with_the_name_beside(embedded: Any) -> None:
    _in_flight(embedded)
    claims = {"iss": "https://idp.example", "sub": "mallory-0001", "email": "alice@example.com",
              "scope": "deployguard/read deployguard/write"}  # fmt: skip
    event = http_api_event("POST", "/api/deployments/d1/control/pause", {"content-type": "application/json"},
                           b'{"reason":"who am I"}', claims)  # fmt: skip
    payload, errored = embedded.invoke("ConsoleWriteFunction", event)
    assert not errored and payload["statusCode"] == 200, payload
    actors = [e.actor for e in DeploymentRepository().audit_trail("d1") if e.action == "control_pause"]
    assert actors == ["https://idp.example#mallory-0001 (alice@example.com)"]


def test_an_emergency_rollback_body_out_of_bounds_names_the_field_without_its_value(embedded: Any) -> None:
    _in_flight(embedded)
    claims = {"sub": "u-1", "scope": "deployguard/read deployguard/write"}
    for environment in ("x" * 5000, "<script>alert(1)</script>"):
        body = {"reason": "r", "confirm": "checkout-api", "from_version": "2", "environment": environment}
        event = http_api_event("POST", "/api/services/checkout-api/emergency-rollback",
                               {"content-type": "application/json"}, json.dumps(body).encode(), claims)  # fmt: skip
        payload, errored = embedded.invoke("ConsoleWriteFunction", event)
        assert not errored and payload["statusCode"] == 400, payload
        answer = json.loads(payload["body"])
        assert answer["field"] == "body.environment" and environment not in payload["body"], answer
    body = {"reason": "r", "confirm": "typo-SECRET", "from_version": "2"}
    event = http_api_event("POST", "/api/services/checkout-api/emergency-rollback",
                           {"content-type": "application/json"}, json.dumps(body).encode(), claims)  # fmt: skip
    payload, errored = embedded.invoke("ConsoleWriteFunction", event)
    assert not errored and payload["statusCode"] == 400, payload
    assert json.loads(payload["body"])["field"] == "body.confirm" and "typo-SECRET" not in payload["body"]


def _get(server: ConsoleServer, path: str, headers: dict[str, str]) -> int:
    host, port = server.httpd.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_the_local_server_refuses_protected_routes_without_a_token_and_foreign_hosts(embedded: Any) -> None:
    credentials = LocalCredentials()
    server = ConsoleServer(embedded, credentials, port=0).start()
    try:
        local = {"Host": "127.0.0.1:8700"}
        reader = {**local, "Authorization": f"Bearer {credentials.read_token}"}
        assert _get(server, "/openapi.json", local) == 401  # AuthorizationType JWT / AWS_IAM in template.yaml
        assert _get(server, "/api/services", local) == 401
        assert _get(server, "/", {"Host": "localhost:8700"}) == 200  # AuthorizationType NONE
        assert _get(server, "/openapi.json", reader) == 200
        assert _get(server, "/api/services", {**reader, "Host": "rebound.example:8700"}) == 403
        assert _get(server, "/", {"Host": "127.0.0.1.evil.example"}) == 403
    finally:
        server.stop()
