"""A promoted canary's alias stays 100% on the new version: Promote reads it again once it has recorded, and the
traffic check function checks it for a short while after (a late move may land up to a ShiftTraffic Lambda's
timeout after it began). Through the real CanaryStepFunction and TrafficCheckFunction on the embedded AWS."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from alias_race_support import audit_actions, started, step

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import EventType, LambdaTarget, Severity
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.scenario import write_lean_config
from deployguard_local.emulator import EmbeddedAws


def split(target: LambdaTarget, weight: float = 0.5) -> None:
    """A late move that carries no RevisionId (a ShiftTraffic attempt of a release before the guard)."""
    clients.client("lambda").update_alias(
        FunctionName=target.function_name, Name=target.alias, FunctionVersion=target.stable_version,
        RoutingConfig={"AdditionalVersionWeights": {target.new_version: weight}},
    )  # fmt: skip


def on_new(target: LambdaTarget) -> bool:
    alias = LambdaTrafficShifter(target).current()
    return alias.function_version == target.new_version and not alias.additional_weights


def at_last_step(aws: EmbeddedAws, deployment_id: str) -> tuple[LambdaTarget, dict[str, Any]]:
    target, s0 = started(aws, deployment_id)
    s1, _ = step(aws, "shift", s0)
    s2, errored = step(aws, "shift", {**s1, "step_index": 1, "next": "advance"})
    assert not errored, s2
    return target, {**s2, "next": "promote"}


def test_promote_puts_back_a_late_move_that_landed_while_it_recorded(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        target, state = at_last_step(aws, "dep-B")
        landed: list[bool] = []

        def land_late(model: Any, **_: Any) -> None:
            if not landed and model.name in ("PutItem", "UpdateItem", "TransactWriteItems") and on_new(target):
                landed.append(True)  # Promote moved and verified the alias, and records now
                split(target)

        emitters = [clients.client("dynamodb").meta.events, clients.resource("dynamodb").meta.client.meta.events]
        for emitter in emitters:
            emitter.register("before-call.dynamodb", land_late, unique_id="late-move")
        try:
            out, errored = step(aws, "promote", state)
        finally:
            for emitter in emitters:
                emitter.unregister("before-call.dynamodb", unique_id="late-move")
        assert landed and not errored and out["decision"] == "promoted"
        assert on_new(target)
        assert DeploymentRepository().get_deployment("dep-B").decision == "promoted"
        undone = [a for a in DeploymentRepository().audit_trail("dep-B") if a.action == "traffic_move_undone"]
        assert len(undone) == 1 and "once the promotion recorded" in undone[0].reason


def test_traffic_checks_repair_a_promoted_alias_left_split(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        target, state = at_last_step(aws, "dep-C")
        out, errored = step(aws, "promote", state)
        assert not errored and out["decision"] == "promoted"
        step(aws, "notify", out)
        split(target)  # a late move after Promote's own check
        aws.follow_schedules(["TrafficCheckFunction"])
        aws.clock.advance(2 * 60)
        aws.invoker.drain()
        assert on_new(target)
        record = DeploymentRepository().get_deployment("dep-C")
        assert (record.decision, record.canary_weight) == ("promoted", 1.0)
        reconciled = [a for a in DeploymentRepository().audit_trail("dep-C") if a.action == "traffic_reconciled"]
        assert len(reconciled) == 1 and "record says promoted" in reconciled[0].reason
        paged = [e for e in DeploymentRepository().events("dep-C") if e.title == "Traffic Reconciled"]
        assert len(paged) == 1 and paged[0].severity == Severity.CRITICAL
        assert paged[0].event_type == EventType.PROMOTION_COMPLETED and paged[0].details["reconciled"] is True

        aws.clock.advance(20 * 60)  # the checks end within the quarter hour, and leave the index
        aws.invoker.drain()
        assert "traffic_checks_ended" in audit_actions("dep-C")
        assert DeploymentRepository().traffic_work(aws.clock() + timedelta(days=1)) == []
        split(target)  # a move after the checks ended is not theirs to see: never read again
        aws.clock.advance(60 * 60)
        aws.invoker.drain()
        assert audit_actions("dep-C").count("traffic_reconciled") == 1


def test_traffic_checks_leave_a_promoted_alias_wholly_on_stable_alone(tmp_path: Path) -> None:
    """All on the stable version is a person's emergency rollback (which ends the record itself), not a late
    canary move: the checks never promote over it."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        target, state = at_last_step(aws, "dep-D")
        out, errored = step(aws, "promote", state)
        assert not errored and out["decision"] == "promoted"
        LambdaTrafficShifter(target).rollback()
        aws.follow_schedules(["TrafficCheckFunction"])
        aws.clock.advance(20 * 60)
        aws.invoker.drain()
        alias = LambdaTrafficShifter(target).current()
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
        assert "traffic_reconciled" not in audit_actions("dep-D")
