"""A person's pause that lands while the canary's own task moves the alias (ShiftTraffic to the next step, or
Promote to 100%) is honoured: its answer said "held at" the record's weight, so the move is taken back and the
canary holds there until resumed. Before, the answer said "held at 50%" and the canary went to 100% anyway (the
record said promoted and paused), or held at the step the pause said it had not reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from control_support import control_service

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.emulator import EmbeddedAws, sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "deployguard.yaml"
DEPLOYMENT = "dep-checkout-api"


@pytest.fixture
def aws() -> Any:
    with EmbeddedAws(config_file=CONFIG) as embedded:
        yield embedded


def _run_with_pause_during(aws: Any, moving_to: Any) -> tuple[Any, list[Any], LambdaTarget]:
    """Runs the canary; the first UpdateAlias for which ``moving_to(params, target)`` holds gets a pause landing
    just before it (the task read the record unpaused); ten minutes later the person resumes."""
    versions = aws.deploy_sample_function("checkout-api", "live", sample_handler)
    target = LambdaTarget(
        function_name="checkout-api", alias="live", stable_version=versions[0], new_version=versions[1]
    )
    behaviours = {v: VersionBehaviour() for v in versions}
    aws.clock.listeners.append(LambdaTrafficSource("checkout-api", "live", 2000, behaviours, seed=5).on_clock)
    seen: list[Any] = []

    def pause_now(params: dict[str, Any], **_: Any) -> None:
        if seen or not moving_to(params, target):
            return
        seen.append(control_service(aws).apply(DEPLOYMENT, ControlRequest(verb="pause", actor="carol", reason="hold")))
        start = aws.clock()

        def resume_later(_before: Any, after: Any) -> None:
            if len(seen) == 1 and (after - start).total_seconds() >= 600:
                record = DeploymentRepository().get_deployment(DEPLOYMENT)
                seen.append((record.canary_weight, LambdaTrafficShifter(target).current()))
                control_service(aws).apply(DEPLOYMENT, ControlRequest(verb="resume", actor="carol", reason="go on"))

        aws.clock.listeners.append(resume_later)

    events = clients.client("lambda").meta.events
    events.register("before-parameter-build.lambda.UpdateAlias", pause_now, unique_id="pause-during-move")
    try:
        aws.run_state_machine(
            "CanaryStateMachine",
            {"deployment": {"deployment_id": DEPLOYMENT, "service": "checkout-api", "version": versions[1],
                            "target": target.model_dump()}},
        )  # fmt: skip
        aws.invoker.drain()
    finally:
        events.unregister("before-parameter-build.lambda.UpdateAlias", unique_id="pause-during-move")
    return DeploymentRepository().get_deployment(DEPLOYMENT), seen, target


def test_a_pause_landing_while_promote_moves_takes_the_promotion_back_and_holds(aws: Any) -> None:
    def to_full(params: dict[str, Any], target: LambdaTarget) -> bool:
        routing = (params.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
        return params.get("FunctionVersion") == target.new_version and not routing

    record, seen, target = _run_with_pause_during(aws, to_full)
    answer, (weight_while_paused, alias_while_paused) = seen
    assert answer.changed and "held at 50%" in answer.message, answer.message
    assert weight_while_paused == 0.5 and alias_while_paused.routes(target, 0.5)  # what the answer said
    held = [e for e in DeploymentRepository().audit_trail(DEPLOYMENT) if e.action == "traffic_held"]
    assert any("the pause landed while the promotion moved the alias: taken back" in e.reason for e in held)
    assert (record.decision, record.control.paused) == ("promoted", False)  # promoted once resumed
    assert LambdaTrafficShifter(target).current().weight_of(target.new_version) == 1.0


def test_a_pause_landing_while_a_step_shifts_holds_at_the_weight_it_said(aws: Any) -> None:
    def to_half(params: dict[str, Any], target: LambdaTarget) -> bool:
        routing = (params.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return routing.get(target.new_version) == 0.5

    record, seen, target = _run_with_pause_during(aws, to_half)
    answer, (weight_while_paused, alias_while_paused) = seen
    said = answer.message
    assert answer.changed and "held at" in said, said
    held_at = float(said.split("held at ")[1].split("%")[0]) / 100
    assert held_at < 0.5 and weight_while_paused == held_at and alias_while_paused.routes(target, held_at)
    trail = DeploymentRepository().audit_trail(DEPLOYMENT)
    assert any(e.action == "traffic_held" and "taken back" in e.reason for e in trail)
    assert record.decision == "promoted"  # the canary went on once resumed


def _body(request: Any) -> str:
    body = getattr(request, "body", b"") or b""
    return body.decode() if isinstance(body, bytes) else str(body)


def test_a_pause_whose_take_back_lambda_refuses_is_still_never_promoted_over(embedded: Any, faults: Any) -> None:
    """Taking the promotion's move back is throttled through all of botocore's attempts (review: the task failed,
    its retry found the alias at 100% and recorded the promotion over the pause): the canary holds where the alias
    is, says so, and is promoted only once resumed."""
    aws = embedded
    taking_back = [False]

    def throttled(request: Any) -> bool:  # the take-back: back to the split, guarded by the alias's RevisionId
        body = _body(request).replace(" ", "")
        return taking_back[0] and "RevisionId" in body and '"AdditionalVersionWeights":{"' in body

    plan = faults.on("lambda", "UpdateAlias", ["throttle"] * 12, when=throttled)

    def to_full(params: dict[str, Any], target: LambdaTarget) -> bool:
        routing = (params.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
        if params.get("FunctionVersion") == target.new_version and not routing:
            taking_back[0] = True
            return True
        return False

    record, seen, target = _run_with_pause_during(aws, to_full)
    answer, (weight_while_paused, alias_while_paused) = seen
    assert plan.injected >= 9, plan.injected  # every attempt of the take-back refused
    assert answer.changed and "held at 50%" in answer.message, answer.message
    assert weight_while_paused == 1.0 and alias_while_paused.weight_of(target.new_version) == 1.0  # the truth
    trail = DeploymentRepository().audit_trail(DEPLOYMENT)
    assert any(e.action == "traffic_held" and "could not be taken back" in e.reason for e in trail)
    assert not any(e.action == "pause_after_move" for e in trail)
    promoted = [e for e in trail if e.action == "promoted"]
    resumed = [e for e in trail if e.action == "control_resume"]
    assert promoted and resumed and promoted[0].at >= resumed[0].at  # promoted only after the person resumed
    assert record.decision == "promoted" and not record.control.paused
