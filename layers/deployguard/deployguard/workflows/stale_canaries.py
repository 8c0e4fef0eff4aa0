"""Canaries whose execution ended before they did: the minute tick puts their traffic back.

A canary driven by DeployGuard's state machine (driver ``stepfunctions``) ends through its
``Rollback`` or ``Promote`` task. An execution stopped by a person (``StopExecution``), or
failed or timed out outside the state machine's ``Catch``, never gets there: its alias stays
split and its record says in progress, and neither the tick (it judges only CodeDeploy-driven
canaries) nor the traffic checks (ended deployments only) would look at it again.

So the tick (:func:`check_executions`, from :func:`deployguard.workflows.assessor.run_tick`) asks
Step Functions about the execution that drives each such canary (``execution_arn``, recorded by
``Validate``), but only once its record has not moved (started, traffic shifted, phase changed,
a person's action) for longer than its step lasts (``step_duration_seconds`` and one
``assessment_interval_seconds``) plus :data:`STALE_SLACK`; and each at most once every
:data:`RECHECK` (a marker, :meth:`~DeploymentRepository.claim_once`), at most
:data:`CHECKS_PER_TICK` a tick. The work is constant per deployment and minute: the staleness
is read from the record the tick already holds, and only stale canaries cost a call.

- ``RUNNING`` (waiting, paused, awaiting approval): never touched.
- ``SUCCEEDED`` while the record is in progress, with the alias routing all traffic to the new
  version: the execution promoted and its record did not follow (NotifyOutcome gave up); the record
  is finished as promoted ("Promotion Completed"), never rolled back.
- anything else (``ABORTED``, ``FAILED``, ``TIMED_OUT``, or ``SUCCEEDED`` with the alias not all on
  the new version): the alias goes back to 100% stable (read back to verify) unless it no longer routes
  to the new version or a later deployment of the service started since; then the record ends
  rolled back ("the canary's execution ended ABORTED before it finished: traffic returned to
  version 1"), with its audit entry (``execution_ended``) and its announcement
  (``rollback.completed``) in the same conditional transaction
  (:meth:`~DeploymentRepository.end_with_audit_and_events`): two racing ticks end and announce it once.
- a record without ``execution_arn`` (recorded before Validate kept it) is left alone, and counted
  in the tick's report (``executions.unknown``) and its metric ``StaleCanariesWithoutExecution``.
- DescribeExecution failing (throttled, denied): nothing changes; the marker is released so the next
  tick asks again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from deployguard.aws import stepfunctions
from deployguard.exceptions import ConflictError
from deployguard.models import (
    AuditEntry,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EventType,
    LambdaTarget,
    Phase,
    PhaseChange,
    Severity,
)
from deployguard.storage import outbox
from deployguard.storage.repository import OutboxEntry
from deployguard.workflows import alias_claim

if TYPE_CHECKING:
    from deployguard.aws.events import EventPublisher
    from deployguard.config import DeployGuardConfig
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:assessor"
CLAIM = "EXECUTION-CHECK"  # the marker of a stale canary's last DescribeExecution
STALE_SLACK = timedelta(minutes=5)  # beyond the step's own time, before the execution is asked about
RECHECK = timedelta(minutes=5)  # a stale canary's execution is asked about at most this often
CHECKS_PER_TICK = 25  # DescribeExecution calls a tick makes at most; the rest wait for the next tick
STILL_RUNNING = frozenset({"RUNNING", "PENDING_REDRIVE"})  # a redrive resumes it: never touched either
WRITE_ATTEMPTS = 5
logger = logging.getLogger(__name__)


@dataclass
class ExecutionCheckRun:
    described: int = 0  # DescribeExecution calls made
    running: list[str] = field(default_factory=list)  # stale, their execution still runs: untouched
    repaired: list[str] = field(default_factory=list)  # ended here: traffic back at stable, record rolled back
    unknown: list[str] = field(default_factory=list)  # stale, in progress, no execution ARN on the record
    failed: dict[str, str] = field(default_factory=dict)  # asked or repaired in vain: tried again next tick
    deferred: int = 0  # stale, not asked this tick (its limit or time budget)

    def report(self, add_metric: Callable[..., object]) -> dict[str, Any]:
        add_metric(name="StaleCanariesRepaired", unit="Count", value=len(self.repaired))
        add_metric(name="StaleCanariesWithoutExecution", unit="Count", value=len(self.unknown))
        add_metric(name="ExecutionChecksFailed", unit="Count", value=len(self.failed))
        return {
            "described": self.described,
            "running": self.running,
            "repaired": self.repaired,
            "unknown": self.unknown,
            "failed": self.failed,
            "deferred": self.deferred,
        }


def last_moved(deployment: Deployment) -> datetime:
    """When the record last moved: started, traffic shifted, phase changed, a person's action, an assessment."""
    times = [deployment.started_at]
    times += [t for t in (deployment.weight_changed_at, deployment.control.last_action_at) if t is not None]
    if deployment.phase_history:
        times.append(deployment.phase_history[-1].at)
    if deployment.last_assessment is not None:
        times.append(deployment.last_assessment.at)
    return max(times)


