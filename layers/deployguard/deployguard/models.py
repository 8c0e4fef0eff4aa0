"""Pydantic v2 models for everything that crosses a boundary.

Deployments, phases, metric readings, assessments, verdicts, events and
notifications. Storage, Step Functions payloads, SNS messages and the CLI all
speak these models; nothing else is passed between modules as a loose dict.

No ``from __future__ import annotations`` in the modules of models: pydantic evaluates every field's
annotation when the class is created, and a string annotation is compiled first (``typing.ForwardRef``),
about 50 µs a field on every cold start (see README "Cold starts").
"""

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator


def utcnow() -> datetime:
    """Current time; the embedded AWS swaps the clock (see deployguard.clock)."""
    from deployguard.clock import now

    return now()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Model(BaseModel):
    # schemas are built on first use, not at import: a function pays only for the models it uses
    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True, defer_build=True)


# --------------------------------------------------------------------------- deployments


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    ROLLED_BACK = "rolled_back"

    @property
    def is_terminal(self) -> bool:
        return self not in (DeploymentStatus.PENDING, DeploymentStatus.IN_PROGRESS)


class Phase(StrEnum):
    PRE_DEPLOYMENT = "pre_deployment"
    DEPLOYMENT_ACTIVE = "deployment_active"
    VALIDATION = "validation"
    MONITORING = "monitoring"
    COMPLETED = "completed"
    FAILED = "failed"


class Strategy(StrEnum):
    CANARY = "canary"
    LINEAR = "linear"
    ALL_AT_ONCE = "all_at_once"
    BLUE_GREEN = "blue_green"


class PhaseChange(Model):
    phase: Phase
    at: datetime
    reason: str = ""


class LambdaTarget(Model):
    """A Lambda alias whose traffic moves from a stable version to a new one."""

    kind: Literal["lambda"] = "lambda"
    function_name: str = Field(min_length=1)
    alias: str = Field(min_length=1)
    stable_version: str = Field(min_length=1)
    new_version: str = Field(min_length=1)


class EcsTarget(Model):
    """An ECS service deployed blue/green: the original (blue) task set and its replacement (green).

    Each task set sits behind its own load balancer target group; per-target-group
    metrics (``AWS/ApplicationELB`` with the ``LoadBalancer`` and ``TargetGroup``
    dimensions, given here as ARN suffixes) are what tells the two versions apart.
    """

    kind: Literal["ecs"] = "ecs"
    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    stable_task_definition: str = ""
    new_task_definition: str = ""
    load_balancer: str = Field(default="", description="ARN suffix: app/<name>/<id>")
    stable_target_group: str = Field(default="", description="ARN suffix of the blue target group")
    new_target_group: str = Field(default="", description="ARN suffix of the green target group")
    stable_task_set: str = ""
    new_task_set: str = ""


class ControlReport(Model):
    """A person's verb whose effect is on the record, written with it, while its audit entry and announcement
    may still be missing (their write failed after the effect landed): whoever finds it on the record (a later
    request about the deployment) writes them, once (their ids come from ``key``), then removes it."""

    key: str
    verb: str
    actor: str
    reason: str
    identity: str | None = None
    at: datetime


class CanaryControl(Model):
    """What people asked of a running canary (deployguard.workflows.control); the canary controller honours it."""

    paused: bool = Field(default=False, description="hold the current weight; a failing verdict still rolls back")
    paused_at: datetime | None = Field(default=None, description="when the pause going on began (null: none)")
    paused_seconds: float = Field(
        default=0.0,
        ge=0,
        description="how long people held this run of the canary paused, in pauses that ended (a promotion hold "
        "does not count paused time against its bound)",
    )
    promote_requested: bool = Field(default=False, description="skip the remaining steps at the next assessment")
    skip_analysis: bool = Field(default=False, description="emergency fix: verdicts are recorded, never acted on")
    awaiting_approval: bool = Field(default=False, description="waiting for a person before 100% of traffic")
    approval_token: str | None = Field(
        default=None,
        exclude=True,
        description="Step Functions task token of that wait: whoever holds it can answer the wait "
        "(SendTaskSuccess), so it is never serialised (no API response, report, export, CLI output or schema "
        "carries it); only the deployment's stored record keeps it (DeploymentRepository._deployment_item)",
    )
    approved_by: str | None = Field(
        default=None,
        description="who approved 100% (the approval wait answered): kept whatever verb comes after it, until the "
        "canary ends or is retried",
    )
    last_action: str | None = None
    last_actor: str | None = None
    last_action_at: datetime | None = None
    unreported: list[ControlReport] = Field(
        default_factory=list,
        exclude=True,
        description="verbs whose audit entry and announcement are still to be written (never serialised: only the "
        "stored record keeps them, DeploymentRepository._deployment_item)",
    )

    def paused_for(self, now: datetime) -> timedelta:
        """How long people have held this run paused up to ``now``: the pauses that ended and the one going on."""
        ongoing = now - self.paused_at if self.paused and self.paused_at is not None else timedelta(0)
        return timedelta(seconds=self.paused_seconds) + max(ongoing, timedelta(0))


