"""Promote reads the alias again once its record says promoted, to undo a late ShiftTraffic that split it:
an emergency rollback landing just then (the alias wholly on the stable version) is a person's decision,
left alone as the reconciler's promoted checks leave it, never re-promoted over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alias_race_support import audit_actions, started, step
from control_support import control_service

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import EmergencyRollbackRequest
from deployguard_local.chaos.scenario import write_lean_config
from deployguard_local.emulator import EmbeddedAws


def test_an_emergency_rollback_landing_as_the_promotion_records_stands(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        target, s0 = started(aws, "dep-E")
        s1, _ = step(aws, "shift", s0)
        s2, errored = step(aws, "shift", {**s1, "step_index": 1, "next": "advance"})
        assert not errored, s2
        fired: list[Any] = []
        busy: list[bool] = []

        def rollback_now(**_: Any) -> None:  # a person's emergency rollback, the moment the promotion is recorded
            found = DeploymentRepository().find_deployment("dep-E")
            if fired or busy or found is None or found.decision != "promoted":
                return
            busy.append(True)
            try:
                fired.append(control_service(aws).emergency_rollback(EmergencyRollbackRequest(
                    service="svc", actor="dave", reason="errors after the release", confirm="svc")))  # fmt: skip
            finally:
                busy.clear()

        events = clients.client("lambda").meta.events
        events.register("before-call.lambda.GetAlias", rollback_now, unique_id="emergency")
        try:
            step(aws, "promote", {**s2, "next": "promote"})
        finally:
            events.unregister("before-call.lambda.GetAlias", unique_id="emergency")
        assert fired and fired[0].changed
        alias = LambdaTrafficShifter(target).current()
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
        assert "traffic_move_undone" not in audit_actions("dep-E")
        record = DeploymentRepository().get_deployment("dep-E")
        assert record.decision == "emergency_rolled_back"
        aws.follow_schedules(["TrafficCheckFunction"])  # the promoted checks leave it alone too
        for minutes in (2, 10, 30):
            aws.clock.advance(minutes * 60)
            aws.invoker.drain()
        alias = LambdaTrafficShifter(target).current()
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
