"""Post-deployment monitoring: after promotion there is no baseline left to compare with,
so a promoted release is compared with the service's own recent history.

The scheduled assessor calls :func:`monitor_promoted` every minute. A deployment stays
in the MONITORING phase for 24 hours after promotion and is assessed on the schedule of
:mod:`deployguard.analysis.schedule` (every minute for the first hour, every 5 minutes
for the next 6 hours, every 15 minutes until 24 hours; sooner while unusual). Each
assessment runs the robust anomaly detector on the service's metrics of the last 24
hours (5-minute periods) and is stored with the record that says when the next one is due; a
change to or from "unusual" is announced.

Only a look that judged its metrics can change anything. A look whose read failed (CloudWatch
answered ``InternalError``, ``Forbidden``, or data still partial) for a metric it needs, or
that has no value of the last 15 minutes of a metric that has a history, and saw nothing unusual,
is inconclusive: stored as ``unknown`` with its reasons, it announces nothing, runs no alert
rule (so it clears no incident), and the status the next look compares with stays the last
judged one. A metric seen unusual is news even when another could not be read. A look whose read
failed is counted (``DeploymentsUnreadable``), audited once, and looked at again the next minute,
so a read failing 3 minutes running raises ``DeploymentsUnreadableAlarm``.

After promotion the alias serves the new version only, so a Lambda service is read at the
alias (FunctionName and Resource: every version the alias served, the history included): one
set of queries per service and alias, shared by every deployment of it due in the same cycle,
not two per deployment. So that they are due in the same cycle, a service's looks every 5 or
15 minutes fall on its own grid (:func:`next_look`: the same minutes for all its deployments,
another phase for another service, so that the loop's load stays spread), never later than
the schedule says. Metrics that exist only per version (custom dimensions naming
``{version}``) and ECS services (target groups) are read per deployment, both versions.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from deployguard.analysis.anomaly import MIN_POINTS, detect_anomalies
from deployguard.analysis.schedule import next_assessment_seconds
from deployguard.aws.cloudwatch import (
    MetricQuery,
    MetricsReader,
    WindowRequest,
    alias_dimensions,
    canary_queries,
    floor_time,
)
from deployguard.exceptions import MetricsConfigError
from deployguard.models import (
    Assessment,
    AssessmentCursor,
    Decision,
    Deployment,
    DeploymentEvent,
    EventType,
    HealthStatus,
    LambdaTarget,
    MetricKind,
    MetricSpec,
    Phase,
    PhaseChange,
    Severity,
    Verdict,
    VerdictReason,
)
from deployguard.storage import outbox
from deployguard.storage.repository import OutboxEntry
from deployguard.workflows.assessment import SAME_CYCLE, note_unreadable, save_assessment

if TYPE_CHECKING:
    from deployguard.alerts.engine import AlertEngine
    from deployguard.aws.events import EventPublisher
    from deployguard.config import DeployGuardConfig
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:post-deployment-monitoring"
HISTORY = timedelta(hours=24)
PERIOD_SECONDS = 300
KIND = "post_deployment"
RECENT = timedelta(minutes=15)  # the values judged against the 24 hours before them
RETRY_SECONDS = 60  # after a look whose read failed: the next minute (DeploymentsUnreadable counts each)
ALIAS = "alias"  # the role of an alias-level query (every version the alias served)


@dataclass
class MonitoringRun:
    assessed: list[Assessment] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)
    # due, its metrics cannot be read: not assessed (no query, or the read failed and nothing unusual
    # was seen); also a look that saw something unusual while another metric's read failed
    unreadable: list[str] = field(default_factory=list)


@dataclass
class DueMonitoring:
    """A monitored deployment due for an assessment, and the read it needs."""

    deployment: Deployment
    request: WindowRequest


def monitoring_request(deployment: Deployment, config: DeployGuardConfig, now: datetime) -> WindowRequest:
    """The service's metrics over the last 24 hours, 5-minute periods: at the alias for a Lambda
    service (keys ``(alias:<function>:<alias>, metric, "alias")``, the same for every deployment of
    it), else both versions of this deployment."""
    specs = config.service(deployment.service).judge.metrics
    start = floor_time(now - HISTORY, PERIOD_SECONDS)
    end = floor_time(now, PERIOD_SECONDS) + timedelta(seconds=PERIOD_SECONDS)
    target = deployment.target
    queries: list[MetricQuery] = []
    for spec in specs:
        dims = alias_dimensions(spec, target) if isinstance(target, LambdaTarget) else None
        if dims is not None and isinstance(target, LambdaTarget):
            queries.append(MetricQuery((alias_request_id(target), spec.id, ALIAS), spec, dims))
        else:
            queries.extend(canary_queries(deployment.deployment_id, deployment, [spec]))
    return WindowRequest(queries, start, end, PERIOD_SECONDS)


def next_look(service: str, after: datetime, interval_seconds: int) -> datetime:
    """The first look of ``service``'s monitoring after the one at ``after``, ``interval_seconds``
    apart: on the service's grid (whole minutes, a phase of its own within the interval), so that
    all its deployments on the same interval are due in the same minute and share one alias read;
    never more than ``interval_seconds`` after ``after``'s grid point."""
    minutes = max(1, interval_seconds // 60)
    phase = timedelta(minutes=zlib.crc32(service.encode()) % minutes)
    return floor_time(after - phase, interval_seconds) + phase + timedelta(seconds=interval_seconds)


def look_due(service: str, last_at: datetime | None, interval_seconds: int, now: datetime) -> bool:
    """Whether a monitored deployment of ``service`` last looked at ``last_at`` is due at ``now``."""
    return last_at is None or now >= next_look(service, last_at, interval_seconds) - SAME_CYCLE


def alias_request_id(target: LambdaTarget) -> str:
    return f"alias:{target.function_name}:{target.alias}"


def _series(
    deployment: Deployment,
    config: DeployGuardConfig,
    request: WindowRequest,
    values: dict[tuple[str, str, str], list[float | None]],
) -> dict[str, list[tuple[datetime, float]]]:
    """Per metric, the service's values over the last 24 hours (at the alias, or both versions
    combined; rates derived from counts)."""
    specs = config.service(deployment.service).judge.metrics
    by_id = {spec.id: spec for spec in specs}
    combined = _combined(deployment, specs, request, values)
    out: dict[str, list[tuple[datetime, float]]] = {}
    for spec in specs:
        series = combined[spec.id]
        if spec.kind == MetricKind.RATE_COUNT and spec.relative_to in by_id:
            totals = combined[spec.relative_to]
            series = [k / n if k is not None and n else None for k, n in zip(series, totals, strict=True)]
        elif spec.kind == MetricKind.COUNT:
            continue  # traffic volume alone is not health
        out[spec.id] = [
            (request.start + timedelta(seconds=i * PERIOD_SECONDS), v) for i, v in enumerate(series) if v is not None
        ]
    return out


def _combined(
    deployment: Deployment,
    specs: list[MetricSpec],
    request: WindowRequest,
    values: dict[tuple[str, str, str], list[float | None]],
) -> dict[str, list[float | None]]:
    """Per metric, the service's raw values per period (at the alias, or both versions combined)."""
    read = {q.key[1]: q.key for q in request.queries if q.key[2] == ALIAS}

    def combined(spec: MetricSpec) -> list[float | None]:
        if spec.id in read:
            return values[read[spec.id]]
        base = values[(deployment.deployment_id, spec.id, "baseline")]
        new = values[(deployment.deployment_id, spec.id, "canary")]
        if spec.kind in (MetricKind.COUNT, MetricKind.RATE_COUNT):
            return [
                None if b is None and n is None else (b or 0.0) + (n or 0.0) for b, n in zip(base, new, strict=True)
            ]
        return [n if n is not None else b for b, n in zip(base, new, strict=True)]

    return {spec.id: combined(spec) for spec in specs}


def monitoring_fields(
    deployment: Deployment, specs: list[MetricSpec], request: WindowRequest,
    values: dict[tuple[str, str, str], list[float | None]], now: datetime,
) -> dict[str, object] | None:  # fmt: skip
    """The alert rules' field readings of a post-deployment look, as an assessment of the canary has them
    (:func:`~deployguard.alerts.fields.fields_from_window`): the service's latest complete periods since the
    promotion (every request on the new version), against, as the baseline, as many complete periods just
    before the deployment started (the stable version alone; a field with no such history is unknown). So
    a rule whose condition held during the canary (``system-overload``, ``business-impact``) evaluates
    false once the problem is gone, and its incident clears and resolves after the clear window. None
    before a whole period after the promotion."""
    from deployguard.alerts.fields import RECENT_PERIODS, fields_from_window
    from deployguard.models import CanaryWindow, MetricWindow

    promoted_at = deployment.ended_at or deployment.started_at
    period = timedelta(seconds=PERIOD_SECONDS)
    combined = _combined(deployment, specs, request, values)
    starts = [request.start + i * period for i in range(max((len(v) for v in combined.values()), default=0))]
    after = [i for i, at in enumerate(starts) if at >= promoted_at and at + period <= now][-RECENT_PERIODS:]
    before = [i for i, at in enumerate(starts) if at + period <= deployment.started_at][-len(after) :] if after else []
    if not after:
        return None
    metrics = []
    for spec in specs:
        series = combined[spec.id]
        canary = [series[i] if i < len(series) else None for i in after]
        baseline: list[float | None] = [None] * (len(canary) - len(before))  # no history: unknown, never 0
        baseline += [series[i] if i < len(series) else None for i in before]
        metrics.append(MetricWindow(spec=spec, canary=canary, baseline=baseline))
    # every request is the new version's, as every one before it was the stable version's: the same share
    # of traffic on both sides (weight 0.5: the baseline's throughput is compared one to one)
    window = CanaryWindow(interval_seconds=PERIOD_SECONDS, canary_weight=0.5, metrics=metrics)
    return fields_from_window(window).as_details()


def _last(deployment: Deployment) -> AssessmentCursor | None:
    cursor = deployment.last_assessment
    return cursor if cursor is not None and cursor.kind == KIND else None


def _unread_looks(cursor: AssessmentCursor | None) -> int:
    """How many looks running, up to the last, could not read the metrics they needed."""
    state = cursor.judge_state if cursor is not None else None
    return int(state.get("unread_looks", 0)) if state else 0


def _failed_reads(
    request: WindowRequest, failures: dict[tuple[str, str, str], str], specs: Iterable[MetricSpec]
) -> dict[str, str]:
    """Per judged metric, why its values could not be read: "CloudWatch returned X (...) for metric Y
    (role)", for a query of its own or of the count it is a rate of."""
    failed: dict[str, str] = {}
    for q in request.queries:
        if q.key in failures:
            failed.setdefault(q.key[1], f"{failures[q.key]} for metric {q.key[1]} ({q.key[2]})")
    out = {}
    for spec in specs:
        reason = failed.get(spec.id) or (failed.get(spec.relative_to) if spec.relative_to else None)
        if reason is not None:
            out[spec.id] = reason
    return out


def due_monitoring(
    deployments: Iterable[Deployment],
    config: DeployGuardConfig,
    repository: DeploymentRepository,
    now: datetime,
    run: MonitoringRun,
) -> list[DueMonitoring]:
    """The monitored deployments due now (from their records: no history read); those past 24 hours
    are completed here."""
    due = []
    for deployment in deployments:
        promoted_at = deployment.ended_at or deployment.started_at
        last = _last(deployment)
        interval = next_assessment_seconds(
            Phase.MONITORING, last.health_status if last else None, (now - promoted_at).total_seconds()
        )
        if interval is not None and _unread_looks(last):  # the last read failed: again the next minute
            interval = min(interval, RETRY_SECONDS)
        if interval is None:
            repository.update_deployment(deployment.deployment_id, _finish)
            repository.audit(deployment.deployment_id, "monitoring_ended", ACTOR, "24 hours after promotion")
            run.finished.append(deployment.deployment_id)
            continue
        if not look_due(deployment.service, last.at if last is not None else None, interval, now):
            run.not_due.append(deployment.deployment_id)
            continue
        try:  # Lambda: both versions' metrics; ECS: both target groups' (the service behind its load balancer)
            request = monitoring_request(deployment, config, now)
        except MetricsConfigError as exc:  # e.g. an ECS deployment whose target groups were never learned
            note_unreadable(repository, deployment.deployment_id, KIND, str(exc), ACTOR)
            run.unreadable.append(deployment.deployment_id)
            continue
        due.append(DueMonitoring(deployment, request))
    return due


def complete_monitoring(
    item: DueMonitoring,
    values: dict[tuple[str, str, str], list[float | None]],
    config: DeployGuardConfig,
    repository: DeploymentRepository,
    publisher: EventPublisher,
    now: datetime,
    run: MonitoringRun,
    alerts: AlertEngine | None = None,
    failures: dict[tuple[str, str, str], str] | None = None,
) -> None:
    """Judge one due deployment on its values, store the assessment with its record, announce a change.

    ``failures`` are the reader's (:attr:`MetricsReader.failures`): a metric whose query failed is
    not judged. A look that saw nothing unusual but could not judge every metric that has a
    history (read failed, no recent value) is inconclusive: stored as unknown with its reasons,
    nothing announced, no alert rule run, the status compared with next time left as it was."""
    deployment = item.deployment
    last = _last(deployment)
    last_status = last.health_status if last else None
    specs = config.service(deployment.service).judge.metrics
    failed = _failed_reads(item.request, failures or {}, specs)
    reasons: list[VerdictReason] = []
    blocked: list[VerdictReason] = []  # metrics that could not be judged now: no "usual" without them
    for metric_id, series in _series(deployment, config, item.request, values).items():
        if metric_id in failed:
            blocked.append(VerdictReason(metric_id=metric_id, status="inconclusive",
                                         message=f"{metric_id}: not read: {failed[metric_id]}"))  # fmt: skip
            continue
        report = detect_anomalies(series, recent=RECENT, lookback=HISTORY, now=now)
        if report.status == "anomalous":
            reasons.append(
                VerdictReason(
                    metric_id=metric_id,
                    status="fail",
                    canary_value=report.anomalies[-1].value if report.anomalies else None,
                    baseline_value=report.expected,
                    message=f"{metric_id}: {report.message}",
                )
            )
        elif report.status == "normal":
            reasons.append(VerdictReason(metric_id=metric_id, status="pass", message=f"{metric_id}: {report.message}"))
        elif report.points >= MIN_POINTS:  # a history, but no value of the last 15 minutes: missing, not usual
            blocked.append(VerdictReason(metric_id=metric_id, status="inconclusive",
                                         message=f"{metric_id}: {report.message}"))  # fmt: skip
    unusual = [r for r in reasons if r.status == "fail"]
    judged = bool(unusual) or (bool(reasons) and not blocked)
    promoted_at = deployment.ended_at or deployment.started_at
    since = (now - promoted_at).total_seconds()
    unread_looks = _unread_looks(last) + 1 if failed else 0
    if judged:
        status = HealthStatus.WARNING if unusual else HealthStatus.HEALTHY
        summary = (
            "post-deployment: unusual against the last 24 h: " + "; ".join(r.message for r in unusual)
            if unusual else f"post-deployment: {len(reasons)} metrics usual against the last 24 h"
        )  # fmt: skip
        decision = Decision.INCONCLUSIVE if unusual else Decision.HEALTHY
        compare_status, compare_decision = status, decision
        interval = next_assessment_seconds(Phase.MONITORING, status, since)
    else:  # nothing judged, or not all of it: changes nothing, compared next time with the last judged look
        status, decision = HealthStatus.UNKNOWN, Decision.INCONCLUSIVE
        summary = "post-deployment: not judged: " + (
            "; ".join(r.message for r in blocked) if blocked else "no metric with a history and recent values"
        )
        compare_status = last_status or HealthStatus.UNKNOWN
        compare_decision = last.decision if last else Decision.INCONCLUSIVE
        interval = next_assessment_seconds(Phase.MONITORING, compare_status, since)
    if interval is not None and failed:
        interval = min(interval, RETRY_SECONDS)
    details: dict[str, object] = {"kind": KIND, "next_in_seconds": interval}
    readings = monitoring_fields(deployment, specs, item.request, values, now) if judged else None
    if readings is not None:  # what the alert rules read: their incidents of the canary clear when it is gone
        details["fields"] = readings
    if not judged:
        details["inconclusive"] = True
    if failed:
        details["unread"] = failed
    assessment = Assessment(
        deployment_id=deployment.deployment_id, at=now, step_index=deployment.step_index, canary_weight=1.0,
        verdict=Verdict(decision=decision, summary=summary, reasons=reasons + blocked, judge="anomaly"),
        health_status=status, details=details,
    )  # fmt: skip
    cursor = AssessmentCursor(
        kind=KIND, at=now, decision=compare_decision, health_status=compare_status,
        next_at=next_look(deployment.service, now, interval or PERIOD_SECONDS), read_until=item.request.end,
        judge_state={"unread_looks": unread_looks} if unread_looks else None,
    )  # fmt: skip
    events = []
    if judged and (last_status == HealthStatus.WARNING) != bool(unusual) and (last is not None or unusual):
        events.append(DeploymentEvent(
            event_type=EventType.ASSESSMENT_STATUS_CHANGED, deployment_id=deployment.deployment_id,
            service=deployment.service, version=deployment.version, environment=deployment.environment,
            severity=Severity.WARNING if unusual else Severity.INFO,
            title="Post-Deployment " + ("Anomaly" if unusual else "Back To Usual"), message=summary,
            reasons=unusual, at=now, details={"status": status.value},  # what the channels read (PagerDuty)
        ))  # fmt: skip
    if save_assessment(repository, deployment, assessment, cursor, events=events) is None:
        return  # another run assessed it in this cycle
    if failed:  # counted (DeploymentsUnreadable), logged every look, audited once
        note_unreadable(repository, deployment.deployment_id, KIND, "; ".join(sorted(set(failed.values()))), ACTOR)
        run.unreadable.append(deployment.deployment_id)
    if judged or not failed:
        run.assessed.append(assessment)
    if alerts is not None and judged:  # post-deployment-anomaly: incident, paging, rollback for approval
        alerts.guarded(deployment.deployment_id, ACTOR, "post-deployment assessment", alerts.on_assessment,
                       deployment, assessment)  # fmt: skip
    for event in events:  # in the outbox with the assessment: published now, or by the minute tick
        outbox.deliver(repository, publisher, OutboxEntry(event), actor=ACTOR)


def monitor_promoted(
    config: DeployGuardConfig,
    repository: DeploymentRepository,
    publisher: EventPublisher,
    now: datetime,
    reader: MetricsReader | None = None,
    alerts: AlertEngine | None = None,
) -> MonitoringRun:
    """Monitor every promoted deployment that is due (the scheduled assessor batches this with its canary reads);
    each assessment goes through the alert rules when ``alerts`` is given."""
    reader = reader or MetricsReader()
    run = MonitoringRun()
    due = due_monitoring(repository.monitored_deployments(), config, repository, now, run)
    values = reader.read_windows([d.request for d in due])
    for item in due:
        complete_monitoring(item, values, config, repository, publisher, now, run, alerts, reader.failures)
    return run


def _finish(deployment: Deployment) -> None:
    deployment.phase = Phase.COMPLETED
    deployment.phase_history.append(
        PhaseChange(phase=Phase.COMPLETED, at=deployment.ended_at or deployment.started_at, reason="monitoring ended")
    )
