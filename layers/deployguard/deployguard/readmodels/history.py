"""The whole recorded history of one deployment, and the timeline people read.

:class:`DeploymentHistory` is the JSON export (schema ``deployguard-history/1``, printed by
``deployguard report ID --format json`` and described by :func:`history_json_schema`): the
deployment record and every item DeployGuard stored about it, plus what is derived from
them (traffic steps, checks, remediation). :func:`timeline` merges them into one list in
time order. Everything here is pure: the records come from :mod:`deployguard.readmodels.deployments`.
"""

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field

from deployguard.alerts.models import Alert
from deployguard.incidents.models import Incident
from deployguard.models import (
    Assessment,
    AuditEntry,
    Decision,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    Model,
    Notification,
    Verdict,
)
from deployguard.readmodels import wording

HISTORY_SCHEMA = "deployguard-history/1"

# audit actions that move traffic: weight in percent (state machine) or as a fraction (CodeDeploy)
_TRAFFIC_PERCENT = {"traffic_shifted"}
_TRAFFIC_FRACTION = {"traffic_observed"}
_TRAFFIC_FULL = {"promoted"}
# an emergency rollback takes the version off the alias when it happens (a promoted record keeps its ended_at);
# a ShiftTraffic or Promote task that lost the race to an abort put the alias back at stable
_TRAFFIC_ZERO = {"rolled_back", "rollback_completed", "emergency_rollback", "traffic_move_undone"}
_CHECK_ACTIONS = {"hook_verdict", "validated", "baseline_captured"}


class TrafficStep(Model):
    """The share of traffic the new version received from ``at`` on."""

    at: datetime
    weight: float = Field(ge=0.0, le=1.0, description="fraction of traffic on the new version")
    reason: str = ""


class CheckResult(Model):
    """A validation: the canary's pre-flight check, baseline capture, a CodeDeploy hook's verdict."""

    at: datetime
    name: str
    status: str = Field(description="Succeeded, Failed, passed ... as the check reported it")
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class RemediationStep(Model):
    """An action taken on the deployment's target (attempt, approval, rejection, circuit breaker)."""

    at: datetime
    action: str
    actor: str
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class GateOutcome(Model):
    """What a CI pipeline needs: is it over, and how did it end."""

    deployment_id: str | None = Field(default=None, description="the deployment (its whole id)")
    state: Literal["running", "promoted", "rolled_back", "failed", "held"]
    exit_code: int = Field(
        description="0 promoted, 1 rolled back or failed (a rollback deployment: 1 too, the release it rolls back "
        "was rolled back), 2 held for a person, 3 still running"
    )
    message: str = Field(description="why: the decision's reason, or where a running deployment is")

    @classmethod
    def of(cls, deployment: Deployment) -> Self:
        status, decision = deployment.status, deployment.decision or ""
        why = wording.reason_once(deployment) or decision or status.value  # the verdict said once
        dep_id = deployment.deployment_id
        if deployment.rollback_of:  # CodeDeploy's rollback deployment: the old version back, no release of its own
            rollback = f"rollback deployment of {deployment.rollback_of}"
            if not status.is_terminal:
                return cls(deployment_id=dep_id, state="running", exit_code=3, message=f"{rollback}: {status.value}")
            if status == DeploymentStatus.SUCCEEDED:
                message = f"{rollback} succeeded: version {deployment.version} is back ({why})"
                return cls(deployment_id=dep_id, state="rolled_back", exit_code=1, message=message)
            return cls(deployment_id=dep_id, state="failed", exit_code=1, message=f"{rollback} {status.value}: {why}")
        if not status.is_terminal:
            weight = f"{deployment.canary_weight:.0%}"
            message = f"{status.value} at {weight} ({deployment.phase.value})"
            return cls(deployment_id=dep_id, state="running", exit_code=3, message=message)
        if status == DeploymentStatus.SUCCEEDED:
            return cls(deployment_id=dep_id, state="promoted", exit_code=0, message=why)
        if status == DeploymentStatus.STOPPED and decision == "held":
            return cls(deployment_id=dep_id, state="held", exit_code=2, message=why)
        if status == DeploymentStatus.FAILED:
            return cls(deployment_id=dep_id, state="failed", exit_code=1, message=why)
        return cls(deployment_id=dep_id, state="rolled_back", exit_code=1, message=why)


