"""AfterAllowTraffic when the new version serves production but shows no request: missing evidence.

Through the real lifecycle hook handler (``LifecycleHookFunction``) on the embedded AWS, with the
metrics written to moto's CloudWatch as the load balancer and Lambda publish them:

- ECS: green holds production but its target group publishes no ``RequestCount`` while blue had
  ~3,000 requests a minute, or neither target group publishes anything: the hook answers
  ``Failed`` (missing evidence, whatever ``hooks.fail_post_traffic_on_inconclusive`` says, which
  the demo's configuration leaves false), production goes back to blue;
- Lambda: the alias routes everything to the new version but it is never invoked while the old
  version had traffic (in the window, or in as long before it): ``Failed`` likewise; a function
  without traffic on either version stays "too little traffic" and passes with a warning, as
  documented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.cloudwatch import put_metric_values
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import LEDGER, create_lambda_deployment
from deployguard_local.ecs import AlbTrafficSource, EcsStack, create_ecs_service, simulate_ecs_rollout
from deployguard_local.emulator import sample_handler
from deployguard_local.minutes import minutes_between
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour


@dataclass
class BlueOnly:
    """The load balancer's metrics when only blue's target group publishes (green's never does: its
    targets never registered, the listener rule misroutes): ~3,000 requests a minute on blue."""

    source: AlbTrafficSource
    target_group: str
    minutes: list[datetime] = field(default_factory=list)

    def on_clock(self, before: datetime, after: datetime) -> None:
        for minute_start in minutes_between(before, after):
            dims = self.source.dimensions(self.target_group)
            stamp = minute_start + timedelta(seconds=30)
            put_metric_values("AWS/ApplicationELB", "RequestCount", dims, stamp, "Count", value=3000)
            put_metric_values("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dims, stamp, "Count", value=3)
            put_metric_values("AWS/ApplicationELB", "TargetResponseTime", dims, stamp, "Seconds",
                              values=[0.04, 0.2], counts=[98, 2])  # fmt: skip
            self.minutes.append(minute_start)


def _rollout(embedded: Any, stack: EcsStack) -> Any:
    return simulate_ecs_rollout(
        stack, application="checkout-web", group="checkout-web-bg",
        hooks_function=lambda event: embedded.invoke("LifecycleHookFunction", event),
        recorder_function=lambda event: embedded.invoke("DeploymentRecorderFunction", event),
        clock_advance=embedded.clock.advance,
    )  # fmt: skip


def _verdicts(deployment_id: str) -> list[Any]:
    return [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "hook_verdict"]


def test_green_silent_when_the_shift_time_is_unknown_passes_with_the_no_evidence_warning(embedded: Any) -> None:
    """Green holds production but publishes nothing while blue does; nothing told DeployGuard when production
    reached green (the minute tick did not see it), so the hook cannot tell which periods green should have
    served: it does not count the periods before the shift against it (an all-at-once shift would fail every
    healthy release whose earlier hooks took minutes) and passes with the no-evidence warning, as the
    zero-length window does (README: too little traffic, hooks.fail_post_traffic_on_inconclusive)."""
    stack = create_ecs_service("shop", "checkout-web")
    source = AlbTrafficSource(stack.prod_listener_arn, 3000, {}, active=False)
    blue = BlueOnly(source, stack.blue_target_group)
    embedded.clock.listeners.append(blue.on_clock)

    def no_start(parsed: dict[str, Any], **_: Any) -> None:  # CodeDeploy's AllowTraffic start not told either
        for event in parsed["deploymentTarget"]["ecsTarget"]["lifecycleEvents"]:
            event.pop("startTime", None)

    clients.client("codedeploy").meta.events.register("after-call.codedeploy.GetDeploymentTarget", no_start)
    result = _rollout(embedded, stack)
    clients.client("codedeploy").meta.events.unregister("after-call.codedeploy.GetDeploymentTarget", no_start)
    assert blue.minutes  # blue published all along
    assert result.hooks == [("AfterAllowTestTraffic", "Succeeded"), ("AfterAllowTraffic", "Succeeded")]
    record = DeploymentRepository().get_deployment(result.deployment_id)
    assert record.traffic_started_at is None
    reason = _verdicts(result.deployment_id)[-1].reason
    assert "judge inconclusive: not enough evidence: 0 canary requests" in reason and "missing evidence" not in reason


def test_no_load_balancer_metrics_for_either_target_group_fails_after_allow_traffic(embedded: Any) -> None:
    stack = create_ecs_service("shop", "checkout-web")
    result = _rollout(embedded, stack)  # no traffic source: AWS/ApplicationELB has nothing for either
    assert result.hooks == [("AfterAllowTestTraffic", "Succeeded"), ("AfterAllowTraffic", "Failed")]
    assert result.final_state == "FAILURE" and result.green_percent == 0.0
    reason = _verdicts(result.deployment_id)[-1].reason
    assert "requests: missing evidence: green (" in reason
    assert "nor blue (" in reason and "published no AWS/ApplicationELB/RequestCount for either target group" in reason
    assert DeploymentRepository().get_deployment(result.deployment_id).status == DeploymentStatus.ROLLED_BACK


def test_healthy_green_with_its_own_requests_still_passes(embedded: Any) -> None:
    stack = create_ecs_service("shop", "checkout-web")
    source = AlbTrafficSource(
        stack.prod_listener_arn, 3000,
        {stack.blue_target_group: VersionBehaviour(), stack.green_target_group: VersionBehaviour()}, seed=21,
    )  # fmt: skip
    embedded.clock.listeners.append(source.on_clock)
    result = _rollout(embedded, stack)
    assert result.hooks == [("AfterAllowTestTraffic", "Succeeded"), ("AfterAllowTraffic", "Succeeded")]
    assert "missing evidence" not in _verdicts(result.deployment_id)[-1].reason


# ------------------------------------------------------------------ Lambda


@dataclass
class PinnedToVersion(LambdaTrafficSource):
    """Callers that invoke one version by its qualifier, whatever the alias routes."""

    version: str = "1"

    def routing(self) -> dict[str, float]:
        return {self.version: 1.0}


def _lambda(embedded: Any) -> LambdaTarget:
    versions = embedded.deploy_sample_function("checkout-api", "live", sample_handler)
    return LambdaTarget(function_name="checkout-api", alias="live", stable_version=versions[0],
                        new_version=versions[1])  # fmt: skip


def _after_allow_traffic(embedded: Any, deployment_id: str) -> dict[str, Any]:
    execution = LEDGER.issue(deployment_id)
    payload, errored = embedded.invoke(
        "LifecycleHookFunction", {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}
    )
    assert not errored, payload
    assert LEDGER.calls_for(execution) == 1 and LEDGER.status_of(execution) == payload["status"]
    return dict(payload)


def test_lambda_new_version_never_invoked_after_an_unseen_shift_is_no_evidence_not_a_failure(embedded: Any) -> None:
    """The alias moved outside any observer: the periods before the shift are not counted against the new version."""
    target = _lambda(embedded)
    source = PinnedToVersion("checkout-api", "live", 600, {}, version=target.stable_version)
    embedded.clock.listeners.append(source.on_clock)
    deployment_id = create_lambda_deployment(target, "checkout-api", "live")
    LambdaTrafficShifter(target).promote()  # AfterAllowTraffic: the alias routes everything to the new version
    embedded.clock.advance(300)
    payload = _after_allow_traffic(embedded, deployment_id)
    assert (payload["phase"], payload["status"]) == ("post_traffic", "Succeeded")
    assert "missing evidence" not in payload["reason"] and "no evidence (too little traffic)" in payload["warning"]


def test_lambda_new_version_not_invoked_when_too_few_were_expected_is_too_little_traffic(embedded: Any) -> None:
    """A stable version with a request now and then: none on the new one is no evidence of anything."""
    target = _lambda(embedded)
    source = PinnedToVersion("checkout-api", "live", 0.4, {}, seed=2, version=target.stable_version)
    embedded.clock.listeners.append(source.on_clock)
    deployment_id = create_lambda_deployment(target, "checkout-api", "live")
    LambdaTrafficShifter(target).promote()
    embedded.clock.advance(300)
    assert 1 <= _invocations(target.stable_version) < 5  # a few, on the stable version only
    payload = _after_allow_traffic(embedded, deployment_id)
    assert (payload["phase"], payload["status"]) == ("post_traffic", "Succeeded")
    assert "missing evidence" not in payload["reason"] and "no evidence (too little traffic)" in payload["warning"]


def _invocations(version: str) -> float:
    """What CloudWatch holds of a version's invocations over the last hour (moto's, through boto3)."""
    now = clock.now()
    points = clients.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda", MetricName="Invocations", StartTime=now - timedelta(hours=1), EndTime=now,
        Period=3600, Statistics=["Sum"], Dimensions=[
            {"Name": "FunctionName", "Value": "checkout-api"}, {"Name": "Resource", "Value": "checkout-api:live"},
            {"Name": "ExecutedVersion", "Value": version}],
    )["Datapoints"]  # fmt: skip
    return float(sum(p["Sum"] for p in points))


def test_lambda_traffic_gone_at_an_unseen_shift_passes_with_the_no_evidence_warning(embedded: Any) -> None:
    """The old version's traffic came before the judged window; the shift was not seen: no evidence, no failure."""
    target = _lambda(embedded)
    source = LambdaTrafficSource("checkout-api", "live", 600, {})
    embedded.clock.listeners.append(source.on_clock)
    embedded.clock.advance(300)  # version 1 serves ~600 a minute
    deployment_id = create_lambda_deployment(target, "checkout-api", "live")
    LambdaTrafficShifter(target).promote()
    source.active = False  # nothing reaches the new version
    embedded.clock.advance(300)
    payload = _after_allow_traffic(embedded, deployment_id)
    assert (payload["phase"], payload["status"]) == ("post_traffic", "Succeeded")
    assert "no evidence (too little traffic)" in payload["warning"]


def test_lambda_without_traffic_on_either_version_stays_too_little_traffic(embedded: Any) -> None:
    """Documented: no traffic at all is not enough evidence, governed by fail_post_traffic_on_inconclusive."""
    target = _lambda(embedded)
    deployment_id = create_lambda_deployment(target, "checkout-api", "live")
    LambdaTrafficShifter(target).promote()
    clock.sleep(300.0)
    payload = _after_allow_traffic(embedded, deployment_id)
    assert (payload["phase"], payload["status"]) == ("post_traffic", "Succeeded")
    assert "missing evidence" not in payload["reason"] and "no evidence (too little traffic)" in payload["warning"]
