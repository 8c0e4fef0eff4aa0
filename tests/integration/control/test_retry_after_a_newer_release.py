"""A held canary (dep-old, version 1 -> 2) retried after a newer deployment (dep-new, 1 -> 3) was promoted:
the retry is refused (its new execution's Validate would refuse and its rollback would take production back
to version 1), and a rejected canary's rollback never moves an alias that routes a version it never shipped.
Everything goes through the embedded AWS: the control service, and the canary step function's Rollback task
invoked through Lambda as the state machine's Catch would."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from control_support import control_service

from deployguard import clock
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import ControlStateError
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.emulator import sample_handler


def _old_held_then_new_promoted(embedded: Any) -> tuple[LambdaTarget, LambdaTarget]:
    versions = embedded.deploy_sample_function("quiet-api", "live", sample_handler, versions=3)
    old = LambdaTarget(function_name="quiet-api", alias="live", stable_version=versions[0], new_version=versions[1])
    new = old.model_copy(update={"new_version": versions[2]})
    start = clock.now()
    repository = DeploymentRepository()
    repository.create_deployment(
        Deployment(deployment_id="dep-old", service="quiet-api", environment="production", version=old.new_version,
                   target=old, status=DeploymentStatus.STOPPED, decision="held", decision_reason="no evidence",
                   phase=Phase.FAILED, started_at=start - timedelta(hours=2), ended_at=start - timedelta(hours=1))
    )  # fmt: skip
    repository.create_deployment(
        Deployment(deployment_id="dep-new", service="quiet-api", environment="production", version=new.new_version,
                   target=new, status=DeploymentStatus.SUCCEEDED, decision="promoted", canary_weight=1.0,
                   started_at=start - timedelta(minutes=30), ended_at=start - timedelta(minutes=10))
    )  # fmt: skip
    LambdaTrafficShifter(new).promote()
    return old, new


def test_retry_of_an_old_held_canary_after_a_newer_promotion_is_refused(embedded: Any) -> None:
    _old, new = _old_held_then_new_promoted(embedded)
    with pytest.raises(
        ControlStateError, match=r"no longer the newest .*dep-new \(version 3, succeeded \(promoted\)\)"
    ):
        control_service(embedded).apply("dep-old", ControlRequest(verb="retry", actor="frank", reason="again"))
    repository = DeploymentRepository()
    held = repository.get_deployment("dep-old")
    assert (held.status, held.decision, held.decision_reason) == (DeploymentStatus.STOPPED, "held", "no evidence")
    assert repository.get_deployment("dep-new").decision == "promoted"
    alias = LambdaTrafficShifter(new).current()
    assert (alias.function_version, alias.additional_weights) == (new.new_version, {})
    refused = [e for e in repository.audit_trail("dep-old") if e.action == "control_retry"]
    assert [e.details.get("outcome") for e in refused] == ["refused"]


def test_retry_refused_while_the_alias_routes_another_version(embedded: Any) -> None:
    """The newest deployment, but its alias was moved by hand to another version: refused, nothing moves."""
    versions = embedded.deploy_sample_function("quiet-api", "live", sample_handler, versions=3)
    old = LambdaTarget(function_name="quiet-api", alias="live", stable_version=versions[0], new_version=versions[1])
    DeploymentRepository().create_deployment(
        Deployment(deployment_id="dep-old", service="quiet-api", environment="production", version=old.new_version,
                   target=old, status=DeploymentStatus.STOPPED, decision="held", phase=Phase.FAILED,
                   ended_at=clock.now())
    )  # fmt: skip
    third = old.model_copy(update={"new_version": versions[2]})
    LambdaTrafficShifter(third).promote()
    with pytest.raises(ControlStateError, match=r"routes 3, not only its stable version 1"):
        control_service(embedded).apply("dep-old", ControlRequest(verb="retry", actor="frank", reason="again"))
    assert LambdaTrafficShifter(old).current().function_version == versions[2]
    assert DeploymentRepository().get_deployment("dep-old").decision == "held"


def test_a_rejected_retry_leaves_an_alias_on_a_version_it_never_shipped(embedded: Any) -> None:
    """The retry's execution raced a newer promotion: its Validate refused (the alias routes 3), and the
    Rollback the Catch runs ends the record as rejected but leaves the alias on version 3, audited."""
    old, new = _old_held_then_new_promoted(embedded)
    execution = f"{embedded.ref('CanaryStateMachine')}:dep-old-retry-4".replace(":stateMachine:", ":execution:")

    def in_progress_again(d: Deployment) -> None:  # what the retry left before its execution's Validate
        d.status, d.decision, d.ended_at, d.execution_arn = DeploymentStatus.IN_PROGRESS, None, None, execution
        d.phase = Phase.PRE_DEPLOYMENT

    DeploymentRepository().update_deployment("dep-old", in_progress_again)
    request = {"deployment_id": "dep-old", "service": "quiet-api", "version": old.new_version,
               "target": old.model_dump(mode="json"), "start_step": 0}  # fmt: skip
    cause = "target: alias quiet-api:live routes to 3, expected only the stable version 1 before a canary starts"
    state = {"deployment": request, "error": {"Error": "InvalidEventError", "Cause": cause}}
    out, failed = embedded.invoke("CanaryStepFunction", {"action": "rollback", "state": state, "execution": execution})
    assert not failed, out
    assert (out["deployment_id"], out["decision"]) == ("dep-old", "rejected")
    alias = LambdaTrafficShifter(new).current()
    assert (alias.function_version, alias.additional_weights) == (new.new_version, {})
    refused = [e for e in DeploymentRepository().audit_trail("dep-old") if e.action == "traffic_move_refused"]
    assert len(refused) == 1 and "never shipped" in refused[0].reason
    assert DeploymentRepository().get_deployment("dep-new").decision == "promoted"
