"""CodeDeploy, locally: the APIs moto lacks, and a simulated Lambda canary deployment.

moto serves CreateApplication, CreateDeploymentGroup, CreateDeployment and
GetDeployment, but not PutLifecycleEventHookExecutionStatus, StopDeployment,
CreateDeploymentConfig nor GetDeploymentConfig (a custom configuration's traffic routing).
:func:`install_hook_status_api` adds them to moto's CodeDeploy responder class, so the
real boto3 requests (signed, serialised, sent through botocore) are served in-process
like every other call. Like CodeDeploy it takes one result per hook execution it issued:
while the lifecycle event still waits (the deployment engine has not moved on), the same
status sent again is accepted (a retry after an unconfirmed answer), a different one is
refused; once CodeDeploy no longer waits on the execution (the engine took its result,
timed the hook out, or the deployment ended) every status is refused with
``LifecycleEventAlreadyCompletedException`` ("an attempt to return the status of an
already completed lifecycle event", as the API reference and botocore's model name it); a
status other than Succeeded/Failed is ``InvalidLifecycleEventHookExecutionStatusException``
and an execution it never issued ``InvalidLifecycleEventHookExecutionIdException``. It stops
a running deployment (status ``Stopped``) and refuses to stop a finished one
(``DeploymentAlreadyCompletedException``). Every call, accepted or refused, is kept in
the :class:`HookLedger`; GetDeployment answers ``rollbackInfo`` (moto leaves it empty).

:func:`simulate_lambda_rollout` then drives a deployment as ``Canary10Percent5Minutes``
would: state-change events to the recorder, the BeforeAllowTraffic hook, 10% on the
alias (the real UpdateAlias call) for five simulated minutes, 100%, the AfterAllowTraffic
hook, and a rollback of the alias when a hook answers ``Failed`` (or never answers).
After every simulated minute it reads CodeDeploy's status of the deployment, as
CodeDeploy's engine would: a deployment stopped with ``autoRollbackEnabled`` is rolled
back by a rollback deployment of its own (a new deployment id, ``rollbackInfo`` linking
both), which puts the alias back on the current version; no further hook runs.
:func:`simulate_embedded_rollout` lets the scheduled assessor run every simulated minute
meanwhile (the EventBridge schedule of ``template.yaml``), so a canary the judge finds
failing is stopped during its 10% phase.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.codedeploy import ROLLBACK_CREATOR, forget_deployment_configs
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import LambdaTarget
from deployguard_local.codedeploy_targets import TARGETS

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class StatusCall:
    """One PutLifecycleEventHookExecutionStatus request as CodeDeploy received it."""

    deployment_id: str | None
    execution_id: str
    status: str
    accepted: bool
    error: str | None = None
    repeat: bool = False  # accepted as a repetition of the status CodeDeploy already had


@dataclass(frozen=True)
class StopCall:
    """One StopDeployment request as CodeDeploy received it."""

    deployment_id: str
    auto_rollback: bool
    accepted: bool
    status_before: str | None = None  # the deployment's status when the request came
    error: str | None = None


@dataclass
class HookLedger:
    """The hook executions CodeDeploy issued and the statuses it was told; the stop requests it got."""

    issued: dict[str, str] = field(default_factory=dict)  # execution id -> deployment id
    statuses: list[tuple[str, str, str]] = field(default_factory=list)  # accepted (deployment, execution, status)
    calls: list[StatusCall] = field(default_factory=list)  # every request, accepted or refused
    refuse_next: list[str] = field(default_factory=list)  # error codes to answer the next calls with
    stops: list[StopCall] = field(default_factory=list)  # every StopDeployment request, accepted or refused
    completed: set[str] = field(default_factory=set)  # executions CodeDeploy no longer waits on
    continues: list[str] = field(default_factory=list)  # deployments ContinueDeployment went on with
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # CreateDeploymentConfig's, by name
    config_reads: list[str] = field(default_factory=list)  # every GetDeploymentConfig request's name
    lock: threading.Lock = field(default_factory=threading.Lock)

    def complete(self, execution_id: str) -> None:
        """CodeDeploy's engine moved on from this execution (took its result or timed it out)."""
        with self.lock:
            self.completed.add(execution_id)

    def issue(self, deployment_id: str) -> str:
        execution_id = f"hook-{uuid.uuid4().hex}"
        with self.lock:
            self.issued[execution_id] = deployment_id
        return execution_id

    def status_of(self, execution_id: str) -> str | None:
        found = [s for _, e, s in self.statuses if e == execution_id]
        return found[-1] if found else None

    def calls_for(self, execution_id: str) -> int:
        """Results CodeDeploy recorded for one hook execution (0 or 1; accepted repeats not counted)."""
        return sum(1 for _, e, _ in self.statuses if e == execution_id)

    def attempts_for(self, execution_id: str) -> int:
        """Every status request of one hook execution, refused ones included."""
        return sum(1 for c in self.calls if c.execution_id == execution_id)

    def stops_of(self, deployment_id: str) -> list[StopCall]:
        """Every StopDeployment request for one deployment, refused ones included."""
        return [c for c in self.stops if c.deployment_id == deployment_id]


