"""CodeDeploy, locally: the one API moto lacks, and a simulated Lambda canary deployment.

moto serves CreateApplication, CreateDeploymentGroup, CreateDeployment and
GetDeployment, but not PutLifecycleEventHookExecutionStatus. :func:`install_hook_status_api`
adds that one action to moto's CodeDeploy responder, so the hook's real boto3 request
is served in-process like every other call. Like CodeDeploy it accepts one status per
hook execution it issued and refuses a second one (LifecycleEventAlreadyCompletedException).

:func:`simulate_lambda_rollout` then drives a deployment as ``Canary10Percent5Minutes``
would: state-change events to the recorder, BeforeAllowTraffic hook, 10% for five
(simulated) minutes, 100%, AfterAllowTraffic hook, and a rollback when a hook fails.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import LambdaTarget


@dataclass
class HookLedger:
    """The hook executions CodeDeploy issued and the statuses it was told."""

    issued: dict[str, str] = field(default_factory=dict)  # execution id -> deployment id
    statuses: list[tuple[str, str, str]] = field(default_factory=list)  # (deployment, execution, status)
    refuse_next: list[str] = field(default_factory=list)  # error codes to answer the next calls with
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, deployment_id: str) -> str:
        execution_id = f"hook-{uuid.uuid4().hex}"
        with self.lock:
            self.issued[execution_id] = deployment_id
        return execution_id

    def status_of(self, execution_id: str) -> str | None:
        found = [s for _, e, s in self.statuses if e == execution_id]
        return found[-1] if found else None

    def calls_for(self, execution_id: str) -> int:
        return sum(1 for _, e, _ in self.statuses if e == execution_id)


LEDGER = HookLedger()


def install_hook_status_api(ledger: HookLedger = LEDGER) -> Callable[[], None]:
    """Teach moto's CodeDeploy PutLifecycleEventHookExecutionStatus; returns the undo."""
    from moto.codedeploy.responses import CodeDeployResponse
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult

    def put_lifecycle_event_hook_execution_status(self: Any) -> ActionResult:
        deployment_id = self._get_param("deploymentId")
        execution_id = self._get_param("lifecycleEventHookExecutionId")
        status = self._get_param("status")
        with ledger.lock:
            if ledger.refuse_next:
                code = ledger.refuse_next.pop(0)
                raise JsonRESTError(code, f"{code} (simulated)")
            if status not in ("Succeeded", "Failed"):
                raise JsonRESTError("InvalidLifecycleEventHookExecutionStatusException", f"status {status}")
            if ledger.issued.get(execution_id) != deployment_id:
                raise JsonRESTError(
                    "InvalidLifecycleEventHookExecutionIdException",
                    f"{execution_id} is not a hook execution of deployment {deployment_id}",
                )
            if any(e == execution_id for _, e, _ in ledger.statuses):
                raise JsonRESTError(
                    "LifecycleEventAlreadyCompletedException", f"hook execution {execution_id} already has a status"
                )
            ledger.statuses.append((deployment_id, execution_id, status))
        return ActionResult({"lifecycleEventHookExecutionId": execution_id})

    setattr(CodeDeployResponse, "put_lifecycle_event_hook_execution_status", put_lifecycle_event_hook_execution_status)  # noqa: B010

    def undo() -> None:
        delattr(CodeDeployResponse, "put_lifecycle_event_hook_execution_status")

    return undo


def create_lambda_deployment(target: LambdaTarget, application: str, group: str) -> str:
    """A CodeDeploy deployment of a Lambda alias (AppSpec content, as SAM's DeploymentPreference makes)."""
    codedeploy = clients.client("codedeploy")
    try:
        codedeploy.create_application(applicationName=application, computePlatform="Lambda")
        codedeploy.create_deployment_group(
            applicationName=application, deploymentGroupName=group,
            serviceRoleArn="arn:aws:iam::123456789012:role/CodeDeployServiceRole",
            deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes",
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        )  # fmt: skip
    except codedeploy.exceptions.ApplicationAlreadyExistsException:
        pass  # a second deployment of the same application
    appspec = {
        "version": 0.0,
        "Resources": [{target.function_name: {"Type": "AWS::Lambda::Function", "Properties": {
            "Name": target.function_name, "Alias": target.alias,
            "CurrentVersion": target.stable_version, "TargetVersion": target.new_version}}}],
        "Hooks": [
            {"BeforeAllowTraffic": "CodeDeployHook_deployguard"},
            {"AfterAllowTraffic": "CodeDeployHook_deployguard"},
        ],
    }  # fmt: skip
    return str(
        codedeploy.create_deployment(
            applicationName=application, deploymentGroupName=group,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": json.dumps(appspec)}},
        )["deploymentId"]
    )  # fmt: skip


def state_change_event(deployment_id: str, application: str, group: str, state: str) -> dict[str, Any]:
    """The EventBridge event CodeDeploy emits for a deployment's state change."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "CodeDeploy Deployment State-change Notification",
        "source": "aws.codedeploy", "account": "123456789012",
        "time": clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
        "resources": [f"arn:aws:codedeploy:us-east-1:123456789012:deploymentgroup:{application}/{group}"],
        "detail": {"region": "us-east-1", "deploymentId": deployment_id, "instanceGroupId": str(uuid.uuid4()),
                   "deploymentGroup": group, "state": state, "application": application},
    }  # fmt: skip


@dataclass
class RolloutResult:
    deployment_id: str
    hooks: list[tuple[str, str | None]]  # (lifecycle event, status CodeDeploy was told)
    final_state: str
    alias_version: str


def simulate_lambda_rollout(
    aws: Any,
    target: LambdaTarget,
    *,
    application: str,
    group: str = "live",
    canary_percent: float = 10.0,
    canary_minutes: int = 5,
    ledger: HookLedger = LEDGER,
    on_step: Callable[[str], None] | None = None,
) -> RolloutResult:
    """Drive a CodeDeploy ``Canary10Percent5Minutes`` deployment of ``target`` on the embedded AWS."""
    say = on_step or (lambda _: None)
    deployment_id = create_lambda_deployment(target, application, group)
    shifter = LambdaTrafficShifter(target)
    hooks: list[tuple[str, str | None]] = []

    def emit(state: str) -> None:
        aws.invoke("DeploymentRecorderFunction", state_change_event(deployment_id, application, group, state))
        say(f"CodeDeploy {state}")

    def run_hook(name: str) -> str | None:
        execution_id = ledger.issue(deployment_id)
        aws.invoke(
            "LifecycleHookFunction", {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution_id}
        )
        status = ledger.status_of(execution_id)
        hooks.append((name, status))
        say(f"{name} hook answered {status}")
        return status

    emit("START")
    if run_hook("BeforeAllowTraffic") != "Succeeded":
        emit("FAILURE")
        return RolloutResult(deployment_id, hooks, "FAILURE", shifter.current().function_version)
    shifter.shift(canary_percent / 100.0)
    say(f"traffic {canary_percent:g}% to version {target.new_version} for {canary_minutes} min")
    for _ in range(canary_minutes):
        aws.clock.advance(60)
    shifter.promote()
    say(f"traffic 100% to version {target.new_version}")
    aws.clock.advance(60)
    if run_hook("AfterAllowTraffic") != "Succeeded":
        shifter.rollback()
        say(f"rolled back: 100% to version {target.stable_version}")
        emit("FAILURE")
        return RolloutResult(deployment_id, hooks, "FAILURE", shifter.current().function_version)
    emit("SUCCESS")
    return RolloutResult(deployment_id, hooks, "SUCCESS", shifter.current().function_version)
