"""A canary whose Validate failed (retries spent) after its record was written: the record ends
rejected and NotifyOutcome announces it, once, through the real CanaryStepFunction."""

from __future__ import annotations

from typing import Any

from control_support import canary_in_flight

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, EventType
from deployguard.storage.repository import DeploymentRepository


def _validate_failed(target: Any, deployment_id: str | None) -> dict[str, Any]:
    """The state the state machine's Catch gives Rollback after Validate: the request and the error."""
    request = {"service": "orders", "environment": "production", "version": target.new_version,
               "target": target.model_dump(mode="json")}  # fmt: skip
    if deployment_id:
        request["deployment_id"] = deployment_id
    return {"deployment": request, "error": {"Error": "ThrottlingException", "Cause": "DynamoDB throttled"}}


def test_a_rejected_canary_with_a_record_is_ended_and_announced_once(embedded: Any) -> None:
    target = canary_in_flight(embedded, "orders")
    LambdaTrafficShifter(target).rollback_verified()  # validation never moved traffic
    state = _validate_failed(target, "dep-orders")
    rolled, failed = embedded.invoke("CanaryStepFunction", {"action": "rollback", "state": state})
    assert not failed and rolled["deployment_id"] == "dep-orders" and rolled["decision"] == "rejected"
    for _ in range(2):  # the state machine may run NotifyOutcome again: one announcement
        notified, failed = embedded.invoke("CanaryStepFunction", {"action": "notify", "state": rolled})
        assert not failed, notified
    repository = DeploymentRepository()
    record = repository.get_deployment("dep-orders")
    assert (record.status, record.decision) == (DeploymentStatus.FAILED, "rejected")
    assert "ThrottlingException" in (record.decision_reason or "")
    failed = [e for e in repository.events("dep-orders") if e.event_type == EventType.DEPLOYMENT_FAILED]
    assert len(failed) == 1 and "ThrottlingException" in failed[0].message
    assert LambdaTrafficShifter(target).current().weight_of(target.stable_version) == 1.0


def test_a_rejected_request_without_a_record_ends_without_one(embedded: Any) -> None:
    target = canary_in_flight(embedded, "orders")
    LambdaTrafficShifter(target).rollback_verified()
    rolled, failed = embedded.invoke(
        "CanaryStepFunction", {"action": "rollback", "state": _validate_failed(target, None)}
    )
    assert not failed and "deployment_id" not in rolled and rolled["decision"] == "rejected"
    notified, failed = embedded.invoke("CanaryStepFunction", {"action": "notify", "state": rolled})
    assert not failed and notified == rolled
    # the in-progress record of the canary_in_flight set-up is another deployment's: left alone
    assert DeploymentRepository().get_deployment("dep-orders").status == DeploymentStatus.IN_PROGRESS


def test_a_validate_that_fails_after_writing_its_record_leaves_no_record_in_progress(
    embedded: Any, faults: Any
) -> None:
    """A request without a deployment id, through the real state machine: Validate writes its record, then
    every attempt fails on a later write (throttled for good). Its retries find the record the first attempt
    wrote (named after the execution), and the Rollback after the Catch ends that one record rejected and
    announces it: no second record, none left in progress."""
    from deployguard_local.emulator import sample_handler

    versions = embedded.deploy_sample_function("orders", "live", sample_handler)
    target = {"function_name": "orders", "alias": "live", "stable_version": versions[0], "new_version": versions[1]}
    request = {"deployment": {"service": "orders", "version": versions[1], "target": target}}
    plan = faults.on("dynamodb", "PutItem", [], then="throttle", when=lambda r: b'"validated"' in (r.body or b""))
    execution = embedded.run_state_machine("CanaryStateMachine", request, timeout=60)
    faults.clear()
    assert execution["status"] == "SUCCEEDED" and plan.injected > 9  # every Validate attempt failed
    records = DeploymentRepository().deployments_of("orders", "production")
    assert len(records) == 1, [(d.deployment_id, d.status) for d in records]
    [record] = records
    assert (record.status, record.decision) == (DeploymentStatus.FAILED, "rejected")
    assert record.execution_arn == execution["executionArn"]
    failed = [
        e for e in DeploymentRepository().events(record.deployment_id) if e.event_type == EventType.DEPLOYMENT_FAILED
    ]
    assert len(failed) == 1
