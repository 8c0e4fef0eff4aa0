"""The canary controller: the logic behind every task of the canary state machine.

The state machine (``statemachine/canary.asl.json``) only routes; each task calls
one action here with the execution's state and gets the next state back:

    validate -> shift -> (wait -> assess)* -> shift ... -> promote | rollback -> notify

``assess`` sets ``next`` to ``wait``, ``advance``, ``promote`` or ``rollback``; the
state machine's Choice state follows it. Any failure the machine catches ends in
``rollback``, which always leaves the alias at 100% stable. With approval before full traffic, ``assess``
may set ``await_approval``: the state machine then waits on a task token (``await_approval``) while
``assess_awaiting`` goes on judging the canary; a failing verdict rolls back, an approval promotes only
after one more verdict that is not failing, and 24 h without an answer hold the canary.

Traffic first: ``rollback`` and ``promote`` move the alias and verify it before they
record and announce anything; ``rollback`` needs no DynamoDB read to do it (the state carries
the target). Once traffic has moved, a failure to record or announce never fails the
task: the state says ``recorded: false`` and ``notify`` (retried by the state machine)
finishes the record. Every record and announcement of an outcome is keyed, so a retried
step writes and publishes it once.

A person's abort (or remediation) may end the deployment while ``shift`` or ``promote`` is
moving the alias. Both read the record before they touch the alias, and record their move
only while the record is not terminal; one that loses the race puts the alias back where the
record's end put it (100% new if it was promoted, else 100% stable) and ends with the record's
decision. A retry that finds the record ended does the same for an earlier attempt whose move
landed late, and ``rollback`` reads the alias again once it has recorded. The alias never stays
on the new version, or split, while the record says rolled back or aborted, nor on stable while
it says promoted. A late move of an ended deployment acts only while the alias is still its own: a newer
deployment of the service that started after it ended, or an alias routing versions it never shipped, is
left alone (``traffic_move_refused`` in its audit trail).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from deployguard import clock
from deployguard.aws.lambda_traffic import AliasMovedError, AliasState, LambdaTrafficShifter
from deployguard.exceptions import InvalidEventError, NotFoundError, TrafficShiftError
from deployguard.hooks.checks import CheckContext, Sleep, run_check
from deployguard.inbound import IsoDatetime, parse_event
from deployguard.models import (
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
    Strategy,
    Verdict,
    deployment_statistics,
)
from deployguard.storage import outbox
from deployguard.workflows import alias_claim
from deployguard.workflows.control import CanaryControlService, approved, effective_decision, steer
from deployguard.workflows.verdict_metrics import publish_verdict_metrics

if TYPE_CHECKING:
    from deployguard.alerts.engine import AlertEngine
    from deployguard.aws.cloudwatch import MetricsReader
    from deployguard.aws.events import EventPublisher
    from deployguard.config import DeployGuardConfig, ServiceConfig
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:canary-state-machine"
RETRY_CLAIM = "canary-retry-execution"  # the one execution that drives a person's retry (claim_once)
RETRY_CLAIM_TTL = timedelta(days=7)
logger = logging.getLogger(__name__)

NextStep = Literal["shift", "wait", "advance", "promote", "await_approval", "expired", "rollback", "hold", "done"]
APPROVAL_TTL = timedelta(hours=24)  # AwaitApproval's TimeoutSeconds: then the canary is held


class CanaryRequest(Model):
    """Input of a canary execution: what to deploy where."""

    deployment_id: str | None = None
    service: str = Field(min_length=1)
    environment: str | None = None
    version: str = Field(min_length=1)
    target: LambdaTarget
    start_step: int = Field(default=0, ge=0, description="a retried canary starts again at this step")


LOOK_BEGAN = "look_began"  # an Assess assessment's details: when the attempt that recorded it began its look
APPROVAL_LOOK_SECONDS = 60  # the approval wait's looks: 24 h of them stay under Step Functions' history limit


class CanaryState(Model):
    """The state every task of the canary state machine receives and returns."""

    deployment_id: str
    step_index: int = 0
    steps: list[float]
    weight: float = 0.0
    wait_seconds: int = 60
    step_started_at: IsoDatetime | None = None
    assessments_in_step: int = 0
    inconclusive_count: int = 0
    next: NextStep = "shift"
    decision: str | None = None
    reason: str | None = None
    last_verdict: Decision | None = None
    target: LambdaTarget | None = Field(default=None, description="the alias moved: rollback reads no record")
    ended_at: IsoDatetime | None = None
    approval_requested_at: IsoDatetime | None = Field(
        default=None, description="when the canary began to wait for approval before 100% (it expires 24 h later)"
    )
    recorded: bool = Field(default=True, description="false: traffic moved, the record has not followed yet")
    promotion_held_since: IsoDatetime | None = Field(
        default=None, description="when Promote began to hold for people asked whether to roll it back"
    )
    promotion_hold_paused_before: float | None = Field(
        default=None, description="seconds people had held the run paused when the hold began (later pauses: its own)"
    )
    promoted_from: dict[str, Any] | None = Field(
        default=None,
        description="Promote's record deferred (recorded: false): the routing its move left (function_version, "
        "additional_weights), which NotifyOutcome takes the move back to if a person's pause landed while it moved",
    )


class CanaryController:
    """Carries out the canary actions against AWS, recording and announcing each."""

    def __init__(
        self,
        config: DeployGuardConfig,
        repository: DeploymentRepository,
        publisher: EventPublisher,
        reader: MetricsReader | None = None,
        alerts: AlertEngine | None = None,
        *,
        local_mode: bool = False,
        sleep: Sleep = clock.sleep,
    ) -> None:
        self.config = config
        self.repository = repository
        self.publisher = publisher
        self.reader = reader  # CloudWatch: built by the first Assess task
        self.alerts = alerts
        self.local_mode = local_mode  # the pre-traffic checks' outbound rules (loopback only locally)
        self.sleep = sleep  # between check retries
        self.control = CanaryControlService(config, repository, publisher)

    def _alerting(self, deployment_id: str, what: str, call: Callable[[], object]) -> None:
        """Run the alert engine; its failure is recorded, but never stops or fails the canary itself."""
        if self.alerts is None:
            return
        try:
            call()
        except Exception as exc:
            logger.exception("alert engine failed", extra={"deployment_id": deployment_id, "on": what})
            self.repository.audit(deployment_id, "alerting_failed", ACTOR, f"{what}: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ helpers

    def _service(self, deployment: Deployment) -> ServiceConfig:
        return self.config.service(deployment.service)

    def _announce(
        self,
        deployment: Deployment,
        event_type: EventType,
        title: str,
        message: str,
        severity: Severity = Severity.INFO,
        verdict: Verdict | None = None,
        **details: Any,
    ) -> DeploymentEvent:
        reasons = verdict.failing_reasons or verdict.reasons if verdict else []
        event = DeploymentEvent.about(
            deployment, event_type, title, message, severity=severity, reasons=reasons, details=details
        )
        self._record_and_publish(event, deployment)
        return event

    def _record_and_publish(self, event: DeploymentEvent, deployment: Deployment) -> None:
        """Through the outbox (:mod:`deployguard.storage.outbox`): recorded, published, and given to the
        alert engine once per event id whatever the topic says. A publication or alert run that fails
        leaves it in the outbox, and the minute tick finishes it
        (:func:`deployguard.workflows.reconciler.publish_outbox`); a retried step finds what an earlier
        attempt did."""
        alerts = self.alerts
        alert: outbox.Alert | None = None if alerts is None else (lambda e: alerts.on_event(e, deployment))
        outbox.announce(self.repository, self.publisher, event, actor=ACTOR, alert=alert)

    def _announce_once(
        self,
        deployment: Deployment,
        key: str,
        at: datetime,
        event_type: EventType,
        title: str,
        message: str,
        severity: Severity = Severity.INFO,
        **details: Any,
    ) -> None:
        """Record and publish an event once whatever the retries: its id and time come from ``key`` and ``at``."""
        digest = hashlib.sha256(f"{deployment.deployment_id}#{key}".encode()).hexdigest()[:16]
        event = DeploymentEvent.about(
            deployment, event_type, title, message, event_id=f"ev-{digest}", at=at, severity=severity, details=details
        )
        self._record_and_publish(event, deployment)

    def _change(self, deployment_id: str, change: Callable[[Deployment], None]) -> Deployment:
        return self.repository.update_deployment(deployment_id, change)

    @staticmethod
    def _enter(deployment: Deployment, phase: Phase, reason: str) -> None:
        if deployment.phase != phase or not deployment.phase_history:
            deployment.phase = phase
            deployment.phase_history.append(PhaseChange(phase=phase, at=clock.now(), reason=reason))

    def _configured_service(self, request: CanaryRequest) -> ServiceConfig:
        """The configuration of the service the request names, whose alias must be the target: a canary of
        one service never moves another's alias. A service the configuration lists is known by its
        ``function_name`` (else its own name) and ``alias``; one it does not list (the configuration's
        ``defaults`` apply, as to every other trigger) by its own name, and never by a function a listed
        service deploys."""
        target, name = request.target, request.service
        service = self.config.services.get(name)
        if service is not None:
            if service.function_name is None and service.ecs_service is not None:
                raise InvalidEventError(
                    f"service: {name!r} is an ECS service (services.{name}.ecs_service), not a Lambda alias"
                )
            function = service.function_name or name
        else:
            owner = next(
                (n for n, s in self.config.services.items() if (s.function_name or n) == target.function_name), None
            )
            if owner is not None:
                raise InvalidEventError(
                    f"service: function {target.function_name!r} is service {owner!r}'s (services.{owner}), "
                    f"not {name!r}'s"
                )
            service, function = self.config.defaults, name
        if target.function_name != function:
            raise InvalidEventError(
                f"target.function_name: {target.function_name!r} is not service {name!r}'s function {function!r}"
            )
        if target.alias != service.alias:
            raise InvalidEventError(f"target.alias: {target.alias!r} is not service {name!r}'s alias {service.alias!r}")
        return service

    def _owns(self, deployment: Deployment, request: dict[str, Any], execution_arn: str | None) -> bool:
        """Whether a rejected request's record is its own to end (:meth:`_may_drive`, from the raw request)."""
        if deployment.execution_arn == execution_arn:
            return True
        try:
            self._may_drive(deployment, CanaryRequest.model_validate(request), execution_arn)
        except (InvalidEventError, ValidationError):
            return False
        return True

    def _may_drive(self, deployment: Deployment, request: CanaryRequest, execution_arn: str | None) -> None:
        """Validate found a record under the request's deployment id: only the canary that record is may go on
        with it. That is the same execution's Validate again (the state machine retries the task), or the new
        execution of a person's retry (:mod:`deployguard.workflows.control`: a held canary set in progress again,
        waiting for its execution), claimed by one execution only. Anything else is refused: another service's
        or target's id, a deployment that ended, or one in progress under another execution."""
        who = f"deployment_id: deployment {deployment.deployment_id}"
        if deployment.service != request.service or deployment.target != request.target:
            raise InvalidEventError(f"{who} is another canary's (its service, target or version differ)")
        if deployment.version != request.version:
            raise InvalidEventError(f"{who} deploys version {deployment.version}, not {request.version}")
        if deployment.execution_arn == execution_arn:
            return  # this very execution's Validate, retried
        if deployment.status.is_terminal:
            ended = deployment.decision or deployment.status.value
            raise InvalidEventError(f"{who} has ended ({ended}): a new canary needs a new deployment id")
        if not execution_arn or not _retry_pending(deployment):
            raise InvalidEventError(f"{who} is in progress under another execution")
        assert deployment.control.last_action_at is not None  # _retry_pending
        key = f"{deployment.deployment_id}#{deployment.control.last_action_at.isoformat()}"
        if not self.repository.claim_once(RETRY_CLAIM, key, RETRY_CLAIM_TTL, execution_arn=execution_arn):
            claim = self.repository.find_claim(RETRY_CLAIM, key) or {}
            if claim.get("execution_arn") != execution_arn:
                raise InvalidEventError(f"{who}: its retry is driven by another execution")

    # ------------------------------------------------------------------ actions

    def validate(self, request: CanaryRequest, execution_arn: str | None = None) -> CanaryState:
        """Record the deployment and check its target before any traffic moves. ``execution_arn``: the
        execution running this canary (the state machine passes ``$$.Execution.Id``), kept on the record
        (a person's retry's new execution replaces its old one) so the minute tick can tell a canary whose
        execution ended before it finished (:mod:`deployguard.workflows.stale_canaries`). The target must be
        the named service's (:meth:`_configured_service`), and a record already under the deployment id this
        execution's own or a person's retry waiting for it (:meth:`_may_drive`): an execution never takes over
        another deployment."""
        service = self._configured_service(request)
        deployment_id = request.deployment_id or (execution_deployment_id(execution_arn) if execution_arn else None)
        # without an id of its own, the record is named after the execution: a retried Validate (or the
        # Rollback after it) finds the record an earlier attempt wrote, instead of leaving it in progress
        deployment = self.repository.find_deployment(deployment_id) if deployment_id else None
        if deployment is not None:  # refused before the alias is read: another deployment's id is not ours
            self._may_drive(deployment, request, execution_arn)
        shifter = LambdaTrafficShifter(request.target)
        alias = shifter.current()
        if alias.function_version != request.target.stable_version or alias.additional_weights:
            raise InvalidEventError(
                f"target: alias {request.target.function_name}:{request.target.alias} routes to "
                f"{alias.function_version} {alias.additional_weights or ''}, expected only the stable version "
                f"{request.target.stable_version} before a canary starts"
            )
        if deployment is None:
            deployment = Deployment(
                service=request.service,
                environment=request.environment or service.environment,
                version=request.version,
                strategy=Strategy.CANARY,
                target=request.target,
                status=DeploymentStatus.IN_PROGRESS,
                expected_duration_seconds=service.expected_duration_seconds
                or service.canary.total_seconds(service.judge.max_inconclusive_periods),
                execution_arn=execution_arn,
                **({"deployment_id": deployment_id} if deployment_id else {}),
            )
            self._enter(deployment, Phase.PRE_DEPLOYMENT, "canary requested")
            self.repository.create_deployment(deployment)
        elif execution_arn and deployment.execution_arn != execution_arn:
            taken = False

            def drive(d: Deployment) -> None:  # a person's retry: its new execution drives the record from now on
                nonlocal taken
                taken = _retry_pending(d)
                if taken:
                    d.execution_arn = execution_arn

            deployment = self._change(deployment.deployment_id, drive)
            if not taken and deployment.execution_arn != execution_arn:
                raise InvalidEventError(
                    f"deployment_id: deployment {deployment.deployment_id} is no longer waiting for its retry "
                    "to start: another execution drives it"
                )
        holder = alias_claim.claim(self.repository, request.target, deployment.deployment_id, execution_arn)
        if holder is not None:  # one canary at a time per alias: this one ends before any traffic moves
            self._refuse_claimed(deployment, holder)
        self.repository.audit(
            deployment.deployment_id, "validated", ACTOR, "target exists and routes only to the stable version"
        )
        plan = service.canary
        self._announce(
            deployment,
            EventType.DEPLOYMENT_STARTED,
            "Deployment Started",
            f"{deployment.service} {deployment.version}: canary over steps " + ", ".join(f"{w:g}%" for w in plan.steps),
        )
        failed = self._pre_deployment_checks(deployment, service)
        return CanaryState(
            deployment_id=deployment.deployment_id,
            step_index=min(request.start_step, len(plan.steps) - 1),
            steps=plan.steps,
            wait_seconds=plan.assessment_interval_seconds,
            next="done" if failed else "shift",  # a failed deployment is never shifted (shift and assess end it)
            decision="validation_failed" if failed else None,
            reason=failed,
            target=request.target,
        )

    def _refuse_claimed(self, deployment: Deployment, holder: Deployment) -> None:
        """Another canary of the alias is in progress (:mod:`deployguard.workflows.alias_claim`): this one ends
        rejected, audited (``alias_claim_refused``), and Validate fails (``InvalidEventError`` naming the other
        deployment); its Rollback leaves the alias, the other canary's, alone."""
        target = deployment.target
        assert isinstance(target, LambdaTarget)
        reason = (
            f"target: alias {target.function_name}:{target.alias} is claimed by deployment {holder.deployment_id} "
            f"(version {holder.version}, in progress, execution {holder.execution_arn or 'unknown'}): one canary "
            "at a time per alias; start this one once that one has ended"
        )
        now = clock.now()

        def change(d: Deployment) -> None:
            if not d.status.is_terminal:
                d.status, d.decision, d.ended_at = DeploymentStatus.FAILED, "rejected", now
                d.decision_reason = reason
                self._enter(d, Phase.FAILED, reason[:300])

        ended = self._change(deployment.deployment_id, change)
        self.repository.audit_once(deployment.deployment_id, "alias-claimed", ended.ended_at or now,
                                   "alias_claim_refused", ACTOR, reason, holder=holder.deployment_id)  # fmt: skip
        raise InvalidEventError(reason)

    def shift(self, state: CanaryState) -> CanaryState:
        deployment = self.repository.get_deployment(state.deployment_id)
        target = deployment.target
        if state.target is not None:  # the record's alias, never another one the state names
            _same_target(deployment, state.target)
        if deployment.status.is_terminal:  # e.g. rolled back by remediation: never shift again
            if isinstance(target, LambdaTarget):  # an earlier attempt's move may have landed after the end
                self._confirm_the_end(deployment, target, f"shift (step {state.step_index + 1})")
            return state.model_copy(update={"next": "done", "decision": deployment.decision})
        if not isinstance(target, LambdaTarget):
            raise InvalidEventError(f"deployment {deployment.deployment_id}: target is not a Lambda alias")
        weight = state.steps[state.step_index]
        if deployment.control.paused and deployment.canary_weight < weight / 100.0:
            # a pause that landed after the Assess that advanced, or before the first shift ("held at 0%"): the
            # weight holds, the canary waits. An earlier attempt of this step may have moved the alias and failed
            # before its record: the alias says which
            alias = LambdaTrafficShifter(target).current()
            if alias.weight_of(target.new_version) != weight / 100.0 or alias.function_version != target.stable_version:
                held = self._hold(deployment, target, alias, f"step {state.step_index + 1} ({weight:g}%) not started")
                # held before its first shift: the step is still to start (Assess starts it once resumed)
                step = state.step_index if held == 0 and state.step_started_at is None else deployment.step_index
                return state.model_copy(update={"step_index": step, "weight": held, "next": "wait"})
            self.repository.audit(
                deployment.deployment_id, "pause_after_move", ACTOR,
                f"paused after an earlier attempt moved the alias to {weight:g}%: step {state.step_index + 1} is "
                f"recorded as it is, and held there", weight=weight,
            )  # fmt: skip
        if state.step_index < deployment.step_index:
            # a late attempt of an earlier step (Step Functions gave up on it after its TimeoutSeconds and retried;
            # the invocation ran on): the canary is past it, its move would lower the traffic and the record
            return self._refuse_shift(deployment, state, weight, f"the record is at step {deployment.step_index + 1}")
        shifter = LambdaTrafficShifter(target)
        alias = shifter.current()
        if not (alias.routes(target, deployment.canary_weight) or alias.routes(target, weight / 100.0)):
            # the alias routes neither what the record says nor this step (an earlier attempt's move): someone
            # else moved it (a Promote that has not recorded yet, a person). Never overwritten
            self._refuse_shift(deployment, state, weight, f"the alias routes {_routing(alias)}, "
                               f"the record expects {deployment.canary_weight * 100:g}%")  # fmt: skip
            raise TrafficShiftError(
                f"{target.function_name}:{target.alias} routes {_routing(alias)}, not the "
                f"{deployment.canary_weight * 100:g}% deployment {deployment.deployment_id} recorded: not shifted"
            )
        try:  # only if the alias is still as read: a move landing in between is never overwritten
            moved = shifter.shift(weight / 100.0, expected=alias)
        except AliasMovedError as exc:
            deployment = self.repository.get_deployment(deployment.deployment_id)
            if deployment.status.is_terminal:  # ended (aborted, promoted) while it moved: the end stands
                self._refuse_shift(deployment, state, weight, f"{exc} (the deployment ended: {deployment.decision})")
                self._confirm_the_end(deployment, target, f"shift (step {state.step_index + 1})")
                promoted = deployment.decision == "promoted"
                return state.model_copy(
                    update={"next": "done", "decision": deployment.decision, "weight": 100.0 if promoted else 0.0}
                )
            self._refuse_shift(deployment, state, weight, str(exc))
            raise TrafficShiftError(str(exc)) from exc  # the state machine retries: it reads the alias again
        now = clock.now()
        lost = passed = paused = False

        def change(d: Deployment) -> None:
            nonlocal lost, passed, paused
            lost = d.status.is_terminal
            if lost:  # ended (aborted, remediated, promoted) while the alias moved: the record's end stands
                return
            passed = d.step_index > state.step_index
            if passed:  # a later step recorded while this (late) attempt moved: its record is not set back
                return
            paused = d.control.paused and not deployment.control.paused
            if paused:  # a person's pause landed while the alias moved: taken back below, held where it said
                return
            d.status = DeploymentStatus.IN_PROGRESS
            d.canary_weight = weight / 100.0
            d.step_index = state.step_index
            d.weight_changed_at = now
            self._enter(d, Phase.DEPLOYMENT_ACTIVE, f"traffic shifted to {weight:g}%")

        deployment = self._change(deployment.deployment_id, change)
        if passed:  # its move landed before the later step's (whose UpdateAlias read it): that step's routing stands
            return self._refuse_shift(deployment, state, weight, f"the record is at step {deployment.step_index + 1}")
        if paused:  # the pause answered "held at" the record's weight: the move is taken back, the canary waits
            held = self._take_back_for_pause(deployment, target, alias, moved, f"step {state.step_index + 1}")
            step = state.step_index if held == 0 and state.step_started_at is None else deployment.step_index
            return state.model_copy(update={"step_index": step, "weight": held, "next": "wait"})
        if lost:  # the alias back where the record's end put it: 100% new if promoted, else 100% stable
            self._undo_lost_move(deployment, target, f"shift to {weight:g}%", own=moved)
            promoted = deployment.decision == "promoted"
            return state.model_copy(
                update={"next": "done", "decision": deployment.decision, "weight": 100.0 if promoted else 0.0}
            )
        self.repository.audit(
            deployment.deployment_id,
            "traffic_shifted",
            ACTOR,
            f"step {state.step_index + 1}: {weight:g}% to canary",
            weight=weight,
            step=state.step_index,
        )
        first = state.step_index == 0
        self._announce(
            deployment,
            EventType.CANARY_STARTED if first else EventType.CANARY_STEP_ADVANCED,
            "Canary Started" if first else "Canary Step Advanced",
            f"{weight:g}% of traffic to version {target.new_version} (step {state.step_index + 1}/{len(state.steps)})",
            weight=weight,
        )
        return state.model_copy(
            update={
                "weight": weight,
                "step_started_at": now,
                "assessments_in_step": 0,
                "inconclusive_count": 0,
                "next": "wait",
            }
        )

    def _refuse_shift(self, deployment: Deployment, state: CanaryState, weight: float, why: str) -> CanaryState:
        """A shift that must not move the alias: audited (``traffic_move_refused``), nothing moves. Returns the
        state as the record has it (a late attempt's answer, which Step Functions no longer reads)."""
        logger.warning("shift refused", extra={"deployment_id": deployment.deployment_id, "reason": why})
        self.repository.audit(
            deployment.deployment_id, "traffic_move_refused", ACTOR,
            f"shift to step {state.step_index + 1} ({weight:g}%) not done: {why}",
            step=state.step_index, weight=weight,
        )  # fmt: skip
        return state.model_copy(
            update={"step_index": deployment.step_index, "weight": deployment.canary_weight * 100, "next": "wait"}
        )

    def assess_awaiting(self, state: CanaryState) -> CanaryState:
        """An assessment while the canary waits for approval before 100% (the state machine's AwaitApproval
        runs the token wait and these side by side): ``rollback`` on a failing verdict, ``promote`` once a
        person has approved (this fresh verdict is not failing), ``expired`` 24 h after the wait began, else
        ``await_approval`` (go on waiting); ``done`` when the record has ended. The wait between these looks is
        at least ``APPROVAL_LOOK_SECONDS``: each look costs about nine history events, and 24 h of looks at a
        10 s interval would pass Step Functions' 25,000 per execution."""
        result = self.assess(state, awaiting=True)
        if result.next == "await_approval" and result.wait_seconds < APPROVAL_LOOK_SECONDS:
            result = result.model_copy(update={"wait_seconds": APPROVAL_LOOK_SECONDS})
        return result

    def assess(self, state: CanaryState, awaiting: bool = False) -> CanaryState:
        # the judge and the assessment: imported by the first Assess task, not by Validate's cold start
        from deployguard.analysis.judge import judge_canary, live_view
        from deployguard.workflows.assessment import assessment_from_verdict

        if self.reader is None:
            from deployguard.aws.cloudwatch import MetricsReader

            self.reader = MetricsReader()
        deployment = self.repository.get_deployment(state.deployment_id)
        if deployment.status.is_terminal:  # ended elsewhere (remediation, a person): stop here
            return state.model_copy(update={"next": "done", "decision": deployment.decision})
        service = self._service(deployment)
        plan = service.canary
        now = clock.now()  # when this attempt's look began
        window = self.reader.canary_windows(
            [(deployment, service.judge.read_metrics)], now, plan.assessment_interval_seconds
        )[deployment.deployment_id]
        window = live_view(window)  # the newest minute's datapoints may still be arriving: judged next look
        verdict = judge_canary(window, service.judge)
        # the read may have outlived the task's TimeoutSeconds: Step Functions retried the look, and the canary
        # may have gone on (the retry decided, the next step shifted, promoted). Such a late attempt records nothing
        stale = self._stale_look(state, now, awaiting)
        if stale is not None:
            return stale
        assessment = assessment_from_verdict(deployment, window, verdict, service.health)
        assessment.details[LOOK_BEGAN] = now.isoformat()  # a later attempt of the look tells an older one's by it
        self.repository.add_assessment(assessment)
        publish_verdict_metrics(deployment, assessment)
        told = False
        if self.alerts is not None and not deployment.control.skip_analysis:  # skipped: recorded, not acted on
            if verdict.decision == Decision.FAILING:  # told before the alert engine's remediation may end the canary
                self.repository.audit(
                    deployment.deployment_id, "assessed", ACTOR, verdict.summary,
                    decision=verdict.decision.value, next="rollback", weight=state.weight,
                )  # fmt: skip
                told = True
                self._mark_rolling_back(deployment.deployment_id, verdict.summary, (state, now))  # before remediation
            alerts = self.alerts
            self._alerting(deployment.deployment_id, "assessment", lambda: alerts.on_assessment(deployment, assessment))
            deployment = self.repository.get_deployment(deployment.deployment_id)
            if deployment.decision == "promoted" or (
                not deployment.status.is_terminal and _moved_on(deployment, state, now) is not None
            ):  # the canary went on (a retry of this look) while the alerts were told: this attempt is late
                return self._stale(deployment, state, now, awaiting, str(_moved_on(deployment, state, now)))
            if deployment.status.is_terminal:  # remediation already rolled it back: say so, with the verdict once
                deployment = self._change(deployment.deployment_id, lambda d: _with_verdict(d, verdict.summary))
                reason = deployment.decision_reason or verdict.summary
                self._announce(
                    deployment,
                    EventType.ROLLBACK_INITIATED,
                    "Rollback Initiated",
                    reason,
                    severity=Severity.ERROR,
                    verdict=verdict,
                )
                self._announce(
                    deployment,
                    EventType.ROLLBACK_COMPLETED,
                    "Rollback Completed",
                    f"{reason}; alias back at 100% version {deployment.target.stable_version}",  # type: ignore[union-attr]
                    severity=Severity.CRITICAL,
                    verdict=verdict,
                )
                return state.model_copy(update={"next": "done", "decision": deployment.decision, "reason": reason})
        if state.last_verdict is not None and state.last_verdict != verdict.decision:
            self._announce(
                deployment,
                EventType.ASSESSMENT_STATUS_CHANGED,
                f"Canary {verdict.decision.value.title()}",
                verdict.summary,
                severity=Severity.CRITICAL if verdict.decision == Decision.FAILING else Severity.INFO,
                verdict=verdict,
                status=verdict.decision.value,
                previous=state.last_verdict.value,
            )
        step_elapsed = state.step_started_at is not None and (
            (now - state.step_started_at).total_seconds() >= plan.step_duration_seconds
        )
        update: dict[str, Any] = {
            "assessments_in_step": state.assessments_in_step + 1,
            "last_verdict": verdict.decision,
            "reason": verdict.summary,
        }
        decision = effective_decision(deployment.control, verdict.decision)  # people's control (workflows.control)
        if awaiting:
            update["next"] = self._while_awaiting(deployment, decision, state, now)
            if update["next"] == "expired":
                update["reason"] = "approval expired after 24 h"
        elif decision == Decision.FAILING:
            update["next"] = "rollback"
        elif not step_elapsed:
            update["next"] = "wait"
        elif decision == Decision.HEALTHY:
            last = state.step_index + 1 >= len(state.steps)
            update["next"] = "promote" if last else "advance"
            if not last:
                update["step_index"] = state.step_index + 1
        else:
            count = state.inconclusive_count + 1
            update["inconclusive_count"] = count
            if count > service.judge.max_inconclusive_periods:
                update["next"] = "rollback" if service.judge.on_no_evidence == "rollback" else "hold"
                update["reason"] = _no_evidence_reason(count - 1, state.weight, verdict.summary)
            else:
                update["next"] = "wait"
        if not awaiting and decision != Decision.FAILING and _not_started(deployment, state):
            # held at 0% before its first shift (a pause, :meth:`shift`): once resumed, the step starts now
            update.pop("step_index", None)
            update["next"] = "advance"
        steered = steer(deployment.control, update["next"], decision, service.approval_before_full_traffic)
        if not awaiting and steered != update["next"]:  # paused, promote requested, or approval before 100%
            update.pop("step_index", None)
            update["next"] = steered
        if (
            not awaiting
            and update["next"] == "await_approval"
            and decision != Decision.FAILING
            and approved(deployment)
        ):
            # approved before 100% already (a promotion hold sent it back to waiting): that approval still counts,
            # the canary is not asked again (and _begin_awaiting would take the approval back)
            update.pop("step_index", None)
            update["next"] = "promote"
        if not awaiting and update["next"] == "await_approval":
            current = self._begin_awaiting(deployment.deployment_id, (state, now))
            why = _moved_on(current, state, now)
            if why is None:
                update["approval_requested_at"] = now
            elif current.status.is_terminal:  # ended (a person's abort) since it was read: nothing to approve
                update["next"], update["decision"] = "done", current.decision
            else:  # the canary went on without this (late) attempt: no approval wait begins
                return self._stale(current, state, now, awaiting, why)
        if update["next"] == "rollback" and not told:
            self._mark_rolling_back(deployment.deployment_id, str(update["reason"]), (state, now))
        if not told or update["next"] != "rollback":
            self.repository.audit(
                deployment.deployment_id,
                "assessed",
                ACTOR,
                verdict.summary,
                decision=verdict.decision.value,
                next=update["next"],
                weight=state.weight,
            )
        return state.model_copy(update=update)

    @staticmethod
    def _while_awaiting(deployment: Deployment, decision: Decision, state: CanaryState, now: datetime) -> str:
        """What an assessment during the approval wait leads to (:meth:`assess_awaiting`). Inconclusive
        verdicts go on waiting: the person decides, and no verdict that is failing is ever promoted."""
        if decision == Decision.FAILING:
            return "rollback"
        if approved(deployment):  # a person approved (the token answered), not a plain promote request: that is
            return "promote"  # the approval only once the token wait has begun (control._promote answers it then)
        if state.approval_requested_at is not None and now - state.approval_requested_at >= APPROVAL_TTL:
            return "expired"
        return "await_approval"

    def _stale_look(self, state: CanaryState, began: datetime, awaiting: bool) -> CanaryState | None:
        """The answer of a late Assess attempt (begun at ``began``) once the canary has gone on without it, else
        None (the look is current: a retry of a look whose earlier attempts recorded nothing is current). Gone
        on: the record ended, is at a later step, its traffic moved after the look began (the next ShiftTraffic,
        a hold), or an assessment was recorded after the look began (a retry of this look, or a later look) by
        an attempt that began after this one: an older attempt's that landed meanwhile does not make this one
        stale (the newest attempt is the one Step Functions reads)."""
        deployment = self.repository.get_deployment(state.deployment_id)
        why = _moved_on(deployment, state, began)
        if why is None:
            latest = self.repository.latest_assessment(state.deployment_id)
            if latest is not None and latest.at > began and not _older_look(latest.details.get(LOOK_BEGAN), began):
                why = f"an assessment was recorded at {latest.at.isoformat()}, after this look began"
        return None if why is None else self._stale(deployment, state, began, awaiting, why)

    def _stale(
        self, deployment: Deployment, state: CanaryState, began: datetime, awaiting: bool, why: str
    ) -> CanaryState:
        """A late Assess attempt changes nothing: no verdict, phase or approval wait recorded; audited once
        (``assessment_stale``). Its answer, which Step Functions no longer reads, says what the record says."""
        logger.warning("late assessment ignored", extra={"deployment_id": deployment.deployment_id, "reason": why})
        key = f"assess-stale#{state.step_index}#{state.assessments_in_step}#{began.isoformat()}"
        self.repository.audit_once(
            deployment.deployment_id, key, clock.now(), "assessment_stale", ACTOR,
            f"assessment of step {state.step_index + 1} begun at {began.isoformat()} not recorded: {why}",
            step=state.step_index, began=began.isoformat(),
        )  # fmt: skip
        if deployment.status.is_terminal:
            return state.model_copy(update={"next": "done", "decision": deployment.decision})
        return state.model_copy(update={"next": "await_approval" if awaiting else "wait"})

    def _begin_awaiting(self, deployment_id: str, look: tuple[CanaryState, datetime]) -> Deployment:
        """The canary goes to its approval gate: a promote request that led here is answered by the gate (an
        approval sets it again, which is how the assessments of the wait tell one). Not when the record has
        ended meanwhile (a person's abort) or gone on without this look (:func:`_moved_on`). Returns the record."""

        def change(d: Deployment) -> None:
            if _moved_on(d, *look) is None:
                d.control.promote_requested = False

        return self._change(deployment_id, change)

    def _mark_rolling_back(self, deployment_id: str, reason: str, look: tuple[CanaryState, datetime]) -> None:
        """The record says the canary is rolling back (phase ``failed`` while in progress) from the moment
        Assess decides it: people's verbs are refused from then on (:mod:`deployguard.workflows.control`)
        instead of being accepted and never honoured. Never on a record that ended or went on without this
        look (:func:`_moved_on`: a late attempt). Best effort: the rollback never waits for it."""

        def change(d: Deployment) -> None:
            if _moved_on(d, *look) is None:
                self._enter(d, Phase.FAILED, f"rolling back: {reason}"[:300])

        try:
            self._change(deployment_id, change)
        except Exception:
            logger.exception("cannot mark the canary rolling back", extra={"deployment_id": deployment_id})

    def promote(self, state: CanaryState) -> CanaryState:
        """Traffic first: the alias to 100% new and verified, then the record and the announcement.

        Never over a record that has ended otherwise (a person's abort, remediation): read before the
        alias moves, and, if the end lands while it moves, the alias goes back to 100% stable."""
        deployment = self.repository.get_deployment(state.deployment_id)
        target = _same_target(deployment, state.target)  # the record's alias, never another one the state names
        if deployment.status.is_terminal and deployment.decision != "promoted":
            # an earlier attempt's move may have landed after the end (and its undo failed, or it died)
            self._confirm_the_end(deployment, target, "promotion")
            return state.model_copy(
                update={"weight": 0.0, "next": "done", "decision": deployment.decision, "target": target,
                        "reason": deployment.decision_reason}
            )  # fmt: skip
        hold_ends: str | None = None  # a promotion hold that ends once the promotion is recorded: why it ended
        if deployment.control.paused and not deployment.status.is_terminal:
            # a pause that landed after the Assess that promoted: nothing moves, the canary waits (RoutePromotion).
            # Unless an earlier attempt already moved the alias to 100% (and failed before its record): the
            # promotion is done, and the record says so
            alias = LambdaTrafficShifter(target).current()
            if alias.weight_of(target.new_version) != 1.0:
                held = self._hold(deployment, target, alias, "promotion not done")
                return state.model_copy(update={"next": "wait", "target": target, "weight": held})
            self.repository.audit(
                deployment.deployment_id, "pause_after_move", ACTOR,
                "paused after an earlier attempt moved the alias to 100%: the promotion is recorded as it is",
                weight=100.0,
            )  # fmt: skip
        elif not deployment.status.is_terminal:
            waits, hold_ends = self._promotion_hold(deployment, target, state)
            if waits is not None:
                return waits
        shifter = LambdaTrafficShifter(target)
        # read before the move, so a pause landing while it moves can take it back (paused already: recorded as is)
        before = None if deployment.control.paused or deployment.status.is_terminal else shifter.current()
        too_late = before is not None and before.weight_of(target.new_version) == 1.0
        if too_late:  # an earlier attempt moved it already: a pause landing now finds the traffic at 100%, too late
            before = None  # to hold; the promotion is recorded as it is (as when the pause is read first, above)
        moved = shifter.promote_verified()
        ended_at = clock.now()
        out = state.model_copy(
            update={"weight": 100.0, "next": "done", "decision": "promoted", "target": target, "ended_at": ended_at}
        )
        recorded = self._record_or_defer(out, unless_paused=before is not None)
        if too_late and recorded is not None and recorded.decision == "promoted" and recorded.control.paused:
            self.repository.audit(
                deployment.deployment_id, "pause_after_move", ACTOR,
                "paused after an earlier attempt moved the alias to 100%: too late to hold it, the promotion is "
                "recorded as it is", weight=100.0,
            )  # fmt: skip
        if recorded is not None and before is not None and not recorded.status.is_terminal:
            # a person's pause landed while the alias moved (its answer said "held at" the record's weight)
            held = self._take_back_for_pause(recorded, target, before, moved, "the promotion")
            return state.model_copy(update={"next": "wait", "target": target, "weight": held})
        if recorded is not None and recorded.decision != "promoted":  # lost the race to an abort
            self._undo_lost_move(recorded, target, "promotion", own=moved)
            return out.model_copy(
                update={"weight": 0.0, "decision": recorded.decision, "reason": recorded.decision_reason,
                        "ended_at": recorded.ended_at}
            )  # fmt: skip
        if recorded is not None:
            if hold_ends is not None:  # said once the record is promoted (otherwise notify says how it ended)
                from deployguard.workflows import promotion_hold

                promotion_hold.end(self.repository, recorded, ended_at, "promoted", hold_ends)
            self._confirm_promoted(recorded, target)
        deferred = None  # a pause that lands while the alias moves is NotifyOutcome's to honour then (as above)
        if recorded is None and before is not None:
            deferred = {"function_version": before.function_version, "additional_weights": before.additional_weights}
        return out.model_copy(update={"recorded": recorded is not None, "promoted_from": deferred})

    def _promotion_hold(
        self, deployment: Deployment, target: LambdaTarget, state: CanaryState
    ) -> tuple[CanaryState | None, str | None]:
        """No 100% while people are asked whether to roll the canary back (:mod:`deployguard.workflows.
        promotion_hold`): the state to go on with (``wait`` at the alias's weight; ``rollback`` after a yes;
        the ``on_no_evidence`` outcome when nobody answered), or None to promote, with why a hold that was
        running ends (said once the promotion is recorded: an abort may still land while the alias moves).
        Requests that cannot be read fail the task: Promote's retries, then its Rollback (never 100% without
        knowing)."""
        from deployguard.workflows import promotion_hold  # only at the promotion: not the cold start

        service = self._service(deployment)
        limit = promotion_hold.bound(service)
        actions = self.config.alerting.remediation.actions
        requests = promotion_hold.rollback_requests(self.repository, actions, deployment.deployment_id)
        # only this run's: a held canary retried by a person starts again, its earlier run's requests answered
        # (or lapsed) for that run, which ended held; they would hold or roll back every retry for ever
        began = _run_began(deployment)
        requests = [a for a in requests if a.requested_at >= began]
        now = clock.now()
        # the time people held the canary paused since the hold began does not count against its bound
        paused = deployment.control.paused_for(now)
        before = timedelta(seconds=state.promotion_hold_paused_before or 0)
        found = promotion_hold.look(requests, now, state.promotion_held_since, limit, paused - before)
        if found.outcome == "hold":
            alias = LambdaTrafficShifter(target).current()
            weight = alias.weight_of(target.new_version) * 100
            if weight == 100.0:  # an earlier attempt of this Promote moved it already: the promotion is recorded
                return None, None
            if state.promotion_held_since is not None:
                since = state.promotion_held_since
            else:
                since, before = promotion_hold.begin(self.repository, deployment, now, found, limit, weight)
            found = promotion_hold.look(requests, now, since, limit, paused - before)  # a retry's that began long ago
            hold = {"promotion_held_since": since, "promotion_hold_paused_before": before.total_seconds()}
            if found.outcome == "hold":
                wait = max(state.wait_seconds, promotion_hold.HOLD_LOOK_SECONDS)
                return state.model_copy(
                    update={"next": "wait", "target": target, "weight": weight, "wait_seconds": wait, **hold}
                ), None  # fmt: skip
            state = state.model_copy(update=hold)
        if found.outcome == "promote":
            return None, (found.reason if state.promotion_held_since is not None else None)
        next_: NextStep = "rollback"
        if found.outcome == "no_evidence" and service.judge.on_no_evidence == "hold":
            next_ = "hold"
        reason = f"not promoted: {found.reason}"
        if state.promotion_held_since is not None:
            promotion_hold.end(self.repository, deployment, now, "held" if next_ == "hold" else "rolled_back", reason)
        else:  # nothing to wait for: people had answered yes, or nobody did before the request expired
            promotion_hold.refuse(self.repository, deployment, now, found)
        return state.model_copy(update={"next": next_, "target": target, "reason": reason}), None

    def _confirm_promoted(self, deployment: Deployment, target: LambdaTarget) -> None:
        """The record says promoted: read the alias again. A late move that landed after the promotion's move
        (a ShiftTraffic attempt Step Functions had given up on, still running) is undone: 100% new again,
        audited (``traffic_move_undone``). Only a split between this deployment's two versions, as the
        reconciler's promoted checks: an alias wholly on one version (an emergency rollback's, landed just
        after the promotion recorded) or on others is left alone, and the move is made only while the alias is
        still as read (its RevisionId: a move landing in between is never overwritten)."""
        alias = LambdaTrafficShifter(target).current()
        if not alias.split_between(target):
            return
        if self._refused(deployment, target, "the promotion's check", alias):
            return
        try:
            LambdaTrafficShifter(target).promote_verified(expected=alias)
        except AliasMovedError as exc:  # someone moved it meanwhile: theirs stands; the promoted checks look again
            self.repository.audit(
                deployment.deployment_id, "traffic_move_refused", ACTOR,
                f"the promotion's check left the alias alone: {exc}", alias=_routing(alias),
            )  # fmt: skip
            return
        self.repository.audit(
            deployment.deployment_id, "traffic_move_undone", ACTOR,
            f"a late move undone: the alias routed {_routing(alias)} once the promotion recorded",
            alias="100% new", decision=deployment.decision,
        )  # fmt: skip

    def _hold(self, deployment: Deployment, target: LambdaTarget, alias: AliasState, what: str) -> float:
        """A paused canary holds where its alias really is (read, not the record's word): the record's weight
        follows the alias when they differ, so neither the record nor ``traffic_held`` claims a split the
        alias does not route. Returns the held weight in percent."""
        actual = alias.weight_of(target.new_version)
        if actual != deployment.canary_weight:

            def change(d: Deployment) -> None:
                if not d.status.is_terminal:
                    d.canary_weight, d.weight_changed_at = actual, clock.now()

            self._change(deployment.deployment_id, change)
        routes = f"{alias.function_version} {alias.additional_weights or ''}".strip()
        self.repository.audit(
            deployment.deployment_id, "traffic_held", ACTOR,
            f"paused: {what}; held at {actual * 100:g}%"
            + (f" (the alias routes {routes}; the record said {deployment.canary_weight * 100:g}%)"
               if actual != deployment.canary_weight else ""),
            weight=actual * 100, alias=routes,
        )  # fmt: skip
        return actual * 100

    def _take_back_for_pause(
        self, deployment: Deployment, target: LambdaTarget, before: AliasState, moved: AliasState, move: str
    ) -> float:
        """A person's pause landed while ``move`` moved the alias from ``before`` to ``moved``: its answer said the
        canary holds at the record's weight, so the move is taken back (only while the alias still routes what this
        task set, its RevisionId guarding it) and the canary holds there; the move left in place if someone moved
        the alias since (the record then follows the alias, :meth:`_hold`). Returns the held weight in percent."""
        shifter = LambdaTrafficShifter(target)
        alias = shifter.current()
        taken_back = ""
        if alias == moved and not self._not_ours(deployment, target, alias, own=moved):
            try:
                shifter.restore(before, expected=alias)
                taken_back = ": taken back"
            except AliasMovedError:
                pass  # moved by someone else in between: held where it is
            except TrafficShiftError as exc:  # Lambda refused it after its retries: held where it is, and said so
                taken_back = f"; it could not be taken back ({exc})"
            alias = shifter.current()
        return self._hold(deployment, target, alias, f"the pause landed while {move} moved the alias{taken_back}")

    def _undo_lost_move(
        self,
        deployment: Deployment,
        target: LambdaTarget,
        move: str,
        alias: AliasState | None = None,
        own: AliasState | None = None,
    ) -> None:
        """The record ended while this task moved the alias: put it back where the end put it, so the
        traffic never contradicts the record: 100% new after a promotion (a late ShiftTraffic attempt),
        100% stable after anything else (rolled back, aborted, held, failed). Only while the alias is still
        this deployment's (:meth:`_not_ours`): a later deployment's alias is refused, and audited. ``own``:
        the routing this very task just set (its move is undone while the alias still shows it)."""
        if self._refused(deployment, target, move, alias, own):
            return
        promoted = deployment.decision == "promoted"
        if promoted:
            LambdaTrafficShifter(target).promote_verified()
        else:
            LambdaTrafficShifter(target).rollback_verified()
        self.repository.audit(
            deployment.deployment_id, "traffic_move_undone", ACTOR,
            f"{move} undone: the deployment ended ({deployment.decision}) while the alias moved",
            alias="100% new" if promoted else "100% stable", decision=deployment.decision,
        )  # fmt: skip

    def _confirm_the_end(self, deployment: Deployment, target: LambdaTarget, move: str) -> None:
        """A retried step that finds the record ended: an earlier attempt's move may have landed after the
        end, its undo failed or never ran. Read the alias; undo that move if it contradicts the record."""
        version = target.new_version if deployment.decision == "promoted" else target.stable_version
        alias = LambdaTrafficShifter(target).current()
        if alias.weight_of(version) != 1.0:
            self._undo_lost_move(deployment, target, f"an earlier attempt's {move}", alias)

    def _not_ours(
        self, deployment: Deployment | None, target: LambdaTarget, alias: AliasState, own: AliasState | None = None
    ) -> str:
        """Why the alias is no longer this deployment's to move ("" while it is): a later deployment of the
        same service and environment started after this one ended (it may ship the same versions again), or
        the alias routes versions this deployment never shipped and none of its new version's traffic. An
        alias that still routes exactly what this task itself set (``own``) is this task's to put back."""
        if own is not None and alias == own:
            return ""
        if deployment is not None and deployment.ended_at is not None:  # a running canary's alias is its own
            newer = self.repository.superseding(deployment)
            if newer is not None:
                return (
                    f"deployment {newer.deployment_id} (version {newer.version}) started after this one ended "
                    f"({deployment.decision}): the alias is its now"
                )
        versions = {alias.function_version, *alias.additional_weights}
        foreign = versions - {target.stable_version, target.new_version}
        if foreign and target.new_version not in versions:
            return f"the alias routes version {', '.join(sorted(foreign))}, which this deployment never shipped"
        return ""

    def _refused(
        self,
        deployment: Deployment | None,
        target: LambdaTarget,
        move: str,
        alias: AliasState | None = None,
        own: AliasState | None = None,
    ) -> bool:
        """A late move (a retried or leftover task of a deployment that ended) is refused when the alias is
        no longer its own; the refusal is audited (``traffic_move_refused``) on the deployment."""
        alias = alias or LambdaTrafficShifter(target).current()
        why = self._not_ours(deployment, target, alias, own)
        if not why:
            return False
        deployment_id = deployment.deployment_id if deployment is not None else None
        logger.warning("late alias move refused", extra={"deployment_id": deployment_id, "reason": why})
        if deployment_id is not None:
            self.repository.audit(
                deployment_id, "traffic_move_refused", ACTOR, f"{move} not done: {why}",
                alias=f"{alias.function_version} {alias.additional_weights or ''}".strip(),
            )  # fmt: skip
        return True

    def rollback(self, state: dict[str, Any], execution_arn: str | None = None) -> CanaryState | dict[str, Any]:
        """Put the alias back at 100% stable and verify it; only then record and announce.

        Takes the raw state: it also runs after failures. It fails (and the state machine
        retries it) only while the alias cannot be moved back. ``execution_arn`` names the record a
        Validate that failed may have left when the request gave no deployment id."""
        deployment_id = state.get("deployment_id")
        error = state.get("error")
        reason = state.get("reason") or "rollback requested"
        if error:
            reason = _error_reason(error)
        if not deployment_id:
            request = state.get("deployment") or state
            request = request if isinstance(request, dict) else {}
            rejected = self._reject_unfinished(
                request.get("deployment_id") or (execution_deployment_id(execution_arn) if execution_arn else None),
                reason,
                request,
                execution_arn,
            )
            parsed = _lambda_target(request.get("target"))
            # only this canary's own record: a request refused for naming another deployment (or an alias
            # another canary is moving) leaves that one's alias alone
            holder = alias_claim.holder_of(self.repository, parsed) if parsed is not None and rejected else None
            if holder is not None and holder != rejected:  # refused for another canary's alias: that one's to move
                logger.warning("rejected canary: the alias is another canary's", extra={"holder": holder})
            elif parsed is not None and rejected:
                try:  # validation never moves traffic: this only makes sure, on an alias still its own
                    if not self._refused(self._readable_record(rejected), parsed, "the rejected canary's rollback"):
                        LambdaTrafficShifter(parsed).rollback_verified()
                except TrafficShiftError:
                    logger.exception("cannot confirm the alias of a rejected canary", extra={"reason": reason})
            out: dict[str, Any] = {"next": "done", "decision": "rejected", "reason": reason}
            # a record it ended is announced by NotifyOutcome like any other end
            return {"deployment_id": rejected, **out} if rejected else out
        target = _lambda_target(state.get("target"))
        if target is None:  # a state from before targets were carried: read the record
            try:
                target = self._lambda_target_of(deployment_id)
            except NotFoundError:
                return {"deployment_id": deployment_id, "next": "done", "decision": "rejected", "reason": reason}
        record = self._readable_record(deployment_id)
        if record is not None:  # the record's alias, never another one the state names
            target = _same_target(record, target)
        ended = record if record is not None and record.status.is_terminal else None
        refused = ended is not None and self._refused(ended, target, "rollback")
        if not refused:  # traffic first: no record needed to move it; one that ended is only checked
            LambdaTrafficShifter(target).rollback_verified()
        hold = state.get("next") == "hold" or (isinstance(error, dict) and error.get("Error") == APPROVAL_EXPIRED)
        out = {k: v for k, v in state.items() if k != "error"}
        out.update(
            {
                "weight": 0.0,
                "next": "done",
                "decision": "held" if hold else "rolled_back",
                "reason": reason,
                "target": target.model_dump(mode="json"),
                "ended_at": clock.now().isoformat(),
            }
        )
        deployment = self._record_or_defer(out)
        out["recorded"] = deployment is not None
        if deployment is not None:  # ended elsewhere first (remediation): the record's decision stands
            out.update({"decision": deployment.decision, "reason": deployment.decision_reason})
        # a leftover Promote attempt may have moved the alias after ours and recorded before us (we overrode
        # its promotion): the record says rolled back, so the alias must still be at 100% stable
        alias = LambdaTrafficShifter(target).current()
        if (
            not refused
            and alias.weight_of(target.stable_version) != 1.0
            and not self._refused(deployment, target, "the rollback's check", alias)
        ):
            LambdaTrafficShifter(target).rollback_verified()
            self.repository.audit(
                deployment_id, "traffic_move_undone", ACTOR,
                "a late move undone: the alias left 100% stable while the rollback recorded", alias="100% stable",
            )  # fmt: skip
        return CanaryState.model_validate(out) if "steps" in out else out

    def _readable_record(self, deployment_id: str) -> Deployment | None:
        """The record (its target, and whether it has ended already: a retried Rollback, or one that runs after
        a person's abort); None when it cannot be read (the rollback then moves the state's alias all the same)."""
        try:
            return self.repository.find_deployment(deployment_id)
        except Exception:
            logger.exception("rollback: cannot read the record", extra={"deployment_id": deployment_id})
            return None

    # ------------------------------------------------------------------ recording an outcome

    def _lambda_target_of(self, deployment_id: str) -> LambdaTarget:
        deployment = self.repository.get_deployment(deployment_id)
        if not isinstance(deployment.target, LambdaTarget):
            raise InvalidEventError(f"deployment {deployment_id}: target is not a Lambda alias")
        return deployment.target

    def _record_or_defer(self, state: CanaryState | dict[str, Any], unless_paused: bool = False) -> Deployment | None:
        """Record the outcome the traffic already shows; on failure leave it to ``notify`` (None). ``unless_paused``:
        a promotion is not recorded over a pause that landed while its alias moved (the record is returned as is,
        not ended: the caller takes the move back)."""
        try:
            return self._record_outcome(state, unless_paused)
        except Exception:
            deployment_id = state.deployment_id if isinstance(state, CanaryState) else state.get("deployment_id")
            logger.exception("traffic moved, recording deferred", extra={"deployment_id": deployment_id})
            return None

    def _schedule_promotion_check(self, deployment_id: str, ended_at: datetime) -> None:
        """The reconciler checks a promoted alias for a short while (a late move may still land): its first
        check (:data:`deployguard.workflows.reconciler.PROMOTION_CHECK_SCHEDULE`). Best effort: Promote has
        read the alias back already."""
        from deployguard.workflows.reconciler import PROMOTION_CHECK_SCHEDULE

        try:
            self.repository.schedule_promotion_check(deployment_id, ended_at + PROMOTION_CHECK_SCHEDULE[0])
        except Exception:
            logger.exception("cannot schedule the promotion's traffic checks", extra={"deployment_id": deployment_id})

    def _record_outcome(self, state: CanaryState | dict[str, Any], unless_paused: bool = False) -> Deployment:
        """The record, audit and announcements of a promotion, rollback or hold whose traffic has moved.

        Idempotent: keyed by the outcome and its time, so a retry completes what an earlier
        attempt began and duplicates nothing. A deployment ended elsewhere first (remediation)
        keeps its own record and announcements."""
        data = state.model_dump(mode="json") if isinstance(state, CanaryState) else state
        decision = str(data["decision"])
        reason = data.get("reason") or decision
        ended_at = datetime.fromisoformat(str(data["ended_at"]))
        deployment_id = str(data["deployment_id"])

        ours = False

        def change(d: Deployment) -> None:
            nonlocal ours
            overridden = d.decision == "promoted" and decision != "promoted"  # a promotion rolled back after all
            ours = d.ended_at == ended_at and d.decision == decision  # an earlier attempt of this step wrote it
            d.control.awaiting_approval, d.control.approval_token = False, None  # no approval wait outlives the end
            if d.status.is_terminal and not overridden:
                return  # ended already: by an earlier attempt of this step, or elsewhere
            if unless_paused and d.control.paused:
                return  # a pause landed while the alias moved: the caller takes the move back and holds
            ours = True
            d.decision, d.decision_reason, d.ended_at = decision, reason, ended_at
            if decision == "promoted":
                d.canary_weight, d.status = 1.0, DeploymentStatus.SUCCEEDED
                self._enter(d, Phase.MONITORING, "promoted to 100%; post-deployment monitoring for 24 hours")
            else:
                d.canary_weight = 0.0
                d.status = DeploymentStatus.STOPPED if decision == "held" else DeploymentStatus.ROLLED_BACK
                self._enter(d, Phase.FAILED, reason)

        deployment = self._change(deployment_id, change)
        if deployment.status.is_terminal:
            alias_claim.release(self.repository, deployment)  # the alias is free for the next canary
        if not ours:
            return deployment  # ended elsewhere first (at the same instant, maybe); whoever ended it announced it
        target = deployment.target
        assert isinstance(target, LambdaTarget)
        if decision == "promoted":
            self._schedule_promotion_check(deployment_id, ended_at)
            self.repository.audit_once(deployment_id, "promoted", ended_at, "promoted", ACTOR, reason)
            self._announce_once(
                deployment, "promotion.completed", ended_at, EventType.PROMOTION_COMPLETED, "Promotion Completed",
                f"version {target.new_version} now receives 100% of traffic",
            )  # fmt: skip
            return deployment
        hold = decision == "held"
        self.repository.audit_once(deployment_id, "rollback", ended_at, "rolled_back", ACTOR, reason,
                                   alias="100% stable", held=hold)  # fmt: skip
        self._announce_once(
            deployment, "rollback.initiated", ended_at, EventType.ROLLBACK_INITIATED, "Rollback Initiated", reason,
            severity=Severity.ERROR,
        )  # fmt: skip
        self._announce_once(
            deployment, "rollback.completed", ended_at, EventType.ROLLBACK_COMPLETED,
            "Rollback Completed" if not hold else "Canary Held For A Person",
            f"{reason}; alias back at 100% version {target.stable_version}",
            severity=Severity.CRITICAL if not hold else Severity.WARNING,
        )  # fmt: skip
        return deployment

    def _reject_unfinished(
        self, deployment_id: Any, reason: str, request: dict[str, Any], execution_arn: str | None
    ) -> str | None:
        """A canary rejected before it started: a record it left in progress is ended (best effort).
        Returns the id of the record it ended as rejected (now or by an earlier attempt), else None.
        Only its own record (:meth:`_may_drive`): a request that named another deployment's id leaves it."""
        if not isinstance(deployment_id, str) or not deployment_id:
            return None
        try:
            deployment = self.repository.find_deployment(deployment_id)
            if deployment is None or not self._owns(deployment, request, execution_arn):
                return None
            if deployment.status.is_terminal:
                return deployment_id if deployment.decision == "rejected" else None
            now = clock.now()

            def change(d: Deployment) -> None:
                if not d.status.is_terminal:
                    d.status, d.decision, d.ended_at = DeploymentStatus.FAILED, "rejected", now
                    d.decision_reason = reason
                    self._enter(d, Phase.FAILED, reason)

            deployment = self._change(deployment_id, change)
            alias_claim.release(self.repository, deployment)
            self.repository.audit_once(deployment_id, "rejected", now, "rejected", ACTOR, reason)
            return deployment_id
        except Exception:
            logger.exception("cannot end the rejected canary's record", extra={"deployment_id": deployment_id})
            return None

    def notify(self, state: dict[str, Any]) -> dict[str, Any]:
        """Finish recording the outcome if the traffic move could not, then announce how the canary
        ended (after promotion, rollback or a failed rollback). Raises while AWS fails, so the
        state machine retries it; every write and event is keyed, so retries duplicate nothing."""
        deployment_id = state.get("deployment_id")
        if not deployment_id:
            # only a canary rejected before it had a record gets here: there is nothing to announce it on
            logger.warning(
                "notify: no state.deployment_id, nothing recorded to announce",
                extra={"decision": state.get("decision"), "reason": state.get("reason")},
            )
            return state
        error = state.get("error")
        if state.get("recorded") is False and not error:
            moved_from = state.get("promoted_from") if state.get("decision") == "promoted" else None
            recorded = self._record_outcome(state, unless_paused=isinstance(moved_from, dict))
            target = _lambda_target(state.get("target"))
            if isinstance(moved_from, dict) and target is not None and not recorded.status.is_terminal:
                return self._hold_deferred_promotion(state, recorded, target, moved_from)  # paused as it moved
            state = {**state, "recorded": True}
            if state.get("decision") == "promoted" and recorded.decision != "promoted" and target is not None:
                self._undo_lost_move(recorded, target, "promotion")  # ended otherwise while the alias moved
                state.update({"weight": 0.0, "decision": recorded.decision, "reason": recorded.decision_reason})
            elif recorded.decision == "promoted" and target is not None:
                self._confirm_promoted(recorded, target)  # Promote could not record: nor read the alias after
        deployment = self.repository.get_deployment(deployment_id)
        if state.get("promotion_held_since"):  # ended while Promote held (a failing verdict, an abort): said once
            from deployguard.workflows import promotion_hold

            why = deployment.decision_reason or (_error_reason(error) if error else None)
            promotion_hold.end(self.repository, deployment, clock.now(), str(deployment.decision or "ended"),
                               f"the canary ended: {why or deployment.status.value}")  # fmt: skip
        if error:
            title, event_type, severity = "Rollback Failed", EventType.ROLLBACK_FAILED, Severity.CRITICAL
            message = _error_reason(error)
            deployment = self._record_rollback_failed(deployment, message)
        elif deployment.status == DeploymentStatus.SUCCEEDED:
            title, event_type, severity = "Deployment Completed", EventType.DEPLOYMENT_COMPLETED, Severity.INFO
            message = deployment.decision_reason or "promoted"
        else:
            title, event_type, severity = "Deployment Failed", EventType.DEPLOYMENT_FAILED, Severity.ERROR
            message = deployment.decision_reason or "rolled back"
        self._announce_canary_completed(deployment, "rollback_failed" if error else deployment.decision, message)
        self._announce_once(
            deployment,
            f"outcome.{event_type.value}",
            deployment.ended_at or clock.now(),
            event_type,
            title,
            message,
            severity=severity,
            duration_seconds=deployment.duration_seconds,
            decision=deployment.decision,
        )
        return state

    def _hold_deferred_promotion(
        self, state: dict[str, Any], recorded: Deployment, target: LambdaTarget, moved_from: dict[str, Any]
    ) -> dict[str, Any]:
        """A person's pause landed while Promote moved the alias to 100%, and Promote could not write its record
        (``recorded: false``, :meth:`notify`): the pause's answer said "held at" the record's weight, so, as Promote
        does when its record goes through, the move is taken back (:meth:`_take_back_for_pause`) and the canary
        holds there and goes back to waiting (the state machine's ``RouteOutcome``), never promoted over the pause.
        """
        weights = moved_from.get("additional_weights") or {}
        before = AliasState(str(moved_from.get("function_version")), {str(k): float(v) for k, v in weights.items()})
        moved = AliasState(target.new_version, {})
        held = self._take_back_for_pause(recorded, target, before, moved, "the promotion (its record deferred)")
        return {**state, "next": "wait", "weight": held, "decision": None, "ended_at": None, "recorded": True,
                "promoted_from": None}  # fmt: skip

    # ------------------------------------------------------------------ pre-deployment checks (alerts lane)

    def _pre_deployment_checks(self, deployment: Deployment, service: ServiceConfig) -> str | None:
        """The service's pre-traffic checks (the hook's, with its settings) within
        ``canary.validation_budget_seconds``; a failed critical check fails the deployment before
        any traffic moves (``validation.failed``). Returns the failure, or None."""
        checks = service.hooks.pre_traffic
        if not checks:
            return None
        ctx = CheckContext(deployment, service.judge.metrics, self.local_mode)
        deadline = time.monotonic() + service.canary.validation_budget_seconds
        results = [run_check(check, ctx, deadline, self.sleep) for check in checks]
        failed = [r for r in results if r.status == "failed"]
        counts = {s: sum(1 for r in results if r.status == s) for s in ("passed", "failed", "warned")}
        summary = "pre-deployment checks: " + ", ".join(f"{n} {s}" for s, n in counts.items())
        if failed:
            summary += ": " + "; ".join(f"{r.name}: {r.message}" for r in failed)
        self.repository.audit(deployment.deployment_id, "pre_deployment_checks", ACTOR, summary,
                              checks=[r.report() for r in results])  # fmt: skip
        if not failed:
            return None
        now = clock.now()

        def fail(d: Deployment) -> None:
            d.status, d.decision, d.decision_reason, d.ended_at = (
                DeploymentStatus.FAILED,
                "validation_failed",
                summary,
                now,
            )
            self._enter(d, Phase.FAILED, summary[:300])

        deployment = self._change(deployment.deployment_id, fail)
        alias_claim.release(self.repository, deployment)
        self._announce(deployment, EventType.VALIDATION_FAILED, "Validation Failed", summary, severity=Severity.ERROR,
                       checks=[r.report() for r in failed])  # fmt: skip
        return summary

    # ------------------------------------------------------------------ completion (alerts lane)

    def _announce_canary_completed(self, deployment: Deployment, decision: str | None, message: str) -> None:
        """``canary.completed``: the canary's last step is behind it, with how it ended and what it took."""
        assessments = self.repository.assessments(deployment.deployment_id)
        self._announce_once(
            deployment, "canary.completed", deployment.ended_at or clock.now(), EventType.CANARY_COMPLETED,
            "Canary Completed", f"{decision or 'ended'}: {message}",
            severity=Severity.INFO if decision == "promoted" else Severity.WARNING,
            decision=decision, duration_seconds=deployment.duration_seconds, steps_reached=deployment.step_index + 1,
            assessments=len(assessments), last_weight=deployment.canary_weight,
        )  # fmt: skip

    def statistics(self, action: str, result: dict[str, Any]) -> tuple[Deployment, list[tuple[str, str, float]]] | None:
        """The EMF deployment statistics a task contributes (like the recorder's for CodeDeploy): a start
        at ``validate``, the end at ``notify`` (a failed rollback counts as failed)."""
        deployment_id = result.get("deployment_id")
        deployment = self.repository.find_deployment(deployment_id) if deployment_id else None
        if deployment is None or action not in ("validate", "notify"):
            return None
        status = deployment.status if deployment.status.is_terminal else DeploymentStatus.FAILED
        return deployment, deployment_statistics(status, deployment.duration_seconds, started=action == "validate")

    def _record_rollback_failed(self, deployment: Deployment, message: str) -> Deployment:
        """The record says failed, so the reconciler puts the traffic back once the alias can be moved."""
        if deployment.status.is_terminal and deployment.decision != "promoted":
            return deployment
        now = clock.now()

        def change(d: Deployment) -> None:
            if not d.status.is_terminal or d.decision == "promoted":
                d.status, d.decision, d.ended_at = DeploymentStatus.FAILED, "rollback_failed", now
                d.decision_reason = message
                self._enter(d, Phase.FAILED, message)

        deployment = self._change(deployment.deployment_id, change)
        alias_claim.release(self.repository, deployment)
        self.repository.audit_once(deployment.deployment_id, "rollback_failed", deployment.ended_at or now,
                                   "rollback_failed", ACTOR, message)  # fmt: skip
        return deployment


