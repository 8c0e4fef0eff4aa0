"""The scheduled assessor: every minute, judge every active deployment that DeployGuard's own
state machine is not already judging, and watch promoted ones.

Deployments whose traffic CodeDeploy moves (driver ``codedeploy``) are assessed here:
Lambda versions by their per-version metrics, ECS task sets by their target groups'
metrics. The work of one cycle does not grow with a deployment's age:

- what the next assessment needs (last verdict, when the next one is due, open incident
  keys) is in the deployment's record (:class:`~deployguard.models.AssessmentCursor`),
  written in the same conditional write as the assessment: no history is read;
- the new version's traffic weight is the one stored; CodeDeploy is asked again (its deployment
  target, never the Lambda control plane when CodeDeploy has a target) only while no traffic
  moved yet, when the invocation split the look read no longer fits the stored weight (or has
  too few invocations to tell: then every :data:`UNSPLIT_RECHECK`), and every
  :data:`WEIGHT_RECHECK` whatever the split;
- canary and monitoring reads of every due deployment go together, 500 queries a call;
- open incidents are read once per cycle.

The minute tick (:func:`run_tick`) holds a run lock (no two ticks overlap), lists what is
due, assesses it within the invocation's time budget or hands it out in shards
(:mod:`deployguard.aws.shards`, one SQS message per shard, :func:`run_shard` each), then
publishes the outbox and gives the alert engine its tick, for which time is always kept. It also
asks Step Functions about the execution of a state-machine canary whose record stopped moving, and
rolls back one whose execution ended before it did (:mod:`deployguard.workflows.stale_canaries`). The
traffic checks of ended deployments are not in the tick: they read Lambda's control plane, so
they run in a function of their own with a rate budget
(:func:`deployguard.workflows.reconciler.run_traffic_checks`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from deployguard import clock
from deployguard.alerts.fields import RECENT_PERIODS
from deployguard.analysis.judge import JudgeState, judge_canary, judge_step, live_view, state_fits
from deployguard.analysis.scenario import truncate_window
from deployguard.analysis.settings import resolve_spec
from deployguard.aws.cloudwatch import (
    MetricsReader,
    WindowRequest,
    canary_queries,
    canary_request,
    canary_window,
)
from deployguard.exceptions import CodeDeployError, JudgeStateError, MetricsConfigError, TrafficShiftError
from deployguard.models import (
    Assessment,
    AssessmentCursor,
    CanaryWindow,
    Decision,
    Deployment,
    DeploymentEvent,
    EcsTarget,
    EventType,
    LambdaTarget,
    MetricKind,
    Phase,
    Severity,
    Verdict,
    judged_from,
)
from deployguard.storage import keys, outbox
from deployguard.storage.repository import OutboxEntry
from deployguard.workflows.assessment import SAME_CYCLE, assessment_from_verdict, note_unreadable, save_assessment
from deployguard.workflows.monitoring import DueMonitoring, MonitoringRun, complete_monitoring, due_monitoring
from deployguard.workflows.reconciler import hand_over, publish_outbox
from deployguard.workflows.stale_canaries import ExecutionCheckRun, check_executions
from deployguard.workflows.verdict_metrics import publish_verdict_metrics

if TYPE_CHECKING:
    from deployguard.alerts.engine import AlertEngine, TickReport
    from deployguard.analysis.settings import JudgeSettings
    from deployguard.aws.events import EventPublisher
    from deployguard.config import DeployGuardConfig
    from deployguard.storage.outbox import Alert
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:assessor"
KIND = "canary"
RUN_LOCK = "ASSESSOR-RUN"
LOCK_LEASE_SECONDS = 50  # the tick's lease: it works within it, and the next tick (a minute later) finds it expired
WEIGHT_RECHECK = timedelta(minutes=15)  # CodeDeploy asked at least this often, whatever the invocation split says
UNSPLIT_RECHECK = timedelta(minutes=5)  # ... and this often when the split cannot tell (too few invocations)
SPLIT_MIN_INVOCATIONS = 50  # invocations (both versions, settled periods since the last change) the split needs
SPLIT_SIGMAS = 4.0  # the canary's count that far from weight x all (binomial deviations) ...
SPLIT_TOLERANCE = 0.05  # ... and this share of all apart: the traffic moved
QUERIES_PER_CHUNK = 2500  # five full GetMetricData calls between two looks at the clock
ALERT_TICK_RESERVE_MS = 20_000  # kept for the outbox and the alert tick, whatever is due
SETTLE_PERIODS = 2  # the last periods of a window, which CloudWatch may still complete: judged, not folded
TAIL_PERIODS = max(RECENT_PERIODS, SETTLE_PERIODS)  # a look reads at least these (health report, alert fields)
MAX_OPEN_INCIDENT_KEYS = 20  # the record stays one size: an incident storm's keys beyond these are in the incidents
CHUNK_RESERVE_MS = 10_000  # a chunk (read, judge, store) is started only with this much left
EXECUTION_CHECK_MS = 5_000  # a stale canary's execution is asked about (and repaired) only with this much left
logger = logging.getLogger(__name__)

RemainingMillis = Callable[[], int]
Values = dict[tuple[str, str, str], list[float | None]]  # a chunk's read: (request id, metric, role) -> values
ShardSender = Callable[[list[list[str]]], int]


@dataclass
class AssessorRun:
    assessed: list[Assessment] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # due, left for the next tick (time budget)
    unreadable: list[str] = field(default_factory=list)  # due, not read: in skipped (config) or failed (the read)
    records_unreadable: list[str] = field(default_factory=list)  # stored items the models reject: skipped (keys)
    failed: dict[str, str] = field(default_factory=dict)  # due, its look failed (tried again next tick)
    due: int = 0  # deployments due for a look this run (the DeploymentsDue heartbeat: 0 when none)
    metric_calls: int = 0
    alerts: int = 0
    shards: int = 0
    overlapping: bool = False  # another tick held the run lock: nothing done
    tick: TickReport | None = None
    monitoring: MonitoringRun | None = None
    executions: ExecutionCheckRun | None = None  # stale state-machine canaries (deployguard.workflows.stale_canaries)

    def merge(self, other: AssessorRun) -> None:
        """Add another run's work (the shards of one SQS batch)."""
        self.assessed += other.assessed
        self.skipped += other.skipped
        self.deferred += other.deferred
        self.unreadable += other.unreadable
        self.records_unreadable += other.records_unreadable
        self.failed.update(other.failed)
        self.due += other.due
        self.metric_calls += other.metric_calls
        self.alerts += other.alerts
        if other.monitoring is not None:
            self.monitoring = self.monitoring or MonitoringRun()
            self.monitoring.assessed += other.monitoring.assessed
            self.monitoring.finished += other.monitoring.finished
            self.monitoring.not_due += other.monitoring.not_due
            self.monitoring.unreadable += other.monitoring.unreadable

    def report(self, add_metric: Callable[..., object]) -> dict[str, Any]:
        """The run's summary (what a handler returns and logs), its EMF metrics given to ``add_metric``
        (Powertools ``Metrics.add_metric``)."""
        monitored = [a.deployment_id for a in self.monitoring.assessed] if self.monitoring else []
        unreadable = self.unreadable + (self.monitoring.unreadable if self.monitoring else [])
        pages = len(self.tick.pages) if self.tick else 0
        # every run writes DeploymentsDue (0 when nothing is due, or another tick holds the lock): the
        # AssessorStalledAlarm's heartbeat, missing data breaching
        add_metric(name="DeploymentsDue", unit="Count", value=self.due)
        add_metric(name="DeploymentsAssessed", unit="Count", value=len(self.assessed) + len(monitored))
        add_metric(name="GetMetricDataCalls", unit="Count", value=self.metric_calls)
        add_metric(name="DeploymentsDeferred", unit="Count", value=len(self.deferred))
        # due, not judged: metrics config unusable, or GetMetricData failed (DeploymentsUnreadableAlarm)
        add_metric(name="DeploymentsUnreadable", unit="Count", value=len(unreadable))
        add_metric(name="AssessmentsFailed", unit="Count", value=len(self.failed))
        # stored items (deployments, events, incidents, approvals) the models reject, skipped (RecordsUnreadableAlarm)
        add_metric(name="RecordsUnreadable", unit="Count", value=len(self.records_unreadable))
        # AlertsRaised and IncidentPages: counted by the alert engine where an alert fires or an incident pages
        executions = (self.executions or ExecutionCheckRun()).report(add_metric)
        return {
            "assessed": [
                {"deployment_id": a.deployment_id, "decision": a.verdict.decision.value, "summary": a.verdict.summary}
                for a in self.assessed
            ],
            "monitored": monitored,
            "skipped": self.skipped,
            "deferred": self.deferred,
            "unreadable": unreadable,
            "records_unreadable": self.records_unreadable,
            "failed": self.failed,
            "due": self.due,
            "shards": self.shards,
            "overlapping": self.overlapping,
            "metric_calls": self.metric_calls,
            "alerts": self.alerts,
            "pages": pages,
            "incidents_resolved": len(self.tick.resolved) if self.tick else 0,
            "executions": executions,
        }


