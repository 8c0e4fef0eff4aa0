"""The post-traffic hook fails closed: missing evidence, and a lifecycle event CodeDeploy does not name.

Missing evidence of a guarded metric (every GetMetricData result an error status, injected by a
botocore ``after-call`` handler on the real client) fails the AfterAllowTraffic hook, Lambda and ECS,
whatever ``hooks.fail_post_traffic_on_inconclusive`` says; too little traffic stays governed by it.
An ECS hook whose lifecycle event GetDeploymentTarget does not name (none in progress, or one that is
no hook) is judged when green has production traffic, and fails closed when nothing tells which it is.
"""

from __future__ import annotations

from typing import Any

import pytest
from moto_table import TABLE, RecordingPublisher

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws import codedeploy as cdmod
from deployguard.aws.codedeploy import CodeDeployGateway
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.config import parse_config
from deployguard.hooks.lifecycle import EVENT_REREAD_PAUSES, HookOutcome, LifecycleHook
from deployguard.models import EventType, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import HookLedger, create_lambda_deployment
from deployguard_local.ecs import EcsStack, TargetStore, create_ecs_deployment, create_ecs_service, shift_traffic

ECS_CONFIG = (
    "defaults:\n  judge: {metrics_preset: alb}\n"
    "  hooks:\n    pre_traffic: [{name: a, type: alarms, alarm_prefix: shop-}]\n"
)
STRICT = "    fail_post_traffic_on_inconclusive: true\n"
LENIENT = "    fail_post_traffic_on_inconclusive: false\n"