def _same_target(deployment: Deployment, named: LambdaTarget | None) -> LambdaTarget:
    """The record's Lambda alias; a task state naming another target is refused (a state is only ever built
    from the record's own request, which Validate checked)."""
    target = deployment.target
    if not isinstance(target, LambdaTarget):
        raise InvalidEventError(f"deployment {deployment.deployment_id}: target is not a Lambda alias")
    if named is not None and named != target:
        raise InvalidEventError(
            f"target: the task's target {named.function_name}:{named.alias} is not deployment "
            f"{deployment.deployment_id}'s ({target.function_name}:{target.alias}, versions "
            f"{target.stable_version} -> {target.new_version})"
        )
    return target


def _with_verdict(d: Deployment, summary: str) -> None:
    """A record ended while Assess told the alerts its failing verdict (``summary``): its reason says the verdict
    once. A remediation's cause (:class:`~deployguard.models.EndCause`) names it already (the executor read it), or
    takes it here, and the reason is composed from it again; any other end's reason is said after the verdict."""
    if d.end_cause is not None:
        if d.end_cause.verdict is None:
            d.end_cause.verdict = summary
            d.decision_reason = d.end_cause.reason()
    else:
        d.decision_reason = f"{summary} ({d.decision_reason})" if d.decision_reason else summary


