"""The traffic reconciler: traffic goes where the record says.

The traffic check function (``TrafficCheckFunction``, its own schedule, every minute, not the
assessor's minute tick: :func:`run_traffic_checks`) reads the deployments that ended without
promotion (rolled back, failed, held or rejected) whose next traffic check is due (index
``gsi1``, ``gsi1pk = TRAFFIC``, ``gsi1sk`` = when the next check is due: no scan, and a
deployment not due is not read) and compares the record with the real traffic:

- a Lambda alias that still routes traffic to the version this deployment rejected is put
  back at 100% stable (a CodeDeploy deployment still running on it is stopped
  with rollback first) and read back to verify;
- an ECS green task set that still serves production traffic while its CodeDeploy
  deployment runs is stopped with rollback, so production returns to blue.

A promoted deployment's traffic is checked too, for a short while (:data:`PROMOTION_CHECK_SCHEDULE`, its
first quarter hour: a ShiftTraffic attempt Step Functions gave up on may land up to its Lambda timeout,
six minutes, after it began): the alias must route 100% to the promoted version. One left split between
its stable and new versions (a late move landed after Promote read it back) is promoted again and read
back (the check is an item next to the record, ``sk = PROMOTION_CHECK``, in the same ``TRAFFIC``
partition; the record itself stays with post-deployment monitoring). An alias wholly on another version
is left alone: an emergency rollback moves it and ends the record itself.

Each repair is audited (``traffic_reconciled``) and announced once
(``rollback.completed``, details ``reconciled: true``). A later release is never undone: once a
newer deployment of the same service and environment started after this one ended, the checks
of this one end (audited ``traffic_checks_ended``, "superseded by ...") without touching traffic.

A check reads the alias from Lambda's control plane (``GetAlias``, 15 requests a second per
account, shared with the account's deployment tooling), so the checks have a rate budget of
their own: at most :data:`CHECKS_PER_SECOND` a second and :data:`CHECKS_PER_RUN` a run, under
a run lock; what a run does not reach stays due (the longest due first) for the next minute.

The checks are bounded (no Lambda or CodeDeploy call per deployment per minute): right
after the deployment ends, then at growing intervals (:data:`CHECK_SCHEDULE`, at most
``len(CHECK_SCHEDULE)`` checks within 24 hours); a check that cannot read or repair the
traffic is retried a minute later, then at growing intervals (at most :data:`MAX_FAILURES`).
After the last check the record is marked reconciled (``traffic_check.reconciled_at``)
and leaves the index: the reconciler never reads it again. Each check's result is kept on
the record (:class:`~deployguard.models.TrafficCheck`).

The assessor's minute tick finishes the outbox (:func:`publish_outbox`, :mod:`deployguard.storage.outbox`):
events recorded but not published (SNS down when they happened) go out then, and those the alert
engine has not seen yet (a publication or alert run that failed) are given to it, so an event is
never recorded and silent. A rollback that could not move
the alias when it ran (an outage longer than the state machine's retries) is finished
here once the alias can be moved; its record already says failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from deployguard import clock
from deployguard.exceptions import ConflictError
from deployguard.models import Deployment, DeploymentEvent, EcsTarget, EventType, LambdaTarget, Severity
from deployguard.storage import outbox

if TYPE_CHECKING:
    from deployguard.aws.events import EventPublisher
    from deployguard.storage.outbox import Alert
    from deployguard.storage.repository import DeploymentRepository, OutboxEntry

ACTOR = "deployguard:reconciler"
# when the traffic of an ended deployment is checked, after it ended: then it is marked reconciled
CHECK_SCHEDULE: tuple[timedelta, ...] = tuple(timedelta(minutes=m) for m in (0, 1, 5, 15, 60, 240, 1440))
CHECKS_PER_RUN = 200  # the checks one run makes at most (a burst of ended deployments waits for the next runs)
CHECKS_PER_SECOND = 5.0  # a third of the GetAlias quota (15 a second per account); a repair makes 2 calls more
RUN_LOCK = "TRAFFIC-CHECK-RUN"
LEASE_SECONDS = 50  # the run works within it; the next run, a minute later, finds it expired
RESERVE_MS = 5_000  # a check is started only with this much of the invocation (and lease) left
# when a promoted deployment's alias is checked, after it was promoted (the late moves' window), then no more
PROMOTION_CHECK_SCHEDULE: tuple[timedelta, ...] = tuple(timedelta(minutes=m) for m in (1, 3, 7, 15))
MAX_FAILURES = 20  # checks that could not read or repair the traffic, retried 1, 1, ..., 2, 4 ... 60 minutes later
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
    deferred: int = 0  # due, read, left for the next run (rate or time budget)
    more_due: bool = False  # more were due than the run reads (its limit): a backlog
    overlapping: bool = False  # another run held the run lock: nothing done
    unreadable: list[str] = field(default_factory=list)  # keys of due items the models reject: skipped

    def report(self, add_metric: Callable[..., object]) -> dict[str, Any]:
        """The run's summary (what the handler returns and logs), its EMF metrics given to ``add_metric``."""
        add_metric(name="TrafficChecks", unit="Count", value=self.checked)
        add_metric(name="TrafficRepairs", unit="Count", value=len(self.repaired))
        add_metric(name="TrafficChecksDeferred", unit="Count", value=self.deferred + int(self.more_due))
        add_metric(name="RecordsUnreadable", unit="Count", value=len(self.unreadable))  # RecordsUnreadableAlarm
        return {
            "checked": self.checked,
            "repaired": [{"deployment_id": r.deployment_id, "observed": r.observed, "action": r.action}
                         for r in self.repaired],
            "failed": self.failed,
            "deferred": self.deferred,
            "more_due": self.more_due,
            "overlapping": self.overlapping,
            "records_unreadable": self.unreadable,
        }  # fmt: skip


