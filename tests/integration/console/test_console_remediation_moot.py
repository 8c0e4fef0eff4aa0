"""A rollback request whose deployment has ended with its traffic back on the stable version (rolled back,
aborted, held) waits for nobody's answer: the console's pending list leaves it out, the deployment's requests say
why it is moot, and approving it is refused (409) instead of acting on an ended canary (review: the "Waiting for
your answer" panel offered it). Over HTTP on 127.0.0.1, the real console functions, the demo's saved state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Console
from remediation_requests_support import LIVE, ask, configured_console
from test_console_document_truth import DOCUMENT, Checker


@pytest.fixture
def console(demo_run: Any, tmp_path: Any) -> Iterator[Console]:
    with configured_console(demo_run.state_dir, tmp_path / "state") as console:
        yield console


def test_a_request_of_an_aborted_canary_is_moot_left_out_of_the_pending_and_not_approved(console: Any) -> None:
    c = Checker(console.url, {"read": console.credentials.read_token, "write": console.credentials.write_token})
    assert DOCUMENT["paths"]  # the responses are checked against the OpenAPI document
    request = ask(0)
    pending = c.send("GET", "/api/remediation-requests", "read").json()
    assert [r["approval_id"] for r in pending if r["approval_id"] == request.approval_id]  # asked: waiting

    aborted = c.send("POST", f"/api/deployments/{LIVE}/control/abort", json={"reason": "bad build"})
    assert aborted.status_code == 200, aborted.text

    pending = c.send("GET", "/api/remediation-requests", "read").json()
    assert request.approval_id not in [r["approval_id"] for r in pending]
    mine = c.send("GET", f"/api/deployments/{LIVE}/remediation-requests", "read").json()
    shown = next(r for r in mine if r["approval_id"] == request.approval_id)
    assert shown["state"] == "pending" and shown["answerable"] is False
    assert "has ended" in shown["moot"], shown
    approve = c.send("POST", f"/api/remediation-requests/{request.approval_id}/approve", json={"notes": "go"})
    assert approve.status_code == 409 and "nothing to roll back" in approve.json()["message"], approve.text