def _routing(alias: AliasState) -> str:
    return f"{alias.function_version} {alias.additional_weights or ''}".strip()


def _not_started(deployment: Deployment, state: CanaryState) -> bool:
    """The canary was held at 0% before its step's first shift (a pause accepted before any traffic moved):
    no traffic yet, and no step started."""
    return state.step_started_at is None and state.weight == 0 and deployment.canary_weight == 0


def _run_began(deployment: Deployment) -> datetime:
    """When this run of the canary began: its last entry into pre-deployment (a person's retry of a held canary
    enters it again), else the deployment's start."""
    entered = [p.at for p in deployment.phase_history if p.phase == Phase.PRE_DEPLOYMENT]
    return max(entered) if entered else deployment.started_at


def _moved_on(deployment: Deployment, state: CanaryState, began: datetime) -> str | None:
    """Why the record has gone on without the Assess look of ``state`` begun at ``began`` (None: it has not):
    it ended, it is at a later step, or its traffic moved after the look began."""
    if deployment.status.is_terminal:
        return f"the deployment ended ({deployment.decision or deployment.status.value})"
    if deployment.step_index > state.step_index:
        return f"the record is at step {deployment.step_index + 1}"
    if deployment.weight_changed_at is not None and deployment.weight_changed_at > began:
        return (
            f"the traffic moved to {deployment.canary_weight * 100:g}% at {deployment.weight_changed_at.isoformat()}, "
            "after this look began"
        )
    return None


