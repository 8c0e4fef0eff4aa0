"""The incident lifecycle: open or join, acknowledge, resolve (by a person or automatically).

Every change is written conditionally (see :mod:`deployguard.incidents.repository`),
recorded on the incident's timeline and in the deployment's audit trail, and announced
as an ``alert`` event (``details.kind``: ``incident_opened``, ``incident_acknowledged``,
``incident_resolved``) when a publisher is given.

The audit entry and the event of an opening, acknowledgement or resolution are noted on the
incident in the change's own conditional write (:class:`PendingAnnouncement`: the event's id and
time fixed), then written (the audit entry once under the event id, the event through the outbox,
which records an id and time once) and the note cleared. When that fails (DynamoDB refuses the
event's record), the change stands and the note stays: the minute tick
(:meth:`IncidentService.announce_pending`, from the alert engine's tick) writes what is left, so
an acknowledged or resolved incident is always announced, once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from deployguard import clock
from deployguard.exceptions import ConflictError, IncidentStateError, NotFoundError
from deployguard.incidents.escalation import stopped_for_rollback
from deployguard.incidents.models import (
    EscalationState,
    Incident,
    IncidentStats,
    IncidentStatus,
    PendingAnnouncement,
    TimelineEntry,
)
from deployguard.models import DeploymentEvent, EventType, Severity
from deployguard.storage import outbox

if TYPE_CHECKING:
    from deployguard.alerts.models import Alert
    from deployguard.alerts.settings import AlertingSettings
    from deployguard.aws.events import EventPublisher
    from deployguard.incidents.repository import IncidentRepository

ACTOR = "deployguard:incidents"
AUTO_RESOLVER = "deployguard:auto-resolve"
logger = logging.getLogger(__name__)


class IncidentService:
    def __init__(
        self,
        settings: AlertingSettings,
        incidents: IncidentRepository,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.settings = settings
        self.incidents = incidents
        self.publisher = publisher

    # ------------------------------------------------------------------ alerts

    def open_or_join(self, alert: Alert) -> tuple[Incident, bool]:
        """The open incident of the alert's grouping key, joined, or a new one; (incident, opened)."""
        now = alert.at
        for _ in range(6):
            existing = self.incidents.open_incident_id(alert.grouping_key)
            if existing is not None:
                joined = self._join(existing, alert, now)
                if joined is not None:
                    return joined, False
                self.incidents.release_key(alert.grouping_key, existing)  # stale: resolved meanwhile
                continue
            if (raised := self._raised_before(alert)) is not None:
                return raised, False
            incident = Incident(
                key=alert.grouping_key,
                group=alert.group,
                deployment_id=alert.deployment_id,
                service=alert.service,
                environment=alert.environment,
                version=alert.version,
                title=f"{alert.group} incident on {alert.service} {alert.version} ({alert.environment})",
                severity=alert.severity,
                rules=[alert.rule],
                alert_ids=[alert.alert_id],
                alert_count=1,
                opened_at=now,
                last_alert_at=now,
                auto_resolve=alert.auto_resolve,
                escalation=EscalationState(
                    policy=alert.escalation_policy, next_at=now if alert.escalation_policy else None
                ),
                timeline=[
                    TimelineEntry(at=now, action="opened", actor=ACTOR, notes=alert.message, details=_ref(alert))
                ],
            )
            _note(incident, "incident_opened", now, ACTOR, f"Incident opened: {alert.message}",
                  f"{alert.rule}: {alert.message}", alert_id=alert.alert_id, severity=incident.severity.value,
                  escalation_policy=incident.escalation.policy)  # fmt: skip
            created = self.incidents.create(incident)
            if created is not None:
                return self._announce_noted(created), True
        raise ConflictError(f"could not open or join an incident for {alert.grouping_key}")

    def _raised_before(self, alert: Alert) -> Incident | None:
        """The resolved incident an alert of an event or assessment joined when it was raised before: its source
        delivered again (SNS at least once, an outbox retry) after a person or the tick resolved it, which opens
        no second incident."""
        stored = self.incidents.stored_alert(alert)
        if stored is None or stored.incident_id is None:
            return None
        incident = self.incidents.find(stored.incident_id)
        return incident if incident is not None and not incident.is_open else None

    def _join(self, incident_id: str, alert: Alert, now: datetime) -> Incident | None:
        keep = self.settings.incidents.max_alerts_kept
        upgraded: list[str] = []
        repeated: list[bool] = []

        def change(incident: Incident) -> bool:
            upgraded.clear()
            if not incident.is_open:
                return False
            if alert.alert_id in incident.alert_ids:  # joined already: a retry of the same alert
                repeated.append(True)
                return False
            incident.alert_count += 1
            incident.alert_ids = [*incident.alert_ids, alert.alert_id][-keep:]
            if alert.deployment_id != (incident.latest_deployment_id or incident.deployment_id):
                # another deployment's alert (a grouping without the deployment): its release is live, so an
                # escalation the first one's rollback stopped goes on from the step reached
                incident.latest_deployment_id = alert.deployment_id
                if stopped_for_rollback(incident) and incident.status == IncidentStatus.OPEN:
                    incident.escalation.next_at, incident.escalation.stopped_reason = now, None
                    upgraded.append(f"escalation resumed for {alert.deployment_id}")
            incident.last_alert_at = now
            incident.condition_clear_since = None
            if alert.rule not in incident.rules:
                incident.rules.append(alert.rule)
            if not alert.auto_resolve:
                incident.auto_resolve = False
            more_severe = alert.severity.rank > incident.severity.rank
            if more_severe:
                incident.severity = alert.severity
                upgraded.append(f"severity {alert.severity.value}")
            new_policy = alert.escalation_policy
            esc = incident.escalation
            if (
                new_policy
                and new_policy != esc.policy
                and incident.status == IncidentStatus.OPEN
                and (esc.policy is None or more_severe)
            ):  # only a strictly more severe alert changes the policy: it goes on from the step reached, now
                # (at most its last step: a shorter policy still pages the stricter routes once)
                stricter = self.settings.escalation.policies.get(new_policy)
                last = len(stricter.steps) - 1 if stricter is not None and stricter.steps else esc.step
                incident.escalation = EscalationState(
                    policy=new_policy,
                    step=min(esc.step, max(0, last)),
                    pages=esc.pages,
                    next_at=now,
                    last_paged_at=esc.last_paged_at,
                    claimed=esc.claimed,
                )
                upgraded.append(f"escalation {new_policy}")
            incident.timeline.append(
                TimelineEntry(at=now, action="alert_joined", actor=ACTOR, notes=alert.message, details=_ref(alert))
            )
            return True

        incident, written = self._update_if_present(incident_id, change)
        if incident is not None and repeated:
            return incident
        if incident is None or not written:
            return None
        self.incidents.deployments.audit(
            alert.deployment_id,
            "alert_joined_incident",
            ACTOR,
            f"{alert.rule}: {alert.message}" + (f" ({', '.join(upgraded)})" if upgraded else ""),
            incident_id=incident.incident_id,
            alert_id=alert.alert_id,
        )
        return incident

    def _update_if_present(self, incident_id: str, change: Any) -> tuple[Incident | None, bool]:
        try:
            return self.incidents.update(incident_id, change)
        except NotFoundError:  # the key outlived a provisional incident (its writer died): the key is stale
            return None, False

    # ------------------------------------------------------------------ people

    def acknowledge(self, incident_id: str, by: str, notes: str = "") -> Incident:
        """Acknowledge an open incident: escalation stops (at most the page already claimed goes out)."""
        if not by.strip():
            raise IncidentStateError("acknowledging needs a name (--by)")
        now = clock.now()

        def change(incident: Incident) -> bool:
            if incident.status == IncidentStatus.ACKNOWLEDGED and incident.acknowledged_by == by:
                return False  # acknowledged by them already (a retry after an error): done
            if incident.status != IncidentStatus.OPEN:
                raise IncidentStateError(f"incident {incident.incident_id} is {incident.status.value}, not open")
            incident.status = IncidentStatus.ACKNOWLEDGED
            incident.acknowledged_at = now
            incident.acknowledged_by = by
            incident.escalation.next_at = None
            incident.escalation.stopped_reason = f"acknowledged by {by}"
            incident.timeline.append(TimelineEntry(at=now, action="acknowledged", actor=by, notes=notes))
            said = f"Acknowledged by {by}" + (f": {notes}" if notes else "")
            _note(incident, "incident_acknowledged", now, by, said, notes or "acknowledged",
                  time_to_acknowledge_seconds=incident.time_to_acknowledge_seconds)  # fmt: skip
            return True

        try:
            incident, written = self.incidents.update(incident_id, change)
            if not written:  # theirs already: its announcement, if still noted, is the minute tick's
                return incident
        except IncidentStateError:
            raise
        except Exception:  # the write may have landed (answered 500, then throttled): read it back
            stored = self.incidents.find(incident_id)
            if stored is None or stored.acknowledged_by != by or stored.acknowledged_at != now:
                raise
            incident = stored
        return self._announce_noted(incident)

    def resolve(self, incident_id: str, by: str, notes: str = "", *, automatic: bool = False) -> Incident:
        if not by.strip():
            raise IncidentStateError("resolving needs a name (--by)")
        now = clock.now()

        def change(incident: Incident) -> bool:
            if incident.status == IncidentStatus.RESOLVED:
                raise IncidentStateError(f"incident {incident.incident_id} is already resolved")
            if automatic and not _auto_resolvable(incident, now, self._clear_for):
                return False
            incident.status = IncidentStatus.RESOLVED
            incident.resolved_at = now
            incident.resolved_by = by
            incident.resolution_notes = notes
            incident.auto_resolved = automatic
            incident.escalation.next_at = None
            incident.escalation.stopped_reason = incident.escalation.stopped_reason or "resolved"
            incident.timeline.append(TimelineEntry(at=now, action="resolved", actor=by, notes=notes))
            _note(incident, "incident_resolved", now, by, f"Resolved by {by}" + (f": {notes}" if notes else ""),
                  notes or ("condition cleared" if automatic else "resolved"), automatic=automatic,
                  time_to_acknowledge_seconds=incident.time_to_acknowledge_seconds,
                  time_to_resolve_seconds=incident.time_to_resolve_seconds)  # fmt: skip
            return True

        incident, written = self.incidents.update(incident_id, change)
        if not written:
            return incident
        self.incidents.release_key(incident.key, incident.incident_id)
        return self._announce_noted(incident)

    def escalate(self, incident_id: str, by: str, notes: str, now: datetime) -> Incident:
        """Bring an open incident's next escalation step forward to ``now`` (a person asks for the next page;
        one its deployment's rollback stopped goes on); the page itself is the escalator's."""

        def bring_forward(incident: Incident) -> bool:
            if incident.status != IncidentStatus.OPEN:
                raise IncidentStateError(
                    f"incident {incident.incident_id} is {incident.status.value}: only an open incident escalates"
                )
            if incident.escalation.policy is not None and stopped_for_rollback(incident):
                incident.escalation.stopped_reason = None  # a person asks for the next page: it goes out
            elif incident.escalation.policy is None or incident.escalation.next_at is None:
                raise IncidentStateError(
                    f"incident {incident.incident_id} has no escalation step left "
                    f"({incident.escalation.stopped_reason or 'no escalation policy'})"
                )
            incident.escalation.next_at = now
            incident.timeline.append(TimelineEntry(at=now, action="escalated", actor=by, notes=notes))
            return True

        incident, _ = self.incidents.update(incident_id, bring_forward)
        self.incidents.deployments.audit(
            incident.current_deployment_id, "incident_escalated", by, notes or "escalated", incident_id=incident_id
        )
        return incident

    # ------------------------------------------------------------------ automatic resolution

    @property
    def _clear_for(self) -> timedelta:
        return timedelta(seconds=self.settings.incidents.auto_resolve_after_seconds)

    def note_evaluation(self, deployment_id: str, fired_keys: Iterable[str], clear_rules: Iterable[str]) -> list[str]:
        """After an evaluation: incidents whose every rule evaluated false start (or keep) their clear time.

        Returns the ids of incidents that became clear now.
        """
        fired = set(fired_keys)
        clear = set(clear_rules)
        now = clock.now()
        became_clear = []
        for incident in self.incidents.open_incidents_of(deployment_id):
            if incident.key in fired and incident.condition_clear_since is not None:
                self._still_active(incident.incident_id, now)
                continue
            if incident.key in fired or incident.condition_clear_since is not None or not incident.auto_resolve:
                continue
            if not set(incident.rules) <= clear:
                continue

            def change(i: Incident) -> bool:
                if not i.is_open or i.condition_clear_since is not None:
                    return False
                i.condition_clear_since = now
                i.timeline.append(TimelineEntry(at=now, action="condition_cleared", actor=ACTOR))
                return True

            _, written = self.incidents.update(incident.incident_id, change)
            if written:
                became_clear.append(incident.incident_id)
                self.incidents.deployments.audit(
                    incident.current_deployment_id,
                    "incident_condition_cleared",
                    ACTOR,
                    "every rule of the incident evaluated false",
                    incident_id=incident.incident_id,
                    rules=incident.rules,
                )
        return became_clear

    def _still_active(self, incident_id: str, now: datetime) -> None:
        """A rule of the incident fired again (even if suppressed by its cooldown): it is not clear."""

        def change(i: Incident) -> bool:
            if i.condition_clear_since is None:
                return False
            i.condition_clear_since = None
            i.timeline.append(TimelineEntry(at=now, action="condition_returned", actor=ACTOR))
            return True

        self.incidents.update(incident_id, change)

    def auto_resolve_due(self, now: datetime | None = None) -> list[Incident]:
        """Resolve incidents whose conditions have been clear for ``auto_resolve_after_seconds``."""
        at = now or clock.now()
        resolved = []
        for incident in self.incidents.open_incidents():
            if _auto_resolvable(incident, at, self._clear_for):
                clear_since = incident.condition_clear_since
                assert clear_since is not None
                done = self.resolve(
                    incident.incident_id,
                    AUTO_RESOLVER,
                    f"condition clear since {clear_since.isoformat()}",
                    automatic=True,
                )
                if done.status == IncidentStatus.RESOLVED:
                    resolved.append(done)
        return resolved

    # ------------------------------------------------------------------ history

    def stats(self, limit: int = 200) -> IncidentStats:
        return IncidentStats.of(self.incidents.recent(limit))

    # ------------------------------------------------------------------ announcements

    def announce_pending(self) -> list[str]:
        """The minute tick's part: write the announcements noted on incidents and not written yet (their
        writer failed after the change); returns the event ids written. Never raises."""
        written: list[str] = []
        try:
            incidents = self.incidents.announcing()
        except Exception:
            logger.exception("cannot list the incidents with announcements pending")
            return written
        for incident in incidents:
            try:
                written += self._announce(incident)
            except Exception:  # its own: the next tick tries again
                logger.exception("incident announcement still pending", extra={"incident_id": incident.incident_id})
        return written

    def _announce_noted(self, incident: Incident) -> Incident:
        """After a change: its announcement written and the note cleared; when that fails the change
        stands (logged) and the minute tick writes the announcement."""
        try:
            self._announce(incident)
        except Exception as exc:
            logger.warning(
                "incident changed, announcement left to the minute tick",
                extra={"incident_id": incident.incident_id, "reason": f"{type(exc).__name__}: {exc}"},
            )
        return incident

    def _announce(self, incident: Incident) -> list[str]:
        """Write each pending announcement of ``incident`` (audit entry once, event once through the
        outbox), then clear the notes written; raises when a write fails (what is left stays noted)."""
        notes = list(incident.announcements)
        if not notes:
            return []
        repository = self.incidents.deployments
        for note in notes:
            repository.audit_once(incident.current_deployment_id, note.event_id, note.at, note.kind, note.actor,
                                  note.audit_reason, incident_id=incident.incident_id,
                                  **note.audit_details)  # fmt: skip
            if self.publisher is not None:
                outbox.announce(repository, self.publisher, _event(incident, note), actor=ACTOR)
        done = {note.event_id for note in notes}

        def clear(i: Incident) -> bool:
            if not any(a.event_id in done for a in i.announcements):
                return False
            i.announcements = [a for a in i.announcements if a.event_id not in done]
            return True

        cleared, _ = self.incidents.update(incident.incident_id, clear)
        incident.announcements = cleared.announcements
        incident.version_counter = cleared.version_counter
        return [note.event_id for note in notes]


