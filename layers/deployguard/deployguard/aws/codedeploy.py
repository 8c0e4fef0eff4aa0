"""CodeDeploy calls: what a deployment is, which hook is running, answering it, stopping it.

Each call goes through :func:`deployguard.aws.clients.client` (adaptive retries) and
turns every AWS or transport error into a :class:`CodeDeployError` naming the call.

The deployment's target comes from its revision's AppSpec (inline content, or a JSON
or YAML file in S3): for Lambda the function, alias, ``CurrentVersion`` and
``TargetVersion`` (the AppSpec SAM's DeploymentPreference writes); for ECS the task
definition of ``TargetService``, with the cluster and service names from the deployment
group (an ECS AppSpec does not name them), and the blue and green task sets with their
target groups from the deployment target (GetDeploymentTarget ``taskSetsInfo``),
turned into CloudWatch dimensions by :mod:`deployguard.aws.elbv2`, and the task definition
each task set runs (the blue one is the stable version) from ECS (DescribeTaskSets,
:mod:`deployguard.aws.ecs`).
"""

import json
import logging
import math
import random
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from deployguard import clock
from deployguard.aws import clients
from deployguard.exceptions import CodeDeployError, EcsError, LoadBalancerError
from deployguard.models import EcsTarget, LambdaTarget, Model, Strategy

logger = logging.getLogger(__name__)

HookStatus = Literal["Succeeded", "Failed"]
LAMBDA_HOOKS = ("BeforeAllowTraffic", "AfterAllowTraffic")
ECS_HOOKS = ("BeforeInstall", "AfterInstall", "AfterAllowTestTraffic", "BeforeAllowTraffic", "AfterAllowTraffic")
ROLLBACK_CREATOR = "codeDeployRollback"
FINISHED_STATUSES = frozenset({"Succeeded", "Failed", "Stopped"})


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
    # rollbackInfo on this deployment (not a rollback itself): a rollback was asked for or made (StopDeployment
    # with autoRollbackEnabled says so before its rollback deployment exists)
    rollback_requested: bool = False
    lifecycle_event: str | None = None  # ECS: the lifecycle event in progress on the target
    new_traffic_weight: float | None = None  # ECS: the green task set's share of production traffic
    production_traffic_moved: bool = False  # ECS: the AllowTraffic event began (production reached green)
    traffic_started_at: datetime | None = None  # ECS: when the AllowTraffic event began (its startTime)

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


# CodeDeploy's predefined configurations (CodeDeployDefault.LambdaCanary10Percent5Minutes,
# .LambdaLinear10PercentEvery1Minute, .ECSLinear10PercentEvery3Minutes, .LambdaAllAtOnce...), told by name
_PREDEFINED = re.compile(
    r"^CodeDeployDefault\.(?:Lambda|ECS)"
    r"(?:Canary(?P<canary_percent>\d+)Percent(?P<canary_minutes>\d+)Minutes?"
    r"|Linear(?P<linear_percent>\d+)PercentEvery(?P<linear_minutes>\d+)Minutes?|(?P<all>AllAtOnce))$"
)
# a deployment configuration cannot be changed once created (only deleted, and a name taken again):
# told once per container (a container outlives no more than a few hours)
_SHIFT_SECONDS: dict[str, int | None] = {}


def forget_deployment_configs() -> None:
    """Drop what this container learnt of deployment configurations (a fresh container, a test)."""
    _SHIFT_SECONDS.clear()


def routing_seconds(routing: dict[str, Any]) -> int | None:
    """How long a traffic routing configuration (GetDeploymentConfig's ``trafficRoutingConfig``) runs
    the new version beside the old one: a canary's interval; a linear shift's steps until all traffic
    has moved, each step's percentage shifted at the start of its interval (10% every minute: 100% at
    the start of the tenth, 9 minutes); None for all at once (no canary phase: the service's plan
    tells) or a routing it does not know."""
    kind = routing.get("type")
    if kind == "TimeBasedCanary":
        return int((routing.get("timeBasedCanary") or {})["canaryInterval"]) * 60
    if kind == "TimeBasedLinear":
        linear = routing.get("timeBasedLinear") or {}
        percent, minutes = float(linear["linearPercentage"]), int(linear["linearInterval"])
        if not 0.0 < percent <= 100.0:
            raise ValueError(f"linearPercentage {percent} is not in (0, 100]")
        return (math.ceil(100.0 / percent) - 1) * minutes * 60
    return None


