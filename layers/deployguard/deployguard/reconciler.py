"""The traffic reconciler: traffic goes where the record says.

On the scheduled assessor's minute tick it reads every deployment that ended without
promotion in the last 24 hours (rolled back, failed, held or rejected: index ``gsi1``,
``gsi1pk = ENDED``, no scan) and compares the record with the real traffic:

- a Lambda alias that still routes any traffic to another version than the stable one
  is put back at 100% stable (a CodeDeploy deployment still running on it is stopped
  with rollback first) and read back to verify;
- an ECS green task set that still serves production traffic while its CodeDeploy
  deployment runs is stopped with rollback, so production returns to blue.

Each repair is audited (``traffic_reconciled``) and announced once
(``rollback.completed``, details ``reconciled: true``).

The same tick publishes the outbox: events the canary recorded but could not publish
(SNS down when they happened) go out then, so an event is never recorded and silent. A rollback that could not move
the alias when it ran (an outage longer than the state machine's retries) is finished
here once the alias can be moved; its record already says failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from deployguard import clock
from deployguard.aws.codedeploy import FINISHED_STATUSES, CodeDeployGateway
from deployguard.aws.events import EventPublisher
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import Deployment, DeploymentEvent, EcsTarget, EventType, LambdaTarget, Severity
from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:reconciler"
RECONCILE_WINDOW = timedelta(hours=24)
OUTBOX_GRACE = timedelta(seconds=60)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Repair:
    deployment_id: str
    observed: str  # the traffic found
    action: str  # what was done


@dataclass
class ReconcileRun:
    checked: int = 0
    repaired: list[Repair] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # deployment id ("*": the query) -> reason
    published: int = 0  # events published from the outbox


def reconcile(repository: DeploymentRepository, publisher: EventPublisher) -> ReconcileRun:
    """The minute tick's reconciliation: traffic where the records say, then the outbox published."""
    run = reconcile_traffic(repository, publisher)
    run.published = publish_outbox(repository, publisher)
    return run


def reconcile_traffic(
    repository: DeploymentRepository,
    publisher: EventPublisher,
    now: datetime | None = None,
    window: timedelta = RECONCILE_WINDOW,
) -> ReconcileRun:
    """Put the traffic of every recently ended, unpromoted deployment where its record says.

    Never raises: a deployment that cannot be checked or repaired now is tried again on
    the next tick (its failure is logged and reported in the run)."""
    run = ReconcileRun()
    try:
        ended = repository.ended_deployments((now or clock.now()) - window)
    except Exception as exc:
        logger.warning("cannot list ended deployments", extra={"reason": str(exc)})
        run.failed["*"] = f"{type(exc).__name__}: {exc}"
        return run
    for deployment in ended:
        run.checked += 1
        try:
            repair = _reconcile(deployment)
        except Exception as exc:
            logger.warning("cannot reconcile traffic", extra={"deployment_id": deployment.deployment_id,
                                                               "reason": str(exc)})  # fmt: skip
            run.failed[deployment.deployment_id] = f"{type(exc).__name__}: {exc}"
            continue
        if repair is None:
            continue
        run.repaired.append(repair)
        try:
            _record(repository, publisher, deployment, repair)
        except Exception as exc:  # the traffic is right; the next tick finds nothing to repair
            logger.exception("traffic reconciled, not recorded", extra={"deployment_id": deployment.deployment_id})
            run.failed[deployment.deployment_id] = f"recording the repair: {type(exc).__name__}: {exc}"
    return run


def publish_outbox(
    repository: DeploymentRepository, publisher: EventPublisher, now: datetime | None = None
) -> int:
    """Publish the events whose publication failed when they were recorded (older than a minute,
    so none still in flight); returns how many went out. Never raises."""
    published = 0
    try:
        for event in repository.unpublished_events((now or clock.now()) - OUTBOX_GRACE):
            publisher.publish(event)
            repository.mark_published(event)
            published += 1
    except Exception as exc:  # the next tick tries again
        logger.warning("cannot publish the outbox", extra={"reason": str(exc), "published": published})
    return published


def _reconcile(deployment: Deployment) -> Repair | None:
    target = deployment.target
    if isinstance(target, LambdaTarget):
        return _reconcile_alias(deployment, target)
    if isinstance(target, EcsTarget):
        return _reconcile_task_sets(deployment)
    return None


def _reconcile_alias(deployment: Deployment, target: LambdaTarget) -> Repair | None:
    shifter = LambdaTrafficShifter(target)
    alias = shifter.current()
    if alias.weight_of(target.stable_version) == 1.0:
        return None
    observed = f"alias {target.function_name}:{target.alias} routes to {alias.function_version}" + (
        f" and {alias.additional_weights}" if alias.additional_weights else ""
    )
    codedeploy_id = deployment.codedeploy_deployment_id
    if codedeploy_id and CodeDeployGateway().status(codedeploy_id) not in FINISHED_STATUSES:
        CodeDeployGateway().stop(codedeploy_id, auto_rollback=True)  # or CodeDeploy moves it again
    shifter.rollback_verified()
    return Repair(deployment.deployment_id, observed, f"alias back at 100% version {target.stable_version}")


def _reconcile_task_sets(deployment: Deployment) -> Repair | None:
    codedeploy_id = deployment.codedeploy_deployment_id
    if not codedeploy_id:
        return None
    gateway = CodeDeployGateway()
    state = gateway.deployment_target(codedeploy_id)
    green = state.task_set("Green") if state else None
    if green is None or green.traffic_weight <= 0:
        return None
    if gateway.status(codedeploy_id) in FINISHED_STATUSES:
        return None  # ended: CodeDeploy's own rollback deployment moves the traffic back
    gateway.stop(codedeploy_id, auto_rollback=True)
    return Repair(
        deployment.deployment_id,
        f"green task set {green.task_set} serves {green.traffic_weight:g}% of production traffic",
        f"CodeDeploy deployment {codedeploy_id} stopped with rollback: production back to blue",
    )


def _record(
    repository: DeploymentRepository, publisher: EventPublisher, deployment: Deployment, repair: Repair
) -> None:
    reason = f"record says {deployment.decision or deployment.status.value}, but {repair.observed}"
    repository.audit(deployment.deployment_id, "traffic_reconciled", ACTOR, reason, repair=repair.action)
    event = DeploymentEvent.about(
        deployment, EventType.ROLLBACK_COMPLETED, "Traffic Reconciled", f"{reason}; {repair.action}",
        severity=Severity.CRITICAL, details={"reconciled": True, "observed": repair.observed, "action": repair.action},
    )  # fmt: skip
    if repository.record_event(event):
        publisher.publish(event)
        repository.mark_published(event)