class DeploymentHistory(Model):
    """Export of everything DeployGuard recorded about one deployment (``deployguard-history/1``)."""

    schema_: str = Field(default=HISTORY_SCHEMA, alias="schema")
    exported_at: datetime
    deployment: Deployment
    outcome: GateOutcome
    traffic: list[TrafficStep] = Field(default_factory=list, description="traffic weight changes, in time order")
    assessments: list[Assessment] = Field(default_factory=list, description="every verdict with its reasons")
    checks: list[CheckResult] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list)
    incidents: list[Incident] = Field(default_factory=list)
    remediation: list[RemediationStep] = Field(default_factory=list)
    events: list[DeploymentEvent] = Field(default_factory=list, description="what was published on the SNS topic")
    notifications: list[Notification] = Field(default_factory=list, description="every delivery to a channel")
    audit: list[AuditEntry] = Field(default_factory=list, description="the audit trail, in order")

    def canary_assessments(self) -> list[Assessment]:
        """The canary's verdicts (new version against stable), without the post-deployment looks."""
        return [a for a in self.assessments if not is_post_deployment(a)]

    def post_deployment_assessments(self) -> list[Assessment]:
        """The anomaly checks after promotion (the version against its own last 24 hours)."""
        return [a for a in self.assessments if is_post_deployment(a)]

    def metric_ids(self) -> list[str]:
        """The metrics the judge reasoned about, in the order first seen."""
        seen: dict[str, None] = {}
        for assessment in self.assessments:
            for reason in assessment.verdict.reasons:
                seen.setdefault(reason.metric_id, None)
        return list(seen)


def verdict_why(verdict: Verdict) -> str:
    """Why a verdict is what it is, in one line: a failing or inconclusive verdict leads with its
    summary (the cause the judge decided on), then its other reasons that are not passes and not
    already in it (a p99 judged through the p50 does not block anything); a healthy one gives
    its notes (reasons that are not passes), else its summary."""
    others = [r.message for r in verdict.reasons if r.status != "pass"]
    if verdict.decision == Decision.HEALTHY:
        return "; ".join(others) or verdict.summary
    return "; ".join([verdict.summary, *(m for m in others if m not in verdict.summary)])


def is_post_deployment(assessment: Assessment) -> bool:
    """A post-deployment anomaly check (workflows.monitoring), not a canary verdict."""
    return assessment.details.get("kind") == "post_deployment"


def history_json_schema() -> dict[str, Any]:
    """JSON Schema of the export (``deployguard report ID --format json``): the shape it is written in
    (serialization mode, so computed fields such as an incident's times to acknowledge and resolve are in it)."""
    schema = DeploymentHistory.model_json_schema(by_alias=True, mode="serialization")
    schema["$id"] = f"https://deployguard.dev/schemas/{HISTORY_SCHEMA}.json"
    return schema


def build_history(
    deployment: Deployment,
    *,
    assessments: list[Assessment],
    audit: list[AuditEntry],
    events: list[DeploymentEvent],
    notifications: list[Notification],
    alerts: list[Alert],
    incidents: list[Incident],
    exported_at: datetime,
    from_start: bool = True,
) -> DeploymentHistory:
    """``from_start`` false: ``audit`` is the newest part of the trail only (see :func:`traffic_steps`)."""
    return DeploymentHistory(
        exported_at=exported_at,
        deployment=deployment,
        outcome=GateOutcome.of(deployment),
        traffic=traffic_steps(deployment, audit, from_start=from_start),
        assessments=sorted(assessments, key=lambda a: a.at),
        checks=checks(audit),
        alerts=alerts,
        incidents=incidents,
        remediation=[
            RemediationStep(at=e.at, action=e.action, actor=e.actor, reason=e.reason, details=e.details)
            for e in audit
            if e.action.startswith(("remediation_", "circuit_breaker_")) or e.action in wording.PROMOTION_HOLD_ACTIONS
        ],
        events=events,
        notifications=notifications,
        audit=audit,
    )


def traffic_steps(deployment: Deployment, audit: list[AuditEntry], *, from_start: bool = True) -> list[TrafficStep]:
    """Traffic weight over time: 0 at the start, then every shift, promotion and rollback. ``from_start`` false:
    ``audit`` is the newest part of the trail only (a page), the weight before it unknown: its first move is a step
    (it may repeat the weight before it), and so is where traffic ended up."""
    steps = [TrafficStep(at=deployment.started_at, weight=0.0, reason="started")]
    previous: float | None = 0.0 if from_start else None
    for entry in audit:
        weight: float | None = None
        raw = entry.details.get("weight")
        if entry.action in _TRAFFIC_PERCENT and isinstance(raw, int | float):
            weight = float(raw) / 100.0
        elif entry.action in _TRAFFIC_FRACTION and isinstance(raw, int | float):
            weight = float(raw)
        elif entry.action in _TRAFFIC_FULL:
            weight = 1.0
        elif entry.action in _TRAFFIC_ZERO:
            weight = 0.0
        if weight is not None and weight != previous:
            steps.append(TrafficStep(at=entry.at, weight=min(max(weight, 0.0), 1.0), reason=entry.reason))
            previous = steps[-1].weight
    if deployment.status.is_terminal and deployment.ended_at is not None:  # where traffic ended up
        final = 1.0 if deployment.status == DeploymentStatus.SUCCEEDED else 0.0
        if final != previous:
            steps.append(TrafficStep(at=max(deployment.ended_at, steps[-1].at), weight=final,
                                     reason=deployment.decision or deployment.status.value))  # fmt: skip
    return steps


