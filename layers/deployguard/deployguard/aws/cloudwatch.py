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


def alias_dimensions(spec: MetricSpec, target: LambdaTarget) -> dict[str, str] | None:
    """Dimensions that select every version behind an alias (what the alias served, whichever
    version), or None when the metric exists only per version (custom dimensions naming ``{version}``).

    AWS/Lambda publishes an alias's metrics with the dimensions FunctionName and Resource
    (function:alias); a custom metric without ``{version}`` is the same series for every version."""
    if spec.namespace == "AWS/Lambda" and not spec.dimensions:
        return {"FunctionName": target.function_name, "Resource": f"{target.function_name}:{target.alias}"}
    if any("{version}" in value for value in spec.dimensions.values()):
        return None
    names = {"function": target.function_name, "alias": target.alias}
    return {name: value.format(**names) for name, value in spec.dimensions.items()}


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


@dataclass(frozen=True)
class WindowRequest:
    """Queries that share one time range and period (one deployment's canary or monitoring read)."""

    queries: Sequence[MetricQuery]
    start: datetime
    end: datetime
    interval_seconds: int

    @property
    def periods(self) -> int:
        return max(0, int((self.end - self.start).total_seconds()) // self.interval_seconds)


class MetricsReader:
    """Reads per-period metric values for many queries in the fewest GetMetricData calls.

    Each result's ``StatusCode`` is read: ``PartialData`` is paged to completion with
    ``NextToken``; ``InternalError`` or ``Forbidden`` (or data still partial when no page
    is left) leaves that query's periods without value *unknown*: ``failures`` maps its
    key to the reason (of the latest read of that key: a reader kept between looks forgets a
    failure once the key is read again), and its windows carry them as gaps, never as zeros.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.failures: dict[tuple[str, str, str], str] = {}

    def read(
        self, queries: Sequence[MetricQuery], start: datetime, end: datetime, interval_seconds: int
    ) -> dict[tuple[str, str, str], list[float | None]]:
        """Values per query key, one per period in [start, end), None where CloudWatch has no datapoint."""
        return self.read_windows([WindowRequest(queries, start, end, interval_seconds)])

    def read_windows(self, requests: Sequence[WindowRequest]) -> dict[tuple[str, str, str], list[float | None]]:
        """Values per query key over each request's own range and period, every request read together.

        The queries are packed 500 a call in the order of their start, and a call asks from
        the earliest start of its queries: canary and monitoring reads of any number of
        deployments cost ceil(queries / 500) calls (plus paging past 100,800 datapoints),
        and a young canary's queries do not share a call's range with a day of history
        unless they have to.
        """
        out: dict[tuple[str, str, str], list[float | None]] = {}
        entries: list[tuple[MetricQuery, WindowRequest]] = []
        for request in requests:
            for q in request.queries:
                if q.key in out:  # shared by several requests (a service's alias-level monitoring): read once
                    continue
                out[q.key] = [None] * request.periods
                self.failures.pop(q.key, None)  # the failures of this read, not of an earlier one
                if request.periods:
                    entries.append((q, request))
        entries.sort(key=lambda e: (e[1].start, e[1].interval_seconds))
        for offset in range(0, len(entries), MAX_QUERIES_PER_CALL):
            self._read_batch(entries[offset : offset + MAX_QUERIES_PER_CALL], out)
        return out

    def _read_batch(
        self, batch: Sequence[tuple[MetricQuery, WindowRequest]], out: dict[tuple[str, str, str], list[float | None]]
    ) -> None:
        ids = {f"q{i}": entry for i, entry in enumerate(batch)}
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
                        "Period": window.interval_seconds,
                        "Stat": q.spec.stat,
                    },
                    "ReturnData": True,
                }
                for qid, (q, window) in ids.items()
            ],
            "StartTime": min(window.start for _, window in batch),
            "EndTime": max(window.end for _, window in batch),
            "ScanBy": "TimestampAscending",
        }
        partial: dict[tuple[str, str, str], str] = {}
        while True:
            resp = clients.client("cloudwatch").get_metric_data(**request)
            self.calls += 1
            for result in resp.get("MetricDataResults", []):
                q, window = ids[result["Id"]]
                key = q.key
                status = result.get("StatusCode") or "Complete"
                if status in _FAILED_STATUSES:
                    self.failures[key] = _status_reason(result)
                elif status == "PartialData":
                    partial[key] = _status_reason(result)
                else:
                    partial.pop(key, None)
                series = out[key]
                for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    index = int((ts - window.start).total_seconds()) // window.interval_seconds
                    if 0 <= index < len(series) and value is not None and math.isfinite(value):
                        series[index] = float(value)
            token = resp.get("NextToken")
            if not token:
                break
            request["NextToken"] = token
        for key, reason in partial.items():  # still partial with no page left
            self.failures.setdefault(key, reason)

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
        requests = [canary_request(d, specs, now, interval_seconds) for d, specs in items]
        values = self.read_windows(requests)
        return {
            d.deployment_id: canary_window(d, specs, values, now, interval_seconds, self.failures) for d, specs in items
        }


def canary_request(
    deployment: Deployment, specs: Sequence[MetricSpec], now: datetime, interval_seconds: int = 60
) -> WindowRequest:
    """The read of a canary's window: both versions, from its start to the last complete period."""
    return WindowRequest(
        canary_queries(deployment.deployment_id, deployment, specs),
        floor_time(deployment.started_at, interval_seconds),
        floor_time(now, interval_seconds),
        interval_seconds,
    )


def canary_window(
    deployment: Deployment,
    specs: Sequence[MetricSpec],
    values: dict[tuple[str, str, str], list[float | None]],
    now: datetime,
    interval_seconds: int = 60,
    failures: dict[tuple[str, str, str], str] | None = None,
) -> CanaryWindow:
    """The CanaryWindow of a deployment from the values of its :func:`canary_request` (``failures``:
    the reader's failed queries, whose periods without value are gaps, not zeros)."""
    failed = failures or {}
    end = floor_time(now, interval_seconds)
    since_shift = None
    if deployment.weight_changed_at is not None:
        since_shift = max(
            0,
            int((end - floor_time(deployment.weight_changed_at, interval_seconds)).total_seconds()) // interval_seconds,
        )

    def metric_window(spec: MetricSpec) -> MetricWindow:
        b_key, c_key = (deployment.deployment_id, spec.id, "baseline"), (deployment.deployment_id, spec.id, "canary")
        baseline, canary = values[b_key], values[c_key]
        return MetricWindow(
            spec=spec,
            baseline=_filled(baseline, spec, b_key in failed),
            canary=_filled(canary, spec, c_key in failed),
            gaps=_gaps(b_key, failed, baseline) + _gaps(c_key, failed, canary),
        )

    return CanaryWindow(
        interval_seconds=interval_seconds,
        canary_weight=deployment.canary_weight,
        periods_since_shift=since_shift,
        metrics=[metric_window(spec) for spec in specs],
    )


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
