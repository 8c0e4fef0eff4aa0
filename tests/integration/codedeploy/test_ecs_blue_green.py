"""ECS blue/green deployments through CodeDeploy, guarded by the lifecycle hook, on the embedded AWS.

The service, its load balancer, listeners and target groups are real moto resources;
CodeDeploy's deployment target (lifecycle events, blue and green task sets) is served
through the real ListDeploymentTargets/GetDeploymentTarget calls; the traffic writes
AWS/ApplicationELB metrics per target group, which is what the judge compares.
"""

from __future__ import annotations

from typing import Any

import pytest

from deployguard.models import DeploymentStatus, EcsTarget, EventType
from deployguard.readmodels import DeploymentReader
from deployguard.reporting import render
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import LEDGER
from deployguard_local.ecs import (
    AlbTrafficSource,
    EcsStack,
    create_ecs_service,
    simulate_ecs_rollout,
)
from deployguard_local.traffic import VersionBehaviour


@pytest.fixture
def stack(embedded: Any) -> EcsStack:
    return create_ecs_service("shop", "checkout-web")


def _traffic(embedded: Any, stack: EcsStack, green: VersionBehaviour, seed: int) -> AlbTrafficSource:
    source = AlbTrafficSource(
        stack.prod_listener_arn, 3000, {stack.blue_target_group: VersionBehaviour(), stack.green_target_group: green},
        seed=seed,
    )  # fmt: skip
    embedded.clock.listeners.append(source.on_clock)
    return source


def _rollout(embedded: Any, stack: EcsStack) -> Any:
    return simulate_ecs_rollout(
        stack, application="checkout-web", group="checkout-web-bg",
        hooks_function=lambda event: embedded.invoke("LifecycleHookFunction", event),
        recorder_function=lambda event: embedded.invoke("DeploymentRecorderFunction", event),
        clock_advance=embedded.clock.advance,
    )  # fmt: skip


def _verdicts(deployment_id: str) -> list[Any]:
    return [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "hook_verdict"]


def test_healthy_green_task_set_passes_both_hooks_and_takes_production(embedded: Any, stack: EcsStack) -> None:
    _traffic(embedded, stack, VersionBehaviour(), seed=21)
    result = _rollout(embedded, stack)
    assert result.hooks == [("AfterAllowTestTraffic", "Succeeded"), ("AfterAllowTraffic", "Succeeded")]
    assert result.final_state == "SUCCESS" and result.green_percent == 100.0
    record = DeploymentRepository().get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.SUCCEEDED and record.service == "checkout-web"
    target = record.target
    assert isinstance(target, EcsTarget)
    # learned from CodeDeploy's task sets and turned into CloudWatch dimensions by DescribeTargetGroups
    assert target.new_target_group.startswith("targetgroup/checkout-web-green/")
    assert target.stable_target_group.startswith("targetgroup/checkout-web-blue/")
    assert target.load_balancer.startswith("app/checkout-web-alb/")
    assert target.new_task_definition.endswith("task-definition/checkout-web:2")
    # the blue (stable) task set's task definition, from ECS (DescribeTaskSets)
    assert target.stable_task_definition.endswith("task-definition/checkout-web:1")
    assessment = DeploymentRepository().assessments(result.deployment_id)[-1]
    assert assessment.verdict.decision.value == "healthy", assessment.verdict.summary
    judged = {r.metric_id for r in assessment.verdict.reasons}
    assert {"errors", "latency_p99"} <= judged
    assert [e.reason.split(":")[0] for e in _verdicts(result.deployment_id)] == ["Succeeded", "Succeeded"]
    trail = DeploymentRepository().audit_trail(result.deployment_id)
    baseline = next(e for e in trail if e.action == "baseline_captured")
    assert "blue task set (targetgroup/checkout-web-blue/" in baseline.reason
    assert set(baseline.details["baseline"]) == {"requests", "errors", "latency_p50", "latency_p99"}


