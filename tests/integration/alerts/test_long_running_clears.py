"""``long-running-deployment`` fires when a deployment runs 50% longer than expected (not as soon as the
expected duration passes), and its incident clears when the deployment ends and resolves after the clear
window. The real path: CodeDeploy's state changes through the DeploymentRecorderFunction, its schedule's
sweep and the AssessorFunction's minute tick on the embedded AWS, deliveries at the local webhook."""

from __future__ import annotations

import json
from typing import Any

from alert_rules_support import alert_deliveries, shop_stack

from deployguard.incidents.models import IncidentStatus
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import EventType, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import create_lambda_deployment, state_change_event
from deployguard_local.emulator import REPO_ROOT, sample_handler

SERVICES = {
    "orders-api": {"environment": "production", "function_name": "orders-api", "expected_duration_seconds": 600}
}
SCHEDULE = json.loads((REPO_ROOT / "events" / "schedule.json").read_text(encoding="utf-8"))


def _minutes(aws: Any, n: int) -> None:
    """``n`` simulated minutes of the schedules: the assessor's tick and the recorder's sweep."""
    for _ in range(n):
        aws.clock.advance(60)
        for function in ("AssessorFunction", "DeploymentRecorderFunction"):
            payload, errored = aws.invoke(function, SCHEDULE)
            assert not errored, payload
    aws.invoker.drain()


def _record(aws: Any, deployment_id: str, state: str) -> None:
    payload, errored = aws.invoke(
        "DeploymentRecorderFunction", state_change_event(deployment_id, "orders-api", "live", state)
    )
    assert not errored, payload
    aws.invoker.drain()


def _duration_incidents(deployment_id: str) -> list[Any]:
    incidents = IncidentRepository(DeploymentRepository()).recent()
    return [i for i in incidents if i.deployment_id == deployment_id and i.group == "duration"]


def test_long_running_fires_at_one_and_a_half_times_the_expected_duration_and_clears_when_it_ends() -> None:
    with shop_stack([], SERVICES) as (aws, receivers):
        versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
        target = LambdaTarget(
            function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1]
        )
        deployment_id = create_lambda_deployment(target, "orders-api", "live")
        _record(aws, deployment_id, "START")

        _minutes(aws, 14)  # 1.4x the expected 10 minutes: late, not "50% longer"
        assert _duration_incidents(deployment_id) == []
        assert not [
            e for e in DeploymentRepository().events(deployment_id) if e.event_type == EventType.DEPLOYMENT_LONG_RUNNING
        ]
        assert "long-running-deployment" not in alert_deliveries(receivers).get(deployment_id, set())

        _minutes(aws, 2)  # 1.6x
        [incident] = _duration_incidents(deployment_id)
        assert incident.rules == ["long-running-deployment"] and incident.is_open
        assert "long-running-deployment" in alert_deliveries(receivers)[deployment_id]
        long_running = [
            e for e in DeploymentRepository().events(deployment_id) if e.event_type == EventType.DEPLOYMENT_LONG_RUNNING
        ]
        assert len(long_running) == 1 and "running 15 min, expected 10 min" in long_running[0].message

        _minutes(aws, 5)  # still running: still long-running, not clear
        [incident] = _duration_incidents(deployment_id)
        assert incident.is_open and incident.condition_clear_since is None

        _record(aws, deployment_id, "SUCCESS")  # it ended: the condition is clear from now
        [incident] = _duration_incidents(deployment_id)
        assert incident.is_open and incident.condition_clear_since is not None
        _minutes(aws, 11)  # the clear window (10 minutes) passed: resolved by the tick
        [incident] = _duration_incidents(deployment_id)
        assert incident.status == IncidentStatus.RESOLVED and incident.auto_resolved
        trail = [e.action for e in DeploymentRepository().audit_trail(deployment_id)]
        assert "incident_condition_cleared" in trail