class TrafficCheck(Model):
    """The reconciler's checks of an ended, unpromoted deployment's traffic (see
    :mod:`deployguard.workflows.reconciler`): a bounded number, at growing intervals, then done."""

    checks: int = Field(default=0, ge=0, description="checks that read the traffic (a repair included)")
    failures: int = Field(default=0, ge=0, description="checks that could not read or repair it")
    next_at: datetime | None = Field(default=None, description="when the next check is due")
    reconciled_at: datetime | None = Field(default=None, description="when the checks ended: no more reads")


class EndCause(Model):
    """A remediation that ended a deployment, in the parts its ``decision_reason`` is composed from once
    (:meth:`reason`): the incident, the canary's failing verdict it came from, CodeDeploy's end after it. What
    people read (deployguard.readmodels.wording) is put together from these, never taken apart from the sentence.
    Records written before it have the reason alone."""

    remediation: str = Field(min_length=1, description="the remediation action that ended it: rollback, ...")
    incident_id: str = Field(min_length=1)
    rules: list[str] = Field(default_factory=list, description="the incident's alert rules: canary-issue, ...")
    title: str = Field(default="", description="the incident's title")
    verdict: str | None = Field(
        default=None,
        description="the canary's failing verdict behind the incident (its summary), said here once; None when the "
        "incident came from no verdict",
    )
    codedeploy: str | None = Field(
        default=None, description='what CodeDeploy said when it ended after the remediation: "CodeDeploy STOP"'
    )

    def reason(self) -> str:
        """The audit sentence ``decision_reason`` keeps, each part once: "remediation rollback for incident inc-1
        (canary-issue): <title>; canary verdict: <verdict>; CodeDeploy STOP"."""
        text = f"remediation {self.remediation} for incident {self.incident_id} ({', '.join(self.rules)}): {self.title}"
        if self.verdict:
            text += f"; canary verdict: {self.verdict}"
        return f"{text}; {self.codedeploy}" if self.codedeploy else text


NEVER_SHIFTED = ("rejected", "validation_failed")  # decisions of a deployment that may end before any traffic moved