LEDGER = HookLedger()


def install_hook_status_api(ledger: HookLedger = LEDGER) -> Callable[[], None]:
    """Teach moto's CodeDeploy PutLifecycleEventHookExecutionStatus and StopDeployment, and
    GetDeployment its ``rollbackInfo``; returns the undo."""
    from moto.codedeploy import responses as cd_responses
    from moto.codedeploy.responses import CodeDeployResponse
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult

    def refuse(call: dict[str, Any], code: str, message: str) -> JsonRESTError:
        ledger.calls.append(StatusCall(**call, accepted=False, error=code))
        return JsonRESTError(code, message)

    def put_lifecycle_event_hook_execution_status(self: Any) -> ActionResult:
        call = {
            "deployment_id": self._get_param("deploymentId"),
            "execution_id": str(self._get_param("lifecycleEventHookExecutionId") or ""),
            "status": str(self._get_param("status") or ""),
        }
        execution_id = call["execution_id"]
        with ledger.lock:
            if ledger.refuse_next:
                code = ledger.refuse_next.pop(0)
                raise refuse(call, code, f"{code} (simulated)")
            if call["status"] not in ("Succeeded", "Failed"):
                raise refuse(
                    call,
                    "InvalidLifecycleEventHookExecutionStatusException",
                    f"The result of a Lambda validation function that verifies a lifecycle event is invalid "
                    f"({call['status']}). It should return Succeeded or Failed.",
                )
            issued_to = ledger.issued.get(execution_id)
            if issued_to is None or call["deployment_id"] not in (None, issued_to):
                raise refuse(
                    call,
                    "InvalidLifecycleEventHookExecutionIdException",
                    f"{execution_id} is not a hook execution of deployment {call['deployment_id']}",
                )
            if execution_id in ledger.completed or str(_status_of_deployment(self, issued_to)) in FINISHED:
                raise refuse(
                    call,
                    "LifecycleEventAlreadyCompletedException",
                    f"An attempt to return the status of an already completed lifecycle event occurred "
                    f"({execution_id})",
                )
            earlier = ledger.status_of(execution_id)
            if earlier is not None and earlier != call["status"]:
                raise refuse(
                    call,
                    "LifecycleEventAlreadyCompletedException",
                    f"hook execution {execution_id} already has the result {earlier}",
                )
            if earlier is None:
                ledger.statuses.append((issued_to, execution_id, call["status"]))
            ledger.calls.append(StatusCall(**call, accepted=True, repeat=earlier is not None))
        return ActionResult({"lifecycleEventHookExecutionId": execution_id})

    def stop_deployment(self: Any) -> ActionResult:
        deployment_id = str(self._get_param("deploymentId") or "")
        auto_rollback = bool(self._get_param("autoRollbackEnabled"))
        with ledger.lock:
            try:
                info = self.codedeploy_backend.get_deployment(deployment_id)  # DeploymentDoesNotExistException
            except JsonRESTError as exc:
                ledger.stops.append(StopCall(deployment_id, auto_rollback, False, None, exc.error_type))
                raise
            before = str(info.status)
            if before in FINISHED:
                ledger.stops.append(
                    StopCall(deployment_id, auto_rollback, False, before, "DeploymentAlreadyCompletedException")
                )
                raise JsonRESTError(
                    "DeploymentAlreadyCompletedException", f"The deployment {deployment_id} is already completed."
                )
            info.status = "Stopped"
            info.complete_time = clock.now()
            info.rollback_requested = auto_rollback  # CodeDeploy's engine rolls it back (simulate_lambda_rollout)
            if auto_rollback:
                info.rollback_info = {"rollbackMessage": "Deployment stopped on request; automatic rollback requested."}
            ledger.stops.append(StopCall(deployment_id, auto_rollback, True, before))
        return ActionResult({"status": "Pending", "statusMessage": "Stop of the deployment is in progress."})

    def create_deployment_config(self: Any) -> ActionResult:
        name = str(self._get_param("deploymentConfigName") or "")
        with ledger.lock:
            if name in ledger.configs or name.startswith("CodeDeployDefault."):
                raise JsonRESTError("DeploymentConfigAlreadyExistsException", f"{name} already exists")
            config_id = str(uuid.uuid4())
            ledger.configs[name] = {
                "deploymentConfigId": config_id,
                "deploymentConfigName": name,
                "computePlatform": self._get_param("computePlatform") or "Server",
                "trafficRoutingConfig": self._get_param("trafficRoutingConfig") or {"type": "AllAtOnce"},
                "createTime": clock.now().timestamp(),
            }
        return ActionResult({"deploymentConfigId": config_id})

    def get_deployment_config(self: Any) -> ActionResult:
        name = str(self._get_param("deploymentConfigName") or "")
        with ledger.lock:
            ledger.config_reads.append(name)
            if name not in ledger.configs:
                raise JsonRESTError("DeploymentConfigDoesNotExistException", f"No deployment configuration {name}")
            return ActionResult({"deploymentConfigInfo": dict(ledger.configs[name])})

    original_info = cd_responses._deployment_info

    def deployment_info(deployment: Any) -> dict[str, Any]:
        body = original_info(deployment)
        rollback_info = getattr(deployment, "rollback_info", None)
        if rollback_info:
            body["rollbackInfo"] = dict(rollback_info)
        return body

    setattr(CodeDeployResponse, "put_lifecycle_event_hook_execution_status", put_lifecycle_event_hook_execution_status)  # noqa: B010
    setattr(CodeDeployResponse, "stop_deployment", stop_deployment)  # noqa: B010
    setattr(CodeDeployResponse, "create_deployment_config", create_deployment_config)  # noqa: B010
    setattr(CodeDeployResponse, "get_deployment_config", get_deployment_config)  # noqa: B010
    setattr(cd_responses, "_deployment_info", deployment_info)  # noqa: B010

    def undo() -> None:
        delattr(CodeDeployResponse, "put_lifecycle_event_hook_execution_status")
        delattr(CodeDeployResponse, "stop_deployment")
        delattr(CodeDeployResponse, "create_deployment_config")
        delattr(CodeDeployResponse, "get_deployment_config")
        with ledger.lock:  # configurations live as long as the embedded CodeDeploy, like moto's state
            ledger.configs.clear()
            ledger.config_reads.clear()
        forget_deployment_configs()
        setattr(cd_responses, "_deployment_info", original_info)  # noqa: B010

    return undo


