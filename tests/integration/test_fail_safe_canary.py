"""Fail-safe canary under AWS faults (issue 11, parts 1 and 4): faults injected through botocore
event hooks on the embedded AWS, keyed on simulated time; no sleeps.

Each test failed before its fix: the Rollback task recorded and announced before it moved
the alias; Promote announced before it returned; a conditional write answered 500 after it
succeeded was retried into "already exists"; nothing repaired traffic a record disagreed with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from deployguard.aws.events import EventPublisher
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.chaos.scenario import REGRESSION, prepare_canary, run_canary, write_lean_config
from deployguard_local.emulator import EmbeddedAws, sample_handler

STEP_FUNCTION = "deployguard-local-CanaryStepFunction"


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[EmbeddedAws]:
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as embedded:
        yield embedded


@pytest.fixture
def faults(aws: EmbeddedAws) -> Iterator[FaultInjector]:
    assert aws.clock is not None
    with FaultInjector(aws.clock) as injector:
        injector.watch(aws.registry)
        yield injector


@pytest.fixture
def direct_faults(aws: EmbeddedAws) -> Iterator[FaultInjector]:
    """Faults on every call, the test's own included (no function invocations to watch)."""
    assert aws.clock is not None
    with FaultInjector(aws.clock) as injector:
        yield injector


def runtime_publisher() -> EventPublisher:
    from deployguard.workflows import runtime

    return runtime.publisher()


def _step_function(aws: EmbeddedAws) -> str:
    return aws.ref("CanaryStepFunction")


def _after_the_outage(aws: EmbeddedAws, seconds: float = 360) -> None:
    """Simulated time passes (the assessor's minute ticks publish what SNS refused)."""
    assert aws.clock is not None
    aws.clock.advance(seconds)
    aws.invoker.drain()


def _events(deployment_id: str) -> Counter[str]:
    return Counter(e.event_type.value for e in DeploymentRepository().events(deployment_id))


def _published(faults: FaultInjector, deployment_id: str) -> Counter[str]:
    ids = {m["event_id"]: m["event_type"] for m in faults.published if m.get("deployment_id") == deployment_id}
    return Counter(ids.values())


@pytest.mark.parametrize("service", ["dynamodb", "sns"])
def test_rollback_moves_traffic_first_when_dynamodb_or_sns_is_down(
    aws: EmbeddedAws, faults: FaultInjector, service: str
) -> None:
    run = prepare_canary(aws, f"rb-{service}", REGRESSION)
    faults.arm(_step_function(aws), "rollback", service, "outage", 60)
    aws.follow_schedules(["AssessorFunction", "TrafficCheckFunction"])
    run_canary(aws, run)
    _after_the_outage(aws)
    assert run.execution is not None and run.execution["status"] == "SUCCEEDED"  # not DeployGuard.RollbackFailed
    assert run.stable_only
    assert faults.injected, "the outage was injected"
    deployment = DeploymentRepository().get_deployment(run.deployment_id)
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "rolled_back")
    recorded = _events(run.deployment_id)
    for once in ("rollback.initiated", "rollback.completed", "deployment.failed"):
        assert recorded[once] == 1, recorded
    assert _published(faults, run.deployment_id) == recorded  # every recorded event went out, once (by now)


def test_promotion_survives_an_sns_outage_longer_than_a_task_retry(aws: EmbeddedAws, faults: FaultInjector) -> None:
    run = prepare_canary(aws, "promote-sns")
    faults.arm(_step_function(aws), "promote", "sns", "outage", 300)
    aws.follow_schedules(["AssessorFunction", "TrafficCheckFunction"])
    run_canary(aws, run)
    _after_the_outage(aws)
    assert run.execution is not None and run.execution["status"] == "SUCCEEDED"
    assert run.alias().weight_of(run.target.new_version) == 1.0  # not rolled back for a notification
    deployment = DeploymentRepository().get_deployment(run.deployment_id)
    assert (deployment.status, deployment.decision) == (DeploymentStatus.SUCCEEDED, "promoted")
    recorded = _events(run.deployment_id)
    assert recorded["promotion.completed"] == 1 and recorded["deployment.completed"] == 1
    assert _published(faults, run.deployment_id) == recorded


def test_a_write_answered_500_after_it_succeeded_is_recognised(aws: EmbeddedAws, faults: FaultInjector) -> None:
    run = prepare_canary(aws, "ambiguous")
    faults.arm(_step_function(aws), "validate", "dynamodb", "ambiguous", 1, "PutItem")
    run_canary(aws, run)
    assert faults.injected["dynamodb:PutItem:ambiguous"] > 0
    deployment = DeploymentRepository().get_deployment(run.deployment_id)
    assert deployment.decision == "promoted"  # not rejected "already exists" with its record in progress
    assert run.alias().weight_of(run.target.new_version) == 1.0


