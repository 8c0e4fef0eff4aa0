"""The deployment recorder: CodeDeploy state-change events into the deployment's record.

EventBridge delivers at least once and not always in order, so:
- a state already recorded is not recorded twice (nor counted twice in the metrics);
- a terminal status is never overwritten by a late START or READY (nor a second terminal state): a state
  delivered after the end is kept in the phase history and audited, not announced;
- the phase history is kept in time order whatever the delivery order;
- start and end come from CodeDeploy (``createTime``, ``completeTime``) when it has them.

A failed deployment whose traffic had moved is ``rolled_back`` once the new version has no
traffic left (a Lambda alias routing nothing to its ``TargetVersion``, or a rollback deployment
that succeeded); a rollback that fails raises ``rollback.failed``, never judged from an alias a
later deployment has taken over. A deployment running 50% past its expected duration raises
``deployment.long_running`` once (on its next event, or from
:meth:`DeploymentRecorder.sweep_long_running`). The same schedule finishes lifecycle-hook answers left unconfirmed
(:meth:`DeploymentRecorder.sweep_unanswered_hooks`, see :mod:`deployguard.hooks.answers`).

A CodeDeploy canary or linear deployment ends with ``canary.completed`` (as the state machine's
canaries do), exactly once: when its own terminal state arrives, or, when CodeDeploy rolls it
back with a deployment of its own, when that rollback deployment ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from pydantic import ConfigDict, Field

from deployguard import clock
from deployguard.aws.codedeploy import CodeDeployDeployment, CodeDeployGateway
from deployguard.exceptions import CodeDeployError, ConflictError, TrafficShiftError
from deployguard.models import (
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EcsTarget,
    EventType,
    LambdaTarget,
    Model,
    Phase,
    PhaseChange,
    Severity,
    Strategy,
    deployment_statistics,
)
from deployguard.storage import outbox

if TYPE_CHECKING:
    from deployguard.alerts.engine import AlertEngine
    from deployguard.aws.events import EventPublisher
    from deployguard.aws.lambda_traffic import AliasState
    from deployguard.config import DeployGuardConfig
    from deployguard.hooks.answers import Settled
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:deployment-recorder"
DEPLOYMENT_STATE_CHANGE = "CodeDeploy Deployment State-change Notification"
INSTANCE_STATE_CHANGE = "CodeDeploy Instance State-change Notification"
CANARY_STRATEGIES = frozenset({Strategy.CANARY, Strategy.LINEAR})  # traffic moves in steps: a canary
LONG_RUNNING_RATIO = 1.5  # deployment.long_running: a deployment running 50% longer than its expected duration
# no phase change this long (Lambda gave up its retries long since): CodeDeploy is asked whether it ended
RECONCILE_AFTER = timedelta(minutes=30)
RECONCILE_PER_SWEEP = 10  # GetDeployment calls of one scheduled run, at most
_CODEDEPLOY_ENDS = {"Succeeded": "SUCCESS", "Failed": "FAILURE", "Stopped": "STOP"}
AFTER_THE_END = " (after the recorded end)"  # a phase change delivered after the deployment ended
logger = logging.getLogger(__name__)

_STATUS = {
    "START": DeploymentStatus.IN_PROGRESS,
    "READY": DeploymentStatus.IN_PROGRESS,
    "SUCCESS": DeploymentStatus.SUCCEEDED,
    "FAILURE": DeploymentStatus.FAILED,
    "STOP": DeploymentStatus.STOPPED,
}
_PHASE = {
    "START": Phase.DEPLOYMENT_ACTIVE,
    "READY": Phase.VALIDATION,
    "SUCCESS": Phase.MONITORING,  # post-deployment monitoring for 24 hours, then completed
    "FAILURE": Phase.FAILED,
    "STOP": Phase.FAILED,
}


class StateChangeDetail(Model):
    """``detail`` of a CodeDeploy Deployment (or Instance) State-change Notification."""

    model_config = ConfigDict(extra="ignore")

    deploymentId: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    application: str = Field(min_length=1)
    deploymentGroup: str = Field(min_length=1)
    state: str = Field(pattern=r"^[A-Z_]{2,32}$")
    region: str | None = None
    instanceGroupId: str | None = None
    instanceId: str | None = None


# --------------------------------------------------------------------------- shared with the hook


def service_for(config: DeployGuardConfig, application: str, group: str, function_name: str | None = None) -> str:
    """The service a CodeDeploy deployment belongs to.

    First a service listing the application (or ``application/group``) in
    ``hooks.codedeploy_applications``; then a service whose ``function_name`` is the
    deployed function; else the application's name.
    """
    for name, service in config.services.items():
        listed = service.hooks.codedeploy_applications
        if application in listed or f"{application}/{group}" in listed:
            return name
    if function_name:
        for name, service in config.services.items():
            if service.function_name == function_name:
                return name
    return application


def record_of(
    config: DeployGuardConfig, info: CodeDeployDeployment, at: datetime, reason: str,
    traffic_shift_seconds: int | None = None,
) -> Deployment:  # fmt: skip
    """A new deployment record for a CodeDeploy deployment (driver ``codedeploy``), with how long its
    deployment configuration shifts traffic when known (:meth:`CodeDeployGateway.traffic_shift_seconds`)."""
    target: LambdaTarget | EcsTarget = info.target or LambdaTarget(
        function_name=info.application, alias="unknown", stable_version="unknown", new_version="unknown"
    )
    function_name = target.function_name if isinstance(target, LambdaTarget) else None
    service = service_for(config, info.application, info.group, function_name)
    service_config = config.service(service)
    # a task definition ARN is named by its family and revision (checkout-web:2), as the ECS console does
    version = target.new_version if isinstance(target, LambdaTarget) else target.new_task_definition.split("/")[-1]
    started = info.create_time or at
    return Deployment(
        deployment_id=info.deployment_id,
        service=service,
        environment=service_config.environment,
        version=version or "unknown",
        strategy=info.strategy,
        target=target,
        status=DeploymentStatus.IN_PROGRESS,
        phase=Phase.PRE_DEPLOYMENT,
        driver="codedeploy",
        codedeploy_application=info.application,
        codedeploy_group=info.group,
        codedeploy_deployment_id=info.deployment_id,
        rollback_of=info.rollback_of,
        started_at=started,
        expected_duration_seconds=service_config.expected_duration_seconds,
        traffic_shift_seconds=traffic_shift_seconds,
        phase_history=[PhaseChange(phase=Phase.PRE_DEPLOYMENT, at=started, reason=reason)],
    )


def ensure_record(
    repository: DeploymentRepository, config: DeployGuardConfig, info: CodeDeployDeployment, at: datetime, reason: str,
    codedeploy: CodeDeployGateway,
) -> Deployment:  # fmt: skip
    """The deployment's record, created by whichever of hook and recorder sees it first."""
    found = repository.find_deployment(info.deployment_id)
    if found is not None:
        return found
    shift = codedeploy.traffic_shift_seconds(info.config_name)
    try:
        return repository.create_deployment(record_of(config, info, at, reason, shift))
    except ConflictError:  # the other one created it meanwhile
        return repository.get_deployment(info.deployment_id)


