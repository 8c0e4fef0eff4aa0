"""Recorder and hook events, and post-deployment anomalies, go through the alert engine:
incidents, paging, remediation, deliveries at the local receivers. Each runs the real Lambda
handler of template.yaml on the embedded AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from alert_rules_support import alert_deliveries, shop_stack, webhook_events
from metric_history import write_lambda_history

from deployguard import clock
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.incidents.models import IncidentStatus
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import LEDGER, create_lambda_deployment, state_change_event
from deployguard_local.emulator import REPO_ROOT, sample_handler
from deployguard_local.receivers import LocalReceivers

SERVICES = {
    "orders-api": {"environment": "production", "function_name": "orders-api", "expected_duration_seconds": 600},
    "broken-api": {"environment": "production", "function_name": "broken-api"},
    "checkout-api": {"environment": "production", "function_name": "checkout-api"},
}


@pytest.fixture
def stack() -> Iterator[tuple[Any, LocalReceivers]]:
    with shop_stack([], SERVICES) as (aws, receivers):
        yield aws, receivers


def _codedeploy(aws: Any, name: str, handler: Any = sample_handler) -> tuple[str, LambdaTarget]:
    versions = aws.deploy_sample_function(name, "live", handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    return create_lambda_deployment(target, name, "live"), target


def _record(aws: Any, deployment_id: str, name: str, state: str) -> None:
    payload, errored = aws.invoke("DeploymentRecorderFunction", state_change_event(deployment_id, name, "live", state))
    assert not errored, payload


def _incidents(deployment_id: str) -> dict[str, Any]:
    return {i.group: i for i in IncidentRepository(DeploymentRepository()).recent() if i.deployment_id == deployment_id}


def test_a_failed_codedeploy_deployment_whose_rollback_failed_pages_at_once(stack: Any) -> None:
    aws, receivers = stack
    deployment_id, target = _codedeploy(aws, "orders-api")
    _record(aws, deployment_id, "orders-api", "START")
    LambdaTrafficShifter(target).shift(0.1)  # CodeDeploy moved 10%, then failed without moving it back
    DeploymentRepository().update_deployment(deployment_id, lambda d: setattr(d, "canary_weight", 0.1))
    _record(aws, deployment_id, "orders-api", "FAILURE")
    aws.invoker.drain()
    incidents = _incidents(deployment_id)
    rollback = incidents["rollback"]
    assert rollback.rules == ["rollback-failed"] and rollback.severity == "critical"
    assert rollback.escalation.pages == 1  # the emergency policy's first step, at once
    assert incidents["deployment"].rules == ["deployment-failed"]
    assert alert_deliveries(receivers)[deployment_id] == {"rollback-failed", "deployment-failed"}
    pages = [r.json() for r in receivers.received("pagerduty")]
    assert any(p["event_action"] == "trigger" and rollback.incident_id in p["dedup_key"] for p in pages)


def test_a_long_running_codedeploy_deployment_raises_its_alert_from_the_sweep(stack: Any) -> None:
    aws, receivers = stack
    deployment_id, _ = _codedeploy(aws, "orders-api")
    _record(aws, deployment_id, "orders-api", "START")
    aws.clock.advance(900)  # expected 600 s
    schedule = json.loads((REPO_ROOT / "events" / "schedule.json").read_text(encoding="utf-8"))
    payload, errored = aws.invoke("DeploymentRecorderFunction", schedule)
    assert not errored and payload["long_running"] == [deployment_id]
    aws.invoker.drain()
    assert _incidents(deployment_id)["duration"].rules == ["long-running-deployment"]
    assert "long-running-deployment" in alert_deliveries(receivers)[deployment_id]


def test_a_failed_pre_traffic_validation_raises_canary_issue_and_stops_the_deployment(stack: Any) -> None:
    aws, receivers = stack

    def broken(event: Any, context: Any) -> dict[str, Any]:
        return {"statusCode": 503, "body": "{}"}

    deployment_id, _ = _codedeploy(aws, "broken-api", broken)
    execution = LEDGER.issue(deployment_id)
    payload, _ = aws.invoke(
        "LifecycleHookFunction", {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}
    )
    assert payload["status"] == "Failed" and LEDGER.calls_for(execution) == 1  # answered once, before alerting
    aws.invoker.drain()
    incident = _incidents(deployment_id)["canary"]
    assert incident.rules == ["canary-issue"] and incident.status == IncidentStatus.OPEN
    trail = [e.action for e in DeploymentRepository().audit_trail(deployment_id)]
    assert "alert_raised" in trail and "remediation_succeeded" in trail  # the planned rollback ran
    assert "canary-issue" in alert_deliveries(receivers)[deployment_id]
    assert any(e["event_type"] == "validation.failed" for e in webhook_events(receivers))


def test_a_passing_hook_never_builds_the_alert_engine(stack: Any) -> None:
    """The engine (and its modules) is built only when the hook raises an alert: not on a cold start that passes."""
    from deployguard.workflows import runtime

    aws, _ = stack
    deployment_id, _ = _codedeploy(aws, "orders-api")
    execution = LEDGER.issue(deployment_id)
    runtime.reset()
    payload, errored = aws.invoke(
        "LifecycleHookFunction", {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}
    )
    assert not errored and payload["status"] == "Succeeded" and LEDGER.calls_for(execution) == 1
    assert runtime.alert_engine.cache_info().currsize == 0


def test_a_post_deployment_anomaly_opens_an_incident_and_asks_to_roll_back(stack: Any) -> None:
    aws, receivers = stack
    versions = aws.deploy_sample_function("checkout-api", "live", sample_handler)
    target = LambdaTarget(function_name="checkout-api", alias="live", stable_version=versions[0],
                          new_version=versions[1])  # fmt: skip
    write_lambda_history(
        "checkout-api", versions[0], clock.now(), 20 * 60, errors_per_1000=5
    )  # 20 hours of the stable version
    aws.clock.advance(20 * 3600)
    LambdaTrafficShifter(target).promote()
    promoted = clock.now()
    repository = DeploymentRepository()
    repository.create_deployment(
        Deployment(
            deployment_id="promoted", service="checkout-api", environment="production", version=versions[1],
            target=target, status=DeploymentStatus.SUCCEEDED, phase=Phase.MONITORING,
            started_at=promoted - timedelta(minutes=15), ended_at=promoted, canary_weight=1.0,
        )
    )  # fmt: skip
    write_lambda_history(
        "checkout-api", versions[1], promoted, 20, errors_per_1000=80
    )  # far more errors than the service ever had
    aws.clock.advance(20 * 60)
    schedule = json.loads((REPO_ROOT / "events" / "schedule.json").read_text(encoding="utf-8"))
    payload, errored = aws.invoke("AssessorFunction", schedule)
    assert not errored and payload["monitored"] == ["promoted"]
    aws.invoker.drain()
    incident = _incidents("promoted")["post-deployment"]
    assert incident.rules == ["post-deployment-anomaly"] and incident.escalation.pages == 1
    approvals = [e for e in repository.audit_trail("promoted") if e.action == "remediation_pending_approval"]
    assert len(approvals) == 1  # the rollback waits for a person (ApprovalStateMachine)
    assert "post-deployment-anomaly" in alert_deliveries(receivers)["promoted"]
