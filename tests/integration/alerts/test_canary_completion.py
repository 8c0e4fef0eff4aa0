"""The state machine's canaries end with ``canary.completed`` and count in the deployment
statistics (EMF, by environment and strategy) like the recorder's CodeDeploy deployments."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from deployguard import clock
from deployguard.models import Deployment, DeploymentStatus, EventType, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime


def _ended(status: DeploymentStatus, decision: str) -> Deployment:
    now = clock.now()
    target = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")
    deployment = Deployment(
        deployment_id=f"dep-{decision}", service="checkout-api", environment="production", version="2",
        target=target, status=status, phase=Phase.FAILED, started_at=now - timedelta(seconds=420), ended_at=now,
        decision=decision, decision_reason="errors regressed", step_index=1,
    )  # fmt: skip
    DeploymentRepository().create_deployment(deployment)
    return deployment


def _emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


@pytest.mark.parametrize(
    ("status", "decision", "metric"),
    [(DeploymentStatus.ROLLED_BACK, "rolled_back", "DeploymentsRolledBack"),
     (DeploymentStatus.SUCCEEDED, "promoted", "DeploymentsSucceeded")],
)  # fmt: skip
def test_notify_announces_canary_completed_and_publishes_the_statistics(
    embedded: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    status: DeploymentStatus, decision: str, metric: str,
) -> None:  # fmt: skip
    deployment = _ended(status, decision)
    runtime.metrics.clear_metrics()  # what earlier tests' functions added while metrics were disabled
    capsys.readouterr()
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    payload, errored = embedded.invoke(
        "CanaryStepFunction", {"action": "notify", "state": {"deployment_id": deployment.deployment_id}}
    )
    assert not errored, payload
    blobs = [b for b in _emf(capsys.readouterr().out) if metric in b]
    [blob] = blobs
    assert (blob["environment"], blob["strategy"]) == ("production", "canary")
    assert blob["DeploymentsEnded"] == [1.0] and blob["DeploymentDuration"] == [420.0]
    assert blob["DeploymentSuccessRate"] == [100.0 if decision == "promoted" else 0.0]
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "DeployGuard"
    events = DeploymentRepository().events(deployment.deployment_id)
    [completed] = [e for e in events if e.event_type == EventType.CANARY_COMPLETED]
    assert completed.details["decision"] == decision and completed.details["duration_seconds"] == 420.0
    assert completed.details["steps_reached"] == 2
    kinds = {e.event_type for e in events}  # beside the outcome it completes
    assert (EventType.DEPLOYMENT_COMPLETED if decision == "promoted" else EventType.DEPLOYMENT_FAILED) in kinds


def test_validate_counts_a_started_deployment(
    embedded: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = embedded.deploy_sample_function("stats-api", "live", lambda event, context: {"statusCode": 200})
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    runtime.metrics.clear_metrics()
    capsys.readouterr()
    target = {"function_name": "stats-api", "alias": "live", "stable_version": versions[0], "new_version": versions[1]}
    payload, errored = embedded.invoke(
        "CanaryStepFunction",
        {"action": "validate", "state": {"deployment": {"service": "stats-api", "version": versions[1],
                                                          "target": target}}},
    )  # fmt: skip
    assert not errored, payload
    [blob] = [b for b in _emf(capsys.readouterr().out) if "DeploymentsStarted" in b]
    assert blob["DeploymentsStarted"] == [1.0] and blob["strategy"] == "canary"
