"""ECS blue/green AfterAllowTraffic through the real ``LifecycleHookFunction`` on the embedded AWS: which hook an
execution is when GetDeploymentTarget answers a stale read, and which periods the judge counts as green's
production evidence.

- A stale GetDeploymentTarget read (an eventually consistent answer from before AllowTraffic, injected by a botocore
  after-call handler, as the audit reproduced it) shows a hook this deployment already answered under another hook
  execution: CodeDeploy runs each hook once, so the hook reads it again and, still stale, never runs the pre-traffic
  checks again: green's production listener (100% to green) says AfterAllowTraffic, the judge runs (CloudWatch
  failing here, so it has no evidence) and the answer is ``Failed``, never the ``Succeeded`` of the pre-traffic
  checks. Without that evidence and with more than AfterAllowTraffic left, the hook fails closed.
- AfterAllowTraffic's window starts at CodeDeploy's AllowTraffic start (GetDeploymentTarget's lifecycle events), not
  at the deployment's start: green's healthy test-listener traffic before it is no production evidence. After an
  ``ECSAllAtOnce`` shift there is then no evidence yet (README: the verdict is inconclusive): a green failing 5% of its
  production requests is never judged healthy on its test traffic.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from deployguard.aws import clients
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import LEDGER
from deployguard_local.ecs import (
    TARGETS,
    AlbTrafficSource,
    EcsStack,
    create_ecs_deployment,
    create_ecs_service,
    shift_traffic,
)
from deployguard_local.traffic import VersionBehaviour

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "examples" / "deployguard.yaml"


def _embedded(config_file: Path) -> Iterator[Any]:
    from deployguard_local.emulator import EmbeddedAws

    with EmbeddedAws(config_file=config_file) as aws:
        yield aws


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Any]:
    """The demo's configuration, checkout-web failing AfterAllowTraffic on too little evidence."""
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    config["services"]["checkout-web"]["hooks"]["fail_post_traffic_on_inconclusive"] = True
    path = tmp_path / "deployguard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    yield from _embedded(path)


def _hook(embedded: Any, deployment_id: str) -> tuple[dict[str, Any], str]:
    execution = LEDGER.issue(deployment_id)
    payload, errored = embedded.invoke(
        "LifecycleHookFunction", {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}
    )
    assert not errored, payload
    assert LEDGER.calls_for(execution) == 1 and LEDGER.status_of(execution) == payload["status"]
    return dict(payload), execution


