"""A canary execution drives only its own deployment: through the real CanaryStepFunction on the embedded AWS,
Validate refuses another service's or target's deployment id, one in progress under another execution and a
finished one, and a target that is not the named service's; the refused execution's Rollback leaves the other
deployment's record and alias alone; Promote refuses a state naming another alias than its record's."""

from __future__ import annotations

from typing import Any

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.emulator import sample_handler

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:deployguard-local-CanaryStateMachine:"


def _target(embedded: Any, name: str) -> LambdaTarget:
    versions = embedded.deploy_sample_function(name, "live", sample_handler)
    return LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])


def _validate(embedded: Any, run: str, deployment_id: str, service: str, target: LambdaTarget) -> tuple[Any, bool]:
    request = {"deployment_id": deployment_id, "service": service, "version": target.new_version,
               "target": target.model_dump(mode="json")}  # fmt: skip
    return embedded.invoke(
        "CanaryStepFunction", {"action": "validate", "execution": EXECUTION + run, "state": {"deployment": request}}
    )


def _payments_at_ten_percent(embedded: Any) -> tuple[LambdaTarget, dict[str, Any]]:
    target = _target(embedded, "payments-api")
    state, failed = _validate(embedded, "payments-run", "pay-42", "payments-api", target)
    assert not failed, state
    state, failed = embedded.invoke("CanaryStepFunction", {"action": "shift", "state": state})
    assert not failed, state
    return target, state


def test_another_services_execution_cannot_take_over_a_deployment_in_flight(embedded: Any) -> None:
    payments, _ = _payments_at_ten_percent(embedded)
    checkout = _target(embedded, "checkout-api")
    refused, failed = _validate(embedded, "checkout-run", "pay-42", "checkout-api", checkout)
    assert failed and refused["errorType"] == "InvalidEventError"
    assert refused["errorMessage"].startswith("deployment_id: deployment pay-42 is another canary's")
    # the refused execution's Catch runs its Rollback with the request: the other deployment is left alone
    rolled, failed = embedded.invoke(
        "CanaryStepFunction",
        {"action": "rollback", "execution": EXECUTION + "checkout-run",
         "state": {"deployment": {"deployment_id": "pay-42", "service": "checkout-api", "version": checkout.new_version,
                                  "target": checkout.model_dump(mode="json")},
                   "error": {"Error": "InvalidEventError", "Cause": refused["errorMessage"]}}},
    )  # fmt: skip
    assert not failed and rolled["decision"] == "rejected" and "deployment_id" not in rolled
    record = DeploymentRepository().get_deployment("pay-42")
    assert record.status == DeploymentStatus.IN_PROGRESS and record.execution_arn == EXECUTION + "payments-run"
    alias = LambdaTrafficShifter(payments).current()
    assert (alias.function_version, alias.additional_weights) == (payments.stable_version, {"2": 0.1})


def test_the_same_service_under_another_execution_is_refused_while_in_progress(embedded: Any) -> None:
    payments, _ = _payments_at_ten_percent(embedded)
    LambdaTrafficShifter(payments).rollback_verified()  # even with the alias back at stable
    refused, failed = _validate(embedded, "second-run", "pay-42", "payments-api", payments)
    assert failed and "is in progress under another execution" in refused["errorMessage"]
    assert refused["errorMessage"].startswith("deployment_id:")
    again, failed = _validate(embedded, "payments-run", "pay-42", "payments-api", payments)  # its own retry
    assert not failed and again["deployment_id"] == "pay-42"


def test_a_finished_deployments_id_is_not_reused(embedded: Any) -> None:
    payments, state = _payments_at_ten_percent(embedded)
    rolled, failed = embedded.invoke(
        "CanaryStepFunction", {"action": "rollback", "execution": EXECUTION + "payments-run", "state": state}
    )
    assert not failed and rolled["decision"] == "rolled_back"
    repository = DeploymentRepository()
    trail = len(repository.audit_trail("pay-42"))
    refused, failed = _validate(embedded, "later-run", "pay-42", "payments-api", payments)
    assert failed and "has ended (rolled_back): a new canary needs a new deployment id" in refused["errorMessage"]
    assert len(repository.audit_trail("pay-42")) == trail  # nothing appended to the old deployment's trail
    assert repository.get_deployment("pay-42").execution_arn == EXECUTION + "payments-run"


