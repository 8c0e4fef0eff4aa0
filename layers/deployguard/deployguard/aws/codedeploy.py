"""CodeDeploy calls: what a deployment is, which hook is running, answering it, stopping it.

Each call goes through :func:`deployguard.aws.clients.client` (adaptive retries) and
turns every AWS or transport error into a :class:`CodeDeployError` naming the call.

The deployment's target comes from its revision's AppSpec: for Lambda the function,
alias, ``CurrentVersion`` and ``TargetVersion`` (the AppSpec SAM's DeploymentPreference
writes); for ECS the task definition of ``TargetService``, with the cluster and service
names from the deployment group (an ECS AppSpec does not name them).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import yaml
from botocore.exceptions import BotoCoreError, ClientError

from deployguard.aws import clients
from deployguard.exceptions import CodeDeployError
from deployguard.models import EcsTarget, LambdaTarget, Model, Strategy

HookStatus = Literal["Succeeded", "Failed"]
LAMBDA_HOOKS = ("BeforeAllowTraffic", "AfterAllowTraffic")
ECS_HOOKS = ("BeforeInstall", "AfterInstall", "AfterAllowTestTraffic", "BeforeAllowTraffic", "AfterAllowTraffic")
ROLLBACK_CREATOR = "codeDeployRollback"


class CodeDeployDeployment(Model):
    """What DeployGuard needs to know of a CodeDeploy deployment (GetDeployment + its AppSpec)."""

    deployment_id: str
    application: str
    group: str
    status: str = ""
    compute_platform: str = ""
    creator: str = "user"
    config_name: str = ""
    target: LambdaTarget | EcsTarget | None = None
    create_time: datetime | None = None
    complete_time: datetime | None = None
    error_message: str = ""
    rollback_deployment_id: str | None = None  # the deployment that rolls this one back
    rollback_of: str | None = None  # the deployment this one rolls back

    @property
    def is_rollback(self) -> bool:
        return self.creator == ROLLBACK_CREATOR or self.rollback_of is not None

    @property
    def strategy(self) -> Strategy:
        return strategy_of(self.config_name, self.compute_platform)


def strategy_of(config_name: str, compute_platform: str = "") -> Strategy:
    """The strategy of a deployment configuration (``CodeDeployDefault.LambdaCanary10Percent5Minutes``...)."""
    name = config_name.lower()
    if "canary" in name:
        return Strategy.CANARY
    if "linear" in name:
        return Strategy.LINEAR
    if compute_platform == "ECS":
        return Strategy.BLUE_GREEN
    return Strategy.ALL_AT_ONCE


def appspec_of(revision: dict[str, Any]) -> dict[str, Any]:
    """The AppSpec document of a revision (``AppSpecContent`` or ``String``; JSON or YAML)."""
    holder = revision.get("appSpecContent") or revision.get("string") or {}
    content = holder.get("content") if isinstance(holder, dict) else None
    if not content:
        return {}
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError:
        try:
            parsed = yaml.safe_load(content)
        except yaml.YAMLError as exc:
            raise CodeDeployError(f"the revision's AppSpec is neither JSON nor YAML: {exc}") from exc
    return parsed if isinstance(parsed, dict) else {}


def target_from_appspec(
    appspec: dict[str, Any], ecs_services: list[dict[str, Any]] | None = None
) -> LambdaTarget | EcsTarget | None:
    """The function, alias and versions of a Lambda AppSpec, or the ECS service of an ECS one.

    ``ecs_services`` is the deployment group's ``ecsServices`` (``serviceName``, ``clusterName``).
    """
    resources = appspec.get("Resources") or []
    if not isinstance(resources, list):
        raise CodeDeployError("AppSpec Resources must be a list")
    for resource in resources:
        if not isinstance(resource, dict):
            continue
        for body in resource.values():
            if not isinstance(body, dict):
                continue
            kind = body.get("Type", "")
            props = body.get("Properties") or {}
            if kind == "AWS::Lambda::Function":
                missing = [
                    k for k in ("Name", "Alias", "CurrentVersion", "TargetVersion") if props.get(k) in (None, "")
                ]
                if missing:
                    raise CodeDeployError(f"Lambda AppSpec lacks Properties.{', Properties.'.join(missing)}")
                return LambdaTarget(
                    function_name=str(props["Name"]),
                    alias=str(props["Alias"]),
                    stable_version=str(props["CurrentVersion"]),
                    new_version=str(props["TargetVersion"]),
                )
            if kind == "AWS::ECS::Service":
                service = (ecs_services or [{}])[0]
                cluster = service.get("clusterName") or props.get("Cluster")
                name = service.get("serviceName") or props.get("Service")
                if not cluster or not name:
                    raise CodeDeployError("ECS deployment: the deployment group names no ecsServices")
                return EcsTarget(
                    cluster=str(cluster), service=str(name), new_task_definition=str(props.get("TaskDefinition", ""))
                )
    return None


def _fail(call: str, exc: Exception) -> CodeDeployError:
    return CodeDeployError(f"{call}: {exc}")


class CodeDeployGateway:
    """The CodeDeploy calls DeployGuard makes, each turned into a CodeDeployError on failure."""

    def deployment(self, deployment_id: str) -> CodeDeployDeployment:
        """GetDeployment, its AppSpec, and for ECS the deployment group's service (GetDeploymentGroup)."""
        try:
            info = clients.client("codedeploy").get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        except (ClientError, BotoCoreError) as exc:
            raise _fail(f"GetDeployment {deployment_id}", exc) from exc
        application = str(info.get("applicationName", ""))
        group = str(info.get("deploymentGroupName", ""))
        platform = str(info.get("computePlatform", ""))
        appspec = appspec_of(info.get("revision") or {})
        ecs_services = self.deployment_group(application, group).get("ecsServices") if platform == "ECS" else None
        rollback = info.get("rollbackInfo") or {}
        error = info.get("errorInformation") or {}
        return CodeDeployDeployment(
            deployment_id=deployment_id,
            application=application,
            group=group,
            status=str(info.get("status", "")),
            compute_platform=platform,
            creator=str(info.get("creator") or "user"),
            config_name=str(info.get("deploymentConfigName", "")),
            target=target_from_appspec(appspec, ecs_services),
            create_time=info.get("createTime") or None,
            complete_time=info.get("completeTime") or None,
            error_message=str(error.get("message", "")),
            rollback_deployment_id=rollback.get("rollbackDeploymentId") or None,
            rollback_of=rollback.get("rollbackTriggeringDeploymentId") or None,
        )

    def deployment_group(self, application: str, group: str) -> dict[str, Any]:
        try:
            resp = clients.client("codedeploy").get_deployment_group(
                applicationName=application, deploymentGroupName=group
            )
        except (ClientError, BotoCoreError) as exc:
            raise _fail(f"GetDeploymentGroup {application}/{group}", exc) from exc
        return dict(resp.get("deploymentGroupInfo") or {})

    def running_lifecycle_event(self, deployment_id: str) -> str | None:
        """The lifecycle event (hook) in progress on the deployment's target, if CodeDeploy says."""
        codedeploy = clients.client("codedeploy")
        try:
            target_ids = codedeploy.list_deployment_targets(deploymentId=deployment_id).get("targetIds", [])
            for target_id in target_ids:
                target = codedeploy.get_deployment_target(deploymentId=deployment_id, targetId=target_id)[
                    "deploymentTarget"
                ]
                body = target.get("ecsTarget") or target.get("lambdaTarget") or {}
                for event in body.get("lifecycleEvents", []):
                    if event.get("status") == "InProgress":
                        return str(event["lifecycleEventName"])
        except (ClientError, BotoCoreError) as exc:
            raise _fail(f"ListDeploymentTargets/GetDeploymentTarget {deployment_id}", exc) from exc
        return None

    def report(self, deployment_id: str | None, execution_id: str, status: HookStatus) -> None:
        """PutLifecycleEventHookExecutionStatus (throttling is retried by the client's adaptive mode).

        ``deployment_id`` is optional in the API: a malformed event may still carry the execution id.
        """
        kwargs: dict[str, Any] = {"lifecycleEventHookExecutionId": execution_id, "status": status}
        if deployment_id:
            kwargs["deploymentId"] = deployment_id
        try:
            clients.client("codedeploy").put_lifecycle_event_hook_execution_status(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _fail(f"PutLifecycleEventHookExecutionStatus {status}", exc) from exc

    def stop(self, deployment_id: str, *, auto_rollback: bool = True) -> str:
        """StopDeployment; returns CodeDeploy's status (``Pending`` or ``Succeeded``)."""
        try:
            resp = clients.client("codedeploy").stop_deployment(
                deploymentId=deployment_id, autoRollbackEnabled=auto_rollback
            )
        except (ClientError, BotoCoreError) as exc:
            raise _fail(f"StopDeployment {deployment_id}", exc) from exc
        return str(resp.get("status", ""))