def _run(publisher: RecordingPublisher, ledger: HookLedger, deployment_id: str, config: str = "{}") -> HookOutcome:
    clock.sleep(300.0)  # the simulated clock: five minutes of window for the judge to read
    hook = LifecycleHook(parse_config(config, "t.yaml"), DeploymentRepository(TABLE), publisher, local_mode=True,
                         sleep=lambda s: None)  # fmt: skip
    execution = ledger.issue(deployment_id)
    outcome = hook.handle({"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}, lambda: 60_000)
    assert ledger.calls_for(execution) == 1 and ledger.status_of(execution) == outcome.status  # answered once
    return outcome


def _cloudwatch_fault(status: str) -> None:
    """Every GetMetricData result comes back with ``status`` and no datapoint (CloudWatch's partial failure)."""

    def after_call(parsed: dict[str, Any], **_: Any) -> None:
        for result in parsed.get("MetricDataResults", []):
            result["StatusCode"], result["Timestamps"], result["Values"] = status, [], []
            result["Messages"] = [{"Code": status, "Value": "injected"}]

    clients.client("cloudwatch").meta.events.register("after-call.cloudwatch.GetMetricData", after_call)


def _lambda_after_traffic(target: LambdaTarget) -> str:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    LambdaTrafficShifter(target).promote()
    return deployment_id


def _ecs(targets: TargetStore, event: str, green_percent: float | None = None) -> tuple[EcsStack, str]:
    stack = create_ecs_service("main", "shop")
    deployment_id = create_ecs_deployment(stack, "shop", "shop-bg", "CodeDeployDefault.ECSAllAtOnce", store=targets)
    targets.enter(deployment_id, event)
    if green_percent is not None:
        shift_traffic(stack, deployment_id, green_percent, targets)
    return stack, deployment_id


# ------------------------------------------------------------------ missing evidence


@pytest.mark.parametrize("setting", ["", LENIENT])
@pytest.mark.parametrize("status", ["InternalError", "Forbidden"])
def test_lambda_after_allow_traffic_fails_closed_when_cloudwatch_fails(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher, status: str, setting: str
) -> None:
    deployment_id = _lambda_after_traffic(target)
    _cloudwatch_fault(status)
    outcome = _run(publisher, ledger, deployment_id, "defaults:\n  hooks:\n" + setting if setting else "{}")
    assert (outcome.phase, outcome.status) == ("post_traffic", "Failed")
    # the reason names the metric and why
    assert "missing evidence, failing closed: " in outcome.reason
    assert f"errors: missing evidence: CloudWatch returned {status}" in outcome.reason
    record = DeploymentRepository(TABLE).get_deployment(deployment_id)
    assert record.phase == Phase.FAILED and "missing evidence" in (record.decision_reason or "")
    assert [e.event_type for e in publisher.events] == [EventType.VALIDATION_FAILED]


@pytest.mark.parametrize("status", ["InternalError", "Forbidden"])
def test_ecs_after_allow_traffic_fails_closed_when_cloudwatch_fails(
    cd_aws: None, ledger: HookLedger, targets: TargetStore, publisher: RecordingPublisher, status: str
) -> None:
    _, deployment_id = _ecs(targets, "AfterAllowTraffic", 100.0)
    _cloudwatch_fault(status)
    outcome = _run(publisher, ledger, deployment_id, ECS_CONFIG + LENIENT)
    assert (outcome.phase, outcome.lifecycle_event, outcome.status) == ("post_traffic", "AfterAllowTraffic", "Failed")
    assert f"errors: missing evidence: CloudWatch returned {status}" in outcome.reason


@pytest.mark.parametrize(("setting", "status"), [("", "Succeeded"), (LENIENT, "Succeeded"), (STRICT, "Failed")])
def test_too_little_traffic_stays_governed_by_the_setting(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher, setting: str, status: str
) -> None:
    """No traffic, CloudWatch answering: not enough evidence, which is not missing evidence."""
    deployment_id = _lambda_after_traffic(target)
    outcome = _run(publisher, ledger, deployment_id, "defaults:\n  hooks:\n" + setting if setting else "{}")
    assert (outcome.phase, outcome.status) == ("post_traffic", status)
    assert "judge inconclusive: not enough evidence" in outcome.reason and "missing evidence" not in outcome.reason
    if status == "Succeeded":
        assert outcome.warning is not None and "no evidence (too little traffic)" in outcome.warning


# ------------------------------------------------------------------ the lifecycle event not named


def _no_running_event(monkeypatch: pytest.MonkeyPatch, reads: list[int], named_from: int | None = None) -> None:
    """GetDeploymentTarget names no event in progress (an eventually consistent read), until read
    ``named_from`` (counted from 1) if given."""
    real = cdmod.DeploymentTargetInfo.running_event

    def running_event(self: cdmod.DeploymentTargetInfo) -> str | None:
        reads.append(1)
        return real.fget(self) if named_from is not None and len(reads) >= named_from else None  # type: ignore[attr-defined]

    monkeypatch.setattr(cdmod.DeploymentTargetInfo, "running_event", property(running_event))


@pytest.mark.parametrize("green_percent", [100.0, 10.0])
def test_ecs_event_not_named_with_green_serving_production_is_judged(
    cd_aws: None, ledger: HookLedger, targets: TargetStore, publisher: RecordingPublisher,
    monkeypatch: pytest.MonkeyPatch, green_percent: float,
) -> None:  # fmt: skip
    _, deployment_id = _ecs(targets, "AfterAllowTraffic", green_percent)
    reads: list[int] = []
    _no_running_event(monkeypatch, reads)
    _cloudwatch_fault("InternalError")  # the judge ran: its missing evidence fails the hook
    outcome = _run(publisher, ledger, deployment_id, ECS_CONFIG)
    assert (outcome.phase, outcome.lifecycle_event, outcome.status) == ("post_traffic", "AfterAllowTraffic", "Failed")
    assert "judge inconclusive" in outcome.reason and "missing evidence, failing closed" in outcome.reason
    assert f"green has {green_percent / 100:.0%} of production traffic" in outcome.reason
    assert len(reads) == 1  # green's traffic decides: no read again
    assert DeploymentRepository(TABLE).assessments(deployment_id)  # the judge ran


def test_ecs_event_not_named_after_allow_traffic_began_is_judged(
    cd_aws: None, ledger: HookLedger, targets: TargetStore, publisher: RecordingPublisher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A stale read: AllowTraffic in progress (no hook) and green at 0%; only AfterAllowTraffic follows it."""
    _, deployment_id = _ecs(targets, "AllowTraffic")
    outcome = _run(publisher, ledger, deployment_id, ECS_CONFIG)
    assert (outcome.phase, outcome.lifecycle_event) == ("post_traffic", "AfterAllowTraffic")
    assert "judge inconclusive" in outcome.reason and "AllowTraffic event began" in outcome.reason


@pytest.mark.parametrize("event", ["AfterAllowTestTraffic", "BeforeInstall", "Install"])
def test_ecs_event_not_named_before_production_traffic_fails_closed(
    cd_aws: None, ledger: HookLedger, targets: TargetStore, publisher: RecordingPublisher,
    monkeypatch: pytest.MonkeyPatch, event: str,
) -> None:  # fmt: skip
    """Green has none of production and no hook is named, even when read again: which hook is unknown."""
    _, deployment_id = _ecs(targets, event)
    reads: list[int] = []
    if event != "Install":  # Install is named, but is no hook
        _no_running_event(monkeypatch, reads)
    outcome = _run(publisher, ledger, deployment_id, ECS_CONFIG)
    assert (outcome.phase, outcome.status) == ("unknown", "Failed")
    assert outcome.reason.startswith("lifecycle event unknown, failing closed: ")
    assert "green has no production traffic: cannot tell which hook this is" in outcome.reason
    if event != "Install":
        assert len(reads) == 1 + len(EVENT_REREAD_PAUSES)  # read again before failing
    assert DeploymentRepository(TABLE).get_deployment(deployment_id).phase == Phase.FAILED


def test_ecs_event_named_on_a_second_read_runs_its_checks(
    cd_aws: None, ledger: HookLedger, targets: TargetStore, publisher: RecordingPublisher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _, deployment_id = _ecs(targets, "AfterAllowTestTraffic")
    reads: list[int] = []
    _no_running_event(monkeypatch, reads, named_from=2)
    outcome = _run(publisher, ledger, deployment_id, ECS_CONFIG)
    assert (outcome.phase, outcome.lifecycle_event, outcome.status) == (
        "pre_traffic", "AfterAllowTestTraffic", "Succeeded"
    )  # fmt: skip
    assert len(reads) == 2


def test_ecs_deployment_target_unreadable_fails_closed(
    cd_aws: None, ledger: HookLedger, targets: TargetStore, publisher: RecordingPublisher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """An empty read (no deployment target yet): no event, no task sets: fails closed."""
    _, deployment_id = _ecs(targets, "AfterAllowTraffic", 100.0)
    monkeypatch.setattr(CodeDeployGateway, "deployment_target", lambda self, *a, **k: None)
    outcome = _run(publisher, ledger, deployment_id, ECS_CONFIG)
    assert (outcome.phase, outcome.status) == ("unknown", "Failed")
    assert "CodeDeploy names no lifecycle event in progress" in outcome.reason


def test_lambda_alias_partly_on_the_new_version_is_judged(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher
) -> None:
    """Never at BeforeAllowTraffic: the new version serving production is judged, not smoke-tested."""
    deployment_id = create_lambda_deployment(target, "orders", "live")
    LambdaTrafficShifter(target).shift(0.5)
    _cloudwatch_fault("InternalError")
    outcome = _run(publisher, ledger, deployment_id)
    assert (outcome.phase, outcome.lifecycle_event, outcome.status) == ("post_traffic", "AfterAllowTraffic", "Failed")
    assert "the alias routes 50% of its traffic to version" in outcome.reason