class Deployment(Model):
    deployment_id: str = Field(default_factory=lambda: new_id("dg"), min_length=1)
    service: str = Field(min_length=1)
    environment: str = Field(min_length=1)
    version: str = Field(min_length=1)
    strategy: Strategy = Strategy.CANARY
    target: LambdaTarget | EcsTarget = Field(discriminator="kind")
    status: DeploymentStatus = DeploymentStatus.PENDING
    phase: Phase = Phase.PRE_DEPLOYMENT
    phase_history: list[PhaseChange] = Field(default_factory=list)
    canary_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    step_index: int = Field(default=0, ge=0)
    driver: Literal["stepfunctions", "codedeploy"] = Field(
        default="stepfunctions", description="who moves the traffic: DeployGuard's state machine or CodeDeploy"
    )
    codedeploy_application: str | None = None
    codedeploy_group: str | None = None
    codedeploy_deployment_id: str | None = None
    execution_arn: str | None = Field(
        default=None,
        description="driver stepfunctions: the canary state machine's execution that drives it (recorded by "
        "Validate); the minute tick asks Step Functions about it once the record stops moving",
    )
    rollback_of: str | None = Field(
        default=None,
        description="a CodeDeploy rollback deployment (automatic or requested): the id of the deployment it rolls "
        "back. It puts the old version back; it is no release of its own",
    )
    started_at: datetime = Field(default_factory=utcnow)
    weight_changed_at: datetime | None = None
    traffic_started_at: datetime | None = Field(
        default=None,
        description="when production traffic was first seen on the new version (ECS: green's test-listener "
        "traffic before it is no evidence, the judge's windows start here)",
    )
    ended_at: datetime | None = None
    expected_duration_seconds: int | None = None
    traffic_shift_seconds: int | None = Field(
        default=None,
        description="driver codedeploy: how long CodeDeploy's deployment configuration runs the new version beside "
        "the old one (a canary's interval, every linear step); the judge spreads its false-alarm budget over it",
    )
    decision: str | None = None
    decision_reason: str | None = None
    end_cause: EndCause | None = Field(
        default=None,
        description="a remediation's end, in the parts decision_reason was composed from (each said once); None for "
        "other ends and for records written before it",
    )
    last_assessment: "AssessmentCursor | None" = Field(
        default=None, description="what the next scheduled assessment needs, written with each assessment"
    )
    weight_checked_at: datetime | None = Field(default=None, description="when CodeDeploy's weight was last read")
    split_disagrees: bool = Field(
        default=False,
        description="CodeDeploy confirmed the weight when the invocation split said it moved (the version is "
        "also invoked directly): the split no longer prompts a recheck",
    )
    open_incident_keys: list[str] = Field(
        default_factory=list, description="grouping keys of the deployment's open incidents at its last assessment"
    )
    control: CanaryControl = Field(default_factory=CanaryControl)
    traffic_check: TrafficCheck = Field(
        default_factory=TrafficCheck, description="the reconciler's checks once it ended unpromoted"
    )
    version_counter: int = Field(default=0, ge=0, description="optimistic-lock counter")

    @property
    def duration_seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def never_took_traffic(self) -> bool:
        """Ended before any of its traffic moved: rejected at Validate (an alias another canary claimed, a refused
        request) or failed its pre-traffic checks, its weight never changed. The service's traffic was never its:
        a later deployment like this overtakes nothing (a retried canary stays its service's live one)."""
        return (
            self.status.is_terminal
            and self.decision in NEVER_SHIFTED
            and self.weight_changed_at is None
            and self.canary_weight == 0
        )


# --------------------------------------------------------------------------- metrics


class MetricKind(StrEnum):
    """What a metric is, which decides how the judge tests it."""

    COUNT = "count"  # a count of requests (invocations): the denominator of rates
    RATE_COUNT = "rate_count"  # a count of events out of another count (errors / invocations)
    LATENCY = "latency"  # a per-period percentile or mean of a duration
    GAUGE = "gauge"  # any other per-period value (CPU %, memory %)


class Direction(StrEnum):
    INCREASE_IS_BAD = "increase_is_bad"
    DECREASE_IS_BAD = "decrease_is_bad"


class MetricType(StrEnum):
    APPLICATION = "application"
    INFRASTRUCTURE = "infrastructure"
    BUSINESS = "business"
    PERFORMANCE = "performance"
    SECURITY = "security"


class MetricSpec(Model):
    """One CloudWatch metric read for both versions."""

    id: str = Field(pattern=r"^[a-z][a-zA-Z0-9_]*$")
    namespace: str = "AWS/Lambda"
    name: str
    stat: str = "Sum"
    unit: str | None = None
    kind: MetricKind = MetricKind.GAUGE
    direction: Direction = Direction.INCREASE_IS_BAD
    relative_to: str | None = Field(default=None, description="id of the count this is a rate of")
    metric_type: MetricType = MetricType.APPLICATION
    dimensions: dict[str, str] = Field(default_factory=dict)
    fill_missing: float | None = Field(
        default=None,
        description="the value of a period without a datapoint (0 for counts published only when non-zero)",
    )
    optional: bool = Field(
        default=False,
        description="when true, missing data of this metric does not keep the canary from passing",
    )
    budget_weight: float = Field(
        default=1.0,
        gt=0.0,
        le=100.0,
        description="this metric test's share of the canary's false-alarm budget, relative to the other metrics "
        "judged at once (a weighted Bonferroni split): a metric whose regressions are large when they come needs "
        "little of it, and the others get more",
    )


