"""The console API over HTTP on 127.0.0.1: the OpenAPI document generated from the code is the
one in the repo; every write refuses callers without an identity or without write permission;
property-based requests from the document (Schemathesis) never meet a server error."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis

from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import openapi_document

DOCUMENT = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def _writes(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item if method == "post"]


def test_the_committed_document_is_the_generated_one(console: Any) -> None:
    generated = openapi_document()
    assert json.loads(DOCUMENT.read_text(encoding="utf-8")) == generated, (
        "docs/openapi.json is stale: deployguard serve --openapi > docs/openapi.json"
    )
    reader = {"Authorization": f"Bearer {console.credentials.read_token}"}  # a protected route, as in template.yaml
    served = requests.get(f"{console.url}/openapi.json", headers=reader, timeout=30).json()
    assert served == generated
    # control verbs, emergency rollback, acknowledge, escalate, resolve, a remediation request's approve and reject
    assert len(_writes(generated)) == 7


@pytest.mark.parametrize("who", ["nobody", "reader", "stranger"])
def test_every_write_refuses_callers_who_may_not_write(console: Any, who: str) -> None:
    headers = {
        "nobody": {},
        "reader": {"Authorization": f"Bearer {console.credentials.read_token}"},
        "stranger": {"Authorization": "Bearer not-a-token-of-this-server"},
    }[who]
    expected = {"nobody": 401, "reader": 403, "stranger": 401}[who]
    repository = DeploymentRepository()
    before = repository.find_deployment("live-orders-api")
    incident = requests.get(
        f"{console.url}/api/incidents?all=true",
        headers={"Authorization": f"Bearer {console.credentials.write_token}"},
        timeout=30,
    ).json()[0]["incident_id"]
    values = {"deployment_id": "live-orders-api", "incident_id": incident, "service": "checkout-api",
              "approval_id": "ap-000000000000"}  # fmt: skip
    bodies = {"reason": "test", "notes": "test", "confirm": "checkout-api"}
    for _, template in _writes(openapi_document()):
        verbs = (
            ["promote", "abort", "pause", "resume", "retry", "skip_analysis", "approve"]
            if "{verb}" in template
            else [None]
        )
        for verb in verbs:
            path = re.sub(r"\{(\w+)\}", lambda m, v=verb: v if m.group(1) == "verb" else values[m.group(1)], template)
            response = requests.post(f"{console.url}{path}", json=bodies, headers=headers, timeout=30)
            assert response.status_code == expected, (path, response.text)
    if who == "reader":  # a writer's request names its deployment exactly: a prefix is not enough
        writer = {"Authorization": f"Bearer {console.credentials.write_token}"}
        prefix = requests.post(
            f"{console.url}/api/deployments/live-orders/control/pause", json={"reason": "x"}, headers=writer, timeout=30
        )
        assert prefix.status_code == 404, prefix.text
    after = repository.find_deployment("live-orders-api")
    assert before is not None and after is not None and after.version_counter == before.version_counter
    trail = repository.audit_trail("checkout-api")
    assert not [e for e in trail if e.action.startswith("control_")]
    assert requests.get(f"{console.url}/api/canaries", headers=headers, timeout=30).status_code == (
        200 if who == "reader" else 401
    )


def test_no_request_from_the_document_meets_a_server_error(console: Any) -> None:
    """Schemathesis draws requests for every operation of the document (paths, queries, bodies, valid and not),
    sent with the write token; derandomised, so a run is repeatable."""
    schema = schemathesis.openapi.from_dict(openapi_document())
    headers = {"Authorization": f"Bearer {console.credentials.write_token}"}
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=5,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=console.url, headers=headers, timeout=30)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])

        check()
    assert len(calls) == sum(len(item) for item in openapi_document()["paths"].values())


def test_escalate_and_resolve_an_incident_as_the_caller(console: Any) -> None:
    headers = {"Authorization": f"Bearer {console.credentials.write_token}"}
    open_now = requests.get(f"{console.url}/api/incidents", headers=headers, timeout=30).json()
    escalating = [i for i in open_now if i["status"] == "open" and i["escalation"]["next_at"]]
    assert escalating, open_now
    incident = escalating[0]
    pages_before = incident["escalation"]["pages"]
    response = requests.post(
        f"{console.url}/api/incidents/{incident['incident_id']}/escalate",
        json={"notes": "need the database team"},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["page"] is not None and body["incident"]["escalation"]["pages"] == pages_before + 1
    assert body["incident"]["timeline"][-2]["actor"] == "local-operator"  # escalated, then paged
    response = requests.post(
        f"{console.url}/api/incidents/{incident['incident_id']}/resolve",
        json={"notes": "fixed"},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["resolved_by"] == "local-operator"
    again = requests.post(
        f"{console.url}/api/incidents/{incident['incident_id']}/escalate", json={}, headers=headers, timeout=30
    )
    assert again.status_code == 409 and "only an open incident escalates" in again.json()["message"]
    trail = DeploymentRepository().audit_trail(incident["deployment_id"])
    assert [(e.action, e.actor) for e in trail if e.action in ("incident_escalated", "incident_resolved")][-2:] == [
        ("incident_escalated", "local-operator"),
        ("incident_resolved", "local-operator"),
    ]


def test_a_deployment_report_is_rendered_by_the_reporting_package(console: Any) -> None:
    headers = {"Authorization": f"Bearer {console.credentials.read_token}"}
    url = f"{console.url}/api/deployments/demo-regression-midway/report"
    html = requests.get(url, headers=headers, timeout=60)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "<svg" in html.text and "payments-api" in html.text
    markdown = requests.get(url, params={"format": "md"}, headers=headers, timeout=60)
    assert markdown.headers["content-type"].startswith("text/markdown") and "payments-api" in markdown.text
    refused = requests.get(url, params={"format": "pdf"}, headers=headers, timeout=60)
    assert refused.status_code == 400 and refused.json()["field"] == "query.format", refused.text