FINISHED = ("Succeeded", "Failed", "Stopped")


def _status_of_deployment(responder: Any, deployment_id: str) -> str | None:
    try:
        return str(responder.codedeploy_backend.get_deployment(deployment_id).status)
    except Exception:  # a deployment moto does not know (tests issue executions for made-up ids)
        return None


def _moto_deployment(deployment_id: str) -> Any:
    from moto.codedeploy.models import codedeploy_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    return codedeploy_backends[DEFAULT_ACCOUNT_ID][clients.region()].deployments[deployment_id]


def _set_state(deployment_id: str, status: str, *, ended: bool = False) -> None:
    """CodeDeploy's own view of the deployment (what GetDeployment answers), on the simulated clock."""
    info = _moto_deployment(deployment_id)
    info.status = status
    if status == "InProgress" and info.start_time is None:
        info.start_time = clock.now()
    if ended:
        info.complete_time = clock.now()


def create_lambda_deployment(
    target: LambdaTarget,
    application: str,
    group: str,
    config_name: str = "CodeDeployDefault.LambdaCanary10Percent5Minutes",
) -> str:
    """A CodeDeploy deployment of a Lambda alias (AppSpec content, as SAM's DeploymentPreference makes)."""
    codedeploy = clients.client("codedeploy")
    existing = codedeploy.list_applications().get("applications", [])
    if application not in existing:
        codedeploy.create_application(applicationName=application, computePlatform="Lambda")
    if group not in codedeploy.list_deployment_groups(applicationName=application).get("deploymentGroups", []):
        codedeploy.create_deployment_group(
            applicationName=application, deploymentGroupName=group,
            serviceRoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/CodeDeployServiceRole",
            deploymentConfigName=config_name,
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        )  # fmt: skip
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
    deployment_id = str(
        codedeploy.create_deployment(
            applicationName=application, deploymentGroupName=group, deploymentConfigName=config_name,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": json.dumps(appspec)}},
        )["deploymentId"]
    )  # fmt: skip
    _moto_deployment(deployment_id).create_time = clock.now()  # the simulated clock, like every other timestamp
    return deployment_id