class DataGap(Model):
    """Periods of one version of a metric that CloudWatch did not return (an error status)."""

    version: Literal["baseline", "canary"]
    periods: list[int] = Field(description="period indexes of the window, ascending")
    reason: str = Field(description="why, e.g. 'CloudWatch returned InternalError'")


class MetricWindow(Model):
    """Per-period values of one metric for both versions; None = no datapoint."""

    spec: MetricSpec
    baseline: list[float | None]
    canary: list[float | None]
    gaps: list[DataGap] = Field(
        default_factory=list, description="periods whose values are unknown (not zero, not 'no datapoint')"
    )

    @field_validator("baseline", "canary")
    @classmethod
    def _finite(cls, values: list[float | None]) -> list[float | None]:
        for v in values:
            if v is not None and v != v:  # NaN
                raise ValueError("values must be numbers or null, not NaN")
        return values


class CanaryWindow(Model):
    """Everything the judge sees at one assessment: periods 0..n-1 since the canary began."""

    interval_seconds: int = Field(default=60, gt=0)
    canary_weight: float = Field(ge=0.0, le=1.0)
    metrics: list[MetricWindow]
    periods_since_shift: int | None = Field(
        default=None, description="periods since the last traffic shift (for the grace period)"
    )

    @property
    def periods(self) -> int:
        return max((len(m.canary) for m in self.metrics), default=0)


class MetricReading(Model):
    """One datapoint as read from CloudWatch."""

    metric_id: str
    version: Literal["baseline", "canary"]
    timestamp: datetime
    value: float


# --------------------------------------------------------------------------- verdicts


class Decision(StrEnum):
    HEALTHY = "healthy"  # enough evidence that the canary is not worse
    FAILING = "failing"  # the canary is worse: roll back
    INCONCLUSIVE = "inconclusive"  # not enough evidence either way: hold


class VerdictReason(Model):
    metric_id: str
    status: Literal["pass", "fail", "inconclusive"]
    effect: float | None = Field(default=None, description="relative change canary vs baseline")
    baseline_value: float | None = None
    canary_value: float | None = None
    confidence: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="a fail: how sure the judge is that the canary is worse; a pass: the confidence of canary_bound",
    )
    canary_bound: float | None = Field(
        default=None,
        description="a pass: how bad the canary's value may be at `confidence` (an upper bound where an increase"
        " is bad, a lower one where a decrease is), in canary_value's units; within the healthy margin",
    )
    message: str


class Verdict(Model):
    decision: Decision
    summary: str
    reasons: list[VerdictReason] = Field(default_factory=list)
    periods: int = 0
    judge: str = "deployguard"

    @property
    def failing_reasons(self) -> list[VerdictReason]:
        return [r for r in self.reasons if r.status == "fail"]


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


class AssessmentCursor(Model):
    """The last scheduled assessment of a deployment, kept in its record so that the next one
    needs no history read: when it is due, the verdict and status to compare with (a change is
    announced once), and up to where the metrics were read.

    ``judge_state`` is where an incremental judge keeps its sequential state between looks
    (a compact JSON object folded forward with each new period); None means the judge reads
    the whole window again.
    """

    kind: Literal["canary", "post_deployment"]
    at: datetime
    decision: Decision
    health_status: HealthStatus
    next_at: datetime
    read_until: datetime | None = None
    judge_state: dict[str, Any] | None = None

    def due(self, kind: str, now: datetime) -> bool:
        """Whether an assessment of ``kind`` is due at ``now`` (always, after one of another kind)."""
        return self.kind != kind or now >= self.next_at


class Assessment(Model):
    assessment_id: str = Field(default_factory=lambda: new_id("as"))
    deployment_id: str
    at: datetime = Field(default_factory=utcnow)
    step_index: int = 0
    canary_weight: float = 0.0
    verdict: Verdict
    health_status: HealthStatus = HealthStatus.UNKNOWN
    health_score: float | None = Field(default=None, ge=0, le=100)
    details: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------- events


