"""An alert engine run that failed part-way is run again by the outbox (the minute tick's drain) on the
same event: the alert it raises has the same id (derived from the event and the rule), and everything
the first run wrote of it is written once: the alert record, the ``alert_raised`` audit entry, the
``alert`` event (recorded and published: the channels are told once). Faults are DynamoDB calls refused
through botocore hooks (9 throttles: every attempt of one call); time is the simulated clock."""

from __future__ import annotations

from typing import Any

import pytest
from incident_support_it import canary_in_flight, engine

from deployguard import clock
from deployguard.aws import clients
from deployguard.models import DeploymentEvent, DeploymentStatus, EventType, Severity
from deployguard.storage import outbox
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.emulator import EmbeddedAws

ONE_CALL = ["throttle"] * 9  # botocore's attempts of one call


def _body(request: Any) -> str:
    return request.body.decode() if isinstance(request.body, bytes) else str(request.body)


def _audit(deployment_id: str, action: str) -> list[Any]:
    return [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == action]


def _events(deployment_id: str, kind: str) -> list[DeploymentEvent]:
    return [e for e in DeploymentRepository().events(deployment_id) if e.details.get("kind") == kind]


def _published(faults: FaultInjector, kind: str) -> list[dict[str, Any]]:
    return [m for m in faults.published if (m.get("details") or {}).get("kind") == kind]


def test_a_retried_alert_run_records_publishes_and_audits_its_alert_once(
    embedded: EmbeddedAws, faults: FaultInjector
) -> None:
    """The first run opens the incident, stores the alert, audits it and announces it (recorded and
    published), then DynamoDB refuses the first page's claim on the incident: the run fails. The drain
    runs the engine again: the alert joins its incident once, its record, audit entry and event are
    found, not written again, and the page the first run missed goes out."""
    deployment, _ = canary_in_flight(embedded)
    eng = engine()
    repository = DeploymentRepository()
    event = DeploymentEvent.about(deployment, EventType.ROLLBACK_FAILED, "Rollback failed",
                                  "the alias could not be moved", severity=Severity.CRITICAL)  # fmt: skip

    def page_claim(request: Any) -> bool:  # the incident written with its first page claimed
        body = _body(request)
        return '"INCIDENT#' in body and '"paged"' in body

    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=page_claim)
    outbox.announce(repository, eng.publisher, event, alert=eng.on_event)
    assert plan.injected == 9
    [incident] = eng.incident_store.open_incidents()
    assert incident.escalation.pages == 0  # the run failed at the page
    assert len(_audit(deployment.deployment_id, "alerting_failed")) == 1
    assert len(_events(deployment.deployment_id, "alert")) == len(_published(faults, "alert")) == 1
    [first] = eng.incident_store.alerts(deployment.deployment_id)

    embedded.clock.advance(61)
    outbox.drain(repository, eng.publisher, repository.outbox(clock.now()), alert=eng.on_event)
    stored = eng.incident_store.get(incident.incident_id)
    assert stored.alert_ids == [first.alert_id] and stored.escalation.pages == 1  # joined once; paged now
    [alert] = eng.incident_store.alerts(deployment.deployment_id)  # one record
    assert alert.alert_id == first.alert_id and alert.at == first.at  # raised when the first run raised it
    [raised] = _audit(deployment.deployment_id, "alert_raised")  # one audit entry
    assert raised.details["alert_id"] == alert.alert_id and raised.at == first.at
    [announced] = _events(deployment.deployment_id, "alert")  # one alert event recorded ...
    [out] = _published(faults, "alert")  # ... and published: the channels are told once
    assert out["event_id"] == announced.event_id and announced.details["alert_id"] == alert.alert_id
    assert announced.at == first.at
    assert announced.details["incident_opened"] is True
    assert len(_events(deployment.deployment_id, "page")) == len(_published(faults, "page")) == 1
    assert len(_events(deployment.deployment_id, "incident_opened")) == 1
    assert repository.outbox(clock.now()) == []  # the event is done: the tick never runs the engine on it again


def _alert_record(request: Any) -> bool:
    return '"ALERT#' in _body(request)


def _alert_raised_entry(request: Any) -> bool:
    body = _body(request)
    return '"AUDIT#' in body and '"alert_raised"' in body


@pytest.mark.parametrize("refused", [_alert_record, _alert_raised_entry], ids=["alert-record", "alert-audit-entry"])
def test_a_late_retry_of_an_alert_is_not_reported_past_the_emergency_deadline(
    embedded: EmbeddedAws, faults: FaultInjector, refused: Any
) -> None:
    """The first run on a failed validation opens the canary incident, then DynamoDB refuses the alert's
    record (or, the record stored, its ``alert_raised`` entry): no rollback was decided. The drain runs
    the engine again more than the 30 s deadline after the event (and after the first run raised the
    alert): the rollback it decides is confirmed at once, so no deadline is reported missed: the
    deadline runs from the run's decision, not from the event nor from the alert's time."""
    deployment, _ = canary_in_flight(embedded)
    eng = engine()
    repository = DeploymentRepository()
    event = DeploymentEvent.about(deployment, EventType.VALIDATION_FAILED, "Validation failed",
                                  "smoke tests failed", severity=Severity.ERROR)  # fmt: skip

    plan = faults.on("dynamodb", "PutItem", ONE_CALL, when=refused)
    outbox.announce(repository, eng.publisher, event, alert=eng.on_event)
    assert plan.injected == 9
    [incident] = eng.incident_store.open_incidents()
    assert _audit(deployment.deployment_id, "remediation_attempt") == []  # failed before any rollback
    first = eng.incident_store.alerts(deployment.deployment_id)  # stored, or not

    embedded.clock.advance(61)
    outbox.drain(repository, eng.publisher, repository.outbox(clock.now()), alert=eng.on_event)
    [alert] = eng.incident_store.alerts(deployment.deployment_id)
    assert alert.rule == "canary-issue" and [a.at for a in first] in ([], [alert.at])
    deadline = eng.settings.remediation.emergency_deadline_seconds
    assert (clock.now() - event.at).total_seconds() > deadline
    assert bool(first) == ((clock.now() - alert.at).total_seconds() > deadline)  # raised by the first run: long ago
    assert repository.get_deployment(deployment.deployment_id).status == DeploymentStatus.ROLLED_BACK
    alias = clients.client("lambda").get_alias(FunctionName=deployment.service, Name="live")
    assert not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")  # all traffic on the stable
    assert _audit(deployment.deployment_id, "emergency_deadline_missed") == []
    assert _events(deployment.deployment_id, "emergency_deadline_missed") == []
    assert eng.incident_store.get(incident.incident_id).alert_ids == [alert.alert_id]
    assert len(_audit(deployment.deployment_id, "alert_raised")) == len(_events(deployment.deployment_id, "alert")) == 1
