"""The scheduled assessor: every minute, judge every active deployment that
DeployGuard's own state machine is not already judging.

Deployments whose traffic CodeDeploy moves (driver ``codedeploy``) are assessed
here: Lambda versions by their per-version metrics, ECS task sets by their target
groups' metrics. All their metrics are read in the fewest GetMetricData calls, each verdict
is stored as an assessment, and a change of status is announced once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from deployguard import clock
from deployguard.alerts.engine import AlertEngine, TickReport
from deployguard.analysis.judge import judge_canary
from deployguard.assessment import assessment_from_verdict
from deployguard.aws.cloudwatch import MetricsReader, canary_queries
from deployguard.aws.codedeploy import CodeDeployGateway
from deployguard.aws.events import EventPublisher
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.config import DeployGuardConfig
from deployguard.exceptions import CodeDeployError, MetricsConfigError, TrafficShiftError
from deployguard.models import (
    Assessment,
    Decision,
    Deployment,
    DeploymentEvent,
    EcsTarget,
    EventType,
    LambdaTarget,
    Severity,
    judged_from,
)
from deployguard.monitoring import MonitoringRun, monitor_promoted
from deployguard.reconciler import reconcile
from deployguard.storage.repository import DeploymentRepository
from deployguard.verdict_metrics import publish_verdict_metrics

ACTOR = "deployguard:assessor"
logger = logging.getLogger(__name__)


@dataclass
class AssessorRun:
    assessed: list[Assessment] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    metric_calls: int = 0
    alerts: int = 0
    tick: TickReport | None = None
    monitoring: MonitoringRun | None = None


def assess_active_deployments(
    config: DeployGuardConfig,
    repository: DeploymentRepository,
    publisher: EventPublisher,
    reader: MetricsReader | None = None,
    alerts: AlertEngine | None = None,
) -> AssessorRun:
    """Judge every CodeDeploy-driven deployment, monitor promoted ones, put the traffic of ended ones
    where their record says, then give the alert engine its tick."""
    reader = reader or MetricsReader()
    run = AssessorRun()
    _assess(config, repository, publisher, reader, alerts, run)
    run.monitoring = monitor_promoted(config, repository, publisher, clock.now(), reader, alerts)
    reconcile(repository, publisher)  # traffic where the record says, unpublished events out (deployguard.reconciler)
    if alerts is not None:
        run.tick = alerts.on_tick()
    return run


def current_weight(deployment: Deployment) -> float | None:
    """The new version's share of traffic now, as CodeDeploy has set it: the alias's routing
    (Lambda) or the green task set's traffic weight (ECS); None when it cannot be read."""
    target = deployment.target
    try:
        if isinstance(target, LambdaTarget):
            return LambdaTrafficShifter(target).current().weight_of(target.new_version)
        if deployment.codedeploy_deployment_id:
            state = CodeDeployGateway().deployment_target(deployment.codedeploy_deployment_id)
            green = state.task_set("Green") if state else None
            return None if green is None else min(1.0, max(0.0, green.traffic_weight / 100.0))
    except (TrafficShiftError, CodeDeployError) as exc:
        logger.warning("cannot read the traffic weight", extra={"deployment_id": deployment.deployment_id,
                                                                 "reason": str(exc)})  # fmt: skip
    return None


def _with_current_weight(repository: DeploymentRepository, deployment: Deployment) -> Deployment:
    """The deployment with the weight CodeDeploy gives the new version now; a change is recorded
    (its time starts the judge's grace period after a shift)."""
    weight = current_weight(deployment)
    if weight is None or weight == deployment.canary_weight:
        return deployment

    def change(d: Deployment) -> None:
        if d.canary_weight != weight:
            d.canary_weight = weight
            d.weight_changed_at = clock.now()
        if weight > 0 and d.traffic_started_at is None:  # production reached the new version (seen now)
            d.traffic_started_at = clock.now()

    updated = repository.update_deployment(deployment.deployment_id, change)
    repository.audit(
        deployment.deployment_id, "traffic_observed", ACTOR,
        f"CodeDeploy routes {weight:.0%} of traffic to the new version (was {deployment.canary_weight:.0%})",
        weight=weight,
    )  # fmt: skip
    return updated


def _assess(
    config: DeployGuardConfig,
    repository: DeploymentRepository,
    publisher: EventPublisher,
    reader: MetricsReader,
    alerts: AlertEngine | None,
    run: AssessorRun,
) -> None:
    candidates = []
    for deployment in repository.active_deployments():
        if deployment.driver != "codedeploy":
            run.skipped.append(deployment.deployment_id)
            continue
        metrics = config.service(deployment.service).judge.metrics
        try:
            canary_queries(deployment.deployment_id, deployment, metrics)
        except MetricsConfigError as exc:  # e.g. an ECS deployment whose green target group is not known yet
            logger.warning("cannot read the canary's metrics", extra={"deployment_id": deployment.deployment_id,
                                                                       "reason": str(exc)})  # fmt: skip
            run.skipped.append(deployment.deployment_id)
            continue
        deployment = _with_current_weight(repository, deployment)
        if isinstance(deployment.target, EcsTarget) and deployment.canary_weight == 0.0:
            # green serves only the test listener: test traffic is no production evidence against blue
            run.skipped.append(deployment.deployment_id)
            continue
        candidates.append((deployment, metrics))
    if not candidates:
        return
    interval = min(config.service(d.service).canary.assessment_interval_seconds for d, _ in candidates)
    windows = reader.canary_windows([(judged_from(d), m) for d, m in candidates], clock.now(), interval)
    run.metric_calls = reader.calls
    for deployment, _ in candidates:
        window = windows[deployment.deployment_id]
        verdict = judge_canary(window, config.service(deployment.service).judge)
        assessment = assessment_from_verdict(deployment, window, verdict, config.service(deployment.service).health)
        previous = repository.assessments(deployment.deployment_id)
        repository.add_assessment(assessment)
        publish_verdict_metrics(deployment, assessment)
        run.assessed.append(assessment)
        if alerts is not None:
            run.alerts += len(alerts.on_assessment(deployment, assessment))
        if previous and previous[-1].verdict.decision != verdict.decision:
            event = DeploymentEvent(
                event_type=EventType.ASSESSMENT_STATUS_CHANGED,
                deployment_id=deployment.deployment_id,
                service=deployment.service,
                version=deployment.version,
                environment=deployment.environment,
                severity=Severity.CRITICAL if verdict.decision == Decision.FAILING else Severity.INFO,
                title=f"Canary {verdict.decision.value.title()}",
                message=verdict.summary,
                reasons=verdict.reasons,
                details={"previous": previous[-1].verdict.decision.value},
            )
            repository.add_event(event)
            publisher.publish(event)