@dataclass
class DueCanary:
    """A canary due for a look, and its read: only the periods its judge state has not folded (and
    at least the last TAIL_PERIODS, which the health report and the alert fields read), periods
    ``offset`` onwards of the window that starts at ``window_start``."""

    deployment: Deployment
    request: WindowRequest
    interval_seconds: int
    state: JudgeState | None = None  # the judge state stored on the record, when it fits this window
    offset: int = 0
    window_start: datetime | None = None
    settings: JudgeSettings | None = None  # the judge's settings for this deployment's run (:func:`judge_settings`)


Due = DueCanary | DueMonitoring


class Budget:
    """The invocation's time left (``context.get_remaining_time_in_millis``), less a reserve."""

    def __init__(self, remaining_ms: RemainingMillis | None, reserve_ms: int = 0) -> None:
        self.remaining_ms = remaining_ms
        self.reserve_ms = reserve_ms

    def allows(self, needed_ms: int) -> bool:
        return self.remaining_ms is None or self.remaining_ms() - self.reserve_ms >= needed_ms


@dataclass
class Cycle:
    """What one cycle shares: configuration, storage, the reader and the alert engine."""

    config: DeployGuardConfig
    repository: DeploymentRepository
    publisher: EventPublisher
    reader: MetricsReader
    alerts: AlertEngine | None
    now: datetime


