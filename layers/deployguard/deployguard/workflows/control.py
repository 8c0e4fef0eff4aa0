"""Manual control of canaries, and emergency rollback of a service: one code path for CLI, API and page.

Verbs on a deployment (``CanaryControlService.apply``):

- ``promote``: skip the remaining steps: the next assessment that is not failing promotes to 100%
  (with ``approval_before_full_traffic`` it leads to the approval gate instead; for a canary waiting
  there, it is the approval);
- ``abort``: roll back now: the alias goes back to 100% stable at once, the state machine ends at its next task;
  it also finishes a deployment that ended with its alias still on the new version (a rollback that failed);
- ``pause`` / ``resume``: hold the current weight; analysis goes on and a failing verdict still rolls back
  (missing evidence does not: neither ``on_no_evidence`` outcome ends a paused canary);
- ``retry``: a canary held for a person (no conclusive evidence) starts its step again (a new execution);
- ``skip_analysis``: an emergency fix: verdicts are still recorded but no longer acted on; steps follow
  their bake time. Announced as critical;
- ``approve``: answer the task token of a canary waiting before 100% (``approval_before_full_traffic``); it
  promotes after one more assessment that is not failing (the wait is assessed all along). The answered token
  records the approval from the canary's side too (:meth:`CanaryControlService.approval_answered`), so an
  approval whose own record write failed after the answer is not lost. Only an approval (``approved_by`` set,
  the token answered: :func:`approved`, whatever verb comes after it) promotes from the wait; a plain
  ``promote`` during the wait is the approval, and one that lands before the wait has stored its token leads
  to the gate like any other.

For CodeDeploy-driven deployments ``abort`` is StopDeployment with rollback and ``promote`` is
ContinueDeployment; CodeDeploy owns the traffic, so the other verbs are refused with the reason.
The canary controller honours the flags through :func:`effective_decision` and :func:`steer`.

Every action is recorded in the audit trail with who, when and why; a change is announced on the
events topic. Actions are idempotent: asking again for what is already so changes nothing (``changed``
is false) and announces nothing. The verb goes on the record in the same write as its effect
(``CanaryControl.unreported``) until its audit entry and announcement are written (ids from its key): if
those writes fail, the next request about the deployment, or the minute tick a minute later
(:func:`report_left_verbs`), writes them, once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from deployguard import clock
from deployguard.aws import stepfunctions
from deployguard.aws.codedeploy import CodeDeployGateway
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import CodeDeployError, ControlStateError, InvalidEventError, TrafficShiftError
from deployguard.models import (
    CanaryControl,
    ControlReport,
    Decision,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EventType,
    LambdaTarget,
    Model,
    Phase,
    PhaseChange,
    Severity,
    new_id,
)
from deployguard.storage import outbox
from deployguard.workflows import alias_claim

if TYPE_CHECKING:
    from deployguard.aws.events import EventPublisher
    from deployguard.aws.lambda_traffic import AliasState
    from deployguard.config import DeployGuardConfig
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:control"
logger = logging.getLogger(__name__)

Verb = Literal["promote", "abort", "pause", "resume", "retry", "skip_analysis", "approve"]
VERBS: tuple[Verb, ...] = ("promote", "abort", "pause", "resume", "retry", "skip_analysis", "approve")
EMERGENCY_CLAIM_TTL = timedelta(days=1)
NEWEST_LOOKED_AT = 10  # retry: the newest deployments of the service read to pass over those that took no traffic
REPORT_GRACE = timedelta(minutes=1)  # a verb's own request writes its report; the minute tick only after this
# the verb being applied: its effect's write puts it on the record (``CanaryControl.unreported``) until its audit
# entry and announcement are written, so a failure between the two loses neither (:meth:`_report`)
_REPORT: ContextVar[ControlReport | None] = ContextVar("deployguard_control_report", default=None)
_CARRIED: ContextVar[set[str] | None] = ContextVar("carried", default=None)  # keys put on a record


class ControlRequest(Model):
    """A person's request to control one deployment."""

    verb: Verb
    actor: str = Field(min_length=1, max_length=200, description="who asks (the API fills in the caller)")
    reason: str = Field(min_length=1, max_length=1000, description="why: kept in the audit trail")
    identity: str | None = Field(
        default=None, max_length=2048, description="the AWS identity the CLI acted as (STS), kept next to actor"
    )


class ControlOutcome(Model):
    deployment_id: str
    verb: Verb
    changed: bool = Field(description="false when it was already so (the request is idempotent)")
    message: str
    deployment: Deployment


class EmergencyRollbackRequest(Model):
    """Put a service back on its last known good version, without an incident."""

    service: str = Field(min_length=1)
    environment: str | None = None
    actor: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=1000)
    confirm: str = Field(description="the service's name again: the confirmation")
    from_version: str | None = Field(
        default=None, description="the version the person saw live; the rollback is refused if another is live now"
    )
    identity: str | None = Field(
        default=None, max_length=2048, description="the AWS identity the CLI acted as (STS), kept next to actor"
    )


class EmergencyRollbackOutcome(Model):
    service: str
    environment: str
    function_name: str
    alias: str
    from_version: str
    to_version: str
    changed: bool
    message: str
    deployment_id: str = Field(description="the deployment that had put from_version live")


# --------------------------------------------------------------------------- honoured by the canary


def effective_decision(control: CanaryControl, decision: Decision) -> Decision:
    """The verdict the canary acts on: with analysis skipped, the judge's verdict is only recorded."""
    return Decision.HEALTHY if control.skip_analysis else decision


def steer(control: CanaryControl, proposed: str, decision: Decision, approval_before_full_traffic: bool) -> str:
    """The canary's next step once people's requests are honoured. A failing verdict always wins."""
    if decision == Decision.FAILING:
        return proposed
    if control.promote_requested:  # with approval before 100%, the request leads to the approval gate
        return "await_approval" if approval_before_full_traffic else "promote"
    if control.paused and proposed in ("advance", "promote", "hold", "rollback"):
        return "wait"  # a rollback that is not a failing verdict's is missing evidence (on_no_evidence): held too
    if proposed == "promote" and approval_before_full_traffic:
        return "await_approval"
    return proposed


