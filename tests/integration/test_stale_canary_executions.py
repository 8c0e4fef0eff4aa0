"""A canary whose execution ended before it did (StopExecution, a failure or timeout outside the state
machine's Catch) never leaves its alias split: the minute tick asks Step Functions about the execution
of a canary whose record stopped moving, and one that no longer runs has its alias put back at 100%
stable and its record ended rolled back, announced once. A running one is never touched, and a
DescribeExecution that fails changes nothing until the next tick asks again.

Each test runs a real canary execution on the embedded AWS up to its first Wait (alias at 10%)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from control_support import while_the_alias_moves_once
from tick_support import minute_tick

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.config import load_config
from deployguard.models import DeploymentStatus, EventType, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime, stale_canaries
from deployguard_local.emulator import EmbeddedAws, sample_handler

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "deployguard.yaml"
LATER = 10 * 60  # past the default step (180 s), an assessment (60 s) and the slack (5 min)


@pytest.fixture
def aws() -> Iterator[EmbeddedAws]:
    with EmbeddedAws(config_file=CONFIG) as embedded:
        yield embedded


def _tick(aws: EmbeddedAws) -> dict[str, Any]:
    return minute_tick(aws)


def _canary(
    aws: EmbeddedAws, name: str, at_first_wait: Callable[[str], None] | None = None
) -> tuple[LambdaTarget, dict[str, Any]]:
    """Run a canary of ``name`` through the state machine; at its first Wait (alias at 10%, record in
    progress) ``at_first_wait(execution_arn)`` runs, then the execution is stopped (StopExecution).
    Returns the target and the execution as DescribeExecution tells it."""
    assert aws.clock is not None
    versions = aws.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    request = {"deployment": {"deployment_id": f"dep-{name}", "service": name, "version": versions[1],
                              "target": target.model_dump(mode="json")}}  # fmt: skip
    fired: list[bool] = []

    def first_wait(before: Any, after: Any) -> None:
        if fired:
            return
        fired.append(True)
        arn = DeploymentRepository().get_deployment(f"dep-{name}").execution_arn
        assert arn is not None
        if at_first_wait is not None:
            at_first_wait(arn)
        clients.client("stepfunctions").stop_execution(executionArn=arn, cause="stopped by an operator")

    aws.clock.listeners.append(first_wait)
    try:
        execution = aws.run_state_machine("CanaryStateMachine", request, timeout=30)
    finally:
        aws.clock.listeners.remove(first_wait)
    aws.invoker.drain()
    return target, execution


def _rollbacks(deployment_id: str) -> list[Any]:
    return [e for e in DeploymentRepository().events(deployment_id) if e.event_type == EventType.ROLLBACK_COMPLETED]


def test_a_stopped_canary_has_its_alias_returned_and_its_record_ended_once(aws: EmbeddedAws) -> None:
    target, execution = _canary(aws, "orders-api")
    assert execution["status"] == "ABORTED"
    assert LambdaTrafficShifter(target).current().additional_weights == {target.new_version: 0.1}  # left split
    record = DeploymentRepository().get_deployment("dep-orders-api")
    assert record.status == DeploymentStatus.IN_PROGRESS and record.execution_arn == execution["executionArn"]

    assert _tick(aws)["executions"]["described"] == 0  # not stale yet: no call
    assert aws.clock is not None
    aws.clock.advance(LATER)
    report = _tick(aws)["executions"]
    assert report["repaired"] == ["dep-orders-api"] and report["described"] == 1

    assert LambdaTrafficShifter(target).current().weight_of(target.stable_version) == 1.0
    record = DeploymentRepository().get_deployment("dep-orders-api")
    assert record.status == DeploymentStatus.ROLLED_BACK and record.decision == "rolled_back"
    assert record.decision_reason == (
        f"the canary's execution ended ABORTED before it finished: traffic returned to version {target.stable_version}"
    )
    [announced] = _rollbacks("dep-orders-api")
    assert announced.details["execution_status"] == "ABORTED" and announced.message == record.decision_reason
    assert [e.action for e in DeploymentRepository().audit_trail("dep-orders-api")].count("execution_ended") == 1

    aws.clock.advance(LATER)  # later ticks: the record has ended, nothing more is asked or announced
    assert _tick(aws)["executions"] == {"described": 0, "running": [], "repaired": [], "unknown": [], "failed": {},
                                        "deferred": 0}  # fmt: skip
    assert len(_rollbacks("dep-orders-api")) == 1


def test_a_running_canary_is_never_touched(aws: EmbeddedAws) -> None:
    seen: dict[str, Any] = {}

    def tick_while_it_runs(arn: str) -> None:  # in the execution's own thread, at its first Wait: it runs
        assert aws.clock is not None
        aws.clock.advance(LATER)
        seen["status"] = clients.client("stepfunctions").describe_execution(executionArn=arn)["status"]
        seen["report"] = _tick(aws)["executions"]
        seen["record"] = DeploymentRepository().get_deployment("dep-orders-api")
        seen["alias"] = LambdaTrafficShifter(seen["record"].target).current()

    target, _ = _canary(aws, "orders-api", tick_while_it_runs)
    assert seen["status"] == "RUNNING"
    assert seen["report"]["running"] == ["dep-orders-api"] and seen["report"]["repaired"] == []
    assert seen["record"].status == DeploymentStatus.IN_PROGRESS
    assert seen["alias"].additional_weights == {target.new_version: 0.1}
    assert _rollbacks("dep-orders-api") == []


@contextmanager
def _throttled_describe() -> Iterator[None]:
    """Step Functions throttles DescribeExecution (botocore before-call hook on the tick's client)."""
    from botocore.exceptions import ClientError

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "DescribeExecution")

    events = clients.client("stepfunctions", retries=False).meta.events
    events.register("before-call.states.DescribeExecution", refuse, unique_id="test-throttled-describe")
    try:
        yield
    finally:
        events.unregister("before-call.states.DescribeExecution", unique_id="test-throttled-describe")