def state_change_event(deployment_id: str, application: str, group: str, state: str) -> dict[str, Any]:
    """The EventBridge event CodeDeploy emits for a deployment's state change."""
    region = clients.region()
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "CodeDeploy Deployment State-change Notification",
        "source": "aws.codedeploy", "account": DEFAULT_ACCOUNT,
        "time": clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
        "resources": [
            f"arn:aws:codedeploy:{region}:{DEFAULT_ACCOUNT}:application:{application}",
            f"arn:aws:codedeploy:{region}:{DEFAULT_ACCOUNT}:deploymentgroup:{application}/{group}",
        ],
        "detail": {"region": region, "deploymentId": deployment_id, "instanceGroupId": str(uuid.uuid4()),
                   "deploymentGroup": group, "state": state, "application": application},
    }  # fmt: skip


def put_state_change(deployment_id: str, application: str, group: str, state: str) -> None:
    """CodeDeploy's state-change notification put on the default event bus (the real PutEvents call):
    the rules of template.yaml whose pattern matches it invoke their functions asynchronously."""
    event = state_change_event(deployment_id, application, group, state)
    entry = {"Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(event["detail"]),
             "Resources": event["resources"], "Time": clock.now()}  # fmt: skip
    answer = clients.client("events").put_events(Entries=[entry])
    if answer.get("FailedEntryCount"):
        raise RuntimeError(f"PutEvents refused the state change: {answer['Entries']}")


def start_rollback_deployment(deployment_id: str) -> str:
    """The deployment CodeDeploy creates to roll a Lambda deployment back (stopped or failed with
    automatic rollback): a new deployment id, creator ``codeDeployRollback``, an AppSpec that moves
    the alias from the target version back to the current one, and ``rollbackInfo`` linking both."""
    from moto.codedeploy.models import codedeploy_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    backend = codedeploy_backends[DEFAULT_ACCOUNT_ID][clients.region()]
    original: Any = backend.deployments[deployment_id]
    appspec = json.loads(original.revision["appSpecContent"]["content"])
    for resource in appspec.get("Resources", []):
        for spec in resource.values():
            props = spec["Properties"]
            props["CurrentVersion"], props["TargetVersion"] = props["TargetVersion"], props["CurrentVersion"]
    appspec.pop("Hooks", None)  # the rollback moves the traffic back at once, without validation
    rollback_id = str(
        backend.create_deployment(
            application_name=original.application_name, deployment_group_name=original.deployment_group_name,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": json.dumps(appspec)}},
            deployment_config_name="CodeDeployDefault.LambdaAllAtOnce",
        )
    )  # fmt: skip
    rollback: Any = backend.deployments[rollback_id]
    rollback.creator = ROLLBACK_CREATOR
    rollback.create_time = clock.now()
    rollback.rollback_info = {
        "rollbackTriggeringDeploymentId": deployment_id,
        "rollbackMessage": f"Rollback of deployment {deployment_id}.",
    }
    original.rollback_info = {
        "rollbackDeploymentId": rollback_id,
        "rollbackMessage": f"Deployment stopped; rolled back by deployment {rollback_id}.",
    }
    return rollback_id