def run_traffic_checks(
    repository: DeploymentRepository,
    publisher: EventPublisher,
    *,
    remaining_ms: Callable[[], int] | None = None,
    lock: bool = True,
    limit: int = CHECKS_PER_RUN,
    per_second: float = CHECKS_PER_SECOND,
) -> ReconcileRun:
    """One run of the traffic check function: under a run lock (a lease, as the assessor's tick),
    the due checks, the longest due first, at most ``limit`` and ``per_second`` (a burst of
    ``per_second`` at once, then paced), each started only with RESERVE_MS of the invocation
    and the lease left; the rest stays due for the next run."""
    start = clock.now()
    if lock and not repository.claim_once(RUN_LOCK, "traffic", timedelta(seconds=LEASE_SECONDS)):
        return ReconcileRun(overlapping=True)
    lease_end = start + timedelta(seconds=LEASE_SECONDS)
    started = 0

    def proceed() -> bool:
        nonlocal started
        wait = (started + 1 - per_second) / per_second - (clock.now() - start).total_seconds()
        if wait > 0:
            clock.sleep(wait)  # the rate budget: Lambda's control plane is the account's, not ours alone
        left = remaining_ms() if remaining_ms is not None else 10**9
        if lock:
            left = min(left, int((lease_end - clock.now()).total_seconds() * 1000))
        if left < RESERVE_MS:
            return False
        started += 1
        return True

    return reconcile_traffic(repository, publisher, now=start, limit=limit, proceed=proceed)


def hand_over(repository: DeploymentRepository, ended: Sequence[Deployment]) -> None:
    """Move ended deployments stored in the loop's partition (before the traffic checks had their
    own) to the traffic checks' partition: saved again as they are, their item keys follow."""
    for deployment in ended:
        try:
            repository.save_deployment(deployment)
        except ConflictError:  # changed since the loop read it: that save moved it already
            continue
        except Exception as exc:  # the next tick tries again; the alert tick after this one must run
            logger.warning("cannot hand an ended deployment over to the traffic checks",
                           extra={"deployment_id": deployment.deployment_id, "reason": str(exc)})  # fmt: skip