class StaleTarget:
    """GetDeploymentTarget answering the snapshot it remembered (``remember``), ``times`` times (None: always)."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] | None = None
        self.times: int | None = None
        self.served = 0
        self.client = clients.client("codedeploy")

    def _remember(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.snapshot is None:
            self.snapshot = copy.deepcopy(parsed["deploymentTarget"])

    def _stale(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.times is None or self.served < self.times:
            parsed["deploymentTarget"] = copy.deepcopy(self.snapshot)
            self.served += 1

    def remember(self) -> None:
        self.client.meta.events.register("after-call.codedeploy.GetDeploymentTarget", self._remember)

    def serve(self, times: int | None = None) -> None:
        self.client.meta.events.unregister("after-call.codedeploy.GetDeploymentTarget", self._remember)
        self.times = times
        self.client.meta.events.register("after-call.codedeploy.GetDeploymentTarget", self._stale)

    def stop(self) -> None:
        self.client.meta.events.unregister("after-call.codedeploy.GetDeploymentTarget", self._stale)


def _cloudwatch_failing() -> None:
    """GetMetricData answers InternalError for every query: the judge, if it runs, has no evidence."""

    def after_call(parsed: dict[str, Any], **_: Any) -> None:
        for result in parsed.get("MetricDataResults", []):
            result["StatusCode"], result["Timestamps"], result["Values"] = "InternalError", [], []

    clients.client("cloudwatch").meta.events.register("after-call.cloudwatch.GetMetricData", after_call)


def _stale_after_allow_traffic(
    embedded: Any, answered: str, *, times: int | None = None, traffic: bool = True
) -> tuple[Any, ...]:
    """An ECSAllAtOnce deployment whose ``answered`` hook DeployGuard answered (its GetDeploymentTarget read
    remembered), then AllowTraffic (100% to green) and AfterAllowTraffic in progress; the remembered read served
    ``times`` times (None: always); ``traffic``: the load balancer publishes ~3,000 requests a minute. Returns
    the stack, the deployment, the first answer and the stale reads."""
    stack = create_ecs_service("shop", "checkout-web")
    source = AlbTrafficSource(
        stack.prod_listener_arn, 3000,
        {stack.blue_target_group: VersionBehaviour(), stack.green_target_group: VersionBehaviour()}, seed=5,
    )  # fmt: skip
    if traffic:
        embedded.clock.listeners.append(source.on_clock)
    deployment_id = create_ecs_deployment(stack, "checkout-web", "checkout-web-bg", "CodeDeployDefault.ECSAllAtOnce")
    TARGETS.enter(deployment_id, answered)
    stale = StaleTarget()
    stale.remember()
    first, _ = _hook(embedded, deployment_id)
    TARGETS.enter(deployment_id, "AllowTraffic")
    shift_traffic(stack, deployment_id, 100.0)  # all at once
    TARGETS.enter(deployment_id, "AfterAllowTraffic")
    embedded.clock.advance(300)
    stale.serve(times)
    return stack, deployment_id, first, stale


def _verdicts(deployment_id: str) -> list[tuple[Any, Any]]:
    trail = DeploymentRepository().audit_trail(deployment_id)
    return [(e.details.get("lifecycle_event"), e.details.get("phase")) for e in trail if e.action == "hook_verdict"]


@pytest.mark.parametrize(
    ("answered", "first_phase"), [("AfterAllowTestTraffic", "pre_traffic"), ("BeforeAllowTraffic", "no_checks")]
)
def test_a_stale_read_of_an_answered_hook_at_after_allow_traffic_runs_the_judge(
    embedded: Any, answered: str, first_phase: str
) -> None:
    _, deployment_id, first, stale = _stale_after_allow_traffic(embedded, answered)
    assert (first["lifecycle_event"], first["phase"], first["status"]) == (answered, first_phase, "Succeeded")
    _cloudwatch_failing()
    second, execution = _hook(embedded, deployment_id)
    stale.stop()
    assert stale.served == 3  # read, then read again after 1 s and 2 s: still the stale answer
    assert (second["lifecycle_event"], second["phase"]) == ("AfterAllowTraffic", "post_traffic")
    assert LEDGER.status_of(execution) == "Failed"
    assert f"still shows {answered} in progress" in second["reason"]
    assert f"answered its {answered} under another hook execution: a stale read" in second["reason"]
    assert "its production listener forwards 100% to green" in second["reason"]
    assert "judge" in second["reason"] and "pre-traffic" not in second["reason"]
    assert DeploymentRepository().assessments(deployment_id)  # the judge ran and its assessment was kept
    assert _verdicts(deployment_id) == [(answered, first_phase), ("AfterAllowTraffic", "post_traffic")]


def test_a_read_naming_no_hook_then_a_stale_one_is_still_taken_for_stale(embedded: Any) -> None:
    """The first read names no hook in progress (read again), the next ones the answered AfterAllowTestTraffic:
    stale all the same; green's listener says AfterAllowTraffic, and with no period since an AllowTraffic start the
    stale read does not tell, the execution in doubt is answered Failed."""
    _, deployment_id, _, stale = _stale_after_allow_traffic(embedded, "AfterAllowTestTraffic", times=0)
    stale.stop()
    assert stale.snapshot is not None
    reads: list[str] = []

    def no_hook_then_stale(parsed: dict[str, Any], **_: Any) -> None:
        answer = copy.deepcopy(stale.snapshot)
        assert answer is not None
        if not reads:
            for event in answer["ecsTarget"]["lifecycleEvents"]:
                event["status"] = "Succeeded" if event["status"] == "InProgress" else event["status"]
        reads.append("read")
        parsed["deploymentTarget"] = answer

    codedeploy = clients.client("codedeploy")
    codedeploy.meta.events.register("after-call.codedeploy.GetDeploymentTarget", no_hook_then_stale)
    try:
        second, execution = _hook(embedded, deployment_id)
    finally:
        codedeploy.meta.events.unregister("after-call.codedeploy.GetDeploymentTarget", no_hook_then_stale)
    assert len(reads) == 3
    assert (second["lifecycle_event"], second["phase"], LEDGER.status_of(execution)) == (
        "AfterAllowTraffic", "post_traffic", "Failed",
    )  # fmt: skip
    assert (
        "a stale read" in second["reason"]
        and "the hook was inferred from a stale read: failing closed" in (second["reason"])
    )


def test_a_stale_read_corrected_by_reading_again_is_judged_as_after_allow_traffic(embedded: Any) -> None:
    """One stale answer, then CodeDeploy's current one: the hook reads again and judges from what it shows."""
    _, deployment_id, _, stale = _stale_after_allow_traffic(embedded, "AfterAllowTestTraffic", times=1)
    second, execution = _hook(embedded, deployment_id)
    stale.stop()
    assert stale.served == 1
    assert (second["lifecycle_event"], second["phase"]) == ("AfterAllowTraffic", "post_traffic")
    assert "stale read" not in second["reason"] and "inferred" not in second["reason"]
    # no concurrent baseline after an all-at-once shift: inconclusive, which the demo's configuration lets pass
    # (the execution is no longer in doubt once CodeDeploy's read is current)
    assert "judge inconclusive" in second["reason"] and LEDGER.status_of(execution) == "Succeeded"
    assert second["warning"] and "post-traffic judge had no evidence" in second["warning"]
    assert DeploymentRepository().assessments(deployment_id)