# ---------------------------------------------------------------------------- entry points


def assess_active_deployments(
    config: DeployGuardConfig,
    repository: DeploymentRepository,
    publisher: EventPublisher,
    reader: MetricsReader | None = None,
    alerts: AlertEngine | None = None,
) -> AssessorRun:
    """One whole cycle in this process, without lock or time budget (tests, the bench's reference)."""
    return run_tick(config, repository, publisher, reader=reader, alerts=alerts, lock=False)


def run_tick(
    config: DeployGuardConfig,
    repository: DeploymentRepository,
    publisher: EventPublisher,
    *,
    reader: MetricsReader | None = None,
    alerts: AlertEngine | None = None,
    remaining_ms: RemainingMillis | None = None,
    send_shards: ShardSender | None = None,
    shard_size: int = 200,
    inline_limit: int = 200,
    lock: bool = True,
    lease_seconds: int = LOCK_LEASE_SECONDS,
) -> AssessorRun:
    """The minute tick: assess due deployments (here, or in shards when more than ``inline_limit``
    are due and ``send_shards`` is given), monitor, publish the outbox, then the alert tick.

    What it works on comes from one Query (:meth:`~DeploymentRepository.loop_work`): active
    deployments, monitored ones that are due, the outbox, open incidents and approvals (and ended
    deployments stored before the traffic checks had a partition of their own: handed over to it).
    The run lock is a lease of ``lease_seconds`` (shorter than the minute between ticks) that is not
    released: the tick works only within it, so the next tick finds it expired."""
    cycle = Cycle(config, repository, publisher, reader or MetricsReader(), alerts, clock.now())
    run = AssessorRun(monitoring=MonitoringRun())
    if lock and not repository.claim_once(RUN_LOCK, "tick", timedelta(seconds=lease_seconds)):
        run.overlapping = True  # the tick holding the lock does this minute's work, alert tick included
        return run
    lease_end = cycle.now + timedelta(seconds=lease_seconds)

    def remaining() -> int:  # the invocation's time, and the lease's when locked (the clock the lock is kept in)
        left = remaining_ms() if remaining_ms is not None else 10**9
        return min(left, int((lease_end - clock.now()).total_seconds() * 1000)) if lock else left

    from deployguard.incidents.models import Incident
    from deployguard.remediation.models import Approval

    # an item the models reject is left out of it (noted once), not the tick
    work = repository.loop_work(cycle.now, {keys.INCIDENT_OPEN: Incident, keys.APPROVAL_OPEN: Approval})
    run.records_unreadable += work.unreadable
    in_cycle = alerts.cycle(work.incident_items, work.approval_items) if alerts is not None else nullcontext()
    with in_cycle:
        try:
            due = _due(cycle, work.active, work.monitored, run)
            run.due = len(due)
            if send_shards is not None and len(due) > inline_limit:
                ids = [d.deployment.deployment_id for d in due]
                run.shards = send_shards([ids[i : i + shard_size] for i in range(0, len(ids), shard_size)])
            else:
                _assess(cycle, due, run, Budget(remaining if (lock or remaining_ms) else None, ALERT_TICK_RESERVE_MS))
        finally:  # whatever the assessments met, the tick's own work is done (and an error still raised after)
            # canaries of the state machine whose execution ended before they did: traffic back, record ended
            budget = Budget(remaining if (lock or remaining_ms) else None, ALERT_TICK_RESERVE_MS)
            run.executions = check_executions(
                config, repository, publisher, work.active, cycle.now, proceed=lambda: budget.allows(EXECUTION_CHECK_MS)
            )
            # a person's verb whose audit entry and announcement were lost after its effect landed: written now
            from deployguard.workflows.control import report_left_verbs

            report_left_verbs(repository, publisher, work.active, cycle.now)
            # unpublished events out (deployguard.workflows.reconciler); the traffic checks of ended deployments
            # run in a function of their own (TrafficCheckFunction: Lambda's control plane, with a rate budget)
            publish_outbox(repository, publisher, events=work.outbox, alert=_event_alerts(alerts))
            hand_over(repository, work.ended)
            if alerts is not None:
                run.tick = alerts.on_tick(deployments=work.active)
    return run


