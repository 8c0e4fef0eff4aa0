"""Synthetic traffic for local canaries: CloudWatch metrics of both versions, minute by minute.

A traffic source listens to the simulated clock. For every minute that passes it
reads how the alias routes traffic (the real GetAlias call), splits the minute's
requests between the versions, draws errors and latencies from each version's
behaviour at that minute, and publishes the Lambda metrics as AWS/Lambda does for an
alias: per version (FunctionName, Resource, ExecutedVersion) and the alias's own
(FunctionName, Resource: every version it served).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from deployguard.aws import clients
from deployguard.aws.cloudwatch import put_metric_values
from deployguard_local.minutes import minutes_between


@dataclass
class VersionBehaviour:
    """How one version behaves; ``regress_at`` (minute since start) switches to the regressed values."""

    error_rate: float = 0.005
    p50_ms: float = 80.0
    p99_ms: float = 350.0
    regress_at: int | None = None
    regressed_error_rate: float = 0.08
    regressed_p99_ms: float = 1400.0

    def at(self, minute: int) -> tuple[float, float, float]:
        if self.regress_at is not None and minute >= self.regress_at:
            return self.regressed_error_rate, self.p50_ms * 1.4, self.regressed_p99_ms
        return self.error_rate, self.p50_ms, self.p99_ms


@dataclass
class LambdaTrafficSource:
    """Requests to an aliased function, split between its versions by the alias's routing."""

    function_name: str
    alias: str
    requests_per_minute: float
    behaviours: dict[str, VersionBehaviour]
    seed: int = 7
    started_at: datetime | None = None
    active: bool = True
    log: Callable[[str], None] | None = None
    minutes_written: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def routing(self) -> dict[str, float]:
        alias = clients.client("lambda").get_alias(FunctionName=self.function_name, Name=self.alias)
        extra = {k: float(v) for k, v in (alias.get("RoutingConfig", {}).get("AdditionalVersionWeights") or {}).items()}
        weights = {alias["FunctionVersion"]: 1.0 - sum(extra.values())}
        weights.update(extra)
        return weights

    def on_clock(self, before: datetime, after: datetime) -> None:
        if not self.active:
            return
        for minute_start in minutes_between(before, after):
            self.write_minute(minute_start)

    def write_minute(self, minute_start: datetime) -> None:
        if self.started_at is None:
            self.started_at = minute_start
        minute = int((minute_start - self.started_at).total_seconds() // 60)
        for version, weight in self.routing().items():
            behaviour = self.behaviours.get(version, VersionBehaviour())
            requests = self._poisson(self.requests_per_minute * weight)
            if requests == 0:
                continue  # CloudWatch has no datapoint for a minute without invocations
            error_rate, p50, p99 = behaviour.at(minute)
            errors = sum(1 for _ in range(requests) if self._rng.random() < error_rate)
            jitter = math.exp(self._rng.gauss(0.0, 0.04))
            self._put(version, minute_start, requests, errors, p50 * jitter, p99 * jitter)
        self.minutes_written += 1

    def _put(self, version: str, at: datetime, requests: int, errors: int, p50: float, p99: float) -> None:
        dims = {
            "FunctionName": self.function_name,
            "Resource": f"{self.function_name}:{self.alias}",
            "ExecutedVersion": version,
        }
        stamp = at + timedelta(seconds=30)
        alias_dims = {k: v for k, v in dims.items() if k != "ExecutedVersion"}  # the alias's series, every version
        for each in (dims, alias_dims):
            put_metric_values("AWS/Lambda", "Invocations", each, stamp, "Count", value=requests)
            put_metric_values("AWS/Lambda", "Errors", each, stamp, "Count", value=errors)
            put_metric_values("AWS/Lambda", "Throttles", each, stamp, "Count", value=0)
            # a distribution whose 50th percentile is p50 and 99th is p99 (CloudWatch Values/Counts)
            put_metric_values("AWS/Lambda", "Duration", each, stamp, "Milliseconds", values=[p50, p99], counts=[98, 2])

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        if mean > 500:
            return max(0, round(self._rng.gauss(mean, math.sqrt(mean))))
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self._rng.random()
            if p <= limit:
                return k
            k += 1


@dataclass
class ScenarioTrafficSource:
    """Replays a deployguard-scenario/1 file: period i's values are published once, in the first minute of
    period i (``interval_seconds`` apart: a 5-minute scenario's periods are 5 minutes of the clock)."""

    scenario: dict[str, Any]
    function_name: str
    alias: str
    baseline_version: str
    canary_version: str
    started_at: datetime | None = None
    active: bool = True

    def on_clock(self, before: datetime, after: datetime) -> None:
        if not self.active:
            return
        for minute_start in minutes_between(before, after):
            self.write_minute(minute_start)

    def write_minute(self, minute_start: datetime) -> None:
        if self.started_at is None:
            self.started_at = minute_start
        interval = int(self.scenario.get("interval_seconds") or 60)
        elapsed = int((minute_start - self.started_at).total_seconds())
        period = elapsed // interval
        if period >= int(self.scenario["intervals"]) or elapsed - period * interval >= 60:
            return  # past the scenario, or not the period's first minute: its values are in CloudWatch once
        stamp = minute_start + timedelta(seconds=30)
        for role, version in (("baseline", self.baseline_version), ("canary", self.canary_version)):
            for metric in self.scenario["metrics"]:
                value = metric[role][period]
                if value is None:
                    continue
                if metric.get("namespace", "AWS/Lambda") == "AWS/Lambda":
                    dims = {
                        "FunctionName": self.function_name,
                        "Resource": f"{self.function_name}:{self.alias}",
                        "ExecutedVersion": version,
                    }
                else:
                    dims = {"FunctionName": self.function_name, "Version": version}
                stat = metric.get("stat", "Sum")
                if stat.startswith("p"):
                    # one value per minute: every percentile of the minute is that value
                    put_metric_values(
                        metric["namespace"],
                        metric["name"],
                        dims,
                        stamp,
                        metric.get("unit") or "None",
                        values=[float(value)],
                        counts=[1],
                    )
                else:
                    put_metric_values(
                        metric["namespace"],
                        metric["name"],
                        dims,
                        stamp,
                        metric.get("unit") or "None",
                        value=float(value),
                    )