def test_a_stale_read_without_evidence_of_traffic_fails_closed(embedded: Any) -> None:
    """Still stale, the production listener unreadable, BeforeAllowTraffic and AfterAllowTraffic both possible
    after the answered AfterAllowTestTraffic: which hook this is cannot be told, so it answers Failed."""
    _, deployment_id, _, stale = _stale_after_allow_traffic(embedded, "AfterAllowTestTraffic", traffic=False)

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, "DescribeListeners")

    elbv2 = clients.client("elbv2")
    event = f"before-call.{elbv2.meta.service_model.service_id.hyphenize()}.DescribeListeners"
    elbv2.meta.events.register(event, refuse)
    try:
        second, execution = _hook(embedded, deployment_id)
    finally:
        elbv2.meta.events.unregister(event, refuse)
        stale.stop()
    assert LEDGER.status_of(execution) == "Failed", second["reason"]
    assert second["phase"] == "unknown" and second["checks"] == [], second["reason"]
    assert second["reason"].startswith("lifecycle event unknown, failing closed: CodeDeploy still shows ")
    assert "green's production listener could not be read" in second["reason"]
    assert "cannot tell which of BeforeAllowTraffic, AfterAllowTraffic this is" in second["reason"]


def test_before_allow_traffic_after_an_answered_after_allow_test_traffic_is_no_stale_read(embedded: Any) -> None:
    """The next hook CodeDeploy really runs is taken as it shows it (no check configured for it: Succeeded)."""
    stack = create_ecs_service("shop", "checkout-web")
    deployment_id = create_ecs_deployment(stack, "checkout-web", "checkout-web-bg", "CodeDeployDefault.ECSAllAtOnce")
    TARGETS.enter(deployment_id, "AfterAllowTestTraffic")
    first, _ = _hook(embedded, deployment_id)
    TARGETS.enter(deployment_id, "BeforeAllowTraffic")
    second, execution = _hook(embedded, deployment_id)
    assert first["status"] == "Succeeded"
    assert (second["lifecycle_event"], second["phase"], LEDGER.status_of(execution)) == (
        "BeforeAllowTraffic", "no_checks", "Succeeded",
    )  # fmt: skip


# ------------------------------------------------------------------ the judge's window at AfterAllowTraffic


def _all_at_once_with_test_traffic(embedded: Any, green_error_rate: float) -> tuple[EcsStack, str]:
    """ECSAllAtOnce: 8 minutes of a healthy synthetic suite on green's test listener (production all on blue),
    then AllowTraffic (100% to green, which fails ``green_error_rate`` of production requests) and 80 s later
    AfterAllowTraffic in progress."""
    stack = create_ecs_service("shop", "checkout-web")
    bad = VersionBehaviour(error_rate=green_error_rate)
    production = AlbTrafficSource(
        stack.prod_listener_arn, 3000, {stack.blue_target_group: VersionBehaviour(), stack.green_target_group: bad},
        seed=3,
    )  # fmt: skip
    test_suite = AlbTrafficSource(stack.test_listener_arn, 300, {stack.green_target_group: VersionBehaviour()}, seed=4)
    embedded.clock.listeners.extend([production.on_clock, test_suite.on_clock])
    deployment_id = create_ecs_deployment(stack, "checkout-web", "checkout-web-bg", "CodeDeployDefault.ECSAllAtOnce")
    TARGETS.enter(deployment_id, "AfterAllowTestTraffic")
    first, _ = _hook(embedded, deployment_id)
    assert first["status"] == "Succeeded"
    now = embedded.clock()
    embedded.clock.advance(8 * 60 - (now - now.replace(second=0, microsecond=0)).total_seconds())
    TARGETS.enter(deployment_id, "AllowTraffic")
    shift_traffic(stack, deployment_id, 100.0)
    embedded.clock.advance(80)
    TARGETS.enter(deployment_id, "AfterAllowTraffic")
    return stack, deployment_id


