"""ECS: the task definition each task set of a blue/green deployment runs, and a service read and updated.

CodeDeploy names an ECS deployment's task sets (GetDeploymentTarget ``taskSetsInfo``) but not
what they run; the AppSpec gives only the replacement's (green) task definition.
:func:`task_set_definitions` asks ECS (DescribeTaskSets, one call for both) so the original
(blue, stable) task definition is known too, for the metric placeholders that use it, the
alerts and the reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deployguard.aws import clients
from deployguard.exceptions import EcsError


def task_set_definitions(cluster: str, service: str, task_sets: Sequence[str]) -> dict[str, str]:
    """Task set id (``ecs-svc/...``, as CodeDeploy names it) or ARN -> the task definition ARN it runs.

    A task set ECS no longer knows is left out; an AWS or transport error is an :class:`EcsError`."""
    wanted = [t for t in task_sets if t]
    if not wanted:
        return {}
    try:
        resp = clients.client("ecs").describe_task_sets(cluster=cluster, service=service, taskSets=wanted)
    except (ClientError, BotoCoreError) as exc:
        raise EcsError(f"DescribeTaskSets {cluster}/{service}: {exc}") from exc
    found: dict[str, str] = {}
    for task_set in resp.get("taskSets") or []:
        definition = str(task_set.get("taskDefinition") or "")
        arn, ident = str(task_set.get("taskSetArn") or ""), str(task_set.get("id") or "")
        for name in wanted:
            if name in (arn, ident) or (ident and arn.endswith("/" + name)):
                found[name] = definition
    return found


def family_revision(task_definition: str) -> str:
    """``checkout-web:2`` of a task definition ARN (as the ECS console names it); the text itself otherwise."""
    return task_definition.rsplit("/", 1)[-1]


def describe_service(cluster: str, service: str) -> dict[str, Any] | None:
    """The ECS service as DescribeServices gives it; None when ECS does not know it."""
    try:
        resp = clients.client("ecs").describe_services(cluster=cluster, services=[service])
    except (ClientError, BotoCoreError) as exc:
        raise EcsError(f"ecs:DescribeServices: {exc}") from exc
    services = resp.get("services") or []
    return dict(services[0]) if services else None


def update_service(cluster: str, service: str, **changes: Any) -> dict[str, Any]:
    """UpdateService with ``changes`` (desiredCount, taskDefinition, forceNewDeployment); the service after it."""
    try:
        resp = clients.client("ecs").update_service(cluster=cluster, service=service, **changes)
    except (ClientError, BotoCoreError) as exc:
        raise EcsError(f"ecs:UpdateService: {exc}") from exc
    return dict(resp["service"])
