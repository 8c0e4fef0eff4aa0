"""A pause accepted before the first shift ("held at 0%") holds the canary at 0% through the real canary step
function, and once resumed the first step starts (never skipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from control_support import control_service

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.chaos.scenario import write_lean_config
from deployguard_local.emulator import EmbeddedAws, sample_handler

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:canary:P"


def step(aws: EmbeddedAws, action: str, state: dict[str, Any], execution: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"action": action, "state": state}
    if execution:
        event["execution"] = execution
    out, errored = aws.invoke("CanaryStepFunction", event)
    assert not errored, out
    return out


def test_pause_before_the_first_shift_holds_at_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_lean_config(tmp_path)
    monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", str(config))
    with EmbeddedAws(config_file=config) as aws:
        versions = aws.deploy_sample_function("svc", "live", sample_handler)
        target = LambdaTarget(function_name="svc", alias="live", stable_version=versions[0], new_version=versions[1])
        request = {"deployment_id": "dep-P", "service": "svc", "version": versions[1], "target": target.model_dump()}
        state = step(aws, "validate", {"deployment": request}, EXECUTION)
        paused = control_service(aws).apply("dep-P", ControlRequest(verb="pause", actor="alice", reason="hold at 0"))
        assert paused.changed and "held at 0%" in paused.message

        state = step(aws, "shift", state)  # ShiftTraffic right after Validate: held, nothing moves
        shifter = LambdaTrafficShifter(target)
        assert shifter.current().weight_of(target.new_version) == 0.0
        assert (state["next"], state["weight"], state["step_index"]) == ("wait", 0.0, 0)
        repo = DeploymentRepository()
        held = [a for a in repo.audit_trail("dep-P") if a.action == "traffic_held"]
        assert held and "held at 0%" in held[-1].reason
        assert "traffic_shifted" not in [a.action for a in repo.audit_trail("dep-P")]

        aws.clock.advance(120)
        state = step(aws, "assess", state)  # still paused: it waits
        assert state["next"] == "wait" and shifter.current().weight_of(target.new_version) == 0.0

        control_service(aws).apply("dep-P", ControlRequest(verb="resume", actor="alice", reason="go"))
        aws.clock.advance(120)
        state = step(aws, "assess", state)  # resumed: the first step starts now, not the second
        assert (state["next"], state["step_index"]) == ("advance", 0)
        state = step(aws, "shift", state)
        first = state["steps"][0]
        assert state["weight"] == first
        assert shifter.current().weight_of(target.new_version) == pytest.approx(first / 100)
        assert repo.get_deployment("dep-P").canary_weight == pytest.approx(first / 100)