def test_every_conditional_write_recognises_its_own_earlier_write(direct_faults: FaultInjector) -> None:
    repository = DeploymentRepository()
    target = LambdaTarget(function_name="f", alias="live", stable_version="1", new_version="2")
    faults = direct_faults
    faults.at("dynamodb", "ambiguous", 1, "PutItem")
    deployment = repository.create_deployment(
        Deployment(deployment_id="d-amb", service="f", environment="production", version="2", target=target)
    )
    repository.update_deployment("d-amb", lambda d: setattr(d, "status", DeploymentStatus.IN_PROGRESS))
    repository.audit("d-amb", "validated", "test")
    assert repository.claim_once("LOCK", "d-amb", timedelta(minutes=5))
    assert faults.injected["dynamodb:PutItem:ambiguous"] >= 4
    stored = repository.get_deployment("d-amb")
    assert (stored.status, stored.version_counter) == (DeploymentStatus.IN_PROGRESS, deployment.version_counter + 1)
    assert [a.action for a in repository.audit_trail("d-amb")] == ["validated"]


def _ended_with_split_alias(aws: EmbeddedAws, name: str, decision: str) -> LambdaTarget:
    versions = aws.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    repository = DeploymentRepository()
    deployment = Deployment(deployment_id=f"dep-{name}", service=name, environment="production",
                            version=versions[1], target=target, status=DeploymentStatus.IN_PROGRESS)  # fmt: skip
    repository.create_deployment(deployment)

    def end(d: Deployment) -> None:
        d.status = DeploymentStatus.STOPPED if decision == "held" else DeploymentStatus.ROLLED_BACK
        d.decision, d.ended_at = decision, aws.clock() if aws.clock else None

    repository.update_deployment(deployment.deployment_id, end)
    from deployguard.aws.lambda_traffic import LambdaTrafficShifter

    LambdaTrafficShifter(target).shift(0.5)  # the record says ended; half the traffic says otherwise
    return target


@pytest.mark.parametrize("decision", ["rolled_back", "held"])
def test_the_minute_tick_puts_traffic_where_the_record_says(
    aws: EmbeddedAws, faults: FaultInjector, decision: str
) -> None:
    from deployguard.aws.lambda_traffic import LambdaTrafficShifter

    target = _ended_with_split_alias(aws, f"split-{decision.replace('_', '-')}", decision)
    assert aws.clock is not None
    aws.follow_schedules(["AssessorFunction", "TrafficCheckFunction"])
    aws.clock.advance(180)  # three minute ticks: one repair, then nothing to repair
    aws.invoker.drain()
    assert LambdaTrafficShifter(target).current().weight_of(target.stable_version) == 1.0
    deployment_id = f"dep-{target.function_name}"
    repairs = [a for a in DeploymentRepository().audit_trail(deployment_id) if a.action == "traffic_reconciled"]
    assert len(repairs) == 1 and "0.5" in repairs[0].reason
    assert _events(deployment_id) == Counter({"rollback.completed": 1})
    assert _published(faults, deployment_id) == Counter({"rollback.completed": 1})


def _lambda_reads(calls: list[str]) -> Callable[..., None]:
    def note(model: Any, **_: Any) -> None:
        calls.append(model.name)

    return note


def test_an_ended_deployments_traffic_is_checked_a_bounded_number_of_times(aws: EmbeddedAws) -> None:
    from deployguard.aws import clients
    from deployguard.aws.lambda_traffic import LambdaTrafficShifter
    from deployguard.workflows.reconciler import CHECK_SCHEDULE, reconcile_traffic

    target = _ended_with_split_alias(aws, "bounded", "rolled_back")
    repository, publisher = DeploymentRepository(), runtime_publisher()
    calls: list[str] = []
    clients.client("lambda").meta.events.register("before-call.lambda.*", _lambda_reads(calls), unique_id="t-bounded")
    assert aws.clock is not None
    minutes = 0
    while minutes <= 25 * 60:  # every minute for the first 20 minutes, then every 15: 25 hours of ticks
        reconcile_traffic(repository, publisher, now=aws.clock())
        step = 1 if minutes < 20 else 15
        aws.clock.advance(60 * step)
        minutes += step
    record = repository.get_deployment("dep-bounded")
    assert record.traffic_check.checks == len(CHECK_SCHEDULE) and record.traffic_check.reconciled_at is not None
    assert calls.count("GetAlias") <= len(CHECK_SCHEDULE) + 1  # one read a check, one read back after the repair
    assert calls.count("UpdateAlias") == 1
    assert LambdaTrafficShifter(target).current().weight_of(target.stable_version) == 1.0
    actions = [a.action for a in repository.audit_trail("dep-bounded")]
    assert actions.count("traffic_reconciled") == 1 and actions.count("traffic_checks_ended") == 1
    assert _events("dep-bounded") == Counter({"rollback.completed": 1})
    assert repository.traffic_checks_due(aws.clock() + timedelta(days=2)) == []  # left the index


