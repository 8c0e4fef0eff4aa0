"""Issue 11, part 2: every hook answered exactly once under AWS faults.

Faults come from botocore ``before-send`` handlers on the real clients (the one injector,
deployguard_local.chaos.faults);
time is the simulated clock (the hook's back-offs and botocore's own retry sleeps move it), so
nothing here waits for real or races a timer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto_table import TABLE, RecordingPublisher
from pytest_httpserver import HTTPServer

from deployguard import clock
from deployguard.config import parse_config
from deployguard.hooks.answers import HOOK_KIND, HookAnswers
from deployguard.hooks.lifecycle import LifecycleHook
from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.recorder import DeploymentRecorder
from deployguard_local.chaos.faults import FaultInjector, body_mentions
from deployguard_local.codedeploy import HookLedger, create_lambda_deployment

MARGIN = 15


@pytest.fixture
def faults(target: LambdaTarget, sim_clock: clock.SimulatedClock) -> Iterator[FaultInjector]:
    """On every client of the container (CodeDeploy's retrying and single-attempt ones included,
    made once the embedded AWS is up); botocore's own retry back-offs move the simulated clock."""
    with FaultInjector(sim_clock) as injector:
        yield injector


def _config(url: str) -> str:
    return (
        f"defaults:\n  hooks:\n    report_margin_seconds: {MARGIN}\n    pre_traffic:\n"
        f"      - {{name: health, type: http, url: '{url}', retries: 0, timeout_seconds: 2, "
        "allowed_hosts: [localhost]}\n"
    )


def _hook(publisher: RecordingPublisher, config: str) -> LifecycleHook:
    return LifecycleHook(parse_config(config, "t.yaml"), DeploymentRepository(TABLE), publisher, local_mode=True)


def _event(deployment_id: str, execution_id: str) -> dict[str, str]:
    return {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution_id}


def _sweep() -> list[dict[str, Any]]:
    recorder = DeploymentRecorder(parse_config("{}", "t.yaml"), DeploymentRepository(TABLE), RecordingPublisher())
    return recorder.sweep_unanswered_hooks()


