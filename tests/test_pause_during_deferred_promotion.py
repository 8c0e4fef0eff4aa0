"""A person's pause that lands while Promote moves the alias to 100% is honoured even when Promote could not write
its record (DynamoDB throttled through every attempt: the record deferred to NotifyOutcome, ``recorded: false``).
Review: NotifyOutcome recorded the promotion over the pause, whose answer had said "held at 50%", while Promote,
had its record write gone through, takes its move back and holds. NotifyOutcome now does what Promote does: the
move taken back, held at the weight the answer said, the canary back to waiting (statemachine: RouteOutcome), and
promoted only once the person resumes. The real state machine on the embedded AWS, faults through botocore."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from control_support import control_service

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest
from deployguard_local.emulator import sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

DEP = "dep-checkout-api"
CONFIG = Path(__file__).resolve().parents[1] / "examples" / "deployguard.yaml"


def _body(request: Any) -> str:
    body = getattr(request, "body", b"") or b""
    return (body.decode() if isinstance(body, bytes) else str(body)).replace(" ", "")


@pytest.mark.parametrize("record_fails", [True, False], ids=["record-deferred", "record-written"])
def test_a_pause_landing_while_promote_moves_is_honoured_whether_or_not_its_record_is_deferred(
    embedded: Any, faults: Any, record_fails: bool
) -> None:
    aws = embedded
    versions = aws.deploy_sample_function("checkout-api", "live", sample_handler)
    target = LambdaTarget(function_name="checkout-api", alias="live", stable_version=versions[0],
                          new_version=versions[1])  # fmt: skip
    aws.clock.listeners.append(
        LambdaTrafficSource("checkout-api", "live", 2000, {v: VersionBehaviour() for v in versions}, seed=5).on_clock
    )
    seen: list[Any] = []
    plans: list[Any] = []
    promoting: list[int] = []  # the thread running Promote's task (others, the alert engine's, write the record too)

    def the_record(request: Any) -> bool:  # the deployment's record, written by Promote
        body = _body(request)
        mine = threading.get_ident() in promoting
        return mine and f'"pk":{{"S":"DEP#{DEP}"}}' in body and '"sk":{"S":"META"}' in body

    def pause_now(params: dict[str, Any], **_: Any) -> None:
        routing = (params.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
        if seen or params.get("FunctionVersion") != target.new_version or routing:
            return
        pause = ControlRequest(verb="pause", actor="carol", reason="hold")
        seen.append(control_service(aws).apply(DEP, pause))  # Promote read the record unpaused: it moves on
        if record_fails:  # Promote's record write: throttled through botocore's 9 attempts
            promoting.append(threading.get_ident())
            plans.append(faults.on("dynamodb", "PutItem", ["throttle"] * 9, when=the_record))
        start = aws.clock()

        def resume_later(_before: Any, after: Any) -> None:
            if len(seen) == 1 and (after - start).total_seconds() >= 600:
                record = DeploymentRepository().get_deployment(DEP)
                seen.append((record.canary_weight, LambdaTrafficShifter(target).current(), record.status))
                control_service(aws).apply(DEP, ControlRequest(verb="resume", actor="carol", reason="go on"))

        aws.clock.listeners.append(resume_later)

    events = clients.client("lambda").meta.events
    events.register("before-parameter-build.lambda.UpdateAlias", pause_now, unique_id="pause-deferred")
    try:
        aws.run_state_machine(
            "CanaryStateMachine",
            {"deployment": {"deployment_id": DEP, "service": "checkout-api", "version": versions[1],
                            "target": target.model_dump()}},
        )  # fmt: skip
        aws.invoker.drain()
    finally:
        events.unregister("before-parameter-build.lambda.UpdateAlias", unique_id="pause-deferred")

    assert len(seen) == 2, seen  # paused, then resumed 10 minutes later (the canary was still running)
    answer, (weight_while_paused, alias_while_paused, status_while_paused) = seen
    assert answer.changed and "held at 50%" in answer.message, answer.message
    assert not status_while_paused.is_terminal  # not promoted over the pause
    assert weight_while_paused == 0.5 and alias_while_paused.routes(target, 0.5)  # what the answer said
    trail = DeploymentRepository().audit_trail(DEP)
    held = [e.reason for e in trail if e.action == "traffic_held"]
    if record_fails:
        assert plans and plans[0].injected == 9
        assert any("its record deferred" in r and "taken back" in r for r in held), held
    else:
        assert any("taken back" in r for r in held), held
    promoted = [e for e in trail if e.action == "promoted"]
    resumed = [e for e in trail if e.action == "control_resume"]
    assert len(promoted) == 1 and resumed and promoted[0].at >= resumed[0].at  # promoted once resumed
    record = DeploymentRepository().get_deployment(DEP)
    assert (record.decision, record.control.paused) == ("promoted", False)
    assert LambdaTrafficShifter(target).current().weight_of(target.new_version) == 1.0
