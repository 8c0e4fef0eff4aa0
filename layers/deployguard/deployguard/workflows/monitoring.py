"""Post-deployment monitoring: after promotion there is no baseline left to compare with,
so a promoted release is compared with the service's own recent history.

The scheduled assessor calls :func:`monitor_promoted` every minute. A deployment stays
in the MONITORING phase for 24 hours after promotion and is assessed on the schedule of
:mod:`deployguard.analysis.schedule` (every minute for the first hour, every 5 minutes
for the next 6 hours, every 15 minutes until 24 hours; sooner while unusual). Each
assessment runs the robust anomaly detector on the service's metrics of the last 24
hours (5-minute periods) and is stored with the record that says when the next one is due; a
change to or from "unusual" is announced.

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

from deployguard.analysis.anomaly import detect_anomalies
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
ALIAS = "alias"  # the role of an alias-level query (every version the alias served)


@dataclass
class MonitoringRun:
    assessed: list[Assessment] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # due, its metrics cannot be read: not assessed


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
    read = {q.key[1]: q.key for q in request.queries if q.key[2] == ALIAS}

    def combined(metric_id: str) -> list[float | None]:
        if metric_id in read:
            return values[read[metric_id]]
        base = values[(deployment.deployment_id, metric_id, "baseline")]
        new = values[(deployment.deployment_id, metric_id, "canary")]
        if by_id[metric_id].kind in (MetricKind.COUNT, MetricKind.RATE_COUNT):
            return [
                None if b is None and n is None else (b or 0.0) + (n or 0.0) for b, n in zip(base, new, strict=True)
            ]
        return [n if n is not None else b for b, n in zip(base, new, strict=True)]

    out: dict[str, list[tuple[datetime, float]]] = {}
    for spec in specs:
        series = combined(spec.id)
        if spec.kind == MetricKind.RATE_COUNT and spec.relative_to in by_id:
            totals = combined(spec.relative_to)
            series = [k / n if k is not None and n else None for k, n in zip(series, totals, strict=True)]
        elif spec.kind == MetricKind.COUNT:
            continue  # traffic volume alone is not health
        out[spec.id] = [
            (request.start + timedelta(seconds=i * PERIOD_SECONDS), v) for i, v in enumerate(series) if v is not None
        ]
    return out


def _last(deployment: Deployment) -> AssessmentCursor | None:
    cursor = deployment.last_assessment
    return cursor if cursor is not None and cursor.kind == KIND else None


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
) -> None:
    """Judge one due deployment on its values, store the assessment with its record, announce a change."""
    deployment = item.deployment
    last = _last(deployment)
    last_status = last.health_status if last else None
    reasons = []
    for metric_id, series in _series(deployment, config, item.request, values).items():
        report = detect_anomalies(series, recent=timedelta(minutes=15), lookback=HISTORY)
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
    unusual = [r for r in reasons if r.status == "fail"]
    status = HealthStatus.WARNING if unusual else (HealthStatus.HEALTHY if reasons else HealthStatus.UNKNOWN)
    summary = (
        "post-deployment: unusual against the last 24 h: " + "; ".join(r.message for r in unusual)
        if unusual else f"post-deployment: {len(reasons)} metrics usual against the last 24 h"
    )  # fmt: skip
    promoted_at = deployment.ended_at or deployment.started_at
    interval = next_assessment_seconds(Phase.MONITORING, status, (now - promoted_at).total_seconds())
    decision = Decision.HEALTHY if reasons and not unusual else Decision.INCONCLUSIVE
    assessment = Assessment(
        deployment_id=deployment.deployment_id, at=now, step_index=deployment.step_index, canary_weight=1.0,
        verdict=Verdict(decision=decision, summary=summary, reasons=reasons, judge="anomaly"),
        health_status=status, details={"kind": KIND, "next_in_seconds": interval},
    )  # fmt: skip
    cursor = AssessmentCursor(
        kind=KIND, at=now, decision=decision, health_status=status,
        next_at=next_look(deployment.service, now, interval or PERIOD_SECONDS), read_until=item.request.end,
    )  # fmt: skip
    events = []
    if (last_status == HealthStatus.WARNING) != bool(unusual) and (last is not None or unusual):
        events.append(DeploymentEvent(
            event_type=EventType.ASSESSMENT_STATUS_CHANGED, deployment_id=deployment.deployment_id,
            service=deployment.service, version=deployment.version, environment=deployment.environment,
            severity=Severity.WARNING if unusual else Severity.INFO,
            title="Post-Deployment " + ("Anomaly" if unusual else "Back To Usual"), message=summary,
            reasons=unusual, at=now, details={"status": status.value},  # what the channels read (PagerDuty)
        ))  # fmt: skip
    if save_assessment(repository, deployment, assessment, cursor, events=events) is None:
        return  # another run assessed it in this cycle
    run.assessed.append(assessment)
    if alerts is not None:  # post-deployment-anomaly: incident, paging, rollback for approval
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
        complete_monitoring(item, values, config, repository, publisher, now, run, alerts)
    return run


def _finish(deployment: Deployment) -> None:
    deployment.phase = Phase.COMPLETED
    deployment.phase_history.append(
        PhaseChange(phase=Phase.COMPLETED, at=deployment.ended_at or deployment.started_at, reason="monitoring ended")
    )