def rolling_back(deployment: Deployment) -> bool:
    """In progress but failed: the canary's Assess decided to roll back (or a lifecycle hook failed) and
    the rollback is under way. No verb but abort can change what happens next."""
    return not deployment.status.is_terminal and deployment.phase == Phase.FAILED


def approved(deployment: Deployment) -> bool:
    """A person approved 100% (the approval task token is answered); the canary promotes after its next
    assessment unless that verdict is failing."""
    control = deployment.control
    return (
        not deployment.status.is_terminal
        and not control.awaiting_approval
        and control.promote_requested
        and control.approved_by is not None  # not last_action: a later verb (skip_analysis) must not undo it
    )


def _ended_as(deployment: Deployment) -> str:
    """A deployment's status, and its decision when that says more ("rolled_back (aborted)", not
    "rolled_back (rolled_back)")."""
    status, decision = deployment.status.value, deployment.decision
    return status if not decision or decision == status else f"{status} ({decision})"


def _last_reason(deployment: Deployment) -> str:
    return deployment.phase_history[-1].reason if deployment.phase_history else "failed"


# --------------------------------------------------------------------------- the service


class CanaryControlService:
    """Carries out control verbs and emergency rollbacks, auditing and announcing each."""

    def __init__(
        self,
        config: DeployGuardConfig,
        repository: DeploymentRepository,
        publisher: EventPublisher,
        canary_state_machine_arn: str | None = None,
        codedeploy: CodeDeployGateway | None = None,
    ) -> None:
        self.config = config
        self.repository = repository
        self.publisher = publisher
        self.canary_state_machine_arn = canary_state_machine_arn
        self.codedeploy = codedeploy or CodeDeployGateway()

    # ------------------------------------------------------------------ verbs

    def apply(self, deployment_id: str, request: ControlRequest) -> ControlOutcome:
        deployment = self.repository.get_deployment(deployment_id)
        try:  # an earlier verb whose audit entry or announcement could not be written; never in this verb's way
            deployment = self.report_left(deployment)
        except Exception:
            logger.exception("cannot report an earlier control verb", extra={"deployment_id": deployment_id})
        report = ControlReport(
            key=new_id("ctl"), verb=request.verb, actor=request.actor, reason=request.reason,
            identity=request.identity, at=clock.now(),
        )  # fmt: skip
        applying = _REPORT.set(report)
        carried: set[str] = set()
        carrying = _CARRIED.set(carried)
        try:
            if deployment.driver == "codedeploy":
                changed, message = self._codedeploy(deployment, request)
            else:
                verb: Callable[[Deployment, ControlRequest], tuple[bool, str]] = getattr(self, f"_{request.verb}")
                changed, message = verb(deployment, request)
        except Exception as exc:  # refused or failed: the attempt is in the audit trail too
            outcome = "refused" if isinstance(exc, ControlStateError | InvalidEventError) else "failed"
            try:
                self.repository.audit(
                    deployment_id, f"control_{request.verb}", request.actor, request.reason,
                    changed=False, outcome=outcome, result=f"{type(exc).__name__}: {exc}"[:1000],
                    **_identity(request.identity),
                )  # fmt: skip
            except Exception:
                logger.exception("cannot audit a control attempt", extra={"deployment_id": deployment_id})
            raise
        finally:
            _REPORT.reset(applying)
            _CARRIED.reset(carrying)
        deployment = self.repository.get_deployment(deployment_id)
        if changed and report.key in carried:
            # the effect's write carried it: written through its key (whoever else finished it meanwhile, once)
            deployment = self._report(deployment, report, message)
            return ControlOutcome(
                deployment_id=deployment_id, verb=request.verb, changed=True, message=message, deployment=deployment
            )
        self.repository.audit(
            deployment_id, f"control_{request.verb}", request.actor, request.reason,
            changed=changed, outcome="done" if changed else "unchanged", result=message,
            **_identity(request.identity),
        )  # fmt: skip
        if changed:
            loud = request.verb in ("abort", "skip_analysis")
            self.announce(
                deployment,
                EventType.CONTROL_ACTION,
                f"Canary {request.verb.replace('_', ' ').title()} by {request.actor}",
                f"{message}. Reason: {request.reason}",
                Severity.CRITICAL if loud else Severity.WARNING,
                verb=request.verb,
                actor=request.actor,
            )
        return ControlOutcome(
            deployment_id=deployment_id, verb=request.verb, changed=changed, message=message, deployment=deployment
        )

    def report_left(self, deployment: Deployment) -> Deployment:
        """Write the audit entries and announcements of earlier verbs whose effect landed but whose own writes
        failed (``CanaryControl.unreported``), once each; returns the record as it is then."""
        for report in list(deployment.control.unreported):  # ids from its key: its own request writes nothing twice
            deployment = self._report(deployment, report)
        return deployment

    def _report(self, deployment: Deployment, report: ControlReport, message: str | None = None) -> Deployment:
        return write_report(self.repository, self.publisher, deployment, report, message)

    def _flags(self, deployment: Deployment, request: ControlRequest, change: Callable[[CanaryControl], bool]) -> bool:
        """Change the control flags of a deployment in progress; True if they changed. Refused when the
        canary's execution has ended (nothing would ever honour a flag): abort is what is left."""
        self._refuse_without_execution(deployment, request.verb)
        changed = False

        def update(d: Deployment) -> None:
            nonlocal changed
            if d.status.is_terminal:
                raise ControlStateError(
                    f"deployment {d.deployment_id} is {_ended_as(d)}: {request.verb} applies "
                    "only to a canary in progress"
                )
            if rolling_back(d):
                raise ControlStateError(
                    f"deployment {d.deployment_id} is rolling back ({_last_reason(d)}): {request.verb} would never "
                    "be honoured"
                )
            changed = change(d.control)
            if changed:
                d.control.last_action, d.control.last_actor = request.verb, request.actor
                d.control.last_action_at = clock.now()
                _unreported(d)

        self.repository.update_deployment(deployment.deployment_id, update)
        return changed

    def _refuse_without_execution(self, deployment: Deployment, verb: str) -> None:
        """A canary in progress whose Step Functions execution is no longer running (it failed, timed out or
        was stopped) honours no flag: refused, pointing at abort. An execution that cannot be asked about
        (no permission, throttled) refuses nothing."""
        arn = deployment.execution_arn
        if not arn or deployment.status.is_terminal or deployment.driver == "codedeploy":
            return
        try:
            status, _ = stepfunctions.execution_status(arn)
        except stepfunctions.StepFunctionsError:
            logger.warning(
                "cannot ask how the canary's execution is", extra={"deployment_id": deployment.deployment_id}
            )
            return
        if status not in ("RUNNING", "PENDING_REDRIVE"):
            raise ControlStateError(
                f"deployment {deployment.deployment_id}: its canary execution has ended ({status}), so nothing would "
                f"honour {verb}; abort puts the alias back on the stable version and ends the record"
            )

    def _approval_service(self, deployment: Deployment) -> bool:
        try:
            return bool(self.config.service(deployment.service).approval_before_full_traffic)
        except Exception:
            return False

    def _promote(self, deployment: Deployment, request: ControlRequest) -> tuple[bool, str]:
        if deployment.decision == "promoted":
            return False, "already promoted"
        if deployment.control.awaiting_approval or approved(deployment):  # the approval (or already given)
            return self._approve(deployment, request)

        def change(c: CanaryControl) -> bool:
            before = c.promote_requested and not c.paused
            c.promote_requested = True
            _lift_pause(c)
            return not before

        changed = self._flags(deployment, request, change)
        if self._approval_service(deployment):
            return changed, (
                "skips the remaining steps: at the next assessment that is not failing the canary waits for "
                "approval before 100% (approve, or promote again, then)"
            )
        return changed, "promotes to 100% at the next assessment unless the verdict is failing"

    def _pause(self, deployment: Deployment, request: ControlRequest) -> tuple[bool, str]:
        if deployment.control.awaiting_approval or approved(deployment):
            raise ControlStateError(
                f"deployment {deployment.deployment_id} "
                + ("was approved for 100%" if approved(deployment) else "waits for approval before 100%")
                + ": pause would not hold it; abort rolls it back"
                + ("" if approved(deployment) else ", and without an approval it stays where it is")
            )
        withdrawn = False

        def change(c: CanaryControl) -> bool:
            nonlocal withdrawn
            if c.awaiting_approval:  # the approval wait began since it was read
                raise ControlStateError(
                    f"deployment {deployment.deployment_id} waits for approval before 100%: pause would not hold it; "
                    "abort rolls it back, and without an approval it stays where it is"
                )
            before = c.paused
            if not before:
                c.paused, c.paused_at = True, clock.now()
            withdrawn, c.promote_requested = c.promote_requested, False  # a pause holds: the promotion is off
            return not before or withdrawn

        changed = self._flags(deployment, request, change)
        message = f"held at {deployment.canary_weight * 100:g}%; a failing verdict still rolls back"
        return changed, message + ("; the promote request is withdrawn" if withdrawn else "")

    def _resume(self, deployment: Deployment, request: ControlRequest) -> tuple[bool, str]:
        def change(c: CanaryControl) -> bool:
            before = c.paused
            _lift_pause(c)
            return before

        changed = self._flags(deployment, request, change)
        return changed, "steps go on when the verdict is healthy"

    def _skip_analysis(self, deployment: Deployment, request: ControlRequest) -> tuple[bool, str]:
        def change(c: CanaryControl) -> bool:
            before, c.skip_analysis = c.skip_analysis, True
            return not before

        changed = self._flags(deployment, request, change)
        return changed, "ANALYSIS SKIPPED: verdicts are recorded but no longer roll back; steps follow their bake time"

    def _approve(self, deployment: Deployment, request: ControlRequest) -> tuple[bool, str]:
        if deployment.decision == "promoted":
            return False, "already promoted"
        token = deployment.control.approval_token
        if approved(deployment):
            return False, "already approved"
        if not deployment.control.awaiting_approval or not token:
            raise ControlStateError(f"deployment {deployment.deployment_id} is not waiting for approval before 100%")
        if deployment.status.is_terminal:
            raise ControlStateError(
                f"deployment {deployment.deployment_id} is {_ended_as(deployment)}: "
                "approve applies only to a canary in progress"
            )
        # the answer first: if it fails, the canary still waits and still says so, and approving again works
        try:
            stepfunctions.answer_task(token, approved=True, by=request.actor, reason=request.reason)
        except stepfunctions.StepFunctionsError as exc:
            now = self.repository.get_deployment(deployment.deployment_id)
            if now.control.approval_token == token and exc.code in stepfunctions.TOKEN_ANSWERED:
                # answered already (an approval whose record the canary is still writing) or the wait is over
                raise ControlStateError(
                    f"deployment {now.deployment_id}: the approval wait already has its answer (the canary is "
                    "recording it) or has ended; see its status in a minute"
                ) from None
            if now.control.approval_token == token:  # still waiting: a failure to retry
                raise
            if now.status.is_terminal and now.decision != "promoted":  # an abort answered the token first
                raise ControlStateError(
                    f"deployment {now.deployment_id} is {_ended_as(now)}: nothing to approve"
                ) from None
            if approved(now) or now.decision == "promoted":
                return False, "already approved"  # another approval answered it first
            raise ControlStateError(  # the wait restarted (its task retried with a new token) or is ending
                f"deployment {now.deployment_id}: the approval wait changed while this approval was sent "
                f"({'it waits again: approve again' if now.control.awaiting_approval else 'it no longer waits'})"
            ) from None

        changed = False

        def change(d: Deployment) -> None:  # the canary may already be promoting: only a promotion may have ended it
            nonlocal changed
            if d.status.is_terminal and d.decision != "promoted":  # an abort (or the rollback) raced the answer
                raise ControlStateError(
                    f"deployment {d.deployment_id} is {_ended_as(d)}: the approval came too late, nothing goes to 100%"
                )
            # Step Functions took this answer, so the approval is this one: the canary's RecordApproval (it gets the
            # answer too) may have recorded it first, which cleared the token (a second approval's answer fails)
            changed = True
            _unreported(d)
            if d.control.approval_token == token:  # the canary's next assessment sees the wait over
                _mark_approved(d, request.actor)

        try:
            self.repository.update_deployment(deployment.deployment_id, change)
        except ControlStateError:
            raise
        except Exception:  # the token is answered: the canary's RecordApproval records it (approval_answered)
            logger.exception(
                "approve: the token is answered but the record write failed; the canary records the approval",
                extra={"deployment_id": deployment.deployment_id},
            )
            return True, (
                "approved (the canary records the approval itself): traffic goes to 100% after one more "
                "assessment, unless its verdict is failing"
            )
        if not changed:
            return False, "already approved"
        return True, "approved: traffic goes to 100% after one more assessment, unless its verdict is failing"

    def _abort(self, deployment: Deployment, request: ControlRequest) -> tuple[bool, str]:
        target = deployment.target
        # an ended record whose alias still routes to its new version (a rollback that failed): abort finishes it
        repair = deployment.status.is_terminal and self._left_on_new(deployment)
        if deployment.status == DeploymentStatus.ROLLED_BACK and not repair:
            if deployment.control.approval_token:  # a wait left on the ended record: its execution ends now
                self._answer_left_token(deployment, request)
            return False, "already rolled back"
        if deployment.status.is_terminal and not repair:
            raise ControlStateError(
                f"deployment {deployment.deployment_id} is {deployment.status.value}: nothing to abort "
                "(an emergency rollback puts a service back on its last known good version)"
            )
        if not isinstance(target, LambdaTarget):
            raise ControlStateError(f"deployment {deployment.deployment_id}: target is not a Lambda alias")
        alias = LambdaTrafficShifter(target).rollback()
        if alias.weight_of(target.stable_version) != 1.0:
            raise TrafficShiftError(f"alias still routes {alias.additional_weights} after the abort")
        reason = f"aborted by {request.actor}: {request.reason}"
        token = deployment.control.approval_token  # the record's when it ends (a wait may have begun since read)
        now = clock.now()

        ended: str | None = None

        def change(d: Deployment) -> None:
            nonlocal ended, token
            # ended meanwhile (a second abort, the canary's own rollback): its reason stands. A promotion that
            # raced in is overridden: the alias is back on stable, and the record must say so
            ended = d.decision if d.status.is_terminal and d.decision != "promoted" else None
            if repair and ended == deployment.decision:  # the ended record this abort finishes
                ended = None
            if ended is not None:
                return
            token = d.control.approval_token
            d.canary_weight = 0.0
            d.status = DeploymentStatus.ROLLED_BACK
            d.decision, d.decision_reason, d.ended_at, d.end_cause = "aborted", reason, now, None
            d.control.awaiting_approval, d.control.approval_token = False, None
            d.control.last_action, d.control.last_actor, d.control.last_action_at = "abort", request.actor, now
            _unreported(d)  # the rollback's audit entry and announcement too (:meth:`_report`)
            if d.phase != Phase.FAILED:
                d.phase = Phase.FAILED
                d.phase_history.append(PhaseChange(phase=Phase.FAILED, at=now, reason=reason))

        deployment = self.repository.update_deployment(deployment.deployment_id, change)
        if deployment.status.is_terminal:
            alias_claim.release(self.repository, deployment)  # the alias is free for the next canary
        # a ShiftTraffic or Promote task may have moved the alias between our move and our record: once the
        # record is terminal they undo their own moves, and this puts back any move made before it
        try:
            LambdaTrafficShifter(target).rollback_verified()
        except TrafficShiftError as exc:  # the record says rolled back: the reconciler finishes the traffic
            logger.warning("abort: cannot confirm the alias again", extra={"deployment_id": deployment.deployment_id})
            self.repository.audit(deployment.deployment_id, "alias_unconfirmed", ACTOR, str(exc)[:1000])
        if ended is not None:
            return False, f"already rolled back ({ended}: {deployment.decision_reason})"
        if token:  # the state machine waits before 100%: it goes to its rollback, which finds this done
            try:
                stepfunctions.answer_task(token, approved=False, by=request.actor, reason=request.reason)
            except stepfunctions.StepFunctionsError as exc:  # rolled back all the same: the wait times out
                logger.warning(
                    "abort: cannot answer the approval task", extra={"deployment_id": deployment.deployment_id}
                )
                self.repository.audit(deployment.deployment_id, "approval_answer_failed", ACTOR, str(exc)[:1000])
        return True, f"alias {target.function_name}:{target.alias} back at 100% version {target.stable_version}"

    def _answer_left_token(self, deployment: Deployment, request: ControlRequest) -> None:
        """An ended record that still holds an approval task token: fail the wait (best effort) and forget it."""
        token = deployment.control.approval_token
        assert token is not None
        try:
            stepfunctions.answer_task(token, approved=False, by=request.actor, reason=request.reason)
        except stepfunctions.StepFunctionsError as exc:  # answered or timed out already
            self.repository.audit(deployment.deployment_id, "approval_answer_failed", ACTOR, str(exc)[:1000])

        def forget(d: Deployment) -> None:
            if d.control.approval_token == token:
                d.control.awaiting_approval, d.control.approval_token = False, None

        self.repository.update_deployment(deployment.deployment_id, forget)

    def _left_on_new(self, deployment: Deployment) -> bool:
        """An ended, not promoted, Lambda deployment whose alias still routes to its new version (split or all
        of it), and the newest of its service: a rollback that failed, which only abort can finish."""
        target = deployment.target
        if not isinstance(target, LambdaTarget) or deployment.decision == "promoted":
            return False
        owner = self.repository.newest_that_took_traffic(deployment.service, deployment.environment)
        if owner is not None and owner.deployment_id != deployment.deployment_id:
            return False  # a later deployment owns the alias now (one that ended before any traffic moved does not)
        return routes_new(target, LambdaTrafficShifter(target).current())

    def left_on_new(self, deployment: Deployment) -> bool:
        """What the console shows: an ended deployment whose rollback failed (:meth:`_left_on_new`), so abort
        is offered. False when the alias cannot be read (the abort itself would say why)."""
        if not deployment.status.is_terminal:
            return False
        try:
            return self._left_on_new(deployment)
        except TrafficShiftError:
            logger.warning("cannot read the alias", extra={"deployment_id": deployment.deployment_id})
            return False

    def _retry(self, deployment: Deployment, request: ControlRequest) -> tuple[bool, str]:
        if not deployment.status.is_terminal:
            return False, "already running"
        if deployment.decision != "held" or not isinstance(deployment.target, LambdaTarget):
            raise ControlStateError(
                f"deployment {deployment.deployment_id} is {deployment.decision or deployment.status.value}: "
                "only a canary held for a person can be retried"
            )
        if not self.canary_state_machine_arn:
            raise ControlStateError("retry needs the canary state machine (CANARY_STATE_MACHINE_ARN is not set)")
        passed = self._refuse_stale_retry(deployment)
        flipped = False
        held: Deployment | None = None  # the record as the hold left it: put back if the retry does not start

        def change(d: Deployment) -> None:
            nonlocal flipped, held
            flipped = d.status.is_terminal and d.decision == "held"
            if flipped:
                held = d.model_copy(deep=True)
                now = clock.now()
                d.status, d.decision, d.decision_reason, d.ended_at = DeploymentStatus.IN_PROGRESS, None, None, None
                d.end_cause = None
                left = d.control.unreported  # earlier verbs still to report
                d.control = CanaryControl(last_action="retry", last_actor=request.actor, last_action_at=now)
                d.control.unreported = left
                _unreported(d)
                # the hold left the phase failed (rolling back); the new execution validates before it shifts
                d.phase = Phase.PRE_DEPLOYMENT
                d.phase_history.append(
                    PhaseChange(phase=Phase.PRE_DEPLOYMENT, at=now, reason=f"retried by {request.actor}")
                )

        deployment = self.repository.update_deployment(deployment.deployment_id, change)
        if not flipped:
            return False, "already running"
        step = deployment.step_index
        execution_input = {
            "deployment": {
                "deployment_id": deployment.deployment_id,
                "service": deployment.service,
                "environment": deployment.environment,
                "version": deployment.version,
                "target": deployment.target.model_dump(mode="json"),
                "start_step": step,
            }
        }
        name = f"{deployment.deployment_id}-retry-{deployment.version_counter}"[:80]
        try:
            stepfunctions.start_execution(self.canary_state_machine_arn, name, execution_input)
        except stepfunctions.StepFunctionsError:
            report = _REPORT.get()

            def undo(d: Deployment) -> None:  # held again, as it was: why and when it was held, its flags
                assert held is not None
                d.status, d.decision = held.status, "held"
                d.decision_reason, d.ended_at, d.end_cause = held.decision_reason, held.ended_at, held.end_cause
                left = [r for r in d.control.unreported if report is None or r.key != report.key]
                d.control = held.control.model_copy(update={"unreported": left})
                d.phase = Phase.FAILED
                d.phase_history.append(
                    PhaseChange(phase=Phase.FAILED, at=clock.now(), reason="the retry did not start")
                )

            self.repository.update_deployment(deployment.deployment_id, undo)
            raise
        said = "".join(f"; passed over the newer {d.deployment_id} (version {d.version}, {_ended_as(d)}: it never "
                       "took traffic)" for d in passed)  # fmt: skip
        return True, f"step {step + 1} starts again (execution {name}){said}"

    def _refuse_stale_retry(self, deployment: Deployment) -> list[Deployment]:
        """A held canary starts again only while it is its service's newest deployment and its alias routes
        only its stable version: after a newer deployment (or any other move) the new execution's Validate
        would refuse, and its rollback must not take production back to this canary's stable version. A newer
        one that ended before any traffic moved (rejected at Validate: ``Deployment.never_took_traffic``) changed
        nothing of the service's traffic and is passed over; returns those passed over."""
        target = deployment.target
        assert isinstance(target, LambdaTarget)
        newest = self.repository.deployments_of(deployment.service, deployment.environment, limit=NEWEST_LOOKED_AT)
        passed: list[Deployment] = []
        for later in newest:  # newest first, down to this one
            if later.deployment_id == deployment.deployment_id:
                break
            if later.never_took_traffic and len(passed) + 1 < len(newest):  # not the last read: look further
                passed.append(later)
                continue
            raise ControlStateError(
                f"deployment {deployment.deployment_id} is no longer the newest of {deployment.service} in "
                f"{deployment.environment}: {later.deployment_id} (version {later.version}, {_ended_as(later)}) came "
                "after it; deploy again instead of retrying"
            )
        alias = LambdaTrafficShifter(target).current()
        if alias.function_version != target.stable_version or alias.additional_weights:
            routes = f"{alias.function_version} {alias.additional_weights or ''}".strip()
            raise ControlStateError(
                f"deployment {deployment.deployment_id}: alias {target.function_name}:{target.alias} routes {routes}, "
                f"not only its stable version {target.stable_version}; a retry would start from the wrong traffic "
                "(deploy again instead)"
            )
        return passed

    def _codedeploy(self, deployment: Deployment, request: ControlRequest) -> tuple[bool, str]:
        cd_id = deployment.codedeploy_deployment_id
        if not cd_id:
            raise ControlStateError(f"deployment {deployment.deployment_id} names no CodeDeploy deployment")
        if request.verb == "abort":
            try:
                self.codedeploy.stop(cd_id, auto_rollback=True)
            except CodeDeployError as exc:
                if "DeploymentAlreadyCompleted" in str(exc):
                    return self._codedeploy_already_completed(deployment, cd_id)
                if "DeploymentDoesNotExist" in str(exc):
                    raise ControlStateError(
                        f"CodeDeploy has no deployment {cd_id} (recorded for {deployment.deployment_id})"
                    ) from exc
                raise
            self.repository.keep_stop_reason(deployment.deployment_id, f"aborted by {request.actor}: {request.reason}")
            return True, f"CodeDeploy deployment {cd_id} stopped with rollback"
        if request.verb == "promote":
            try:
                self.codedeploy.continue_deployment(cd_id)
            except CodeDeployError as exc:
                codes = ("NotInReadyState", "AlreadyCompleted", "DoesNotExist")
                found = next((code for code in codes if code in str(exc)), None)
                if found:  # the error code only: CodeDeploy's message may name roles and accounts
                    raise ControlStateError(
                        f"CodeDeploy deployment {cd_id} is not waiting to reroute traffic: only a blue/green "
                        f"deployment with a wait time continues (CodeDeploy: {found})"
                    ) from exc
                raise
            return True, f"CodeDeploy deployment {cd_id} continues (ContinueDeployment)"
        raise ControlStateError(
            f"{request.verb} is not available for CodeDeploy-driven deployment {deployment.deployment_id}: "
            "CodeDeploy moves its traffic (abort stops it with rollback, promote continues it)"
        )

    def _codedeploy_already_completed(self, deployment: Deployment, cd_id: str) -> tuple[bool, str]:
        """StopDeployment refused: nothing changed if it was stopped or rolled back; a deployment that
        succeeded is refused, for its version is live and stopping it can no longer bring the old one back."""
        try:
            status = self.codedeploy.status(cd_id)  # GetDeployment only: the role reads no AppSpec, group or targets
        except CodeDeployError:  # the record's word then
            status = "Succeeded" if deployment.status == DeploymentStatus.SUCCEEDED else ""
        if status != "Succeeded":
            return False, f"CodeDeploy deployment {cd_id} had already completed"
        hint = (
            f"An emergency rollback puts the service back on its last known good version: deployguard control "
            f"rollback {deployment.service} (POST /api/services/{deployment.service}/emergency-rollback)"
            if isinstance(deployment.target, LambdaTarget)
            else "To go back, deploy the previous version again through CodeDeploy"
        )
        raise ControlStateError(
            f"CodeDeploy deployment {cd_id} has already succeeded: its version takes all traffic and abort can no "
            f"longer roll it back. {hint}"
        )

    # ------------------------------------------------------------------ the canary's side

    def wait_for_approval(self, deployment_id: str, task_token: str) -> Deployment:
        """The canary reached its last step healthy and waits for a person before 100% (task token). A record
        that has ended (a person's abort while the last Assess ran) waits for nothing: refused, so the task fails
        at once (the state machine then ends with the record's decision) and nothing is announced."""
        ended = given = False

        def change(d: Deployment) -> None:
            nonlocal ended, given
            ended, given = d.status.is_terminal, approved(d)
            if not ended and not given:
                d.control.awaiting_approval, d.control.approval_token = True, task_token

        deployment = self.repository.update_deployment(deployment_id, change)
        if ended:
            raise ControlStateError(
                f"deployment {deployment_id} has ended ({deployment.decision}): no approval to wait for"
            )
        if given:  # a retried wait after a person approved: the approval stands and answers this token too
            by = deployment.control.approved_by or "someone"
            stepfunctions.answer_task(task_token, approved=True, by=by, reason="approved before the wait was retried")
            return deployment
        self.repository.audit(deployment_id, "approval_requested", "deployguard:canary-state-machine", "before 100%")
        self.announce(
            deployment,
            EventType.CONTROL_ACTION,
            "Canary Waiting For Approval",
            f"{deployment.service} {deployment.version} is healthy at {deployment.canary_weight * 100:g}% and waits "
            "for a person to approve 100% of traffic (approve, promote or abort)",
            Severity.WARNING,
            verb="await_approval",
        )
        return deployment

    def approval_answered(self, deployment_id: str, answer: object) -> bool:
        """The canary's side of an approval: its token wait ended with SendTaskSuccess (a person's approve or
        promote), and the state machine records the approval from there too (RecordApproval). The person's own
        record write may have failed after the answer; without this the answered token would be used up, later
        approvals refused and the wait would expire. Idempotent: True when this wrote it."""
        answer = answer if isinstance(answer, dict) else {}
        by = str(answer.get("approved_by") or "a person")[:200]
        why = str(answer.get("reason") or "approved")[:1000]
        changed = False

        def change(d: Deployment) -> None:
            nonlocal changed
            changed = not d.status.is_terminal and d.control.awaiting_approval
            if changed:
                _mark_approved(d, by)

        self.repository.update_deployment(deployment_id, change)
        if changed:
            self.repository.audit(
                deployment_id, "approval_recorded", "deployguard:canary-state-machine",
                f"approved by {by}: {why}", approved_by=by,
            )  # fmt: skip
        return changed

    # ------------------------------------------------------------------ emergency rollback

    def live_version(self, service: str, environment: str | None = None) -> str:
        """The version a service's alias routes all its traffic to now (what an emergency rollback leaves)."""
        environment = environment or self.config.service(service).environment
        return self._live(service, environment)[2]

    def _live(self, service: str, environment: str) -> tuple[list[Deployment], LambdaTarget, str]:
        history = self.repository.deployments_of(service, environment, limit=100)
        lambda_history = [d for d in history if isinstance(d.target, LambdaTarget)]
        if not lambda_history:
            raise ControlStateError(
                f"service {service} in {environment}: no Lambda deployment in the history to roll back"
            )
        running = [d.deployment_id for d in lambda_history if not d.status.is_terminal]
        if running:
            raise ControlStateError(f"deployment {running[0]} is in progress: abort it instead")
        newest = lambda_history[0].target
        assert isinstance(newest, LambdaTarget)
        alias = LambdaTrafficShifter(newest).current()
        if alias.additional_weights:
            ended = lambda_history[0]
            raise ControlStateError(
                f"alias {newest.function_name}:{newest.alias} splits traffic {alias.additional_weights}: "
                + (
                    f"deployment {ended.deployment_id} ended {ended.decision} with the alias split: abort it to put "
                    f"the alias back on version {newest.stable_version}"
                    if ended.decision != "promoted"
                    else "a canary is in progress"
                )
            )
        return lambda_history, newest, alias.function_version

    def emergency_rollback(self, request: EmergencyRollbackRequest) -> EmergencyRollbackOutcome:
        """``from_version`` (the version the person saw live) keys the rollback: a repeat of the same request
        changes nothing instead of rolling back one more version."""
        if request.confirm != request.service:
            raise InvalidEventError(f"confirm: type the service name {request.service!r} to confirm the rollback")
        environment = request.environment or self.config.service(request.service).environment
        lambda_history, newest, current = self._live(request.service, environment)
        claim_key = f"{request.service}#{environment}#{request.from_version or current}"
        if request.from_version and request.from_version != current:
            done = self.repository.find_claim("emergency_rollback", claim_key)
            if done is not None:
                # the alias moved and the claim was taken; the record or its audit may not have followed
                self._finish_emergency_rollback(request, done, claim_key, request.from_version)
                return EmergencyRollbackOutcome(
                    service=request.service,
                    environment=environment,
                    function_name=newest.function_name,
                    alias=newest.alias,
                    from_version=request.from_version,
                    to_version=str(done.get("to_version", current)),
                    changed=False,
                    message=f"already rolled back from version {request.from_version}",
                    deployment_id=str(done.get("deployment_id", "")),
                )
            raise ControlStateError(f"version {current} is live, not {request.from_version}: look again")
        culprit = next((d for d in lambda_history if d.decision == "promoted" and _new(d) == current), None)
        if culprit is None:
            raise ControlStateError(
                f"service {request.service}: version {current} was not put live by a promoted deployment; "
                "nothing to roll back"
            )
        good = next(
            (_new(d) for d in lambda_history if d.decision == "promoted" and _new(d) != current),
            _stable(culprit),
        )
        if not self._claim_emergency(claim_key, good, culprit.deployment_id):
            raise ControlStateError(f"an emergency rollback of {request.service} from {current} is under way")
        target = LambdaTarget(
            function_name=newest.function_name, alias=newest.alias, stable_version=good, new_version=current
        )
        try:
            after = LambdaTrafficShifter(target).rollback()
        except TrafficShiftError:
            self.repository.release("emergency_rollback", claim_key)
            raise
        if after.function_version != good or after.additional_weights:
            raise TrafficShiftError(f"alias routes {after.function_version} {after.additional_weights} after rollback")
        claim = self.repository.find_claim("emergency_rollback", claim_key) or {}
        self._finish_emergency_rollback(request, {**claim, "to_version": good, "deployment_id": culprit.deployment_id},
                                        claim_key, current)  # fmt: skip
        message = f"{target.function_name}:{target.alias} back on version {good} (was {current})"
        return EmergencyRollbackOutcome(
            service=request.service,
            environment=environment,
            function_name=target.function_name,
            alias=target.alias,
            from_version=current,
            to_version=good,
            changed=True,
            message=message,
            deployment_id=culprit.deployment_id,
        )

    def _claim_emergency(self, claim_key: str, good: str, culprit_id: str) -> bool:
        """The claim of one emergency rollback of a service from a version. A claim left by the rollback of an
        earlier deployment of that version (the version put live again since, by another deployment) is over:
        taken over, so the version can be rolled back again within the claim's day."""
        for _ in range(2):
            if self.repository.claim_once(
                "emergency_rollback", claim_key, EMERGENCY_CLAIM_TTL, to_version=good, deployment_id=culprit_id,
                at=clock.now().isoformat(),
            ):  # fmt: skip
                return True
            held = self.repository.find_claim("emergency_rollback", claim_key) or {}
            earlier = str(held.get("deployment_id") or "")
            if not earlier or earlier == culprit_id:
                return False  # this deployment's rollback: under way (or its repeat)
            self.repository.release("emergency_rollback", claim_key, deployment_id=earlier)
        return False

    def _finish_emergency_rollback(
        self, request: EmergencyRollbackRequest, claim: dict[str, object], claim_key: str, from_version: str
    ) -> None:
        """Record, audit and announce an emergency rollback whose alias has moved. Idempotent: a repeat of the
        request after a failure here (the claim taken) finishes what the first left, and only that."""
        deployment_id, good = str(claim.get("deployment_id", "")), str(claim.get("to_version", ""))
        culprit = self.repository.find_deployment(deployment_id) if deployment_id else None
        if culprit is None or not isinstance(culprit.target, LambdaTarget):
            return
        target = culprit.target
        at = clock.now()
        if isinstance(claim.get("at"), str):
            at = datetime.fromisoformat(str(claim["at"]))
        reason = f"emergency rollback by {request.actor}: {request.reason}"
        changed = False

        def change(d: Deployment) -> None:
            nonlocal changed
            changed = d.decision == "promoted" and _new(d) == from_version
            if changed:
                d.status, d.decision, d.decision_reason = DeploymentStatus.ROLLED_BACK, "emergency_rolled_back", reason
                d.canary_weight, d.ended_at = 0.0, d.ended_at or at
                d.phase = Phase.FAILED
                d.phase_history.append(PhaseChange(phase=Phase.FAILED, at=at, reason=reason))

        if culprit.decision == "promoted":
            culprit = self.repository.update_deployment(deployment_id, change)
        if culprit.decision != "emergency_rolled_back":
            return  # another outcome was recorded since (not this rollback's to finish)
        self.repository.audit_once(
            deployment_id, f"emergency_rollback-{claim_key}", at, "emergency_rollback", request.actor, request.reason,
            from_version=from_version, to=good, **_identity(request.identity),
        )  # fmt: skip
        # always: its id and time come from the claim, so a repeat after a failed write records it once
        message = f"{target.function_name}:{target.alias} back on version {good} (was {from_version})"
        self.announce(
            culprit, EventType.ROLLBACK_COMPLETED, "Emergency Rollback", f"{message}. {reason}", Severity.CRITICAL,
            event_id=f"ev-emergency-{deployment_id}-{from_version}", at=at,
        )  # fmt: skip

    # ------------------------------------------------------------------ announcing

    def announce(
        self,
        deployment: Deployment,
        event_type: EventType,
        title: str,
        message: str,
        severity: Severity,
        *,
        event_id: str | None = None,
        at: datetime | None = None,
        **details: object,
    ) -> DeploymentEvent:
        """Through the outbox: recorded, then published (by the minute tick if the topic refuses it now).
        ``event_id`` and ``at`` make it idempotent: announced again, it is the same event (recorded once)."""
        return _announce(
            self.repository, self.publisher, deployment, event_type, title, message, severity,
            event_id=event_id, at=at, **details,
        )  # fmt: skip


