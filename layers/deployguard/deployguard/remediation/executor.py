"""Running remediation actions safely.

For each action the executor, in this order:
1. refuses targets outside the allowlist, and actions that do not apply;
2. stops when the circuit breaker of the target (or the global one) is open;
3. with ``dry_run``, plans and records what it would do, and stops;
4. asks for approval when the plan step says so (an approval record the CLI answers, with what the
   plan saw: the deployment's status and what the target routed);
5. takes the target's lock (``claim_once`` with an expiry): never two at once on a target;
6. under the lock: plans (already in the wanted state: a no-op, no attempt used: idempotent),
   honours the cooldown, counts the attempt (max attempts per incident), executes and
   checks the effect;
7. records every attempt and its outcome in the audit trail; a failure counts towards the
   breaker, and the failure that opens it pages a person.

An approved action (:meth:`run_approved`, every tick and the approval state machine) plans again
against the present under the lock and is refused (the request expired, audited on its deployment
and on the newer one) when its deployment ended since it was asked, a newer deployment of the
service and environment started, or the target no longer routes what the approval saw. One that
fails stays approved and is tried again at the next tick within the action's ``max_attempts``; when
they are spent, or ``approval_ttl_seconds`` after the approval it is still not done, a person is
paged (:attr:`RemediationExecutor.page_unconfirmed`, the engine's escalation routes).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from deployguard import clock
from deployguard.alerts.settings import PlanStep, RemediationSettings
from deployguard.aws import stepfunctions
from deployguard.exceptions import ConflictError, DeployGuardError, NotApplicableError, RemediationError
from deployguard.models import Deployment, DeploymentEvent, EndCause, EventType, Severity
from deployguard.remediation.actions import Handler, handler_for
from deployguard.remediation.models import ActionPlan, Approval, ApprovalStatus, Outcome, RemediationResult
from deployguard.remediation.store import RemediationStore
from deployguard.remediation.targets import TargetAllowlist, target_id
from deployguard.storage import outbox

if TYPE_CHECKING:
    from deployguard.aws.events import EventPublisher
    from deployguard.incidents.models import Incident
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:remediation"
logger = logging.getLogger(__name__)
COOLDOWN = "REMEDIATION-COOLDOWN"


class RemediationExecutor:
    def __init__(
        self,
        settings: RemediationSettings,
        repository: DeploymentRepository,
        publisher: EventPublisher | None,
        allowlist: TargetAllowlist,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.publisher = publisher
        self.allowlist = allowlist
        self.store = RemediationStore(repository)
        # who is paged when an approved action cannot be done (the engine: the incident's first escalation routes)
        self.routes_for: Callable[[Incident], list[str]] = lambda _incident: list(
            self.settings.circuit_breaker.page_routes
        )

    # ------------------------------------------------------------------ helpers

    def _breaker_scope(self, target: str) -> str:
        return "global" if self.settings.circuit_breaker.scope == "global" else target

    @property
    def _reset_after(self) -> timedelta:
        return timedelta(seconds=self.settings.circuit_breaker.reset_after_seconds)

    def breaker_open(self, target: str) -> bool:
        return self.store.breaker_open(self._breaker_scope(target), self._reset_after)

    def reset_breaker(self, target: str, by: str, deployment_id: str) -> None:
        self.store.reset_breaker(self._breaker_scope(target))
        self.repository.audit(deployment_id, "circuit_breaker_reset", by, f"breaker of {target} reset", target=target)

    def _result(
        self,
        incident: Incident,
        action: str,
        target: str,
        outcome: Outcome,
        message: str,
        actor: str,
        audit: bool = True,
        **extra: object,
    ) -> RemediationResult:
        result = RemediationResult(
            incident_id=incident.incident_id,
            deployment_id=incident.deployment_id,
            action=action,
            target=target,
            outcome=outcome,
            message=message,
            **extra,
        )
        if audit:
            self.repository.audit(
                incident.deployment_id,
                f"remediation_{outcome.value}",
                actor,
                f"{action} on {target}: {message}",
                incident_id=incident.incident_id,
                remediation_action=action,
                target=target,
                attempt=result.attempt,
                duration_ms=result.duration_ms,
                seconds_since_decision=result.seconds_since_decision,
                approval_id=result.approval_id,
                plan=result.plan.model_dump(mode="json") if result.plan else None,
            )
        return result

    # ------------------------------------------------------------------ planning

    def plan(self, deployment: Deployment, action: str) -> ActionPlan:
        """What ``action`` would do to the deployment's target now (reads AWS, changes nothing)."""
        config = self.settings.actions.get(action)
        if config is None:
            raise NotApplicableError(
                f"unknown remediation action {action!r} (known: {', '.join(self.settings.actions)})"
            )
        return handler_for(action, config, deployment).plan()

    # ------------------------------------------------------------------ running

    def run(
        self,
        incident: Incident,
        deployment: Deployment,
        step: PlanStep,
        *,
        actor: str = ACTOR,
        approved_by: str | None = None,
        manual: bool = False,
        dry_run: bool | None = None,
        decided_at: float | None = None,
        approval: Approval | None = None,
        refuse_unless_noop: str = "",
    ) -> RemediationResult:
        """Run one plan step for an incident. ``decided_at`` is ``time.monotonic()`` of the decision.

        ``manual`` (a person ran it from the CLI) skips the breaker, the attempt limit and the
        cooldown, never the allowlist or the lock. ``dry_run`` can only make it drier: with
        ``remediation.dry_run`` set nothing calls AWS whatever is passed. ``approval``: the approved
        request it runs, checked against the present under the lock (:meth:`_stale`). ``refuse_unless_noop``: why
        it must not change anything (a person's run the present no longer calls for): refused with that reason
        under the lock (its details: ``refused_now``), unless the plan finds the target in the wanted state already
        (a no-op undoes nothing); a dry run says it would be refused.
        """
        incident = acting_on(incident, deployment)
        name = step.action
        target = target_id(deployment)
        dry = self.settings.dry_run or bool(dry_run)
        config = self.settings.actions.get(name)
        if config is None:
            return self._result(incident, name, target, Outcome.REFUSED, f"unknown action {name!r}", actor)
        if not self.settings.enabled and not manual:
            return self._result(incident, name, target, Outcome.DISABLED, "remediation is disabled", actor)
        if not self.allowlist.allows(target):
            return self._result(
                incident, name, target, Outcome.REFUSED, "target is not one DeployGuard is configured for", actor
            )
        try:
            handler = handler_for(name, config, deployment)
        except NotApplicableError as exc:
            return self._result(incident, name, target, Outcome.REFUSED, str(exc), actor)
        if not manual and self.breaker_open(target):
            return self._result(
                incident, name, target, Outcome.BLOCKED, "circuit breaker open: automation stopped", actor
            )
        if dry or (step.mode == "approval" and approved_by is None and not manual):
            try:
                plan = handler.plan()
            except (NotApplicableError, RemediationError) as exc:
                return self._result(incident, name, target, Outcome.REFUSED, f"cannot plan: {exc}", actor)
            if dry:
                said = plan.description
                if refuse_unless_noop and not plan.noop:  # what the run would be: refused (nothing audited as such)
                    said = f"would be refused: {refuse_unless_noop} (it would: {plan.description})"
                return self._result(incident, name, target, Outcome.DRY_RUN, said, actor, plan=plan)
            if plan.noop:
                return self._result(incident, name, target, Outcome.NOOP, plan.description, actor, plan=plan)
            return self._request_approval(incident, deployment, name, target, plan, actor)
        holder = f"{incident.incident_id}#{name}"
        lock = self.store.take_lock(target, holder, timedelta(seconds=self.settings.lock_ttl_seconds))
        if lock is None:
            return self._result(
                incident, name, target, Outcome.BUSY, "another remediation holds the target's lock", actor
            )
        try:
            return self._run_locked(
                incident, handler, target, actor, manual, decided_at, approved_by, approval, refuse_unless_noop
            )
        finally:  # this claim's only: a lock that expired under a slow action may be another run's now (even
            # one of the same incident and action: the token, not the holder, tells them apart)
            if not self.store.release_lock(target, lock):
                logger.warning(
                    "the target's lock expired under the action: not released (another run's now, or gone)",
                    extra={"target": target, "holder": holder, "incident_id": incident.incident_id, "action": name},
                )

    def _run_locked(
        self,
        incident: Incident,
        handler: Handler,
        target: str,
        actor: str,
        manual: bool,
        decided_at: float | None,
        approved_by: str | None,
        approval: Approval | None = None,
        refuse_unless_noop: str = "",
    ) -> RemediationResult:
        name, config = handler.name, handler.config
        state = self.store.attempts(incident.incident_id, incident.deployment_id, name)
        if state.get("succeeded") and not manual:
            return self._result(incident, name, target, Outcome.NOOP, "already done for this incident", actor)
        plan: ActionPlan | None = None
        plan_error: str | None = None
        try:
            plan = handler.plan()
        except (NotApplicableError, RemediationError) as exc:
            plan_error = f"cannot plan: {exc}"
        if approval is not None and (why := self._stale(approval, handler.deployment, plan)):
            return self._result(
                incident, name, target, Outcome.REFUSED, f"approval {approval.approval_id} not run: {why}", actor,
                plan=plan, approval_id=approval.approval_id, details={"stale": True},
            )  # fmt: skip
        if refuse_unless_noop and not (plan is not None and plan.noop):
            return self._result(
                incident, name, target, Outcome.REFUSED, refuse_unless_noop, actor, plan=plan,
                details={"refused_now": True},
            )  # fmt: skip
        if plan is not None and plan.noop:  # already in the wanted state: no attempt used
            self.store.record_outcome(incident.incident_id, incident.deployment_id, name, Outcome.NOOP.value, True)
            return self._result(incident, name, target, Outcome.NOOP, plan.description, actor, plan=plan)
        if not manual and not self.repository.claim_once(
            COOLDOWN, f"{target}#{name}", timedelta(seconds=config.cooldown_seconds)
        ):
            return self._result(
                incident, name, target, Outcome.COOLDOWN, f"within the {config.cooldown_seconds} s cooldown", actor
            )
        attempt = self.store.take_attempt(
            incident.incident_id, incident.deployment_id, name, 10_000 if manual else config.max_attempts
        )
        if attempt is None:
            return self._result(
                incident, name, target, Outcome.EXHAUSTED, f"{config.max_attempts} attempts used", actor
            )
        started = time.monotonic()
        if plan is None:
            return self._failed(incident, name, target, actor, attempt, plan_error or "cannot plan", None, started)
        self.repository.audit(
            incident.deployment_id,
            "remediation_attempt",
            actor,
            f"{name} attempt {attempt}/{config.max_attempts}: {plan.description}",
            incident_id=incident.incident_id,
            remediation_action=name,
            target=target,
            attempt=attempt,
            calls=plan.calls,
            approved_by=approved_by,
        )
        handler.cause = EndCause(
            remediation=name, incident_id=incident.incident_id, rules=list(incident.rules), title=incident.title,
            verdict=self._failing_verdict(incident, handler.deployment.deployment_id),
        )  # fmt: skip
        handler.reason = handler.cause.reason()  # the verdict said once, here: the canary adds it only if missing
        try:
            message = handler.execute(self.repository)
        except (RemediationError, NotApplicableError, DeployGuardError) as exc:
            return self._failed(incident, name, target, actor, attempt, str(exc), plan, started)
        duration_ms = (time.monotonic() - started) * 1000.0
        since = time.monotonic() - decided_at if decided_at is not None else None
        self.store.record_outcome(incident.incident_id, incident.deployment_id, name, Outcome.SUCCEEDED.value, True)
        self.store.record_success(self._breaker_scope(target))
        return self._result(
            incident,
            name,
            target,
            Outcome.SUCCEEDED,
            message,
            actor,
            attempt=attempt,
            plan=plan,
            duration_ms=round(duration_ms, 3),
            seconds_since_decision=None if since is None else round(since, 3),
        )

    def _failing_verdict(self, incident: Incident, deployment_id: str) -> str | None:
        """The canary's failing verdict (its summary) behind an incident the judge raised (``canary-issue``), for
        the stop's cause (:class:`~deployguard.models.EndCause`): "canary worse: errors: canary 8.85% (27/305)
        vs ...". Best effort: None when the incident did not come from a verdict, or the history cannot be read."""
        if "canary-issue" not in incident.rules:
            return None
        try:
            assessments = self.repository.assessments(deployment_id)
        except Exception:  # the stop goes ahead: its reason is only less precise
            logger.exception("cannot read the failing verdict", extra={"deployment_id": deployment_id})
            return None
        failing = [
            a for a in assessments
            if a.verdict.decision.value == "failing" and a.details.get("kind") != "post_deployment"
        ]  # fmt: skip
        return failing[-1].verdict.summary if failing else None

    def _failed(
        self,
        incident: Incident,
        name: str,
        target: str,
        actor: str,
        attempt: int,
        message: str,
        plan: ActionPlan | None,
        started: float,
    ) -> RemediationResult:
        self.store.record_outcome(incident.incident_id, incident.deployment_id, name, Outcome.FAILED.value, False)
        breaker = self.settings.circuit_breaker
        failures, opened = self.store.record_failure(
            self._breaker_scope(target), breaker.failure_threshold, self._reset_after
        )
        result = self._result(
            incident,
            name,
            target,
            Outcome.FAILED,
            message,
            actor,
            attempt=attempt,
            plan=plan,
            duration_ms=round((time.monotonic() - started) * 1000.0, 3),
            details={"consecutive_failures": failures, "breaker_opened": opened},
        )
        if opened:
            self._page_breaker(incident, name, target, failures, message)
        return result

    def _page_breaker(self, incident: Incident, name: str, target: str, failures: int, message: str) -> None:
        routes = self.settings.circuit_breaker.page_routes
        text = (
            f"Automatic remediation of {target} failed {failures} times in a row ({name}: {message}). "
            f"Automation is stopped for {self.settings.circuit_breaker.reset_after_seconds} s; a person must act."
        )
        self.repository.audit(
            incident.deployment_id,
            "circuit_breaker_opened",
            ACTOR,
            text,
            incident_id=incident.incident_id,
            target=target,
            failures=failures,
            routes=routes,
        )
        self._page(
            incident, f"Remediation stopped on {target}: a person is needed", text,
            {"kind": "circuit_breaker_open", "target": target, "action": name, "failures": failures, "routes": routes},
        )  # fmt: skip

    def _page(self, incident: Incident, title: str, text: str, details: dict[str, object],
              event_id: str | None = None) -> None:  # fmt: skip
        """A critical page about an incident's remediation (its ``details`` name the routes), recorded in the
        outbox and published (without a publisher, by the minute tick)."""
        event = DeploymentEvent(
            **({"event_id": event_id} if event_id else {}),
            event_type=EventType.ALERT,
            deployment_id=incident.deployment_id,
            service=incident.service,
            version=incident.version,
            environment=incident.environment,
            severity=Severity.CRITICAL,
            title=title,
            message=text,
            details={**details, "incident_id": incident.incident_id},
        )
        outbox.announce(self.repository, self.publisher, event, actor=ACTOR)

    # ------------------------------------------------------------------ approvals

    def _request_approval(
        self, incident: Incident, deployment: Deployment, name: str, target: str, plan: ActionPlan, actor: str
    ) -> RemediationResult:
        ttl = timedelta(seconds=self.settings.approval_ttl_seconds)
        approval = Approval(
            incident_id=incident.incident_id,
            deployment_id=incident.deployment_id,
            action=name,
            target=target,
            description=plan.description,
            expires_at_time=clock.now() + ttl,
            routing=plan.routing,
            deployment_status=deployment.status.value,
        )
        if not self.store.request_approval(approval, ttl):
            return self._result(
                incident, name, target, Outcome.PENDING_APPROVAL, "an approval is already pending", actor, audit=False
            )
        try:
            return self._ask(incident, name, target, plan, actor, approval)
        except Exception:  # nobody was asked: the request is withdrawn, so the retry asks again
            approval.status, approval.result = ApprovalStatus.EXPIRED, "the request could not be sent"
            with suppress(Exception):
                self.store.save_approval(approval)  # releases its claim
            raise

    def _ask(
        self, incident: Incident, name: str, target: str, plan: ActionPlan, actor: str, approval: Approval
    ) -> RemediationResult:
        """Start the approval's wait (its state machine) and announce the request."""
        state_machine = os.environ.get("APPROVAL_STATE_MACHINE_ARN")
        if state_machine:
            # the approval waits in a Step Functions task token; the CLI's answer resumes it
            stepfunctions.start_execution(state_machine, approval.approval_id, {"approval_id": approval.approval_id})
        result = self._result(
            incident,
            name,
            target,
            Outcome.PENDING_APPROVAL,
            f"{plan.description}; answer it in the console (Waiting for your answer) or with: deployguard incidents "
            f"approve|reject {approval.approval_id} --by NAME",
            actor,
            plan=plan,
            approval_id=approval.approval_id,
        )
        event = DeploymentEvent(
            event_type=EventType.ALERT,
            deployment_id=incident.deployment_id,
            service=incident.service,
            version=incident.version,
            environment=incident.environment,
            severity=incident.severity,
            title=f"Approval needed: {name} on {target}",
            message=result.message,
            details={
                "kind": "approval_requested",
                "incident_id": incident.incident_id,
                "approval_id": approval.approval_id,
                "action": name,
                "target": target,
                "calls": plan.calls,
            },
        )
        outbox.announce(self.repository, self.publisher, event, actor=ACTOR)  # no publisher: the minute tick
        return result

    def decide(self, approval_id: str, by: str, approve: bool, notes: str = "") -> Approval:
        """A person's answer to an approval request; an approved action runs at the next tick."""
        if not by.strip():
            raise DeployGuardError("deciding an approval needs a name (--by)")
        for attempt in range(3):  # a request changed since it was read but still pending (its state machine
            approval = self.store.approval(approval_id)  # registered its task token meanwhile) is answered anew
            if approval.status != ApprovalStatus.PENDING:
                raise ConflictError(f"approval {approval_id} is {approval.status.value}, not pending")
            if clock.now() >= approval.expires_at_time:
                approval.status = ApprovalStatus.EXPIRED
                approval.result = f"not answered by {approval.expires_at_time.isoformat()}"
                self.store.save_approval(approval)
                self.store.mark_answered(approval)
                self._audit_expired(approval, by)
                raise ConflictError(f"approval {approval_id} expired at {approval.expires_at_time.isoformat()}")
            approval.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
            approval.decided_by = by
            approval.decided_at = clock.now()
            approval.notes = notes
            try:
                approval = self.store.save_approval(approval)
                break
            except ConflictError:
                if attempt == 2:
                    raise
        if not approve:  # people said no: later alerts of the incident do not ask again
            self.store.mark_answered(approval)
        if approval.task_token:
            approval = self._answer_waiting(approval, by, approve, notes)
        self.repository.audit(
            approval.deployment_id,
            "remediation_approved" if approve else "remediation_rejected",
            by,
            notes or f"{approval.action} on {approval.target}",
            incident_id=approval.incident_id,
            approval_id=approval.approval_id,
            remediation_action=approval.action,
        )
        return approval

    def _answer_waiting(self, approval: Approval, by: str, approve: bool, notes: str) -> Approval:
        """Answer the approval state machine waiting on the approval's task token. When Step Functions
        cannot be told (down, throttled, the wait timed out), the token is cleared: the decision
        stands, and an approved action is run by the minute tick (:meth:`run_approved`) instead."""
        assert approval.task_token is not None
        try:
            stepfunctions.answer_task(approval.task_token, approved=approve, by=by, reason=notes or "decided")
            return approval
        except stepfunctions.StepFunctionsError as exc:
            logger.warning("cannot answer the approval's state machine: the minute tick runs it",
                           extra={"approval_id": approval.approval_id, "reason": str(exc)})  # fmt: skip
            error = exc
        approval.task_token = None
        approval = self.store.save_approval(approval)
        self.repository.audit(
            approval.deployment_id, "approval_answer_failed", ACTOR,
            f"the approval's state machine could not be answered ({error}); "
            + ("the minute tick runs the approved action" if approve else "it ends when its wait times out"),
            incident_id=approval.incident_id, approval_id=approval.approval_id,
        )  # fmt: skip
        return approval

    def register_task_token(self, approval_id: str, task_token: str) -> Approval:
        """The approval state machine waits on ``task_token`` until a person answers.

        Only a pending approval keeps the token. One decided before its state machine registered (a quick
        answer, a cold start) is answered at once, and its token not kept: an approved action is run by the
        state machine, or by the minute tick when Step Functions cannot be told (never skipped as "its state
        machine runs it" while nothing waits on it)."""
        for _ in range(3):
            approval = self.store.approval(approval_id)
            if approval.status != ApprovalStatus.PENDING:
                break
            approval.task_token = task_token
            try:
                return self.store.save_approval(approval)
            except ConflictError:  # decided meanwhile: read it again
                continue
        else:
            raise ConflictError(f"approval {approval_id} keeps changing: its task token is not registered")
        approved = approval.status == ApprovalStatus.APPROVED
        try:
            stepfunctions.answer_task(
                task_token, approved=approved, by=approval.decided_by or ACTOR,
                reason=approval.notes or f"{approval.status.value} before its wait began",
            )  # fmt: skip
        except stepfunctions.StepFunctionsError as exc:
            logger.warning("cannot answer an approval decided before its wait: the minute tick runs it",
                           extra={"approval_id": approval_id, "reason": str(exc)})  # fmt: skip
        return approval

    def run_one_approved(self, approval_id: str, incidents: dict[str, Incident]) -> RemediationResult | None:
        """Run one approved action now (the approval state machine's last step)."""
        approval = self.store.approval(approval_id)
        if approval.status != ApprovalStatus.APPROVED:
            return None
        approval.task_token = None  # from here on it is an ordinary approved action
        self.store.save_approval(approval)
        results = self.run_approved({k: v for k, v in incidents.items() if k == approval.incident_id}, only=approval_id)
        return results[0] if results else None

    def run_approved(self, incidents: dict[str, Incident], only: str | None = None) -> list[RemediationResult]:
        """Run approved actions (and expire stale requests); called every tick.

        An approved action is checked against the present first (:meth:`_stale`: refused and expired
        when it no longer applies). One that failed stays approved and runs again at the next tick while
        attempts remain; when they are spent, or it is still not done ``approval_ttl_seconds`` after the
        approval, it ends and a person is paged (:meth:`_page_unconfirmed`)."""
        results: list[RemediationResult] = []
        now = clock.now()
        for approval in self.store.open_approvals():
            if only is not None and approval.approval_id != only:
                continue
            try:
                self._run_one(approval, incidents, now, results)
            except Exception:  # one approval's failure is its own: it stays as stored, the next tick tries again
                logger.exception("cannot run an approved action", extra={"approval_id": approval.approval_id})
        return results

    def _run_one(
        self, approval: Approval, incidents: dict[str, Incident], now: datetime, results: list[RemediationResult]
    ) -> None:
        """One open approval at a tick (:meth:`run_approved`)."""
        if approval.status == ApprovalStatus.PENDING and now >= approval.expires_at_time:
            approval.status = ApprovalStatus.EXPIRED
            approval.result = f"not answered by {approval.expires_at_time.isoformat()}"
            self.store.save_approval(approval)
            self.store.mark_answered(approval)  # nobody answered: later alerts of the incident do not ask again
            self._audit_expired(approval, ACTOR)
            return
        if approval.status != ApprovalStatus.APPROVED:
            return
        deadline = self._deadline(approval)
        if approval.task_token and now < deadline:
            return  # its state machine runs it; past the deadline it is given up below (a person paged)
        incident = incidents.get(approval.incident_id)
        deployment = self.repository.find_deployment(approval.deployment_id)
        if incident is None or deployment is None:
            gone = "its incident was resolved" if deployment is not None else "its deployment is gone"
            self._drop_approved(approval, incident, gone)
            return
        incident = acting_on(incident, deployment)
        if now >= deadline:
            self._give_up(approval, incident, f"not done by {deadline.isoformat()} ({approval.result or 'never ran'})")
            return
        result = self.run(
            incident,
            deployment,
            PlanStep(action=approval.action, mode="approval"),
            actor=f"{ACTOR} (approved by {approval.decided_by})",
            approved_by=approval.decided_by,
            approval=approval,
        )
        if result.outcome in (Outcome.BUSY, Outcome.COOLDOWN):
            return  # try again at the next tick
        results.append(result)
        if result.details.get("stale"):
            # what a person approved will not be done (a canary promoted meanwhile may now serve everyone): told
            self._page_unconfirmed(incident, approval, f"refused: {result.message}")
            approval.status, approval.result = ApprovalStatus.EXPIRED, f"refused: {result.message}"
            self.store.save_approval(approval)
            return
        config = self.settings.actions.get(approval.action)
        attempts = config.max_attempts if config is not None else 1
        if result.outcome == Outcome.FAILED and (result.attempt or attempts) < attempts:
            approval.result = (
                f"failed (attempt {result.attempt}/{attempts}): {result.message}; tried again at the next tick"
            )
            self.store.save_approval(approval)  # still approved: the next tick runs it again
            return
        if result.outcome not in (Outcome.SUCCEEDED, Outcome.NOOP, Outcome.DRY_RUN):
            # failed for good, exhausted, blocked by the open breaker, disabled or refused since the approval:
            # what a person approved is not done, so a person is told at once
            self._give_up(approval, incident, f"{result.outcome.value}: {result.message}", result)
            return
        approval.status = ApprovalStatus.EXECUTED
        approval.result = f"{result.outcome.value}: {result.message}"
        self.store.save_approval(approval)

    def _audit_expired(self, approval: Approval, actor: str) -> None:
        self.repository.audit(
            approval.deployment_id, "remediation_approval_expired", actor,
            f"{approval.action} on {approval.target}: {approval.result}; nothing was done",
            incident_id=approval.incident_id, approval_id=approval.approval_id,
            remediation_action=approval.action, target=approval.target,
        )  # fmt: skip

    def _deadline(self, approval: Approval) -> datetime:
        """When an approved action that is still not done is given up (and a person paged)."""
        decided = approval.decided_at or approval.requested_at
        return decided + timedelta(seconds=self.settings.approval_ttl_seconds)

    def _stale(self, approval: Approval, deployment: Deployment, plan: ActionPlan | None) -> str:
        """Why an approved action no longer applies ("" while it does): its deployment ended since the
        request, a newer deployment of its service and environment started, or the target no longer
        routes what the approval saw (an action already in place is a no-op, not stale)."""
        current = self.repository.find_deployment(deployment.deployment_id) or deployment
        ended_since = approval.ended_since_asked(current)  # the console says such a request is moot (the same test)
        newer = self.repository.superseding(current)
        if newer is not None:
            self.repository.audit(
                newer.deployment_id, "stale_remediation_refused", ACTOR,
                f"approval {approval.approval_id} of {approval.action} on {approval.target} for "
                f"{current.deployment_id} refused: it would have undone this deployment",
                approval_id=approval.approval_id, incident_id=approval.incident_id,
                remediation_action=approval.action, target=approval.target,
            )  # fmt: skip
            return (
                f"deployment {newer.deployment_id} (version {newer.version}) of {current.service} in "
                f"{current.environment} started after {current.deployment_id}; the target is its now"
            )
        if ended_since:
            return f"deployment {current.deployment_id} ended ({current.status.value}) after the approval was asked"
        # a canary still in progress may have stepped its weight since: the same versions, another split, is
        # what was approved (rolling it back is more urgent, not stale); other versions are not
        moved = plan is not None and not plan.noop and bool(approval.routing) and plan.routing != approval.routing
        if (
            moved
            and plan is not None
            and (current.status.is_terminal or _routed_versions(plan.routing) != _routed_versions(approval.routing))
        ):
            return f"the target no longer routes what was approved (then {approval.routing}, now {plan.routing})"
        return ""

    def _drop_approved(self, approval: Approval, incident: Incident | None, why: str) -> None:
        """An approved action that will not run (its incident resolved, its deployment gone): the approver and
        the incident's routes are told (``approved_remediation_failed``, audited), then the approval ended."""
        if incident is None:
            from deployguard.incidents.repository import IncidentRepository

            incident = IncidentRepository(self.repository).find(approval.incident_id)
        text = f"dropped: {why}"
        if incident is not None and incident.deployment_id != approval.deployment_id:
            incident = incident.model_copy(update={"deployment_id": approval.deployment_id})
        if incident is not None:
            self._page_unconfirmed(incident, approval, text)
        else:  # nothing to page about: recorded all the same
            self.repository.audit(
                approval.deployment_id, "approved_remediation_failed", ACTOR,
                f"approved {approval.action} of {approval.target} (approved by {approval.decided_by}) not done: {text}",
                incident_id=approval.incident_id, approval_id=approval.approval_id,
                remediation_action=approval.action, target=approval.target,
            )  # fmt: skip
        approval.status, approval.result = ApprovalStatus.EXPIRED, text
        self.store.save_approval(approval)

    def _give_up(
        self, approval: Approval, incident: Incident, why: str, result: RemediationResult | None = None
    ) -> None:
        """An approved action that cannot be done: a person paged, then the approval ended. The page goes first,
        under an event id of its approval: if it cannot be recorded the approval stays approved, and the next
        tick gives up again and pages under the same id (recorded and delivered once)."""
        self._page_unconfirmed(incident, approval, why)
        approval.status, approval.result = ApprovalStatus.EXECUTED, why
        self.store.save_approval(approval)

    def _page_unconfirmed(self, incident: Incident, approval: Approval, why: str) -> None:
        """Page the incident's first escalation routes at once, as for an automatic rollback not confirmed."""
        routes = self.routes_for(incident)
        text = (
            f"approved {approval.action} of {approval.target} (approved by {approval.decided_by}) not done: {why}; "
            "a person must act"
        )
        self.repository.audit(
            approval.deployment_id, "approved_remediation_failed", ACTOR, text,
            incident_id=incident.incident_id, approval_id=approval.approval_id,
            remediation_action=approval.action, target=approval.target, routes=routes,
        )  # fmt: skip
        self._page(
            incident, f"Approved remediation not done: {approval.action} on {approval.target}", text,
            {"kind": "approved_remediation_failed", "approval_id": approval.approval_id, "action": approval.action,
             "target": approval.target, "routes": routes},
            event_id="ev-" + hashlib.sha256(f"approved-not-done#{approval.approval_id}".encode()).hexdigest()[:20],
        )  # fmt: skip


def _routed_versions(routing: str | None) -> frozenset[str]:
    """The versions a routing text (:func:`~deployguard.remediation.actions.alias_routing`) names, weights aside."""
    return frozenset(part.split(" at ")[0].strip() for part in (routing or "").split(" + "))


def acting_on(incident: Incident, deployment: Deployment) -> Incident:
    """The incident as an action on ``deployment`` records it. An incident grouped without the deployment
    (``latest_deployment_id``) acts on its latest alert's deployment, the live release: its results,
    attempts, approvals, audit entries and pages are that deployment's, not the first one's."""
    if incident.deployment_id == deployment.deployment_id:
        return incident
    return incident.model_copy(update={"deployment_id": deployment.deployment_id, "version": deployment.version})
