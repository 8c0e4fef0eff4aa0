"""An alert of an event or an assessment has an id and a time derived from its source, so the alert engine
run again on that source (the outbox's retry) writes nothing of it twice: its record, its ``alert_raised``
audit entry, its ``alert`` event. Alerts of the tick's deployment-only rules are new each time.
(moto DynamoDB and SNS; the path through the outbox with injected faults is in
tests/integration/incidents/test_alert_retries.py.)"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from deployguard.alerts.engine import AlertEngine, alert_event_id
from deployguard.alerts.evaluator import RuleEvaluator
from deployguard.alerts.settings import AlertingSettings
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import (
    Assessment,
    Decision,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EventType,
    LambdaTarget,
    Verdict,
)
from deployguard.storage.repository import DeploymentRepository

TARGET = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")


def _deployment(**kw: Any) -> Deployment:
    return Deployment(deployment_id="dg-1", service="checkout-api", environment="production", version="2",
                      target=TARGET, status=DeploymentStatus.IN_PROGRESS, **kw)  # fmt: skip


def _failing(sim_clock: Any) -> Assessment:
    verdict = Verdict(decision=Decision.FAILING, summary="errors regressed")
    return Assessment(deployment_id="dg-1", verdict=verdict, health_score=50, at=sim_clock())


def _event(kind: EventType, at: Any) -> DeploymentEvent:
    return DeploymentEvent(event_type=kind, deployment_id="dg-1", service="checkout-api", version="2",
                           environment="production", title="t", at=at)  # fmt: skip


@pytest.fixture
def engine(repo: DeploymentRepository, publisher: Any) -> AlertEngine:
    settings = AlertingSettings.model_validate({"remediation": {"plans": []}})  # no AWS to roll back here
    return AlertEngine(settings, repo, publisher)


def test_alerts_of_an_event_or_assessment_have_its_id_those_of_the_tick_new_ones(sim_clock: Any) -> None:
    evaluator = RuleEvaluator(AlertingSettings())
    event = _event(EventType.ROLLBACK_FAILED, sim_clock() - timedelta(minutes=5))  # CodeDeploy's time, say
    [alert] = evaluator.evaluate(deployment=_deployment(), event=event).fired
    assert alert.derived and alert.at == sim_clock()  # raised now (the evaluation), not at the event's time
    sim_clock.advance(30)
    [again] = evaluator.evaluate(deployment=_deployment(), event=event).fired
    assert (
        again.alert_id == alert.alert_id and again.at == sim_clock()
    )  # the engine takes the first's time from its record
    fired = evaluator.evaluate(deployment=_deployment(), assessment=_failing(sim_clock)).fired
    assert fired and all(a.derived for a in fired)

    long_running = _deployment(expected_duration_seconds=600, started_at=sim_clock() - timedelta(seconds=1000))
    [tick] = evaluator.evaluate(deployment=long_running, now=sim_clock()).fired
    [next_tick] = evaluator.evaluate(deployment=long_running, now=sim_clock()).fired
    assert not tick.derived and tick.at == sim_clock() and next_tick.alert_id != tick.alert_id


def test_an_assessment_evaluated_again_raises_its_alerts_once(
    engine: AlertEngine, repo: DeploymentRepository, publisher: Any, sim_clock: Any
) -> None:
    deployment = _deployment()
    repo.create_deployment(deployment)
    assessment = _failing(sim_clock)
    raised_at = sim_clock()
    first = engine.on_assessment(deployment, assessment)
    sim_clock.advance(90)
    again = engine.on_assessment(deployment, assessment)  # the same assessment, a minute and a half later
    assert len(first) >= 2 and [a.alert_id for a in again] == [a.alert_id for a in first]

    fired = {a.alert_id for a in first}
    stored = engine.incident_store.alerts("dg-1")
    assert sorted(a.alert_id for a in stored) == sorted(fired)  # one record each
    assert all(a.at == raised_at for a in [*stored, *again])  # raised once, then; found again
    raised = [e for e in repo.audit_trail("dg-1") if e.action == "alert_raised"]
    assert Counter(e.details["alert_id"] for e in raised) == Counter(fired)  # one audit entry each
    assert all(e.at == raised_at for e in raised)
    events = [e for e in repo.events("dg-1") if e.details.get("kind") == "alert"]
    assert sorted(e.event_id for e in events) == sorted(alert_event_id(i) for i in fired)  # one event each
    assert Counter(e.event_id for e in publisher.events if e.details.get("kind") == "alert") == Counter(
        e.event_id for e in events
    )  # published once each: the channels are told once
    for incident in engine.incident_store.open_incidents():
        assert len(incident.alert_ids) == len(set(incident.alert_ids)) == incident.alert_count


def test_an_alert_record_is_written_once_per_derived_id_and_alerts_are_listed_as_raised(
    repo: DeploymentRepository, sim_clock: Any
) -> None:
    store = IncidentRepository(repo)
    evaluator = RuleEvaluator(AlertingSettings())
    long_running = _deployment(expected_duration_seconds=600, started_at=sim_clock() - timedelta(seconds=1000))
    [tick] = evaluator.evaluate(deployment=long_running, now=sim_clock()).fired
    assert store.add_alert(tick) is tick
    sim_clock.advance(60)
    event = _event(EventType.ROLLBACK_FAILED, sim_clock() - timedelta(minutes=10))  # an old event, alerted now
    [alert] = evaluator.evaluate(deployment=_deployment(), event=event).fired
    assert store.add_alert(alert) is alert
    sim_clock.advance(60)
    [retry] = evaluator.evaluate(deployment=_deployment(), event=event).fired  # the engine run again on it
    found = store.add_alert(retry.model_copy(update={"incident_id": "inc-2"}))
    assert found.alert_id == alert.alert_id and found.at == alert.at and found.incident_id is None  # the first stands
    sim_clock.advance(60)
    [later] = evaluator.evaluate(deployment=long_running, now=sim_clock()).fired
    store.add_alert(later)
    listed = store.alerts("dg-1")
    assert [a.alert_id for a in listed] == [tick.alert_id, alert.alert_id, later.alert_id]  # as raised
