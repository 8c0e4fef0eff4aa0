"""CodeDeploy calls: what a deployment is, and answering a lifecycle hook."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from botocore.exceptions import BotoCoreError, ClientError

from deployguard.aws import clients
from deployguard.exceptions import CodeDeployError
from deployguard.models import EcsTarget, LambdaTarget

HookStatus = Literal["Succeeded", "Failed"]


@dataclass(frozen=True)
class CodeDeployDeployment:
    deployment_id: str
    application: str
    group: str
    status: str
    compute_platform: str
    creator: str
    config_name: str
    target: LambdaTarget | EcsTarget | None


def _appspec(revision: dict[str, Any]) -> dict[str, Any]:
    content = (revision.get("appSpecContent") or revision.get("string") or {}).get("content")
    if not content:
        return {}
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError:
        parsed = yaml.safe_load(content)
    return parsed if isinstance(parsed, dict) else {}


def target_from_appspec(appspec: dict[str, Any]) -> LambdaTarget | EcsTarget | None:
    """The function, alias and versions of a Lambda AppSpec, or the ECS service of an ECS one."""
    for resource in appspec.get("Resources", []) or []:
        for body in resource.values():
            kind = body.get("Type", "")
            props = body.get("Properties", {})
            if kind == "AWS::Lambda::Function":
                return LambdaTarget(
                    function_name=str(props["Name"]),
                    alias=str(props["Alias"]),
                    stable_version=str(props["CurrentVersion"]),
                    new_version=str(props["TargetVersion"]),
                )
            if kind == "AWS::ECS::Service":
                return EcsTarget(
                    cluster=str(props.get("Cluster", "default")),
                    service=str(props.get("Service") or props.get("ServiceName") or "service"),
                    new_task_definition=str(props.get("TaskDefinition", "")),
                )
    return None


class CodeDeployGateway:
    """The CodeDeploy calls DeployGuard makes, each turned into a CodeDeployError on failure."""

    def deployment(self, deployment_id: str) -> CodeDeployDeployment:
        try:
            info = clients.client("codedeploy").get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        except (ClientError, BotoCoreError) as exc:
            raise CodeDeployError(f"GetDeployment {deployment_id}: {exc}") from exc
        return CodeDeployDeployment(
            deployment_id=deployment_id,
            application=str(info.get("applicationName", "")),
            group=str(info.get("deploymentGroupName", "")),
            status=str(info.get("status", "")),
            compute_platform=str(info.get("computePlatform", "")),
            creator=str(info.get("creator", "user")),
            config_name=str(info.get("deploymentConfigName", "")),
            target=target_from_appspec(_appspec(info.get("revision") or {})),
        )

    def report(self, deployment_id: str, execution_id: str, status: HookStatus) -> None:
        """PutLifecycleEventHookExecutionStatus (throttling is retried by the client's adaptive mode)."""
        try:
            clients.client("codedeploy").put_lifecycle_event_hook_execution_status(
                deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status=status
            )
        except (ClientError, BotoCoreError) as exc:
            raise CodeDeployError(f"PutLifecycleEventHookExecutionStatus {execution_id} {status}: {exc}") from exc
