"""ECS blue/green through CodeDeploy, locally: the deployment-target API moto lacks,
a load-balanced ECS service on moto, and its traffic.

moto serves ECS, Elastic Load Balancing v2 and CodeDeploy's applications, groups and
deployments, but not ListDeploymentTargets and GetDeploymentTarget, which is where
CodeDeploy tells which lifecycle event is running and which task set (blue or green)
sits behind which target group with what share of traffic. :func:`install_deployment_target_api`
adds those two actions to moto's CodeDeploy responder, served from a :class:`TargetStore`
that the simulation keeps as CodeDeploy would; the hook's boto3 requests stay real.

:func:`create_ecs_service` builds the service: a VPC, an application load balancer with
a production listener (port 80) and a test listener (8080), the blue and green target
groups, a cluster, two revisions of a task definition and a service whose deployment
controller is CodeDeploy. :func:`create_ecs_deployment` starts a CodeDeploy blue/green
deployment of it, and :func:`shift_traffic` moves the production listener's weights
(the real ModifyListener call) as CodeDeploy's ``ECSCanary10Percent5Minutes`` does.
:class:`AlbTrafficSource` publishes, minute by minute, the ``AWS/ApplicationELB``
metrics of each target group in the shares the listener routes.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID as DEFAULT_ACCOUNT

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.cloudwatch import put_metric_values
from deployguard_local.codedeploy_targets import ECS_LIFECYCLE_EVENTS as ECS_LIFECYCLE_EVENTS
from deployguard_local.codedeploy_targets import TARGETS, TargetStore
from deployguard_local.codedeploy_targets import install_deployment_target_api as install_deployment_target_api
from deployguard_local.minutes import minutes_between
from deployguard_local.traffic import VersionBehaviour


@dataclass(frozen=True)
class EcsStack:
    """A load-balanced ECS service whose deployments CodeDeploy controls (blue/green)."""

    cluster: str
    service: str
    prod_listener_arn: str
    test_listener_arn: str
    blue_target_group_arn: str
    green_target_group_arn: str
    task_definitions: tuple[str, str]  # the running revision and the new one
    blue_task_set: str = ""  # the id of the task set running the first revision

    @property
    def blue_target_group(self) -> str:
        return self.blue_target_group_arn.split(":")[-1].split("/")[1]

    @property
    def green_target_group(self) -> str:
        return self.green_target_group_arn.split(":")[-1].split("/")[1]


def create_ecs_service(cluster: str, service: str, image: str = "public.ecr.aws/nginx/nginx") -> EcsStack:
    """VPC, load balancer with production and test listeners, blue and green target groups, and the service."""
    ec2, elbv2, ecs = clients.client("ec2"), clients.client("elbv2"), clients.client("ecs")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24", AvailabilityZone=f"{clients.region()}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("ab", start=1)
    ]
    balancer = elbv2.create_load_balancer(Name=f"{service}-alb", Subnets=subnets, Type="application")
    balancer_arn = balancer["LoadBalancers"][0]["LoadBalancerArn"]
    groups = [
        elbv2.create_target_group(
            Name=f"{service}-{color}", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip", HealthCheckPath="/health"
        )["TargetGroups"][0]["TargetGroupArn"]
        for color in ("blue", "green")
    ]

    def listener(port: int, target_group: str) -> str:
        return str(
            elbv2.create_listener(
                LoadBalancerArn=balancer_arn, Protocol="HTTP", Port=port,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group}],
            )["Listeners"][0]["ListenerArn"]
        )  # fmt: skip

    prod, test = listener(80, groups[0]), listener(8080, groups[1])
    ecs.create_cluster(clusterName=cluster)
    revisions = tuple(
        str(
            ecs.register_task_definition(
                family=service,
                containerDefinitions=[{"name": service, "image": f"{image}:{tag}", "memory": 512,
                                       "portMappings": [{"containerPort": 80}]}],
            )["taskDefinition"]["taskDefinitionArn"]
        )
        for tag in ("1", "2")
    )  # fmt: skip
    ecs.create_service(
        cluster=cluster, serviceName=service, taskDefinition=revisions[0], desiredCount=2,
        deploymentController={"type": "CODE_DEPLOY"},
        loadBalancers=[{"targetGroupArn": groups[0], "containerName": service, "containerPort": 80}],
    )  # fmt: skip
    blue = _create_task_set(cluster, service, revisions[0], groups[0])  # ECS starts a CODE_DEPLOY service so
    return EcsStack(cluster, service, prod, test, groups[0], groups[1], (revisions[0], revisions[1]), blue)


def _create_task_set(cluster: str, service: str, task_definition: str, target_group: str) -> str:
    """A task set of the service in moto's ECS (on AWS, ECS and CodeDeploy create those of a CODE_DEPLOY
    service themselves), so DescribeTaskSets answers for the ids GetDeploymentTarget gives."""
    task_set = clients.client("ecs").create_task_set(
        cluster=cluster, service=service, taskDefinition=task_definition, launchType="FARGATE",
        loadBalancers=[{"targetGroupArn": target_group, "containerName": service, "containerPort": 80}],
    )["taskSet"]  # fmt: skip
    return str(task_set["id"])


def create_ecs_deployment(
    stack: EcsStack,
    application: str,
    group: str,
    config_name: str = "CodeDeployDefault.ECSCanary10Percent5Minutes",
    store: TargetStore = TARGETS,
    hook_function: str = "CodeDeployHook_deployguard",
) -> str:
    """A CodeDeploy blue/green deployment of the service's second task definition revision."""
    codedeploy = clients.client("codedeploy")
    if application not in codedeploy.list_applications().get("applications", []):
        codedeploy.create_application(applicationName=application, computePlatform="ECS")
    if group not in codedeploy.list_deployment_groups(applicationName=application).get("deploymentGroups", []):
        codedeploy.create_deployment_group(
            applicationName=application, deploymentGroupName=group,
            serviceRoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/CodeDeployServiceRoleForECS",
            deploymentConfigName=config_name,
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            blueGreenDeploymentConfiguration={
                "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 5},
                "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT"},
            },
            ecsServices=[{"serviceName": stack.service, "clusterName": stack.cluster}],
            loadBalancerInfo={"targetGroupPairInfoList": [{
                "targetGroups": [{"name": stack.blue_target_group}, {"name": stack.green_target_group}],
                "prodTrafficRoute": {"listenerArns": [stack.prod_listener_arn]},
                "testTrafficRoute": {"listenerArns": [stack.test_listener_arn]},
            }]},
        )  # fmt: skip
    appspec = {
        "version": 0.0,
        "Resources": [{"TargetService": {"Type": "AWS::ECS::Service", "Properties": {
            "TaskDefinition": stack.task_definitions[1],
            "LoadBalancerInfo": {"ContainerName": stack.service, "ContainerPort": 80}}}}],
        "Hooks": [{"AfterAllowTestTraffic": hook_function}, {"AfterAllowTraffic": hook_function}],
    }  # fmt: skip
    deployment_id = str(
        codedeploy.create_deployment(
            applicationName=application, deploymentGroupName=group, deploymentConfigName=config_name,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": json.dumps(appspec)}},
        )["deploymentId"]
    )  # fmt: skip
    from deployguard_local.codedeploy import _moto_deployment

    _moto_deployment(deployment_id).create_time = clock.now()
    # CodeDeploy's Install event creates the replacement (green) task set
    green = _create_task_set(stack.cluster, stack.service, stack.task_definitions[1], stack.green_target_group_arn)
    store.add_ecs_target(deployment_id, stack.cluster, stack.service, stack.blue_target_group,
                         stack.green_target_group, (stack.blue_task_set, green))  # fmt: skip
    return deployment_id


