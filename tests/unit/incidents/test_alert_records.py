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


def test_alerts_of_an_event_or_assessment_take_its_time_those_of_the_tick_the_evaluations(sim_clock: Any) -> None:
    evaluator = RuleEvaluator(AlertingSettings())
    event = _event(EventType.ROLLBACK_FAILED, sim_clock() - timedelta(minutes=5))  # CodeDeploy's time, say
    [alert] = evaluator.evaluate(deployment=_deployment(), event=event).fired
    assert alert.derived and alert.at == event.at
    assert evaluator.evaluate(deployment=_deployment(), event=event).fired[0] == alert  # every evaluation: the same
    assessment = _failing(sim_clock)
    sim_clock.advance(30)
    fired = evaluator.evaluate(deployment=_deployment(), assessment=assessment).fired
    assert fired and all(a.derived and a.at == assessment.at for a in fired)

    long_running = _deployment(expected_duration_seconds=600, started_at=sim_clock() - timedelta(seconds=1000))
    [tick] = evaluator.evaluate(deployment=long_running, now=sim_clock()).fired
    again = evaluator.evaluate(deployment=long_running, now=sim_clock()).fired[0]
    assert not tick.derived and tick.at == sim_clock() and again.alert_id != tick.alert_id


def test_an_assessment_evaluated_again_raises_its_alerts_once(
    engine: AlertEngine, repo: DeploymentRepository, publisher: Any, sim_clock: Any
) -> None:
    deployment = _deployment()
    repo.create_deployment(deployment)
    assessment = _failing(sim_clock)
    first = engine.on_assessment(deployment, assessment)
    sim_clock.advance(90)
    again = engine.on_assessment(deployment, assessment)  # the same assessment, a minute and a half later
    assert len(first) >= 2 and [a.alert_id for a in again] == [a.alert_id for a in first]

    fired = {a.alert_id for a in first}
    stored = engine.incident_store.alerts("dg-1")
    assert sorted(a.alert_id for a in stored) == sorted(fired)  # one record each
    assert all(a.at == assessment.at for a in stored)
    raised = Counter(e.details["alert_id"] for e in repo.audit_trail("dg-1") if e.action == "alert_raised")
    assert raised == Counter(fired)  # one audit entry each
    events = [e for e in repo.events("dg-1") if e.details.get("kind") == "alert"]
    assert sorted(e.event_id for e in events) == sorted(alert_event_id(i) for i in fired)  # one event each
    assert Counter(e.event_id for e in publisher.events if e.details.get("kind") == "alert") == Counter(
        e.event_id for e in events
    )  # published once each: the channels are told once
    for incident in engine.incident_store.open_incidents():
        assert len(incident.alert_ids) == len(set(incident.alert_ids)) == incident.alert_count


def test_an_alert_record_is_written_once_per_derived_id_and_listed_by_its_sources_time(
    repo: DeploymentRepository, sim_clock: Any
) -> None:
    store = IncidentRepository(repo)
    evaluator = RuleEvaluator(AlertingSettings())
    old = _event(EventType.ROLLBACK_FAILED, sim_clock())
    sim_clock.advance(120)
    long_running = _deployment(expected_duration_seconds=600, started_at=sim_clock() - timedelta(seconds=1000))
    [tick] = evaluator.evaluate(deployment=long_running, now=sim_clock()).fired
    assert store.add_alert(tick)
    [late] = evaluator.evaluate(deployment=_deployment(), event=old).fired  # raised after the tick's (a retry)
    assert store.add_alert(late) and not store.add_alert(late.model_copy(update={"incident_id": "inc-2"}))
    listed = store.alerts("dg-1")
    assert [a.alert_id for a in listed] == [late.alert_id, tick.alert_id]  # by time: the event's came first
    assert listed[0].incident_id is None  # the first record stands
    assert store.add_alert(tick) and len(store.alerts("dg-1")) == 3  # the tick's alerts: a record each time