# --------------------------------------------------------------------------- the recorder


@dataclass
class RecordOutcome:
    deployment_id: str
    state: str
    kind: Literal["deployment", "instance", "sweep"]
    changed: bool
    status: DeploymentStatus
    environment: str
    strategy: str
    duration_seconds: float | None
    rollback: bool = False  # a CodeDeploy rollback deployment: the old version put back, no release
    rollback_follows: bool = False  # the release ended and CodeDeploy's rollback deployment of it follows
    release: Deployment | None = None  # a rollback deployment's end: the release it rolled back, as it ended

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "kind": self.kind,
            "state": self.state,
            "changed": self.changed,
            "status": self.status.value,
            "duration_seconds": self.duration_seconds,
        }

    def metric_points(self) -> list[tuple[str, str, float]]:
        """(name, unit, value) of the deployment statistics this change contributes, if any. A release that
        ends with a rollback deployment of its own following is counted once, when that ends: rolled back
        (or, the rollback failing, as it ended), as ``deployguard summary`` counts it."""
        if self.release is not None:  # by the release's environment and strategy (this outcome's, see record)
            return deployment_statistics(self.release.status, self.release.duration_seconds)
        if self.state not in _STATUS:  # a state the recorder does not know: audited, nothing counted
            return []
        if not self.changed or self.kind != "deployment" or self.rollback or self.rollback_follows:
            return []  # a rollback deployment is counted as the release it rolls back: rolled back
        if self.status == DeploymentStatus.IN_PROGRESS:
            return deployment_statistics(self.status, None, started=True) if self.state == "START" else []
        return deployment_statistics(self.status, self.duration_seconds)


def _rollback_follows(info: CodeDeployDeployment) -> bool:
    """A rollback deployment of this release is made, or asked for (a Lambda deployment stopped with
    ``autoRollbackEnabled`` reports its rollbackInfo before the rollback deployment exists); an ECS
    deployment rolls back within itself."""
    return bool(info.rollback_deployment_id) or (info.rollback_requested and info.compute_platform == "Lambda")