def write_report(
    repository: DeploymentRepository,
    publisher: EventPublisher | None,
    deployment: Deployment,
    report: ControlReport,
    message: str | None = None,
) -> Deployment:
    """Audit and announce ``report``'s verb (ids from its key: a repeat writes nothing twice), then take it
    off the record. ``message``: what the verb said; a report finished later says when it was done."""
    said = message or (
        f"{report.verb.replace('_', ' ')} done at {report.at.isoformat(timespec='seconds')} (recorded late: its "
        "audit entry and announcement could not be written then)"
    )
    deployment_id, at = deployment.deployment_id, report.at
    target = deployment.target
    if report.verb == "abort" and isinstance(target, LambdaTarget):
        reason = f"aborted by {report.actor}: {report.reason}"
        repository.audit_once(
            deployment_id, f"{report.key}-rolled_back", at, "rolled_back", report.actor, reason,
            alias="100% stable",
        )  # fmt: skip
        _announce(
            repository, publisher, deployment, EventType.ROLLBACK_COMPLETED, "Rollback Completed",
            f"{reason}; alias back at 100% version {target.stable_version}", Severity.CRITICAL,
            event_id=f"ev-{report.key}-rollback", at=at,
        )  # fmt: skip
    repository.audit_once(
        deployment_id, report.key, at, f"control_{report.verb}", report.actor, report.reason,
        changed=True, outcome="done", result=said, **_identity(report.identity),
    )  # fmt: skip
    loud = report.verb in ("abort", "skip_analysis")
    _announce(
        repository,
        publisher,
        deployment,
        EventType.CONTROL_ACTION,
        f"Canary {report.verb.replace('_', ' ').title()} by {report.actor}",
        f"{said}. Reason: {report.reason}",
        Severity.CRITICAL if loud else Severity.WARNING,
        event_id=f"ev-{report.key}",
        at=at,
        verb=report.verb,
        actor=report.actor,
    )

    def reported(d: Deployment) -> None:
        d.control.unreported = [r for r in d.control.unreported if r.key != report.key]

    return repository.update_deployment(deployment_id, reported)


