"""Elastic Load Balancing v2 reads: the CloudWatch dimensions of an ECS task set's target group.

CodeDeploy names an ECS deployment's target groups by name (``taskSetsInfo[].targetGroup``,
``loadBalancerInfo.targetGroupPairInfoList``); CloudWatch's ``AWS/ApplicationELB`` metrics
are keyed by ARN suffixes (``TargetGroup=targetgroup/<name>/<id>``,
``LoadBalancer=app/<name>/<id>``). :func:`target_group_dimensions` turns the first into
the second with one DescribeTargetGroups call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from deployguard.aws import clients
from deployguard.exceptions import LoadBalancerError

MAX_NAMES_PER_CALL = 20  # DescribeTargetGroups accepts at most 20 names


@dataclass(frozen=True)
class TargetGroupDimensions:
    """The ``AWS/ApplicationELB`` dimension values of one target group."""

    target_group: str  # targetgroup/<name>/<id>
    load_balancer: str  # app/<name>/<id>


def arn_suffix(arn: str, strip: str = "") -> str:
    """The resource part of an ELB ARN (after the account), less a leading ``strip``."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or not parts[5]:
        raise LoadBalancerError(f"not an Elastic Load Balancing ARN: {arn!r}")
    resource = parts[5]
    return resource[len(strip) :] if strip and resource.startswith(strip) else resource


def target_group_dimensions(names: Sequence[str]) -> dict[str, TargetGroupDimensions]:
    """The dimensions of each named target group (DescribeTargetGroups, 20 names a call)."""
    wanted = sorted({n for n in names if n})
    found: dict[str, TargetGroupDimensions] = {}
    elbv2 = clients.client("elbv2")
    for offset in range(0, len(wanted), MAX_NAMES_PER_CALL):
        batch = wanted[offset : offset + MAX_NAMES_PER_CALL]
        try:
            groups = elbv2.describe_target_groups(Names=batch).get("TargetGroups", [])
        except (ClientError, BotoCoreError) as exc:
            raise LoadBalancerError(f"DescribeTargetGroups {', '.join(batch)}: {exc}") from exc
        for group in groups:
            balancers = group.get("LoadBalancerArns") or []
            if not balancers:
                raise LoadBalancerError(
                    f"target group {group['TargetGroupName']} is attached to no load balancer: "
                    "its metrics have no LoadBalancer dimension"
                )
            found[str(group["TargetGroupName"])] = TargetGroupDimensions(
                target_group=arn_suffix(str(group["TargetGroupArn"])),
                load_balancer=arn_suffix(str(balancers[0]), strip="loadbalancer/"),
            )
    missing = [n for n in wanted if n not in found]
    if missing:
        raise LoadBalancerError(f"DescribeTargetGroups: no target group named {', '.join(missing)}")
    return found


def forwarded_share(listener_arns: Sequence[str], target_group: str) -> float | None:
    """The share of the listeners' traffic their default actions forward to ``target_group`` (its ARN suffix,
    ``targetgroup/<name>/<id>``), the highest of the listeners: as CodeDeploy sets an ECS service's production
    listener when it moves traffic (DescribeListeners). None when no listener forwards anything."""
    arns = [a for a in listener_arns if a]
    if not arns or not target_group:
        return None
    try:
        listeners = clients.client("elbv2").describe_listeners(ListenerArns=arns).get("Listeners", [])
    except (ClientError, BotoCoreError) as exc:
        raise LoadBalancerError(f"DescribeListeners {', '.join(arns)}: {exc}") from exc
    shares: list[float] = []
    for listener in listeners:
        for action in listener.get("DefaultActions") or []:
            if action.get("Type") != "forward":
                continue
            groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or (
                [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}] if action.get("TargetGroupArn") else []
            )
            total = sum(float(g.get("Weight", 1)) for g in groups)
            if total > 0:
                mine = sum(
                    float(g.get("Weight", 1)) for g in groups if arn_suffix(str(g["TargetGroupArn"])) == target_group
                )
                shares.append(mine / total)
    return max(shares) if shares else None
