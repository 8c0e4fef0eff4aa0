"""The deployment recorder on the embedded AWS, through EventBridge PutEvents and the DeploymentRecorderFunction:
late and out-of-order notifications, and writes that fail once (faults through botocore's hooks)."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.codedeploy import (
    _set_state,
    create_lambda_deployment,
    put_state_change,
    start_rollback_deployment,
)
from deployguard_local.emulator import REPO_ROOT, EmbeddedAws, _environment, sample_handler
from deployguard_local.receivers import local_receivers

SERVICES = {"orders-api": {"environment": "production", "function_name": "orders-api"}}
ONE_CALL = ["throttle"] * 9  # every attempt botocore makes of one call


@pytest.fixture
def stack() -> Iterator[tuple[EmbeddedAws, FaultInjector]]:
    """The embedded AWS configured like the demo for orders-api; faults inside function invocations only."""
    config = yaml.safe_load((REPO_ROOT / "examples" / "demo.yaml").read_text(encoding="utf-8"))
    config["services"] = SERVICES
    with tempfile.TemporaryDirectory() as tmp, local_receivers(echo=None) as receivers:
        path = Path(tmp) / "deployguard.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {f"DEMO_{kind.upper()}_URL": url for kind, url in receivers.urls.items()}
        with _environment(env), EmbeddedAws(config_file=path) as aws:
            assert aws.clock is not None
            with FaultInjector(aws.clock) as faults:
                faults.watch(aws.registry)
                yield aws, faults


def mentions(text: str) -> Any:
    return lambda request: text in (request.body.decode() if isinstance(request.body, bytes) else str(request.body))


def _put(aws: EmbeddedAws, deployment_id: str, state: str) -> None:
    put_state_change(deployment_id, "orders-api", "live", state)
    aws.invoker.drain()


def _actions(deployment_id: str) -> Counter[str]:
    return Counter(a.action for a in DeploymentRepository().audit_trail(deployment_id))


def _event_types(deployment_id: str) -> list[str]:
    return [e.event_type.value for e in DeploymentRepository().events(deployment_id)]


def _failed_then_next_started(aws: EmbeddedAws, next_version: int) -> tuple[str, str]:
    """Release A (v1 -> v2) moves 10%, fails and is put back on v1 by CodeDeploy; the next release B (v1 ->
    ``next_version``) starts and moves 10% before A's FAILURE notification is delivered. (A, B)."""
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler, versions=3)
    a = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    dep_a = create_lambda_deployment(a, "orders-api", "live")
    _put(aws, dep_a, "START")
    LambdaTrafficShifter(a).shift(0.1)  # CodeDeploy moves 10%
    DeploymentRepository().update_deployment(dep_a, lambda d: setattr(d, "canary_weight", 0.1))  # assessor saw it
    aws.clock.advance(120)
    LambdaTrafficShifter(a).rollback()  # CodeDeploy fails A and routes the alias back to v1
    _set_state(dep_a, "Failed", ended=True)
    aws.clock.advance(60)
    b = LambdaTarget(
        function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[next_version - 1]
    )
    dep_b = create_lambda_deployment(b, "orders-api", "live")
    _put(aws, dep_b, "START")
    LambdaTrafficShifter(b).shift(0.1)
    _put(aws, dep_a, "FAILURE")  # delivered late (EventBridge's retry)
    return dep_a, dep_b


def test_a_late_failure_after_the_next_release_started_is_rolled_back_not_a_failed_rollback(stack: Any) -> None:
    aws, _faults = stack
    dep_a, dep_b = _failed_then_next_started(aws, next_version=3)
    record = DeploymentRepository().get_deployment(dep_a)
    assert record.status.value == "rolled_back"  # the alias routes nothing to A's v2
    assert "rollback.failed" not in _event_types(dep_a)
    assert DeploymentRepository().get_deployment(dep_b).status.value == "in_progress"
    assert LambdaTrafficShifter(record.target).current().additional_weights  # B's 10% untouched


