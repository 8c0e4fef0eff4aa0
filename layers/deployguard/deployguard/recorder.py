"""The deployment recorder: CodeDeploy state-change events into the deployment's record.

EventBridge delivers at least once and not always in order: a state already recorded
is not recorded twice, and a terminal status is never overwritten by a late START.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from deployguard import clock
from deployguard.aws.codedeploy import CodeDeployGateway
from deployguard.aws.events import EventPublisher
from deployguard.config import DeployGuardConfig
from deployguard.exceptions import ConflictError
from deployguard.models import (
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
)
from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:deployment-recorder"
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
    model_config = Model.model_config | {"extra": "ignore"}

    deploymentId: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    application: str = Field(min_length=1)
    deploymentGroup: str = Field(min_length=1)
    state: str = Field(pattern=r"^(START|SUCCESS|FAILURE|STOP|READY)$")
    region: str | None = None


@dataclass
class RecordOutcome:
    deployment_id: str
    state: str
    changed: bool
    status: DeploymentStatus
    environment: str
    strategy: str
    duration_seconds: float | None


class DeploymentRecorder:
    def __init__(
        self,
        config: DeployGuardConfig,
        repository: DeploymentRepository,
        publisher: EventPublisher,
        codedeploy: CodeDeployGateway | None = None,
    ) -> None:
        self.config = config
        self.repository = repository
        self.publisher = publisher
        self.codedeploy = codedeploy or CodeDeployGateway()

    def record(self, detail: StateChangeDetail, at: datetime) -> RecordOutcome:
        info = self.codedeploy.deployment(detail.deploymentId)
        deployment = self.repository.find_deployment(detail.deploymentId) or self._create(detail, info, at)
        status = _STATUS[detail.state]
        traffic_moved = any(p.phase == Phase.VALIDATION for p in deployment.phase_history)
        if detail.state == "FAILURE" and traffic_moved and isinstance(info.target, LambdaTarget):
            # it passed pre-traffic validation, traffic moved, and the alias is back on the stable version
            status = DeploymentStatus.ROLLED_BACK if self._alias_back_on_stable(info.target) else status
        changed = False

        def change(d: Deployment) -> None:
            nonlocal changed
            already = any(p.reason == f"CodeDeploy {detail.state}" for p in d.phase_history)
            if already or (d.status.is_terminal and not status.is_terminal) or (d.status.is_terminal and already):
                return
            changed = True
            d.status = status
            d.phase = _PHASE[detail.state]
            d.phase_history.append(PhaseChange(phase=d.phase, at=at, reason=f"CodeDeploy {detail.state}"))
            if status.is_terminal:
                d.ended_at = at
                d.decision = status.value

        deployment = self.repository.update_deployment(deployment.deployment_id, change)
        if changed:
            self.repository.audit(
                deployment.deployment_id, f"codedeploy_{detail.state.lower()}", ACTOR,
                f"{detail.application}/{detail.deploymentGroup}: {detail.state}", state=detail.state,
            )  # fmt: skip
            self._announce_state(deployment, detail.state, info.creator)
        self._check_long_running(deployment)
        return RecordOutcome(
            deployment.deployment_id, detail.state, changed, deployment.status, deployment.environment,
            deployment.strategy.value, deployment.duration_seconds,
        )  # fmt: skip

    def _create(self, detail: StateChangeDetail, info: Any, at: datetime) -> Deployment:
        target = info.target
        if target is None:
            target = LambdaTarget(
                function_name=detail.application, alias="unknown", stable_version="?", new_version="?"
            )
        service = self.config.service(detail.application)
        version = target.new_version if isinstance(target, LambdaTarget) else target.new_task_definition
        deployment = Deployment(
            deployment_id=detail.deploymentId, service=detail.application, environment=service.environment,
            version=version or "unknown",
            strategy=Strategy.CANARY if "Canary" in info.config_name else (
                Strategy.LINEAR if "Linear" in info.config_name else Strategy.ALL_AT_ONCE),
            target=target, status=DeploymentStatus.IN_PROGRESS, driver="codedeploy", started_at=at,
            codedeploy_application=detail.application, codedeploy_group=detail.deploymentGroup,
            codedeploy_deployment_id=detail.deploymentId,
            expected_duration_seconds=service.expected_duration_seconds,
            phase_history=[PhaseChange(phase=Phase.PRE_DEPLOYMENT, at=at, reason="recorded from CodeDeploy")],
        )  # fmt: skip
        try:
            return self.repository.create_deployment(deployment)
        except ConflictError:
            return self.repository.get_deployment(detail.deploymentId)

    @staticmethod
    def _alias_back_on_stable(target: LambdaTarget) -> bool:
        from deployguard.aws.lambda_traffic import LambdaTrafficShifter

        return LambdaTrafficShifter(target).current().weight_of(target.stable_version) == 1.0

    def _announce_state(self, deployment: Deployment, state: str, creator: str) -> None:
        rollback_deployment = creator == "codeDeployRollback"
        if state == "START":
            kind, title, severity = EventType.DEPLOYMENT_STARTED, "Deployment Started", Severity.INFO
        elif state == "SUCCESS":
            kind, title, severity = (
                (EventType.ROLLBACK_COMPLETED, "Rollback Completed", Severity.WARNING) if rollback_deployment
                else (EventType.DEPLOYMENT_COMPLETED, "Deployment Completed", Severity.INFO)
            )  # fmt: skip
        elif state in ("FAILURE", "STOP"):
            kind, title, severity = (
                (EventType.ROLLBACK_FAILED, "Rollback Failed", Severity.CRITICAL) if rollback_deployment
                else (EventType.DEPLOYMENT_FAILED, "Deployment Failed", Severity.ERROR)
            )  # fmt: skip
        else:
            return
        event = DeploymentEvent(
            event_type=kind, deployment_id=deployment.deployment_id, service=deployment.service,
            version=deployment.version, environment=deployment.environment, severity=severity, title=title,
            message=f"CodeDeploy {state}; status {deployment.status.value}",
            details={"duration_seconds": deployment.duration_seconds, "strategy": deployment.strategy.value},
        )  # fmt: skip
        self.repository.add_event(event)
        self.publisher.publish(event)

    def _check_long_running(self, deployment: Deployment) -> None:
        expected = deployment.expected_duration_seconds
        if expected is None or deployment.status.is_terminal:
            return
        running = (clock.now() - deployment.started_at).total_seconds()
        if running <= expected or not self.repository.claim_once(
            "LONG-RUNNING", deployment.deployment_id, timedelta(days=2)
        ):
            return
        event = DeploymentEvent(
            event_type=EventType.DEPLOYMENT_LONG_RUNNING, deployment_id=deployment.deployment_id,
            service=deployment.service, version=deployment.version, environment=deployment.environment,
            severity=Severity.WARNING, title="Deployment Long Running",
            message=f"running {running / 60:.0f} min, expected {expected / 60:.0f} min",
        )  # fmt: skip
        self.repository.add_event(event)
        self.publisher.publish(event)
