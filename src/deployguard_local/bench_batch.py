"""Benchmark: the scheduled assessor reading a batch of active deployments.

200 active CodeDeploy-driven deployments with 8 metrics each (3,200 GetMetricData
queries, baseline and canary) are assessed by the real assessor on the embedded AWS.
The figure of merit is the number of GetMetricData calls against the least possible,
ceil(queries / 500), and the wall time of the read and of the whole assessment run.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from deployguard import clock
from deployguard.analysis.settings import JudgeSettings, default_metrics
from deployguard.aws import clients
from deployguard.aws.cloudwatch import MAX_QUERIES_PER_CALL, MetricsReader, version_dimensions
from deployguard.aws.events import EventPublisher
from deployguard.config import DeployGuardConfig, ServiceConfig
from deployguard.models import (
    Deployment,
    DeploymentStatus,
    Direction,
    LambdaTarget,
    MetricKind,
    MetricSpec,
    MetricType,
)
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.assessor import assess_active_deployments
from deployguard_local.emulator import EmbeddedAws

BENCH_METRICS = [
    *default_metrics(),  # invocations, errors, throttles, duration p50 and p99
    MetricSpec(
        id="concurrent_executions",
        name="ConcurrentExecutions",
        stat="Maximum",
        unit="Count",
        kind=MetricKind.GAUGE,
        metric_type=MetricType.INFRASTRUCTURE,
    ),
    MetricSpec(
        id="conversions",
        namespace="Shop",
        name="CheckoutCompleted",
        stat="Sum",
        unit="Count",
        kind=MetricKind.RATE_COUNT,
        relative_to="invocations",
        direction=Direction.DECREASE_IS_BAD,
        metric_type=MetricType.BUSINESS,
        dimensions={"FunctionName": "{function}", "Version": "{version}"},
    ),
    MetricSpec(
        id="failed_logins",
        namespace="Shop",
        name="FailedLogins",
        stat="Sum",
        unit="Count",
        kind=MetricKind.RATE_COUNT,
        relative_to="invocations",
        metric_type=MetricType.SECURITY,
        dimensions={"FunctionName": "{function}", "Version": "{version}"},
    ),
]


@dataclass
class BatchReadResult:
    deployments: int
    metrics: int
    queries: int
    calls: int
    least_calls: int
    read_seconds: float
    assess_seconds: float
    assessed: int


def _write_traffic(deployments: list[Deployment], minutes: int, seed: int) -> None:
    rng = random.Random(seed)
    cloudwatch = clients.client("cloudwatch")
    start = clock.now()
    pending: dict[str, list[dict[str, Any]]] = {}
    for deployment in deployments:
        target = deployment.target
        assert isinstance(target, LambdaTarget)
        for role, version in (("baseline", target.stable_version), ("canary", target.new_version)):
            for minute in range(minutes):
                at = start + timedelta(minutes=minute, seconds=30)
                requests = rng.randint(900, 1100) if role == "baseline" else rng.randint(90, 110)
                values = {
                    "invocations": requests,
                    "errors": sum(rng.random() < 0.01 for _ in range(requests)),
                    "throttles": 0,
                    "duration_p50": 80 * math.exp(rng.gauss(0, 0.05)),
                    "duration_p99": 300 * math.exp(rng.gauss(0, 0.05)),
                    "concurrent_executions": requests / 60,
                    "conversions": sum(rng.random() < 0.05 for _ in range(requests)),
                    "failed_logins": 0,
                }
                for spec in BENCH_METRICS:
                    pending.setdefault(spec.namespace, []).append(
                        {
                            "MetricName": spec.name,
                            "Dimensions": [
                                {"Name": k, "Value": v}
                                for k, v in sorted(version_dimensions(spec, target, version).items())
                            ],
                            "Timestamp": at,
                            "Unit": spec.unit,
                            "Value": float(values[spec.id]),
                        }
                    )
    for namespace, data in pending.items():
        for offset in range(0, len(data), 1000):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[offset : offset + 1000])


def run_batch_read(deployments: int = 200, minutes: int = 10, seed: int = 5) -> BatchReadResult:
    with EmbeddedAws() as aws:
        assert aws.clock is not None
        repository = DeploymentRepository()
        records = []
        for n in range(deployments):
            function_name = f"svc-{n:03d}"
            target = LambdaTarget(function_name=function_name, alias="live", stable_version="1", new_version="2")
            deployment = Deployment(
                deployment_id=f"bench-{n:03d}",
                service=function_name,
                environment="production",
                version="2",
                target=target,
                status=DeploymentStatus.IN_PROGRESS,
                driver="codedeploy",
                canary_weight=0.1,
            )
            repository.create_deployment(deployment)
            records.append(deployment)
        _write_traffic(records, minutes, seed)
        aws.clock.advance(minutes * 60)
        config = DeployGuardConfig(defaults=ServiceConfig(judge=JudgeSettings(metrics=BENCH_METRICS)))
        queries = deployments * len(BENCH_METRICS) * 2
        reader = MetricsReader()
        started = time.perf_counter()
        reader.canary_windows([(d, BENCH_METRICS) for d in records], clock.now())
        read_seconds = time.perf_counter() - started
        read_calls = reader.calls
        started = time.perf_counter()
        run = assess_active_deployments(config, repository, EventPublisher())
        assess_seconds = time.perf_counter() - started
        assert run.metric_calls == read_calls
        return BatchReadResult(
            deployments=deployments,
            metrics=len(BENCH_METRICS),
            queries=queries,
            calls=read_calls,
            least_calls=math.ceil(queries / MAX_QUERIES_PER_CALL),
            read_seconds=read_seconds,
            assess_seconds=assess_seconds,
            assessed=len(run.assessed),
        )


def report(result: BatchReadResult) -> str:
    return "\n".join(
        [
            "CloudWatch batch read (scheduled assessor, embedded AWS)",
            f"  active deployments        {result.deployments}",
            f"  metrics per deployment    {result.metrics} (x2 versions)",
            f"  GetMetricData queries     {result.queries}",
            f"  GetMetricData calls       {result.calls}   (least possible ceil({result.queries}/500) = "
            f"{result.least_calls}; ratio {result.calls / result.least_calls:.2f})",
            f"  read wall time            {result.read_seconds:.2f} s",
            f"  whole assessment run      {result.assess_seconds:.2f} s for {result.assessed} deployments "
            "(read, judge, store, announce)",
        ]
    )


if __name__ == "__main__":
    print(report(run_batch_read()))
