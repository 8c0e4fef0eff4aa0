"""One deployment as the console shows it while people watch it: bounded, whatever its age.

A canary that waits a day for an approval is looked at once a minute (some 1,440 assessments of 3.4-4.6 KB), a
paused one may live about 40 hours: its whole history (:class:`~deployguard.readmodels.history.DeploymentHistory`)
passes Lambda's 6 MB response limit, and reading it costs DynamoDB reads that grow with the deployment's age on
every poll. As Argo Rollouts' and Kayenta's UIs do, the console reads instead:

- :class:`DeploymentDetail`: the record, the outcome, the canary's latest verdict and the latest post-deployment
  look in full, the newest :data:`DEFAULT_ASSESSMENTS` assessments (``limit``, at most :data:`MAX_PAGE`) and the
  newest :data:`RECENT_EVENTS` events and :data:`RECENT_AUDIT` audit entries (the canary audits every look), the
  assessments with a cursor to page further back (``before``); the alerts and incidents in full (they grow with
  what happens, not with time);
- :class:`TimelinePage`: the timeline (:func:`~deployguard.readmodels.history.timeline`) in pages, the newest first:
  traffic steps, checks and remediation come from the audit trail's page (at a page's oldest move the weight
  before it is not read: that move is a step even if it repeats it).

Every page is the newest slice before its cursor, **in time order** (oldest first), with ``next_before`` to
page further back; pages put one after the other (the older ones first) are the whole list, each item once
(but a timeline page's oldest traffic move, above, which may repeat a step of the page before).
Assessments and events are read with one reverse Query each of a ``Limit`` the page's size (DynamoDB reads
O(page) items, not O(age)). The full history (:meth:`DeploymentReader.history`) stays for the report, the JSON
export and ``deployguard deployments show``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field

from deployguard import clock
from deployguard.alerts.models import Alert
from deployguard.incidents.models import Incident
from deployguard.models import Assessment, AuditEntry, Deployment, DeploymentEvent, Model
from deployguard.readmodels import wording
from deployguard.readmodels.history import (
    GateOutcome,
    TimelineItem,
    build_history,
    is_post_deployment,
    timeline,
)
from deployguard.storage import keys

if TYPE_CHECKING:
    from deployguard.readmodels.deployments import DeploymentReader

DETAIL_SCHEMA = "deployguard-deployment/1"
DEFAULT_ASSESSMENTS = 20
"""Assessments a detail holds unless asked for another number (``limit``): the newest."""
DEFAULT_TIMELINE = 50
MAX_PAGE = 200
"""The largest page (assessments or timeline items): some 900 KB of assessments at most."""
RECENT_EVENTS = 50
"""Events a detail holds: the newest (events are published on changes, a flapping canary's too)."""
RECENT_AUDIT = 50
"""Audit entries a detail holds: the newest (the canary audits every look: ``assessed``)."""
SAME_INSTANT = 1000
"""Items of one instant a timeline page reads at most to keep that instant whole (never split between pages)."""

TIME_KEY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
TIMELINE_BEFORE_PATTERN = f"^{TIME_KEY}$"
ASSESSMENT_BEFORE_PATTERN = f"^{TIME_KEY}#[A-Za-z0-9_.:-]{{1,128}}$"


def time_key(at: datetime) -> str:
    return keys.time_key(at.astimezone(UTC))


class PeriodClock(Model):
    """The canary's periods on the clock (:func:`~deployguard.readmodels.wording.period_clock`)."""

    start: datetime = Field(description="when period 0 began")
    seconds: float = Field(description="a period's length in seconds")


class DeploymentDetail(Model):
    """A deployment as the console's page shows it (``deployguard-deployment/1``): bounded, whatever its age."""

    schema_: str = Field(default=DETAIL_SCHEMA, alias="schema")
    read_at: datetime
    deployment: Deployment
    outcome: GateOutcome
    latest_verdict: Assessment | None = Field(
        default=None, description="the canary's newest verdict (new version against stable), whole; None before any"
    )
    latest_look: Assessment | None = Field(
        default=None, description="after promotion: the newest post-deployment look (against its own last 24 h)"
    )
    assessments: list[Assessment] = Field(
        default_factory=list,
        description="the newest `limit` assessments (canary verdicts and post-deployment looks) before `before` "
        "(none: the newest), in time order",
    )
    assessments_before: str | None = Field(
        default=None,
        description="older assessments are stored: GET /api/deployments/{id}?before=<this> pages back; None: "
        "none older",
    )
    why_ended: str | None = Field(
        default=None,
        description="why it ended, said once: the remediation's cause without the canary's verdict again (the "
        "latest verdict says it), as the report says it; null while it runs",
    )
    outcome_note: str = Field(
        default="", description='what the outcome says beyond why it ended ("" when that is all it says)'
    )
    period_clock: PeriodClock | None = Field(
        default=None,
        description="when the canary's period 0 began and a period's length, as these assessments tell it: a "
        'reason\'s "since period 5" is said "since 12:14 (period 5)", as the report says it; null when they '
        "do not tell it",
    )
    alerts: list[Alert] = Field(default_factory=list)
    incidents: list[Incident] = Field(default_factory=list)
    events: list[DeploymentEvent] = Field(
        default_factory=list, description=f"the newest {RECENT_EVENTS} events published, in time order"
    )
    events_complete: bool = Field(default=True, description="false: older events are stored (the timeline has them)")
    audit: list[AuditEntry] = Field(
        default_factory=list, description=f"the newest {RECENT_AUDIT} audit entries, in the order written"
    )
    audit_complete: bool = Field(
        default=True, description="false: older audit entries are stored (traffic, checks, remediation: the timeline)"
    )
    left_on_new: bool = Field(
        default=False,
        description="ended unpromoted while its Lambda alias still routes its new version (its rollback failed), "
        "and the newest of its service: abort puts the alias back on the stable version",
    )


class TimelinePage(Model):
    items: list[TimelineItem] = Field(
        description="the newest `limit` timeline items before the cursor, in time order (the timeline's own: a "
        "traffic shift before the assessments of its instant ...); an instant is never split between pages, so a "
        "page may hold a few more than `limit`"
    )
    next_before: str | None = Field(
        default=None, description="pass as before= for the page before this one; None: this page reaches the start"
    )


class DetailReader:
    """The bounded reads of one deployment (:class:`DeploymentReader`'s records and repositories)."""

    def __init__(self, reader: DeploymentReader) -> None:
        self.reader = reader
        self.repository = reader.repository

    def detail(
        self, deployment_id: str, *, before: str | None = None, limit: int = DEFAULT_ASSESSMENTS
    ) -> DeploymentDetail:
        """The deployment with its newest ``limit`` assessments, or with the ``limit`` before ``before`` (an
        ``assessments_before``: paging back, the latest verdicts stay the newest)."""
        deployment = self.reader.get(deployment_id)
        dep_id = deployment.deployment_id
        page, older = self.repository.history_page(dep_id, keys.ASSESSMENT, Assessment, before=before, limit=limit)
        newest = [a for _, a in page]
        if before is not None:  # paging back: the latest verdicts are still the newest (one item read)
            latest_one = self.repository.latest_assessment(dep_id)
            newest = [latest_one] if latest_one is not None else []
        events, older_events = self.repository.history_page(
            dep_id, keys.EVENT, DeploymentEvent, before=None, limit=RECENT_EVENTS
        )
        audit, older_audit = self.repository.audit_page(dep_id, before=None, limit=RECENT_AUDIT)
        alerts = self.reader.incidents.alerts(dep_id)
        history = build_history(
            deployment,
            assessments=[],
            audit=[],
            events=[e for _, e in reversed(events)],
            notifications=[],
            alerts=alerts,
            incidents=self.reader.incidents_of(alerts),
            exported_at=clock.now(),
        )
        latest_look = newest[0] if newest and is_post_deployment(newest[0]) else None
        latest = next((a for a in newest if not is_post_deployment(a)), None)
        if latest is None and (older or before is not None):
            latest = self._last_canary_verdict(deployment)
        assessments = [a for _, a in reversed(page)]
        clock_of = wording.period_clock([*assessments, *([latest] if latest is not None else [])])
        return DeploymentDetail(
            read_at=history.exported_at,
            deployment=deployment,
            outcome=history.outcome,
            latest_verdict=latest,
            latest_look=latest_look,
            why_ended=wording.why_ended(deployment, history.outcome.state, latest),
            outcome_note=wording.outcome_note(history.outcome.message, deployment),
            period_clock=None if clock_of is None else PeriodClock(start=clock_of[0], seconds=clock_of[1]),
            assessments=assessments,
            assessments_before=page[-1][0] if older and page else None,
            alerts=history.alerts,
            incidents=history.incidents,
            events=history.events,
            events_complete=not older_events,
            audit=[e for _, e in reversed(audit)],
            audit_complete=not older_audit,
        )

    def _last_canary_verdict(self, deployment: Deployment) -> Assessment | None:
        """The canary's last verdict behind a page of post-deployment looks: the looks come after the promotion
        (``ended_at``), the canary's verdicts up to it: one reverse Query of a few items from there."""
        if deployment.ended_at is None:
            return None
        found, _ = self.repository.history_page(
            deployment.deployment_id, keys.ASSESSMENT, Assessment, before=time_key(deployment.ended_at) + "$", limit=5
        )
        return next((a for _, a in found if not is_post_deployment(a)), None)

    def timeline(self, deployment_id: str, *, before: str | None, limit: int) -> TimelinePage:
        """The newest ``limit`` timeline items older than the instant ``before`` (a time key), in time order.

        Assessments, events and the audit trail (traffic, checks, remediation) come from one reverse Query each
        (``limit`` items); alerts and incidents are read whole (they grow with what happens, not with time).
        Where a Query stopped (its oldest item's instant) the items of that instant may not all be read: the
        page ends above it, and the next page starts there."""
        deployment = self.reader.get(deployment_id)
        dep_id = deployment.deployment_id
        alerts = self.reader.incidents.alerts(dep_id)
        incidents = self.reader.incidents_of(alerts)
        fetch = limit + 1  # the oldest instant read may be incomplete: one more keeps `limit` above it
        while True:
            assessments, more_a = self.repository.history_page(
                dep_id, keys.ASSESSMENT, Assessment, before=before, limit=fetch
            )
            events, more_e = self.repository.history_page(
                dep_id, keys.EVENT, DeploymentEvent, before=before, limit=fetch
            )
            audit, more_au = self.repository.audit_page(dep_id, before=before, limit=fetch)
            # below the oldest instant a Query read (when it stopped at its Limit) the page knows nothing yet
            sources: list[tuple[list[Any], bool]] = [(assessments, more_a), (events, more_e), (audit, more_au)]
            floors = [min(key for key, _ in page).split("#", 1)[0] for page, more in sources if more and page]
            floor = max(floors, default=None)
            history = build_history(
                deployment,
                assessments=[a for _, a in assessments],
                audit=[e for _, e in reversed(audit)],
                events=[e for _, e in reversed(events)],
                notifications=[],
                alerts=alerts,
                incidents=incidents,
                exported_at=clock.now(),
                from_start=not more_au,
            )
            items = [i for i in timeline(history, notifications=False) if before is None or time_key(i.at) < before]
            known = [i for i in items if floor is None or time_key(i.at) > floor]
            if known or floor is None or fetch >= SAME_INSTANT:
                break
            fetch = min(fetch * 4, SAME_INSTANT)  # every item read shares one instant: read that instant whole
        if not known and floor is not None:
            known = [i for i in items if time_key(i.at) >= floor]
        newest_first = known[::-1]
        page = newest_first[:limit]
        while page and len(page) < len(newest_first) and newest_first[len(page)].at == page[-1].at:
            page.append(newest_first[len(page)])  # an instant is never split between pages
        older = len(page) < len(items) or floor is not None
        return TimelinePage(items=page[::-1], next_before=time_key(page[-1].at) if older and page else None)


__all__ = [
    "ASSESSMENT_BEFORE_PATTERN",
    "DEFAULT_ASSESSMENTS",
    "DEFAULT_TIMELINE",
    "DETAIL_SCHEMA",
    "MAX_PAGE",
    "RECENT_AUDIT",
    "RECENT_EVENTS",
    "TIMELINE_BEFORE_PATTERN",
    "DeploymentDetail",
    "DetailReader",
    "PeriodClock",
    "TimelinePage",
]
