"""What DeployGuard learns from CodeDeploy, on moto: AppSpecs from S3, ECS task sets and their
target groups as CloudWatch dimensions, and the dimensions the judge reads per version."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from moto import mock_aws

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.cloudwatch import canary_queries, task_set_dimensions
from deployguard.aws.codedeploy import CodeDeployGateway, appspec_of
from deployguard.aws.elbv2 import arn_suffix, target_group_dimensions
from deployguard.config import parse_config
from deployguard.exceptions import CodeDeployError, LoadBalancerError, MetricsConfigError
from deployguard.models import Deployment, EcsTarget, MetricSpec
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.ecs import TargetStore, create_ecs_deployment, create_ecs_service, install_deployment_target_api

LAMBDA_APPSPEC = {
    "version": 0.0,
    "Resources": [{"fn": {"Type": "AWS::Lambda::Function", "Properties": {
        "Name": "orders", "Alias": "live", "CurrentVersion": "3", "TargetVersion": "4"}}}],
}  # fmt: skip


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        clients.reset()
        yield
    clients.reset()


def _bucket(name: str = "deployguard-revisions") -> str:
    clients.client("s3").create_bucket(Bucket=name)
    return name


def test_appspec_of_an_s3_revision_yaml_and_json(aws: None) -> None:
    import yaml

    bucket = _bucket()
    s3 = clients.client("s3")
    s3.put_object(Bucket=bucket, Key="orders/appspec.yaml", Body=yaml.safe_dump(LAMBDA_APPSPEC).encode())
    s3.put_object(Bucket=bucket, Key="orders/appspec.json", Body=json.dumps(LAMBDA_APPSPEC).encode())
    etag = s3.head_object(Bucket=bucket, Key="orders/appspec.yaml")["ETag"]
    for key, bundle, extra in (("orders/appspec.yaml", "YAML", {"eTag": etag}), ("orders/appspec.json", "JSON", {})):
        revision = {"revisionType": "S3", "s3Location": {"bucket": bucket, "key": key, "bundleType": bundle, **extra}}
        assert appspec_of(revision) == LAMBDA_APPSPEC


def test_s3_revision_errors_name_the_object_and_the_problem(aws: None) -> None:
    bucket = _bucket()
    missing = {"revisionType": "S3", "s3Location": {"bucket": bucket, "key": "nope.yaml", "bundleType": "YAML"}}
    with pytest.raises(CodeDeployError, match=r"GetObject s3://deployguard-revisions/nope.yaml"):
        appspec_of(missing)
    archive = {"revisionType": "S3", "s3Location": {"bucket": bucket, "key": "app.zip", "bundleType": "zip"}}
    with pytest.raises(CodeDeployError, match="bundleType ZIP is an archive"):
        appspec_of(archive)
    with pytest.raises(CodeDeployError, match="needs bucket and key"):
        appspec_of({"revisionType": "S3", "s3Location": {"bucket": bucket}})
    clients.client("s3").put_object(Bucket=bucket, Key="changed.json", Body=b"{}")
    stale = {"revisionType": "S3", "s3Location": {"bucket": bucket, "key": "changed.json", "eTag": "0123abcd"}}
    with pytest.raises(CodeDeployError, match="the AppSpec changed after the deployment was created"):
        appspec_of(stale)


def test_deployment_with_an_s3_revision_names_its_lambda_target(aws: None) -> None:
    bucket = _bucket()
    clients.client("s3").put_object(Bucket=bucket, Key="a.json", Body=json.dumps(LAMBDA_APPSPEC).encode())
    codedeploy = clients.client("codedeploy")
    codedeploy.create_application(applicationName="orders", computePlatform="Lambda")
    codedeploy.create_deployment_group(
        applicationName="orders", deploymentGroupName="live", serviceRoleArn="arn:aws:iam::123456789012:role/cd"
    )
    deployment_id = codedeploy.create_deployment(
        applicationName="orders", deploymentGroupName="live",
        revision={"revisionType": "S3", "s3Location": {"bucket": bucket, "key": "a.json", "bundleType": "JSON"}},
    )["deploymentId"]  # fmt: skip
    target = CodeDeployGateway().deployment(deployment_id).target
    assert target is not None and target.model_dump()["new_version"] == "4"


def test_target_group_dimensions_are_arn_suffixes(aws: None) -> None:
    stack = create_ecs_service("main", "shop")
    dims = target_group_dimensions([stack.blue_target_group, stack.green_target_group])
    green = dims["shop-green"]
    assert green.target_group == arn_suffix(stack.green_target_group_arn)
    assert green.target_group.startswith("targetgroup/shop-green/")
    assert green.load_balancer.startswith("app/shop-alb/")
    with pytest.raises(LoadBalancerError, match="DescribeTargetGroups"):
        target_group_dimensions(["no-such-group"])
    with pytest.raises(LoadBalancerError, match="not an Elastic Load Balancing ARN"):
        arn_suffix("targetgroup/x")


def test_ecs_deployment_learns_task_sets_weights_and_running_hook(aws: None) -> None:
    store = TargetStore()
    undo = install_deployment_target_api(store)
    try:
        stack = create_ecs_service("main", "shop")
        deployment_id = create_ecs_deployment(stack, "shop", "shop-bg", store=store)
        store.enter(deployment_id, "AfterAllowTestTraffic")
        store.weigh(deployment_id, 10.0)
        info = CodeDeployGateway().deployment(deployment_id)
    finally:
        undo()
    assert info.compute_platform == "ECS" and info.strategy == "canary"
    assert info.lifecycle_event == "AfterAllowTestTraffic" and info.new_traffic_weight == pytest.approx(0.1)
    target = info.target
    assert isinstance(target, EcsTarget)
    assert (target.cluster, target.service) == ("main", "shop")
    assert target.stable_target_group.startswith("targetgroup/shop-blue/")
    assert target.new_target_group.startswith("targetgroup/shop-green/")
    assert target.stable_task_set.startswith("ecs-svc/") and target.new_task_set != target.stable_task_set
    # the task definitions the task sets run, from ECS (DescribeTaskSets): blue is the stable one
    assert target.stable_task_definition == stack.task_definitions[0]
    assert target.new_task_definition == stack.task_definitions[1]


def test_ecs_task_definitions_stay_unknown_when_describe_task_sets_fails(aws: None) -> None:
    store = TargetStore()
    undo = install_deployment_target_api(store)
    try:
        stack = create_ecs_service("main", "shop")
        deployment_id = create_ecs_deployment(stack, "shop", "shop-bg", store=store)
        with FaultInjector(clock.SimulatedClock()) as injected:
            plan = injected.on("ecs", "DescribeTaskSets", [], then="5xx")
            info = CodeDeployGateway().deployment(deployment_id)
    finally:
        undo()
    target = info.target
    assert isinstance(target, EcsTarget) and plan.injected >= 1
    assert target.stable_task_definition == ""  # unknown, not guessed; the rest of the target is still read
    assert target.new_task_definition == stack.task_definitions[1] and target.stable_target_group


ECS = EcsTarget(
    cluster="main", service="shop", stable_task_definition="shop:6", new_task_definition="shop:7",
    load_balancer="app/shop-alb/1", stable_target_group="targetgroup/shop-blue/2",
    new_target_group="targetgroup/shop-green/3", stable_task_set="ecs-svc/1", new_task_set="ecs-svc/2",
)  # fmt: skip


def test_task_set_dimensions_per_role() -> None:
    alb = MetricSpec(id="errors", namespace="AWS/ApplicationELB", name="HTTPCode_Target_5XX_Count")
    assert task_set_dimensions(alb, ECS, "canary") == {
        "LoadBalancer": "app/shop-alb/1",
        "TargetGroup": "targetgroup/shop-green/3",
    }
    assert task_set_dimensions(alb, ECS, "baseline")["TargetGroup"] == "targetgroup/shop-blue/2"
    custom = MetricSpec(
        id="orders", namespace="Shop", name="Orders",
        dimensions={"Service": "{cluster}/{service}", "TaskSet": "{task_set}", "Version": "{version}"},
    )  # fmt: skip
    assert task_set_dimensions(custom, ECS, "canary") == {
        "Service": "main/shop",
        "TaskSet": "ecs-svc/2",
        "Version": "shop:7",
    }


def test_ecs_metrics_that_cannot_be_read_are_refused_naming_the_setting() -> None:
    unknown = ECS.model_copy(update={"new_target_group": ""})
    alb = MetricSpec(id="errors", namespace="AWS/ApplicationELB", name="HTTPCode_Target_5XX_Count")
    with pytest.raises(MetricsConfigError, match="canary task set's target group is unknown"):
        task_set_dimensions(alb, unknown, "canary")
    deployment = Deployment(service="shop", environment="prod", version="shop:7", target=ECS)
    lambda_defaults = parse_config("{}", "t.yaml").defaults.judge.metrics
    with pytest.raises(MetricsConfigError, match=r"judge\.metrics_preset: alb"):
        canary_queries("d", deployment, lambda_defaults)


def test_alb_preset_reads_requests_5xx_and_latency_per_target_group() -> None:
    config = parse_config("services:\n  shop:\n    judge: {metrics_preset: alb}\n", "t.yaml")
    specs = config.service("shop").judge.metrics
    assert [s.id for s in specs] == ["requests", "errors", "latency_p50", "latency_p99"]
    errors = next(s for s in specs if s.id == "errors")
    assert (errors.relative_to, errors.fill_missing) == ("requests", 0.0)
    deployment = Deployment(service="shop", environment="prod", version="shop:7", target=ECS)
    queries = canary_queries("d", deployment, specs)
    assert len(queries) == 8 and {q.dimensions["TargetGroup"] for q in queries} == {
        "targetgroup/shop-blue/2",
        "targetgroup/shop-green/3",
    }
    # listed metrics win over the preset
    listed = parse_config(
        "services:\n  shop:\n    judge:\n      metrics_preset: alb\n      metrics:\n"
        "        - {id: requests, namespace: AWS/ApplicationELB, name: RequestCount, kind: count}\n",
        "t.yaml",
    )
    assert [s.id for s in listed.service("shop").judge.metrics] == ["requests"]
