"""docs/openapi.json tells the truth: it is the generated document, and every route's real answers over HTTP on
127.0.0.1 (the local server in front of the real console functions, on what the demo saved) are documented, each
status code and body: 200 with the route's model, every error in the one shape ``{"message", "field"?}`` with
``field`` named by where it is (``body.confirm``, ``query.limit``, ``header.content-type``). Every status the
document lists for a route is one this test meets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
import requests
from openapi_schema_validator import OAS31Validator

from deployguard.aws import clients
from deployguard_local.console_server import openapi_document

DOCUMENT_PATH = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
DOCUMENT = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
ERROR_KEYS = {"message", "field"}


def test_the_committed_document_is_the_generated_one_and_lists_no_422() -> None:
    assert openapi_document() == DOCUMENT, "docs/openapi.json is stale: deployguard serve --openapi > docs/openapi.json"
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert "200" in codes and "422" not in codes, (method, path, codes)


class Checker:
    """Sends requests and checks each answer against the document; remembers what it met."""

    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        self.url, self.tokens = url, tokens
        self.met: set[tuple[str, str, str]] = set()
        self.templates = [
            (method, template, re.compile("^" + re.sub(r"\{\w+\}", r"[^/]+", template) + "$"))
            for template, item in DOCUMENT["paths"].items()
            for method in item
        ]

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        found = [(t, DOCUMENT["paths"][t][m]) for m, t, rx in self.templates if m == method and rx.match(path)]
        # a literal path (/api/deployments) before a template that also matches it
        found.sort(key=lambda pair: pair[0].count("{"))
        assert found, f"{method} {path} is in no route of the document"
        return found[0]

    def send(self, method: str, target: str, who: str | None = "write", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        response = requests.request(method, f"{self.url}{target}", headers=headers, timeout=30, **kwargs)
        self.check(method.lower(), target.split("?", 1)[0], response)
        return response

    def check(self, method: str, path: str, response: requests.Response) -> None:
        template, operation = self.operation(method, path)
        status = str(response.status_code)
        documented = operation["responses"].get(status)
        assert documented is not None, f"{method} {path} answered {status}, undocumented: {response.text[:300]}"
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        assert kind in documented["content"], (method, path, status, kind)
        schema = documented["content"][kind].get("schema")
        if kind == "application/json":
            body = response.json()
            errors = list(OAS31Validator({"components": DOCUMENT["components"], **schema}).iter_errors(body))
            assert not errors, (method, path, status, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]])
            if response.status_code >= 400:
                assert set(body) <= ERROR_KEYS and body["message"], body
                if "field" in body:
                    assert re.fullmatch(r"(path|query|body|header|request)(\.[A-Za-z0-9_.-]+)?", body["field"]), body
        else:
            assert isinstance(schema, dict) and schema.get("type") == "string" and response.text
        self.met.add((method, template, status))


@pytest.fixture(scope="module")
def checker(console: Any) -> Iterator[Checker]:
    tokens = {"read": console.credentials.read_token, "write": console.credentials.write_token}
    yield Checker(console.url, tokens)


def _deny(operation: str) -> Any:
    def denied(**_: Any) -> None:
        raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, operation)

    return denied


def test_every_route_answers_what_the_document_says(checker: Checker) -> None:
    c = checker
    long_query = "?x=" + "a" * 2100
    # ----------------------------------------------------------------- reads
    for path in ("/api/canaries", "/api/deployments", "/api/services", "/api/incidents", "/api/whoami"):
        assert c.send("GET", path, "read").status_code == 200
        assert c.send("GET", path, None).status_code == 401
        assert c.send("GET", path + long_query, "read").status_code == 400
    assert c.send("GET", "/api/deployments?limit=0", "read").json()["field"] == "query.limit"
    since = c.send("GET", "/api/deployments?since=2026-01-01T00:00:00+00:00&limit=2", "read")
    assert since.status_code == 200, since.text  # '+' typed into the URL (form decoding makes it a space)
    assert c.send("GET", "/api/incidents?all=true", "read").status_code == 200
    deployment = c.send("GET", "/api/canaries", "read").json()[0]["deployment"]["deployment_id"]
    incident = c.send("GET", "/api/incidents?all=true", "read").json()[0]["incident_id"]
    ones = [f"/api/deployments/{deployment}", f"/api/deployments/{deployment}/timeline",
            f"/api/deployments/{deployment}/report", f"/api/incidents/{incident}"]  # fmt: skip
    for path in ones:
        assert c.send("GET", path, "read").status_code == 200
        assert c.send("GET", path, None).status_code == 401
        assert c.send("GET", path + long_query, "read").status_code == 400
    for fmt in ("md", "json"):
        assert c.send("GET", f"/api/deployments/{deployment}/report?format={fmt}", "read").status_code == 200
    for path in (
        "/api/deployments/no-such-one",
        "/api/deployments/no-such-one/timeline",
        "/api/deployments/no-such-one/report",
        "/api/incidents/inc-000000000000",
        f"/api/deployments/{deployment[:-2]}",
    ):  # fmt: skip  (a prefix is no id)
        assert c.send("GET", path, "read").status_code == 404
    assert c.send("GET", "/api/deployments/-bad", "read").json()["field"] == "path.deployment_id"

    # ----------------------------------------------------------------- writes: every route's errors
    services = c.send("GET", "/api/services", "read").json()
    lambda_service = next(s for s in services if s["live_version_source"] == "alias" and s["live_version"])
    service, live = lambda_service["service"], lambda_service["live_version"]
    listed = c.send("GET", "/api/incidents", "read").json()
    open_incidents = [i["incident_id"] for i in listed]
    escalating = [i["incident_id"] for i in listed if i["status"] == "open" and i["escalation"]["next_at"]]
    assert open_incidents and escalating, listed
    writes = {
        f"/api/deployments/{deployment}/control/pause": ({"reason": "x"}, {"reason": ""}, "body.reason"),
        f"/api/services/{service}/emergency-rollback": (
            {"reason": "x", "confirm": service, "from_version": live},
            {"reason": "x", "confirm": "not-it", "from_version": live},
            "body.confirm",
        ),
        f"/api/incidents/{open_incidents[0]}/acknowledge": ({"notes": "x"}, {"notes": "x" * 2001}, "body.notes"),
        f"/api/incidents/{open_incidents[0]}/escalate": ({"notes": "x"}, {"notes": 5}, "body.notes"),
        f"/api/incidents/{open_incidents[0]}/resolve": ({"notes": "x"}, {"notes": ""}, "body.notes"),
    }
    unknown = {"control": "/api/deployments/no-such-one/control/pause",
               "emergency-rollback": "/api/services/no-such-service/emergency-rollback",
               "acknowledge": "/api/incidents/inc-000000000000/acknowledge",
               "escalate": "/api/incidents/inc-000000000000/escalate",
               "resolve": "/api/incidents/inc-000000000000/resolve"}  # fmt: skip
    for path, (good, bad, field) in writes.items():
        assert c.send("POST", path, None, json=good).status_code == 401
        assert c.send("POST", path, "read", json=good).status_code == 403
        refused = c.send("POST", path, json=bad)
        assert refused.status_code == 400 and refused.json()["field"] == field, refused.text
        typed = c.send("POST", path, data=json.dumps(good), headers={"Content-Type": "text/plain"})
        assert typed.status_code == 415 and typed.json()["field"] == "header.content-type", typed.text
        kind = path.rsplit("/", 1)[-1] if "/control/" not in path else "control"
        if kind == "emergency-rollback":  # a service without deployments has nothing to roll back to
            nothing = c.send("POST", unknown[kind], json={**good, "confirm": "no-such-service"})
            assert nothing.status_code == 409 and "no Lambda deployment" in nothing.json()["message"], nothing.text
        else:
            assert c.send("POST", unknown[kind], json=good).status_code == 404, unknown[kind]
    missing = c.send("POST", f"/api/services/{service}/emergency-rollback", json={"reason": "x", "confirm": service})
    assert missing.json()["field"] == "body.from_version"

    # ----------------------------------------------------------------- writes: 200, 409, 502
    lambda_events = clients.client("lambda").meta.events
    lambda_events.register("before-call.lambda.UpdateAlias", _deny("UpdateAlias"), unique_id="deny-alias")
    try:
        for path in (f"/api/deployments/{deployment}/control/abort", f"/api/services/{service}/emergency-rollback"):
            body = writes.get(path, ({"reason": "x", "confirm": service, "from_version": live},))[0]
            denied = c.send("POST", path, json=body if "emergency" in path else {"reason": "x"})
            assert denied.status_code == 502 and "AccessDeniedException" in denied.json()["message"], denied.text
    finally:
        lambda_events.unregister("before-call.lambda.UpdateAlias", unique_id="deny-alias")
    assert c.send("POST", f"/api/deployments/{deployment}/control/pause", json={"reason": "x"}).status_code == 200
    not_waiting = c.send("POST", f"/api/deployments/{deployment}/control/approve", json={"reason": "x"})
    assert not_waiting.status_code == 409 and "not waiting for approval" in not_waiting.json()["message"]
    assert c.send("POST", f"/api/deployments/{deployment}/control/resume", json={"reason": "x"}).status_code == 200
    rollback = f"/api/services/{service}/emergency-rollback"
    stale = c.send("POST", rollback, json={"reason": "x", "confirm": service, "from_version": live + "0"})
    assert stale.status_code == 409, stale.text
    assert c.send("POST", rollback, json={"reason": "x", "confirm": service, "from_version": live}).status_code == 200
    paged = c.send("POST", f"/api/incidents/{escalating[0]}/escalate", json={"notes": "x"})
    assert paged.status_code == 200, paged.text  # an open incident with an escalation step due
    first = open_incidents[0]
    assert c.send("POST", f"/api/incidents/{first}/acknowledge", json={"notes": "x"}).status_code == 200
    assert c.send("POST", f"/api/incidents/{first}/resolve", json={"notes": "x"}).status_code == 200
    for verb in ("acknowledge", "escalate", "resolve"):  # a resolved incident
        assert c.send("POST", f"/api/incidents/{first}/{verb}", json={"notes": "x"}).status_code == 409, verb

    # ----------------------------------------------------------------- every documented answer was met
    documented = {
        (m, t, s)
        for t, item in DOCUMENT["paths"].items()
        if "remediation-requests" not in t  # met by test_console_remediation_requests.py (a request asked first)
        for m, op in item.items()
        for s in op["responses"]
    }
    assert documented - c.met == set(), sorted(documented - c.met)


def test_unknown_routes_and_methods_answer_the_one_error_shape(checker: Checker) -> None:
    for method, path in (("GET", "/api/nope"), ("POST", "/api/nope"), ("OPTIONS", "/api/canaries")):
        response = requests.request(method, f"{checker.url}{path}", timeout=30,
                                    headers={"Authorization": f"Bearer {checker.tokens['write']}"})  # fmt: skip
        assert response.status_code == 404, (method, path, response.status_code, response.text[:200])
        assert response.headers["Content-Type"].startswith("application/json") and set(response.json()) == {"message"}


def test_the_functions_answer_unknown_routes_and_other_body_types_in_the_one_shape(console: Any) -> None:
    """Behind API Gateway ($default or a route pointed at the wrong path): the functions' own 404 and 415."""
    from deployguard_local.console_server import http_api_event

    writer = {"sub": "w", "scope": "deployguard/read deployguard/write"}
    for function, method in (("ConsoleReadFunction", "GET"), ("ConsoleWriteFunction", "POST")):
        event = http_api_event(method, "/api/nope", {"content-type": "application/json"}, b"{}", writer)
        payload, errored = console.aws.invoke(function, event)
        assert (
            not errored and payload["statusCode"] == 404 and json.loads(payload["body"]) == {"message": "no such route"}
        ), payload
    event = http_api_event("POST", "/api/deployments/x/control/pause", {"content-type": "text/csv"},
                           b'{"reason": "x"}', writer)  # fmt: skip
    payload, errored = console.aws.invoke("ConsoleWriteFunction", event)
    assert not errored and payload["statusCode"] == 415, payload
    assert json.loads(payload["body"])["field"] == "header.content-type"