def test_a_late_failure_when_the_next_release_ships_the_same_version_is_not_judged(stack: Any) -> None:
    aws, _faults = stack
    dep_a, dep_b = _failed_then_next_started(aws, next_version=2)  # B ships v2 again: 10% on v2 is B's
    record = DeploymentRepository().get_deployment(dep_a)
    assert record.status.value == "failed"  # as CodeDeploy reported it
    assert "rollback.failed" not in _event_types(dep_a)
    trail = [a for a in DeploymentRepository().audit_trail(dep_a) if a.action == "rollback_not_judged"]
    assert len(trail) == 1 and dep_b in trail[0].reason
    _put(aws, dep_a, "FAILURE")  # redelivered: nothing new
    assert _actions(dep_a)["rollback_not_judged"] == 1 and "rollback.failed" not in _event_types(dep_a)


def test_a_failure_with_the_alias_still_on_its_new_version_is_still_a_failed_rollback(stack: Any) -> None:
    aws, _faults = stack
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    a = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    dep_a = create_lambda_deployment(a, "orders-api", "live")
    _put(aws, dep_a, "START")
    LambdaTrafficShifter(a).shift(0.1)
    DeploymentRepository().update_deployment(dep_a, lambda d: setattr(d, "canary_weight", 0.1))
    _set_state(dep_a, "Failed", ended=True)
    _put(aws, dep_a, "FAILURE")
    assert DeploymentRepository().get_deployment(dep_a).status.value == "failed"
    failed = [e for e in DeploymentRepository().events(dep_a) if e.event_type.value == "rollback.failed"]
    assert len(failed) == 1 and "still routes 10% of traffic to version" in failed[0].message


def test_a_catalog_write_that_fails_once_leaves_the_deployment_listed(stack: Any) -> None:
    from deployguard.readmodels import DeploymentReader
    from deployguard.readmodels.deployments import DeploymentQuery

    aws, faults = stack
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    dep = create_lambda_deployment(target, "orders-api", "live")
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=mentions('"CATALOG"'))
    _put(aws, dep, "START")  # the first attempt's catalog write fails; Lambda's retry records it
    assert plan.injected == len(ONE_CALL)
    assert ("orders-api", "production") in DeploymentRepository().service_environments()
    aws.clock.advance(300)
    _set_state(dep, "Succeeded", ended=True)
    _put(aws, dep, "SUCCESS")
    listed = DeploymentReader(DeploymentRepository()).page(DeploymentQuery()).items
    assert [(d.deployment_id, d.status.value) for d in listed] == [(dep, "succeeded")]


def test_a_canary_whose_catalog_write_fails_once_is_listed(stack: Any) -> None:
    """The state machine's Validate creates records too: its retry finds the record, the catalog is there."""
    from deployguard.readmodels import DeploymentReader
    from deployguard.readmodels.deployments import DeploymentQuery

    aws, faults = stack
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=mentions('"CATALOG"'))
    aws.run_state_machine(
        "CanaryStateMachine",
        {"deployment": {"service": "orders-api", "version": versions[1], "target": target.model_dump()}},
    )
    aws.invoker.drain()
    assert plan.injected == len(ONE_CALL)
    listed = DeploymentReader(DeploymentRepository()).page(DeploymentQuery()).items
    assert len(listed) == 1 and listed[0].service == "orders-api"


def _put_instance(aws: EmbeddedAws, deployment_id: str, state: str) -> None:
    detail = {
        "region": clients.region(),
        "deploymentId": deployment_id,
        "application": "orders-api",
        "deploymentGroup": "live",
        "state": state,
        "instanceId": "orders-api:live",
        "instanceGroupId": "g-1",
    }
    entry = {"Source": "aws.codedeploy", "DetailType": "CodeDeploy Instance State-change Notification",
             "Detail": json.dumps(detail), "Resources": [], "Time": clock.now()}  # fmt: skip
    assert not clients.client("events").put_events(Entries=[entry]).get("FailedEntryCount")
    aws.invoker.drain()


def _started(aws: EmbeddedAws) -> str:
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    dep = create_lambda_deployment(target, "orders-api", "live")
    _put(aws, dep, "START")
    return dep