def report_left_verbs(
    repository: DeploymentRepository, publisher: EventPublisher | None, deployments: Sequence[Deployment], now: datetime
) -> int:
    """The minute tick's part: verbs whose effect is on a record but whose audit entry and announcement are still
    missing a minute later (their writes failed and nobody asked about the deployment since) are written now, once
    each (:func:`write_report`). Returns how many. Never raises: the next tick tries again."""
    written = 0
    for deployment in deployments:
        for report in deployment.control.unreported:
            if report.at > now - REPORT_GRACE:  # the request may still be writing them itself
                continue
            try:
                deployment = write_report(repository, publisher, deployment, report)
                written += 1
            except Exception as exc:
                logger.warning("cannot report a control verb", extra={"deployment_id": deployment.deployment_id,
                                                                     "reason": str(exc)})  # fmt: skip
                break
    return written


def _announce(
    repository: DeploymentRepository,
    publisher: EventPublisher | None,
    deployment: Deployment,
    event_type: EventType,
    title: str,
    message: str,
    severity: Severity,
    *,
    event_id: str | None = None,
    at: datetime | None = None,
    **details: object,
) -> DeploymentEvent:
    """Through the outbox (:meth:`CanaryControlService.announce`)."""
    fixed: dict[str, object] = {"event_id": event_id} if event_id else {}
    if at is not None:
        fixed["at"] = at
    event = DeploymentEvent.about(
        deployment, event_type, title, message, severity=severity, details=dict(details), **fixed
    )
    outbox.announce(repository, publisher, event, actor=ACTOR)
    return event