def _older_look(began_text: Any, began: datetime) -> bool:
    """Whether an assessment whose look began at ``began_text`` (its details' ``look_began``) began before
    ``began``: an older attempt's. Unknown (written before looks said when they began): not older."""
    try:
        return isinstance(began_text, str) and datetime.fromisoformat(began_text) < began
    except ValueError:
        return False


def _retry_pending(deployment: Deployment) -> bool:
    """A person retried this held canary and its new execution has not shifted traffic yet."""
    return (
        not deployment.status.is_terminal
        and deployment.phase == Phase.PRE_DEPLOYMENT
        and deployment.control.last_action == "retry"
        and deployment.control.last_action_at is not None
    )


def execution_deployment_id(execution_arn: str) -> str:
    """The deployment id of a canary whose request gave none: derived from the execution running it."""
    return "dg-" + hashlib.sha256(execution_arn.encode()).hexdigest()[:20]


def _lambda_target(value: Any) -> LambdaTarget | None:
    if isinstance(value, LambdaTarget):
        return value
    if not isinstance(value, dict):
        return None
    try:
        return LambdaTarget.model_validate(value)
    except ValidationError:
        return None


APPROVAL_EXPIRED = "DeployGuard.ApprovalExpired"  # the approval wait ran out (statemachine/canary.asl.json)
CANARY_FAILING = "DeployGuard.CanaryFailing"  # a failing verdict while the canary waited for approval
CANARY_ENDED = "DeployGuard.CanaryEnded"  # the record ended (a person's abort) while the canary waited for approval


