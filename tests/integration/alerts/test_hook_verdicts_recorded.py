"""The lifecycle hook's answer never depends on notifications, and its verdict is recorded whatever
fails meanwhile: each through the real LifecycleHookFunction on the embedded AWS, a CodeDeploy
lifecycle hook event, faults injected with botocore hooks (deployguard_local.chaos.faults), time on
the simulated clock, the schedules of template.yaml firing as it passes (the minute tick, the
recorder's five-minute sweep)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from alert_rules_support import shop_stack, webhook_events

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.codedeploy import CodeDeployGateway
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.hooks.answers import VERDICT_KIND, HookAnswers
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import EventType, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.codedeploy import LEDGER, create_lambda_deployment
from deployguard_local.emulator import EmbeddedAws, sample_handler
from deployguard_local.receivers import LocalReceivers

SERVICES = {
    "orders-api": {"environment": "production", "function_name": "orders-api"},
    "broken-api": {"environment": "production", "function_name": "broken-api"},
}


@pytest.fixture
def stack() -> Iterator[tuple[EmbeddedAws, LocalReceivers]]:
    with shop_stack([], SERVICES) as (aws, receivers):
        yield aws, receivers


def _codedeploy(aws: EmbeddedAws, name: str, handler: Any = sample_handler) -> tuple[str, LambdaTarget]:
    versions = aws.deploy_sample_function(name, "live", handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    return create_lambda_deployment(target, name, "live"), target


def _hook(aws: EmbeddedAws, deployment_id: str, execution: str) -> dict[str, Any]:
    payload, errored = aws.invoke(
        "LifecycleHookFunction", {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}
    )
    assert not errored, payload
    return dict(payload)


def _actions(deployment_id: str) -> list[str]:
    return [e.action for e in DeploymentRepository().audit_trail(deployment_id)]


def _outbox(deployment_id: str) -> list[Any]:
    """The events still in the outbox: not published, or not yet seen by the alert engine."""
    return [o.event for o in DeploymentRepository().outbox(clock.now()) if o.event.deployment_id == deployment_id]


def _nothing_left(aws: EmbeddedAws, deployment_id: str, execution: str) -> None:
    """A later recorder run finds nothing to answer or record; CodeDeploy was answered once, one incident."""
    later = _recorder_run(aws)
    assert later.payload["hook_verdicts"] == [] and later.payload["hooks_answered"] == []
    assert LEDGER.calls_for(execution) == 1 and len(_incidents(deployment_id)) == 1


def test_sns_down_while_a_healthy_post_traffic_hook_warns_answers_succeeded_and_the_tick_publishes(
    stack: tuple[EmbeddedAws, LocalReceivers],
) -> None:
    aws, receivers = stack
    deployment_id, target = _codedeploy(aws, "orders-api")
    LambdaTrafficShifter(target).promote()  # AfterAllowTraffic: all traffic on the new version, no metrics yet
    execution = LEDGER.issue(deployment_id)
    assert aws.clock is not None
    with FaultInjector(aws.clock) as faults:
        publish = faults.on("sns", "Publish", [], then="5xx")  # every SNS Publish fails (botocore retries too)
        payload = _hook(aws, deployment_id, execution)
        # the judge had no evidence (a warning), the deployment is healthy: Succeeded, answered once
        assert (payload["phase"], payload["status"], payload["reported"]) == ("post_traffic", "Succeeded", True)
        assert "judge inconclusive" in payload["reason"] and "no evidence" in payload["warning"]
        assert LEDGER.status_of(execution) == "Succeeded" and LEDGER.calls_for(execution) == 1
        assert publish.injected >= 1  # the announcement was tried, and failed
        waiting = _outbox(deployment_id)
        assert [e.event_type for e in waiting] == [EventType.VALIDATION_WARNED]
        assert "notification_deferred" in _actions(deployment_id) and "notification" not in _actions(deployment_id)
    # SNS is back; the minute tick (AssessorFunction's schedule) publishes the outbox
    stop = aws.follow_schedules(["AssessorFunction"])
    aws.clock.advance(120)
    stop()
    aws.invoker.drain()
    assert _outbox(deployment_id) == []
    assert any(run.function == "AssessorFunction" and not run.errored for run in aws.schedule_runs)
    delivered = [e for e in webhook_events(receivers) if e.get("deployment_id") == deployment_id]
    assert [(e["event_type"], e["event_id"]) for e in delivered] == [("validation.warned", waiting[0].event_id)]
    assert LEDGER.calls_for(execution) == 1  # nothing answered again


def _deployment_record_failed(request: Any) -> bool:
    """The PutItem that writes a deployment record in phase ``failed`` (the hook's verdict)."""
    try:
        item = json.loads(request.body or b"{}").get("Item", {})
    except ValueError:
        return False
    return item.get("record_type", {}).get("S") == "deployment" and item.get("phase", {}).get("S") == "failed"


def _broken_rollout(aws: EmbeddedAws) -> tuple[str, str]:
    """A CodeDeploy rollout of broken-api (its smoke test answers 503) and its hook execution."""

    def broken(event: Any, context: Any) -> dict[str, Any]:
        return {"statusCode": 503, "body": "{}"}

    deployment_id, _ = _codedeploy(aws, "broken-api", broken)
    return deployment_id, LEDGER.issue(deployment_id)


def test_a_failed_verdict_whose_record_update_fails_is_recorded_by_the_recorder_schedule(
    stack: tuple[EmbeddedAws, LocalReceivers],
) -> None:
    aws, receivers = stack
    deployment_id, execution = _broken_rollout(aws)
    assert aws.clock is not None
    with FaultInjector(aws.clock) as faults:
        # DynamoDB fails the deployment's update to FAILED, every attempt (botocore's retries included)
        update = faults.on("dynamodb", "PutItem", [], then="5xx", when=_deployment_record_failed)
        payload = _hook(aws, deployment_id, execution)
        assert payload["status"] == "Failed" and payload["reported"]  # the answer does not wait on the record
        assert LEDGER.status_of(execution) == "Failed" and LEDGER.calls_for(execution) == 1
        assert update.injected >= 1
    aws.invoker.drain()
    record = DeploymentRepository().get_deployment(deployment_id)
    assert record.phase != Phase.FAILED  # not written ...
    events = DeploymentRepository().events(deployment_id)
    assert EventType.VALIDATION_FAILED not in [e.event_type for e in events]  # ... nor announced, nor alerted
    assert "canary" not in _incidents(deployment_id)
    assert "hook_verdict" in _actions(deployment_id)
    # ... but kept: the verdict's marker waits in the pending index
    pending = list(DeploymentRepository().table.query(
        IndexName="gsi1", KeyConditionExpression="gsi1pk = :pk",
        ExpressionAttributeValues={":pk": f"PENDING#{VERDICT_KIND}"},
    )["Items"])  # fmt: skip
    assert [p["deployment_id"] for p in pending] == [deployment_id]

    # the recorder's schedule (every five minutes) finishes the verdict
    stop = aws.follow_schedules(["DeploymentRecorderFunction"])
    aws.clock.advance(300)
    stop()
    aws.invoker.drain()
    runs = [r for r in aws.schedule_runs if r.function == "DeploymentRecorderFunction"]
    assert runs and not runs[0].errored, runs
    assert [(v["execution_id"], v["recorded"]) for v in runs[0].payload["hook_verdicts"]] == [(execution, True)]
    record = DeploymentRepository().get_deployment(deployment_id)
    assert record.phase == Phase.FAILED and [p.phase for p in record.phase_history].count(Phase.FAILED) == 1
    assert "smoke-test" in (record.decision_reason or "")
    failed = [e for e in DeploymentRepository().events(deployment_id) if e.event_type == EventType.VALIDATION_FAILED]
    assert len(failed) == 1 and _outbox(deployment_id) == []  # recorded and published
    assert any(e["event_type"] == "validation.failed" for e in webhook_events(receivers))
    assert _incidents(deployment_id)["canary"].rules == ["canary-issue"]  # its alert
    assert _actions(deployment_id).count("hook_verdict") == 1  # each part once
    # done: a later run has nothing to finish, and CodeDeploy was answered once
    stop = aws.follow_schedules(["DeploymentRecorderFunction"])
    aws.clock.advance(300)
    stop()
    later = [r for r in aws.schedule_runs if r.function == "DeploymentRecorderFunction"][-1]
    assert later.payload["hook_verdicts"] == [] and LEDGER.calls_for(execution) == 1


class Killed(BaseException):
    """Lambda ending the invocation (its timeout): no ``except Exception`` inside the handler catches it."""


@contextmanager
def killed_after_the_answer() -> Iterator[list[str]]:
    """The first PutLifecycleEventHookExecutionStatus CodeDeploy accepts ends the invocation right after
    (a botocore ``after-call`` hook raising :class:`Killed`): answered, nothing after it runs."""
    kills: list[str] = []

    def kill(http_response: Any, parsed: Any, **_: Any) -> None:
        if not kills and http_response.status_code == 200:
            kills.append(str(parsed.get("lifecycleEventHookExecutionId")))
            raise Killed("the function's timeout, right after CodeDeploy took the answer")

    name = "after-call.codedeploy.PutLifecycleEventHookExecutionStatus"
    emitters = [clients.client("codedeploy").meta.events, clients.client("codedeploy", retries=False).meta.events]
    for emitter in emitters:
        emitter.register(name, kill)
    try:
        yield kills
    finally:
        for emitter in emitters:
            emitter.unregister(name, kill)


def test_a_failed_verdict_whose_invocation_is_killed_right_after_the_answer_is_recorded_by_the_recorder_schedule(
    stack: tuple[EmbeddedAws, LocalReceivers],
) -> None:
    aws, receivers = stack
    deployment_id, execution = _broken_rollout(aws)
    assert aws.clock is not None
    with killed_after_the_answer() as kills, pytest.raises(Killed):
        _hook(aws, deployment_id, execution)
    assert kills == [execution]
    assert LEDGER.status_of(execution) == "Failed" and LEDGER.calls_for(execution) == 1  # CodeDeploy has it
    aws.invoker.drain()
    # nothing after the answer ran: no verdict recorded, nothing announced ...
    assert "hook_verdict" not in _actions(deployment_id)
    assert DeploymentRepository().get_deployment(deployment_id).phase != Phase.FAILED
    assert EventType.VALIDATION_FAILED not in [e.event_type for e in DeploymentRepository().events(deployment_id)]
    assert "canary" not in _incidents(deployment_id)
    # ... but the verdict was kept before the answer was sent
    assert [p["deployment_id"] for p in _pending_verdicts()] == [deployment_id]

    # the recorder's schedule: its sweep confirms the answer (sent again, the same Failed), then the verdict
    stop = aws.follow_schedules(["DeploymentRecorderFunction"])
    aws.clock.advance(300)
    stop()
    aws.invoker.drain()
    runs = [r for r in aws.schedule_runs if r.function == "DeploymentRecorderFunction"]
    assert runs and not runs[0].errored, runs
    assert [(h["execution_id"], h["action"], h["answer"]) for h in runs[0].payload["hooks_answered"]] == [
        (execution, "resent", "accepted")
    ]
    assert [(v["execution_id"], v["recorded"]) for v in runs[0].payload["hook_verdicts"]] == [(execution, True)]
    record = DeploymentRepository().get_deployment(deployment_id)
    assert record.phase == Phase.FAILED and [p.phase for p in record.phase_history].count(Phase.FAILED) == 1
    assert "smoke-test" in (record.decision_reason or "")
    verdicts = [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "hook_verdict"]
    assert len(verdicts) == 1 and verdicts[0].details["reported"] is True  # as CodeDeploy took it
    failed = [e for e in DeploymentRepository().events(deployment_id) if e.event_type == EventType.VALIDATION_FAILED]
    assert len(failed) == 1 and _outbox(deployment_id) == []
    delivered = [e for e in webhook_events(receivers) if e.get("deployment_id") == deployment_id]
    assert [e["event_type"] for e in delivered].count("validation.failed") == 1
    assert _incidents(deployment_id)["canary"].rules == ["canary-issue"]
    assert _pending_verdicts() == []
    # a later run finds nothing; CodeDeploy holds one result
    stop = aws.follow_schedules(["DeploymentRecorderFunction"])
    aws.clock.advance(300)
    stop()
    aws.invoker.drain()
    later = [r for r in aws.schedule_runs if r.function == "DeploymentRecorderFunction"][-1]
    assert later.payload["hook_verdicts"] == [] and later.payload["hooks_answered"] == []
    assert LEDGER.calls_for(execution) == 1 and len(_incidents(deployment_id)) == 1
    assert [e.event_type for e in DeploymentRepository().events(deployment_id)].count(EventType.VALIDATION_FAILED) == 1


def _pending_verdicts() -> list[dict[str, Any]]:
    return list(DeploymentRepository().table.query(
        IndexName="gsi1", KeyConditionExpression="gsi1pk = :pk",
        ExpressionAttributeValues={":pk": f"PENDING#{VERDICT_KIND}"},
    )["Items"])  # fmt: skip


def _incidents(deployment_id: str) -> dict[str, Any]:
    return {i.group: i for i in IncidentRepository(DeploymentRepository()).recent() if i.deployment_id == deployment_id}


def _recorder_run(aws: EmbeddedAws) -> Any:
    """One run of the recorder's schedule (every five minutes: its sweep of unanswered hooks, then the verdicts)."""
    assert aws.clock is not None
    before = len([r for r in aws.schedule_runs if r.function == "DeploymentRecorderFunction"])
    stop = aws.follow_schedules(["DeploymentRecorderFunction"])
    aws.clock.advance(300)
    stop()
    aws.invoker.drain()
    runs = [r for r in aws.schedule_runs if r.function == "DeploymentRecorderFunction"][before:]
    assert len(runs) == 1 and not runs[0].errored, runs
    return runs[0]


def _dead_attempt(deployment_id: str, execution: str) -> None:
    """An attempt of the hook claimed the execution (a lease of 60 s) and died at its timeout, undecided."""
    markers = HookAnswers(DeploymentRepository(), CodeDeployGateway()).markers
    assert markers.claim(execution, clock.now().timestamp() + 60, deployment_id=deployment_id).mine
    clock.sleep(120)


def _recorded_once(receivers: LocalReceivers, deployment_id: str, reason: str) -> None:
    """The Failed verdict recorded, each part once: the record FAILED, the audit, validation.failed, its alert."""
    record = DeploymentRepository().get_deployment(deployment_id)
    assert record.phase == Phase.FAILED and [p.phase for p in record.phase_history].count(Phase.FAILED) == 1
    verdicts = [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "hook_verdict"]
    assert len(verdicts) == 1 and reason in verdicts[0].reason and verdicts[0].details["reported"] is True
    failed = [e for e in DeploymentRepository().events(deployment_id) if e.event_type == EventType.VALIDATION_FAILED]
    assert len(failed) == 1 and _outbox(deployment_id) == []
    delivered = [e for e in webhook_events(receivers) if e.get("deployment_id") == deployment_id]
    assert [e["event_type"] for e in delivered].count("validation.failed") == 1
    assert _incidents(deployment_id)["canary"].rules == ["canary-issue"]
    assert _pending_verdicts() == []


def test_the_failed_a_redelivery_answers_for_a_dead_attempt_survives_a_kill_right_after_the_answer(
    stack: tuple[EmbeddedAws, LocalReceivers],
) -> None:
    """Lambda redelivers the execution; the redelivery answers Failed for the dead attempt and is killed right
    after CodeDeploy took it: the verdict, kept before the answer, is recorded once by the recorder's schedule."""
    aws, receivers = stack
    deployment_id, execution = _broken_rollout(aws)
    _dead_attempt(deployment_id, execution)
    with killed_after_the_answer() as kills, pytest.raises(Killed):
        _hook(aws, deployment_id, execution)
    assert kills == [execution] and LEDGER.status_of(execution) == "Failed" and LEDGER.calls_for(execution) == 1
    aws.invoker.drain()
    assert "hook_verdict" not in _actions(deployment_id)
    assert [p["deployment_id"] for p in _pending_verdicts()] == [deployment_id]  # kept before the answer
    run = _recorder_run(aws)
    assert [(h["execution_id"], h["action"], h["answer"]) for h in run.payload["hooks_answered"]] == [
        (execution, "resent", "accepted")  # the kill came before the answer was noted confirmed
    ]
    assert [(v["execution_id"], v["recorded"]) for v in run.payload["hook_verdicts"]] == [(execution, True)]
    _recorded_once(receivers, deployment_id, "ended without answering")
    _nothing_left(aws, deployment_id, execution)


def test_the_failed_the_recorder_sweep_answers_for_a_dead_attempt_is_recorded(
    stack: tuple[EmbeddedAws, LocalReceivers],
) -> None:
    """Nobody delivers the execution again: the recorder's sweep answers Failed for the dead attempt, and the same
    run records the verdict (kept before the sweep answered), once."""
    aws, receivers = stack
    deployment_id, execution = _broken_rollout(aws)
    _dead_attempt(deployment_id, execution)
    run = _recorder_run(aws)
    assert [(h["execution_id"], h["action"], h["answer"]) for h in run.payload["hooks_answered"]] == [
        (execution, "failed_for_dead_attempt", "accepted")
    ]
    assert [(v["execution_id"], v["recorded"]) for v in run.payload["hook_verdicts"]] == [(execution, True)]
    assert LEDGER.status_of(execution) == "Failed" and LEDGER.calls_for(execution) == 1
    _recorded_once(receivers, deployment_id, "ended without answering")
    assert _recorder_run(aws).payload["hook_verdicts"] == []


def test_a_failed_codedeploy_refuses_is_given_up_inline_as_the_schedule_gives_it_up(
    stack: tuple[EmbeddedAws, LocalReceivers],
) -> None:
    """CodeDeploy refuses the hook's Failed (the execution already answered or expired: a validation error no
    retry changes): the deployment is not recorded failed, nothing is announced, the refusal is audited once."""
    aws, _ = stack
    deployment_id, execution = _broken_rollout(aws)
    LEDGER.refuse_next.append("ValidationException")
    payload = _hook(aws, deployment_id, execution)
    assert (payload["status"], payload["answer"], payload["reported"]) == ("Failed", "refused", False)
    assert LEDGER.calls_for(execution) == 0
    aws.invoker.drain()
    assert DeploymentRepository().get_deployment(deployment_id).phase != Phase.FAILED
    assert EventType.VALIDATION_FAILED not in [e.event_type for e in DeploymentRepository().events(deployment_id)]
    assert "canary" not in _incidents(deployment_id) and "hook_verdict" not in _actions(deployment_id)
    [refused] = [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "hook_verdict_refused"]
    assert "ValidationException" in refused.reason and "not recorded" in refused.reason
    assert _pending_verdicts() == []  # given up, not left for the schedule
    run = _recorder_run(aws)
    assert run.payload["hook_verdicts"] == [] and run.payload["hooks_answered"] == []
    assert _actions(deployment_id).count("hook_verdict_refused") == 1


@contextmanager
def killed_keeping_the_verdict() -> Iterator[list[str]]:
    """The first write keeping a hook verdict (the ``HOOK-VERDICT`` marker's PutItem) ends the invocation before
    it is sent (a botocore ``before-send`` hook raising :class:`Killed`): the hook's decision is on its answer
    marker, its verdict not kept, CodeDeploy not answered."""
    kills: list[str] = []

    def kill(request: Any, **_: Any) -> None:
        if not kills and b'"lease_hook-verdict"' in (request.body or b""):
            kills.append(json.loads(request.body)["Item"]["deployment_id"]["S"])
            raise Killed("the function's timeout, between storing the decision and keeping the verdict")

    name = "before-send.dynamodb.PutItem"
    emitters = [clients.client("dynamodb").meta.events, clients.client("dynamodb", retries=False).meta.events,
                clients.resource("dynamodb").meta.client.meta.events]  # fmt: skip
    for emitter in emitters:
        emitter.register_first(name, kill)
    try:
        yield kills
    finally:
        for emitter in emitters:
            emitter.unregister(name, kill)


def _killed_before_keeping(aws: EmbeddedAws) -> tuple[str, str]:
    """A broken rollout whose hook decided Failed (stored on its answer marker) and was killed before keeping it."""
    deployment_id, execution = _broken_rollout(aws)
    with killed_keeping_the_verdict() as kills, pytest.raises(Killed):
        _hook(aws, deployment_id, execution)
    assert kills == [deployment_id]
    marker = HookAnswers(DeploymentRepository(), CodeDeployGateway()).markers.get(execution)
    assert marker is not None and marker.result == "Failed" and marker.state != "done"  # decided, not answered
    assert LEDGER.calls_for(execution) == 0 and _pending_verdicts() == []  # not sent, not kept
    aws.invoker.drain()
    assert "hook_verdict" not in _actions(deployment_id)
    return deployment_id, execution


def test_a_failed_decided_but_not_kept_is_recorded_once_by_the_redelivery_that_sends_it(
    stack: tuple[EmbeddedAws, LocalReceivers],
) -> None:
    """The hook is killed between storing its Failed on the answer marker and keeping the verdict: Lambda's
    redelivery sends the decided Failed again, keeping it first, and records it once CodeDeploy has it."""
    aws, receivers = stack
    deployment_id, execution = _killed_before_keeping(aws)
    payload = _hook(aws, deployment_id, execution)
    assert (payload["status"], payload["resent"], payload["answer"]) == ("Failed", True, "accepted")
    assert LEDGER.status_of(execution) == "Failed" and LEDGER.calls_for(execution) == 1
    aws.invoker.drain()
    _recorded_once(receivers, deployment_id, "ended before keeping its verdict")
    _nothing_left(aws, deployment_id, execution)
    assert _hook(aws, deployment_id, execution)["duplicate"]  # a later delivery: done, nothing again
    aws.invoker.drain()
    _recorded_once(receivers, deployment_id, "ended before keeping its verdict")


def test_a_failed_decided_but_not_kept_is_recorded_once_by_the_recorder_sweep_that_sends_it(
    stack: tuple[EmbeddedAws, LocalReceivers],
) -> None:
    """Nobody delivers the execution again: the recorder's sweep sends the decided Failed again, keeping it first,
    and the same run records it (finish_verdicts, once the answer marker says CodeDeploy has it), once."""
    aws, receivers = stack
    deployment_id, execution = _killed_before_keeping(aws)
    run = _recorder_run(aws)
    assert [(h["execution_id"], h["action"], h["answer"]) for h in run.payload["hooks_answered"]] == [
        (execution, "resent", "accepted")
    ]
    assert [(v["execution_id"], v["recorded"]) for v in run.payload["hook_verdicts"]] == [(execution, True)]
    assert LEDGER.status_of(execution) == "Failed" and LEDGER.calls_for(execution) == 1
    _recorded_once(receivers, deployment_id, "ended before keeping its verdict")
    _nothing_left(aws, deployment_id, execution)


def test_a_redelivery_resending_a_kept_failed_records_the_hooks_own_verdict_once(
    stack: tuple[EmbeddedAws, LocalReceivers],
) -> None:
    """The hook kept its Failed, sent it and was killed right after: a redelivery sends it again and records the
    verdict the hook kept (its checks' reason, not the resend's), once; the keep before the resend changes nothing."""
    aws, receivers = stack
    deployment_id, execution = _broken_rollout(aws)
    with killed_after_the_answer() as kills, pytest.raises(Killed):
        _hook(aws, deployment_id, execution)
    assert kills == [execution] and [p["deployment_id"] for p in _pending_verdicts()] == [deployment_id]
    aws.invoker.drain()
    payload = _hook(aws, deployment_id, execution)
    assert (payload["status"], payload["resent"], payload["answer"]) == ("Failed", True, "accepted")
    aws.invoker.drain()
    record = DeploymentRepository().get_deployment(deployment_id)
    assert record.phase == Phase.FAILED and "smoke-test" in (record.decision_reason or "")
    verdicts = [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "hook_verdict"]
    assert len(verdicts) == 1 and "smoke-test" in verdicts[0].reason
    failed = [e for e in DeploymentRepository().events(deployment_id) if e.event_type == EventType.VALIDATION_FAILED]
    assert len(failed) == 1 and _pending_verdicts() == []
    assert _incidents(deployment_id)["canary"].rules == ["canary-issue"]
    delivered = [e for e in webhook_events(receivers) if e.get("deployment_id") == deployment_id]
    assert [e["event_type"] for e in delivered].count("validation.failed") == 1
    assert _recorder_run(aws).payload["hook_verdicts"] == [] and LEDGER.calls_for(execution) == 1
