"""Remediation requests people answer from the console: read them, approve or reject them.

A remediation step in ``approval`` mode (e.g. ``business-impact``'s rollback) asks people before it acts
(:meth:`~deployguard.remediation.executor.RemediationExecutor.run`: an :class:`~deployguard.remediation.models.
Approval`, announced as an ``approval_requested`` alert). Until now only the CLI answered (``deployguard incidents
approve|reject``); the console's HTTP API and page answer the same way, through the same
:meth:`~deployguard.alerts.engine.AlertEngine.decide` (the approval's state machine told, the answer audited with
the caller's identity).

What the console shows of a request (:class:`RemediationRequest`): which incident asked, which action on which
target, when it was asked and until when it can be answered, whether it can still be answered (``answerable``),
and, while the canary's ``Promote`` holds its promotion for it (:mod:`deployguard.workflows.promotion_hold`), the
weight it is held at and since when. An answer is refused (:class:`~deployguard.exceptions.ConflictError`, a 409)
when the request was answered already, expired or was withdrawn (it could not be sent), saying which.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from deployguard import clock
from deployguard.exceptions import ConflictError, NotFoundError
from deployguard.models import Deployment, DeploymentStatus, Model
from deployguard.remediation.models import Approval, ApprovalStatus
from deployguard.workflows import promotion_hold

if TYPE_CHECKING:
    from deployguard.alerts.engine import AlertEngine
    from deployguard.storage.repository import DeploymentRepository

logger = logging.getLogger(__name__)
RECENT = 20  # the requests of one deployment the console shows (the newest)
WITHDRAWN = "the request could not be sent"  # RemediationExecutor._request_approval's withdrawal

State = Literal["pending", "approved", "rejected", "executed", "expired", "withdrawn"]


class PromotionHold(Model):
    """The canary's promotion held while people are asked (``promotion_held`` in the audit trail)."""

    weight_percent: float = Field(description="the traffic weight the canary is held at")
    since: datetime = Field(description="when Promote began holding")
    ended: bool = Field(default=False, description="the hold ended (promotion_hold_ended)")


class RemediationRequest(Model):
    """One request for people's answer, as the console shows it."""

    approval_id: str
    incident_id: str
    incident_title: str | None = Field(default=None, description="the incident's title (null: not found)")
    deployment_id: str
    service: str | None = None
    environment: str | None = None
    version: str | None = None
    action: str = Field(description="the remediation action asked for (rollback ...)")
    target: str
    description: str = Field(description="what the action would do, as planned when it was asked")
    state: State = Field(
        description="pending (waiting for an answer), approved (not done yet), executed (approved and run, or "
        "given up: result says), rejected, expired (not answered in time, or dropped: result says), withdrawn "
        "(the request could not be sent)"
    )
    answerable: bool = Field(description="pending and not expired: approve and reject are possible")
    moot: str | None = Field(
        default=None,
        description="why a pending request needs no answer: its deployment ended on stable (a rollback request), or "
        "ended after it was asked (an approval would be refused, never run)",
    )
    requested_at: datetime
    expires_at: datetime = Field(description="until when it can be answered")
    decided_by: str | None = None
    decided_at: datetime | None = None
    notes: str = ""
    result: str | None = Field(default=None, description="what became of it (run, refused, expired ...)")
    hold: PromotionHold | None = Field(
        default=None, description="the canary's promotion held for this deployment (null: not held)"
    )


def state_of(approval: Approval) -> State:
    if approval.status == ApprovalStatus.EXPIRED and approval.decided_by is None and approval.result == WITHDRAWN:
        return "withdrawn"
    return approval.status.value


def refusal(approval: Approval, now: datetime) -> str | None:
    """Why the request cannot be answered now (None: it can)."""
    what = f"remediation request {approval.approval_id} ({approval.action} on {approval.target})"
    state = state_of(approval)
    if state == "pending":
        if now >= approval.expires_at_time:
            return f"{what} expired at {approval.expires_at_time.isoformat()}: it can no longer be answered"
        return None
    if approval.decided_by is not None:
        verb = "rejected" if approval.status == ApprovalStatus.REJECTED else "approved"
        at = f" at {approval.decided_at.isoformat()}" if approval.decided_at else ""
        return f"{what} was already answered: {verb} by {approval.decided_by}{at}"
    if state == "withdrawn":
        return f"{what} was withdrawn: {WITHDRAWN}"
    return f"{what} is {state}: {approval.result or 'not answered in time'}"


