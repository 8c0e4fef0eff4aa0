from __future__ import annotations

import threading
from typing import Any

import pytest

from deployguard.alerts.models import Alert
from deployguard.alerts.settings import AlertingSettings
from deployguard.exceptions import IncidentStateError
from deployguard.incidents.escalation import Escalator
from deployguard.incidents.models import IncidentStatus
from deployguard.incidents.repository import IncidentRepository
from deployguard.incidents.service import AUTO_RESOLVER, IncidentService
from deployguard.models import Severity


def _alert(rule: str = "critical-health-score", group: str = "health", **kw: Any) -> Alert:
    fields: dict[str, Any] = {
        "rule": rule,
        "group": group,
        "grouping_key": f"dg-1#{group}",
        "severity": Severity.CRITICAL,
        "source": "assessment",
        "deployment_id": "dg-1",
        "service": "checkout-api",
        "environment": "production",
        "version": "2",
        "title": "t",
        "message": "health_score=55",
        "expression": "health_score < 70",
        "escalation_policy": "emergency",
    }
    fields.update(kw)
    return Alert(**fields)


@pytest.fixture
def settings() -> AlertingSettings:
    return AlertingSettings.model_validate({"incidents": {"auto_resolve_after_seconds": 300}})


@pytest.fixture
def service(repo: Any, settings: AlertingSettings, publisher: Any) -> IncidentService:
    return IncidentService(settings, IncidentRepository(repo), publisher)


def test_alerts_of_one_group_join_one_incident_and_raise_its_severity(service: IncidentService) -> None:
    first, opened = service.open_or_join(
        _alert("minimum-health-score", severity=Severity.WARNING, escalation_policy=None)
    )
    assert opened and first.severity == Severity.WARNING and first.escalation.policy is None
    second, opened = service.open_or_join(_alert())
    assert not opened and second.incident_id == first.incident_id
    assert second.severity == Severity.CRITICAL and second.escalation.policy == "emergency"
    assert second.rules == ["minimum-health-score", "critical-health-score"] and second.alert_count == 2
    other, opened = service.open_or_join(_alert("canary-issue", group="canary", grouping_key="dg-1#canary"))
    assert opened and other.incident_id != first.incident_id


