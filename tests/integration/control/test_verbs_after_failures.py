"""Control verbs after something failed: a rollback that failed, a held canary retried, an approval that
races an abort, an emergency rollback repeated after its record or audit failed. Each leaves the
operator a verb that works and a record that says what the alias does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from control_support import canary_controller, canary_in_flight, control_service, promoted

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import ControlStateError, StepFunctionsError
from deployguard.models import DeploymentStatus, EventType, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest, EmergencyRollbackRequest
from deployguard_local.emulator import EmbeddedAws

CONFIG = Path(__file__).resolve().parents[3] / "examples" / "deployguard.yaml"


@pytest.fixture
def aws() -> Iterator[Any]:
    with EmbeddedAws(config_file=CONFIG) as embedded:
        yield embedded


def _ask(aws: Any, deployment_id: str, verb: str, by: str = "alice") -> Any:
    return control_service(aws).apply(
        deployment_id, ControlRequest(verb=verb, actor=by, reason=f"{verb} from the test")
    )  # type: ignore[arg-type]


def _rollback_failed(aws: Any, name: str) -> LambdaTarget:
    """The canary's rollback failed (its retries spent): NotifyRollbackFailed, the alias still split."""
    target = canary_in_flight(aws, name)
    canary_controller(aws).notify({
        "deployment_id": f"dep-{name}", "error": {"Error": "TrafficShiftError", "Cause": "throttled"},
        "target": target.model_dump(mode="json"), "decision": "rolled_back",
    })  # fmt: skip
    deployment = DeploymentRepository().get_deployment(f"dep-{name}")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.FAILED, "rollback_failed")
    assert LambdaTrafficShifter(target).current().additional_weights  # still split
    return target


def _emergency(aws: Any, name: str, **ask: Any) -> Any:
    request = EmergencyRollbackRequest(
        service=name, actor="dave", reason="errors after the release", confirm=name, **ask
    )
    return control_service(aws).emergency_rollback(request)


# --------------------------------------------------------------------------- a failed rollback


