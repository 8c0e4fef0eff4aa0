"""No 100% while people are asked whether to roll the canary back: the hold its ``Promote`` looks at.

An alert rule's plan may ask people to approve a rollback of the deployment (``mode: approval``, e.g.
``business-impact``). When the canary's ``Promote`` runs, the rollback requests of its deployment
(:meth:`~deployguard.remediation.store.RemediationStore.approvals_of`, open or ended) decide:

- one approved (whatever became of it since: not run yet, failed, given up, dropped) while the record is
  still in progress (a rollback done would have ended it): the canary's own ``Rollback`` (``rollback``);
  the release is never promoted over a yes;
- one asked and not answered before it expired: nobody said no, so no promotion either: the canary's
  ``judge.on_no_evidence`` outcome (``no_evidence``: ``hold`` or ``rollback``), as when the judge finds no
  evidence;
- one pending (not expired): ``hold``: the traffic stays at its weight, the canary goes back to waiting
  and is assessed every period as before (a failing verdict rolls it back). At most :func:`bound` from the
  hold's beginning, whatever requests come and go, the time people held the canary paused not counted (a person
  holding it is not a lapse of people's answer: resumed, the hold goes on for what is left of its bound); then the
  ``on_no_evidence`` outcome;
- rejected only (or none): ``promote``.

The bound is the canary's own: ``judge.max_inconclusive_periods`` times ``canary.assessment_interval_seconds``,
the time the canary already waits at a weight for an answer its judge cannot give (and which its expected
duration counts per step), so a hold never makes a canary outlast what its configuration allows; capped at
:data:`MAX_HOLD` (with looks at least :data:`HOLD_LOOK_SECONDS` apart) under Step Functions' 25,000 history
events per execution, a 24 h approval wait before it included.

The hold begins once per execution (a claim keyed on the deployment and its execution keeps its beginning
for retried tasks) and ends once (a second claim): one ``promotion_held`` audit entry when it begins and
one ``promotion_hold_ended`` entry, with the reason, when it ends, not one per look.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from deployguard.remediation.models import Approval, ApprovalStatus

if TYPE_CHECKING:
    from deployguard.alerts.settings import RemediationAction
    from deployguard.config import ServiceConfig
    from deployguard.models import Deployment
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:canary-state-machine"
BEGAN = "promotion-hold"  # claim_once kinds: the hold's beginning and its end, per deployment and execution
ENDED = "promotion-hold-ended"
CLAIM_TTL = timedelta(days=8)
MAX_HOLD = timedelta(hours=6)  # 360 looks of ~16 history events each at HOLD_LOOK_SECONDS
HOLD_LOOK_SECONDS = 60
ROLLBACK_TYPES = frozenset({"rollback", "lambda_rollback", "codedeploy_stop", "ecs_rollback"})

Outcome = Literal["promote", "hold", "rollback", "no_evidence"]


@dataclass
class Look:
    """What one look of ``Promote`` found: its outcome, why, and the requests it is about."""

    outcome: Outcome
    reason: str = ""
    requests: list[Approval] = field(default_factory=list)


def bound(service: ServiceConfig) -> timedelta:
    """How long a canary's promotion may be held for people's answer (module docstring)."""
    periods = service.judge.max_inconclusive_periods * service.canary.assessment_interval_seconds
    return min(timedelta(seconds=periods), MAX_HOLD)


def rollback_requests(
    repository: DeploymentRepository, actions: dict[str, RemediationAction], deployment_id: str
) -> list[Approval]:
    """The approval requests of the deployment whose action rolls it back (``rollback`` and the like)."""
    from deployguard.remediation.store import RemediationStore  # only where read: not the console's cold start

    mine = RemediationStore(repository).approvals_of(deployment_id)
    return [a for a in mine if rolls_back(a, actions)]


def rolls_back(approval: Approval, actions: dict[str, RemediationAction]) -> bool:
    """Whether the request's action rolls its deployment back (its configured type, or a built-in name)."""
    kind = actions[approval.action].type if approval.action in actions else approval.action
    return kind in ROLLBACK_TYPES