def test_racing_alerts_open_exactly_one_incident(service: IncidentService) -> None:
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def fire() -> None:
        barrier.wait()
        incident, opened = service.open_or_join(_alert())
        with lock:
            results.append((incident.incident_id, opened))

    threads = [threading.Thread(target=fire) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len({i for i, _ in results}) == 1
    assert sum(1 for _, opened in results if opened) == 1
    incident = service.incidents.get(results[0][0])
    assert incident.alert_count == 6


def test_acknowledge_and_resolve_record_who_when_and_times(
    service: IncidentService, sim_clock: Any, repo: Any, publisher: Any
) -> None:
    incident, _ = service.open_or_join(_alert())
    sim_clock.advance(90)
    acked = service.acknowledge(incident.incident_id, "alice", "looking")
    assert acked.status == IncidentStatus.ACKNOWLEDGED and acked.acknowledged_by == "alice"
    assert acked.time_to_acknowledge_seconds == 90
    with pytest.raises(IncidentStateError):
        service.acknowledge(incident.incident_id, "bob")
    sim_clock.advance(600)
    done = service.resolve(incident.incident_id, "alice", "rolled back; fix in 2.1")
    assert done.status == IncidentStatus.RESOLVED and done.time_to_resolve_seconds == 690
    assert done.resolution_notes == "rolled back; fix in 2.1"
    with pytest.raises(IncidentStateError):
        service.resolve(incident.incident_id, "alice")
    actions = [e.action for e in repo.audit_trail("dg-1")]
    assert actions == ["incident_opened", "incident_acknowledged", "incident_resolved"]
    assert [e.details["kind"] for e in publisher.events] == [
        "incident_opened",
        "incident_acknowledged",
        "incident_resolved",
    ]
    # the key is free again: the next alert opens a new incident
    again, opened = service.open_or_join(_alert())
    assert opened and again.incident_id != incident.incident_id
    stats = service.stats()
    assert stats.incidents == 2 and stats.resolved == 1
    assert stats.mean_time_to_acknowledge_seconds == 90 and stats.mean_time_to_resolve_seconds == 690


def test_escalation_pages_step_by_step_and_stops_on_acknowledgement(
    service: IncidentService, settings: AlertingSettings, sim_clock: Any, publisher: Any
) -> None:
    escalator = Escalator(settings, service.incidents, publisher)
    incident, _ = service.open_or_join(_alert())
    first = escalator.escalate_due()
    assert [p.routes for p in first] == [["oncall-primary", "oncall-secondary"]]
    assert escalator.escalate_due() == []  # the next step waits 120 s
    sim_clock.advance(119)
    assert escalator.escalate_due() == []
    sim_clock.advance(1)
    second = escalator.escalate_due()
    assert [p.routes for p in second] == [["engineering-manager", "incident-commander"]]
    service.acknowledge(incident.incident_id, "alice")
    for _ in range(5):
        sim_clock.advance(300)
        assert escalator.escalate_due() == []
    pages = [e for e in publisher.events if e.details.get("kind") == "page"]
    assert [p.details["page"] for p in pages] == [1, 2]
    stored = service.incidents.get(incident.incident_id)
    assert stored.escalation.next_at is None and stored.escalation.stopped_reason == "acknowledged by alice"


def test_acknowledgement_racing_a_page_lets_at_most_that_page_out(
    service: IncidentService, settings: AlertingSettings, sim_clock: Any, publisher: Any
) -> None:
    escalator = Escalator(settings, service.incidents, publisher)
    incident, _ = service.open_or_join(_alert())
    escalator.escalate_due()
    sim_clock.advance(120)
    start = threading.Barrier(2)
    paged: list[int] = []

    def page() -> None:
        start.wait()
        paged.append(len(escalator.escalate_due()))

    thread = threading.Thread(target=page)
    thread.start()
    start.wait()
    service.acknowledge(incident.incident_id, "alice")
    thread.join(30)
    sim_clock.advance(3600)
    assert escalator.escalate_due() == []
    assert paged[0] in (0, 1)  # the step claimed before the acknowledgement, or none
    assert len([e for e in publisher.events if e.details.get("kind") == "page"]) == 1 + paged[0]


def test_last_step_repeats_until_max_pages(service: IncidentService, sim_clock: Any, publisher: Any) -> None:
    settings = AlertingSettings.model_validate(
        {
            "escalation": {
                "policies": {
                    "standard": {"steps": [{"routes": ["a"], "wait_seconds": 60}], "repeat_every_seconds": 60},
                    "emergency": {"steps": [{"routes": ["b"], "wait_seconds": 0}], "max_pages": 3},
                }
            }
        }
    )
    escalator = Escalator(settings, service.incidents, publisher)
    service.open_or_join(_alert())
    count = 0
    for _ in range(10):
        count += len(escalator.escalate_due())
        sim_clock.advance(900)
    assert count == 3


def test_condition_clear_for_the_configured_time_resolves_automatically(
    service: IncidentService, sim_clock: Any
) -> None:
    incident, _ = service.open_or_join(_alert())
    assert service.note_evaluation("dg-1", [], ["canary-issue"]) == []  # not every rule of the incident
    assert service.note_evaluation("dg-1", [], ["critical-health-score"]) == [incident.incident_id]
    sim_clock.advance(299)
    assert service.auto_resolve_due() == []
    # the condition returns (the rule fired, even if its cooldown suppressed the alert): clock restarts
    service.note_evaluation("dg-1", [incident.key], [])
    sim_clock.advance(10)
    assert service.auto_resolve_due() == []
    service.note_evaluation("dg-1", [], ["critical-health-score"])
    sim_clock.advance(300)
    resolved = service.auto_resolve_due()
    assert [i.incident_id for i in resolved] == [incident.incident_id]
    assert resolved[0].auto_resolved and resolved[0].resolved_by == AUTO_RESOLVER


def test_event_incidents_never_resolve_themselves(service: IncidentService, sim_clock: Any) -> None:
    incident, _ = service.open_or_join(
        _alert("rollback-failed", group="rollback", grouping_key="dg-1#rollback", auto_resolve=False)
    )
    service.note_evaluation("dg-1", [], ["rollback-failed"])
    sim_clock.advance(10_000)
    assert service.auto_resolve_due() == []
    assert service.incidents.get(incident.incident_id).status == IncidentStatus.OPEN