class EventType(StrEnum):
    DEPLOYMENT_STARTED = "deployment.started"
    DEPLOYMENT_COMPLETED = "deployment.completed"
    DEPLOYMENT_FAILED = "deployment.failed"
    ROLLBACK_INITIATED = "rollback.initiated"
    ROLLBACK_COMPLETED = "rollback.completed"
    ROLLBACK_FAILED = "rollback.failed"
    CANARY_STARTED = "canary.started"
    CANARY_STEP_ADVANCED = "canary.step_advanced"
    CANARY_COMPLETED = "canary.completed"
    PROMOTION_COMPLETED = "promotion.completed"
    VALIDATION_FAILED = "validation.failed"
    VALIDATION_WARNED = "validation.warned"
    ASSESSMENT_STATUS_CHANGED = "assessment.status_changed"
    DEPLOYMENT_LONG_RUNNING = "deployment.long_running"
    CONTROL_ACTION = "control.action"
    ALERT = "alert"
    SUMMARY_PUBLISHED = "summary.published"  # the daily or weekly summary (route "summary.*" to email, Slack)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return ["info", "warning", "error", "critical"].index(self.value)


class DeploymentEvent(Model):
    """What DeployGuard publishes on its SNS topic."""

    event_id: str = Field(default_factory=lambda: new_id("ev"))
    event_type: EventType
    deployment_id: str
    service: str
    version: str
    environment: str
    severity: Severity = Severity.INFO
    title: str
    message: str = ""
    reasons: list[VerdictReason] = Field(default_factory=list)
    links: dict[str, str] = Field(default_factory=dict)
    at: datetime = Field(default_factory=utcnow)
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def about(cls, deployment: Deployment, event_type: EventType, title: str, message: str = "", **fields: Any) -> Self:
        """An event about ``deployment`` (its id, service, version and environment)."""
        return cls(
            event_type=event_type,
            deployment_id=deployment.deployment_id,
            service=deployment.service,
            version=deployment.version,
            environment=deployment.environment,
            title=title,
            message=message,
            **fields,
        )


class AuditEntry(Model):
    deployment_id: str
    at: datetime = Field(default_factory=utcnow)
    action: str
    actor: str
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    DEAD_LETTERED = "dead_lettered"


class Notification(Model):
    """One delivery of an event to one channel."""

    notification_id: str = Field(default_factory=lambda: new_id("nt"))
    event_id: str
    deployment_id: str
    channel: str
    status: DeliveryStatus
    attempts: int = 0
    latency_ms: float | None = None
    at: datetime = Field(default_factory=utcnow)
    error: str | None = None


# --------------------------------------------------------------------------- statistics


def deployment_statistics(
    status: DeploymentStatus, duration_seconds: float | None, started: bool = False
) -> list[tuple[str, str, float]]:
    """(name, unit, value) of the EMF deployment statistics one deployment contributes when it
    starts (``started``) or ends in ``status`` (the recorder's CodeDeploy deployments and the state
    machine's canaries alike, in the ``DeployGuard`` namespace by environment and strategy)."""
    if started:
        return [("DeploymentsStarted", "Count", 1.0)]
    if not status.is_terminal:
        return []
    points = [
        ("Deployments" + status.value.title().replace("_", ""), "Count", 1.0),  # DeploymentsRolledBack, ...
        ("DeploymentsEnded", "Count", 1.0),
        ("DeploymentSuccessRate", "Percent", 100.0 if status == DeploymentStatus.SUCCEEDED else 0.0),
    ]
    if duration_seconds is not None:
        points.append(("DeploymentDuration", "Seconds", max(0.0, duration_seconds)))
    return points


def judged_from(deployment: Deployment) -> Deployment:
    """The deployment as the judge's windows see it: an ECS deployment's periods start when production
    traffic reached green (before, green served only the test listener), when that is known."""
    start = deployment.traffic_started_at
    if deployment.target.kind != "ecs" or start is None or start <= deployment.started_at:
        return deployment
    return deployment.model_copy(update={"started_at": start})