def _audit_key(key: str) -> str:
    """``key`` as the key of an audit entry written once: without ``#`` (its sort key's separator) or spaces."""
    return "".join(c if c.isalnum() or c in "-_.:" else "-" for c in key)


_END_PHASES = frozenset({Phase.MONITORING, Phase.COMPLETED, Phase.FAILED})


def _insert_late(deployment: Deployment, late: PhaseChange) -> None:
    """Put a state delivered after ``deployment`` ended in its phase history, in time order. A START or
    READY happened before the end whenever it was delivered: a START at CodeDeploy's ``createTime`` (the
    record's start), a READY at its time but no later than the end, before an end of the same instant; a
    terminal state at its time (CodeDeploy's ``completeTime``)."""
    history = deployment.phase_history
    if late.phase not in _END_PHASES:
        ended = deployment.ended_at or late.at
        when = deployment.started_at if late.phase == Phase.DEPLOYMENT_ACTIVE else min(late.at, ended)
        late = late.model_copy(update={"at": max(min(when, ended), deployment.started_at)})
        index = next(
            (i for i, p in enumerate(history) if p.at > late.at or (p.at == late.at and p.phase in _END_PHASES)),
            len(history),
        )
        history.insert(index, late)
        return
    history.append(late)
    history.sort(key=lambda p: p.at)


def _codedeploy_said(marker: str, error_message: str | None) -> str:
    """What CodeDeploy said when the deployment ended: its state ("CodeDeploy STOP") and error, if any."""
    return f"{marker}: {error_message}" if error_message else marker


def _ended_reason(kept: str | None, marker: str, error_message: str | None) -> str:
    """Why a CodeDeploy deployment ended: the reason DeployGuard itself set (a hook's Failed verdict, a
    remediation's StopDeployment), if any, first, then what CodeDeploy says (its state and error)."""
    codedeploy = _codedeploy_said(marker, error_message)
    if not kept or kept == codedeploy or kept.endswith(f"; {codedeploy}"):
        return kept or codedeploy
    return f"{kept}; {codedeploy}"