def checks(audit: list[AuditEntry]) -> list[CheckResult]:
    found = []
    for entry in audit:
        if entry.action not in _CHECK_ACTIONS:
            continue
        if entry.action == "hook_verdict":
            status, _, reason = entry.reason.partition(": ")
            name = str(entry.details.get("lifecycle_event") or entry.details.get("phase") or "hook")
        else:
            status, reason, name = "passed", entry.reason, entry.action
        found.append(CheckResult(at=entry.at, name=name, status=status, reason=reason, details=entry.details))
    return found


# Events published in the same instant are told in the order a deployment lives them.
LIFECYCLE_ORDER = {
    "deployment.started": 0, "canary.started": 1, "canary.step_advanced": 2, "assessment.status_changed": 3,
    "alert": 4, "validation.failed": 4, "validation.warned": 4, "deployment.long_running": 4,
    "rollback.initiated": 5, "rollback.completed": 6, "rollback.failed": 6, "promotion.completed": 7,
    "canary.completed": 8, "deployment.completed": 9, "deployment.failed": 9,
}  # fmt: skip

TimelineKind = Literal["traffic", "assessment", "check", "alert", "incident", "remediation", "event", "notification"]


class TimelineItem(Model):
    at: datetime
    kind: TimelineKind
    title: str
    detail: str = ""
    severity: str = "info"


def timeline(history: DeploymentHistory, *, notifications: bool = True) -> list[TimelineItem]:
    """Traffic steps, assessments, checks, alerts, incidents, remediation, events and deliveries, in time order."""
    deployment = history.deployment
    # a rollback deployment moves traffic back to the old version: no "new version" in it
    to = (
        f"version {deployment.version} (rollback deployment of {deployment.rollback_of})"
        if deployment.rollback_of
        else "the new version"
    )
    items: list[TimelineItem] = [
        TimelineItem(at=s.at, kind="traffic", title=f"traffic {s.weight:.0%} to {to}", detail=s.reason)
        for s in history.traffic
    ]
    last_step = items[-1] if len(items) > 1 and history.deployment.status.is_terminal else None
    for a in history.assessments:
        reasons = verdict_why(a.verdict)
        score = f", health {a.health_score:.0f}" if a.health_score is not None else ""
        impact = business_impact(a)
        impact_text = f", business impact {impact:.1f}/10" if impact is not None else ""
        items.append(
            TimelineItem(
                at=a.at,
                kind="assessment",
                title=f"{a.verdict.decision.value} at {a.canary_weight:.0%}{score}{impact_text}",
                detail=reasons,
                severity={"failing": "critical", "inconclusive": "warning"}.get(a.verdict.decision.value, "info"),
            )
        )
    items += [
        TimelineItem(
            at=c.at,
            kind="check",
            title=f"{c.name}: {c.status}",
            detail=c.reason,
            severity="critical" if c.status.lower() in ("failed", "fail") else "info",
        )
        for c in history.checks
    ]
    items += [
        TimelineItem(at=a.at, kind="alert", title=f"alert {a.rule} ({a.status.value})", detail=a.message,
                     severity=a.severity.value)
        for a in history.alerts
    ]  # fmt: skip
    for inc in history.incidents:
        items.append(TimelineItem(at=inc.opened_at, kind="incident", title=f"incident {inc.incident_id} opened",
                                  detail=inc.title, severity=inc.severity.value))  # fmt: skip
        for entry in inc.timeline:
            if entry.action != "opened":
                title = f"incident {inc.incident_id} {entry.action} by {entry.actor}"
                items.append(TimelineItem(at=entry.at, kind="incident", title=title, detail=entry.notes))
    for r in history.remediation:  # people's answers and the promotion hold in words, the rest as recorded
        said = wording.remediation_said(r.action, r.actor, r.reason, r.details)
        title, detail, severity = said or (f"{r.action} by {r.actor}", r.reason, "info")
        items.append(TimelineItem(at=r.at, kind="remediation", title=title, detail=detail, severity=severity))
    items += [
        TimelineItem(at=e.at, kind="event", title=f"{e.event_type.value}: {e.title}",
                     detail=wording.said_once(e.message), severity=e.severity.value)  # the verdict said once
        for e in history.events
    ]  # fmt: skip
    if notifications:
        items += [
            TimelineItem(
                at=n.at,
                kind="notification",
                title=f"{n.channel}: {n.status.value} after {n.attempts} attempt(s)",
                detail=n.error or "",
                severity="warning" if n.status.value in ("failed", "dead_lettered") else "info",
            )
            for n in history.notifications
        ]
    order = {k: i for i, k in enumerate(TimelineKind.__args__)}  # type: ignore[attr-defined]
    # a shift comes before the assessments at its time; where traffic ended up comes after them;
    # events of one instant in the order a deployment lives them
    return sorted(
        items,
        key=lambda i: (
            i.at,
            len(order) if i is last_step else order[i.kind],
            LIFECYCLE_ORDER.get(i.title.split(":", 1)[0], 4) if i.kind == "event" else 0,
        ),
    )


def business_impact(assessment: Assessment) -> float | None:
    """The 0-10 business impact the health report gave this assessment (None if not recorded)."""
    health = assessment.details.get("health")
    if isinstance(health, dict) and isinstance(health.get("business_impact"), int | float):
        return float(health["business_impact"])
    return None