@pytest.mark.parametrize("throttles", [8, 9])
def test_a_throttled_status_call_answers_within_the_margin_and_the_sweep_finishes_it(
    throttles: int,
    target: LambdaTarget,
    ledger: HookLedger,
    publisher: RecordingPublisher,
    sim_clock: clock.SimulatedClock,
    faults: FaultInjector,
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/health").respond_with_json({"status": "ok"})
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    plan = faults.on("codedeploy", "PutLifecycleEventHookExecutionStatus", ["throttle"] * throttles)
    started = sim_clock()
    outcome = _hook(publisher, _config(httpserver.url_for("/health"))).handle(
        _event(deployment_id, execution), lambda: 900_000
    )
    answering = (sim_clock() - started).total_seconds()
    assert outcome.status == "Succeeded", outcome.reason
    assert answering <= MARGIN  # was 68 s with botocore's 8 adaptive tries
    if not outcome.reported:  # the margin ran out: the decided status waits for the sweep, not for an hour
        assert "Throttling" in (outcome.report_error or "") and ledger.status_of(execution) is None
        assert [s["action"] for s in _sweep()] == ["resent"]
    assert ledger.status_of(execution) == "Succeeded" and ledger.calls_for(execution) == 1
    assert plan.injected == throttles
    assert _sweep() == []  # confirmed: nothing left to send
    assert len(httpserver.log) == 1


def test_503_until_the_margin_ends_then_the_redelivery_resends_the_same_status_without_running_the_checks(
    target: LambdaTarget,
    ledger: HookLedger,
    publisher: RecordingPublisher,
    sim_clock: clock.SimulatedClock,
    faults: FaultInjector,
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/health").respond_with_json({"status": "ok"})
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    plan = faults.on("codedeploy", "PutLifecycleEventHookExecutionStatus", [], then="unavailable")
    hook = _hook(publisher, _config(httpserver.url_for("/health")))
    first = hook.handle(_event(deployment_id, execution), lambda: 900_000)
    assert first.status == "Succeeded" and not first.reported and "ServiceUnavailable" in (first.report_error or "")
    assert first.answer == "unconfirmed" and first.metric_name == "HookAnswerUnconfirmed"
    assert plan.attempts >= 3 and ledger.status_of(execution) is None
    faults.clear()  # CodeDeploy recovers
    second = hook.handle(_event(deployment_id, execution), lambda: 900_000)
    assert (second.status, second.reported, second.resent, second.checks) == ("Succeeded", True, True, [])
    third = hook.handle(_event(deployment_id, execution), lambda: 900_000)
    assert third.duplicate and third.status is None
    assert ledger.status_of(execution) == "Succeeded" and ledger.calls_for(execution) == 1
    assert len(httpserver.log) == 1  # the checks ran once


def test_a_claim_written_but_answered_500_is_the_first_delivery_s_own(
    target: LambdaTarget,
    ledger: HookLedger,
    publisher: RecordingPublisher,
    faults: FaultInjector,
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/health").respond_with_json({"status": "ok"})
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    plan = faults.on("dynamodb", "PutItem", ["ambiguous"],
                     when=body_mentions(f"{HOOK_KIND}#{execution}"))  # fmt: skip
    outcome = _hook(publisher, _config(httpserver.url_for("/health"))).handle(
        _event(deployment_id, execution), lambda: 900_000
    )
    assert plan.injected == 1 and plan.attempts == 2  # the write landed, was answered 500, and retried
    assert (outcome.duplicate, outcome.phase, outcome.status, outcome.reported) == (
        False, "pre_traffic", "Succeeded", True,
    )  # fmt: skip
    assert len(httpserver.log) == 1 and ledger.status_of(execution) == "Succeeded"


def test_with_dynamodb_down_handle_does_not_raise_and_answers_failed(
    target: LambdaTarget,
    ledger: HookLedger,
    publisher: RecordingPublisher,
    faults: FaultInjector,
    httpserver: HTTPServer,
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    plan = faults.on("dynamodb", None, [], then="5xx")
    outcome = _hook(publisher, _config(httpserver.url_for("/health"))).handle(
        _event(deployment_id, execution), lambda: 900_000
    )
    assert outcome.status == "Failed" and outcome.reported and "InternalServerError" in outcome.reason
    assert ledger.status_of(execution) == "Failed" and ledger.calls_for(execution) == 1
    assert plan.injected >= 1 and httpserver.log == []  # no checks ran without a claim


def test_dynamodb_failing_after_the_checks_still_answers_once(
    target: LambdaTarget,
    ledger: HookLedger,
    publisher: RecordingPublisher,
    faults: FaultInjector,
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/health").respond_with_json({"status": "ok"})
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    hook = _hook(publisher, _config(httpserver.url_for("/health")))
    # the table goes down once the health endpoint was asked: decision, confirmation and verdict all fail
    original = hook.answers.markers.decide

    def decide_then_outage(*args: Any, **kwargs: Any) -> bool:
        faults.on("dynamodb", None, [], then="5xx")
        return original(*args, **kwargs)

    hook.answers.markers.decide = decide_then_outage  # type: ignore[method-assign]
    outcome = hook.handle(_event(deployment_id, execution), lambda: 900_000)
    assert (outcome.status, outcome.reported) == ("Succeeded", True)
    assert ledger.status_of(execution) == "Succeeded" and ledger.calls_for(execution) == 1


def test_codedeploy_no_longer_waiting_is_taken_as_answered(
    target: LambdaTarget, ledger: HookLedger, publisher: RecordingPublisher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/health").respond_with_json({"status": "ok"})
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    ledger.complete(execution)  # CodeDeploy timed the hook out before the answer came
    outcome = _hook(publisher, _config(httpserver.url_for("/health"))).handle(
        _event(deployment_id, execution), lambda: 900_000
    )
    assert not outcome.reported and "LifecycleEventAlreadyCompletedException" in (outcome.report_error or "")
    marker = HookAnswers(DeploymentRepository(TABLE), hook_gateway()).markers.get(execution)
    assert marker is not None and marker.state == "done" and marker.attributes["answer"] == "already_completed"
    assert _sweep() == [] and ledger.calls_for(execution) == 0


def test_the_sweep_answers_failed_for_an_attempt_that_died_before_deciding(
    target: LambdaTarget, ledger: HookLedger, sim_clock: clock.SimulatedClock
) -> None:
    deployment_id = create_lambda_deployment(target, "orders", "live")
    execution = ledger.issue(deployment_id)
    answers = HookAnswers(DeploymentRepository(TABLE), hook_gateway())
    # an attempt claimed the execution with a lease of 60 s and was killed without deciding
    assert answers.markers.claim(execution, sim_clock().timestamp() + 60, deployment_id=deployment_id).mine
    assert _sweep() == []  # its lease still runs: someone is at work
    sim_clock.advance(120)
    assert [(s["action"], s["status"]) for s in _sweep()] == [("failed_for_dead_attempt", "Failed")]
    assert ledger.status_of(execution) == "Failed" and _sweep() == []


def hook_gateway() -> Any:
    from deployguard.aws.codedeploy import CodeDeployGateway

    return CodeDeployGateway()