class RemediationRequests:
    """The console's reads and answers of remediation requests (through the alert engine, as the CLI's)."""

    def __init__(self, alerts: AlertEngine) -> None:
        self.alerts = alerts

    @property
    def repository(self) -> DeploymentRepository:
        return self.alerts.remediation.repository

    # ------------------------------------------------------------------ reads

    def pending(self) -> list[RemediationRequest]:
        """Every request waiting for an answer (the oldest first), across deployments."""
        waiting = [a for a in self.alerts.remediation.store.open_approvals() if a.status == ApprovalStatus.PENDING]
        deployments: dict[str, Deployment | None] = {}
        shown = [self._shown(a, deployments) for a in sorted(waiting, key=lambda a: (a.requested_at, a.approval_id))]
        return [r for r in shown if r.answerable or r.moot is None]  # a moot one waits for nobody's answer

    def of_deployment(self, deployment_id: str) -> list[RemediationRequest]:
        """The deployment's requests, pending or answered, the newest first (at most :data:`RECENT`)."""
        if self.repository.find_deployment(deployment_id) is None:
            raise NotFoundError(f"deployment {deployment_id} not found")
        mine = self.alerts.remediation.store.approvals_of(deployment_id)
        deployments: dict[str, Deployment | None] = {}
        return [self._shown(a, deployments) for a in reversed(mine[-RECENT:])]

    def one(self, approval_id: str) -> RemediationRequest:
        return self._shown(self.alerts.remediation.store.approval(approval_id), {})

    def _shown(self, approval: Approval, deployments: dict[str, Deployment | None]) -> RemediationRequest:
        if approval.deployment_id not in deployments:
            deployments[approval.deployment_id] = self.repository.find_deployment(approval.deployment_id)
        deployment = deployments[approval.deployment_id]
        incident = self.alerts.incident_store.find(approval.incident_id)
        state = state_of(approval)
        moot = self._moot(approval, deployment) if state == "pending" else None
        return RemediationRequest(
            approval_id=approval.approval_id,
            incident_id=approval.incident_id,
            incident_title=incident.title if incident is not None else None,
            deployment_id=approval.deployment_id,
            service=deployment.service if deployment else None,
            environment=deployment.environment if deployment else None,
            version=deployment.version if deployment else None,
            action=approval.action,
            target=approval.target,
            description=approval.description,
            state=state,
            answerable=refusal(approval, clock.now()) is None and moot is None,
            moot=moot,
            requested_at=approval.requested_at,
            expires_at=approval.expires_at_time,
            decided_by=approval.decided_by,
            decided_at=approval.decided_at,
            notes=approval.notes,
            result=approval.result,
            hold=self._hold(deployment) if state == "pending" else None,
        )

    def _moot(self, approval: Approval, deployment: Deployment | None) -> str | None:
        """Why a pending request needs nobody's answer any more (None: it does): :meth:`_on_stable`, or its
        deployment ended after it was asked (succeeded, failed...): the remediation executor refuses an approval
        of it then (:meth:`~deployguard.remediation.models.Approval.ended_since_asked`), so none is offered. A
        request asked of a deployment that had ended already (a rollback of the live release) still counts."""
        if deployment is None:
            return None
        on_stable = self._on_stable(approval, deployment)
        if on_stable is not None:
            return on_stable
        if approval.ended_since_asked(deployment):
            ended = deployment.status.value
            if deployment.decision and deployment.decision != ended:
                ended += f" ({deployment.decision})"
            return (
                f"deployment {deployment.deployment_id} ended {ended} after it was asked: an approval would not be "
                "done (the remediation refuses it)"
            )
        return None

    def _on_stable(self, approval: Approval, deployment: Deployment) -> str | None:
        """A rollback request whose deployment ended with the traffic back on the stable version (rolled back,
        aborted, held): nothing to roll back."""
        actions = self.alerts.remediation.settings.actions
        if not promotion_hold.rolls_back(approval, actions):
            return None
        if deployment.status in (DeploymentStatus.ROLLED_BACK, DeploymentStatus.STOPPED):
            return f"deployment {deployment.deployment_id} has ended {deployment.decision or deployment.status.value}"
        return None

    def _hold(self, deployment: Deployment | None) -> PromotionHold | None:
        """The promotion hold of the deployment's canary execution (its claims, two reads), if one began."""
        if deployment is None or deployment.status.is_terminal:
            return None
        key = f"{deployment.deployment_id}#{deployment.execution_arn or ''}"
        began = self.repository.find_claim(promotion_hold.BEGAN, key)
        if not began or not began.get("since"):
            return None
        ended = self.repository.find_claim(promotion_hold.ENDED, key) is not None
        return PromotionHold(
            weight_percent=round(deployment.canary_weight * 100, 2),
            since=datetime.fromisoformat(str(began["since"])),
            ended=ended,
        )

    # ------------------------------------------------------------------ answers

    def decide(self, approval_id: str, actor: str, approve: bool, notes: str) -> RemediationRequest:
        """A person's answer; refused (ConflictError) when the request cannot be answered any more."""
        approval = self.alerts.remediation.store.approval(approval_id)  # NotFoundError: unknown id
        why = refusal(approval, clock.now())
        if why is not None and approval.status != ApprovalStatus.PENDING:
            raise ConflictError(why)
        deployment = self.repository.find_deployment(approval.deployment_id)
        moot = self._moot(approval, deployment)
        if approve and moot is not None and approval.status == ApprovalStatus.PENDING:
            assert deployment is not None  # _moot
            lead = "nothing to roll back, " if self._on_stable(approval, deployment) else ""
            raise ConflictError(f"{approval.action} request {approval.approval_id}: {lead}{moot}")
        # a pending one past its expiry is expired by decide (saved and audited), then refused
        self.alerts.decide(approval_id, actor, approve, notes)
        return self.one(approval_id)
