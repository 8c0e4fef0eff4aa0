"""The hook on moto: every path ends with exactly one status call and a complete record."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto_table import TABLE, RecordingPublisher
from pytest_httpserver import HTTPServer

import deployguard.hooks.lifecycle as lifecycle
from deployguard.aws import clients
from deployguard.aws.codedeploy import CodeDeployGateway
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.config import parse_config
from deployguard.hooks.answers import VERDICT_KIND
from deployguard.hooks.lifecycle import HOOK_KIND, LifecycleHook
from deployguard.models import EcsTarget, EventType, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import HookLedger, create_lambda_deployment
from deployguard_local.ecs import TargetStore, create_ecs_deployment, create_ecs_service, shift_traffic


def _hook(publisher: RecordingPublisher, config: str = "{}", gateway: CodeDeployGateway | None = None) -> LifecycleHook:
    return LifecycleHook(
        parse_config(config, "t.yaml"),
        DeploymentRepository(TABLE),
        publisher,
        gateway,
        local_mode=True,
        sleep=lambda s: None,
    )


def _http_only(url: str) -> str:
    return (
        "defaults:\n  hooks:\n    report_margin_seconds: 1\n    pre_traffic:\n"
        f"      - {{name: health, type: http, url: '{url}', retries: 0, timeout_seconds: 2, "
        "allowed_hosts: [localhost]}\n"
    )


def _event(deployment_id: str, execution_id: str) -> dict[str, str]:
    return {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution_id}


def _verdicts(deployment_id: str) -> list[Any]:
    return [e for e in DeploymentRepository(TABLE).audit_trail(deployment_id) if e.action == "hook_verdict"]


def test_duplicate_delivery_runs_the_checks_once_and_answers_once(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/health").respond_with_json({"status": "ok"})
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    hook = _hook(publisher, _http_only(httpserver.url_for("/health")))
    first = hook.handle(_event(deployment_id, execution), lambda: 30_000)
    second = hook.handle(_event(deployment_id, execution), lambda: 30_000)
    assert (first.status, first.reported, first.phase) == ("Succeeded", True, "pre_traffic")
    assert second.duplicate and second.status is None and not second.reported and second.checks == []
    assert len(httpserver.log) == 1  # the health endpoint was asked once
    assert ledger.attempts_for(execution) == 1 and ledger.status_of(execution) == "Succeeded"
    assert len(_verdicts(deployment_id)) == 1
    record = DeploymentRepository(TABLE).get_deployment(deployment_id)
    assert record.driver == "codedeploy" and record.phase == Phase.VALIDATION and record.version == target.new_version


def test_a_first_attempt_that_died_unanswered_is_answered_failed_by_the_redelivery(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    # the first attempt claimed the execution, then was killed at its timeout without answering
    DeploymentRepository(TABLE).claim_once(HOOK_KIND, execution, timedelta(days=2), deadline=sim_clock().timestamp())
    sim_clock.advance(60)
    outcome = _hook(publisher).handle(_event(deployment_id, execution), lambda: 30_000)
    assert outcome.status == "Failed" and outcome.reported and "ended without answering" in outcome.reason
    again = _hook(publisher).handle(_event(deployment_id, execution), lambda: 30_000)
    assert again.duplicate and ledger.attempts_for(execution) == 1


def test_an_internal_exception_fails_closed(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("checks exploded")

    monkeypatch.setattr(lifecycle, "run_check", explode)
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    outcome = _hook(publisher).handle(_event(deployment_id, execution), lambda: 30_000)
    assert outcome.status == "Failed" and "RuntimeError: checks exploded" in outcome.reason
    assert ledger.attempts_for(execution) == 1 and ledger.status_of(execution) == "Failed"
    assert "checks exploded" in _verdicts(deployment_id)[0].reason
    assert DeploymentRepository(TABLE).get_deployment(deployment_id).phase == Phase.FAILED
    assert [e.event_type for e in publisher.events] == [EventType.VALIDATION_FAILED]


def test_codedeploy_refusing_the_status_is_recorded_and_not_repeated(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    ledger.refuse_next.append("LifecycleEventAlreadyCompletedException")
    outcome = _hook(publisher).handle(_event(deployment_id, execution), lambda: 30_000)
    assert not outcome.reported and "LifecycleEventAlreadyCompletedException" in (outcome.report_error or "")
    assert _hook(publisher).handle(_event(deployment_id, execution), lambda: 30_000).duplicate
    assert ledger.attempts_for(execution) == 1
    assert _verdicts(deployment_id)[0].details["reported"] is False


def test_codedeploy_not_knowing_the_deployment_fails_closed(
    cd_aws: None, ledger: HookLedger, publisher: RecordingPublisher
) -> None:
    execution = ledger.issue("d-UNKNOWN1")
    outcome = _hook(publisher).handle(_event("d-UNKNOWN1", execution), lambda: 30_000)
    assert outcome.status == "Failed" and "DeploymentDoesNotExistException" in outcome.reason
    assert outcome.reported and ledger.attempts_for(execution) == 1


def test_a_failed_critical_check_fails_the_hook_and_keeps_the_alias(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/health").respond_with_data("down", status=503)
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    outcome = _hook(publisher, _http_only(httpserver.url_for("/health"))).handle(
        _event(deployment_id, execution), lambda: 30_000
    )
    assert outcome.status == "Failed" and outcome.as_dict()["failed"] == ["health"]
    assert ledger.status_of(execution) == "Failed" and ledger.attempts_for(execution) == 1
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version
    verdict = _verdicts(deployment_id)[0]
    assert verdict.details["checks"][0]["status"] == "failed" and verdict.details["phase"] == "pre_traffic"


def test_a_failed_non_critical_check_is_a_warning(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/health").respond_with_data("down", status=503)
    config = _http_only(httpserver.url_for("/health")).replace("retries: 0", "retries: 0, critical: false")
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    outcome = _hook(publisher, config).handle(_event(deployment_id, execution), lambda: 30_000)
    assert outcome.status == "Succeeded" and outcome.as_dict()["warnings"] == ["health"]
    assert [e.event_type for e in publisher.events] == [EventType.VALIDATION_WARNED]


def test_after_traffic_moved_the_judge_decides(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    LambdaTrafficShifter(target).promote()
    execution = ledger.issue(deployment_id)
    outcome = _hook(publisher).handle(_event(deployment_id, execution), lambda: 30_000)
    # no metrics at all: the judge is inconclusive, which passes unless configured otherwise
    assert outcome.phase == "post_traffic" and outcome.lifecycle_event == "AfterAllowTraffic"
    assert outcome.status == "Succeeded" and "judge inconclusive" in outcome.reason
    assert DeploymentRepository(TABLE).get_deployment(deployment_id).canary_weight == 1.0
    strict = "defaults:\n  hooks:\n    fail_post_traffic_on_inconclusive: true\n"
    second = ledger.issue(deployment_id)
    assert _hook(publisher, strict).handle(_event(deployment_id, second), lambda: 30_000).status == "Failed"


def test_malformed_event_with_an_execution_id_is_answered_failed(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    outcome = _hook(publisher).handle({"DeploymentId": 42, "LifecycleEventHookExecutionId": execution}, lambda: 1)
    assert outcome.status == "Failed" and "field DeploymentId" in outcome.reason
    assert outcome.reported and ledger.attempts_for(execution) == 1


@pytest.mark.parametrize(
    ("hook", "phase"),
    [
        ("BeforeInstall", "no_checks"),
        ("AfterAllowTestTraffic", "pre_traffic"),
        ("AfterAllowTraffic", "post_traffic"),
        # not a hook (a stale read): the only hook after AllowTraffic is AfterAllowTraffic, judged
        # (tests/unit/hooks/test_hook_fail_closed.py: an event not named before production traffic fails closed)
        ("AllowTraffic", "post_traffic"),
    ],
)
def test_ecs_hooks(
    cd_aws: None, ledger: HookLedger, targets: TargetStore, publisher: RecordingPublisher, hook: str, phase: str
) -> None:
    """Which ECS hook is running comes from CodeDeploy's deployment target (GetDeploymentTarget)."""
    stack = create_ecs_service("main", "shop")
    deployment_id = create_ecs_deployment(stack, "shop", "shop-bg", "CodeDeployDefault.ECSAllAtOnce", store=targets)
    targets.enter(deployment_id, hook)
    if phase == "post_traffic":
        shift_traffic(stack, deployment_id, 100.0, targets)
    execution = ledger.issue(deployment_id)
    config = (
        "defaults:\n  judge: {metrics_preset: alb}\n"
        "  hooks:\n    pre_traffic: [{name: a, type: alarms, alarm_prefix: shop-}]\n"
    )
    outcome = _hook(publisher, config).handle(_event(deployment_id, execution), lambda: 30_000)
    expected_event = "AfterAllowTraffic" if phase == "post_traffic" else hook
    # green with all of production but no RequestCount on either target group: missing evidence, Failed
    expected_status = "Failed" if phase == "post_traffic" else "Succeeded"
    assert (outcome.phase, outcome.status, outcome.lifecycle_event) == (phase, expected_status, expected_event)
    assert ledger.calls_for(execution) == 1
    record = DeploymentRepository(TABLE).get_deployment(deployment_id)
    assert record.strategy == "blue_green" and record.version == "shop:2"  # family:revision of the new task definition
    assert isinstance(record.target, EcsTarget)
    assert (record.target.cluster, record.target.service) == ("main", "shop")  # from the group's ecsServices
    assert record.target.new_target_group.startswith("targetgroup/shop-green/")
    if (
        phase == "post_traffic"
    ):  # no request on either target group (tests/integration/codedeploy/test_ecs_hook_evidence.py)
        assert record.canary_weight == 1.0 and "judge inconclusive" in outcome.reason
        assert "requests: missing evidence: green (targetgroup/shop-green/" in outcome.reason
        assert [e.event_type for e in publisher.events] == [EventType.VALIDATION_FAILED]


