"""Late alias moves: a ShiftTraffic or Promote attempt whose UpdateAlias lands after the record ended
(a person's abort, the promotion, the canary's own rollback). The alias always ends where the record
says: 100% new after a promotion, 100% stable after anything else. The real controller on the embedded
AWS; the interleavings are made by hand (botocore's before-parameter-build on UpdateAlias, or one
attempt run inside another), no threads, no sleeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from control_support import canary_controller, canary_in_flight, control_service, while_the_alias_moves_once

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.emulator import EmbeddedAws

CONFIG = Path(__file__).resolve().parents[3] / "examples" / "deployguard.yaml"
STEPS = [10.0, 25.0, 50.0]


@pytest.fixture
def aws() -> Any:
    with EmbeddedAws(config_file=CONFIG) as embedded:
        yield embedded


def _abort(aws: Any, deployment_id: str) -> Any:
    return control_service(aws).apply(
        deployment_id, ControlRequest(verb="abort", actor="bob", reason="abort from the test")
    )


def _state(target: LambdaTarget, step_index: int, next_step: str) -> Any:
    from deployguard.workflows.canary import CanaryState

    return CanaryState(
        deployment_id="dep-checkout-api", step_index=step_index, steps=STEPS, weight=STEPS[step_index],
        next=next_step, target=target,
    )  # fmt: skip


def _alias(target: LambdaTarget) -> tuple[str, dict[str, float]]:
    alias = LambdaTrafficShifter(target).current()
    return alias.function_version, alias.additional_weights


def _undone(deployment_id: str) -> list[Any]:
    return [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "traffic_move_undone"]


def test_a_shift_landing_after_the_promotion_leaves_the_alias_on_new(aws: Any) -> None:
    """An old ShiftTraffic attempt (to 25%) read the record in progress; Promote moves the alias and
    records promoted before the attempt's UpdateAlias lands. The record's promotion stands, and the
    alias goes back to 100% new, not to stable."""
    target = canary_in_flight(aws, "checkout-api")
    late, promote = canary_controller(aws), canary_controller(aws)
    with while_the_alias_moves_once(lambda: promote.promote(_state(target, 2, "promote"))):
        out = late.shift(_state(target, 1, "shift"))
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.SUCCEEDED, "promoted")
    assert _alias(target) == (target.new_version, {})
    assert (out.next, out.decision, out.weight) == ("done", "promoted", 100.0)
    # its UpdateAlias carried the RevisionId it read: Lambda refused it, nothing to undo
    assert _undone("dep-checkout-api") == []
    refused = [e for e in DeploymentRepository().audit_trail("dep-checkout-api") if e.action == "traffic_move_refused"]
    assert len(refused) == 1 and "moved since it was read" in refused[0].reason


def test_a_promote_retry_that_finds_the_abort_puts_the_alias_back_on_stable(aws: Any) -> None:
    """The first Promote attempt's move landed after the abort's re-check, and its undo never ran (it
    timed out, or the undo failed): the retry finds the record aborted and puts the alias back."""
    target = canary_in_flight(aws, "checkout-api")
    assert _abort(aws, "dep-checkout-api").changed
    LambdaTrafficShifter(target).promote()  # the first attempt's late move
    out = canary_controller(aws).promote(_state(target, 2, "promote"))
    assert (out.next, out.decision, out.weight) == ("done", "aborted", 0.0)
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "aborted")
    assert _alias(target) == (target.stable_version, {})
    assert [e.details["alias"] for e in _undone("dep-checkout-api")] == ["100% stable"]


def test_a_shift_retry_that_finds_the_abort_puts_the_alias_back_on_stable(aws: Any) -> None:
    """The same for ShiftTraffic: the first attempt's 50% landed after the abort and was never undone."""
    target = canary_in_flight(aws, "checkout-api")
    assert _abort(aws, "dep-checkout-api").changed
    LambdaTrafficShifter(target).shift(0.5)  # the first attempt's late move
    out = canary_controller(aws).shift(_state(target, 2, "shift"))
    assert (out.next, out.decision) == ("done", "aborted")
    assert DeploymentRepository().get_deployment("dep-checkout-api").decision == "aborted"
    assert _alias(target) == (target.stable_version, {})
    assert len(_undone("dep-checkout-api")) == 1


def test_a_retry_that_finds_the_alias_where_the_record_says_leaves_it_alone(aws: Any) -> None:
    """Nothing to put back: no move, nothing audited."""
    target = canary_in_flight(aws, "checkout-api")
    assert _abort(aws, "dep-checkout-api").changed
    out = canary_controller(aws).promote(_state(target, 2, "promote"))
    assert (out.decision, _alias(target)) == ("aborted", (target.stable_version, {}))
    assert canary_controller(aws).shift(_state(target, 2, "shift")).decision == "aborted"
    assert _alias(target) == (target.stable_version, {}) and _undone("dep-checkout-api") == []


def test_a_promotion_landing_while_the_rollback_records_is_undone(aws: Any, monkeypatch: Any) -> None:
    """A leftover Promote attempt moves the alias after Rollback moved it back, and records promoted
    before Rollback records: Rollback overrides the promotion in the record, and puts the alias back
    at 100% stable before it ends."""
    target = canary_in_flight(aws, "checkout-api")
    rollback, leftover = canary_controller(aws), canary_controller(aws)
    record = rollback._record_or_defer

    def promotion_first(state: Any) -> Any:
        assert leftover.promote(_state(target, 2, "promote")).decision == "promoted"
        assert _alias(target) == (target.new_version, {})
        return record(state)

    monkeypatch.setattr(rollback, "_record_or_defer", promotion_first)
    out = rollback.rollback(
        {"deployment_id": "dep-checkout-api", "step_index": 1, "steps": STEPS, "weight": 25, "next": "rollback",
         "reason": "error rate 8% vs 0.1%", "target": target.model_dump(mode="json")}
    )  # fmt: skip
    deployment = DeploymentRepository().get_deployment("dep-checkout-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "rolled_back")
    assert (out.decision, out.weight) == ("rolled_back", 0.0)
    assert _alias(target) == (target.stable_version, {})
    assert [e.details["alias"] for e in _undone("dep-checkout-api")] == ["100% stable"]
