"""An aborted canary's execution still retrying a task (ShiftTraffic, Promote, or the Rollback its
failures end in) after a newer canary of the same function started: the late task finds the alias is no
longer its deployment's and leaves it alone (``traffic_move_refused`` in its audit trail), so the newer
canary keeps its traffic. The older task goes through the real canary step function (Lambda Invoke on
the embedded AWS), as does the newer canary's Validate and ShiftTraffic; no threads, no sleeps: the
simulated clock moves between the abort and the newer start."""

from __future__ import annotations

from typing import Any

import pytest
from control_support import canary_in_flight, control_service

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest

STEPS = [10.0, 25.0, 50.0]


def _task(embedded: Any, action: str, state: dict[str, Any]) -> dict[str, Any]:
    out, failed = embedded.invoke("CanaryStepFunction", {"action": action, "state": state})
    assert not failed, out
    return dict(out)


def _alias(target: LambdaTarget) -> tuple[str, dict[str, float]]:
    alias = LambdaTrafficShifter(target).current()
    return alias.function_version, alias.additional_weights


def _audited(deployment_id: str, action: str) -> list[Any]:
    return [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == action]


def _newer_canary_after_the_abort(embedded: Any, new_version: int) -> tuple[LambdaTarget, LambdaTarget]:
    """Canary ``dep-checkout-api`` (version 1 -> 2) at 25%, aborted; a minute later a newer canary
    ``dep-newer`` of the same function (version 1 -> ``new_version``) validated and at its first step."""
    older = canary_in_flight(embedded, "checkout-api", versions=3)
    request = ControlRequest(verb="abort", actor="bob", reason="bad release")
    assert control_service(embedded).apply("dep-checkout-api", request).changed
    embedded.clock.advance(60)
    newer = older.model_copy(update={"new_version": str(new_version)})
    deployment = {"deployment_id": "dep-newer", "service": "checkout-api", "version": newer.new_version,
                  "target": newer.model_dump(mode="json")}  # fmt: skip
    state = _task(embedded, "validate", {"deployment": deployment})
    assert _task(embedded, "shift", state)["weight"] == 10.0
    assert _alias(newer) == (newer.stable_version, {newer.new_version: 0.1})
    return older, newer


def _older_state(older: LambdaTarget, action: str) -> dict[str, Any]:
    state: dict[str, Any] = {"deployment_id": "dep-checkout-api", "step_index": 2, "steps": STEPS,
                             "weight": 25.0, "next": action, "target": older.model_dump(mode="json")}  # fmt: skip
    if action == "rollback":  # what the state machine's Catch hands Rollback after ShiftTraffic's retries
        state["error"] = {"Error": "DeployGuard.TrafficShiftError", "Cause": "UpdateAlias throttled"}
    return state


@pytest.mark.parametrize(
    ("action", "new_version"),
    [("shift", 3), ("promote", 3), ("rollback", 3), ("rollback", 2)],
    ids=["shift-retry", "promote-retry", "rollback", "rollback-same-versions"],
)
def test_a_late_task_of_the_aborted_canary_leaves_the_newer_canarys_alias_alone(
    embedded: Any, action: str, new_version: int
) -> None:
    """Whether the newer canary ships another version (the alias routes a version the aborted one never
    shipped) or the same one again (only the records tell: the newer deployment started after the
    abort), the aborted canary's late task ends with the abort and moves nothing."""
    older, newer = _newer_canary_after_the_abort(embedded, new_version)
    out = _task(embedded, action, _older_state(older, action))
    assert (out["next"], out["decision"]) == ("done", "aborted")
    assert _alias(newer) == (newer.stable_version, {newer.new_version: 0.1})  # the newer canary's traffic
    [refused] = _audited("dep-checkout-api", "traffic_move_refused")
    assert "dep-newer" in refused.reason or "never shipped" in refused.reason
    assert _audited("dep-checkout-api", "traffic_move_undone") == []
    repository = DeploymentRepository()
    assert repository.get_deployment("dep-checkout-api").decision == "aborted"
    later = repository.get_deployment("dep-newer")
    assert (later.status, later.canary_weight) == (DeploymentStatus.IN_PROGRESS, 0.1)
    assert _audited("dep-newer", "traffic_move_undone") == _audited("dep-newer", "traffic_move_refused") == []


def test_with_no_newer_canary_the_late_move_is_still_undone(embedded: Any) -> None:
    """The guard refuses only a newer deployment's alias: the aborted canary's own late 50% (an earlier
    ShiftTraffic attempt that landed after the abort) is still put back at 100% stable by the retry."""
    older = canary_in_flight(embedded, "checkout-api", versions=3)
    request = ControlRequest(verb="abort", actor="bob", reason="bad release")
    assert control_service(embedded).apply("dep-checkout-api", request).changed
    LambdaTrafficShifter(older).shift(0.5)  # the earlier attempt's late move
    out = _task(embedded, "shift", _older_state(older, "shift"))
    assert (out["next"], out["decision"]) == ("done", "aborted")
    assert _alias(older) == (older.stable_version, {})
    assert len(_audited("dep-checkout-api", "traffic_move_undone")) == 1
    assert _audited("dep-checkout-api", "traffic_move_refused") == []


def test_a_shift_landing_on_the_newer_canarys_alias_never_overwrites_it(embedded: Any) -> None:
    """The aborted canary's ShiftTraffic read its record in progress; the abort and the newer canary's
    Validate and first step land before its UpdateAlias (to 50%). That UpdateAlias carries the RevisionId
    it read: Lambda refuses it, and the newer canary's routing stays as it set it (the aborted version never
    gets traffic back, and nothing of the newer canary's is undone)."""
    from control_support import canary_controller, while_the_alias_moves_once

    from deployguard.workflows.canary import CanaryState

    older = canary_in_flight(embedded, "checkout-api", versions=3)
    newer = older.model_copy(update={"new_version": "3"})

    def abort_then_the_newer_canary() -> None:
        request = ControlRequest(verb="abort", actor="bob", reason="bad release")
        assert control_service(embedded).apply("dep-checkout-api", request).changed
        embedded.clock.advance(60)
        deployment = {"deployment_id": "dep-newer", "service": "checkout-api", "version": "3",
                      "target": newer.model_dump(mode="json")}  # fmt: skip
        _task(embedded, "shift", _task(embedded, "validate", {"deployment": deployment}))

    state = CanaryState.model_validate({**_older_state(older, "shift"), "step_index": 2})
    with while_the_alias_moves_once(abort_then_the_newer_canary):
        out = canary_controller(embedded).shift(state)
    assert (out.next, out.decision) == ("done", "aborted")
    assert _alias(older) == (older.stable_version, {"3": 0.1})  # the newer canary's first step, untouched
    assert _audited("dep-checkout-api", "traffic_move_undone") == []
    assert any("moved since it was read" in e.reason for e in _audited("dep-checkout-api", "traffic_move_refused"))