def reconcile_traffic(
    repository: DeploymentRepository,
    publisher: EventPublisher,
    now: datetime | None = None,
    limit: int | None = None,
    proceed: Callable[[], bool] | None = None,
) -> ReconcileRun:
    """Check (and put right) the traffic of every ended, unpromoted deployment whose check is due
    (at most ``limit``), each only when ``proceed()`` allows (the caller's rate and time budget; the
    rest stays due).

    Never raises: a deployment that cannot be checked or repaired now is tried again later
    (its failure is logged, reported in the run and counted on its record)."""
    run = ReconcileRun()
    at = now or clock.now()
    try:
        due = repository.traffic_work(at, None if limit is None else limit + 1, run.unreadable)  # one more: a backlog?
    except Exception as exc:
        logger.warning("cannot list ended deployments", extra={"reason": str(exc)})
        run.failed["*"] = f"{type(exc).__name__}: {exc}"
        return run
    if limit is not None and len(due) > limit:
        run.more_due, due = True, due[:limit]
    for index, (deployment, promoted) in enumerate(due):
        if proceed is not None and not proceed():
            run.deferred = len(due) - index
            break
        run.checked += 1
        try:
            if promoted and deployment.decision != "promoted":  # ended otherwise since (an emergency rollback)
                repository.end_promotion_check(deployment.deployment_id)  # its own traffic checks follow it
                continue
            newer = _superseded_by(repository, deployment)
            if newer:  # the traffic is a later release's now: never put back under it
                _checked(repository, deployment, at, superseded=newer, promoted=promoted)
                continue
            repair = _reconcile_promoted(deployment) if promoted else _reconcile(deployment)
        except Exception as exc:
            logger.warning("cannot reconcile traffic", extra={"deployment_id": deployment.deployment_id,
                                                               "reason": str(exc)})  # fmt: skip
            run.failed[deployment.deployment_id] = f"{type(exc).__name__}: {exc}"
            _checked(repository, deployment, at, failed=str(exc), promoted=promoted)
            continue
        if repair is not None:
            run.repaired.append(repair)
            try:
                _record(repository, publisher, deployment, repair)
            except Exception as exc:  # the traffic is right; the next check finds nothing to repair
                logger.exception("traffic reconciled, not recorded", extra={"deployment_id": deployment.deployment_id})
                run.failed[deployment.deployment_id] = f"recording the repair: {type(exc).__name__}: {exc}"
        _checked(repository, deployment, at, promoted=promoted)
    # a person's verb (an abort) whose audit entry and announcement were lost after its effect: written now, after
    # the checks (each saves the record only if unchanged since read)
    from deployguard.workflows.control import report_left_verbs

    report_left_verbs(repository, publisher, [d for d, _ in due if d.control.unreported], at)
    return run


def _superseded_by(repository: DeploymentRepository, deployment: Deployment) -> str:
    """Why the traffic is no longer this deployment's to check ("" while it is): a later deployment
    of the same service and environment started after this one ended (it may have promoted, or be
    shifting, the same alias or task sets); putting the stable version of this one back would
    undo it."""
    newest = repository.superseding(deployment)
    if newest is None:
        return ""
    return f"superseded by deployment {newest.deployment_id} (version {newest.version}), started after it ended"


def _checked(
    repository: DeploymentRepository,
    deployment: Deployment,
    now: datetime,
    failed: str = "",
    superseded: str = "",
    promoted: bool = False,
) -> None:
    """Keep the check on the record (a promotion's: on its check item): when the next is due, or reconciled
    after the last (then audited); a superseded deployment's checks end now."""
    check = deployment.traffic_check
    ended_at = deployment.ended_at or now
    schedule = PROMOTION_CHECK_SCHEDULE if promoted else CHECK_SCHEDULE
    if superseded:
        check.checks += 1
        check.reconciled_at = now
    elif failed:
        check.failures += 1
        retry = timedelta(minutes=min(60, 2 ** max(0, check.failures - 10)))
        check.next_at = now + retry
        if check.failures >= MAX_FAILURES:
            check.reconciled_at = now
    else:
        check.checks += 1
        later = [ended_at + after for after in schedule if ended_at + after > now]
        if check.checks >= len(schedule) or not later:
            check.reconciled_at = now
        else:
            check.next_at = later[0]
    if promoted:  # the record stays as it is (post-deployment monitoring writes it): the check item follows
        if check.reconciled_at is not None:
            repository.end_promotion_check(deployment.deployment_id)
        elif check.next_at is not None:
            repository.schedule_promotion_check(deployment.deployment_id, check.next_at, check.checks, check.failures)
    else:
        try:
            repository.save_deployment(deployment)  # only if unchanged since the index read; else checked again
        except ConflictError:
            return
    if check.reconciled_at is not None:
        outcome = (
            f"traffic not verified: {check.failures} checks failed, the last: {failed}" if failed
            else f"traffic checks ended after {check.checks}: {superseded}" if superseded
            else f"traffic agrees with the record after {check.checks} checks"
        )  # fmt: skip
        repository.audit(deployment.deployment_id, "traffic_checks_ended", ACTOR, outcome,
                         checks=check.checks, failures=check.failures)  # fmt: skip
        if failed:
            logger.error("traffic of an ended deployment could not be verified",
                         extra={"deployment_id": deployment.deployment_id, "reason": failed})  # fmt: skip


