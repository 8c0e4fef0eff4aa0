"""Incidents: what alerts open or join, what people acknowledge and resolve."""

from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import Field, computed_field

from deployguard.models import Model, Severity, new_id, utcnow


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class TimelineEntry(Model):
    at: datetime = Field(default_factory=utcnow)
    action: str
    actor: str
    notes: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


TIMELINE_FIRST = 10  # the incident's first entries (it opened, its first alerts), always kept
TIMELINE_LAST = 100  # at most this many of its newest entries kept after them
TIMELINE_BYTES = 100_000  # and at most about this much JSON in all: the record stays far below DynamoDB's 400 KB
TIMELINE_OMITTED = "entries_omitted"  # the entry standing for those left out between the first and the newest


def bound_timeline(timeline: list[TimelineEntry]) -> list[TimelineEntry]:
    """``timeline`` bounded: its first :data:`TIMELINE_FIRST` entries, then one ``entries_omitted`` entry
    saying how many were left out (``details.omitted``, "N entries omitted"), then the newest entries, at most
    :data:`TIMELINE_LAST` and :data:`TIMELINE_BYTES` in all. An open incident that alerts join for days, or
    whose condition flaps, would otherwise outgrow the item size DynamoDB allows, and every later alert of
    its key fail. The same list when nothing is left out."""
    head, rest = timeline[:TIMELINE_FIRST], timeline[TIMELINE_FIRST:]
    omitted = 0
    if rest and rest[0].action == TIMELINE_OMITTED:
        omitted, rest = int(rest[0].details.get("omitted", 0)), rest[1:]
    size = sum(len(e.model_dump_json()) for e in head)
    kept: list[TimelineEntry] = []
    for entry in reversed(rest):
        size += len(entry.model_dump_json())
        if len(kept) >= TIMELINE_LAST or size > TIMELINE_BYTES:
            break
        kept.append(entry)
    left_out = rest[: len(rest) - len(kept)]
    if not left_out:
        return timeline
    omitted += len(left_out)
    note = TimelineEntry(at=left_out[-1].at, action=TIMELINE_OMITTED, actor="deployguard",
                         notes=f"{omitted} entries omitted", details={"omitted": omitted})  # fmt: skip
    return [*head, note, *reversed(kept)]


class ClaimedPage(Model):
    """A page claimed on the incident and not known to be recorded in the outbox yet: noted in the claim's
    own write, cleared once the page's event is recorded. Found by a later tick (the claim's write was
    answered with an error, or the page's record failed), the page is sent then, under the same event id
    and time (recorded and delivered once), never skipped."""

    page: int
    step: int
    policy: str
    routes: list[str]
    at: datetime
    event_id: str


class EscalationState(Model):
    policy: str | None = None
    step: int = Field(default=0, ge=0, description="index of the next step to page")
    pages: int = Field(default=0, ge=0)
    next_at: datetime | None = Field(default=None, description="when the next page is due (None: no more)")
    last_paged_at: datetime | None = None
    stopped_reason: str | None = None
    claimed: ClaimedPage | None = Field(default=None, description="a page claimed, not yet known recorded")


class PendingAnnouncement(Model):
    """A change of the incident whose audit entry and event are still to be written: noted on the
    incident in the change's own conditional write, so the announcement cannot be lost, and cleared
    once both are written (by the change's caller, else by the minute tick). The event's id and time
    are fixed here, so a repeat records the same event once; the audit entry is written once under
    the event id."""

    kind: str = Field(description="incident_opened, incident_acknowledged or incident_resolved")
    event_id: str
    at: datetime
    actor: str
    severity: Severity
    message: str
    details: dict[str, Any] = Field(default_factory=dict, description="the event's details")
    audit_reason: str = ""
    audit_details: dict[str, Any] = Field(default_factory=dict)


class Incident(Model):
    incident_id: str = Field(default_factory=lambda: new_id("inc"))
    key: str = Field(description="grouping key: one open incident per key")
    group: str
    deployment_id: str
    latest_deployment_id: str | None = Field(
        default=None,
        description="the deployment of the latest alert that joined, when another than deployment_id (a grouping "
        "without the deployment): its rollback, not the first one's, stops the escalation",
    )
    service: str
    environment: str
    version: str
    title: str
    severity: Severity
    status: IncidentStatus = IncidentStatus.OPEN
    rules: list[str] = Field(default_factory=list)
    alert_ids: list[str] = Field(default_factory=list, description="the latest alerts (bounded)")
    alert_count: int = 0
    opened_at: datetime = Field(default_factory=utcnow)
    last_alert_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution_notes: str = ""
    auto_resolved: bool = False
    auto_resolve: bool = True
    condition_clear_since: datetime | None = None
    escalation: EscalationState = Field(default_factory=EscalationState)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    issues: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="per issue tracker, the incident's issue: key and url"
    )
    announcements: list[PendingAnnouncement] = Field(
        default_factory=list, description="changes whose audit entry and event are not written yet"
    )
    version_counter: int = Field(default=0, ge=0, description="optimistic-lock counter")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def time_to_acknowledge_seconds(self) -> float | None:
        if self.acknowledged_at is None:
            return None
        return (self.acknowledged_at - self.opened_at).total_seconds()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def time_to_resolve_seconds(self) -> float | None:
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.opened_at).total_seconds()

    @property
    def current_deployment_id(self) -> str:
        """The deployment that counts: the latest alert's (``latest_deployment_id``), else the first one.
        Remediation acts on it, its assessments clear the incident, and the audit entries go to its trail."""
        return self.latest_deployment_id or self.deployment_id

    @property
    def is_open(self) -> bool:
        return self.status != IncidentStatus.RESOLVED


class IncidentStats(Model):
    """Response and resolution times over a set of incidents."""

    incidents: int
    open: int
    acknowledged: int
    resolved: int
    auto_resolved: int
    mean_time_to_acknowledge_seconds: float | None
    mean_time_to_resolve_seconds: float | None
    max_time_to_acknowledge_seconds: float | None
    max_time_to_resolve_seconds: float | None

    @classmethod
    def of(cls, incidents: list[Incident]) -> Self:
        tta = [i.time_to_acknowledge_seconds for i in incidents if i.time_to_acknowledge_seconds is not None]
        ttr = [i.time_to_resolve_seconds for i in incidents if i.time_to_resolve_seconds is not None]
        return cls(
            incidents=len(incidents),
            open=sum(1 for i in incidents if i.status == IncidentStatus.OPEN),
            acknowledged=sum(1 for i in incidents if i.status == IncidentStatus.ACKNOWLEDGED),
            resolved=sum(1 for i in incidents if i.status == IncidentStatus.RESOLVED),
            auto_resolved=sum(1 for i in incidents if i.auto_resolved),
            mean_time_to_acknowledge_seconds=sum(tta) / len(tta) if tta else None,
            mean_time_to_resolve_seconds=sum(ttr) / len(ttr) if ttr else None,
            max_time_to_acknowledge_seconds=max(tta) if tta else None,
            max_time_to_resolve_seconds=max(ttr) if ttr else None,
        )