def _event_alerts(alerts: AlertEngine | None) -> Alert | None:
    """The alert engine's entry for events (those of the outbox it has not seen yet)."""
    if alerts is None:
        return None
    return lambda event: alerts.on_event(event)


def run_shard(
    deployment_ids: Sequence[str],
    config: DeployGuardConfig,
    repository: DeploymentRepository,
    publisher: EventPublisher,
    *,
    reader: MetricsReader | None = None,
    alerts: AlertEngine | None = None,
    remaining_ms: RemainingMillis | None = None,
) -> AssessorRun:
    """One shard handed out by the tick: its deployments read in BatchGetItem calls, those still
    due assessed within the time budget; the rest stays due for the next tick."""
    cycle = Cycle(config, repository, publisher, reader or MetricsReader(), alerts, clock.now())
    run = AssessorRun(monitoring=MonitoringRun())
    deployments = repository.deployments_by_id(list(deployment_ids), run.records_unreadable)  # others: not the shard
    active = [d for d in deployments if not d.status.is_terminal]
    monitored = [d for d in deployments if d.status.is_terminal and d.phase == Phase.MONITORING]
    due = _due(cycle, active, monitored, run)  # the tick that handed them out counted them due (run.due stays 0)
    with alerts.incident_store.one_read_per_cycle() if alerts is not None and due else nullcontext():
        _assess(cycle, due, run, Budget(remaining_ms))
    return run


# ---------------------------------------------------------------------------- what is due


def _due(cycle: Cycle, active: Sequence[Deployment], monitored: Sequence[Deployment], run: AssessorRun) -> list[Due]:
    """The looks due now. Each deployment's step (a monitoring that ends writes its record) is its own: one
    that fails is in ``run.failed`` with its reason, and the others are still looked at."""
    due: list[Due] = []
    for deployment in active:
        try:
            item = _due_canary(cycle, deployment, run)
        except Exception as exc:
            _failed(run, deployment, "canary look not planned", exc)
            continue
        if item is not None:
            due.append(item)
    assert run.monitoring is not None
    for deployment in monitored:
        try:
            due.extend(due_monitoring([deployment], cycle.config, cycle.repository, cycle.now, run.monitoring))
        except Exception as exc:  # e.g. the write that ends its 24 hours, throttled: the next tick tries again
            _failed(run, deployment, "post-deployment look not planned", exc)
    return due


def _failed(run: AssessorRun, deployment: Deployment, what: str, exc: Exception) -> None:
    """One deployment's step failed: logged, and reported (``run.failed``) with the true reason."""
    logger.exception(f"{what}: the others go on", extra={"deployment_id": deployment.deployment_id})
    run.failed[deployment.deployment_id] = f"{what}: {type(exc).__name__}: {exc}"


