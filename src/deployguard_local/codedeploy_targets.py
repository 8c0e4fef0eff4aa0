"""CodeDeploy's deployment targets on the embedded AWS (moto lacks ListDeploymentTargets and
GetDeploymentTarget): per deployment, its Lambda or ECS target, lifecycle events and task sets.
Written by the local CodeDeploy (:mod:`deployguard_local.codedeploy`) and ECS
(:mod:`deployguard_local.ecs`) deployments, read through the real boto3 calls."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID as DEFAULT_ACCOUNT

from deployguard import clock
from deployguard.aws import clients

ECS_LIFECYCLE_EVENTS = (
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "AllowTestTraffic",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AllowTraffic",
    "AfterAllowTraffic",
)


@dataclass
class TargetStore:
    """CodeDeploy's deployment targets: per deployment, its target's lifecycle events and task sets."""

    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # deployment id -> deploymentTarget
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_ecs_target(
        self,
        deployment_id: str,
        cluster: str,
        service: str,
        blue_tg: str,
        green_tg: str,
        task_sets: tuple[str, str] = ("", ""),
    ) -> None:
        """``task_sets``: the ids of the blue and green task sets in ECS (made up when not given)."""
        target_id = f"{cluster}:{service}"
        with self.lock:
            self.targets[deployment_id] = {
                "deploymentTargetType": "ECSTarget",
                "ecsTarget": {
                    "deploymentId": deployment_id,
                    "targetId": target_id,
                    "targetArn": f"arn:aws:ecs:{clients.region()}:{DEFAULT_ACCOUNT}:service/{cluster}/{service}",
                    "lastUpdatedAt": clock.now(),
                    "lifecycleEvents": [{"lifecycleEventName": n, "status": "Pending"} for n in ECS_LIFECYCLE_EVENTS],
                    "status": "InProgress",
                    "taskSetsInfo": [
                        _task_set("Blue", blue_tg, 100.0, task_sets[0]),
                        _task_set("Green", green_tg, 0.0, task_sets[1]),
                    ],
                },
            }

    def add_lambda_target(
        self, deployment_id: str, function_name: str, alias: str, current_version: str, target_version: str
    ) -> None:
        """A Lambda deployment's target: the alias, its versions and the target version's weight (percent)."""
        with self.lock:
            self.targets[deployment_id] = {
                "deploymentTargetType": "LambdaTarget",
                "lambdaTarget": {
                    "deploymentId": deployment_id,
                    "targetId": f"{function_name}:{alias}",
                    "targetArn": f"arn:aws:lambda:{clients.region()}:{DEFAULT_ACCOUNT}:function:"
                    f"{function_name}:{alias}",
                    "lastUpdatedAt": clock.now(),
                    "lifecycleEvents": [
                        {"lifecycleEventName": n, "status": "Pending"}
                        for n in ("BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic")
                    ],
                    "status": "InProgress",
                    "lambdaFunctionInfo": {
                        "functionName": function_name,
                        "functionAlias": alias,
                        "currentVersion": current_version,
                        "targetVersion": target_version,
                        "targetVersionWeight": 0.0,
                    },
                },
            }

    def weigh_lambda(self, deployment_id: str, target_percent: float) -> None:
        with self.lock:
            target = self.targets.get(deployment_id)
            if target is not None and "lambdaTarget" in target:
                target["lambdaTarget"]["lambdaFunctionInfo"]["targetVersionWeight"] = target_percent
                target["lambdaTarget"]["lastUpdatedAt"] = clock.now()

    def body(self, deployment_id: str) -> dict[str, Any]:
        return dict(self.targets[deployment_id]["ecsTarget"])

    def _body_of(self, deployment_id: str) -> dict[str, Any]:
        target = self.targets[deployment_id]
        return target.get("ecsTarget") or target["lambdaTarget"]

    def enter(self, deployment_id: str, lifecycle_event: str) -> None:
        """``lifecycle_event`` is now in progress (an ECS or a Lambda target); the ones before it succeeded."""
        with self.lock:
            body = self._body_of(deployment_id)
            names = [e["lifecycleEventName"] for e in body["lifecycleEvents"]]
            position = names.index(lifecycle_event)
            now = clock.now()
            for i, event in enumerate(body["lifecycleEvents"]):
                if i < position and event["status"] in ("Pending", "InProgress"):
                    event["status"] = "Succeeded"
                    event.setdefault("startTime", now)  # as CodeDeploy says when each event began and ended
                    event["endTime"] = now
                elif i == position:
                    event["status"] = "InProgress"
                    event.setdefault("startTime", now)
            body["lastUpdatedAt"] = now

    def finish(self, deployment_id: str, status: str) -> None:
        """The target ends: the event in progress takes ``status``, the rest that did not run are Skipped."""
        with self.lock:
            body = self._body_of(deployment_id)
            for event in body["lifecycleEvents"]:
                if event["status"] == "InProgress":
                    event["status"] = status
                    event["endTime"] = clock.now()
                elif event["status"] == "Pending":
                    event["status"] = "Skipped"
            body["status"] = status
            body["lastUpdatedAt"] = clock.now()

    def weigh(self, deployment_id: str, green_percent: float) -> None:
        with self.lock:
            for task_set in self.targets[deployment_id]["ecsTarget"]["taskSetsInfo"]:
                green = task_set["taskSetLabel"] == "Green"
                task_set["trafficWeight"] = green_percent if green else 100.0 - green_percent


def _task_set(label: str, target_group: str, weight: float, identifier: str = "") -> dict[str, Any]:
    return {
        "identifer": identifier or f"ecs-svc/{uuid.uuid4().int % 10**19:019d}",  # sic: the API's spelling
        "desiredCount": 2,
        "pendingCount": 0,
        "runningCount": 2,
        "status": "PRIMARY" if label == "Blue" else "ACTIVE",
        "trafficWeight": weight,
        "targetGroup": {"name": target_group},
        "taskSetLabel": label,
    }


TARGETS = TargetStore()


def _target_body(target: dict[str, Any]) -> dict[str, Any]:
    return dict(target.get("ecsTarget") or target["lambdaTarget"])


def install_deployment_target_api(store: TargetStore = TARGETS) -> Callable[[], None]:
    """Teach moto's CodeDeploy ListDeploymentTargets and GetDeploymentTarget; returns the undo."""
    from moto.codedeploy.responses import CodeDeployResponse
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult

    def list_deployment_targets(self: Any) -> ActionResult:
        deployment_id = str(self._get_param("deploymentId") or "")
        self.codedeploy_backend.get_deployment(deployment_id)  # DeploymentDoesNotExistException, as AWS answers
        with store.lock:
            target = store.targets.get(deployment_id)
            ids = [_target_body(target)["targetId"]] if target else []
        return ActionResult({"targetIds": ids})

    def get_deployment_target(self: Any) -> ActionResult:
        deployment_id = str(self._get_param("deploymentId") or "")
        target_id = str(self._get_param("targetId") or "")
        self.codedeploy_backend.get_deployment(deployment_id)
        with store.lock:
            target = store.targets.get(deployment_id)
            if target is None or _target_body(target)["targetId"] != target_id:
                raise JsonRESTError(
                    "DeploymentTargetDoesNotExistException", f"no target {target_id} in deployment {deployment_id}"
                )
            answer = json.loads(json.dumps(target, default=str))
            kind = "ecsTarget" if "ecsTarget" in target else "lambdaTarget"
            answer[kind]["lastUpdatedAt"] = target[kind]["lastUpdatedAt"]
            for copied, event in zip(answer[kind]["lifecycleEvents"], target[kind]["lifecycleEvents"], strict=True):
                copied.update({k: event[k] for k in ("startTime", "endTime") if k in event})  # timestamps, as sent
        return ActionResult({"deploymentTarget": answer})

    added = {"list_deployment_targets": list_deployment_targets, "get_deployment_target": get_deployment_target}
    for name, method in added.items():
        setattr(CodeDeployResponse, name, method)

    def undo() -> None:
        for name in added:
            delattr(CodeDeployResponse, name)

    return undo
