"""CloudWatch reads (GetMetricData, batched) and writes (PutMetricData).

A canary assessment needs every configured metric for both versions over the same
periods. All the queries of any number of deployments are packed into as few
GetMetricData calls as the API allows (500 queries a call), so assessing N
deployments with M metrics costs ceil(2*N*M / 500) calls, plus paging.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deployguard.aws import clients
from deployguard.exceptions import MetricsConfigError
from deployguard.models import (
    CanaryWindow,
    DataGap,
    Deployment,
    EcsTarget,
    LambdaTarget,
    MetricSpec,
    MetricWindow,
)

MAX_QUERIES_PER_CALL = 500


@dataclass(frozen=True)
class MetricQuery:
    """One metric of one version over a time range."""

    key: tuple[str, str, str]  # (request id, metric id, "baseline" | "canary")
    spec: MetricSpec
    dimensions: dict[str, str]


def floor_time(at: datetime, interval_seconds: int) -> datetime:
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % interval_seconds, tz=at.tzinfo)


def version_dimensions(spec: MetricSpec, target: LambdaTarget, version: str) -> dict[str, str]:
    """Dimensions that select one version of an aliased Lambda function.

    AWS/Lambda publishes per-version metrics of an alias with the dimensions
    FunctionName, Resource (function:alias) and ExecutedVersion. A custom metric
    names its own dimensions, with ``{function}``, ``{alias}`` and ``{version}``
    replaced here.
    """
    if spec.namespace == "AWS/Lambda" and not spec.dimensions:
        return {
            "FunctionName": target.function_name,
            "Resource": f"{target.function_name}:{target.alias}",
            "ExecutedVersion": version,
        }
    return {
        name: value.format(function=target.function_name, alias=target.alias, version=version)
        for name, value in spec.dimensions.items()
    }


def task_set_dimensions(spec: MetricSpec, target: EcsTarget, role: str) -> dict[str, str]:
    """Dimensions that select one task set (blue: ``baseline``, green: ``canary``) of an ECS service.

    Each task set is behind its own target group, so AWS/ApplicationELB metrics with
    the LoadBalancer and TargetGroup dimensions are per version. A custom metric names
    its own dimensions, with ``{cluster}``, ``{service}``, ``{task_set}``,
    ``{task_definition}``, ``{target_group}``, ``{load_balancer}`` and ``{version}``
    (the task definition) replaced here.
    """
    canary = role == "canary"
    target_group = target.new_target_group if canary else target.stable_target_group
    task_definition = target.new_task_definition if canary else target.stable_task_definition
    if spec.namespace == "AWS/ApplicationELB" and not spec.dimensions:
        if not (target_group and target.load_balancer):
            raise MetricsConfigError(
                f"ECS service {target.cluster}/{target.service}: the {role} task set's target group is unknown "
                "(CodeDeploy's deployment target names none yet), so its AWS/ApplicationELB metrics cannot be read"
            )
        return {"LoadBalancer": target.load_balancer, "TargetGroup": target_group}
    if spec.namespace == "AWS/Lambda" and not spec.dimensions:
        raise MetricsConfigError(
            f"metric {spec.id!r} reads AWS/Lambda, which knows nothing of ECS service {target.cluster}/"
            f"{target.service}: give the service judge.metrics_preset: alb, or metrics with their own dimensions"
        )
    values = {
        "cluster": target.cluster,
        "service": target.service,
        "task_set": target.new_task_set if canary else target.stable_task_set,
        "task_definition": task_definition,
        "version": task_definition,
        "target_group": target_group,
        "load_balancer": target.load_balancer,
    }
    return {name: value.format(**values) for name, value in spec.dimensions.items()}


def canary_queries(request_id: str, deployment: Deployment, specs: Sequence[MetricSpec]) -> list[MetricQuery]:
    """Every metric of both versions: baseline (stable) and canary (new)."""
    target = deployment.target
    queries = []
    for spec in specs:
        for role in ("baseline", "canary"):
            if isinstance(target, LambdaTarget):
                version = target.new_version if role == "canary" else target.stable_version
                dims = version_dimensions(spec, target, version)
            else:
                dims = task_set_dimensions(spec, target, role)
            queries.append(MetricQuery((request_id, spec.id, role), spec, dims))
    return queries


def _filled(values: list[float | None], spec: MetricSpec, unknown: bool = False) -> list[float | None]:
    if spec.fill_missing is None or unknown:  # a failed query's periods are unknown, not zero
        return values
    return [spec.fill_missing if v is None else v for v in values]


_FAILED_STATUSES = {"InternalError", "Forbidden"}


def _status_reason(result: dict[str, Any]) -> str:
    status = str(result.get("StatusCode") or "Complete")
    messages = [f"{m.get('Code', '')}: {m.get('Value', '')}".strip(": ") for m in result.get("Messages") or []]
    return f"CloudWatch returned {status}" + (f" ({'; '.join(messages)})" if messages else "")


def _gaps(
    key: tuple[str, str, str], failures: dict[tuple[str, str, str], str], values: list[float | None]
) -> list[DataGap]:
    """The periods of a failed query that got no value, as a DataGap of that version."""
    if key not in failures:
        return []
    periods = [i for i, v in enumerate(values) if v is None]
    role = "canary" if key[2] == "canary" else "baseline"
    return [DataGap(version=role, periods=periods, reason=failures[key])] if periods else []


class MetricsReader:
    """Reads per-period metric values for many queries in the fewest GetMetricData calls.

    Each result's ``StatusCode`` is read: ``PartialData`` is paged to completion with
    ``NextToken``; ``InternalError`` or ``Forbidden`` (or data still partial when no page
    is left) leaves that query's periods without value *unknown*: ``failures`` maps its
    key to the reason, and its windows carry them as gaps, never as zeros.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.failures: dict[tuple[str, str, str], str] = {}

    def read(
        self, queries: Sequence[MetricQuery], start: datetime, end: datetime, interval_seconds: int
    ) -> dict[tuple[str, str, str], list[float | None]]:
        """Values per query key, one per period in [start, end), None where CloudWatch has no datapoint."""
        periods = max(0, int((end - start).total_seconds()) // interval_seconds)
        out: dict[tuple[str, str, str], list[float | None]] = {q.key: [None] * periods for q in queries}
        if periods == 0 or not queries:
            return out
        for offset in range(0, len(queries), MAX_QUERIES_PER_CALL):
            batch = queries[offset : offset + MAX_QUERIES_PER_CALL]
            ids = {f"q{i}": q.key for i, q in enumerate(batch)}
            request: dict[str, Any] = {
                "MetricDataQueries": [
                    {
                        "Id": qid,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": q.spec.namespace,
                                "MetricName": q.spec.name,
                                "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(q.dimensions.items())],
                            },
                            "Period": interval_seconds,
                            "Stat": q.spec.stat,
                        },
                        "ReturnData": True,
                    }
                    for qid, q in zip(ids, batch, strict=True)
                ],
                "StartTime": start,
                "EndTime": end,
                "ScanBy": "TimestampAscending",
            }
            partial: dict[tuple[str, str, str], str] = {}
            while True:
                resp = clients.client("cloudwatch").get_metric_data(**request)
                self.calls += 1
                for result in resp.get("MetricDataResults", []):
                    key = ids[result["Id"]]
                    status = result.get("StatusCode") or "Complete"
                    if status in _FAILED_STATUSES:
                        self.failures[key] = _status_reason(result)
                    elif status == "PartialData":
                        partial[key] = _status_reason(result)
                    else:
                        partial.pop(key, None)
                    series = out[key]
                    for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                        index = int((ts - start).total_seconds()) // interval_seconds
                        if 0 <= index < periods and value is not None and math.isfinite(value):
                            series[index] = float(value)
                token = resp.get("NextToken")
                if not token:
                    break
                request["NextToken"] = token
            for key, reason in partial.items():  # still partial with no page left
                self.failures.setdefault(key, reason)
        return out

    def _metric_window(
        self, request_id: str, spec: MetricSpec, values: dict[tuple[str, str, str], list[float | None]], skip: int
    ) -> MetricWindow:
        b_key, c_key = (request_id, spec.id, "baseline"), (request_id, spec.id, "canary")
        baseline, canary = values[b_key][skip:], values[c_key][skip:]
        return MetricWindow(
            spec=spec,
            baseline=_filled(baseline, spec, b_key in self.failures),
            canary=_filled(canary, spec, c_key in self.failures),
            gaps=_gaps(b_key, self.failures, baseline) + _gaps(c_key, self.failures, canary),
        )

    def canary_windows(
        self,
        deployments: Iterable[tuple[Deployment, Sequence[MetricSpec]]],
        now: datetime,
        interval_seconds: int = 60,
    ) -> dict[str, CanaryWindow]:
        """The CanaryWindow of each deployment, read together in the fewest calls.

        Periods run from the canary's start (floored to the interval) to the last
        complete period before ``now``.
        """
        items = list(deployments)
        if not items:
            return {}
        end = floor_time(now, interval_seconds)
        starts = {d.deployment_id: floor_time(d.started_at, interval_seconds) for d, _ in items}
        start = min(starts.values())
        queries = [q for d, specs in items for q in canary_queries(d.deployment_id, d, specs)]
        values = self.read(queries, start, end, interval_seconds)
        windows = {}
        for deployment, specs in items:
            skip = int((starts[deployment.deployment_id] - start).total_seconds()) // interval_seconds
            since_shift = None
            if deployment.weight_changed_at is not None:
                since_shift = max(
                    0,
                    int((end - floor_time(deployment.weight_changed_at, interval_seconds)).total_seconds())
                    // interval_seconds,
                )
            windows[deployment.deployment_id] = CanaryWindow(
                interval_seconds=interval_seconds,
                canary_weight=deployment.canary_weight,
                periods_since_shift=since_shift,
                metrics=[self._metric_window(deployment.deployment_id, spec, values, skip) for spec in specs],
            )
        return windows


def put_metric_values(
    namespace: str,
    name: str,
    dimensions: dict[str, str],
    at: datetime,
    unit: str,
    value: float | None = None,
    values: Sequence[float] = (),
    counts: Sequence[float] = (),
) -> None:
    """Publish one datapoint, or a distribution as Values/Counts (used by the demo's traffic)."""
    datum: dict[str, Any] = {
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(dimensions.items())],
        "Timestamp": at,
        "Unit": unit,
    }
    if values:
        datum["Values"] = list(values)
        datum["Counts"] = list(counts) or [1.0] * len(values)
    else:
        datum["Value"] = float(value or 0.0)
    clients.client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=[datum])
