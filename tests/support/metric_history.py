"""Hours of a service's CloudWatch history in 5-minute datapoints (for post-deployment monitoring)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from deployguard.aws import clients


def _put(namespace: str, data: list[dict[str, Any]]) -> None:
    for offset in range(0, len(data), 1000):
        clients.client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=data[offset : offset + 1000])


def _wobble(minute: int) -> float:
    return 1 + 0.05 * ((minute // 5) % 3 - 1)


def write_lambda_history(
    function: str, version: str, start: datetime, minutes: int, errors_per_1000: float, alias: str = "live"
) -> None:
    """1000 invocations per 5 minutes of ``function`` at ``version``, with that many errors per 1000."""
    dims = [
        {"Name": "ExecutedVersion", "Value": version},
        {"Name": "FunctionName", "Value": function},
        {"Name": "Resource", "Value": f"{function}:{alias}"},
    ]
    data: list[dict[str, Any]] = []
    for m in range(0, minutes, 5):
        at, wobble = start + timedelta(minutes=m, seconds=30), _wobble(m)
        for each in (dims, dims[1:]):  # per version, and the alias's own series (as AWS/Lambda publishes both)
            data += [
                {"MetricName": "Invocations", "Dimensions": each, "Timestamp": at, "Unit": "Count", "Value": 1000.0},
                {"MetricName": "Errors", "Dimensions": each, "Timestamp": at, "Unit": "Count",
                 "Value": errors_per_1000 * wobble},
                {"MetricName": "Throttles", "Dimensions": each, "Timestamp": at, "Unit": "Count", "Value": 0.0},
                {"MetricName": "Duration", "Dimensions": each, "Timestamp": at, "Unit": "Milliseconds",
                 "Value": 120 * wobble},
            ]  # fmt: skip
    _put("AWS/Lambda", data)


def write_alb_history(target_group_dims: dict[str, str], start: datetime, hours: int) -> None:
    """A healthy target group: 15,000 requests per 5 minutes, 0.5% 5XX, 80/350 ms p50/p99."""
    dims = [{"Name": k, "Value": v} for k, v in sorted(target_group_dims.items())]
    data: list[dict[str, Any]] = []
    for m in range(0, hours * 60, 5):
        at, wobble = start + timedelta(minutes=m, seconds=30), _wobble(m)
        data += [
            {"MetricName": "RequestCount", "Dimensions": dims, "Timestamp": at, "Unit": "Count", "Value": 15000.0},
            {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": dims, "Timestamp": at, "Unit": "Count",
             "Value": 75.0 * wobble},
            {"MetricName": "TargetResponseTime", "Dimensions": dims, "Timestamp": at, "Unit": "Seconds",
             "Values": [0.08 * wobble, 0.35 * wobble], "Counts": [98.0, 2.0]},
        ]  # fmt: skip
    _put("AWS/ApplicationELB", data)
