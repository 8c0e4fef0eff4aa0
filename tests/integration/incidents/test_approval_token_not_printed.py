"""`deployguard incidents approvals` and `incidents show` never print a remediation approval's Step Functions
task token (whoever holds it can answer the approval with SendTaskSuccess, past the approver's permission and
the audit trail); they say whether the approval state machine waits on it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from incident_support_it import canary_in_flight, engine, healthy_assessment

from deployguard_local import incidents_cli
from deployguard_local.emulator import EmbeddedAws


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert incidents_cli.main([*argv, "--json"]) == 0
    return capsys.readouterr().out


def test_the_task_token_is_never_printed(embedded: EmbeddedAws, capsys: pytest.CaptureFixture[str]) -> None:
    deployment, _ = canary_in_flight(embedded)
    [alert] = engine().on_assessment(
        deployment, healthy_assessment(deployment), {"response_time_p99": 900.0}, {"response_time_p99": 300.0}
    )
    [approval] = json.loads(_cli(capsys, "approvals"))
    store = engine().remediation.store
    deadline = time.monotonic() + 10.0
    while store.approval(approval["approval_id"]).task_token is None:  # its state machine registers the token
        assert time.monotonic() < deadline, "the approval state machine never registered its token"
        time.sleep(0.02)
    token = store.approval(approval["approval_id"]).task_token
    assert token
    listed: Any = json.loads(_cli(capsys, "approvals"))
    shown = _cli(capsys, "show", alert.incident_id)
    assert token not in json.dumps(listed) and token not in shown
    assert "task_token" not in listed[0] and listed[0]["waiting_in_state_machine"] is True
    assert json.loads(shown)["open_approvals"][0]["waiting_in_state_machine"] is True