def look(
    requests: list[Approval],
    now: datetime,
    held_since: datetime | None,
    limit: timedelta,
    paused: timedelta = timedelta(0),
) -> Look:
    """The outcome of ``Promote`` given the deployment's rollback requests (module docstring). ``paused``: how long
    people held the canary paused since the hold began, not counted against ``limit``."""
    said_yes = [a for a in requests if a.decided_by is not None and a.status != ApprovalStatus.REJECTED]
    if said_yes:
        a = said_yes[0]
        return Look("rollback", f"people approved rolling it back: {_one(a)}, approved by {a.decided_by}, "
                    f"{_what_became(a)}", said_yes)  # fmt: skip
    asked = [
        a for a in requests if a.decided_by is None and a.status in (ApprovalStatus.PENDING, ApprovalStatus.EXPIRED)
    ]
    lapsed = [a for a in asked if a.expires_at_time <= now]  # an EXPIRED one not yet due was never sent (withdrawn)
    if lapsed:
        a = lapsed[-1]
        return Look("no_evidence", f"nobody answered {_one(a)} before it expired at {_at(a.expires_at_time)}", lapsed)
    pending = [a for a in asked if a.status == ApprovalStatus.PENDING]
    if pending:
        if held_since is not None and now - held_since - paused >= limit:
            not_counted = f" ({paused.total_seconds():g} s paused by people not counted)" if paused else ""
            return Look("no_evidence", f"nobody answered {_one(pending[0])} within the hold's bound of "
                        f"{limit.total_seconds():g} s{not_counted}", pending)  # fmt: skip
        return Look("hold", f"people are asked whether to roll it back: {_one(pending[0])}, until "
                    f"{_at(pending[0].expires_at_time)}", pending)  # fmt: skip
    rejected = [a for a in requests if a.status == ApprovalStatus.REJECTED]
    if rejected:
        a = rejected[-1]
        return Look("promote", f"people said no: {_one(a)} rejected by {a.decided_by}", rejected)
    return Look("promote", "no rollback request is pending any more")


def begin(
    repository: DeploymentRepository,
    deployment: Deployment,
    now: datetime,
    found: Look,
    limit: timedelta,
    weight: float,
) -> tuple[datetime, timedelta]:
    """The hold's beginning for this execution: ``now`` the first time (audited once, ``promotion_held``),
    else when an earlier attempt began it; with how long people had held the run paused then
    (:meth:`~deployguard.models.CanaryControl.paused_for`: only later pauses are the hold's)."""
    key = _key(deployment)
    paused = deployment.control.paused_for(now)
    if repository.claim_once(BEGAN, key, CLAIM_TTL, since=now.isoformat(), paused_before=paused.total_seconds()):
        repository.audit_once(
            deployment.deployment_id, f"{BEGAN}#{key}", now, "promotion_held", ACTOR,
            f"promotion held at {weight:g}%: {found.reason}; at most {limit.total_seconds():g} s, then the canary's "
            "judge.on_no_evidence outcome",
            weight=weight, bound_seconds=limit.total_seconds(),
            approval_ids=[a.approval_id for a in found.requests],
            incident_ids=sorted({a.incident_id for a in found.requests}),
        )  # fmt: skip
        return now, paused
    claim = repository.find_claim(BEGAN, key) or {}
    if not claim.get("since"):
        return now, paused
    return datetime.fromisoformat(str(claim["since"])), timedelta(seconds=float(claim.get("paused_before") or 0))


def end(repository: DeploymentRepository, deployment: Deployment, now: datetime, outcome: str, reason: str) -> None:
    """The hold's end (audited once, ``promotion_hold_ended``, with the reason and what the canary does)."""
    key = _key(deployment)
    if repository.claim_once(ENDED, key, CLAIM_TTL, at=now.isoformat()):
        repository.audit_once(
            deployment.deployment_id, f"{ENDED}#{key}", now, "promotion_hold_ended", ACTOR,
            f"promotion hold ended ({outcome}): {reason}", outcome=outcome,
        )  # fmt: skip


def refuse(repository: DeploymentRepository, deployment: Deployment, now: datetime, found: Look) -> None:
    """Not promoted with no hold begun (people had answered yes, or nobody had before the request expired):
    audited once (``promotion_refused``)."""
    key = _key(deployment)
    if repository.claim_once(ENDED, key, CLAIM_TTL, at=now.isoformat()):
        repository.audit_once(
            deployment.deployment_id, f"promotion-refused#{key}", now, "promotion_refused", ACTOR,
            f"not promoted: {found.reason}", approval_ids=[a.approval_id for a in found.requests],
        )  # fmt: skip


def _key(deployment: Deployment) -> str:
    return f"{deployment.deployment_id}#{deployment.execution_arn or ''}"


def _one(approval: Approval) -> str:
    return f"{approval.action} request {approval.approval_id} of incident {approval.incident_id}"


def _what_became(approval: Approval) -> str:
    if approval.status == ApprovalStatus.APPROVED:
        return "not done yet" + (f" ({approval.result})" if approval.result else "")
    return f"not done ({approval.status.value}: {approval.result or 'no result'})"


def _at(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"