def test_a_throttled_describe_changes_nothing_and_the_next_tick_repairs(aws: EmbeddedAws) -> None:
    target, _ = _canary(aws, "orders-api")
    assert aws.clock is not None
    aws.clock.advance(LATER)
    with _throttled_describe():
        report = _tick(aws)["executions"]
    assert "ThrottlingException" in report["failed"]["dep-orders-api"] and report["repaired"] == []
    assert LambdaTrafficShifter(target).current().additional_weights == {target.new_version: 0.1}
    assert DeploymentRepository().get_deployment("dep-orders-api").status == DeploymentStatus.IN_PROGRESS
    assert _rollbacks("dep-orders-api") == []

    aws.clock.advance(60)  # the next tick asks again (the failed call's marker was released)
    assert _tick(aws)["executions"]["repaired"] == ["dep-orders-api"]
    assert LambdaTrafficShifter(target).current().weight_of(target.stable_version) == 1.0


def test_two_racing_repairs_end_and_announce_it_once(aws: EmbeddedAws) -> None:
    """A second tick (past its own marker) repairs the same canary while the first one's alias move goes
    out: one wins the conditional write, the other leaves the record as the winner wrote it."""
    target, _ = _canary(aws, "orders-api")
    assert aws.clock is not None
    aws.clock.advance(LATER)
    repository, publisher, config = DeploymentRepository(), runtime.publisher(), load_config()
    stale = repository.get_deployment("dep-orders-api")
    raced: list[Any] = []

    def racing_tick() -> None:
        raced.append(stale_canaries._end(config, repository, publisher, stale, "ABORTED", clock.now()))

    with while_the_alias_moves_once(racing_tick):
        run = stale_canaries.check_executions(config, repository, publisher, [stale], clock.now())
    assert raced == [True] and run.repaired == [] and run.failed == {}  # the racer ended it; the first left it
    assert LambdaTrafficShifter(target).current().weight_of(target.stable_version) == 1.0
    assert DeploymentRepository().get_deployment("dep-orders-api").status == DeploymentStatus.ROLLED_BACK
    assert len(_rollbacks("dep-orders-api")) == 1
    assert [e.action for e in DeploymentRepository().audit_trail("dep-orders-api")].count("execution_ended") == 1


def test_a_record_without_its_execution_is_left_alone_and_reported(aws: EmbeddedAws) -> None:
    from control_support import canary_in_flight

    target = canary_in_flight(aws, "orders-api", 0.25)  # recorded before Validate kept the execution
    assert aws.clock is not None
    aws.clock.advance(LATER)
    report = _tick(aws)["executions"]
    assert report["unknown"] == ["dep-orders-api"] and report["described"] == 0
    assert LambdaTrafficShifter(target).current().additional_weights == {target.new_version: 0.25}
    assert DeploymentRepository().get_deployment("dep-orders-api").status == DeploymentStatus.IN_PROGRESS