def predefined_seconds(config_name: str) -> int | None:
    """:func:`routing_seconds` of one of CodeDeploy's predefined Lambda and ECS configurations, from
    its name (None for any other name, and for all at once)."""
    found = _PREDEFINED.match(config_name)
    if found is None or found["all"]:
        return None
    if found["canary_minutes"]:
        routing = {"type": "TimeBasedCanary", "timeBasedCanary": {"canaryInterval": int(found["canary_minutes"])}}
    else:
        linear = {"linearPercentage": int(found["linear_percent"]), "linearInterval": int(found["linear_minutes"])}
        routing = {"type": "TimeBasedLinear", "timeBasedLinear": linear}
    return routing_seconds(routing)


MAX_APPSPEC_BYTES = 1_000_000


def appspec_of(revision: dict[str, Any]) -> dict[str, Any]:
    """The AppSpec document of a revision (``AppSpecContent``, ``String`` or ``S3``; JSON or YAML)."""
    if revision.get("revisionType") == "S3" or revision.get("s3Location"):
        content: str | None = _s3_appspec(revision.get("s3Location") or {})
    else:
        holder = revision.get("appSpecContent") or revision.get("string") or {}
        content = holder.get("content") if isinstance(holder, dict) else None
    if not content:
        return {}
    return _parse_appspec(content)


def _parse_appspec(content: str) -> dict[str, Any]:
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError:
        import yaml  # YAML AppSpecs only

        try:
            parsed = yaml.safe_load(content)
        except yaml.YAMLError as exc:
            raise CodeDeployError(f"the revision's AppSpec is neither JSON nor YAML: {exc}") from exc
    return parsed if isinstance(parsed, dict) else {}


def _s3_appspec(location: dict[str, Any]) -> str:
    """The AppSpec file of an S3 revision (Lambda and ECS revisions are a YAML or JSON file, not an archive)."""
    bucket, key = location.get("bucket"), location.get("key")
    if not bucket or not key:
        raise CodeDeployError("S3 revision: s3Location needs bucket and key")
    bundle = str(location.get("bundleType") or "").upper()
    if bundle and bundle not in ("YAML", "JSON"):
        raise CodeDeployError(
            f"S3 revision s3://{bucket}/{key}: bundleType {bundle} is an archive; "
            "Lambda and ECS AppSpec revisions are a YAML or JSON file"
        )
    request: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if location.get("version"):
        request["VersionId"] = location["version"]
    try:
        response = clients.client("s3").get_object(**request)
        data = response["Body"].read(MAX_APPSPEC_BYTES + 1)
    except (ClientError, BotoCoreError) as exc:
        raise CodeDeployError(f"GetObject s3://{bucket}/{key} (the revision's AppSpec): {exc}") from exc
    wanted, found = str(location.get("eTag") or "").strip('"'), str(response.get("ETag") or "").strip('"')
    if wanted and found and wanted != found:  # the object changed since the deployment was created
        raise CodeDeployError(
            f"S3 revision s3://{bucket}/{key}: ETag {found} is not the revision's eTag {wanted}; "
            "the AppSpec changed after the deployment was created"
        )
    if len(data) > MAX_APPSPEC_BYTES:
        raise CodeDeployError(f"S3 revision s3://{bucket}/{key}: AppSpec larger than {MAX_APPSPEC_BYTES} bytes")
    try:
        return str(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CodeDeployError(f"S3 revision s3://{bucket}/{key}: AppSpec is not UTF-8 text") from exc


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


class TaskSetInfo(Model):
    """One ECS task set of a deployment target (GetDeploymentTarget ``taskSetsInfo``)."""

    task_set: str = ""
    label: str = ""  # Blue: the original; Green: the replacement
    target_group: str = ""
    traffic_weight: float = 0.0  # percent of production traffic
    status: str = ""


class DeploymentTargetInfo(Model):
    """What GetDeploymentTarget says of a deployment's target: its lifecycle events and task sets."""

    lifecycle_events: list[tuple[str, str]] = Field(default_factory=list)  # (name, status), in order
    task_sets: list[TaskSetInfo] = Field(default_factory=list)
    lambda_weight: float | None = None  # Lambda: lambdaFunctionInfo.targetVersionWeight, in percent
    started: dict[str, datetime] = Field(default_factory=dict)  # lifecycle event -> its startTime, when begun

    def new_version_weight(self) -> float | None:
        """The new version's share of production traffic (0..1): the Lambda target version's
        weight, or the green task set's; None when CodeDeploy names neither."""
        if self.lambda_weight is not None:
            return min(1.0, max(0.0, self.lambda_weight / 100.0))
        green = self.task_set("Green")
        return None if green is None else min(1.0, max(0.0, green.traffic_weight / 100.0))

    @property
    def running_event(self) -> str | None:
        return next((name for name, status in self.lifecycle_events if status == "InProgress"), None)

    @property
    def traffic_started_at(self) -> datetime | None:
        """ECS: when production traffic began to move to green (the AllowTraffic event's startTime), if it has."""
        began = any(n == "AllowTraffic" and s not in ("Pending", "Skipped") for n, s in self.lifecycle_events)
        return self.started.get("AllowTraffic") if began else None

    def task_set(self, label: str) -> TaskSetInfo | None:
        return next((t for t in self.task_sets if t.label.lower() == label.lower()), None)


def _target_info(body: dict[str, Any]) -> DeploymentTargetInfo:
    weight = (body.get("lambdaFunctionInfo") or {}).get("targetVersionWeight")
    return DeploymentTargetInfo(
        lambda_weight=None if weight is None else float(weight),
        lifecycle_events=[
            (str(e.get("lifecycleEventName", "")), str(e.get("status", ""))) for e in body.get("lifecycleEvents", [])
        ],
        started={
            str(e.get("lifecycleEventName", "")): e["startTime"]
            for e in body.get("lifecycleEvents", [])
            if isinstance(e.get("startTime"), datetime)
        },
        task_sets=[
            TaskSetInfo(
                task_set=str(t.get("identifer") or t.get("identifier") or ""),  # the API spells it "identifer"
                label=str(t.get("taskSetLabel", "")),
                target_group=str((t.get("targetGroup") or {}).get("name", "")),
                traffic_weight=float(t.get("trafficWeight") or 0.0),
                status=str(t.get("status", "")),
            )
            for t in body.get("taskSetsInfo", [])
        ],
    )


ReportOutcome = Literal["accepted", "already_completed", "refused", "unconfirmed"]
# CodeDeploy's answers to PutLifecycleEventHookExecutionStatus that another try may change
_RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
    "InternalFailure", "InternalError", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException",
    "RequestTimeout", "RequestTimeoutException",
})  # fmt: skip
ALREADY_COMPLETED = "LifecycleEventAlreadyCompletedException"