def publish_outbox(
    repository: DeploymentRepository,
    publisher: EventPublisher,
    now: datetime | None = None,
    events: Sequence[OutboxEntry] | None = None,
    alert: Alert | None = None,
) -> int:
    """Finish the events whose publication (or alerting) did not complete when they were recorded
    (older than a minute, so none still in flight; ``events``: the outbox as the caller read it):
    published, and given to ``alert`` (the alert engine) when it had not seen them
    (:func:`deployguard.storage.outbox.drain`). Returns how many went out. Never raises."""
    at = now or clock.now()
    try:
        waiting = repository.outbox(at - outbox.GRACE) if events is None else events
    except Exception as exc:  # the next tick tries again
        logger.warning("cannot read the outbox", extra={"reason": str(exc)})
        return 0
    return outbox.drain(repository, publisher, waiting, now=at, actor=ACTOR, alert=alert)


def _reconcile(deployment: Deployment) -> Repair | None:
    target = deployment.target
    if isinstance(target, LambdaTarget):
        return _reconcile_alias(deployment, target)
    if isinstance(target, EcsTarget):
        return _reconcile_task_sets(deployment)
    return None


def _reconcile_alias(deployment: Deployment, target: LambdaTarget) -> Repair | None:
    # the traffic clients only when a check is due (a few times in a deployment's first day), not every tick
    from deployguard.aws.codedeploy import FINISHED_STATUSES, CodeDeployGateway
    from deployguard.aws.lambda_traffic import LambdaTrafficShifter

    shifter = LambdaTrafficShifter(target)
    alias = shifter.current()
    if alias.weight_of(target.stable_version) == 1.0 or alias.weight_of(target.new_version) == 0.0:
        return None  # whole on the stable version, or routing versions this deployment never shipped
    observed = f"alias {target.function_name}:{target.alias} routes to {alias.function_version}" + (
        f" and {alias.additional_weights}" if alias.additional_weights else ""
    )
    codedeploy_id = deployment.codedeploy_deployment_id
    if codedeploy_id and CodeDeployGateway().status(codedeploy_id) not in FINISHED_STATUSES:
        CodeDeployGateway().stop(codedeploy_id, auto_rollback=True)  # or CodeDeploy moves it again
    shifter.rollback_verified()
    return Repair(deployment.deployment_id, observed, f"alias back at 100% version {target.stable_version}")


def _reconcile_promoted(deployment: Deployment) -> Repair | None:
    """A promoted deployment's alias must route 100% to its new version. Left split between its stable and new
    versions (a late move landed after the promotion): promoted again, read back. Wholly on one version, or
    routing a version it never shipped, it is not this check's to move (an emergency rollback ends the record
    itself; a later release's alias is its own)."""
    target = deployment.target
    if not isinstance(target, LambdaTarget):
        return None
    from deployguard.aws.lambda_traffic import LambdaTrafficShifter

    shifter = LambdaTrafficShifter(target)
    alias = shifter.current()
    if not alias.split_between(target):
        return None
    observed = f"alias {target.function_name}:{target.alias} routes to {alias.function_version}" + (
        f" and {alias.additional_weights}" if alias.additional_weights else ""
    )
    shifter.promote_verified()
    return Repair(deployment.deployment_id, observed, f"alias back at 100% version {target.new_version} (promoted)")


def _reconcile_task_sets(deployment: Deployment) -> Repair | None:
    codedeploy_id = deployment.codedeploy_deployment_id
    if not codedeploy_id:
        return None
    from deployguard.aws.codedeploy import FINISHED_STATUSES, CodeDeployGateway

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
    promoted = deployment.decision == "promoted"
    event = DeploymentEvent.about(
        deployment, EventType.PROMOTION_COMPLETED if promoted else EventType.ROLLBACK_COMPLETED, "Traffic Reconciled",
        f"{reason}; {repair.action}",
        severity=Severity.CRITICAL, details={"reconciled": True, "observed": repair.observed, "action": repair.action},
    )  # fmt: skip
    outbox.announce(repository, publisher, event, actor=ACTOR)