def _due_canary(cycle: Cycle, deployment: Deployment, run: AssessorRun) -> DueCanary | None:
    """The canary's look when it is due, with its queries (what its read costs, for the chunks); the
    read's periods are planned once, after its weight is refreshed (:func:`_plan_read`)."""
    if deployment.driver != "codedeploy":
        run.skipped.append(deployment.deployment_id)
        return None
    service = cycle.config.service(deployment.service)
    last = deployment.last_assessment
    if last is not None and not last.due(KIND, cycle.now):
        return None
    interval = service.canary.assessment_interval_seconds
    try:
        queries = canary_queries(deployment.deployment_id, deployment, service.judge.read_metrics)
    except MetricsConfigError as exc:  # e.g. an ECS deployment whose green target group is not known yet
        note_unreadable(cycle.repository, deployment.deployment_id, KIND, str(exc), ACTOR)
        run.skipped.append(deployment.deployment_id)
        run.unreadable.append(deployment.deployment_id)
        return None
    return DueCanary(deployment, WindowRequest(queries, cycle.now, cycle.now, interval), interval)


def judge_settings(config: DeployGuardConfig, deployment: Deployment, interval_seconds: int) -> JudgeSettings:
    """The service's judge settings for this deployment's run: CodeDeploy's deployment configuration
    sets how long the new version runs beside the old one (``traffic_shift_seconds``), so the
    false-alarm budget is spread over that run, not over DeployGuard's own canary plan (unless the
    service's ``judge.horizon_periods`` is given)."""
    settings = config.service(deployment.service).judge
    if deployment.traffic_shift_seconds is None:
        return settings
    return settings.for_run(-(-deployment.traffic_shift_seconds // interval_seconds))


def _plan_read(cycle: Cycle, item: DueCanary) -> None:
    """The canary's read this look (planned once, with the weight as refreshed): the periods its
    stored judge state has not folded, and at least the last TAIL_PERIODS; the whole window when
    there is no state that fits it (none, another window, or built with other judge settings or
    metrics), so that read too goes out batched with the others, within the budget."""
    settings = item.settings = judge_settings(cycle.config, item.deployment, item.interval_seconds)
    whole = canary_request(judged_from(item.deployment), [], cycle.now, item.interval_seconds)
    last = item.deployment.last_assessment
    stored = last.judge_state if last is not None and last.kind == KIND else None
    item.state = load_judge_state(stored, whole.start, whole.interval_seconds, settings)
    folded = item.state.periods if item.state is not None else 0
    item.offset = max(0, min(folded, whole.periods - TAIL_PERIODS))
    item.window_start = whole.start
    start = whole.start + timedelta(seconds=item.offset * whole.interval_seconds)
    item.request = WindowRequest(item.request.queries, start, whole.end, whole.interval_seconds)


def _with_production_traffic(cycle: Cycle, chunk: list[Due], run: AssessorRun) -> list[Due]:
    """The chunk with each canary's weight refreshed when due (by whoever assesses it: the tick, or
    the shard it was handed to); an ECS green task set serving only test traffic is skipped."""
    kept: list[Due] = []
    for item in chunk:
        if isinstance(item, DueCanary):
            try:  # one canary's failure (e.g. its weight change's audit entry, throttled) is its own, not the chunk's
                _refresh_weight(cycle, item.deployment)
                if isinstance(item.deployment.target, EcsTarget) and item.deployment.canary_weight == 0.0:
                    # green serves only the test listener: test traffic is no production evidence against blue
                    run.skipped.append(item.deployment.deployment_id)
                    continue
                _plan_read(cycle, item)  # periods from traffic start, which the weight may have just set
            except Exception as exc:  # not looked at: the next tick asks for the weight again
                _failed(run, item.deployment, "weight refresh or read plan failed", exc)
                continue
        kept.append(item)
    return kept


def current_weight(deployment: Deployment) -> float | None:
    """The new version's share of traffic now, as CodeDeploy has set it: its deployment target
    (the Lambda target version's weight, or the green task set's); the alias's routing when
    CodeDeploy names no target; None when it cannot be read."""
    target = deployment.target
    try:
        if deployment.codedeploy_deployment_id:
            from deployguard.aws.codedeploy import CodeDeployGateway

            target_id = (
                f"{target.function_name}:{target.alias}"
                if isinstance(target, LambdaTarget)
                else f"{target.cluster}:{target.service}"
            )
            state = CodeDeployGateway().deployment_target(deployment.codedeploy_deployment_id, target_id)
            weight = state.new_version_weight() if state else None
            if weight is not None or not isinstance(target, LambdaTarget):
                return weight
        if isinstance(target, LambdaTarget):
            from deployguard.aws.lambda_traffic import LambdaTrafficShifter

            return LambdaTrafficShifter(target).current().weight_of(target.new_version)
    except (TrafficShiftError, CodeDeployError) as exc:
        logger.warning("cannot read the traffic weight", extra={"deployment_id": deployment.deployment_id,
                                                                 "reason": str(exc)})  # fmt: skip
    return None


def _refresh_weight(cycle: Cycle, deployment: Deployment) -> None:
    """Ask CodeDeploy for the weight only when it may have changed: before traffic first moved, when
    the last look's invocation split asked for it or could not tell (``weight_checked_at`` cleared,
    :func:`_weight_recheck_asked`), and every WEIGHT_RECHECK whatever the split; a change is kept in
    the record with the assessment (its time starts the judge's grace period) and in the audit trail."""
    checked = deployment.weight_checked_at
    if deployment.canary_weight > 0.0 and checked is not None and cycle.now - checked < WEIGHT_RECHECK:
        return
    split_asked = deployment.canary_weight > 0.0 and checked is None
    weight = current_weight(deployment)
    deployment.weight_checked_at = cycle.now
    if weight is None:
        return
    if weight == deployment.canary_weight:
        # the split said the traffic moved and CodeDeploy says it did not: the split is no witness for this
        # version (direct invocations, health checks), so it no longer asks every look, only every UNSPLIT_RECHECK
        deployment.split_disagrees = deployment.split_disagrees or split_asked
        return
    deployment.split_disagrees = False
    cycle.repository.audit(
        deployment.deployment_id, "traffic_observed", ACTOR,
        f"CodeDeploy routes {weight:.0%} of traffic to the new version (was {deployment.canary_weight:.0%})",
        weight=weight,
    )  # fmt: skip
    deployment.canary_weight = weight
    deployment.weight_changed_at = cycle.now
    if weight > 0 and deployment.traffic_started_at is None:  # production reached the new version (seen now)
        deployment.traffic_started_at = cycle.now


def _weight_recheck_asked(deployment: Deployment, window: CanaryWindow, start: datetime, now: datetime) -> bool:
    """Whether the next look asks CodeDeploy for the weight (before WEIGHT_RECHECK has passed): when
    the invocation split this look read (the count metric, per version, in the settled periods since
    the weight last changed) no longer fits the stored weight (more than SPLIT_SIGMAS binomial
    deviations and SPLIT_TOLERANCE apart: CodeDeploy has moved the traffic), or when it holds too few
    invocations to tell (then as before: every UNSPLIT_RECHECK)."""
    checked = deployment.weight_checked_at
    if deployment.canary_weight <= 0.0 or checked is None:
        return False  # asked at every look anyway
    if deployment.split_disagrees:  # the split is no witness here: as when it cannot tell
        return now - checked >= UNSPLIT_RECHECK - SAME_CYCLE
    counts = next((m for m in window.metrics if resolve_spec(m.spec).kind == MetricKind.COUNT), None)
    first = 0
    if deployment.weight_changed_at is not None:  # periods that start at or after the change seen
        ahead = (deployment.weight_changed_at - start).total_seconds()
        first = max(0, math.ceil(ahead / window.interval_seconds))
    end = window.periods - SETTLE_PERIODS
    baseline = sum(v for v in counts.baseline[first:end] if v) if counts is not None else 0.0
    canary = sum(v for v in counts.canary[first:end] if v) if counts is not None else 0.0
    n = baseline + canary
    if n < SPLIT_MIN_INVOCATIONS:
        return now - checked >= UNSPLIT_RECHECK - SAME_CYCLE
    w = deployment.canary_weight
    return abs(canary - w * n) > max(SPLIT_SIGMAS * math.sqrt(n * w * (1 - w)), SPLIT_TOLERANCE * n)


# ---------------------------------------------------------------------------- assessing


def _chunks(due: Sequence[Due]) -> Iterator[list[Due]]:
    """Chunks of at most QUERIES_PER_CHUNK queries (a whole number of full GetMetricData calls): a
    chunk that went past it would start a call of its own for the few queries over. Canary reads
    (the last few minutes, 1-minute periods) and monitoring reads (24 hours, 5-minute periods) are
    not mixed in one chunk: a call's time range is shared by its queries, so a canary query in a
    call with a 24-hour read would return 1,440 datapoints instead of a few, and such a call goes
    past the 100,800 datapoints a call returns (more pages). At most one call more a cycle than
    ceil(queries / 500)."""
    chunk: list[Due] = []
    queries = 0
    for item in due:
        size = len(item.request.queries)
        if chunk and (queries + size > QUERIES_PER_CHUNK or type(item) is not type(chunk[-1])):
            yield chunk
            chunk, queries = [], 0
        chunk.append(item)
        queries += size
    if chunk:
        yield chunk


def _assess(cycle: Cycle, due: Sequence[Due], run: AssessorRun, budget: Budget) -> None:
    """Read, judge and store every due deployment, a chunk at a time while the budget allows."""
    if not due:
        return
    for chunk in _chunks(due):
        if not budget.allows(CHUNK_RESERVE_MS):
            run.deferred.extend(item.deployment.deployment_id for item in chunk)
            continue
        try:
            chunk = _with_production_traffic(cycle, chunk, run)
            values = cycle.reader.read_windows([item.request for item in chunk])
        except Exception as exc:  # a read that fails (CloudWatch throttled past retries): the chunk stays due
            logger.exception("cannot read a chunk's metrics", extra={"deployments": len(chunk)})
            for item in chunk:  # not judged: counted unreadable too (DeploymentsUnreadableAlarm after 3 minutes)
                run.failed[item.deployment.deployment_id] = f"metrics not read: {type(exc).__name__}: {exc}"
                run.unreadable.append(item.deployment.deployment_id)
            continue
        for item in chunk:
            try:
                _complete(cycle, item, values, run)
            except Exception as exc:  # one deployment's failure is its own: the rest of the tick goes on
                deployment_id = item.deployment.deployment_id
                logger.exception("cannot complete a deployment's assessment", extra={"deployment_id": deployment_id})
                run.failed[deployment_id] = f"{type(exc).__name__}: {exc}"
    run.metric_calls = cycle.reader.calls


def _complete(cycle: Cycle, item: Due, values: Values, run: AssessorRun) -> None:
    if isinstance(item, DueCanary):
        incidents = cycle.alerts.incident_store.open_incidents_of(item.deployment.deployment_id) if (
            cycle.alerts is not None) else []  # fmt: skip
        _complete_canary(cycle, item, values, [i.key for i in incidents], run)
    else:
        assert run.monitoring is not None
        complete_monitoring(
            item,
            values,
            cycle.config,
            cycle.repository,
            cycle.publisher,
            cycle.now,
            run.monitoring,
            cycle.alerts,
            cycle.reader.failures,
        )


def load_judge_state(
    stored: dict[str, Any] | None, start: datetime, interval_seconds: int, settings: JudgeSettings | None = None
) -> JudgeState | None:
    """The judge state stored on the record, when it was kept for the window that starts at ``start``
    with periods of ``interval_seconds`` (and, given ``settings``, fits them and their metrics:
    :func:`~deployguard.analysis.judge.state_fits`); None when there is none, it is of another window,
    format, settings or metrics, or it cannot be read."""
    if stored is None or stored.get("start") != start.isoformat() or stored.get("interval") != interval_seconds:
        return None
    if settings is not None and not state_fits(stored.get("state") or {}, settings, settings.read_metrics):
        return None
    try:
        return JudgeState.load(stored["state"])
    except (KeyError, TypeError, ValueError):
        return None


def judge_tail(
    window: CanaryWindow,
    settings: JudgeSettings,
    state: JudgeState | None,
    start: datetime,
    interval_seconds: int,
    offset: int = 0,
) -> tuple[Verdict, dict[str, Any] | None]:
    """The verdict on the whole canary window, given its periods ``offset`` onwards (``offset`` no
    more than the periods ``state`` folded), folding into the judge only the periods the state has
    not seen (O(metrics) per look, whatever the canary's age); and the state to store, folded up to
    the settled periods (all but the last SETTLE_PERIODS, which CloudWatch may still complete).

    The state is kept with the window's start and period length: a window that starts elsewhere
    (an ECS canary whose traffic start was learnt later), other settings or metrics, or a state
    that cannot be read start the judge over on the whole window (raises ``JudgeStateError``
    when the periods before ``offset`` would be needed and are not in ``window``)."""
    key = {"start": start.isoformat(), "interval": interval_seconds}
    settled = offset + window.periods - SETTLE_PERIODS  # absolute: periods 0..settled-1 are settled
    try:
        if settled > 0 and (state is None or settled >= state.periods):
            state, _ = judge_step(state, _settled(window, settled - offset), settings, offset=offset)
        _, verdict = judge_step(state, live_view(window), settings, offset=offset)
    except JudgeStateError:
        if offset:
            raise  # the periods before the offset were not read: the caller reads the whole window
        state = judge_step(None, _settled(window, settled), settings, offset=0)[0] if settled > 0 else None
        verdict = judge_canary(live_view(window), settings)
    return verdict, ({**key, "state": state.dump()} if state is not None else None)


def _settled(window: CanaryWindow, periods: int) -> CanaryWindow:
    """The window's first ``periods`` periods (a traffic shift after them is not in it yet)."""
    since = window.periods_since_shift
    cut = window.periods - max(0, periods)
    shorter = truncate_window(window, max(0, periods))
    shorter.periods_since_shift = since - cut if since is not None and since > cut else None
    return shorter


def _complete_canary(
    cycle: Cycle,
    item: DueCanary,
    values: dict[tuple[str, str, str], list[float | None]],
    open_keys: list[str],
    run: AssessorRun,
) -> None:
    deployment = item.deployment
    service = cycle.config.service(deployment.service)
    window = canary_window(
        deployment, service.judge.read_metrics, values, cycle.now, item.interval_seconds, cycle.reader.failures
    )
    previous = deployment.last_assessment
    previous_decision = previous.decision if previous is not None and previous.kind == KIND else None
    start = item.window_start or item.request.start
    periods = item.offset + window.periods  # the whole window's
    read_from = item.request.start  # where the window read starts
    settings = item.settings
    assert settings is not None  # set when its read was planned (_plan_read), as every canary's is
    try:
        verdict, judge_state = judge_tail(
            window, settings, item.state, start, item.interval_seconds, item.offset
        )  # fmt: skip
    except JudgeStateError:  # state_fits said yes, the judge still refused it (e.g. a window that skips periods)
        logger.warning("the judge state does not fit: the whole window read again",
                       extra={"deployment_id": deployment.deployment_id})  # fmt: skip
        whole = WindowRequest(item.request.queries, start, item.request.end, item.interval_seconds)
        read_from = start
        values = cycle.reader.read_windows([whole])
        window = canary_window(
            deployment, service.judge.read_metrics, values, cycle.now, item.interval_seconds, cycle.reader.failures
        )
        verdict, judge_state = judge_tail(window, settings, None, start, item.interval_seconds)
    assessment = assessment_from_verdict(deployment, window, verdict, service.health)
    assessment.details["periods"] = periods
    assessment.at = cycle.now
    cursor = AssessmentCursor(
        kind=KIND, at=cycle.now, decision=verdict.decision, health_status=assessment.health_status,
        next_at=cycle.now + timedelta(seconds=item.interval_seconds) - SAME_CYCLE, read_until=item.request.end,
        judge_state=judge_state,
    )  # fmt: skip

    if _weight_recheck_asked(deployment, window, read_from, cycle.now):
        deployment.weight_checked_at = None  # the next look asks CodeDeploy

    def keep(d: Deployment) -> None:  # what this cycle learnt, laid over a record read again after a conflict
        d.canary_weight, d.weight_changed_at = deployment.canary_weight, deployment.weight_changed_at
        d.weight_checked_at, d.split_disagrees = deployment.weight_checked_at, deployment.split_disagrees
        d.traffic_started_at = d.traffic_started_at or deployment.traffic_started_at
        d.open_incident_keys = sorted(set(open_keys))[:MAX_OPEN_INCIDENT_KEYS]

    events = []
    if previous_decision is not None and previous_decision != verdict.decision:
        events.append(
            DeploymentEvent(
                event_type=EventType.ASSESSMENT_STATUS_CHANGED,
                deployment_id=deployment.deployment_id,
                service=deployment.service,
                version=deployment.version,
                environment=deployment.environment,
                severity=Severity.CRITICAL if verdict.decision == Decision.FAILING else Severity.INFO,
                title=f"Canary {verdict.decision.value.title()}",
                message=verdict.summary,
                reasons=verdict.reasons,
                at=cycle.now,
                details={"status": verdict.decision.value, "previous": previous_decision.value},
            )
        )
    stored = save_assessment(
        cycle.repository, deployment.model_copy(deep=True), assessment, cursor, keep, events=events
    )  # the change of verdict is in the outbox with the assessment: never one without the other
    if stored is None:
        return  # another run stored this cycle's assessment (and its events)
    publish_verdict_metrics(stored, assessment)
    run.assessed.append(assessment)
    if cycle.alerts is not None:  # as monitoring's: one deployment's alerting never stops the tick
        alerts = cycle.alerts
        fired: list[object] = []
        alerts.guarded(deployment.deployment_id, ACTOR, "assessment",
                       lambda: fired.extend(alerts.on_assessment(stored, assessment)))  # fmt: skip
        run.alerts += len(fired)
    for event in events:  # recorded with the assessment: published now, or by the minute tick
        outbox.deliver(cycle.repository, cycle.publisher, OutboxEntry(event), actor=ACTOR)