def _error_reason(error: Any) -> str:
    """The reason a caught error gives people. ``Cause`` may be absent or null (SendTaskFailure without one)."""
    if not isinstance(error, dict):
        return _short(str(error))
    name, cause = str(error.get("Error") or "error"), _short(str(error.get("Cause") or ""))
    if name == APPROVAL_EXPIRED:
        return cause or "approval expired after 24 h"
    if name == CANARY_FAILING and cause:
        return cause
    return f"{name}: {cause}" if cause else name


_JUDGE_WAITED = re.compile(r"; no conclusive evidence after \d+ periods$")


def _no_evidence_reason(extra: int, weight: float, summary: str) -> str:
    """Why a step ends without evidence (held or rolled back): said once. The judge's summary ends with its
    own "no conclusive evidence after N periods" once it has waited long enough; the workflow's lead says it."""
    plural = "" if extra == 1 else "s"
    return f"no conclusive evidence after {extra} extra assessment{plural} at {weight:g}%: " + _JUDGE_WAITED.sub(
        "", summary
    )


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CanaryTask(Model):
    """What the state machine sends to the canary step function."""

    action: Literal[
        "validate",
        "shift",
        "assess",
        "assess_awaiting",
        "promote",
        "rollback",
        "notify",
        "await_approval",
        "approval_answered",
    ]
    state: dict[str, Any]
    task_token: str | None = Field(default=None, description="await_approval: the token a person's answer resumes")
    execution: str | None = Field(
        default=None, description="validate and rollback: the execution's ARN ($$.Execution.Id)"
    )


def run_task(task: CanaryTask, controller: CanaryController) -> dict[str, Any]:
    """Run one action; the result becomes the execution's state."""
    result: CanaryState | dict[str, Any]
    if task.action == "validate":
        request = parse_event(CanaryRequest, task.state.get("deployment", task.state), "canary request")
        result = controller.validate(request, execution_arn=task.execution)
    elif task.action == "rollback":
        result = controller.rollback(task.state, execution_arn=task.execution)
    elif task.action == "notify":
        result = controller.notify(task.state)
    elif task.action == "await_approval":  # approval before 100%: deployguard.workflows.control answers the token
        if not task.task_token:
            raise InvalidEventError("task_token: await_approval needs the state machine's task token")
        controller.control.wait_for_approval(str(task.state.get("deployment_id")), task.task_token)
        result = task.state
    elif task.action == "approval_answered":  # the token answered: the approval recorded from the canary's side
        controller.control.approval_answered(str(task.state.get("deployment_id")), task.state.get("approval"))
        result = task.state
    else:
        state = parse_event(CanaryState, {k: v for k, v in task.state.items() if k != "error"}, "canary state")
        result = getattr(controller, task.action)(state)
    return result.model_dump(mode="json") if isinstance(result, CanaryState) else result
