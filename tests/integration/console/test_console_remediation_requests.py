"""People answer remediation requests over the console's HTTP API: the local server on 127.0.0.1 in front of the
real ConsoleReadFunction / ConsoleWriteFunction, over the embedded AWS holding what the demo saved and its live
canary. A request is asked the way an incident's ``approval`` step asks it (the remediation executor, a rollback
of the live canary); then it is listed, answered with the caller's identity recorded, and refused once answered
(409), for an unknown id (404), a bad body (400 naming the field) and a read-only token (403). Every status the
OpenAPI document lists for these routes is met here, each body checked against it (test_console_document_truth's
checker)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from conftest import Console
from remediation_requests_support import LIVE, ask, configured_console, store_state
from test_console_document_truth import DOCUMENT, Checker

from deployguard import clock
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard_local.console_server import wait_until


@pytest.fixture(scope="module")
def console(demo_run: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with configured_console(demo_run.state_dir, tmp_path_factory.mktemp("remediation-requests-state")) as console:
        yield console


@pytest.fixture(scope="module")
def checker(console: Any) -> Iterator[Checker]:
    tokens = {"read": console.credentials.read_token, "write": console.credentials.write_token}
    yield Checker(console.url, tokens)


def test_a_request_rejected_expired_or_unknown_is_refused_plainly(checker: Checker) -> None:
    c = checker
    rejected = ask(1)
    no = c.send("POST", f"/api/remediation-requests/{rejected.approval_id}/reject", json={"notes": "a blip"})
    assert no.status_code == 200 and no.json()["state"] == "rejected", no.text
    again = c.send("POST", f"/api/remediation-requests/{rejected.approval_id}/approve", json={"notes": "x"})
    assert again.status_code == 409 and "rejected by local-operator" in again.json()["message"]

    late = ask(2)  # its time runs out before anyone answers
    store = runtime.alert_engine().remediation.store
    late.expires_at_time = clock.now() - timedelta(seconds=1)
    store.save_approval(late)
    listed = c.send("GET", "/api/remediation-requests", "read").json()
    assert next(r for r in listed if r["approval_id"] == late.approval_id)["answerable"] is False
    expired = c.send("POST", f"/api/remediation-requests/{late.approval_id}/approve", json={"notes": "x"})
    assert expired.status_code == 409 and "expired at" in expired.json()["message"], expired.text
    assert store.approval(late.approval_id).status.value == "expired"  # and recorded so (audited)
    assert [e for e in DeploymentRepository().audit_trail(LIVE) if e.action == "remediation_approval_expired"]

    for path in ("/api/remediation-requests/ap-000000000000", "/api/deployments/no-such-one/remediation-requests"):
        assert c.send("GET", path, "read").status_code == 404
    for verb in ("approve", "reject"):
        unknown = c.send("POST", f"/api/remediation-requests/ap-000000000000/{verb}", json={"notes": "x"})
        assert unknown.status_code == 404 and "not found" in unknown.json()["message"], unknown.text
    bad = c.send("POST", "/api/remediation-requests/-bad/approve", json={"notes": "x"})
    assert bad.status_code == 400 and bad.json()["field"] == "path.approval_id", bad.text
    long_query = "?x=" + "a" * 2100
    for path in ("/api/remediation-requests", f"/api/deployments/{LIVE}/remediation-requests",
                 f"/api/remediation-requests/{late.approval_id}"):  # fmt: skip
        assert c.send("GET", path + long_query, "read").status_code == 400
        assert c.send("GET", path, None).status_code == 401
    reject = f"/api/remediation-requests/{late.approval_id}/reject"
    assert c.send("POST", reject, "read", json={"notes": "x"}).status_code == 403
    assert c.send("POST", reject, None, json={"notes": "x"}).status_code == 401
    assert c.send("POST", reject, json={"notes": 5}).json()["field"] == "body.notes"
    assert c.send("POST", reject, data="{}", headers={"Content-Type": "text/csv"}).status_code == 415


def test_a_pending_rollback_request_is_listed_approved_with_the_callers_name_and_not_answered_twice(
    checker: Checker,
) -> None:
    c = checker
    asked = ask(0)
    pending = c.send("GET", "/api/remediation-requests", "read")
    assert pending.status_code == 200
    shown = next(r for r in pending.json() if r["approval_id"] == asked.approval_id)
    assert shown["state"] == "pending" and shown["answerable"] is True
    assert (shown["deployment_id"], shown["action"], shown["incident_id"]) == (LIVE, "rollback", asked.incident_id)
    assert shown["incident_title"] and shown["service"] == "orders-api" and shown["expires_at"]
    of_deployment = c.send("GET", f"/api/deployments/{LIVE}/remediation-requests", "read").json()
    assert asked.approval_id in [r["approval_id"] for r in of_deployment]
    assert c.send("GET", f"/api/remediation-requests/{asked.approval_id}", "read").json()["state"] == "pending"

    answer = f"/api/remediation-requests/{asked.approval_id}/approve"
    assert c.send("POST", answer, "read", json={"notes": "x"}).status_code == 403  # a read-only token
    assert c.send("POST", answer, None, json={"notes": "x"}).status_code == 401
    empty = c.send("POST", answer, json={"notes": ""})
    assert empty.status_code == 400 and empty.json()["field"] == "body.notes", empty.text
    extra = c.send("POST", answer, json={"notes": "x", "by": "mallory"})
    assert extra.status_code == 400 and extra.json()["field"] == "body.by", extra.text
    typed = c.send("POST", answer, data='{"notes": "x"}', headers={"Content-Type": "text/plain"})
    assert typed.status_code == 415 and typed.json()["field"] == "header.content-type"
    assert c.send("GET", f"/api/remediation-requests/{asked.approval_id}", "read").json()["state"] == "pending"

    approved = c.send("POST", answer, json={"notes": "revenue is down 50%"})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["decided_by"] == "local-operator" and body["notes"] == "revenue is down 50%"
    assert body["state"] in ("approved", "executed") and body["answerable"] is False
    entry = [e for e in DeploymentRepository().audit_trail(LIVE) if e.action == "remediation_approved"][-1]
    assert (entry.actor, entry.reason, entry.details["approval_id"]) == (
        "local-operator", "revenue is down 50%", asked.approval_id,
    )  # fmt: skip

    # the approval's state machine runs the rollback: the alias back on the stable version only
    shifter = LambdaTrafficShifter(DeploymentRepository().get_deployment(LIVE).target)  # type: ignore[arg-type]
    done = wait_until(lambda: store_state(asked.approval_id) == "executed", timeout=30)
    assert done and shifter.current().additional_weights == {}, (store_state(asked.approval_id), shifter.current())
    assert c.send("GET", f"/api/remediation-requests/{asked.approval_id}", "read").json()["state"] == "executed"
    for verb in ("approve", "reject"):  # answered: refused, saying by whom
        again = c.send("POST", f"/api/remediation-requests/{asked.approval_id}/{verb}", json={"notes": "x"})
        assert again.status_code == 409 and "already answered: approved by local-operator" in again.json()["message"]
    listed = c.send("GET", "/api/remediation-requests", "read").json()
    assert asked.approval_id not in [r["approval_id"] for r in listed]
    timeline = c.send("GET", f"/api/deployments/{LIVE}/timeline?limit=200", "read").json()["items"]
    said = [t for t in timeline if t["title"].startswith("rollback approved by local-operator")]
    assert said and said[-1]["detail"] == "notes: revenue is down 50%", [t["title"] for t in timeline][-12:]


def test_every_documented_answer_of_the_remediation_routes_was_met(checker: Checker) -> None:
    """Run after the two above (the module's order; the approval last: its rollback leaves nothing to ask): what
    they met covers each status the document lists."""
    documented = {
        (m, t, s)
        for t, item in DOCUMENT["paths"].items()
        if "remediation-requests" in t
        for m, op in item.items()
        for s in op["responses"]
    }
    assert len({t for _, t, _ in documented}) == 5
    assert documented - checker.met == set(), sorted(documented - checker.met)


def test_an_answer_to_an_unknown_route_is_the_one_error_shape(checker: Checker) -> None:
    response = requests.post(f"{checker.url}/api/remediation-requests/ap-1/maybe", json={"notes": "x"}, timeout=30,
                             headers={"Authorization": f"Bearer {checker.tokens['write']}"})  # fmt: skip
    assert response.status_code == 404 and set(response.json()) == {"message"}