def test_a_target_that_is_not_the_named_services_is_refused(embedded: Any) -> None:
    payments = _target(embedded, "payments-api")
    refused, failed = _validate(embedded, "mismatch-run", "mismatch-1", "checkout-api", payments)
    assert failed and refused["errorType"] == "InvalidEventError"
    assert refused["errorMessage"] == (
        "target.function_name: 'payments-api' is not service 'checkout-api''s function 'checkout-api'"
    )
    # a service the configuration does not list is known by its own name, never by a listed service's function
    refused, failed = _validate(embedded, "unlisted-run", "mismatch-2", "billing-api", payments)
    assert failed and refused["errorMessage"].startswith("service: function 'payments-api' is service 'payments-api'")
    other_alias = payments.model_copy(update={"alias": "beta"})
    refused, failed = _validate(embedded, "alias-run", "mismatch-3", "payments-api", other_alias)
    assert failed and refused["errorMessage"].startswith("target.alias: 'beta'")
    assert DeploymentRepository().find_deployment("mismatch-1") is None


def test_promote_refuses_a_state_naming_another_alias(embedded: Any) -> None:
    payments, state = _payments_at_ten_percent(embedded)
    checkout = _target(embedded, "checkout-api")
    forged = {**state, "target": checkout.model_dump(mode="json"), "next": "promote"}
    refused, failed = embedded.invoke("CanaryStepFunction", {"action": "promote", "state": forged})
    assert failed and refused["errorMessage"].startswith("target: the task's target checkout-api:live")
    assert LambdaTrafficShifter(checkout).current().function_version == checkout.stable_version
    assert LambdaTrafficShifter(payments).current().additional_weights == {"2": 0.1}


def test_a_persons_retry_is_driven_by_the_one_execution_that_claims_it(embedded: Any) -> None:
    """The control service's retry sets a held canary in progress again (phase pre_deployment, last action
    retry) and starts a new execution: that execution's Validate takes the record over; a second one is refused."""
    from deployguard import clock
    from deployguard.models import CanaryControl, Deployment, Phase

    payments, state = _payments_at_ten_percent(embedded)
    embedded.invoke("CanaryStepFunction", {"action": "rollback", "execution": EXECUTION + "payments-run",
                                           "state": {**state, "next": "hold"}})  # fmt: skip

    def retried(d: Deployment) -> None:  # what CanaryControlService._retry writes before StartExecution
        d.status, d.decision, d.decision_reason, d.ended_at = DeploymentStatus.IN_PROGRESS, None, None, None
        d.control = CanaryControl(last_action="retry", last_actor="alice", last_action_at=clock.now())
        d.phase = Phase.PRE_DEPLOYMENT

    repository = DeploymentRepository()
    assert repository.get_deployment("pay-42").decision == "held"
    repository.update_deployment("pay-42", retried)
    first, failed = _validate(embedded, "pay-42-retry-1", "pay-42", "payments-api", payments)
    assert not failed, first
    assert repository.get_deployment("pay-42").execution_arn == EXECUTION + "pay-42-retry-1"
    second, failed = _validate(embedded, "pay-42-retry-2", "pay-42", "payments-api", payments)
    assert (
        failed
        and second["errorMessage"] == "deployment_id: deployment pay-42: its retry is driven by another execution"
    )
    _, failed = _validate(embedded, "pay-42-retry-1", "pay-42", "payments-api", payments)  # its own retry
    assert not failed and repository.get_deployment("pay-42").execution_arn == EXECUTION + "pay-42-retry-1"