class StatusReport(Model):
    """How a PutLifecycleEventHookExecutionStatus ended, after the retries its budget allowed.

    ``accepted``: CodeDeploy took the status (a repeat of the same status included);
    ``already_completed``: CodeDeploy no longer waits on the execution
    (LifecycleEventAlreadyCompletedException), nothing left to answer; ``refused``: an error
    no retry changes (unknown execution or deployment, invalid status); ``unconfirmed``:
    throttled, 5xx or unreachable until the budget ran out, to be sent again.
    """

    outcome: ReportOutcome
    attempts: int
    error: str | None = None

    @property
    def settled(self) -> bool:
        """Nothing more to send: CodeDeploy has an answer or will never take one."""
        return self.outcome != "unconfirmed"


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, BotoCoreError):  # connection failed, read timed out
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in _RETRYABLE_CODES or (isinstance(status, int) and status >= 500)
    return False


def _fail(call: str, exc: Exception) -> CodeDeployError:
    return CodeDeployError(f"{call}: {exc}")


class CodeDeployGateway:
    """The CodeDeploy calls DeployGuard makes, each turned into a CodeDeployError on failure."""

    def deployment(self, deployment_id: str) -> CodeDeployDeployment:
        """GetDeployment and its AppSpec; for ECS also the deployment group's service
        (GetDeploymentGroup) and the target's task sets and lifecycle events (GetDeploymentTarget)."""
        try:
            info = clients.client("codedeploy").get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        except (ClientError, BotoCoreError) as exc:
            raise _fail(f"GetDeployment {deployment_id}", exc) from exc
        application = str(info.get("applicationName", ""))
        group = str(info.get("deploymentGroupName", ""))
        platform = str(info.get("computePlatform", ""))
        appspec = appspec_of(info.get("revision") or {})
        ecs_services = self.deployment_group(application, group).get("ecsServices") if platform == "ECS" else None
        target = target_from_appspec(appspec, ecs_services)
        rollback = info.get("rollbackInfo") or {}
        error = info.get("errorInformation") or {}
        deployment = CodeDeployDeployment(
            deployment_id=deployment_id,
            application=application,
            group=group,
            status=str(info.get("status", "")),
            compute_platform=platform,
            creator=str(info.get("creator") or "user"),
            config_name=str(info.get("deploymentConfigName", "")),
            target=target,
            create_time=info.get("createTime") or None,
            complete_time=info.get("completeTime") or None,
            error_message=str(error.get("message", "")),
            rollback_deployment_id=rollback.get("rollbackDeploymentId") or None,
            rollback_of=rollback.get("rollbackTriggeringDeploymentId") or None,
            rollback_requested=bool(rollback) and not rollback.get("rollbackTriggeringDeploymentId"),
        )
        if isinstance(target, EcsTarget):
            self._add_task_sets(deployment, target)
        return deployment

    def _add_task_sets(self, deployment: CodeDeployDeployment, target: EcsTarget) -> None:
        """The blue and green task sets, their task definitions and target groups' CloudWatch
        dimensions, the running event."""
        state = self.deployment_target(deployment.deployment_id)
        if state is None:
            return
        deployment.lifecycle_event = state.running_event
        deployment.production_traffic_moved = any(
            name == "AllowTraffic" and status not in ("Pending", "Skipped") for name, status in state.lifecycle_events
        )
        deployment.traffic_started_at = state.traffic_started_at
        blue, green = state.task_set("Blue"), state.task_set("Green")
        if green is not None:
            deployment.new_traffic_weight = min(1.0, max(0.0, green.traffic_weight / 100.0))
        update: dict[str, str] = {}
        if blue is not None:
            update["stable_task_set"] = blue.task_set
        if green is not None:
            update["new_task_set"] = green.task_set
        update |= self._task_definitions(target, blue, green)
        if blue is not None and green is not None and blue.target_group and green.target_group:
            from deployguard.aws.elbv2 import target_group_dimensions  # ECS deployments only

            try:
                dims = target_group_dimensions([blue.target_group, green.target_group])
            except LoadBalancerError as exc:  # the hook can still run its pre-traffic checks; the judge will say
                logger.warning("target groups of the task sets unknown", extra={"error": str(exc)})
            else:
                update |= {
                    "load_balancer": dims[green.target_group].load_balancer,
                    "stable_target_group": dims[blue.target_group].target_group,
                    "new_target_group": dims[green.target_group].target_group,
                }
        deployment.target = target.model_copy(update=update)

    @staticmethod
    def _task_definitions(target: EcsTarget, blue: TaskSetInfo | None, green: TaskSetInfo | None) -> dict[str, str]:
        """``stable_task_definition`` (the blue task set's), and ``new_task_definition`` when the AppSpec
        named none; nothing when ECS cannot say (the judge's placeholders then stay unresolved)."""
        from deployguard.aws.ecs import task_set_definitions  # ECS deployments only

        task_sets = [t.task_set for t in (blue, green) if t is not None and t.task_set]
        try:
            definitions = task_set_definitions(target.cluster, target.service, task_sets)
        except EcsError as exc:
            logger.warning("task definitions of the task sets unknown", extra={"error": str(exc)})
            return {}
        update: dict[str, str] = {}
        if blue is not None and definitions.get(blue.task_set):
            update["stable_task_definition"] = definitions[blue.task_set]
        if green is not None and definitions.get(green.task_set) and not target.new_task_definition:
            update["new_task_definition"] = definitions[green.task_set]
        return update

    def deployment_target(self, deployment_id: str, target_id: str | None = None) -> DeploymentTargetInfo | None:
        """The lifecycle events and task sets of the deployment's (first) target, if it has one yet.

        ``target_id`` (``function:alias`` for Lambda, ``cluster:service`` for ECS, as CodeDeploy
        names them) saves the ListDeploymentTargets call; the list is asked when it is not the id."""
        codedeploy = clients.client("codedeploy")
        if target_id:
            try:
                target = codedeploy.get_deployment_target(deploymentId=deployment_id, targetId=target_id)
                body = target["deploymentTarget"].get("ecsTarget") or target["deploymentTarget"].get("lambdaTarget")
                if body:
                    return _target_info(body)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "DeploymentTargetDoesNotExistException":
                    raise _fail(f"GetDeploymentTarget {deployment_id} {target_id}", exc) from exc
            except BotoCoreError as exc:
                raise _fail(f"GetDeploymentTarget {deployment_id} {target_id}", exc) from exc
        try:
            target_ids = codedeploy.list_deployment_targets(deploymentId=deployment_id).get("targetIds", [])
            for target_id in target_ids:
                target = codedeploy.get_deployment_target(deploymentId=deployment_id, targetId=target_id)[
                    "deploymentTarget"
                ]
                body = target.get("ecsTarget") or target.get("lambdaTarget")
                if body:
                    return _target_info(body)
        except (ClientError, BotoCoreError) as exc:
            raise _fail(f"ListDeploymentTargets/GetDeploymentTarget {deployment_id}", exc) from exc
        return None

    def traffic_shift_seconds(self, config_name: str) -> int | None:
        """How long the deployment configuration ``config_name`` runs the new version beside the old
        one (:func:`routing_seconds`): CodeDeploy's predefined ones by name, others from
        GetDeploymentConfig (one attempt: the answer is optional, the hook's time is not). None when
        it cannot be told (no name, all at once, or the read failed: a warning says why, and the next
        deployment asks again): the service's canary plan is used then."""
        if not config_name:
            return None
        if config_name in _SHIFT_SECONDS:
            return _SHIFT_SECONDS[config_name]
        if _PREDEFINED.match(config_name):
            seconds = predefined_seconds(config_name)
        else:
            try:
                info = clients.client("codedeploy", retries=False).get_deployment_config(
                    deploymentConfigName=config_name
                )
                seconds = routing_seconds((info.get("deploymentConfigInfo") or {}).get("trafficRoutingConfig") or {})
            except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
                logger.warning(
                    "%s; the judge spreads its false-alarm budget over the service's canary plan instead",
                    _fail(f"GetDeploymentConfig {config_name}", exc), extra={"config_name": config_name},
                )  # fmt: skip
                return None
        _SHIFT_SECONDS[config_name] = seconds
        return seconds

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
        state = self.deployment_target(deployment_id)
        return state.running_event if state else None

    def report(
        self,
        deployment_id: str | None,
        execution_id: str,
        status: HookStatus,
        *,
        budget_seconds: float = 15.0,
        sleep: Callable[[float], None] = clock.sleep,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 4.0,
        jitter: Callable[[], float] = random.random,
    ) -> StatusReport:
        """PutLifecycleEventHookExecutionStatus, retried within ``budget_seconds``; never raises.

        One HTTP attempt per try (a client without botocore's retries), so the whole answer,
        back-offs included, fits the budget: throttling, 5xx and transport errors are tried
        again with capped exponential back-off (jitter 50-100%) while the next try can start
        inside the budget. ``deployment_id`` is optional in the API: a malformed event may
        still carry the execution id.
        """
        kwargs: dict[str, Any] = {"lifecycleEventHookExecutionId": execution_id, "status": status}
        if deployment_id:
            kwargs["deploymentId"] = deployment_id
        started = clock.now()
        attempts = 0
        while True:
            attempts += 1
            try:
                clients.client("codedeploy", retries=False).put_lifecycle_event_hook_execution_status(**kwargs)
                return StatusReport(outcome="accepted", attempts=attempts)
            except (ClientError, BotoCoreError) as exc:
                error = str(_fail(f"PutLifecycleEventHookExecutionStatus {status}", exc))
                code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
                if code == ALREADY_COMPLETED:
                    return StatusReport(outcome="already_completed", attempts=attempts, error=error)
                if not _retryable(exc):
                    return StatusReport(outcome="refused", attempts=attempts, error=error)
            wait = min(backoff_max_seconds, backoff_base_seconds * 2 ** (attempts - 1)) * (0.5 + jitter() / 2)
            elapsed = (clock.now() - started).total_seconds()
            if elapsed + wait >= budget_seconds:
                logger.warning("hook status not confirmed within its budget",
                               extra={"execution_id": execution_id, "attempts": attempts, "error": error})  # fmt: skip
                return StatusReport(outcome="unconfirmed", attempts=attempts,
                                    error=f"{error} (gave up after {attempts} attempts in {elapsed:.1f}s)")  # fmt: skip
            sleep(wait)

    def status(self, deployment_id: str) -> str:
        """CodeDeploy's status of a deployment (GetDeployment), without reading its AppSpec."""
        try:
            info = clients.client("codedeploy").get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        except (ClientError, BotoCoreError) as exc:
            raise _fail(f"GetDeployment {deployment_id}", exc) from exc
        return str(info.get("status", ""))

    def stop(self, deployment_id: str, *, auto_rollback: bool = True) -> str:
        """StopDeployment; returns CodeDeploy's status (``Pending`` or ``Succeeded``)."""
        try:
            resp = clients.client("codedeploy").stop_deployment(
                deploymentId=deployment_id, autoRollbackEnabled=auto_rollback
            )
        except (ClientError, BotoCoreError) as exc:
            raise _fail(f"StopDeployment {deployment_id}", exc) from exc
        return str(resp.get("status", ""))

    def continue_deployment(self, deployment_id: str) -> None:
        """ContinueDeployment: a blue/green deployment waiting to reroute traffic goes on now."""
        try:
            clients.client("codedeploy").continue_deployment(
                deploymentId=deployment_id, deploymentWaitType="READY_WAIT"
            )
        except (ClientError, BotoCoreError) as exc:
            raise _fail(f"ContinueDeployment {deployment_id}", exc) from exc