@contextmanager
def _described_as(status: str, output: dict[str, Any] | None = None) -> Iterator[None]:
    """DescribeExecution answers ``status`` (and ``output``) (botocore after-call hook on the tick's client)."""

    def answer(parsed: dict[str, Any], **_: Any) -> None:
        parsed["status"] = status
        if output is not None:
            parsed["output"] = json.dumps(output)

    events = clients.client("stepfunctions", retries=False).meta.events
    events.register("after-call.states.DescribeExecution", answer, unique_id="test-described-as")
    try:
        yield
    finally:
        events.unregister("after-call.states.DescribeExecution", unique_id="test-described-as")


def test_a_succeeded_execution_whose_promotion_was_not_recorded_is_finished_promoted(aws: EmbeddedAws) -> None:
    """Promote moved the alias to 100% new, its record did not follow and NotifyOutcome gave up (Catch -> Done):
    the execution SUCCEEDED with the record in progress. The tick finishes the promotion; it never rolls back."""
    target, _ = _canary(aws, "orders-api", lambda arn: LambdaTrafficShifter(target_of("orders-api")).promote())
    assert aws.clock is not None
    aws.clock.advance(LATER)
    with _described_as("SUCCEEDED"):
        report = _tick(aws)["executions"]
    assert report["repaired"] == ["dep-orders-api"]
    assert LambdaTrafficShifter(target).current().weight_of(target.new_version) == 1.0  # left promoted
    record = DeploymentRepository().get_deployment("dep-orders-api")
    assert (record.status, record.decision) == (DeploymentStatus.SUCCEEDED, "promoted")
    assert record.decision_reason == (
        "the canary's execution succeeded but its record was not finished: the alias routes all traffic to"
        f" version {target.new_version}: promoted"
    )
    events = DeploymentRepository().events("dep-orders-api")
    assert [e.event_type for e in events].count(EventType.PROMOTION_COMPLETED) == 1 and _rollbacks(
        "dep-orders-api"
    ) == []


def test_a_succeeded_execution_with_the_alias_split_is_rolled_back(aws: EmbeddedAws) -> None:
    target, _ = _canary(aws, "orders-api")
    assert aws.clock is not None
    aws.clock.advance(LATER)
    with _described_as("SUCCEEDED"):
        assert _tick(aws)["executions"]["repaired"] == ["dep-orders-api"]
    assert LambdaTrafficShifter(target).current().weight_of(target.stable_version) == 1.0
    assert DeploymentRepository().get_deployment("dep-orders-api").status == DeploymentStatus.ROLLED_BACK


def target_of(name: str) -> LambdaTarget:
    target = DeploymentRepository().get_deployment(f"dep-{name}").target
    assert isinstance(target, LambdaTarget)
    return target


def test_a_succeeded_execution_that_held_the_canary_is_recorded_held_not_rolled_back(aws: EmbeddedAws) -> None:
    """Rollback ran with next "hold" and NotifyOutcome gave up: the execution's output says held, so the record
    ends held (retryable by a person) at the time the execution ended it, announced as a hold, not a rollback."""
    target, _ = _canary(aws, "orders-api")
    ended = clock.now()
    assert aws.clock is not None
    aws.clock.advance(LATER)
    output = {"deployment_id": "dep-orders-api", "decision": "held", "reason": "no evidence after 12 periods",
              "ended_at": ended.isoformat(), "next": "done"}  # fmt: skip
    with _described_as("SUCCEEDED", output):
        assert _tick(aws)["executions"]["repaired"] == ["dep-orders-api"]
    assert LambdaTrafficShifter(target).current().weight_of(target.stable_version) == 1.0
    record = DeploymentRepository().get_deployment("dep-orders-api")
    assert (record.status, record.decision, record.ended_at) == (DeploymentStatus.STOPPED, "held", ended)
    assert record.decision_reason is not None and "held: no evidence after 12 periods" in record.decision_reason
    [event] = [e for e in DeploymentRepository().events("dep-orders-api") if "execution_status" in e.details]
    assert event.title == "Canary Held For A Person" and event.severity.value == "warning"