def test_an_instance_event_whose_audit_write_fails_once_is_audited_once(stack: Any) -> None:
    aws, faults = stack
    dep = _started(aws)
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=mentions("codedeploy_instance_success"))
    _put_instance(aws, dep, "SUCCESS")  # the first attempt's audit write fails; Lambda's retry writes it
    assert plan.injected == len(ONE_CALL)
    assert _actions(dep)["codedeploy_instance_success"] == 1
    aws.clock.advance(30)
    _put_instance(aws, dep, "SUCCESS")  # a duplicate notification, later: still one entry
    assert _actions(dep)["codedeploy_instance_success"] == 1
    trail = [a.action for a in DeploymentRepository().audit_trail(dep)]
    assert trail.index("codedeploy_start") < trail.index("codedeploy_instance_success")  # in the order written
    entry = next(a for a in DeploymentRepository().audit_trail(dep) if a.action == "codedeploy_instance_success")
    assert entry.reason == "orders-api/live: orders-api:live#SUCCESS"


def test_an_unknown_state_whose_audit_write_fails_once_is_audited_once(stack: Any) -> None:
    aws, faults = stack
    dep = _started(aws)
    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=mentions("codedeploy_in_weird_state"))
    _put(aws, dep, "IN_WEIRD_STATE")
    _put(aws, dep, "IN_WEIRD_STATE")
    assert plan.injected == len(ONE_CALL)
    assert _actions(dep)["codedeploy_in_weird_state"] == 1
    assert DeploymentRepository().get_deployment(dep).status.value == "in_progress"


def test_a_start_delivered_after_the_success_is_kept_in_time_order_and_audited(stack: Any) -> None:
    aws, _faults = stack
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    dep = create_lambda_deployment(target, "orders-api", "live")
    aws.clock.advance(300)
    _set_state(dep, "Succeeded", ended=True)
    _put(aws, dep, "SUCCESS")
    events_before = _event_types(dep)
    aws.clock.advance(60)
    _put(aws, dep, "START")  # delivered after
    _put(aws, dep, "START")  # and again
    record = DeploymentRepository().get_deployment(dep)
    assert (record.status.value, record.phase.value, record.duration_seconds) == ("succeeded", "monitoring", 300)
    assert [p.reason for p in record.phase_history] == [
        "recorded from CodeDeploy",
        "CodeDeploy START (after the recorded end)",  # in time order: before the end it came after
        "CodeDeploy SUCCESS",
    ]
    assert all(p.at <= record.ended_at for p in record.phase_history if record.ended_at)
    assert _actions(dep)["codedeploy_start"] == 1
    late = next(a for a in DeploymentRepository().audit_trail(dep) if a.action == "codedeploy_start")
    assert "delivered after the recorded end" in late.reason
    assert _event_types(dep) == events_before  # no deployment.started after the end


def test_a_rollback_deployment_whose_notifications_come_first_marks_the_release_rolled_back(stack: Any) -> None:
    aws, _faults = stack
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    dep = create_lambda_deployment(target, "orders-api", "live")
    aws.clock.advance(120)
    _set_state(dep, "Stopped", ended=True)
    rollback_id = start_rollback_deployment(dep)
    aws.clock.advance(30)
    _set_state(rollback_id, "Succeeded", ended=True)
    # the rollback deployment's notifications arrive first; the release's START and STOP after
    _put(aws, rollback_id, "START")
    _put(aws, rollback_id, "SUCCESS")
    release = DeploymentRepository().get_deployment(dep)
    assert (release.status.value, release.version, release.rollback_of) == ("rolled_back", versions[1], None)
    _put(aws, dep, "START")
    _put(aws, dep, "STOP")
    _put(aws, rollback_id, "SUCCESS")  # redelivered
    release = DeploymentRepository().get_deployment(dep)
    assert release.status.value == "rolled_back" and release.canary_weight == 0.0
    assert release.phase_history[-1].reason == f"rolled back by {rollback_id}"
    assert _event_types(dep).count("rollback.completed") == 1
    assert "rollback.failed" not in _event_types(dep)
    actions = _actions(dep)
    assert (actions["rollback_completed"], actions["codedeploy_start"], actions["codedeploy_stop"]) == (1, 1, 1)
    assert DeploymentRepository().get_deployment(rollback_id).rollback_of == dep


