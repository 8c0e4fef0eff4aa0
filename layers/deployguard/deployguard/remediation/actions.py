"""The remediation actions. Each reads the current state first (``plan``) so that running it
again is a no-op, then makes its AWS call (``execute``) and checks the effect.

- ``lambda_rollback``: lambda:UpdateAlias to the stable version, no routing (no-op: alias already 100% stable)
- ``codedeploy_stop``: codedeploy:StopDeployment autoRollbackEnabled=true (no-op: deployment finished)
- ``lambda_reserved_concurrency``: lambda:PutFunctionConcurrency, shed load (no-op: reserved already <= wanted)
- ``lambda_provisioned_concurrency``: lambda:PutProvisionedConcurrencyConfig on the alias (no-op: already >= wanted)
- ``ecs_force_new_deployment``: ecs:UpdateService forceNewDeployment, a restart (once per incident)
- ``ecs_scale``: ecs:UpdateService desiredCount (no-op: already that count)
- ``ecs_rollback``: ecs:UpdateService taskDefinition=previous (no-op: already on it)
- ``rollback``: codedeploy_stop for a deployment CodeDeploy drives, else lambda_rollback or ecs_rollback
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from deployguard import clock
from deployguard.aws import ecs, lambda_concurrency
from deployguard.aws.codedeploy import FINISHED_STATUSES, CodeDeployGateway
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import (
    CodeDeployError,
    EcsError,
    LambdaError,
    NotApplicableError,
    RemediationError,
    TrafficShiftError,
)
from deployguard.models import Deployment, DeploymentStatus, EcsTarget, EndCause, LambdaTarget, Phase, PhaseChange
from deployguard.remediation.models import ActionPlan
from deployguard.remediation.targets import target_id

if TYPE_CHECKING:
    from deployguard.alerts.settings import RemediationAction
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:remediation"


class Handler(ABC):
    type: str

    def __init__(self, name: str, config: RemediationAction, deployment: Deployment) -> None:
        self.name = name
        self.config = config
        self.deployment = deployment
        self.reason = f"remediation {name}"  # why it runs; the executor names the incident and its rules
        self.cause: EndCause | None = None  # the same in parts (the executor's): kept on the record it ends

    @property
    def target(self) -> str:
        return target_id(self.deployment)

    def _plan(self, description: str, calls: list[str], noop: bool = False, routing: str | None = None) -> ActionPlan:
        return ActionPlan(
            action=self.name,
            type=self.type,
            target=self.target,
            description=description,
            calls=calls,
            noop=noop,
            routing=routing,
        )

    @abstractmethod
    def plan(self) -> ActionPlan:
        """What the action would do now (reads AWS, changes nothing)."""

    @abstractmethod
    def execute(self, repository: DeploymentRepository) -> str:
        """Do it and check the effect; a message. Raises RemediationError on failure."""


def alias_routing(function_version: str, weights: dict[str, float]) -> str:
    """What a Lambda alias routes, as text that compares equal only for the same routing:
    ``version 1`` or ``version 1 + version 2 at 0.25``."""
    extra = "".join(f" + version {v} at {float(w):g}" for v, w in sorted(weights.items()))
    return f"version {function_version}{extra}"


def _failed(exc: LambdaError | EcsError) -> RemediationError:
    return RemediationError(str(exc))  # names the operation: "lambda:PutFunctionConcurrency: ..."


# --------------------------------------------------------------------------- Lambda


class _LambdaHandler(Handler):
    @property
    def lambda_target(self) -> LambdaTarget:
        target = self.deployment.target
        if not isinstance(target, LambdaTarget):
            raise NotApplicableError(f"{self.type} needs a Lambda target, {self.deployment.deployment_id} has ECS")
        return target


class LambdaRollback(_LambdaHandler):
    type = "lambda_rollback"

    def plan(self) -> ActionPlan:
        t = self.lambda_target
        try:
            alias = LambdaTrafficShifter(t).current()
        except TrafficShiftError as exc:
            raise RemediationError(str(exc)) from exc
        routing = alias_routing(alias.function_version, alias.additional_weights)
        if alias.weight_of(t.stable_version) == 1.0:
            return self._plan(
                f"alias {t.function_name}:{t.alias} already at 100% version {t.stable_version}", [], True, routing
            )
        return self._plan(
            f"point alias {t.function_name}:{t.alias} at 100% version {t.stable_version} "
            f"(now {alias.function_version} + {alias.additional_weights or 'no routing'})",
            [f"lambda:UpdateAlias {t.function_name}:{t.alias} FunctionVersion={t.stable_version} RoutingConfig={{}}"],
            routing=routing,
        )

    def execute(self, repository: DeploymentRepository) -> str:
        t = self.lambda_target
        shifter = LambdaTrafficShifter(t)
        try:
            shifter.rollback()
            alias = shifter.current()
        except TrafficShiftError as exc:
            raise RemediationError(str(exc)) from exc
        if alias.weight_of(t.stable_version) != 1.0:
            raise RemediationError(f"alias still routes {alias.additional_weights} to {alias.function_version}")
        _mark_rolled_back(repository, self.deployment.deployment_id, self.reason, self.cause)
        return f"alias {t.function_name}:{t.alias} at 100% version {t.stable_version}"


class CodeDeployStop(Handler):
    """Stop a CodeDeploy deployment (Lambda or ECS) and let CodeDeploy roll it back."""

    type = "codedeploy_stop"

    @property
    def codedeploy_id(self) -> str:
        deployment_id = self.deployment.codedeploy_deployment_id
        if not deployment_id:
            raise NotApplicableError(f"{self.deployment.deployment_id} is not driven by CodeDeploy")
        return deployment_id

    def plan(self) -> ActionPlan:
        deployment_id = self.codedeploy_id
        try:
            status = CodeDeployGateway().status(deployment_id)
        except CodeDeployError as exc:
            raise RemediationError(f"codedeploy:{exc}") from exc
        if status in FINISHED_STATUSES:
            return self._plan(f"CodeDeploy deployment {deployment_id} already {status}", [], True)
        return self._plan(
            f"stop CodeDeploy deployment {deployment_id} ({status}) and roll it back",
            [f"codedeploy:StopDeployment deploymentId={deployment_id} autoRollbackEnabled=true"],
        )

    def execute(self, repository: DeploymentRepository) -> str:
        deployment_id = self.codedeploy_id
        try:
            status = CodeDeployGateway().stop(deployment_id, auto_rollback=True)
        except CodeDeployError as exc:
            raise RemediationError(f"codedeploy:{exc}") from exc
        repository.keep_stop_reason(self.deployment.deployment_id, self.reason, self.cause)
        return f"CodeDeploy deployment {deployment_id} stopping with rollback ({status or 'accepted'})"


class ReservedConcurrency(_LambdaHandler):
    type = "lambda_reserved_concurrency"

    def _current(self) -> int | None:
        try:
            return lambda_concurrency.reserved_concurrency(self.lambda_target.function_name)
        except LambdaError as exc:
            raise _failed(exc) from exc

    def plan(self) -> ActionPlan:
        wanted = self.config.reserved_concurrency
        assert wanted is not None
        name = self.lambda_target.function_name
        current = self._current()
        if current is not None and current <= wanted:
            return self._plan(f"{name} reserved concurrency already {current} (<= {wanted})", [], True)
        return self._plan(
            f"shed load: lower {name} reserved concurrency from {current if current is not None else 'unreserved'} "
            f"to {wanted}",
            [f"lambda:PutFunctionConcurrency {name} ReservedConcurrentExecutions={wanted}"],
        )

    def execute(self, repository: DeploymentRepository) -> str:
        wanted = self.config.reserved_concurrency
        assert wanted is not None
        name = self.lambda_target.function_name
        try:
            lambda_concurrency.put_reserved_concurrency(name, wanted)
        except LambdaError as exc:
            raise _failed(exc) from exc
        if self._current() != wanted:
            raise RemediationError(f"{name} reserved concurrency is not {wanted} after PutFunctionConcurrency")
        return f"{name} reserved concurrency {wanted}"


class ProvisionedConcurrency(_LambdaHandler):
    type = "lambda_provisioned_concurrency"

    def _current(self) -> int | None:
        t = self.lambda_target
        try:
            return lambda_concurrency.provisioned_concurrency(t.function_name, t.alias)
        except LambdaError as exc:
            raise _failed(exc) from exc

    def plan(self) -> ActionPlan:
        t = self.lambda_target
        wanted = self.config.provisioned_concurrency
        assert wanted is not None
        current = self._current()
        if current is not None and current >= wanted:
            return self._plan(f"{t.function_name}:{t.alias} provisioned concurrency already {current}", [], True)
        return self._plan(
            f"scale {t.function_name}:{t.alias} provisioned concurrency from {current or 0} to {wanted}",
            [
                f"lambda:PutProvisionedConcurrencyConfig {t.function_name}:{t.alias} "
                f"ProvisionedConcurrentExecutions={wanted}"
            ],
        )

    def execute(self, repository: DeploymentRepository) -> str:
        t = self.lambda_target
        wanted = self.config.provisioned_concurrency
        assert wanted is not None
        try:
            status = lambda_concurrency.put_provisioned_concurrency(t.function_name, t.alias, wanted)
        except LambdaError as exc:
            raise _failed(exc) from exc
        return f"{t.function_name}:{t.alias} provisioned concurrency {wanted} ({status})"


# --------------------------------------------------------------------------- ECS


def _task_definition(service: dict[str, Any]) -> str:
    return f"task definition {service.get('taskDefinition', '')}"


class _EcsHandler(Handler):
    @property
    def ecs_target(self) -> EcsTarget:
        target = self.deployment.target
        if not isinstance(target, EcsTarget):
            raise NotApplicableError(f"{self.type} needs an ECS target, {self.deployment.deployment_id} has Lambda")
        return target

    def _service(self) -> dict[str, Any]:
        t = self.ecs_target
        try:
            service = ecs.describe_service(t.cluster, t.service)
        except EcsError as exc:
            raise _failed(exc) from exc
        if service is None:
            raise RemediationError(f"ECS service {t.cluster}/{t.service} not found")
        return service

    def _update(self, **changes: Any) -> dict[str, Any]:
        t = self.ecs_target
        try:
            return ecs.update_service(t.cluster, t.service, **changes)
        except EcsError as exc:
            raise _failed(exc) from exc


class EcsForceNewDeployment(_EcsHandler):
    type = "ecs_force_new_deployment"

    def plan(self) -> ActionPlan:
        t = self.ecs_target
        service = self._service()
        return self._plan(
            f"restart {t.cluster}/{t.service}: new tasks of {service.get('taskDefinition')}",
            [f"ecs:UpdateService {t.cluster}/{t.service} forceNewDeployment=true"],
            routing=_task_definition(service),
        )

    def execute(self, repository: DeploymentRepository) -> str:
        t = self.ecs_target
        self._update(forceNewDeployment=True)
        return f"{t.cluster}/{t.service} restarting (new deployment forced)"


class EcsScale(_EcsHandler):
    type = "ecs_scale"

    def _wanted(self, current: int) -> int:
        if self.config.desired_count is not None:
            return self.config.desired_count
        assert self.config.scale_factor is not None
        return min(self.config.max_desired_count, max(1, math.ceil(current * self.config.scale_factor)))

    def plan(self) -> ActionPlan:
        t = self.ecs_target
        service = self._service()
        current = int(service.get("desiredCount", 0))
        wanted = self._wanted(current)
        if current == wanted:
            return self._plan(f"{t.cluster}/{t.service} desired count already {current}", [], True)
        return self._plan(
            f"scale {t.cluster}/{t.service} from {current} to {wanted} tasks",
            [f"ecs:UpdateService {t.cluster}/{t.service} desiredCount={wanted}"],
            routing=_task_definition(service),
        )

    def execute(self, repository: DeploymentRepository) -> str:
        t = self.ecs_target
        wanted = self._wanted(int(self._service().get("desiredCount", 0)))
        service = self._update(desiredCount=wanted)
        if int(service.get("desiredCount", -1)) != wanted:
            raise RemediationError(f"{t.cluster}/{t.service} desired count is not {wanted} after UpdateService")
        return f"{t.cluster}/{t.service} desired count {wanted}"


class EcsRollback(_EcsHandler):
    type = "ecs_rollback"

    def _previous(self, current: str) -> str:
        """The stable task definition, or else the revision before the deployment's new one."""
        target = self.ecs_target
        if target.stable_task_definition:
            return target.stable_task_definition
        if target.new_task_definition and not self._same(current, target.new_task_definition):
            return current  # the service already left the new revision: nothing to roll back
        base = target.new_task_definition or current
        family, _, revision = base.rpartition(":")
        if not family or not revision.isdigit() or int(revision) <= 1:
            raise NotApplicableError(f"no previous task definition of {base} is known")
        return f"{family}:{int(revision) - 1}"

    @staticmethod
    def _same(a: str, b: str) -> bool:
        return a == b or a.endswith("/" + b) or b.endswith("/" + a)

    def plan(self) -> ActionPlan:
        t = self.ecs_target
        current = str(self._service().get("taskDefinition", ""))
        previous = self._previous(current)
        if self._same(current, previous):
            return self._plan(
                f"{t.cluster}/{t.service} already runs {previous}", [], True, f"task definition {current}"
            )
        return self._plan(
            f"roll {t.cluster}/{t.service} back from {current} to {previous}",
            [f"ecs:UpdateService {t.cluster}/{t.service} taskDefinition={previous} forceNewDeployment=true"],
            routing=f"task definition {current}",
        )

    def execute(self, repository: DeploymentRepository) -> str:
        t = self.ecs_target
        current = str(self._service().get("taskDefinition", ""))
        previous = self._previous(current)
        service = self._update(taskDefinition=previous, forceNewDeployment=True)
        if not self._same(str(service.get("taskDefinition", "")), previous):
            raise RemediationError(f"{t.cluster}/{t.service} does not run {previous} after UpdateService")
        _mark_rolled_back(repository, self.deployment.deployment_id, self.reason, self.cause)
        return f"{t.cluster}/{t.service} back on {previous}"


