"""The canary state machine end to end on the embedded AWS: moto's ASL interpreter,
the real handlers in-process, synthetic CloudWatch traffic, a simulated clock."""

from __future__ import annotations

from typing import Any

import pytest

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, EventType, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.emulator import sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour


def _start(
    embedded: Any, name: str, behaviours: dict[int, VersionBehaviour] | None = None, rpm: float = 2000
) -> tuple[dict[str, Any], LambdaTarget]:
    versions = embedded.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    chosen = behaviours or {}
    traffic = LambdaTrafficSource(
        name, "live", rpm, {v: chosen.get(i, VersionBehaviour()) for i, v in enumerate(versions)}, seed=3
    )
    embedded.clock.listeners.append(traffic.on_clock)
    execution = embedded.run_state_machine(
        "CanaryStateMachine",
        {
            "deployment": {
                "deployment_id": f"dep-{name}",
                "service": name,
                "version": versions[1],
                "target": target.model_dump(),
            }
        },
    )
    embedded.invoker.drain()
    return execution, target


def _alias_weights(target: LambdaTarget) -> tuple[str, dict[str, float]]:
    state = LambdaTrafficShifter(target).current()
    return state.function_version, state.additional_weights


def test_healthy_release_is_promoted_step_by_step(embedded: Any) -> None:
    execution, target = _start(embedded, "checkout-api")
    assert execution["status"] == "SUCCEEDED"
    repository = DeploymentRepository()
    deployment = repository.get_deployment("dep-checkout-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.SUCCEEDED, "promoted")
    assert _alias_weights(target) == (target.new_version, {})
    actions = [e.action for e in repository.audit_trail(deployment.deployment_id)]
    assert actions[0] == "validated" and actions[-1] == "promoted"
    assert [
        e.details["weight"] for e in repository.audit_trail(deployment.deployment_id) if e.action == "traffic_shifted"
    ] == [10, 25, 50]
    assert len(repository.assessments(deployment.deployment_id)) >= 9  # 3 steps x 3 minutes
    events = [e.event_type for e in repository.events(deployment.deployment_id)]
    assert EventType.PROMOTION_COMPLETED in events and EventType.DEPLOYMENT_COMPLETED in events
    assert not [p for p in deployment.phase_history if p.phase == "failed"]
    # a change of verdict says what it changed to (details.status: what PagerDuty's resolve and the cooldowns read)
    changes = [
        e for e in repository.events(deployment.deployment_id) if e.event_type == EventType.ASSESSMENT_STATUS_CHANGED
    ]
    assert changes and all(e.details["status"] == e.title.removeprefix("Canary ").lower() for e in changes)
    assert changes[-1].details["status"] == "healthy"


def test_regression_midway_is_rolled_back_within_two_assessments(embedded: Any) -> None:
    regressing = VersionBehaviour(regress_at=4, regressed_error_rate=0.10, regressed_p99_ms=2000)
    execution, target = _start(embedded, "payments-api", {1: regressing})
    assert execution["status"] == "SUCCEEDED"
    repository = DeploymentRepository()
    deployment = repository.get_deployment("dep-payments-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "rolled_back")
    assert _alias_weights(target) == (target.stable_version, {})
    # ended before a third assessment could run (a task retried after a racing write adds its seconds of back-off)
    assert deployment.duration_seconds is not None and deployment.duration_seconds < (4 + 3) * 60
    # rolled back by the canary's own Rollback (judge reasons) or by alert remediation (its rule)
    assert "errors" in (deployment.decision_reason or "") or "canary-issue" in (deployment.decision_reason or "")
    events = [e.event_type for e in repository.events(deployment.deployment_id)]
    assert EventType.ROLLBACK_INITIATED in events and EventType.ROLLBACK_COMPLETED in events


@pytest.mark.parametrize("failing", ["shift", "assess", "promote"])
def test_a_failure_at_any_step_leaves_the_alias_at_100_percent_stable(
    embedded: Any, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    import deployguard.analysis.judge as judge  # the canary imports it at its first Assess task

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"injected failure in {failing}")

    if failing == "shift":
        monkeypatch.setattr(LambdaTrafficShifter, "shift", boom)
    elif failing == "assess":
        calls = {"n": 0}
        real = judge.judge_canary

        def judge_then_fail(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] > 4:  # after the alias has moved to the second step
                boom()
            return real(*args, **kwargs)

        monkeypatch.setattr(judge, "judge_canary", judge_then_fail)
    else:
        monkeypatch.setattr(LambdaTrafficShifter, "promote", boom)
    execution, target = _start(embedded, f"svc-{failing}")
    assert execution["status"] == "SUCCEEDED"
    deployment = DeploymentRepository().get_deployment(f"dep-svc-{failing}")
    assert deployment.status == DeploymentStatus.ROLLED_BACK
    assert "injected failure" in (deployment.decision_reason or "")
    assert _alias_weights(target) == (target.stable_version, {})


def test_a_failed_rollback_ends_failed_and_is_announced(embedded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("UpdateAlias keeps failing")

    monkeypatch.setattr(LambdaTrafficShifter, "shift", broken)
    monkeypatch.setattr(LambdaTrafficShifter, "rollback", broken)
    execution, _ = _start(embedded, "svc-norollback")
    assert execution["status"] == "FAILED"
    assert execution["error"] == "DeployGuard.RollbackFailed"
    events = [e.event_type for e in DeploymentRepository().events("dep-svc-norollback")]
    assert EventType.ROLLBACK_FAILED in events


def test_malformed_input_is_rejected_and_touches_nothing(embedded: Any) -> None:
    versions = embedded.deploy_sample_function("untouched", "live", sample_handler)
    execution = embedded.run_state_machine(
        "CanaryStateMachine", {"deployment": {"service": "", "target": {"function_name": "untouched"}}}
    )
    assert execution["status"] == "SUCCEEDED"
    import json

    output = json.loads(execution["output"])
    assert output["decision"] == "rejected"
    assert "service" in output["reason"]
    target = LambdaTarget(function_name="untouched", alias="live", stable_version=versions[0], new_version=versions[1])
    assert _alias_weights(target) == (versions[0], {})


def test_no_traffic_is_never_promoted(embedded: Any) -> None:
    execution, target = _start(embedded, "idle-api", rpm=0)
    assert execution["status"] == "SUCCEEDED"
    deployment = DeploymentRepository().get_deployment("dep-idle-api")
    assert deployment.decision in {"rolled_back", "held"}
    assert "evidence" in (deployment.decision_reason or "")
    assert _alias_weights(target) == (target.stable_version, {})