class DeploymentRecorder:
    def __init__(
        self,
        config: DeployGuardConfig,
        repository: DeploymentRepository,
        publisher: EventPublisher,
        codedeploy: CodeDeployGateway | None = None,
        alerts: AlertEngine | None = None,
    ) -> None:
        self.config = config
        self.repository = repository
        self.publisher = publisher
        self.codedeploy = codedeploy or CodeDeployGateway()
        self.alerts = alerts  # failures, long runs and failed rollbacks raise alerts (incidents, paging)

    # ------------------------------------------------------------------ entry

    def handle(self, detail_type: str, detail: StateChangeDetail, at: datetime) -> RecordOutcome:
        if detail_type == INSTANCE_STATE_CHANGE:
            return self.record_instance(detail, at)
        return self.record(detail, at)

    def record(self, detail: StateChangeDetail, at: datetime) -> RecordOutcome:
        """One Deployment State-change Notification."""
        info = self.codedeploy.deployment(detail.deploymentId)
        deployment = ensure_record(self.repository, self.config, info, at, "recorded from CodeDeploy", self.codedeploy)
        state = detail.state
        marker = f"CodeDeploy {state}"
        if state not in _STATUS:
            return self._audit_only(deployment, info, f"codedeploy_{state.lower()}", marker, state, "deployment", at)
        status = self._final_status(state, deployment, info, at)
        ended_at = (info.complete_time or at) if status.is_terminal else None
        changed = False

        def change(d: Deployment) -> None:
            nonlocal changed
            changed = False
            if any(p.reason in (marker, marker + AFTER_THE_END) for p in d.phase_history):
                return  # a duplicate
            if d.status.is_terminal:  # a late event: in the history in time order, the end untouched
                late = PhaseChange(phase=_PHASE[state], at=ended_at or at, reason=marker + AFTER_THE_END)
                _insert_late(d, late)
                return
            changed = True
            d.phase_history.append(PhaseChange(phase=_PHASE[state], at=at, reason=marker))
            d.phase_history.sort(key=lambda p: p.at)
            d.status = status
            d.phase = d.phase_history[-1].phase if not status.is_terminal else _PHASE[state]
            if status.is_terminal:
                d.ended_at = max(ended_at or at, d.started_at)
                d.decision = status.value
                d.decision_reason = _ended_reason(d.decision_reason, marker, info.error_message)
                if d.end_cause is not None:  # a remediation's stop: CodeDeploy's end after it, in its parts too
                    d.end_cause.codedeploy = _codedeploy_said(marker, info.error_message)
                if status == DeploymentStatus.ROLLED_BACK:
                    d.canary_weight = 0.0

        deployment = self.repository.update_deployment(deployment.deployment_id, change)
        recorded = next((p for p in deployment.phase_history if p.reason in (marker, marker + AFTER_THE_END)), None)
        if recorded is not None:  # by this delivery, or by an earlier one whose follow-up may not have finished
            self._follow_up(deployment, state, info, recorded.at, late=recorded.reason != marker)
        release = self._rollback_ended(info, state, at) if info.rollback_of else None
        self._check_long_running(deployment)
        outcome = self._outcome(deployment, state, "deployment", changed)
        if release is not None:  # the release's statistics, by its environment and strategy
            outcome.release, outcome.environment, outcome.strategy = (
                release,
                release.environment,
                release.strategy.value,
            )
        elif deployment.status in (DeploymentStatus.FAILED, DeploymentStatus.STOPPED) and _rollback_follows(info):
            outcome.rollback_follows = True  # counted when its rollback deployment ends
        return outcome

    def _follow_up(
        self, deployment: Deployment, state: str, info: CodeDeployDeployment, at: datetime, late: bool = False
    ) -> None:
        """What follows a state recorded at ``at``: its audit entry and announcements. Each is keyed
        (the audit entry and the state's event by the state and its time, ``canary.completed`` by its
        claim), so a redelivery, or the retry of a delivery that failed half-way, finishes what an
        earlier attempt began and duplicates nothing. ``late``: delivered after the deployment was recorded
        as ended: audited only (its announcements would say what is no longer so)."""
        self.repository.audit_once(
            deployment.deployment_id, f"codedeploy-{state}", at, f"codedeploy_{state.lower()}", ACTOR,
            f"{info.application}/{info.group}: {state} ({deployment.status.value})"
            + (f": {info.error_message}" if info.error_message else "")
            + ("; delivered after the recorded end, which it does not change" if late else ""),
            state=state, status=deployment.status.value, creator=info.creator,
        )  # fmt: skip
        if late:
            return
        ended_here = _STATUS[state].is_terminal and deployment.status.is_terminal
        if ended_here and not info.is_rollback and not info.rollback_deployment_id:
            self._announce_canary_completed(deployment)  # else when its rollback deployment ends
        self._announce_state(deployment, state, info, at)

    def record_instance(self, detail: StateChangeDetail, at: datetime) -> RecordOutcome:
        """One Instance State-change Notification (a Lambda function or ECS task set): audited once."""
        info = self.codedeploy.deployment(detail.deploymentId)
        deployment = ensure_record(self.repository, self.config, info, at, "recorded from CodeDeploy", self.codedeploy)
        action = f"codedeploy_instance_{detail.state.lower()}"
        marker = f"{detail.instanceId or detail.instanceGroupId or '-'}#{detail.state}"
        return self._audit_only(deployment, info, action, marker, detail.state, "instance", at)

    def sweep_long_running(self) -> list[str]:
        """Raise ``deployment.long_running`` for every running CodeDeploy deployment 50% past its expected duration."""
        raised = []
        for deployment in self.repository.active_deployments():
            if deployment.driver == "codedeploy" and self._check_long_running(deployment):
                raised.append(deployment.deployment_id)
        return raised

    def sweep_unrecorded_ends(self, limit: int = RECONCILE_PER_SWEEP) -> list[RecordOutcome]:
        """Record the end of CodeDeploy deployments whose terminal notification never arrived (EventBridge
        gave up on it, or the recorder's retries did and it went to the FunctionFailureQueue): a record still
        in progress with no phase change for :data:`RECONCILE_AFTER` is looked up with GetDeployment (each at
        most once in that time, at most ``limit`` a run), and an end CodeDeploy reports is recorded as its
        notification would have been (a redriven notification then finds it recorded)."""
        now = clock.now()
        outcomes: list[RecordOutcome] = []
        asked = 0
        for deployment in self.repository.active_deployments():
            if asked >= limit:
                break
            codedeploy_id = deployment.codedeploy_deployment_id
            if deployment.driver != "codedeploy" or not codedeploy_id:
                continue
            last = max((p.at for p in deployment.phase_history), default=deployment.started_at)
            if now - last < RECONCILE_AFTER:
                continue
            if not self.repository.claim_once("CD-RECONCILE", deployment.deployment_id, RECONCILE_AFTER):
                continue  # asked within RECONCILE_AFTER
            asked += 1
            try:
                outcome = self._record_unrecorded_end(codedeploy_id, now)
            except Exception:  # the next run asks again (its claim given back); the others are not held up
                logger.exception("cannot reconcile the deployment with CodeDeploy",
                                 extra={"deployment_id": deployment.deployment_id})  # fmt: skip
                with suppress(Exception):
                    self.repository.release("CD-RECONCILE", deployment.deployment_id)
                continue
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _record_unrecorded_end(self, deployment_id: str, now: datetime) -> RecordOutcome | None:
        info = self.codedeploy.deployment(deployment_id)
        state = _CODEDEPLOY_ENDS.get(info.status)
        if state is None:
            return None  # still running
        detail = StateChangeDetail(deploymentId=deployment_id, application=info.application,
                                   deploymentGroup=info.group, state=state)  # fmt: skip
        at = info.complete_time or now
        outcome = self.record(detail, at)
        self.repository.audit_once(
            deployment_id, f"reconciled-{state}", at, "codedeploy_reconciled", ACTOR,
            f"CodeDeploy reports {info.status} and its {state} notification was never recorded: recorded from "
            "GetDeployment by the scheduled sweep", state=state,
        )  # fmt: skip
        return outcome

    def sweep_unanswered_hooks(self, remaining_ms: Callable[[], int] | None = None) -> list[dict[str, Any]]:
        """Send again every hook status decided but not confirmed, and ``Failed`` for attempts that died.

        An answer CodeDeploy confirmed is audited once (keyed by its execution and what the sweep did) before
        its marker is done: an audit write that fails leaves the marker for the next sweep, which audits it
        then. One answer's failure never stops the sweep's others."""
        from deployguard.hooks.answers import HookAnswers  # the schedule's sweep only, not a state change's cold start

        finished = []
        seconds_left = (lambda: remaining_ms() / 1000.0) if remaining_ms is not None else None
        answers = HookAnswers(self.repository, self.codedeploy)
        for settled in answers.sweep(seconds_left=seconds_left, before_done=self._audit_hook_answer):
            report = settled.report
            finished.append({"execution_id": settled.execution_id, "deployment_id": settled.deployment_id,
                             "action": settled.action, "status": settled.status,
                             "answer": report.outcome if report else None})  # fmt: skip
            if report is not None and report.settled:
                continue  # audited before its marker was done
            try:  # not confirmed: audited at each attempt
                self._audit_hook_answer(settled)
            except Exception:
                logger.exception("cannot audit the hook answer", extra={"execution_id": settled.execution_id})
        return finished

    def _audit_hook_answer(self, settled: Settled) -> None:
        """The audit entry of a hook answer the sweep finished: once per execution and action when CodeDeploy
        confirmed it (at the time the status was decided, or now for an attempt found dead)."""
        if not settled.deployment_id or self.repository.find_deployment(settled.deployment_id) is None:
            return
        answer = settled.report.outcome if settled.report else None
        reason = f"{settled.status}: hook answer finished by the scheduled sweep ({answer})"
        details = {"execution_id": settled.execution_id, "status": settled.status, "answer": answer}
        if settled.report is not None and settled.report.settled:
            key = f"hook-{settled.action}-{settled.execution_id}"
            self.repository.audit_once(settled.deployment_id, key, settled.decided_at or clock.now(),
                                       f"hook_{settled.action}", ACTOR, reason, **details)  # fmt: skip
        else:
            self.repository.audit(settled.deployment_id, f"hook_{settled.action}", ACTOR, reason, **details)

    # ------------------------------------------------------------------ status

    def _final_status(
        self, state: str, deployment: Deployment, info: CodeDeployDeployment, at: datetime
    ) -> DeploymentStatus:
        status = _STATUS[state]
        if state not in ("FAILURE", "STOP") or info.is_rollback or deployment.status.is_terminal:
            return status  # (a record that ended already keeps its end: nothing to judge)
        if info.rollback_deployment_id:
            return status  # a rollback deployment of its own follows; it decides (see _rollback_ended)
        target = info.target
        traffic_moved = deployment.canary_weight > 0.0
        if state == "STOP" and not isinstance(target, EcsTarget):
            return status
        # did the traffic go back? ECS blue/green rolls back inside the deployment (production to blue)
        if isinstance(target, EcsTarget):
            if info.new_traffic_weight is None or not (traffic_moved or info.production_traffic_moved):
                return status
            back = info.new_traffic_weight == 0.0
            still = (
                f"the green task set of {target.cluster}/{target.service} still serves "
                f"{info.new_traffic_weight:.0%} of production"
            )
        elif isinstance(target, LambdaTarget) and traffic_moved:
            try:
                alias = self._alias(target)
            except TrafficShiftError as exc:
                logger.warning("cannot read the alias after a failure", extra={"error": str(exc)})
                return status
            new_weight = alias.weight_of(target.new_version)
            back = new_weight == 0.0  # nothing to the new version: whatever else it routes, this one is back
            if not back and (why := self._alias_not_its_own(deployment, target, alias)):
                self._not_judged(deployment, info, at, why)
                return status  # the alias is not this deployment's to judge: no failed rollback of it
            still = (
                f"{target.function_name}:{target.alias} still routes {new_weight:.0%} of traffic "
                f"to version {target.new_version}"
            )
        else:
            return status
        if back:
            return DeploymentStatus.ROLLED_BACK
        self._announce(
            deployment, EventType.ROLLBACK_FAILED, "Rollback Failed", Severity.CRITICAL,
            f"deployment failed after traffic moved and {still}", once=f"rollback-failed#{deployment.deployment_id}",
        )  # fmt: skip
        return status

    @staticmethod
    def _alias(target: LambdaTarget) -> AliasState:
        from deployguard.aws.lambda_traffic import LambdaTrafficShifter

        return LambdaTrafficShifter(target).current()

    def _alias_not_its_own(self, deployment: Deployment, target: LambdaTarget, alias: AliasState) -> str:
        """Why the alias no longer tells how ``deployment`` ended ("" while it does): a later deployment of
        the same service and environment started since (its FAILURE came late; the alias, even routing the
        same versions again, is that one's now), or the alias routes versions this one never shipped."""
        newer = self.repository.superseding(deployment)
        if newer is not None:
            return f"deployment {newer.deployment_id} (version {newer.version}) started since: the alias is its now"
        foreign = {alias.function_version, *alias.additional_weights} - {target.stable_version, target.new_version}
        if foreign:
            return f"the alias routes version {', '.join(sorted(foreign))}, which this deployment never shipped"
        return ""

    def _not_judged(self, deployment: Deployment, info: CodeDeployDeployment, at: datetime, why: str) -> None:
        """Audit (once) that the end of ``deployment`` was recorded as CodeDeploy reported it, its rollback
        not judged from an alias that is no longer its own."""
        logger.warning("rollback not judged", extra={"deployment_id": deployment.deployment_id, "reason": why})
        self.repository.audit_once(
            deployment.deployment_id, "rollback-not-judged", info.complete_time or at, "rollback_not_judged", ACTOR,
            f"ended after traffic moved; whether it went back is not judged from the alias: {why}",
        )  # fmt: skip

    def _rollback_ended(self, info: CodeDeployDeployment, state: str, at: datetime) -> Deployment | None:
        """A rollback deployment ended: the deployment it rolls back is rolled back, or its rollback failed.
        Returns that deployment as it ended, the first time (its statistics are counted then)."""
        original_id = info.rollback_of
        if original_id is None or state not in ("SUCCESS", "FAILURE", "STOP"):
            return None
        original = self.repository.find_deployment(original_id) or self._release_record(original_id, at)
        claim = f"{info.deployment_id}#{state}"
        if original is None or not self.repository.claim_once("CD-ROLLBACK", claim, timedelta(days=2)):
            return None
        try:
            return self._rollback_outcome(original, info, state, at)
        except Exception:  # the retry (EventBridge's, Lambda's) does it again: each step is keyed
            with contextlib.suppress(Exception):
                self.repository.release("CD-ROLLBACK", claim)
            raise

    def _release_record(self, deployment_id: str, at: datetime) -> Deployment | None:
        """The record of a release whose rollback deployment's notifications came before its own: made from
        CodeDeploy's GetDeployment (its own, when they come, find it). None if CodeDeploy has no such one."""
        try:
            info = self.codedeploy.deployment(deployment_id)
        except CodeDeployError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response["Error"]["Code"] == "DeploymentDoesNotExistException":
                logger.warning("the deployment rolled back is unknown", extra={"deployment_id": deployment_id})
                return None
            raise  # the retry asks again
        reason = "recorded from CodeDeploy (its rollback deployment's notification came first)"
        return ensure_record(self.repository, self.config, info, at, reason, self.codedeploy)

    def _rollback_outcome(
        self, original: Deployment, info: CodeDeployDeployment, state: str, at: datetime
    ) -> Deployment | None:
        original_id = original.deployment_id
        key = f"rollback-{info.deployment_id}-{state}"
        if state == "SUCCESS":

            def rolled_back(d: Deployment) -> None:
                if d.status in (DeploymentStatus.FAILED, DeploymentStatus.STOPPED, DeploymentStatus.IN_PROGRESS):
                    d.status = DeploymentStatus.ROLLED_BACK
                    d.decision = d.status.value
                    d.ended_at = d.ended_at or max(at, d.started_at)
                    d.canary_weight = 0.0
                    d.phase = Phase.FAILED
                    d.phase_history.append(PhaseChange(phase=Phase.FAILED, at=at,
                                                       reason=f"rolled back by {info.deployment_id}"))  # fmt: skip

            updated = self.repository.update_deployment(original_id, rolled_back)
            self.repository.audit_once(original_id, key, at, "rollback_completed", ACTOR,
                                       f"rollback deployment {info.deployment_id} succeeded",
                                       rollback_deployment_id=info.deployment_id)  # fmt: skip
            self._announce(updated, EventType.ROLLBACK_COMPLETED, "Rollback Completed", Severity.WARNING,
                           f"rollback deployment {info.deployment_id} restored the previous version",
                           key=key, at=at)  # fmt: skip
            self._announce_canary_completed(updated)
            ended_here = original.status in (
                DeploymentStatus.FAILED,
                DeploymentStatus.STOPPED,
                DeploymentStatus.IN_PROGRESS,
            )
            return updated if ended_here and updated.status == DeploymentStatus.ROLLED_BACK else None
        else:
            self.repository.audit_once(original_id, key, at, "rollback_failed", ACTOR,
                                       f"rollback deployment {info.deployment_id} ended {state}"
                                       + (f": {info.error_message}" if info.error_message else ""),
                                       rollback_deployment_id=info.deployment_id)  # fmt: skip
            self._announce(original, EventType.ROLLBACK_FAILED, "Rollback Failed", Severity.CRITICAL,
                           f"rollback deployment {info.deployment_id} ended {state}; the new version may still "
                           f"take traffic", key=key, at=at)  # fmt: skip
            self._announce_canary_completed(original, "rollback_failed")
            return original if original.status.is_terminal else None

    # ------------------------------------------------------------------ helpers

    def _audit_only(
        self,
        deployment: Deployment,
        info: CodeDeployDeployment,
        action: str,
        marker: str,
        state: str,
        kind: Literal["deployment", "instance"],
        at: datetime,
    ) -> RecordOutcome:
        """Audit a notification that changes nothing else, once. The claim keeps the time of its first
        delivery, the audit entry is keyed by it: a redelivery, or the retry of a delivery whose audit
        write failed, writes that entry if it is missing and never a second one."""
        key = f"{info.deployment_id}#{marker}"
        changed = self.repository.claim_once("CD-STATE", key, timedelta(days=2), first_at=at.isoformat())
        first_at: datetime | None = at
        if not changed:  # delivered before: by the first delivery's time (None: claimed before it was kept)
            kept = (self.repository.find_claim("CD-STATE", key) or {}).get("first_at")
            first_at = datetime.fromisoformat(str(kept)) if kept else None
        if first_at is not None:
            self.repository.audit_once(deployment.deployment_id, _audit_key(f"codedeploy-{marker}"), first_at,
                                       action, ACTOR, f"{info.application}/{info.group}: {marker}",
                                       event_time=first_at.isoformat())  # fmt: skip
        self._check_long_running(deployment)
        return self._outcome(deployment, state, kind, changed)

    @staticmethod
    def _outcome(
        deployment: Deployment, state: str, kind: Literal["deployment", "instance"], changed: bool
    ) -> RecordOutcome:
        return RecordOutcome(
            deployment.deployment_id, state, kind, changed, deployment.status, deployment.environment,
            deployment.strategy.value, deployment.duration_seconds, deployment.rollback_of is not None,
        )  # fmt: skip

    def _announce_state(self, deployment: Deployment, state: str, info: CodeDeployDeployment, at: datetime) -> None:
        if info.is_rollback:
            return  # the deployment it rolls back carries the rollback's events (_rollback_ended)
        status = deployment.status
        if state == "START":
            kind, title, severity = EventType.DEPLOYMENT_STARTED, "Deployment Started", Severity.INFO
        elif status == DeploymentStatus.SUCCEEDED:
            kind, title, severity = EventType.DEPLOYMENT_COMPLETED, "Deployment Completed", Severity.INFO
        elif status == DeploymentStatus.ROLLED_BACK:
            kind, title, severity = EventType.ROLLBACK_COMPLETED, "Deployment Rolled Back", Severity.WARNING
        elif status.is_terminal:
            kind, title, severity = EventType.DEPLOYMENT_FAILED, f"Deployment {status.value.title()}", Severity.ERROR
        else:
            return
        message = f"CodeDeploy {state}; status {status.value}" + (
            f": {info.error_message}" if info.error_message else ""
        )
        self._announce(deployment, kind, title, severity, message, key=f"codedeploy-{state}", at=at)

    def _announce_canary_completed(self, deployment: Deployment, decision: str | None = None) -> None:
        """``canary.completed`` of a CodeDeploy canary or linear deployment that ended: once, whichever
        of its own end and its rollback deployment's end (and their redeliveries) comes first."""
        if deployment.strategy not in CANARY_STRATEGIES:
            return
        decision = decision or deployment.decision or deployment.status.value
        assessments = len(self.repository.assessments(deployment.deployment_id))
        self._announce(
            deployment, EventType.CANARY_COMPLETED, "Canary Completed",
            Severity.INFO if deployment.status == DeploymentStatus.SUCCEEDED else Severity.WARNING,
            f"{decision}: {deployment.decision_reason or 'CodeDeploy ended the deployment'}",
            once=f"canary-completed#{deployment.deployment_id}",
            decision=decision, assessments=assessments, last_weight=deployment.canary_weight,
        )  # fmt: skip

    def _announce(
        self,
        deployment: Deployment,
        kind: EventType,
        title: str,
        severity: Severity,
        message: str,
        once: str | None = None,
        *,
        claim: tuple[str, str] | None = None,
        key: str | None = None,
        at: datetime | None = None,
        **details: Any,
    ) -> bool:
        """Announce through the outbox (:mod:`deployguard.storage.outbox`): recorded, published (by the
        minute tick if the topic refuses it now), and given to the alert engine once. ``once`` (a
        ``CD-EVENT`` claim) or ``claim`` (kind, key): at most once under that claim, released when the
        event could not be recorded, so the retry announces it; ``key`` and ``at``: the event's id and
        time, the same for every attempt (a retry finds the event an earlier attempt recorded).
        Returns whether it was announced (False: claimed already)."""
        if once is not None:
            claim = ("CD-EVENT", once)
        if claim is not None and not self.repository.claim_once(*claim, timedelta(days=2)):
            return False
        identity: dict[str, Any] = {"at": at} if at is not None else {}
        if key is not None:
            digest = hashlib.sha256(f"{deployment.deployment_id}#{key}".encode()).hexdigest()[:16]
            identity["event_id"] = f"ev-{digest}"
        event = DeploymentEvent(
            event_type=kind, deployment_id=deployment.deployment_id, service=deployment.service,
            version=deployment.version, environment=deployment.environment, severity=severity, title=title,
            message=message,
            details={"duration_seconds": deployment.duration_seconds, "strategy": deployment.strategy.value,
                     "status": deployment.status.value, "driver": deployment.driver,
                     "codedeploy_deployment_id": deployment.codedeploy_deployment_id, **details},
            **identity,
        )  # fmt: skip
        alerts = self.alerts
        alert: outbox.Alert | None = None if alerts is None else (lambda e: alerts.on_event(e, deployment))
        try:
            entry = outbox.announce(self.repository, self.publisher, event, actor=ACTOR, alert=alert)
        except Exception:  # not recorded: nothing was done, and the retry must find the claim free
            if claim is not None:
                with contextlib.suppress(Exception):
                    self.repository.release(*claim)
            raise
        if entry.new:
            self.repository.audit(deployment.deployment_id, "notification", ACTOR, f"{kind.value}: {title}",
                                  event_id=event.event_id)  # fmt: skip
        return True

    def _check_long_running(self, deployment: Deployment) -> bool:
        expected = deployment.expected_duration_seconds
        if expected is None or deployment.status.is_terminal:
            return False
        running = (clock.now() - deployment.started_at).total_seconds()
        if running < LONG_RUNNING_RATIO * expected:  # "long running": 50% longer than expected
            return False
        message = f"running {running / 60:.0f} min, expected {expected / 60:.0f} min"
        return self._announce(deployment, EventType.DEPLOYMENT_LONG_RUNNING, "Deployment Long Running",
                              Severity.WARNING, message, claim=("LONG-RUNNING", deployment.deployment_id))  # fmt: skip