def test_green_task_set_with_5xx_fails_after_traffic_and_production_returns_to_blue(
    embedded: Any, stack: EcsStack
) -> None:
    _traffic(embedded, stack, VersionBehaviour(regress_at=0, regressed_error_rate=0.08), seed=22)
    result = _rollout(embedded, stack)
    assert result.hooks == [("AfterAllowTestTraffic", "Succeeded"), ("AfterAllowTraffic", "Failed")]
    assert result.final_state == "FAILURE" and result.rolled_back and result.green_percent == 0.0
    after = _verdicts(result.deployment_id)[-1]
    assert "judge failing" in after.reason and "errors" in after.reason
    assert after.details["lifecycle_event"] == "AfterAllowTraffic"
    record = DeploymentRepository().get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.ROLLED_BACK
    # one status call per hook execution, each accepted by CodeDeploy
    executions = [e.details["execution_id"] for e in _verdicts(result.deployment_id)]
    assert [LEDGER.calls_for(x) for x in executions] == [1, 1]
    assert [LEDGER.attempts_for(x) for x in executions] == [1, 1]


def test_slow_green_task_set_fails_on_latency(embedded: Any, stack: EcsStack) -> None:
    _traffic(embedded, stack, VersionBehaviour(regress_at=0, regressed_error_rate=0.005, regressed_p99_ms=1500),
             seed=23)  # fmt: skip
    result = _rollout(embedded, stack)
    assert result.hooks[-1] == ("AfterAllowTraffic", "Failed")
    assert "latency_p99" in _verdicts(result.deployment_id)[-1].reason


def test_ecs_service_read_with_lambda_metrics_fails_closed_naming_the_setting(embedded: Any, stack: EcsStack) -> None:
    """A service left on the Lambda metrics cannot be judged on ECS: Failed, and the reason says what to set."""
    _traffic(embedded, stack, VersionBehaviour(), seed=24)
    result = simulate_ecs_rollout(
        stack, application="web-without-preset", group="bg",
        hooks_function=lambda event: embedded.invoke("LifecycleHookFunction", event),
        clock_advance=embedded.clock.advance,
    )  # fmt: skip
    assert result.hooks == [("AfterAllowTestTraffic", "Succeeded"), ("AfterAllowTraffic", "Failed")]
    before, after = _verdicts(result.deployment_id)
    # the default checks: no smoke test on ECS, the (non-critical) baseline capture warns why it cannot read
    warned = before.details["checks"][0]
    assert (warned["name"], warned["status"]) == ("baseline", "warned")
    assert "metrics_preset: alb" in warned["message"]
    assert "failing closed" in after.reason and "metrics_preset: alb" in after.reason


def test_scheduled_assessor_stops_a_failing_green_task_set_during_the_canary(embedded: Any, stack: EcsStack) -> None:
    """Every simulated minute the assessor judges green against blue; a failing verdict's automatic
    rollback stops the CodeDeploy deployment, and production goes back to blue before 100%."""
    _traffic(embedded, stack, VersionBehaviour(regress_at=0, regressed_error_rate=0.1), seed=25)
    undo = embedded.follow_schedules(["AssessorFunction"])
    try:
        result = _rollout(embedded, stack)
    finally:
        undo()
    assert result.final_state == "STOP" and result.rolled_back and result.green_percent == 0.0
    assert result.hooks == [("AfterAllowTestTraffic", "Succeeded")]  # AfterAllowTraffic never ran
    stops = LEDGER.stops_of(result.deployment_id)
    assert [(s.accepted, s.auto_rollback) for s in stops] == [(True, True)]
    repository = DeploymentRepository()
    record = repository.get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.ROLLED_BACK
    assessments = repository.assessments(result.deployment_id)
    assert assessments[-1].verdict.decision.value == "failing"
    assert "errors" in assessments[-1].verdict.summary
    # alerts and the report name both task definitions: green judged against blue
    events = repository.events(result.deployment_id)
    alerts = [e for e in events if e.event_type == EventType.ALERT and e.details.get("kind") == "alert"]
    named = {(a.version, a.details["stable_version"]) for a in alerts}
    assert alerts and named == {("checkout-web:2", "checkout-web:1")}
    assert all(a.title.endswith("checkout-web:2 (stable checkout-web:1)") for a in alerts)
    report = render(DeploymentReader(repository).history(result.deployment_id), "html")
    assert "task-definition/checkout-web:1 -&gt; arn:aws:ecs:" in report and "task-definition/checkout-web:2" in report
    # the assessor read the green task set's weight from CodeDeploy: the verdicts were taken at 10%
    assert {a.canary_weight for a in assessments} == {0.1}
    trail = repository.audit_trail(result.deployment_id)
    observed = [e for e in trail if e.action == "traffic_observed"]
    assert [e.details["weight"] for e in observed] == [0.1]
    actions = [e.action for e in trail]
    assert actions.index("traffic_observed") < actions.index("alert_raised") < actions.index("remediation_succeeded")