def test_a_check_that_keeps_failing_gives_up_loudly_after_a_bounded_number(
    aws: EmbeddedAws, direct_faults: FaultInjector
) -> None:
    from deployguard.workflows.reconciler import MAX_FAILURES, reconcile_traffic

    _ended_with_split_alias(aws, "unreadable", "held")
    repository, publisher = DeploymentRepository(), runtime_publisher()
    assert aws.clock is not None
    direct_faults.at("lambda", "outage", 48 * 3600, "GetAlias")
    for _ in range(6 * 24):  # every ten minutes for 24 hours
        reconcile_traffic(repository, publisher, now=aws.clock())
        aws.clock.advance(600)
    record = repository.get_deployment("dep-unreadable")
    assert record.traffic_check.failures == MAX_FAILURES and record.traffic_check.reconciled_at is not None
    assert MAX_FAILURES <= direct_faults.injected["lambda:GetAlias:outage"] <= 5 * MAX_FAILURES  # with retries
    ended = [a for a in repository.audit_trail("dep-unreadable") if a.action == "traffic_checks_ended"]
    assert len(ended) == 1 and "not verified" in ended[0].reason


def test_a_rollback_beyond_its_retries_is_finished_by_the_reconciler(aws: EmbeddedAws, faults: FaultInjector) -> None:
    run = prepare_canary(aws, "rb-lambda", REGRESSION)
    faults.arm(_step_function(aws), "rollback", "lambda", "outage", 300, "UpdateAlias")
    aws.follow_schedules(["AssessorFunction", "TrafficCheckFunction"])
    run_canary(aws, run)
    assert run.execution is not None and run.execution["error"] == "DeployGuard.RollbackFailed"
    deployment = DeploymentRepository().get_deployment(run.deployment_id)
    assert (deployment.status, deployment.decision) == (DeploymentStatus.FAILED, "rollback_failed")
    assert aws.clock is not None
    aws.clock.advance(360)  # past the outage: the minute tick repairs what the state machine could not
    aws.invoker.drain()
    assert run.stable_only
    actions = [a.action for a in DeploymentRepository().audit_trail(run.deployment_id)]
    assert actions.count("traffic_reconciled") == 1 and "rollback_failed" in actions
    assert _events(run.deployment_id)["rollback.failed"] == 1


def test_an_event_recorded_while_sns_is_down_is_published_by_the_minute_tick(
    aws: EmbeddedAws, faults: FaultInjector
) -> None:
    run = prepare_canary(aws, "outbox")
    faults.arm(_step_function(aws), "shift", "sns", "outage", 300)
    aws.follow_schedules(["AssessorFunction", "TrafficCheckFunction"])
    run_canary(aws, run)
    assert aws.clock is not None
    aws.clock.advance(300)  # past the outage
    aws.invoker.drain()
    assert faults.injected
    recorded = _events(run.deployment_id)
    assert recorded["canary.started"] >= 1
    assert _published(faults, run.deployment_id) == recorded  # recorded and never published: none


def test_a_healthy_release_outlives_a_minute_of_faults_in_its_tasks(aws: EmbeddedAws, faults: FaultInjector) -> None:
    """Issue 11, part 5: a fault of a minute is retried, not taken for a reason to roll back. DynamoDB's
    500 reaches Step Functions as ``InternalServerError`` (botocore's modeled exception, not
    ``ClientError``), and Lambda's own errors were retried for 14 s only: both rolled back healthy
    releases in ``make chaos``."""
    for name, state, service in (("dyn500", "validate", "dynamodb"), ("task500", "assess", "task")):
        run = prepare_canary(aws, name)
        faults.arm(_step_function(aws), state, service, "5xx", 60)
        run_canary(aws, run)
        assert any(key.startswith(f"{service}:") for key in faults.injected), faults.injected
        deployment = DeploymentRepository().get_deployment(run.deployment_id)
        assert (deployment.decision, run.execution and run.execution["status"]) == ("promoted", "SUCCEEDED")
        assert run.alias().weight_of(run.target.new_version) == 1.0
        faults.clear()