def _mark_approved(d: Deployment, actor: str) -> None:
    """The approval on the record: the wait is over, and the canary's next assessment that is not failing
    promotes (:func:`approved`). A pause would loop: the approval lifts it."""
    d.control.awaiting_approval, d.control.approval_token = False, None
    d.control.promote_requested = True
    _lift_pause(d.control)
    d.control.approved_by = actor
    d.control.last_action, d.control.last_actor = "approve", actor
    d.control.last_action_at = clock.now()


def _lift_pause(c: CanaryControl) -> None:
    """The pause ends (resume, promote, an approval): its time is added to the run's paused time, which a
    promotion hold does not count against its bound (:mod:`deployguard.workflows.promotion_hold`)."""
    if c.paused:
        c.paused_seconds = c.paused_for(clock.now()).total_seconds()
    c.paused, c.paused_at = False, None


def routes_new(target: LambdaTarget, alias: AliasState) -> bool:
    """The alias routes ``target``'s new version (split or all of it) and nothing but its two versions."""
    versions = {alias.function_version, *alias.additional_weights}
    return target.new_version in versions and versions <= {target.stable_version, target.new_version}


def _unreported(d: Deployment) -> None:
    """The verb being applied goes on the record with its effect (same write) until it is audited and announced."""
    report = _REPORT.get()
    if report is not None and all(r.key != report.key for r in d.control.unreported):
        d.control.unreported.append(report)
    carried = _CARRIED.get()
    if report is not None and carried is not None:
        carried.add(report.key)


def _identity(identity: str | None) -> dict[str, str]:
    """The AWS identity next to the actor in an audit entry, when one is known (the CLI's, on AWS)."""
    return {"aws_identity": identity} if identity else {}


def _new(deployment: Deployment) -> str:
    assert isinstance(deployment.target, LambdaTarget)
    return deployment.target.new_version


def _stable(deployment: Deployment) -> str:
    assert isinstance(deployment.target, LambdaTarget)
    return deployment.target.stable_version
