"""The CodeDeploy lifecycle hook: validate, record, and answer CodeDeploy exactly once.

The event is ``{"DeploymentId", "LifecycleEventHookExecutionId"}``. Everything else is
learned from CodeDeploy (the AppSpec's function, alias, current and target versions)
and from the configuration. For a Lambda deployment, which hook this is follows from
the alias: before traffic moves it still routes only to the current version
(BeforeAllowTraffic: pre-traffic checks); after, it routes to the target version
(AfterAllowTraffic: the judge and the health assessment).

Exactly once: a once-only record keyed on the hook execution id is claimed before any
work; a second delivery of the same execution (Lambda's async retries, duplicates)
finds it and neither runs the checks again nor answers again. Fail closed: any error
inside is answered ``Failed``, with the reason recorded. Checks get a deadline that
leaves ``report_margin_seconds`` to answer before the function's own timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, ValidationError

from deployguard import clock
from deployguard.analysis.judge import judge_canary
from deployguard.assessment import assessment_from_verdict
from deployguard.aws.cloudwatch import MetricsReader
from deployguard.aws.codedeploy import CodeDeployDeployment, CodeDeployGateway, HookStatus
from deployguard.aws.events import EventPublisher
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.config import DeployGuardConfig
from deployguard.exceptions import CodeDeployError, ConflictError
from deployguard.hooks.checks import CheckContext, CheckResult, run_check
from deployguard.models import (
    Decision,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EventType,
    HealthStatus,
    LambdaTarget,
    Model,
    Phase,
    PhaseChange,
    Severity,
    Strategy,
)
from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:lifecycle-hook"
HOOK_KIND = "HOOK"
logger = logging.getLogger(__name__)


class HookEvent(Model):
    """What CodeDeploy sends a lifecycle hook function."""

    DeploymentId: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    LifecycleEventHookExecutionId: str = Field(min_length=1, max_length=1024)


HookPhase = Literal["pre_traffic", "post_traffic"]


@dataclass
class HookOutcome:
    execution_id: str | None
    deployment_id: str | None
    status: HookStatus | None
    reason: str
    phase: HookPhase | None = None
    duplicate: bool = False
    reported: bool = False
    report_error: str | None = None
    checks: list[CheckResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "execution_id": self.execution_id,
            "phase": self.phase,
            "status": self.status,
            "reason": self.reason,
            "duplicate": self.duplicate,
            "reported": self.reported,
            "report_error": self.report_error,
            "can_deploy": self.status == "Succeeded",
            "passed": [c.name for c in self.checks if c.status == "passed"],
            "failed": [c.name for c in self.checks if c.status == "failed"],
            "warnings": [c.name for c in self.checks if c.status == "warned"],
            "checks": [
                {"name": c.name, "status": c.status, "critical": c.critical, "attempts": c.attempts,
                 "duration_ms": round(c.duration_ms, 1), "message": c.message}
                for c in self.checks
            ],
        }  # fmt: skip


class LifecycleHook:
    def __init__(
        self,
        config: DeployGuardConfig,
        repository: DeploymentRepository,
        publisher: EventPublisher,
        codedeploy: CodeDeployGateway | None = None,
        *,
        local_mode: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.repository = repository
        self.publisher = publisher
        self.codedeploy = codedeploy or CodeDeployGateway()
        self.local_mode = local_mode
        self.sleep = sleep

    # ------------------------------------------------------------------ entry

    def handle(self, raw: Any, remaining_ms: Callable[[], int]) -> HookOutcome:
        try:
            event = HookEvent.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field_name = ".".join(str(p) for p in first["loc"]) or "(event)"
            reason = f"malformed lifecycle hook event: field {field_name}: {first['msg']}"
            logger.error(reason)
            execution_id = raw.get("LifecycleEventHookExecutionId") if isinstance(raw, dict) else None
            deployment_id = raw.get("DeploymentId") if isinstance(raw, dict) else None
            if isinstance(execution_id, str) and execution_id and isinstance(deployment_id, str) and deployment_id:
                return self._answer_once(deployment_id, execution_id, "Failed", reason, None, [])
            return HookOutcome(execution_id, deployment_id, None, reason + " (nothing to answer CodeDeploy with)")
        if not self.repository.claim_once(
            HOOK_KIND, event.LifecycleEventHookExecutionId, timedelta(days=2), deployment_id=event.DeploymentId
        ):
            logger.info("duplicate hook delivery", extra={"execution_id": event.LifecycleEventHookExecutionId})
            return HookOutcome(
                event.LifecycleEventHookExecutionId,
                event.DeploymentId,
                None,
                "duplicate delivery of a hook execution already handled",
                duplicate=True,
            )
        deadline = time.monotonic() + remaining_ms() / 1000.0
        phase: HookPhase | None = None
        checks: list[CheckResult] = []
        try:
            info = self.codedeploy.deployment(event.DeploymentId)
            deployment = self._record(info)
            settings = self.config.service(deployment.service).hooks
            check_deadline = deadline - settings.report_margin_seconds
            phase = self._phase(info)
            if phase == "pre_traffic":
                status, reason, checks = self._pre_traffic(deployment, check_deadline)
            else:
                status, reason = self._post_traffic(deployment)
        except Exception as exc:
            logger.exception("lifecycle hook failed inside", extra={"deployment_id": event.DeploymentId})
            status, reason = "Failed", f"internal error, failing closed: {type(exc).__name__}: {exc}"
        return self._answer_once(event.DeploymentId, event.LifecycleEventHookExecutionId, status, reason, phase, checks)

    # ------------------------------------------------------------------ learning

    def _phase(self, info: CodeDeployDeployment) -> HookPhase:
        target = info.target
        if isinstance(target, LambdaTarget):
            alias = LambdaTrafficShifter(target).current()
            moved = alias.function_version == target.new_version or target.new_version in alias.additional_weights
            return "post_traffic" if moved else "pre_traffic"
        return "pre_traffic"

    def _record(self, info: CodeDeployDeployment) -> Deployment:
        """The deployment record of this CodeDeploy deployment (created by the first to see it)."""
        found = self.repository.find_deployment(info.deployment_id)
        if found is not None:
            return found
        if info.target is None:
            raise CodeDeployError(f"deployment {info.deployment_id}: no Lambda or ECS target in its AppSpec")
        service = info.application
        service_config = self.config.service(service)
        version = info.target.new_version if isinstance(info.target, LambdaTarget) else info.target.new_task_definition
        deployment = Deployment(
            deployment_id=info.deployment_id,
            service=service,
            environment=service_config.environment,
            version=version or "unknown",
            strategy=Strategy.CANARY if "Canary" in info.config_name else (
                Strategy.LINEAR if "Linear" in info.config_name else Strategy.ALL_AT_ONCE
            ),
            target=info.target,
            status=DeploymentStatus.IN_PROGRESS,
            driver="codedeploy",
            codedeploy_application=info.application,
            codedeploy_group=info.group,
            codedeploy_deployment_id=info.deployment_id,
            phase_history=[PhaseChange(phase=Phase.PRE_DEPLOYMENT, at=clock.now(), reason="first lifecycle hook")],
        )  # fmt: skip
        try:
            return self.repository.create_deployment(deployment)
        except ConflictError:  # the recorder created it meanwhile
            return self.repository.get_deployment(info.deployment_id)

    # ------------------------------------------------------------------ validation

    def _pre_traffic(self, deployment: Deployment, deadline: float) -> tuple[HookStatus, str, list[CheckResult]]:
        service = self.config.service(deployment.service)
        ctx = CheckContext(deployment, service.judge.metrics, self.local_mode)
        lambda_target = isinstance(deployment.target, LambdaTarget)
        # smoke-testing a Lambda version and reading per-version Lambda metrics apply to Lambda targets only
        checks = [c for c in service.hooks.pre_traffic if lambda_target or c.type not in ("lambda_invoke", "baseline")]
        results = [run_check(check, ctx, deadline, self.sleep) for check in checks]
        failed = [r for r in results if r.status == "failed"]
        warned = [r for r in results if r.status == "warned"]
        for result in results:
            if result.details.get("baseline"):
                self.repository.audit(
                    deployment.deployment_id,
                    "baseline_captured",
                    ACTOR,
                    result.message,
                    baseline=result.details["baseline"],
                )
        summary = f"{len(results) - len(failed) - len(warned)} passed, {len(failed)} failed, {len(warned)} warned"
        if failed:
            return "Failed", f"pre-traffic: {summary}: " + "; ".join(f"{r.name}: {r.message}" for r in failed), results
        if warned:
            self._announce(
                deployment,
                EventType.VALIDATION_WARNED,
                "Validation Warned",
                "; ".join(f"{r.name}: {r.message}" for r in warned),
                Severity.WARNING,
            )
        return "Succeeded", f"pre-traffic: {summary}", results

    def _post_traffic(self, deployment: Deployment) -> tuple[HookStatus, str]:
        service = self.config.service(deployment.service)
        now = clock.now()
        window_start = max(deployment.started_at, now - timedelta(seconds=service.hooks.post_traffic_window_seconds))
        windowed = deployment.model_copy(update={"started_at": window_start})
        window = MetricsReader().canary_windows(
            [(windowed, service.judge.metrics)], now, service.canary.assessment_interval_seconds
        )[deployment.deployment_id]
        verdict = judge_canary(window, service.judge)
        assessment = assessment_from_verdict(deployment, window, verdict, service.health)
        self.repository.add_assessment(assessment)
        critical = verdict.decision == Decision.FAILING or assessment.health_status == HealthStatus.CRITICAL
        if critical or (service.hooks.fail_post_traffic_on_inconclusive and verdict.decision == Decision.INCONCLUSIVE):
            return "Failed", f"post-traffic: {verdict.summary} (health {assessment.health_status.value})"
        return "Succeeded", f"post-traffic: {verdict.summary}"

    # ------------------------------------------------------------------ answering

    def _answer_once(
        self,
        deployment_id: str,
        execution_id: str,
        status: HookStatus,
        reason: str,
        phase: HookPhase | None,
        checks: list[CheckResult],
    ) -> HookOutcome:
        outcome = HookOutcome(execution_id, deployment_id, status, reason, phase, checks=checks)
        if not self.repository.claim_once("HOOK-REPORT", execution_id, timedelta(days=2), status=status):
            outcome.duplicate = True
            outcome.reason = "already answered: " + reason
            return outcome
        try:
            self.codedeploy.report(deployment_id, execution_id, status)
            outcome.reported = True
        except CodeDeployError as exc:
            outcome.report_error = str(exc)
            logger.error("CodeDeploy refused the hook status", extra={"error": str(exc)})
        self._write_verdict(outcome)
        return outcome

    def _write_verdict(self, outcome: HookOutcome) -> None:
        assert outcome.deployment_id is not None
        deployment = self.repository.find_deployment(outcome.deployment_id)
        if deployment is None:
            return  # nothing known of it (malformed event, unknown deployment): the log has it
        details = outcome.as_dict()
        self.repository.audit(
            deployment.deployment_id,
            "hook_verdict",
            ACTOR,
            f"{outcome.status}: {outcome.reason}",
            **{k: details[k] for k in ("phase", "execution_id", "reported", "report_error", "checks")},
        )
        phase = Phase.VALIDATION if outcome.status == "Succeeded" else Phase.FAILED

        def change(d: Deployment) -> None:
            if not d.status.is_terminal:
                d.phase = phase
                d.phase_history.append(PhaseChange(phase=phase, at=clock.now(), reason=outcome.reason[:300]))

        self.repository.update_deployment(deployment.deployment_id, change)
        if outcome.status == "Failed":
            self._announce(deployment, EventType.VALIDATION_FAILED, "Validation Failed", outcome.reason, Severity.ERROR)

    def _announce(self, deployment: Deployment, kind: EventType, title: str, message: str, severity: Severity) -> None:
        event = DeploymentEvent(
            event_type=kind, deployment_id=deployment.deployment_id, service=deployment.service,
            version=deployment.version, environment=deployment.environment, severity=severity,
            title=title, message=message,
        )  # fmt: skip
        self.repository.add_event(event)
        self.publisher.publish(event)
