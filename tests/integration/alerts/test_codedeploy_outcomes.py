"""CodeDeploy-driven canaries end like the state machine's: a rollback CodeDeploy reports raises
``deployment-failed``, and every canary ends with one ``canary.completed``. The path is the real one:
CodeDeploy's state-change notification put on the embedded AWS's default event bus (PutEvents), the
template's rule invoking the recorder, the alert engine, deliveries at local receivers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from alert_rules_support import alert_deliveries, shop_stack, webhook_events

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import DeploymentStatus, EventType, LambdaTarget
from deployguard.readmodels import DeploymentReader, SummaryBuilder
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard_local.codedeploy import create_lambda_deployment, put_state_change, start_rollback_deployment
from deployguard_local.emulator import sample_handler
from deployguard_local.receivers import LocalReceivers

SERVICES = {"orders-api": {"environment": "production", "function_name": "orders-api"}}


@pytest.fixture
def stack() -> Iterator[tuple[Any, LocalReceivers]]:
    with shop_stack([], SERVICES) as (aws, receivers):
        yield aws, receivers


def _canary(aws: Any) -> tuple[str, LambdaTarget]:
    versions = aws.deploy_sample_function("orders-api", "live", sample_handler)
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version=versions[0], new_version=versions[1])
    return create_lambda_deployment(target, "orders-api", "live"), target


def _put(aws: Any, deployment_id: str, *states: str) -> None:
    for state in states:
        put_state_change(deployment_id, "orders-api", "live", state)
        aws.invoker.drain()
    assert not aws.invoker.failed


def _moved_10_percent(deployment_id: str, target: LambdaTarget) -> None:
    LambdaTrafficShifter(target).shift(0.1)
    DeploymentRepository().update_deployment(deployment_id, lambda d: setattr(d, "canary_weight", 0.1))


def _events(deployment_id: str, kind: EventType) -> list[Any]:
    return [e for e in DeploymentRepository().events(deployment_id) if e.event_type == kind]


def _incident_rules(deployment_id: str) -> dict[str, list[str]]:
    repository = IncidentRepository(DeploymentRepository())
    return {i.group: i.rules for i in repository.recent() if i.deployment_id == deployment_id}


def test_a_rollback_codedeploy_reports_fires_deployment_failed_and_completes_the_canary_once(stack: Any) -> None:
    aws, receivers = stack
    deployment_id, target = _canary(aws)
    _put(aws, deployment_id, "START")
    _moved_10_percent(deployment_id, target)
    LambdaTrafficShifter(target).rollback()  # CodeDeploy put the alias back on the stable version
    _put(aws, deployment_id, "FAILURE", "FAILURE")  # EventBridge delivers at least once
    deployment = DeploymentRepository().get_deployment(deployment_id)
    assert deployment.status == DeploymentStatus.ROLLED_BACK
    assert len(_events(deployment_id, EventType.ROLLBACK_COMPLETED)) == 1
    assert not _events(deployment_id, EventType.DEPLOYMENT_FAILED)  # CodeDeploy reported a rollback, not a failure
    assert _incident_rules(deployment_id)["deployment"] == ["deployment-failed"]
    assert "deployment-failed" in alert_deliveries(receivers)[deployment_id]
    [completed] = _events(deployment_id, EventType.CANARY_COMPLETED)
    assert completed.details["decision"] == "rolled_back" and completed.details["driver"] == "codedeploy"
    delivered = [e for e in webhook_events(receivers) if e["event_type"] == "canary.completed"]
    assert [e["deployment_id"] for e in delivered] == [deployment_id]


def test_a_canary_rolled_back_by_a_rollback_deployment_completes_when_the_rollback_ends(
    stack: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws, receivers = stack
    runtime.metrics.clear_metrics()  # what earlier tests' functions added while metrics were disabled
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    deployment_id, target = _canary(aws)
    _put(aws, deployment_id, "START")
    _moved_10_percent(deployment_id, target)
    rollback_id = start_rollback_deployment(deployment_id)
    _put(aws, deployment_id, "STOP")
    assert DeploymentRepository().get_deployment(deployment_id).status == DeploymentStatus.STOPPED
    assert not _events(deployment_id, EventType.CANARY_COMPLETED)  # the rollback deployment decides how it ended
    assert "deployment-failed" in alert_deliveries(receivers)[deployment_id]
    LambdaTrafficShifter(target).rollback()
    capsys.readouterr()
    _put(aws, rollback_id, "START", "SUCCESS", "SUCCESS")
    # the rollback deployment puts the old version back: no release started or succeeded on the dashboard,
    # none in the summary, where the release it rolls back counts as rolled back
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert emf and not [b for b in emf if "DeploymentsStarted" in b or "DeploymentsSucceeded" in b], emf
    rollback = DeploymentRepository().get_deployment(rollback_id)
    assert rollback.rollback_of == deployment_id
    start, end = rollback.started_at - timedelta(days=1), rollback.started_at + timedelta(days=1)
    figures = SummaryBuilder(DeploymentReader(DeploymentRepository())).build(start, end, "2d").current
    assert (figures.deployments, figures.rollback_deployments, figures.succeeded, figures.rolled_back) == (1, 1, 0, 1)
    assert DeploymentRepository().get_deployment(deployment_id).status == DeploymentStatus.ROLLED_BACK
    [completed] = _events(deployment_id, EventType.CANARY_COMPLETED)
    assert completed.details["decision"] == "rolled_back"
    assert not _events(rollback_id, EventType.CANARY_COMPLETED)  # the rollback deployment is no canary
    assert _incident_rules(deployment_id)["deployment"] == ["deployment-failed"]  # one incident, not two


def test_a_promoted_codedeploy_canary_completes_once_and_raises_nothing(stack: Any) -> None:
    aws, receivers = stack
    deployment_id, target = _canary(aws)
    _put(aws, deployment_id, "START")
    LambdaTrafficShifter(target).promote()
    _put(aws, deployment_id, "SUCCESS", "SUCCESS")
    [completed] = _events(deployment_id, EventType.CANARY_COMPLETED)
    assert completed.details["decision"] == "succeeded" and completed.severity == "info"
    assert deployment_id not in alert_deliveries(receivers)
    assert not _incident_rules(deployment_id)
