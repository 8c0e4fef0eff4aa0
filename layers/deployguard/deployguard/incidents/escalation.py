"""Escalation: page the routes of each step, wait, page the next, until someone acknowledges.

This is a scheduled check: :meth:`Escalator.escalate_due` runs every minute (from the
scheduled assessor) and pages every open, unacknowledged incident whose next page is
due. Each page is claimed with a conditional write on the incident before it is sent,
so two schedulers never send the same page, and an acknowledgement (which clears
``escalation.next_at`` in the same conditional way) stops paging at once: at most the
page already claimed when the acknowledgement landed goes out.

A page is never lost nor sent twice: its claim is noted on the incident
(``escalation.claimed``, with the page's event id, derived from the incident, policy, step and
page number, and its time) and cleared once the page's event is recorded in the outbox. A claim
answered with an error is read back; a claim whose page was not recorded is sent by the next tick
under the same id and time (the outbox records an id once, the router delivers it once), or
withdrawn if the incident was acknowledged meanwhile. An incident whose deployment ended rolled
back pages no more (:func:`deployment_rolled_back`).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import Field

from deployguard import clock
from deployguard.incidents.models import ClaimedPage, Incident, IncidentStatus, TimelineEntry
from deployguard.models import DeploymentEvent, DeploymentStatus, EventType, Model, utcnow
from deployguard.storage import outbox

if TYPE_CHECKING:
    from deployguard.alerts.settings import AlertingSettings
    from deployguard.aws.events import EventPublisher
    from deployguard.incidents.repository import IncidentRepository

ACTOR = "deployguard:escalation"
logger = logging.getLogger(__name__)


class Page(Model):
    incident_id: str
    deployment_id: str
    policy: str
    step: int = Field(description="0-based step of the policy (past the last step: a repeat of it)")
    routes: list[str]
    page_number: int
    event_id: str
    at: datetime = Field(default_factory=utcnow)


class Escalator:
    def __init__(self, settings: AlertingSettings, incidents: IncidentRepository, publisher: EventPublisher) -> None:
        self.settings = settings
        self.incidents = incidents
        self.publisher = publisher

    def escalate_due(self, now: datetime | None = None) -> list[Page]:
        """Page every open, unacknowledged incident whose next escalation step is due, and send the
        pages claimed earlier and not known recorded (:attr:`EscalationState.claimed`)."""
        at = now or clock.now()
        pages = []
        for incident in self.incidents.open_incidents():
            if _due(incident, at) or incident.escalation.claimed is not None:
                try:
                    page = self.page_if_due(incident.incident_id, at)
                except Exception:  # one incident's failure is its own: the others are still paged
                    logger.exception("cannot page an incident", extra={"incident_id": incident.incident_id})
                    continue
                if page is not None:
                    pages.append(page)
        return pages

    def page_if_due(self, incident_id: str, now: datetime | None = None, *, by_person: bool = False) -> Page | None:
        """Claim the incident's next page if due and send it; or send the page claimed earlier and not
        known recorded (sent late, under its own event id and time: recorded and delivered once).

        The claim is noted on the incident (:class:`ClaimedPage`) in its own conditional write and
        cleared once the page's event is recorded in the outbox. A claim whose write was answered with an
        error is read back (consistent read): stored, it is sent now; else the error is raised (logged by
        :meth:`escalate_due`), and a claim stored after all is found by the next tick. A page whose record
        failed is never given back (its record may have landed): the next tick sends it again, same id.

        No page goes out for an incident whose deployment was rolled back (PagerDuty resolved its key on
        ``rollback.completed``; a page would open it again): its escalation stops (a page claimed before
        and not recorded is withdrawn); the incident stays open, quiet, for a person to resolve. A person's
        escalation (``by_person``: the console's or CLI's escalate) pages all the same."""
        at = now or clock.now()
        outcome: list[ClaimedPage] = []
        ended: dict[str, bool] = {}

        def rolled_back(incident: Incident) -> bool:
            if by_person:
                return False
            about = incident.latest_deployment_id or incident.deployment_id
            if about not in ended:
                ended[about] = deployment_rolled_back(self.incidents, about)
            return ended[about]

        def claim(incident: Incident) -> bool:
            outcome.clear()
            esc = incident.escalation
            if esc.claimed is not None:  # claimed before, not known recorded: sent late, or withdrawn
                if incident.status == IncidentStatus.OPEN and not rolled_back(incident):
                    outcome.append(esc.claimed)
                    return False
                why = "acknowledged" if incident.status != IncidentStatus.OPEN else "deployment rolled back"
                incident.timeline.append(
                    TimelineEntry(at=at, action="page_withdrawn", actor=ACTOR, notes=f"page {esc.claimed.page}: {why}",
                                  details={"page": esc.claimed.page, "event_id": esc.claimed.event_id})
                )  # fmt: skip
                esc.claimed = None
                return True
            if not _due(incident, at):
                return False
            assert esc.policy is not None
            if rolled_back(incident):
                esc.next_at = None
                esc.stopped_reason = (
                    f"deployment {incident.latest_deployment_id or incident.deployment_id} {ROLLED_BACK_STOP}"
                )
                incident.timeline.append(
                    TimelineEntry(at=at, action="escalation_stopped", actor=ACTOR, notes=esc.stopped_reason)
                )
                return True
            policy = self.settings.escalation.policies.get(esc.policy)
            if policy is None:
                esc.next_at = None
                esc.stopped_reason = f"escalation policy {esc.policy!r} is no longer configured"
                return True
            if esc.step < len(policy.steps):
                step = policy.steps[esc.step]
                routes, wait = step.routes, step.wait_seconds
            elif policy.repeat_every_seconds is not None:
                routes, wait = policy.steps[-1].routes, policy.repeat_every_seconds
            else:
                esc.next_at = None
                esc.stopped_reason = "every step paged, no repeat configured"
                return True
            esc.pages += 1
            esc.last_paged_at = at
            event_id = page_event_id(incident.incident_id, esc.policy, esc.step, esc.pages)
            esc.claimed = ClaimedPage(
                page=esc.pages, step=esc.step, policy=esc.policy, routes=list(routes), at=at, event_id=event_id
            )
            outcome.append(esc.claimed)
            esc.step += 1
            if esc.pages >= policy.max_pages:
                esc.next_at = None
                esc.stopped_reason = f"{policy.max_pages} pages sent"
            else:
                esc.next_at = at + timedelta(seconds=wait)
            incident.timeline.append(
                TimelineEntry(
                    at=at,
                    action="paged",
                    actor=ACTOR,
                    notes=f"step {esc.step} of policy {esc.policy}: " + ", ".join(routes),
                    details={"routes": list(routes), "page": esc.pages, "event_id": event_id},
                )
            )
            return True

        try:
            incident, _ = self.incidents.update(incident_id, claim)
        except Exception:  # the write may have landed (answered 500, then throttled): read it back
            wanted = outcome[0] if outcome else None
            stored = self.incidents.find(incident_id) if wanted is not None else None
            if stored is None or wanted is None or stored.escalation.claimed != wanted:
                raise
            logger.warning("page claim answered with an error, found stored", extra={"incident_id": incident_id})
            incident = stored
        if not outcome:
            return None
        return self._send(incident, outcome[0])

    def _send(self, incident: Incident, page: ClaimedPage) -> Page | None:
        """Record and publish a claimed page (its event id and time fixed by the claim), audit it once,
        and clear the claim; the claim stays when the record fails (the next tick sends it again)."""
        event = DeploymentEvent(
            event_id=page.event_id,
            event_type=EventType.ALERT,
            deployment_id=incident.deployment_id,
            service=incident.service,
            version=incident.version,
            environment=incident.environment,
            severity=incident.severity,
            title=f"PAGE {page.page}: {incident.title}"[:200],
            message=(
                f"Incident {incident.incident_id} ({incident.severity.value}) is not acknowledged. "
                f"Acknowledge: deployguard incidents ack {incident.incident_id} --by NAME"
            ),
            at=page.at,
            details={
                "kind": "page",
                "incident_id": incident.incident_id,
                "escalation_policy": page.policy,
                "escalation_step": page.step,
                "page": page.page,
                "routes": page.routes,
                "rules": incident.rules,
            },
        )
        try:  # through the outbox: once recorded, it goes out (now, or at the minute tick if SNS refuses it)
            outbox.announce(self.incidents.deployments, self.publisher, event, actor=ACTOR)
        except Exception:  # maybe not recorded: the claim stays, and the next tick sends it (same id and time)
            logger.exception("page not recorded: sent again at the next tick",
                             extra={"incident_id": incident.incident_id, "page": page.page})  # fmt: skip
            return None
        self.incidents.deployments.audit_once(
            incident.current_deployment_id,
            page.event_id,
            page.at,
            "incident_paged",
            ACTOR,
            f"page {page.page} of incident {incident.incident_id}: " + ", ".join(page.routes),
            incident_id=incident.incident_id,
            policy=page.policy,
            step=page.step,
            routes=page.routes,
            event_id=page.event_id,
        )

        def recorded(i: Incident) -> bool:
            if i.escalation.claimed is None or i.escalation.claimed.event_id != page.event_id:
                return False
            i.escalation.claimed = None
            return True

        try:
            self.incidents.update(incident.incident_id, recorded)
        except Exception:  # the next tick finds the claim, and sends it again: recorded once, same id
            logger.exception("page recorded, its claim not cleared", extra={"incident_id": incident.incident_id})
        return Page(
            incident_id=incident.incident_id,
            deployment_id=incident.deployment_id,
            policy=page.policy,
            step=page.step,
            routes=page.routes,
            page_number=page.page,
            event_id=page.event_id,
            at=page.at,
        )


ROLLED_BACK_STOP = "rolled back"  # how a stop for a rollback ends (a later alert or a person resumes it)


def stopped_for_rollback(incident: Incident) -> bool:
    reason = incident.escalation.stopped_reason or ""
    return reason.startswith("deployment ") and reason.endswith(f" {ROLLED_BACK_STOP}")


def page_event_id(incident_id: str, policy: str, step: int, page: int) -> str:
    """The id of a page's event, from what the page is: any retry of it records and publishes the same
    event (the outbox records an id once, the router delivers an id once)."""
    return "ev-" + hashlib.sha256(f"{incident_id}#page#{policy}#{step}#{page}".encode()).hexdigest()[:24]


def deployment_rolled_back(incidents: IncidentRepository, deployment_id: str) -> bool:
    """Whether the deployment ended rolled back (its new version takes no traffic): its incidents page
    no more."""
    deployment = incidents.deployments.find_deployment(deployment_id)
    return deployment is not None and deployment.status == DeploymentStatus.ROLLED_BACK


def _due(incident: Incident, at: datetime) -> bool:
    esc = incident.escalation
    return (
        incident.status == IncidentStatus.OPEN
        and esc.policy is not None
        and esc.next_at is not None
        and esc.next_at <= at
    )
