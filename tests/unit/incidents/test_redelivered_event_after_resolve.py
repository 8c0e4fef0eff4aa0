"""An event delivered again (SNS at least once, an outbox retry) after its incident was resolved joins nothing
and opens no second incident: its alert was raised before, in the incident a person resolved.
The real alert engine on moto (DynamoDB, SNS), the simulated clock."""

from __future__ import annotations

from typing import Any

from deployguard.alerts.engine import AlertEngine
from deployguard.alerts.settings import AlertingSettings
from deployguard.models import (
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EventType,
    LambdaTarget,
    Severity,
)


def test_a_failed_event_delivered_again_after_resolve_opens_no_second_incident(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    target = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")
    d1 = Deployment(deployment_id="dg-1", service="checkout-api", environment="production", version="2",
                    target=target, status=DeploymentStatus.FAILED)  # fmt: skip
    repo.create_deployment(d1)
    engine = AlertEngine(AlertingSettings(), repo, publisher)
    event = DeploymentEvent(
        event_type=EventType.DEPLOYMENT_FAILED, deployment_id="dg-1", service=d1.service, version=d1.version,
        environment=d1.environment, severity=Severity.ERROR, title="failed", message="CodeDeploy FAILURE",
    )  # fmt: skip
    [first] = engine.on_event(event)
    assert first.incident_id is not None
    engine.resolve(first.incident_id, "alice", "known: bad config")
    sim_clock.advance(600)  # past the rule's 300 s cooldown

    [again] = engine.on_event(event)  # the same event delivered again

    assert (again.alert_id, again.incident_id) == (first.alert_id, first.incident_id)
    assert [(i.incident_id, i.status.value) for i in engine.incident_store.recent()] == [
        (first.incident_id, "resolved")
    ]
    trail = [e.action for e in repo.audit_trail("dg-1")]
    assert trail.count("incident_opened") == 1 and trail.count("alert_raised") == 1
    opened = [e for e in publisher.events if e.details.get("kind") == "incident_opened"]
    assert len(opened) == 1