def shift_traffic(stack: EcsStack, deployment_id: str, green_percent: float, store: TargetStore = TARGETS) -> None:
    """Route ``green_percent`` of production traffic to the green target group (ModifyListener)."""
    green = max(0, min(100, round(green_percent)))
    clients.client("elbv2").modify_listener(
        ListenerArn=stack.prod_listener_arn,
        DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": stack.blue_target_group_arn, "Weight": 100 - green},
            {"TargetGroupArn": stack.green_target_group_arn, "Weight": green},
        ]}}],
    )  # fmt: skip
    store.weigh(deployment_id, float(green))


def listener_weights(listener_arn: str) -> dict[str, float]:
    """Target group name -> share of the listener's traffic (DescribeListeners)."""
    listener = clients.client("elbv2").describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
    action = listener["DefaultActions"][0]
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or [
        {"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}
    ]
    total = sum(float(g.get("Weight", 1)) for g in groups) or 1.0
    return {g["TargetGroupArn"].split(":")[-1].split("/")[1]: float(g.get("Weight", 1)) / total for g in groups}


@dataclass
class AlbTrafficSource:
    """Requests through the production listener, split between the target groups by its weights.

    Each minute publishes what AWS/ApplicationELB publishes per target group:
    RequestCount, HTTPCode_Target_5XX_Count (only when there were any) and
    TargetResponseTime (seconds), with the LoadBalancer and TargetGroup dimensions.
    """

    listener_arn: str
    requests_per_minute: float
    behaviours: dict[str, VersionBehaviour]  # target group name -> behaviour
    seed: int = 11
    started_at: datetime | None = None
    active: bool = True
    minutes_written: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._dimensions: dict[str, dict[str, str]] = {}

    def on_clock(self, before: datetime, after: datetime) -> None:
        if self.active:
            for minute_start in minutes_between(before, after):
                self.write_minute(minute_start)

    def dimensions(self, target_group: str) -> dict[str, str]:
        if target_group not in self._dimensions:
            from deployguard.aws.elbv2 import target_group_dimensions

            dims = target_group_dimensions([target_group])[target_group]
            self._dimensions[target_group] = {"LoadBalancer": dims.load_balancer, "TargetGroup": dims.target_group}
        return self._dimensions[target_group]

    def write_minute(self, minute_start: datetime) -> None:
        if self.started_at is None:
            self.started_at = minute_start
        minute = int((minute_start - self.started_at).total_seconds() // 60)
        stamp = minute_start + timedelta(seconds=30)
        for target_group, weight in listener_weights(self.listener_arn).items():
            mean = self.requests_per_minute * weight
            requests = max(0, round(self._rng.gauss(mean, math.sqrt(max(1.0, mean)))))
            if requests == 0:
                continue  # no datapoint for a target group that served nothing
            error_rate, p50, p99 = self.behaviours.get(target_group, VersionBehaviour()).at(minute)
            errors = sum(1 for _ in range(requests) if self._rng.random() < error_rate)
            jitter = math.exp(self._rng.gauss(0.0, 0.04))
            dims = self.dimensions(target_group)
            put_metric_values("AWS/ApplicationELB", "RequestCount", dims, stamp, "Count", value=requests)
            if errors:
                put_metric_values("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dims, stamp, "Count",
                                  value=errors)  # fmt: skip
            put_metric_values("AWS/ApplicationELB", "TargetResponseTime", dims, stamp, "Seconds",
                              values=[p50 * jitter / 1000.0, p99 * jitter / 1000.0], counts=[98, 2])  # fmt: skip
        self.minutes_written += 1


@dataclass
class EcsRolloutResult:
    deployment_id: str
    hooks: list[tuple[str, str | None]]  # (lifecycle event, status CodeDeploy was told; None: never answered)
    final_state: str  # SUCCESS, FAILURE or STOP
    rolled_back: bool
    green_percent: float  # the green task set's share of production traffic at the end
    states: list[str] = field(default_factory=list)


def simulate_ecs_rollout(
    stack: EcsStack,
    *,
    hooks_function: Callable[[dict[str, Any]], Any],
    clock_advance: Callable[[float], Any],
    recorder_function: Callable[[dict[str, Any]], Any] | None = None,
    application: str | None = None,
    group: str = "blue-green",
    canary_percent: float = 10.0,
    canary_minutes: int = 5,
    store: TargetStore = TARGETS,
    on_step: Callable[[str], None] | None = None,
) -> EcsRolloutResult:
    """Drive a CodeDeploy ``ECSCanary10Percent5Minutes`` blue/green deployment of ``stack``.

    AfterAllowTestTraffic runs while only the test listener reaches green; then 10% of
    production moves to green for ``canary_minutes`` simulated minutes, then 100%, then
    AfterAllowTraffic. A hook answering ``Failed`` (or not answering), or a StopDeployment
    meanwhile, ends it: production goes back to blue, as CodeDeploy's rollback does.
    """
    from deployguard_local.codedeploy import LEDGER, _moto_deployment, _set_state, state_change_event

    say = on_step or (lambda _: None)
    application = application or stack.service
    deployment_id = create_ecs_deployment(stack, application, group, store=store)
    hooks: list[tuple[str, str | None]] = []
    states: list[str] = []

    def emit(state: str) -> None:
        states.append(state)
        if recorder_function is not None:
            recorder_function(state_change_event(deployment_id, application, group, state))
        say(f"CodeDeploy {state}")

    def run_hook(name: str) -> bool:
        store.enter(deployment_id, name)
        execution_id = LEDGER.issue(deployment_id)
        hooks_function({"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution_id})
        status = LEDGER.status_of(execution_id)
        hooks.append((name, status))
        say(f"{name} hook answered {status or 'nothing (CodeDeploy times the hook out: Failed)'}")
        return status == "Succeeded"

    def stopped() -> bool:
        return str(_moto_deployment(deployment_id).status) == "Stopped"

    def finish(state: str, rolled_back: bool) -> EcsRolloutResult:
        if rolled_back:
            shift_traffic(stack, deployment_id, 0.0, store)
            say(f"rolled back: 100% of production to the blue target group {stack.blue_target_group}")
        store.finish(deployment_id, "Succeeded" if state == "SUCCESS" else "Failed")
        if state != "STOP":
            _set_state(deployment_id, "Succeeded" if state == "SUCCESS" else "Failed", ended=True)
        emit(state)
        green = listener_weights(stack.prod_listener_arn).get(stack.green_target_group, 0.0) * 100.0
        return EcsRolloutResult(deployment_id, hooks, state, rolled_back, green, states)

    _set_state(deployment_id, "InProgress")
    emit("START")
    store.enter(deployment_id, "AllowTestTraffic")
    if not run_hook("AfterAllowTestTraffic"):
        return finish("FAILURE", rolled_back=False)  # production never reached green
    store.enter(deployment_id, "AllowTraffic")
    shift_traffic(stack, deployment_id, canary_percent, store)
    say(f"production {canary_percent:g}% to green ({stack.green_target_group}) for {canary_minutes} min")
    for _ in range(canary_minutes):
        clock_advance(60.0)
        if stopped():
            say("StopDeployment received during the canary")
            return finish("STOP", rolled_back=True)
    shift_traffic(stack, deployment_id, 100.0, store)
    say(f"production 100% to green ({stack.green_target_group})")
    clock_advance(60.0)
    if stopped():
        return finish("STOP", rolled_back=True)
    if not run_hook("AfterAllowTraffic"):
        return finish("FAILURE", rolled_back=True)
    return finish("SUCCESS", rolled_back=False)
