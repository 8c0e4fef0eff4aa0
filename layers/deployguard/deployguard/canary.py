"""The canary controller: the logic behind every task of the canary state machine.

The state machine (``statemachine/canary.asl.json``) only routes; each task calls
one action here with the execution's state and gets the next state back:

    validate -> shift -> (wait -> assess)* -> shift ... -> promote | rollback -> notify

``assess`` sets ``next`` to ``wait``, ``advance``, ``promote`` or ``rollback``; the
state machine's Choice state follows it. Any failure the machine catches ends in
``rollback``, which always leaves the alias at 100% stable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError

from deployguard import clock
from deployguard.alerts.engine import AlertEngine
from deployguard.analysis.judge import judge_canary
from deployguard.assessment import assessment_from_verdict
from deployguard.aws.cloudwatch import MetricsReader
from deployguard.aws.events import EventPublisher
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.config import DeployGuardConfig, ServiceConfig
from deployguard.control import CanaryControlService, effective_decision, steer
from deployguard.exceptions import InvalidEventError, NotFoundError, TrafficShiftError
from deployguard.hooks.checks import CheckContext, Sleep, run_check
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
from deployguard.storage.repository import DeploymentRepository
from deployguard.verdict_metrics import publish_verdict_metrics

ACTOR = "deployguard:canary-state-machine"
logger = logging.getLogger(__name__)

NextStep = Literal["shift", "wait", "advance", "promote", "await_approval", "rollback", "hold", "done"]


class CanaryRequest(Model):
    """Input of a canary execution: what to deploy where."""

    deployment_id: str | None = None
    service: str = Field(min_length=1)
    environment: str | None = None
    version: str = Field(min_length=1)
    target: LambdaTarget
    start_step: int = Field(default=0, ge=0, description="a retried canary starts again at this step")


class CanaryState(Model):
    """The state every task of the canary state machine receives and returns."""

    deployment_id: str
    step_index: int = 0
    steps: list[float]
    weight: float = 0.0
    wait_seconds: int = 60
    step_started_at: datetime | None = None
    assessments_in_step: int = 0
    inconclusive_count: int = 0
    next: NextStep = "shift"
    decision: str | None = None
    reason: str | None = None
    last_verdict: Decision | None = None


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
        self.reader = reader or MetricsReader()
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
        event = DeploymentEvent(
            event_type=event_type,
            deployment_id=deployment.deployment_id,
            service=deployment.service,
            version=deployment.version,
            environment=deployment.environment,
            severity=severity,
            title=title,
            message=message,
            reasons=verdict.failing_reasons or verdict.reasons if verdict else [],
            details=details,
        )
        self.repository.add_event(event)
        self.publisher.publish(event)
        if self.alerts is not None:
            alerts = self.alerts
            self._alerting(deployment.deployment_id, event.event_type.value, lambda: alerts.on_event(event, deployment))
        return event

    def _change(self, deployment_id: str, change: Callable[[Deployment], None]) -> Deployment:
        return self.repository.update_deployment(deployment_id, change)

    @staticmethod
    def _enter(deployment: Deployment, phase: Phase, reason: str) -> None:
        if deployment.phase != phase or not deployment.phase_history:
            deployment.phase = phase
            deployment.phase_history.append(PhaseChange(phase=phase, at=clock.now(), reason=reason))

    # ------------------------------------------------------------------ actions

    def validate(self, request: CanaryRequest) -> CanaryState:
        """Record the deployment and check its target before any traffic moves."""
        service = self.config.service(request.service)
        shifter = LambdaTrafficShifter(request.target)
        alias = shifter.current()
        if alias.function_version != request.target.stable_version or alias.additional_weights:
            raise InvalidEventError(
                f"target: alias {request.target.function_name}:{request.target.alias} routes to "
                f"{alias.function_version} {alias.additional_weights or ''}, expected only the stable version "
                f"{request.target.stable_version} before a canary starts"
            )
        deployment = None
        if request.deployment_id:
            deployment = self.repository.find_deployment(request.deployment_id)
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
                **({"deployment_id": request.deployment_id} if request.deployment_id else {}),
            )
            self._enter(deployment, Phase.PRE_DEPLOYMENT, "canary requested")
            self.repository.create_deployment(deployment)
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
        )

    def shift(self, state: CanaryState) -> CanaryState:
        deployment = self.repository.get_deployment(state.deployment_id)
        if deployment.status.is_terminal:  # e.g. rolled back by remediation: never shift again
            return state.model_copy(update={"next": "done", "decision": deployment.decision})
        target = deployment.target
        if not isinstance(target, LambdaTarget):
            raise InvalidEventError(f"deployment {deployment.deployment_id}: target is not a Lambda alias")
        weight = state.steps[state.step_index]
        LambdaTrafficShifter(target).shift(weight / 100.0)
        now = clock.now()

        def change(d: Deployment) -> None:
            d.status = DeploymentStatus.IN_PROGRESS
            d.canary_weight = weight / 100.0
            d.step_index = state.step_index
            d.weight_changed_at = now
            self._enter(d, Phase.DEPLOYMENT_ACTIVE, f"traffic shifted to {weight:g}%")

        deployment = self._change(deployment.deployment_id, change)
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

    def assess(self, state: CanaryState) -> CanaryState:
        deployment = self.repository.get_deployment(state.deployment_id)
        if deployment.status.is_terminal:  # ended elsewhere (remediation, a person): stop here
            return state.model_copy(update={"next": "done", "decision": deployment.decision})
        service = self._service(deployment)
        plan = service.canary
        now = clock.now()
        window = self.reader.canary_windows(
            [(deployment, service.judge.metrics)], now, plan.assessment_interval_seconds
        )[deployment.deployment_id]
        verdict = judge_canary(window, service.judge)
        assessment = assessment_from_verdict(deployment, window, verdict, service.health)
        self.repository.add_assessment(assessment)
        publish_verdict_metrics(deployment, assessment)
        if self.alerts is not None and not deployment.control.skip_analysis:  # skipped: recorded, not acted on
            alerts = self.alerts
            self._alerting(deployment.deployment_id, "assessment", lambda: alerts.on_assessment(deployment, assessment))
            deployment = self.repository.get_deployment(deployment.deployment_id)
            if deployment.status.is_terminal:  # remediation already rolled it back: say so, with the verdict
                reason = f"{verdict.summary} ({deployment.decision_reason})"
                deployment = self._change(deployment.deployment_id, lambda d: setattr(d, "decision_reason", reason))
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
        decision = effective_decision(deployment.control, verdict.decision)  # people's control: deployguard.control
        if decision == Decision.FAILING:
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
                update["reason"] = (
                    f"no conclusive evidence after {count - 1} extra assessments at {state.weight:g}%: "
                    + verdict.summary
                )
            else:
                update["next"] = "wait"
        steered = steer(deployment.control, update["next"], decision, service.approval_before_full_traffic)
        if steered != update["next"]:  # paused, promote requested, or approval before 100%
            update.pop("step_index", None)
            update["next"] = steered
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

    def promote(self, state: CanaryState) -> CanaryState:
        deployment = self.repository.get_deployment(state.deployment_id)
        assert isinstance(deployment.target, LambdaTarget)
        LambdaTrafficShifter(deployment.target).promote()
        now = clock.now()

        def change(d: Deployment) -> None:
            d.canary_weight = 1.0
            d.status = DeploymentStatus.SUCCEEDED
            d.decision = "promoted"
            d.decision_reason = state.reason
            d.ended_at = now
            self._enter(d, Phase.MONITORING, "promoted to 100%; post-deployment monitoring for 24 hours")

        deployment = self._change(deployment.deployment_id, change)
        self.repository.audit(deployment.deployment_id, "promoted", ACTOR, state.reason or "all steps healthy")
        self._announce(
            deployment,
            EventType.PROMOTION_COMPLETED,
            "Promotion Completed",
            f"version {deployment.target.new_version} now receives 100% of traffic",  # type: ignore[union-attr]
        )
        return state.model_copy(update={"weight": 100.0, "next": "done", "decision": "promoted"})

    def rollback(self, state: dict[str, Any]) -> CanaryState | dict[str, Any]:
        """Put the alias back at 100% stable. Takes the raw state: it also runs after failures."""
        deployment_id = state.get("deployment_id")
        error = state.get("error")
        reason = state.get("reason") or "rollback requested"
        if error:
            reason = f"{error.get('Error', 'error')}: {_short(error.get('Cause', ''))}"
        if not deployment_id:
            request = state.get("deployment") or state
            target = request.get("target") if isinstance(request, dict) else None
            if isinstance(target, dict):
                try:
                    parsed = LambdaTarget.model_validate(target)
                except ValidationError:
                    parsed = None  # too malformed to name an alias: nothing was shifted
                if parsed is not None:
                    LambdaTrafficShifter(parsed).rollback()
            return {"next": "done", "decision": "rejected", "reason": reason}
        try:
            deployment = self.repository.get_deployment(deployment_id)
        except NotFoundError:
            return {"deployment_id": deployment_id, "next": "done", "decision": "rejected", "reason": reason}
        assert isinstance(deployment.target, LambdaTarget)
        shifter = LambdaTrafficShifter(deployment.target)
        if deployment.status == DeploymentStatus.ROLLED_BACK:
            # already rolled back (remediation got there first): make sure, announce nothing twice
            shifter.rollback()
            out = {k: v for k, v in state.items() if k != "error"}
            out.update({"weight": 0.0, "next": "done", "decision": "rolled_back", "reason": deployment.decision_reason})
            return out
        hold = state.get("next") == "hold"
        self.repository.audit(deployment_id, "rollback_initiated", ACTOR, reason)
        self._announce(deployment, EventType.ROLLBACK_INITIATED, "Rollback Initiated", reason, severity=Severity.ERROR)
        alias = shifter.rollback()
        if alias.weight_of(deployment.target.stable_version) != 1.0:
            raise TrafficShiftError(f"alias still routes {alias.additional_weights} after rollback")
        now = clock.now()
        decision = "held" if hold else "rolled_back"

        def change(d: Deployment) -> None:
            d.canary_weight = 0.0
            d.status = DeploymentStatus.STOPPED if hold else DeploymentStatus.ROLLED_BACK
            d.decision = decision
            d.decision_reason = reason
            d.ended_at = now
            self._enter(d, Phase.FAILED, reason)

        deployment = self._change(deployment_id, change)
        self.repository.audit(deployment_id, "rolled_back", ACTOR, reason, alias="100% stable")
        self._announce(
            deployment,
            EventType.ROLLBACK_COMPLETED,
            "Rollback Completed" if not hold else "Canary Held For A Person",
            f"{reason}; alias back at 100% version {deployment.target.stable_version}",  # type: ignore[union-attr]
            severity=Severity.CRITICAL if not hold else Severity.WARNING,
        )
        out = dict(state)
        out.pop("error", None)
        out.update({"weight": 0.0, "next": "done", "decision": decision, "reason": reason})
        return CanaryState.model_validate(out) if "steps" in out else out

    def notify(self, state: dict[str, Any]) -> dict[str, Any]:
        """Announce how the canary ended (after promotion, rollback or a failed rollback)."""
        deployment_id = state.get("deployment_id")
        if not deployment_id:
            return state
        deployment = self.repository.get_deployment(deployment_id)
        error = state.get("error")
        if error:
            title, event_type, severity = "Rollback Failed", EventType.ROLLBACK_FAILED, Severity.CRITICAL
            message = f"{error.get('Error')}: {_short(error.get('Cause', ''))}"
        elif deployment.status == DeploymentStatus.SUCCEEDED:
            title, event_type, severity = "Deployment Completed", EventType.DEPLOYMENT_COMPLETED, Severity.INFO
            message = deployment.decision_reason or "promoted"
        else:
            title, event_type, severity = "Deployment Failed", EventType.DEPLOYMENT_FAILED, Severity.ERROR
            message = deployment.decision_reason or "rolled back"
        self._announce_canary_completed(deployment, "rollback_failed" if error else deployment.decision, message)
        self._announce(
            deployment,
            event_type,
            title,
            message,
            severity=severity,
            duration_seconds=deployment.duration_seconds,
            decision=deployment.decision,
        )
        return state

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
        self._announce(deployment, EventType.VALIDATION_FAILED, "Validation Failed", summary, severity=Severity.ERROR,
                       checks=[r.report() for r in failed])  # fmt: skip
        return summary

    # ------------------------------------------------------------------ completion (alerts lane)

    def _announce_canary_completed(self, deployment: Deployment, decision: str | None, message: str) -> None:
        """``canary.completed``: the canary's last step is behind it, with how it ended and what it took."""
        assessments = self.repository.assessments(deployment.deployment_id)
        self._announce(
            deployment, EventType.CANARY_COMPLETED, "Canary Completed", f"{decision or 'ended'}: {message}",
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


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CanaryTask(Model):
    """What the state machine sends to the canary step function."""

    action: Literal["validate", "shift", "assess", "promote", "rollback", "notify", "await_approval"]
    state: dict[str, Any]
    task_token: str | None = Field(default=None, description="await_approval: the token a person's answer resumes")


def run_task(task: CanaryTask, controller: CanaryController) -> dict[str, Any]:
    """Run one action; the result becomes the execution's state."""
    result: CanaryState | dict[str, Any]
    if task.action == "validate":
        result = controller.validate(CanaryRequest.model_validate(task.state.get("deployment", task.state)))
    elif task.action == "rollback":
        result = controller.rollback(task.state)
    elif task.action == "notify":
        result = controller.notify(task.state)
    elif task.action == "await_approval":  # approval before 100%: deployguard.control answers the token
        if not task.task_token:
            raise InvalidEventError("task_token: await_approval needs the state machine's task token")
        controller.control.wait_for_approval(str(task.state.get("deployment_id")), task.task_token)
        result = task.state
    else:
        state = CanaryState.model_validate({k: v for k, v in task.state.items() if k != "error"})
        result = getattr(controller, task.action)(state)
    return result.model_dump(mode="json") if isinstance(result, CanaryState) else result