def stale_after(config: DeployGuardConfig, deployment: Deployment) -> timedelta:
    """How long a record of a canary whose execution runs may stay unmoved: its step (the bake time and
    the assessment after it) and :data:`STALE_SLACK`."""
    plan = config.service(deployment.service).canary
    return timedelta(seconds=plan.step_duration_seconds + plan.assessment_interval_seconds) + STALE_SLACK


def is_stale(config: DeployGuardConfig, deployment: Deployment, now: datetime) -> bool:
    """A canary driven by the state machine, in progress, whose record has not moved for longer than its step."""
    return (
        deployment.driver == "stepfunctions"
        and not deployment.status.is_terminal
        and now - last_moved(deployment) > stale_after(config, deployment)
    )


def check_executions(
    config: DeployGuardConfig,
    repository: DeploymentRepository,
    publisher: EventPublisher | None,
    active: Sequence[Deployment],
    now: datetime,
    *,
    proceed: Callable[[], bool] | None = None,
    limit: int = CHECKS_PER_TICK,
) -> ExecutionCheckRun:
    """Ask about the execution of each stale canary in ``active`` (the records the tick read), at most
    ``limit`` and each only while ``proceed()`` allows; end those whose execution ended. Never raises."""
    run = ExecutionCheckRun()
    for deployment in active:
        deployment_id = deployment.deployment_id
        try:
            if not is_stale(config, deployment, now):
                continue
            if not deployment.execution_arn:
                run.unknown.append(deployment_id)
                continue
            if run.described >= limit or (proceed is not None and not proceed()):
                run.deferred += 1
                continue
            if not repository.claim_once(CLAIM, deployment_id, RECHECK, execution_arn=deployment.execution_arn):
                continue  # asked within RECHECK (or by a racing tick now)
        except Exception as exc:
            logger.warning("cannot check a canary's execution", extra={"deployment_id": deployment_id,
                                                                       "reason": str(exc)})  # fmt: skip
            run.failed[deployment_id] = f"{type(exc).__name__}: {exc}"
            continue
        try:
            run.described += 1
            status, output = stepfunctions.execution_status(deployment.execution_arn)
            if status in STILL_RUNNING:
                run.running.append(deployment_id)
                continue
            if _end(config, repository, publisher, deployment, status, now, output):
                run.repaired.append(deployment_id)
        except Exception as exc:  # nothing changed (or the traffic only): the next tick asks again
            logger.warning("cannot check a canary's execution", extra={"deployment_id": deployment_id,
                                                                       "reason": str(exc)})  # fmt: skip
            run.failed[deployment_id] = f"{type(exc).__name__}: {exc}"
            try:
                repository.release(CLAIM, deployment_id)
            except Exception:  # then asked again once the marker expires
                logger.warning("cannot release the execution check's marker", extra={"deployment_id": deployment_id})
    return run


@dataclass(frozen=True)
class _Ending:
    """How a stale canary's record is ended: what the execution's own end (or its traffic) says."""

    status: DeploymentStatus
    decision: str
    phase: Phase
    weight: float
    event_type: EventType
    title: str
    severity: Severity


_PROMOTED = _Ending(DeploymentStatus.SUCCEEDED, "promoted", Phase.MONITORING, 1.0, EventType.PROMOTION_COMPLETED,
                    "Promotion Completed", Severity.INFO)  # fmt: skip
_HELD = _Ending(DeploymentStatus.STOPPED, "held", Phase.FAILED, 0.0, EventType.ROLLBACK_COMPLETED,
                "Canary Held For A Person", Severity.WARNING)  # fmt: skip
_ROLLED_BACK = _Ending(DeploymentStatus.ROLLED_BACK, "rolled_back", Phase.FAILED, 0.0, EventType.ROLLBACK_COMPLETED,
                       "Rollback Completed", Severity.CRITICAL)  # fmt: skip


def _ending(status: str, output: dict[str, Any] | None, promoted: bool) -> _Ending:
    """An execution that SUCCEEDED ended through Promote or Rollback and says how in its output (the state it
    ended with), though NotifyOutcome could not record it: a promotion the alias shows, a hold for a person
    (retryable), a request rejected before any traffic moved. Anything else ended the canary rolled back."""
    if promoted:
        return _PROMOTED
    decision = (output or {}).get("decision") if status == "SUCCEEDED" else None
    if decision == "held":
        return _HELD
    if decision in ("rejected", "validation_failed"):
        return _Ending(DeploymentStatus.FAILED, str(decision), Phase.FAILED, 0.0, EventType.DEPLOYMENT_FAILED,
                       "Deployment Failed", Severity.ERROR)  # fmt: skip
    return _ROLLED_BACK


