"""A person approves a remediation from the CLI while Step Functions refuses SendTaskSuccess: the
decision stands and the approved action still runs, at the next minute tick (the AssessorFunction),
instead of waiting forever on a state machine that was never told."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from incident_support_it import canary_in_flight, engine, healthy_assessment
from tick_support import minute_tick

from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import incidents_cli
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[3]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = incidents_cli.main([*argv, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out) if code == 0 else out.err


def test_an_approval_whose_answer_step_functions_refuses_runs_at_the_next_tick(
    embedded: EmbeddedAws, faults: FaultInjector, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment, shifter = canary_in_flight(embedded)
    [alert] = engine().on_assessment(
        deployment, healthy_assessment(deployment), {"response_time_p99": 900.0}, {"response_time_p99": 300.0}
    )
    assert alert.rule == "performance-degradation"  # its plan asks a person before rolling back
    code, approvals = _cli(capsys, "approvals")
    assert code == 0 and len(approvals) == 1
    approval_id = approvals[0]["approval_id"]
    store = engine().remediation.store
    _wait_until(lambda: store.approval(approval_id).task_token is not None)  # its state machine waits on it
    plan = faults.on("stepfunctions", "SendTaskSuccess", ["throttle"] * 9)  # every attempt of the one call
    code, answer = _cli(capsys, "approve", approval_id, "--by", "bob")
    assert plan.injected == 9
    assert code == 0, answer  # the decision is taken; the answer's failure is not the person's problem
    approval = store.approval(approval_id)
    assert approval.status.value == "approved" and approval.task_token is None
    actions = [e.action for e in DeploymentRepository().audit_trail(deployment.deployment_id)]
    assert "remediation_approved" in actions and "approval_answer_failed" in actions
    assert shifter.current().additional_weights  # nothing ran yet
    _tick(embedded)
    target = deployment.target
    assert isinstance(target, LambdaTarget)
    assert shifter.current().weight_of(target.stable_version) == 1.0  # the approved rollback ran
    assert store.approval(approval_id).status.value == "executed"
    actions = [e.action for e in DeploymentRepository().audit_trail(deployment.deployment_id)]
    assert actions.count("remediation_succeeded") == 1


def _tick(embedded: EmbeddedAws) -> None:
    minute_tick(embedded)


def _wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)