def restore_finished_deployment(
    deployment_id: str,
    application: str,
    group: str,
    *,
    compute_platform: Literal["Lambda", "ECS"],
    status: Literal["Succeeded", "Failed", "Stopped"],
    created: datetime,
    completed: datetime,
) -> None:
    """A deployment CodeDeploy has finished, made again under its own id from what a record kept of it (the
    saved local state keeps no CodeDeploy deployments): StopDeployment and ContinueDeployment then answer it as
    CodeDeploy answers a finished deployment (``DeploymentAlreadyCompletedException``). Its revision is not
    kept (an empty AppSpec)."""
    codedeploy = clients.client("codedeploy")
    if application not in codedeploy.list_applications().get("applications", []):
        codedeploy.create_application(applicationName=application, computePlatform=compute_platform)
    if group not in codedeploy.list_deployment_groups(applicationName=application).get("deploymentGroups", []):
        codedeploy.create_deployment_group(
            applicationName=application, deploymentGroupName=group,
            serviceRoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/CodeDeployServiceRole",
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        )  # fmt: skip
    made = codedeploy.create_deployment(
        applicationName=application, deploymentGroupName=group,
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": "{}"}},
    )["deploymentId"]  # fmt: skip
    from moto.codedeploy.models import codedeploy_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    deployments = codedeploy_backends[DEFAULT_ACCOUNT_ID][clients.region()].deployments
    info: Any = deployments.pop(made)  # moto names its deployments itself: under the recorded id instead
    info.deployment_id = deployment_id
    info.status, info.create_time, info.start_time, info.complete_time = status, created, created, completed
    deployments[deployment_id] = info


FinalState = Literal["SUCCESS", "FAILURE", "STOP"]


@dataclass
class RolloutResult:
    deployment_id: str
    hooks: list[tuple[str, str | None]]  # (lifecycle event, status CodeDeploy was told; None: never answered)
    status_calls: list[StatusCall]  # every status request of this deployment's hooks
    final_state: FinalState  # the deployment's last state-change event
    rolled_back: bool
    alias_version: str
    states: list[str]  # the state-change events of the deployment, in order
    stop_calls: list[StopCall] = field(default_factory=list)  # every StopDeployment request of this deployment
    rollback_deployment_id: str | None = None  # the deployment that rolled it back, if CodeDeploy made one

    @property
    def status(self) -> str:
        if self.final_state == "SUCCESS":
            return "Succeeded"
        if self.rolled_back:
            return "RolledBack"
        return "Stopped" if self.final_state == "STOP" else "Failed"


