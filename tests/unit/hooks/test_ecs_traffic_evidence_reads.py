"""The two reads the ECS hook takes its traffic evidence from, on moto through real boto3: green's share of the
production listener (DescribeListeners, as CodeDeploy sets it when it moves traffic) and when AllowTraffic began
(GetDeploymentTarget's lifecycle events: their startTime, as AWS gives it)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.codedeploy import CodeDeployGateway
from deployguard.aws.elbv2 import arn_suffix, forwarded_share
from deployguard.exceptions import LoadBalancerError
from deployguard_local.ecs import TargetStore, create_ecs_deployment, create_ecs_service, shift_traffic


def test_greens_share_of_the_production_listener(cd_aws: None, targets: TargetStore) -> None:
    stack = create_ecs_service("main", "shop")
    deployment_id = create_ecs_deployment(stack, "shop", "shop-bg", store=targets)
    green = arn_suffix(stack.green_target_group_arn)
    assert forwarded_share([stack.prod_listener_arn], green) == 0.0
    shift_traffic(stack, deployment_id, 10.0, targets)
    assert forwarded_share([stack.prod_listener_arn], green) == pytest.approx(0.1)
    # all at once, as CodeDeploy may leave it: one target group forwarded to, no weights
    clients.client("elbv2").modify_listener(
        ListenerArn=stack.prod_listener_arn,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": stack.green_target_group_arn}],
    )
    assert forwarded_share([stack.prod_listener_arn], green) == 1.0
    assert forwarded_share([stack.prod_listener_arn], arn_suffix(stack.blue_target_group_arn)) == 0.0
    assert forwarded_share([], green) is None and forwarded_share([stack.prod_listener_arn], "") is None


def test_an_unreadable_listener_is_a_load_balancer_error(cd_aws: None) -> None:
    stack = create_ecs_service("main", "shop")
    elbv2 = clients.client("elbv2")

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, "DescribeListeners")

    event = f"before-call.{elbv2.meta.service_model.service_id.hyphenize()}.DescribeListeners"
    elbv2.meta.events.register(event, refuse)
    try:
        with pytest.raises(LoadBalancerError, match=r"DescribeListeners .*AccessDenied"):
            forwarded_share([stack.prod_listener_arn], arn_suffix(stack.green_target_group_arn))
    finally:
        elbv2.meta.events.unregister(event, refuse)


def test_allow_traffics_start_comes_from_getdeploymenttarget(cd_aws: None, targets: TargetStore) -> None:
    stack = create_ecs_service("main", "shop")
    deployment_id = create_ecs_deployment(stack, "shop", "shop-bg", store=targets)
    gateway = CodeDeployGateway()
    targets.enter(deployment_id, "AfterAllowTestTraffic")
    info = gateway.deployment(deployment_id)
    assert (info.lifecycle_event, info.production_traffic_moved, info.traffic_started_at) == (
        "AfterAllowTestTraffic", False, None,
    )  # fmt: skip
    clock.sleep(240)
    targets.enter(deployment_id, "AllowTraffic")
    began = clock.now()
    clock.sleep(300)
    targets.enter(deployment_id, "AfterAllowTraffic")
    info = gateway.deployment(deployment_id)
    assert info.production_traffic_moved and info.traffic_started_at == began
    state = gateway.deployment_target(deployment_id, "main:shop")
    assert state is not None and state.traffic_started_at == began
    assert state.started["AfterAllowTraffic"] == clock.now()