def test_abort_finishes_a_rollback_that_failed(aws: Any) -> None:
    """Abort puts the alias of a rollback_failed deployment back at 100% stable and records it aborted."""
    target = _rollback_failed(aws, "payments-api")
    with pytest.raises(ControlStateError, match="abort it"):  # the emergency rollback points to abort
        _emergency(aws, "payments-api", from_version=target.stable_version)
    outcome = _ask(aws, "dep-payments-api", "abort", by="carol")
    assert outcome.changed
    alias = LambdaTrafficShifter(target).current()
    assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
    deployment = DeploymentRepository().get_deployment("dep-payments-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "aborted")
    assert deployment.decision_reason == "aborted by carol: abort from the test"
    trail = DeploymentRepository().audit_trail("dep-payments-api")
    assert [(e.actor, e.details["outcome"]) for e in trail if e.action == "control_abort"] == [("carol", "done")]
    assert [e.actor for e in trail if e.action == "rolled_back"] == ["carol"]
    completed = [
        e for e in DeploymentRepository().events("dep-payments-api") if e.event_type == EventType.ROLLBACK_COMPLETED
    ]
    assert len(completed) == 1 and "carol" in completed[0].message
    again = _ask(aws, "dep-payments-api", "abort")  # done: the alias is on stable
    assert not again.changed and again.message == "already rolled back"


def test_abort_refuses_an_ended_record_whose_alias_is_on_stable(aws: Any) -> None:
    """A failed deployment whose alias is back on stable (the reconciler finished) has nothing to abort."""
    target = _rollback_failed(aws, "payments-api")
    LambdaTrafficShifter(target).rollback()
    with pytest.raises(ControlStateError, match="nothing to abort"):
        _ask(aws, "dep-payments-api", "abort")


# --------------------------------------------------------------------------- a retried hold


def test_a_retried_held_canary_is_not_rolling_back(aws: Any) -> None:
    """Retry puts the phase back to pre_deployment: the verbs are honoured before the first shift."""
    from deployguard.workflows.control import rolling_back

    target = canary_in_flight(aws, "checkout-api")
    canary_controller(aws).rollback({
        "deployment_id": "dep-checkout-api", "step_index": 1, "steps": [10, 25, 50], "weight": 25,
        "next": "hold", "reason": "no conclusive evidence", "target": target.model_dump(mode="json"),
    })  # fmt: skip
    held = DeploymentRepository().get_deployment("dep-checkout-api")
    assert (held.decision, held.phase) == ("held", Phase.FAILED)
    assert _ask(aws, "dep-checkout-api", "retry").changed
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert deployment.status == DeploymentStatus.IN_PROGRESS and not rolling_back(deployment)
    assert deployment.phase_history[-1].reason == "retried by alice"
    assert _ask(aws, "dep-checkout-api", "pause").changed


# --------------------------------------------------------------------------- approve racing abort


def test_an_approval_that_races_an_abort_is_refused(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The abort records first; the approval, answered, finds the record aborted and says so."""
    from deployguard.aws import stepfunctions

    canary_in_flight(aws, "checkout-api")
    control_service(aws).wait_for_approval("dep-checkout-api", "tok-1")
    aborted: list[Any] = []

    def answer(token: str, *, approved: bool, by: str, reason: str) -> None:
        if approved:
            aborted.append(_ask(aws, "dep-checkout-api", "abort", by="bob"))  # lands; its own answer fails
            return
        raise StepFunctionsError("SendTaskFailure: TaskTimedOut")

    monkeypatch.setattr(stepfunctions, "answer_task", answer)
    with pytest.raises(ControlStateError, match=r"rolled_back \(aborted\)"):
        _ask(aws, "dep-checkout-api", "approve", by="alice")
    assert aborted[0].changed
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert deployment.decision == "aborted"
    trail = DeploymentRepository().audit_trail("dep-checkout-api")
    assert [e.details["outcome"] for e in trail if e.action == "control_approve"] == ["refused"]


# --------------------------------------------------------------------------- emergency rollback repeated


@contextmanager
def _failing(monkeypatch: pytest.MonkeyPatch, *names: str) -> Iterator[None]:
    """The first call to any of the repository's ``names`` fails (DynamoDB throttled)."""
    failed: list[bool] = []
    originals: dict[str, Callable[..., Any]] = {name: getattr(DeploymentRepository, name) for name in names}

    def failing_once(name: str) -> Callable[..., Any]:
        def once(self: DeploymentRepository, *args: Any, **kwargs: Any) -> Any:
            if not failed:
                failed.append(True)
                raise RuntimeError(f"{name}: ProvisionedThroughputExceededException")
            return originals[name](self, *args, **kwargs)

        return once

    for name in names:
        monkeypatch.setattr(DeploymentRepository, name, failing_once(name))
    yield
    for name, original in originals.items():
        monkeypatch.setattr(DeploymentRepository, name, original)


@pytest.mark.parametrize("failing", [("update_deployment",), ("audit", "audit_once")], ids=["record", "audit"])
def test_a_repeated_emergency_rollback_finishes_the_record(
    aws: Any, monkeypatch: pytest.MonkeyPatch, failing: tuple[str, ...]
) -> None:
    """The alias moved and the claim was taken, then the record (or its audit) failed: the same request
    again records the culprit rolled back, audits and announces it once."""
    target = promoted(aws, "checkout-api")
    with _failing(monkeypatch, *failing), pytest.raises(RuntimeError):
        _emergency(aws, "checkout-api", from_version=target.new_version)
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version
    again = _emergency(aws, "checkout-api", from_version=target.new_version)
    assert not again.changed and again.message == f"already rolled back from version {target.new_version}"
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "emergency_rolled_back")
    trail = DeploymentRepository().audit_trail("dep-checkout-api")
    assert [(e.actor, e.details["to"]) for e in trail if e.action == "emergency_rollback"] == [
        ("dave", target.stable_version)
    ]
    announced = [e for e in DeploymentRepository().events("dep-checkout-api") if e.title == "Emergency Rollback"]
    assert len(announced) == 1
    _emergency(aws, "checkout-api", from_version=target.new_version)  # a third time: nothing more
    trail = DeploymentRepository().audit_trail("dep-checkout-api")
    assert len([e for e in trail if e.action == "emergency_rollback"]) == 1
    assert len([e for e in DeploymentRepository().events("dep-checkout-api") if e.title == "Emergency Rollback"]) == 1