def test_an_end_whose_notification_went_to_the_dead_letter_queue_is_recorded_by_the_schedule(stack: Any) -> None:
    aws, faults = stack
    dep = _started(aws)
    started = clock.now()
    aws.clock.advance(300)
    _set_state(dep, "Succeeded", ended=True)
    lost = faults.on("dynamodb", "PutItem", [], then="throttle", when=mentions("CodeDeploy SUCCESS"))
    _put(aws, dep, "SUCCESS")  # every attempt fails: the notification ends in the FunctionFailureQueue
    assert lost.injected and any(name.endswith("DeploymentRecorderFunction") for name, _ in aws.invoker.failed)
    faults.clear()
    assert DeploymentRepository().get_deployment(dep).status.value == "in_progress"
    undo = aws.follow_schedules(["DeploymentRecorderFunction"])
    try:
        aws.clock.advance(1770 - (clock.now() - started).total_seconds())  # no phase change for 29.5 min: not asked
        assert DeploymentRepository().get_deployment(dep).status.value == "in_progress"
        aws.clock.advance(300)  # the recorder's schedule: every 5 minutes
    finally:
        undo()
    record = DeploymentRepository().get_deployment(dep)
    assert (record.status.value, record.duration_seconds) == ("succeeded", 300)  # CodeDeploy's completeTime
    actions = _actions(dep)
    assert (actions["codedeploy_success"], actions["codedeploy_reconciled"]) == (1, 1)
    assert _event_types(dep).count("deployment.completed") == 1
    _put(aws, dep, "SUCCESS")  # the dead letter redriven: recorded already
    assert _actions(dep)["codedeploy_success"] == 1 and _event_types(dep).count("deployment.completed") == 1


def test_the_schedule_asks_codedeploy_about_a_bounded_number_of_deployments_a_run(stack: Any) -> None:
    from deployguard.aws.events import EventPublisher
    from deployguard.config import parse_config
    from deployguard.workflows.recorder import DeploymentRecorder

    aws, _faults = stack
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    deployments = [create_lambda_deployment(target, "orders-api", "live") for _ in range(3)]
    for dep in deployments:
        _put(aws, dep, "START")
        _set_state(dep, "Succeeded", ended=True)  # and every SUCCESS lost
    aws.clock.advance(31 * 60)
    recorder = DeploymentRecorder(parse_config("{}", "t.yaml"), DeploymentRepository(), EventPublisher())
    first = recorder.sweep_unrecorded_ends(limit=2)
    assert len(first) == 2 and all(o.status.value == "succeeded" for o in first)
    second = recorder.sweep_unrecorded_ends(limit=2)  # the ones asked are not asked again; the third is
    assert [o.deployment_id for o in second] == sorted(set(deployments) - {o.deployment_id for o in first})
    assert recorder.sweep_unrecorded_ends(limit=2) == []
    assert {DeploymentRepository().get_deployment(d).status.value for d in deployments} == {"succeeded"}


def test_a_codedeploy_read_that_fails_is_asked_again_at_the_next_run(stack: Any) -> None:
    """The schedule's GetDeployment fails (a botocore hook answers it with a throttle): the claim that keeps a
    deployment from being asked twice in RECONCILE_AFTER is given back, so the next run asks again."""
    from botocore.exceptions import ClientError

    from deployguard.aws.events import EventPublisher
    from deployguard.config import parse_config
    from deployguard.workflows.recorder import DeploymentRecorder

    aws, _faults = stack
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    dep = create_lambda_deployment(target, "orders-api", "live")
    _put(aws, dep, "START")
    _set_state(dep, "Succeeded", ended=True)  # and its SUCCESS lost
    aws.clock.advance(31 * 60)
    failed: list[str] = []

    def throttled(**kwargs: Any) -> None:
        if not failed:
            failed.append("GetDeployment")
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "GetDeployment")

    events = clients.client("codedeploy").meta.events
    events.register("before-call.codedeploy.GetDeployment", throttled, unique_id="throttled-once")
    try:
        recorder = DeploymentRecorder(parse_config("{}", "t.yaml"), DeploymentRepository(), EventPublisher())
        assert recorder.sweep_unrecorded_ends() == [] and failed
        again = recorder.sweep_unrecorded_ends()  # the next run, no 30 minutes later
    finally:
        events.unregister("before-call.codedeploy.GetDeployment", unique_id="throttled-once")
    assert [o.deployment_id for o in again] == [dep]
    assert DeploymentRepository().get_deployment(dep).status.value == "succeeded"
