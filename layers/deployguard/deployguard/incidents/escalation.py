"""Escalation: page the routes of each step, wait, page the next, until someone acknowledges.

This is a scheduled check: :meth:`Escalator.escalate_due` runs every minute (from the
scheduled assessor) and pages every open, unacknowledged incident whose next page is
due. Each page is claimed with a conditional write on the incident before it is sent,
so two schedulers never send the same page, and an acknowledgement (which clears
``escalation.next_at`` in the same conditional way) stops paging at once: at most the
page already claimed when the acknowledgement landed goes out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import Field

from deployguard import clock
from deployguard.incidents.models import Incident, IncidentStatus, TimelineEntry
from deployguard.models import DeploymentEvent, EventType, Model, utcnow
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
        """Page every open, unacknowledged incident whose next escalation step is due."""
        at = now or clock.now()
        pages = []
        for incident in self.incidents.open_incidents():
            if _due(incident, at):
                try:
                    page = self.page_if_due(incident.incident_id, at)
                except Exception:  # one incident's failure is its own: the others are still paged
                    logger.exception("cannot page an incident", extra={"incident_id": incident.incident_id})
                    continue
                if page is not None:
                    pages.append(page)
        return pages

    def page_if_due(self, incident_id: str, now: datetime | None = None) -> Page | None:
        at = now or clock.now()
        claimed: list[_Claim] = []

        def claim(incident: Incident) -> bool:
            claimed.clear()
            if not _due(incident, at):
                return False
            esc = incident.escalation
            assert esc.policy is not None
            before = _Before(esc.step, esc.next_at, esc.last_paged_at, esc.stopped_reason)
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
            claimed.append(_Claim(step=esc.step, routes=list(routes), page=esc.pages, policy=esc.policy, before=before))
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
                    details={"routes": list(routes), "page": esc.pages},
                )
            )
            return True

        incident, written = self.incidents.update(incident_id, claim)
        if not written or not claimed:
            return None
        routes, step, number, policy = claimed[0].routes, claimed[0].step, claimed[0].page, claimed[0].policy
        event = DeploymentEvent(
            event_type=EventType.ALERT,
            deployment_id=incident.deployment_id,
            service=incident.service,
            version=incident.version,
            environment=incident.environment,
            severity=incident.severity,
            title=f"PAGE {number}: {incident.title}"[:200],
            message=(
                f"Incident {incident.incident_id} ({incident.severity.value}) is not acknowledged. "
                f"Acknowledge: deployguard incidents ack {incident.incident_id} --by NAME"
            ),
            at=at,
            details={
                "kind": "page",
                "incident_id": incident.incident_id,
                "escalation_policy": policy,
                "escalation_step": step,
                "page": number,
                "routes": routes,
                "rules": incident.rules,
            },
        )
        try:  # through the outbox: once recorded, it goes out (now, or at the minute tick if SNS refuses it)
            outbox.announce(self.incidents.deployments, self.publisher, event, actor=ACTOR)
        except Exception:  # not recorded: the page is given back, and the next tick pages it again
            logger.exception("page not recorded: released", extra={"incident_id": incident_id, "page": number})
            self._release(incident_id, claimed[0], at)
            return None
        self.incidents.deployments.audit(
            incident.deployment_id,
            "incident_paged",
            ACTOR,
            f"page {number} of incident {incident.incident_id}: " + ", ".join(routes),
            incident_id=incident.incident_id,
            policy=policy,
            step=step,
            routes=routes,
            event_id=event.event_id,
        )
        return Page(
            incident_id=incident.incident_id,
            deployment_id=incident.deployment_id,
            policy=policy,
            step=step,
            routes=routes,
            page_number=number,
            event_id=event.event_id,
            at=at,
        )

    def _release(self, incident_id: str, claim: _Claim, at: datetime) -> None:
        """Give back a page claimed at ``at`` and never recorded: the incident is due again as before."""

        def release(incident: Incident) -> bool:
            esc = incident.escalation
            if esc.pages != claim.page or esc.last_paged_at != at:
                return False  # acknowledged, or paged again meanwhile
            esc.pages -= 1
            esc.step, esc.next_at = claim.before.step, claim.before.next_at
            esc.last_paged_at, esc.stopped_reason = claim.before.last_paged_at, claim.before.stopped_reason
            incident.timeline = [
                t for t in incident.timeline
                if not (t.action == "paged" and t.at == at and t.details.get("page") == claim.page)
            ]  # fmt: skip
            return True

        try:
            self.incidents.update(incident_id, release)
        except Exception:
            logger.exception("page neither recorded nor given back", extra={"incident_id": incident_id})


@dataclass(frozen=True)
class _Before:
    """The escalation as it was before a page was claimed."""

    step: int
    next_at: datetime | None
    last_paged_at: datetime | None
    stopped_reason: str | None


@dataclass(frozen=True)
class _Claim:
    step: int
    routes: list[str]
    page: int
    policy: str
    before: _Before


def _due(incident: Incident, at: datetime) -> bool:
    esc = incident.escalation
    return (
        incident.status == IncidentStatus.OPEN
        and esc.policy is not None
        and esc.next_at is not None
        and esc.next_at <= at
    )