def simulate_lambda_rollout(
    function_name: str,
    alias: str,
    current_version: str,
    target_version: str,
    *,
    hooks_function: Callable[[dict[str, Any]], Any],
    clock_advance: Callable[[float], Any],
    recorder_function: Callable[[dict[str, Any]], Any] | None = None,
    traffic_hook: Callable[[int, float], None] | None = None,
    application: str | None = None,
    group: str = "live",
    canary_percent: float = 10.0,
    canary_minutes: int = 5,
    ledger: HookLedger = LEDGER,
    on_step: Callable[[str], None] | None = None,
    deployment_id: str | None = None,
    hook_timeout_minutes: int = 0,
) -> RolloutResult:
    """Drive a CodeDeploy ``Canary10Percent5Minutes`` deployment of ``function_name:alias``.

    ``hooks_function(event)`` is the lifecycle hook (called in-process with CodeDeploy's real
    event shape); ``recorder_function(event)`` receives the EventBridge state-change events;
    ``clock_advance(seconds)`` moves the simulated clock one minute at a time and
    ``traffic_hook(minute, weight)`` is called after each minute (synthetic traffic and metrics).
    A hook answering ``Failed``, or not answering, fails the deployment and rolls the alias back.
    After each minute CodeDeploy's status of the deployment is read: once StopDeployment stopped
    it, it ends ``STOP`` there, rolled back by a rollback deployment if ``autoRollbackEnabled``.
    ``deployment_id`` drives a deployment :func:`create_lambda_deployment` made, instead of a new one.
    ``hook_timeout_minutes``: how long CodeDeploy waits for a hook that returned without a
    confirmed status (CodeDeploy's own limit is 60), one simulated minute at a time, so a
    late answer (the recorder's sweep on its schedule) still counts; 0 times it out at once.
    """
    say = on_step or (lambda _: None)
    application = application or function_name
    target = LambdaTarget(
        function_name=function_name, alias=alias, stable_version=current_version, new_version=target_version
    )
    deployment_id = deployment_id or create_lambda_deployment(target, application, group)
    shifter = LambdaTrafficShifter(target)
    hooks: list[tuple[str, str | None]] = []
    states: list[str] = []
    executions: list[str] = []
    minute = 0

    def emit(state: str, of: str = deployment_id, label: str = "") -> None:
        if of == deployment_id:
            states.append(state)
        if recorder_function is not None:
            recorder_function(state_change_event(of, application, group, state))
        say(f"CodeDeploy {state}{label}")

    def run_hook(name: str) -> bool:
        TARGETS.enter(deployment_id, name)
        execution_id = ledger.issue(deployment_id)
        executions.append(execution_id)
        hooks_function({"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution_id})
        waited = 0
        while ledger.status_of(execution_id) is None and waited < hook_timeout_minutes:
            clock_advance(60.0)
            waited += 1
        status = ledger.status_of(execution_id)
        ledger.complete(execution_id)  # CodeDeploy moves on: later statuses are refused
        if waited and status is not None:
            say(f"{name} hook answered after {waited} more simulated minute(s)")
        hooks.append((name, status))
        say(f"{name} hook answered {status or 'nothing (CodeDeploy times the hook out: Failed)'}")
        return status == "Succeeded"

    def stopped() -> bool:
        return str(_moto_deployment(deployment_id).status) == "Stopped"

    def bake(weight: float, minutes: int) -> bool:
        """Minutes at ``weight``; False as soon as CodeDeploy says the deployment was stopped."""
        nonlocal minute
        for _ in range(minutes):
            clock_advance(60.0)
            minute += 1
            if traffic_hook is not None:
                traffic_hook(minute, weight)
            if stopped():
                return False
        return True

    def result(state: FinalState, rolled_back: bool, rollback_id: str | None = None) -> RolloutResult:
        calls = [c for c in ledger.calls if c.execution_id in executions]
        return RolloutResult(deployment_id, hooks, calls, state, rolled_back, shifter.current().function_version,
                             states, ledger.stops_of(deployment_id), rollback_id)  # fmt: skip

    def finish(state: FinalState, rolled_back: bool) -> RolloutResult:
        TARGETS.finish(deployment_id, "Succeeded" if state == "SUCCESS" else "Failed")
        _set_state(deployment_id, "Succeeded" if state == "SUCCESS" else "Failed", ended=True)
        emit(state)
        return result(state, rolled_back)

    def stop(weight: float) -> RolloutResult:
        """CodeDeploy's engine after StopDeployment: STOP, and the rollback it was asked for."""
        rollback = bool(getattr(_moto_deployment(deployment_id), "rollback_requested", False))
        say(f"StopDeployment received with {weight:.0%} of traffic on version {target_version} "
            f"(autoRollbackEnabled={str(rollback).lower()}): no further hooks run")  # fmt: skip
        TARGETS.finish(deployment_id, "Failed")
        emit("STOP")
        if not rollback:
            return result("STOP", rolled_back=False)
        rollback_id = start_rollback_deployment(deployment_id)
        _set_state(rollback_id, "InProgress")
        emit("START", of=rollback_id, label=f" (rollback deployment {rollback_id})")
        shifter.rollback()
        TARGETS.weigh_lambda(deployment_id, 0.0)
        say(f"rolled back: 100% to version {current_version}")
        _set_state(rollback_id, "Succeeded", ended=True)
        emit("SUCCESS", of=rollback_id, label=f" (rollback deployment {rollback_id})")
        return result("STOP", rolled_back=True, rollback_id=rollback_id)

    _set_state(deployment_id, "InProgress")
    TARGETS.add_lambda_target(deployment_id, function_name, alias, current_version, target_version)
    emit("START")
    if not run_hook("BeforeAllowTraffic"):
        return finish("FAILURE", rolled_back=False)  # no traffic moved: nothing to roll back
    TARGETS.enter(deployment_id, "AllowTraffic")
    shifter.shift(canary_percent / 100.0)
    TARGETS.weigh_lambda(deployment_id, canary_percent)
    say(f"traffic {canary_percent:g}% to version {target_version} for {canary_minutes} min")
    if not bake(canary_percent / 100.0, canary_minutes):
        return stop(canary_percent / 100.0)
    shifter.promote()
    TARGETS.weigh_lambda(deployment_id, 100.0)
    say(f"traffic 100% to version {target_version}")
    if not bake(1.0, 1):
        return stop(1.0)
    if not run_hook("AfterAllowTraffic"):
        shifter.rollback()
        TARGETS.weigh_lambda(deployment_id, 0.0)
        say(f"rolled back: 100% to version {current_version}")
        return finish("FAILURE", rolled_back=True)
    return finish("SUCCESS", rolled_back=False)


def simulate_embedded_rollout(
    aws: Any,
    target: LambdaTarget,
    *,
    application: str,
    group: str = "live",
    ledger: HookLedger = LEDGER,
    on_step: Callable[[str], None] | None = None,
    assessor_schedule: bool = True,
    recorder_schedule: bool = False,
    hook_timeout_minutes: int = 0,
) -> RolloutResult:
    """:func:`simulate_lambda_rollout` on the embedded AWS: the template's hook and recorder
    functions through the real Lambda Invoke API, the clock's listeners as the traffic.

    With ``assessor_schedule`` the AssessorFunction's EventBridge schedule fires every
    simulated minute of the rollout, as it does on AWS: its verdicts are told through
    ``on_step``, and a failing one stops the deployment (the ``canary-issue`` alert's
    automatic rollback: StopDeployment with automatic rollback).
    With ``recorder_schedule`` the DeploymentRecorderFunction's schedule fires too (it finishes
    hook answers left unconfirmed); ``hook_timeout_minutes`` is how long CodeDeploy waits for one.
    """
    say = on_step or (lambda _: None)
    deployment_id = create_lambda_deployment(target, application, group)

    def assessed(run: Any) -> None:
        payload = run.payload if isinstance(run.payload, dict) else {}
        if run.function == "DeploymentRecorderFunction" and not run.errored:
            for item in payload.get("hooks_answered", []):
                say(f"scheduled recorder: hook execution {item['execution_id']} {item['action']} "
                    f"{item['status']} ({item['answer']})")  # fmt: skip
            return
        if run.errored:
            say(f"scheduled assessor failed: {payload.get('errorType')}: {payload.get('errorMessage')}")
            return
        for item in payload.get("assessed", []):
            if item.get("deployment_id") == deployment_id:
                alerts = payload.get("alerts", 0)
                say(f"scheduled assessor: {str(item['decision']).upper()} {item['summary']}"
                    + (f" (alerts this run: {alerts})" if alerts else ""))  # fmt: skip

    scheduled = (["AssessorFunction", "TrafficCheckFunction"] if assessor_schedule else []) + (
        ["DeploymentRecorderFunction"] if recorder_schedule else []
    )
    undo = aws.follow_schedules(scheduled, on_fire=assessed) if scheduled else None
    try:
        return simulate_lambda_rollout(
            target.function_name, target.alias, target.stable_version, target.new_version,
            hooks_function=lambda event: aws.invoke("LifecycleHookFunction", event),
            recorder_function=lambda event: aws.invoke("DeploymentRecorderFunction", event),
            clock_advance=aws.clock.advance, application=application, group=group, ledger=ledger, on_step=on_step,
            deployment_id=deployment_id, hook_timeout_minutes=hook_timeout_minutes,
        )  # fmt: skip
    finally:
        if undo is not None:
            undo()


def install_continue_api(ledger: HookLedger = LEDGER) -> Callable[[], None]:
    """Teach moto's CodeDeploy ContinueDeployment as AWS answers it: only a blue/green deployment waiting
    to reroute traffic (``ready_wait`` set on it) continues; any other is refused with
    DeploymentIsNotInReadyStateException (a Lambda canary never waits). Returns the undo."""
    from moto.codedeploy.responses import CodeDeployResponse
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult

    def continue_deployment(self: Any) -> ActionResult:
        deployment_id = str(self._get_param("deploymentId") or "")
        with ledger.lock:
            info = self.codedeploy_backend.get_deployment(deployment_id)  # DeploymentDoesNotExistException
            if str(info.status) in ("Succeeded", "Failed", "Stopped"):
                raise JsonRESTError("DeploymentAlreadyCompletedException", f"{deployment_id} is already completed")
            if not getattr(info, "ready_wait", False):
                raise JsonRESTError(
                    "DeploymentIsNotInReadyStateException", f"{deployment_id} is not waiting to reroute traffic"
                )
            info.ready_wait = False
            ledger.continues.append(deployment_id)
        return ActionResult({})

    setattr(CodeDeployResponse, "continue_deployment", continue_deployment)  # noqa: B010
    return lambda: delattr(CodeDeployResponse, "continue_deployment")