# --------------------------------------------------------------------------- dispatch

HANDLERS: dict[str, type[Handler]] = {
    h.type: h
    for h in (
        LambdaRollback,
        CodeDeployStop,
        ReservedConcurrency,
        ProvisionedConcurrency,
        EcsForceNewDeployment,
        EcsScale,
        EcsRollback,
    )
}


def handler_for(name: str, config: RemediationAction, deployment: Deployment) -> Handler:
    """The handler of an action; ``rollback`` becomes the right rollback for the deployment."""
    kind = config.type
    if kind == "rollback":
        if deployment.driver == "codedeploy" and deployment.codedeploy_deployment_id:
            kind = "codedeploy_stop"  # CodeDeploy moves the traffic: it rolls back (Lambda alias or ECS task sets)
        elif isinstance(deployment.target, EcsTarget):
            kind = "ecs_rollback"
        else:
            kind = "lambda_rollback"
    return HANDLERS[kind](name, config, deployment)


def _mark_rolled_back(
    repository: DeploymentRepository, deployment_id: str, reason: str, cause: EndCause | None = None
) -> None:
    """Record on the deployment that it was rolled back (unless it already ended), why (``reason``, and
    ``cause``: the same in parts). A canary that was already rolling back (phase ``failed`` while in progress)
    keeps its one ``failed`` phase entry."""
    now = clock.now()

    def change(d: Deployment) -> None:
        if d.status.is_terminal:
            return
        d.status = DeploymentStatus.ROLLED_BACK
        d.canary_weight = 0.0
        d.decision = "rolled_back"
        d.decision_reason = reason
        d.end_cause = cause
        d.ended_at = now
        if d.phase != Phase.FAILED:  # a canary already rolling back (Assess decided it) says so once
            d.phase = Phase.FAILED
            d.phase_history.append(PhaseChange(phase=Phase.FAILED, at=now, reason=reason))

    if repository.find_deployment(deployment_id) is not None:
        repository.update_deployment(deployment_id, change)
