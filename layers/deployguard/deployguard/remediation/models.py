"""What remediation plans, does and asks approval for."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from deployguard.models import Deployment, DeploymentStatus, Model, new_id, utcnow


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    NOOP = "noop"  # already in the wanted state: nothing to do (idempotency)
    FAILED = "failed"
    DRY_RUN = "dry_run"
    PENDING_APPROVAL = "pending_approval"
    REFUSED = "refused"  # target not allowed, or action not applicable
    BUSY = "busy"  # another remediation holds the target's lock
    COOLDOWN = "cooldown"
    EXHAUSTED = "exhausted"  # max attempts reached for this incident
    BLOCKED = "blocked"  # the circuit breaker is open
    DISABLED = "disabled"


class ActionPlan(Model):
    action: str
    type: str
    target: str
    description: str
    calls: list[str] = Field(default_factory=list, description="the AWS calls it would make")
    noop: bool = False
    routing: str | None = Field(
        default=None,
        description="what the target routes as the plan read it (a Lambda alias's versions and weights, an ECS "
        "service's task definition); None when the action does not read it",
    )


class RemediationResult(Model):
    incident_id: str
    deployment_id: str
    action: str
    target: str
    outcome: Outcome
    message: str
    attempt: int | None = None
    plan: ActionPlan | None = None
    approval_id: str | None = None
    duration_ms: float | None = None
    seconds_since_decision: float | None = None
    at: datetime = Field(default_factory=utcnow)
    details: dict[str, Any] = Field(default_factory=dict)


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXECUTED = "executed"
    EXPIRED = "expired"


class Approval(Model):
    approval_id: str = Field(default_factory=lambda: new_id("ap"))
    incident_id: str
    deployment_id: str
    action: str
    target: str
    description: str
    status: ApprovalStatus = ApprovalStatus.PENDING
    requested_at: datetime = Field(default_factory=utcnow)
    expires_at_time: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    notes: str = ""
    result: str | None = None
    task_token: str | None = Field(default=None, description="Step Functions task token waiting on this approval")
    routing: str | None = Field(
        default=None, description="what the target routed when the approval was asked (ActionPlan.routing)"
    )
    deployment_status: str | None = Field(default=None, description="the deployment's status when it was asked")
    version_counter: int = 0

    def ended_since_asked(self, deployment: Deployment) -> bool:
        """Whether ``deployment`` (this request's, as it is now) ended after people were asked: an approval is
        then never run (the executor refuses it as stale), so the request waits for nobody's answer."""
        asked = DeploymentStatus(self.deployment_status) if self.deployment_status else None
        return deployment.status.is_terminal and (
            (asked is not None and not asked.is_terminal)
            or (asked is None and (deployment.ended_at is None or deployment.ended_at >= self.requested_at))
        )