def test_simulated_canary_rollout_calls_the_hook_twice_and_the_traffic_each_minute(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    from deployguard.workflows.recorder import DEPLOYMENT_STATE_CHANGE, DeploymentRecorder, StateChangeDetail
    from deployguard_local.codedeploy import simulate_lambda_rollout

    config = "defaults:\n  hooks:\n    pre_traffic: [{name: a, type: alarms, alarm_prefix: orders-}]\n"
    hook = _hook(publisher, config)
    recorder = DeploymentRecorder(parse_config("{}", "t.yaml"), DeploymentRepository(TABLE), publisher)
    minutes: list[tuple[int, float]] = []
    result = simulate_lambda_rollout(
        target.function_name, target.alias, target.stable_version, target.new_version,
        hooks_function=lambda event: hook.handle(event, lambda: 60_000),
        recorder_function=lambda event: recorder.handle(
            DEPLOYMENT_STATE_CHANGE, StateChangeDetail.model_validate(event["detail"]), sim_clock()
        ),
        clock_advance=sim_clock.advance, traffic_hook=lambda minute, weight: minutes.append((minute, weight)),
        application="orders", ledger=ledger,
    )  # fmt: skip
    assert result.final_state == "SUCCESS" and result.states == ["START", "SUCCESS"]
    assert result.hooks == [("BeforeAllowTraffic", "Succeeded"), ("AfterAllowTraffic", "Succeeded")]
    assert [c.status for c in result.status_calls] == ["Succeeded", "Succeeded"]
    assert minutes == [(1, 0.1), (2, 0.1), (3, 0.1), (4, 0.1), (5, 0.1), (6, 1.0)]
    assert result.alias_version == target.new_version
    record = DeploymentRepository(TABLE).get_deployment(result.deployment_id)
    assert record.status == "succeeded" and record.duration_seconds == 360


def test_a_failed_verdict_that_cannot_be_recorded_is_retried_then_given_up(
    cd_aws: None, ledger: HookLedger, publisher: RecordingPublisher, sim_clock: Any
) -> None:
    """Kept pending for the recorder's schedule (finish_verdicts), which gives it up after a day."""
    execution = ledger.issue("d-UNKNOWN2")
    hook = _hook(publisher)
    assert hook.handle(_event("d-UNKNOWN2", execution), lambda: 30_000).status == "Failed"
    tried = hook.finish_verdicts()
    assert [(v["execution_id"], v["recorded"]) for v in tried] == [(execution, False)]
    assert "DeploymentDoesNotExistException" in tried[0]["error"]
    sim_clock.advance(timedelta(hours=25).total_seconds())
    assert [(v["execution_id"], v["gave_up"]) for v in hook.finish_verdicts()] == [(execution, True)]
    assert hook.finish_verdicts() == [] and publisher.events == []


class Killed(BaseException):
    """Lambda ending the invocation (its timeout): no ``except Exception`` inside the hook catches it."""


@contextmanager
def _killed_while_answering() -> Iterator[None]:
    """The hook's status call ends the invocation before it reaches CodeDeploy (``before-send``)."""

    def kill(**_: Any) -> None:
        raise Killed("the function's timeout, while answering CodeDeploy")

    name = "before-send.codedeploy.PutLifecycleEventHookExecutionStatus"
    emitter = clients.client("codedeploy", retries=False).meta.events
    emitter.register_first(name, kill)
    try:
        yield
    finally:
        emitter.unregister(name, kill)


def _failing_hook(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> tuple[LifecycleHook, str, str]:
    """A hook whose checks fail (Failed), killed while sending its answer: the verdict kept, nothing recorded."""

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("checks exploded")

    monkeypatch.setattr(lifecycle, "run_check", explode)
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    hook = _hook(publisher)
    with _killed_while_answering(), pytest.raises(Killed):
        hook.handle(_event(deployment_id, execution), lambda: 30_000)
    assert ledger.attempts_for(execution) == 0  # CodeDeploy never received it
    kept = hook.answers.verdicts.get(execution)
    assert kept is not None and kept.state != "done" and kept.attributes["before_answer"] is True
    assert hook.answers.markers.get(execution).result == "Failed"  # type: ignore[union-attr]
    return hook, deployment_id, execution


def test_a_failed_verdict_kept_before_the_answer_waits_for_codedeploy_to_have_it(
    target: LambdaTarget,
    ledger: HookLedger,
    publisher: RecordingPublisher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not recorded while the answer is unconfirmed; once the sweep of unanswered hooks sent it (the
    recorder's schedule runs it first), recorded once: the record FAILED, validation.failed, one audit."""
    hook, deployment_id, execution = _failing_hook(target, ledger, publisher, monkeypatch)
    waiting = hook.finish_verdicts()
    assert [(v["execution_id"], v["recorded"], "waiting" in v) for v in waiting] == [(execution, False, True)]
    assert publisher.events == [] and _verdicts(deployment_id) == []
    assert DeploymentRepository(TABLE).get_deployment(deployment_id).phase != Phase.FAILED
    assert [(s.action, s.report.outcome if s.report else None) for s in hook.answers.sweep()] == [
        ("resent", "accepted")
    ]
    assert ledger.status_of(execution) == "Failed" and ledger.calls_for(execution) == 1
    assert [(v["execution_id"], v["recorded"]) for v in hook.finish_verdicts()] == [(execution, True)]
    record = DeploymentRepository(TABLE).get_deployment(deployment_id)
    assert record.phase == Phase.FAILED and "checks exploded" in (record.decision_reason or "")
    assert [e.event_type for e in publisher.events] == [EventType.VALIDATION_FAILED]
    verdicts = _verdicts(deployment_id)
    assert len(verdicts) == 1 and verdicts[0].details["reported"] is True
    assert hook.finish_verdicts() == [] and len(publisher.events) == 1 and len(_verdicts(deployment_id)) == 1


def test_a_failed_verdict_codedeploy_never_took_is_given_up_not_recorded(
    target: LambdaTarget,
    ledger: HookLedger,
    publisher: RecordingPublisher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook, deployment_id, execution = _failing_hook(target, ledger, publisher, monkeypatch)
    ledger.refuse_next.append("InvalidLifecycleEventHookExecutionIdException")  # the sweep's send is refused
    assert [(s.action, s.report.outcome if s.report else None) for s in hook.answers.sweep()] == [("resent", "refused")]
    assert ledger.calls_for(execution) == 0
    given_up = hook.finish_verdicts()
    assert [(v["execution_id"], v["recorded"], v["gave_up"], v["answer"]) for v in given_up] == [
        (execution, False, True, "refused")
    ]
    assert publisher.events == [] and _verdicts(deployment_id) == []
    assert DeploymentRepository(TABLE).get_deployment(deployment_id).phase != Phase.FAILED
    assert hook.finish_verdicts() == []
    pending = DeploymentRepository(TABLE).table.query(
        IndexName="gsi1", KeyConditionExpression="gsi1pk = :pk",
        ExpressionAttributeValues={":pk": f"PENDING#{VERDICT_KIND}"},
    )["Items"]  # fmt: skip
    assert pending == []


@contextmanager
def _killed_after_the_answer() -> Iterator[list[str]]:
    """The first status CodeDeploy accepts ends the invocation right after (``after-call``): nothing after it runs."""
    kills: list[str] = []

    def kill(http_response: Any, parsed: Any, **_: Any) -> None:
        if not kills and http_response.status_code == 200:
            kills.append("answered")
            raise Killed("the function's timeout, right after CodeDeploy took the answer")

    name = "after-call.codedeploy.PutLifecycleEventHookExecutionStatus"
    emitter = clients.client("codedeploy", retries=False).meta.events
    emitter.register(name, kill)
    try:
        yield kills
    finally:
        emitter.unregister(name, kill)


@contextmanager
def _claim_refused() -> Iterator[list[str]]:
    """DynamoDB fails the PutItem that claims a hook execution (its answer marker), every time."""
    refused: list[str] = []

    def refuse(params: dict[str, Any], **_: Any) -> None:
        kind = params.get("Item", {}).get("record_type")
        if (kind.get("S") if isinstance(kind, dict) else kind) == "lease_hook":
            refused.append("claim")
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "PutItem")

    name = "before-parameter-build.dynamodb.PutItem"
    emitter = clients.resource("dynamodb").meta.client.meta.events
    emitter.register(name, refuse)
    try:
        yield refused
    finally:
        emitter.unregister(name, refuse)


def test_after_a_failed_claim_the_failed_is_kept_before_the_answer_and_recorded_once(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher
) -> None:
    """The claim fails, the hook answers Failed and is killed right after CodeDeploy took it: the verdict was
    kept before the answer; with no answer marker to say CodeDeploy has it, the schedule sends the same Failed
    again (CodeDeploy takes a repeat) and records it, once."""
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    hook = _hook(publisher)
    with _claim_refused() as refused, _killed_after_the_answer() as kills, pytest.raises(Killed):
        hook.handle(_event(deployment_id, execution), lambda: 30_000)
    assert refused and kills == ["answered"] and ledger.status_of(execution) == "Failed"
    kept = hook.answers.verdicts.get(execution)
    assert kept is not None and kept.state != "done" and kept.attributes["unclaimed"] is True
    assert _verdicts(deployment_id) == [] and publisher.events == []
    assert [(v["execution_id"], v["recorded"]) for v in hook.finish_verdicts()] == [(execution, True)]
    assert ledger.calls_for(execution) == 1  # the repeat is not a second result
    record = DeploymentRepository(TABLE).get_deployment(deployment_id)
    assert record.phase == Phase.FAILED and "cannot claim the hook execution" in (record.decision_reason or "")
    assert [e.event_type for e in publisher.events] == [EventType.VALIDATION_FAILED]
    assert hook.finish_verdicts() == [] and len(_verdicts(deployment_id)) == 1 and len(publisher.events) == 1


def test_a_malformed_event_s_failed_is_kept_before_the_answer(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    hook = _hook(publisher)
    malformed = {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution, "extra": "unexpected"}
    with _killed_after_the_answer() as kills, pytest.raises(Killed):
        hook.handle(malformed, lambda: 30_000)
    assert kills == ["answered"] and ledger.status_of(execution) == "Failed"
    assert [(v["execution_id"], v["recorded"]) for v in hook.finish_verdicts()] == [(execution, True)]
    assert [e.event_type for e in publisher.events] == [EventType.VALIDATION_FAILED]
