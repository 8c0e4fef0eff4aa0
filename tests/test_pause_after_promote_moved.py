"""A pause that lands after the traffic is already 100% on the new version is too late to hold it: the promotion is
recorded, truthfully, and nothing is left split or in progress at 100%. Review: Promote's first attempt moved the
alias to 100% and failed before its record (reading the alias back was throttled through botocore's retries, a
TrafficShiftError Step Functions retries); a person's pause landed while the retry moved the alias (a move to
where it already was): the retry "took back" its move to the 100% it had read and held there, the record in
progress and paused at 100%, never promoted until someone resumed it. Through the real CanaryStepFunction handler
on the embedded AWS, one task at a time as Step Functions runs them (alias_race_support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alias_race_support import audit_actions, started, step
from control_support import control_service, while_the_alias_moves_once

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlOutcome, ControlRequest
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.chaos.scenario import write_lean_config
from deployguard_local.emulator import EmbeddedAws

DEP = "dep-late-pause"


def at_last_step(aws: EmbeddedAws) -> tuple[LambdaTarget, dict[str, Any]]:
    target, s0 = started(aws, DEP)
    s1, _ = step(aws, "shift", s0)
    s2, errored = step(aws, "shift", {**s1, "step_index": 1, "next": "advance"})
    assert not errored, s2
    return target, {**s2, "next": "promote"}


def on_new(target: LambdaTarget) -> bool:
    alias = LambdaTrafficShifter(target).current()
    return alias.function_version == target.new_version and not alias.additional_weights


def first_attempt_moves_then_fails(aws: EmbeddedAws, faults: FaultInjector, state: dict[str, Any]) -> None:
    """Promote's first attempt: its UpdateAlias to 100% lands, reading the alias back is throttled through every
    botocore attempt, and the task fails (TrafficShiftError) before anything is recorded."""
    moved = [False]

    def landed(**_: Any) -> None:
        moved[0] = True

    events = clients.client("lambda").meta.events
    events.register("after-call.lambda.UpdateAlias", landed, unique_id="promote-landed")
    plan = faults.on("lambda", "GetAlias", ["throttle"] * 30, when=lambda _request: moved[0])
    try:
        out, errored = step(aws, "promote", state)
    finally:
        events.unregister("after-call.lambda.UpdateAlias", unique_id="promote-landed")
        faults.clear()
    assert errored and "TrafficShiftError" in str(out), out
    assert plan.injected >= 1


def test_a_pause_landing_as_a_promote_retry_moves_an_alias_already_at_100_is_too_late_the_promotion_is_recorded(
    tmp_path: Path,
) -> None:
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws, FaultInjector(aws.clock) as faults:
        target, state = at_last_step(aws)
        first_attempt_moves_then_fails(aws, faults, state)
        before = DeploymentRepository().get_deployment(DEP)
        assert on_new(target) and before.decision is None and before.canary_weight < 1.0  # moved, not recorded

        answers: list[ControlOutcome] = []
        pause = ControlRequest(verb="pause", actor="carol", reason="hold on")
        with while_the_alias_moves_once(lambda: answers.append(control_service(aws).apply(DEP, pause))):
            out, errored = step(aws, "promote", state)  # Step Functions' retry, with the same input

        assert answers and answers[0].changed
        assert not errored and (out["next"], out["decision"], out["weight"]) == ("done", "promoted", 100.0), out
        record = DeploymentRepository().get_deployment(DEP)
        assert (record.status, record.decision, record.canary_weight) == (DeploymentStatus.SUCCEEDED, "promoted", 1.0)
        assert on_new(target)
        actions = audit_actions(DEP)
        assert "promoted" in actions and "traffic_held" not in actions, actions
        late = [e for e in DeploymentRepository().audit_trail(DEP) if e.action == "pause_after_move"]
        assert len(late) == 1 and "100%" in late[0].reason, late

        notified, errored = step(aws, "notify", out)
        assert not errored and notified["decision"] == "promoted"
        assert DeploymentRepository().get_deployment(DEP).decision == "promoted"