def _allow_traffic_start(deployment_id: str) -> Any:
    body = clients.client("codedeploy").get_deployment_target(deploymentId=deployment_id, targetId="shop:checkout-web")[
        "deploymentTarget"
    ]["ecsTarget"]
    return next(e["startTime"] for e in body["lifecycleEvents"] if e["lifecycleEventName"] == "AllowTraffic")


def test_green_test_listener_traffic_is_no_production_evidence_after_an_all_at_once_shift(strict: Any) -> None:
    _, deployment_id = _all_at_once_with_test_traffic(strict, green_error_rate=0.05)
    started = _allow_traffic_start(deployment_id)
    second, execution = _hook(strict, deployment_id)
    assert (second["phase"], LEDGER.status_of(execution)) == ("post_traffic", "Failed")
    # one period since AllowTraffic began: too little evidence, never "healthy" on the 8 minutes of test traffic
    assert "judge inconclusive: not enough evidence" in second["reason"] and "in 1 of 1 periods" in second["reason"]
    assert "judge healthy" not in second["reason"]
    record = DeploymentRepository().get_deployment(deployment_id)
    assert record.traffic_started_at == started  # CodeDeploy's AllowTraffic start, kept for the record's windows


def test_after_an_all_at_once_shift_the_default_passes_with_the_no_evidence_warning(embedded: Any) -> None:
    """The demo's configuration (fail_post_traffic_on_inconclusive false): inconclusive, said loudly."""
    _, deployment_id = _all_at_once_with_test_traffic(embedded, green_error_rate=0.05)
    second, execution = _hook(embedded, deployment_id)
    assert LEDGER.status_of(execution) == "Succeeded"
    assert "judge inconclusive" in second["reason"]
    assert second["warning"] and "post-traffic judge had no evidence" in second["warning"]


def test_when_production_reached_green_is_unknown_no_period_counts(strict: Any) -> None:
    """GetDeploymentTarget names no AllowTraffic start (and no assessor saw the shift): green's test-listener
    traffic is still no evidence: no period is counted, the verdict is inconclusive and says why."""
    _, deployment_id = _all_at_once_with_test_traffic(strict, green_error_rate=0.05)

    def no_start(parsed: dict[str, Any], **_: Any) -> None:
        for event in parsed["deploymentTarget"]["ecsTarget"]["lifecycleEvents"]:
            event.pop("startTime", None)

    codedeploy = clients.client("codedeploy")
    codedeploy.meta.events.register("after-call.codedeploy.GetDeploymentTarget", no_start)
    try:
        second, execution = _hook(strict, deployment_id)
    finally:
        codedeploy.meta.events.unregister("after-call.codedeploy.GetDeploymentTarget", no_start)
    assert (second["phase"], LEDGER.status_of(execution)) == ("post_traffic", "Failed")
    assert "in 0 of 0 periods" in second["reason"] and "judge healthy" not in second["reason"]
    assert "when production traffic reached green is unknown" in second["reason"]
    assert DeploymentRepository().get_deployment(deployment_id).traffic_started_at is None


def test_a_canary_is_judged_from_allow_traffic_on(embedded: Any) -> None:
    """ECSCanary10Percent5Minutes: green at 10% then 100%; the window starts when AllowTraffic began and the healthy
    green passes with evidence (no warning)."""
    stack = create_ecs_service("shop", "checkout-web")
    source = AlbTrafficSource(
        stack.prod_listener_arn, 3000,
        {stack.blue_target_group: VersionBehaviour(), stack.green_target_group: VersionBehaviour()}, seed=8,
    )  # fmt: skip
    strict_clock = embedded.clock
    strict_clock.listeners.append(source.on_clock)
    deployment_id = create_ecs_deployment(stack, "checkout-web", "checkout-web-bg")
    TARGETS.enter(deployment_id, "AfterAllowTestTraffic")
    _hook(embedded, deployment_id)
    strict_clock.advance(120)
    TARGETS.enter(deployment_id, "AllowTraffic")
    started = _allow_traffic_start(deployment_id)
    shift_traffic(stack, deployment_id, 10.0)
    strict_clock.advance(5 * 60)
    shift_traffic(stack, deployment_id, 100.0)
    strict_clock.advance(60)
    TARGETS.enter(deployment_id, "AfterAllowTraffic")
    second, execution = _hook(embedded, deployment_id)
    assert (second["phase"], LEDGER.status_of(execution)) == ("post_traffic", "Succeeded")
    assert "judge healthy" in second["reason"] and not second["warning"]
    assert DeploymentRepository().get_deployment(deployment_id).traffic_started_at == started
    assert started - DeploymentRepository().get_deployment(deployment_id).started_at >= timedelta(minutes=2)
