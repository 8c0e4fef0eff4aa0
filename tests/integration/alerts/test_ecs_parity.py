"""ECS parity: the canary and post-traffic windows of an ECS blue/green deployment start when
production traffic reached green (test-listener traffic before it is no evidence); a
configuration error of a check is not retried."""

from __future__ import annotations

from typing import Any

from metric_history import write_alb_history

from deployguard import clock
from deployguard.analysis.settings import alb_metrics
from deployguard.hooks.checks import CheckContext, run_check
from deployguard.hooks.settings import CheckSettings
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import Deployment, EcsTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.ecs import AlbTrafficSource, create_ecs_service, simulate_ecs_rollout
from deployguard_local.traffic import VersionBehaviour


def test_test_listener_traffic_before_production_is_not_judged(embedded: Any) -> None:
    stack = create_ecs_service("shop", "checkout-web")
    blue, green = stack.blue_target_group, stack.green_target_group
    production = AlbTrafficSource(stack.prod_listener_arn, 3000, {blue: VersionBehaviour(), green: VersionBehaviour()},
                                  seed=31)  # fmt: skip
    # testers hammer green through the test listener with requests it rightly refuses (30% 5xx)
    testing = AlbTrafficSource(stack.test_listener_arn, 600, {green: VersionBehaviour(error_rate=0.3)}, seed=32)
    embedded.clock.listeners += [production.on_clock, testing.on_clock]

    def on_step(line: str) -> None:
        if line.startswith("AfterAllowTestTraffic hook answered"):
            embedded.clock.advance(180)  # three minutes of test traffic before production moves
            testing.active = False

    undo = embedded.follow_schedules(["AssessorFunction"])
    try:
        result = simulate_ecs_rollout(
            stack, application="checkout-web", group="checkout-web-bg",
            hooks_function=lambda event: embedded.invoke("LifecycleHookFunction", event),
            recorder_function=lambda event: embedded.invoke("DeploymentRecorderFunction", event),
            clock_advance=embedded.clock.advance, on_step=on_step,
        )  # fmt: skip
    finally:
        undo()
    repository = DeploymentRepository()
    assessments = repository.assessments(result.deployment_id)
    assert result.hooks == [("AfterAllowTestTraffic", "Succeeded"), ("AfterAllowTraffic", "Succeeded")], [
        a.verdict.summary for a in assessments
    ]
    assert result.final_state == "SUCCESS"
    record = repository.get_deployment(result.deployment_id)
    assert record.traffic_started_at is not None and record.traffic_started_at > record.started_at
    assert all(a.verdict.decision.value != "failing" for a in assessments)


def test_a_configuration_error_is_not_retried() -> None:
    target = EcsTarget(cluster="shop", service="web")  # target groups unknown: the metrics cannot be read
    ctx = CheckContext(Deployment(service="web", environment="test", version="2", target=target), [], True)
    slept: list[float] = []
    check = CheckSettings(name="baseline", type="baseline", retries=3, backoff_seconds=5)
    ctx.metrics.extend(alb_metrics())
    result = run_check(check, ctx, deadline=10**12, sleep=slept.append)
    assert result.status == "failed" and result.attempts == 1 and slept == []
    assert "not retried" in result.message and "MetricsConfigError" in result.message


def test_a_promoted_ecs_service_is_watched_after_promotion(embedded: Any) -> None:
    stack = create_ecs_service("shop", "checkout-web")
    blue, green = stack.blue_target_group, stack.green_target_group
    production = AlbTrafficSource(stack.prod_listener_arn, 3000, {blue: VersionBehaviour(), green: VersionBehaviour()},
                                  seed=41)  # fmt: skip
    write_alb_history(production.dimensions(blue), clock.now(), hours=20)
    embedded.clock.advance(20 * 3600)
    embedded.clock.listeners.append(production.on_clock)
    result = simulate_ecs_rollout(
        stack, application="checkout-web", group="checkout-web-bg",
        hooks_function=lambda event: embedded.invoke("LifecycleHookFunction", event),
        recorder_function=lambda event: embedded.invoke("DeploymentRecorderFunction", event),
        clock_advance=embedded.clock.advance,
    )  # fmt: skip
    assert result.final_state == "SUCCESS"
    production.behaviours[green] = VersionBehaviour(error_rate=0.08)  # the promoted task set degrades
    undo = embedded.follow_schedules(["AssessorFunction"])
    try:
        embedded.clock.advance(20 * 60)
    finally:
        undo()
    embedded.invoker.drain()
    repository = DeploymentRepository()
    watched = [a for a in repository.assessments(result.deployment_id) if a.details.get("kind") == "post_deployment"]
    assert watched and watched[-1].health_status.value == "warning"
    assert "errors" in watched[-1].verdict.summary
    incidents = [i for i in IncidentRepository(repository).recent() if i.deployment_id == result.deployment_id]
    assert [i.rules for i in incidents if i.group == "post-deployment"] == [["post-deployment-anomaly"]]