def _note(incident: Incident, kind: str, at: datetime, actor: str, message: str, reason: str, **audit: Any) -> None:
    """Note the announcement of a change on the incident, in the change's own write (its event id and
    time fixed: whoever writes it, it is written once)."""
    digest = hashlib.sha256(f"{incident.incident_id}#{kind}".encode()).hexdigest()[:24]
    severity = incident.severity if kind == "incident_opened" else Severity.INFO
    details = {
        "kind": kind,
        "incident_id": incident.incident_id,
        "status": incident.status.value,
        "rules": list(incident.rules),
        "time_to_acknowledge_seconds": incident.time_to_acknowledge_seconds,
        "time_to_resolve_seconds": incident.time_to_resolve_seconds,
    }
    incident.announcements.append(
        PendingAnnouncement(
            kind=kind,
            event_id=f"ev-{digest}",
            at=at,
            actor=actor,
            severity=severity,
            message=message,
            details=details,
            audit_reason=reason,
            audit_details=audit,
        )
    )


def _event(incident: Incident, note: PendingAnnouncement) -> DeploymentEvent:
    return DeploymentEvent(
        event_id=note.event_id,
        at=note.at,
        event_type=EventType.ALERT,
        deployment_id=incident.deployment_id,
        service=incident.service,
        version=incident.version,
        environment=incident.environment,
        severity=note.severity,
        title=f"{note.kind.replace('_', ' ').capitalize()}: {incident.title}"[:200],
        message=note.message,
        details=note.details,
    )


def _auto_resolvable(incident: Incident, at: datetime, clear_for: timedelta) -> bool:
    return (
        incident.is_open
        and incident.auto_resolve
        and incident.condition_clear_since is not None
        and at - incident.condition_clear_since >= clear_for
    )


def _ref(alert: Alert) -> dict[str, Any]:
    return {"alert_id": alert.alert_id, "rule": alert.rule, "severity": alert.severity.value}