def _ended_at(output: dict[str, Any] | None, now: datetime) -> datetime:
    """When the execution's own end says the canary ended (its Promote or Rollback), else now."""
    try:
        at = datetime.fromisoformat(str((output or {})["ended_at"]))
    except (KeyError, TypeError, ValueError):
        return now
    return at if at.tzinfo is not None and at <= now else now


def _end(
    config: DeployGuardConfig,
    repository: DeploymentRepository,
    publisher: EventPublisher | None,
    seen: Deployment,
    status: str,
    now: datetime,
    output: dict[str, Any] | None = None,
) -> bool:
    """Traffic first, then the record: the alias back at 100% stable (verified) unless the execution promoted,
    then the record ended as the execution's own end says (:func:`_ending`) with its audit entry and
    announcement in one conditional write. False when the record moved meanwhile (another tick, a person, a
    retry's new execution): it is left as it is."""
    from deployguard.aws.lambda_traffic import LambdaTrafficShifter  # Lambda's control plane: only for a repair

    deployment = repository.get_deployment(seen.deployment_id)
    if not is_stale(config, deployment, now) or deployment.execution_arn != seen.execution_arn:
        return False
    target = deployment.target
    if not isinstance(target, LambdaTarget):
        return False
    newer = repository.superseding(deployment)
    promoted = False
    if newer is not None:
        outcome = f"traffic left to the later deployment {newer.deployment_id}"
    else:
        shifter = LambdaTrafficShifter(target)
        alias = shifter.current()
        # an execution that succeeded ended through Promote or Rollback, whose record did not follow (NotifyOutcome
        # gave up): a promotion the alias shows is finished as one, never rolled back; a split is never an end
        promoted = status == "SUCCEEDED" and alias.weight_of(target.new_version) == 1.0
        if not promoted and alias.weight_of(target.stable_version) != 1.0 and alias.weight_of(target.new_version) > 0.0:
            shifter.rollback_verified()
        outcome = (
            f"the alias routes all traffic to version {target.new_version}: promoted"
            if promoted
            else f"traffic returned to version {target.stable_version}"
        )
    ending = _ending(status, output, promoted)
    said = str((output or {}).get("reason") or "") if status == "SUCCEEDED" and not promoted else ""
    reason = (
        f"the canary's execution succeeded but its record was not finished: {outcome}"
        if status == "SUCCEEDED"
        else f"the canary's execution ended {status} before it finished: {outcome}"
    ) + (f" ({ending.decision}: {said[:200]})" if said else "")
    ended_at = _ended_at(output, now) if status == "SUCCEEDED" else now
    key = hashlib.sha256(f"{deployment.deployment_id}#execution-ended#{deployment.execution_arn}".encode())
    unique = f"execution-ended-{key.hexdigest()[:16]}"
    details = {"execution_arn": deployment.execution_arn, "execution_status": status}
    for _ in range(WRITE_ATTEMPTS):
        if not is_stale(config, deployment, now) or deployment.execution_arn != seen.execution_arn:
            return False  # ended elsewhere (whoever ended it announced it), moved, or a retry's execution drives it
        deployment.status, deployment.decision, deployment.decision_reason = ending.status, ending.decision, reason
        deployment.ended_at, deployment.canary_weight, deployment.phase = ended_at, ending.weight, ending.phase
        deployment.phase_history.append(PhaseChange(phase=ending.phase, at=now, reason=reason[:300]))
        audit = AuditEntry(deployment_id=deployment.deployment_id, at=now, action="execution_ended", actor=ACTOR,
                           reason=reason, details={**details, "alias": outcome})  # fmt: skip
        event = DeploymentEvent.about(
            deployment, ending.event_type, ending.title, reason,
            event_id=f"ev-{key.hexdigest()[:16]}", at=now, severity=ending.severity, details=details,
        )  # fmt: skip
        try:
            repository.end_with_audit_and_events(deployment, audit, [event], unique)
        except ConflictError:
            deployment = repository.get_deployment(seen.deployment_id)
            continue
        alias_claim.release(repository, deployment)  # the alias is free for the next canary
        # recorded with the record: published now, or by the tick's outbox run (deployguard.storage.outbox)
        outbox.deliver(repository, publisher, OutboxEntry(event, published=False, alerts_due=False), actor=ACTOR)
        return True
    raise ConflictError(f"deployment {seen.deployment_id} kept changing while its end was recorded")
