"""Benchmark: the minute loop at scale (``deployguard bench scale [--json]``).

For N active CodeDeploy-driven canaries aged A minutes (each with A minutes of assessment
history already in the table, as the real loop leaves it) plus N/2 promoted deployments in
post-deployment monitoring (promoted at times spread over the last 24 hours), the real
AssessorFunction runs its minute tick on the embedded AWS through the Lambda Invoke API, and
the shards it hands out are delivered to the real AssessorShardFunction through its SQS event
source. After one warm-up tick (the previous look, as the loop leaves the records), over a few
consecutive simulated minutes it counts, with a botocore ``before-call``
handler on every client, the AWS calls the guard makes by operation (the emulator's own
Lambda ``Invoke`` and the SQS poller's ``ReceiveMessage``/``DeleteMessageBatch`` are not the
guard's), the KB of DynamoDB read responses, GetMetricData calls against ceil(queries/500),
and the client CPU of the cycle (thread CPU time less the time spent inside AWS calls, which
here is moto's work). A fresh interpreter per handler measures its cold import against
``import boto3`` alone (CPU time, median of five). The monthly cost estimate is computed from
the measured run at 1,000 deployments and the assumptions printed with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from deployguard import clock
from deployguard.analysis.settings import default_metrics
from deployguard.aws import clients
from deployguard.aws.cloudwatch import version_dimensions
from deployguard.models import (
    Assessment,
    AssessmentCursor,
    Decision,
    Deployment,
    DeploymentStatus,
    HealthStatus,
    LambdaTarget,
    Phase,
    Verdict,
)
from deployguard.storage import keys
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = 20  # distinct guarded functions the deployments belong to (metrics are per function and version)
CYCLES = 2
NOT_THE_GUARDS = {("lambda", "Invoke"), ("sqs", "ReceiveMessage"), ("sqs", "DeleteMessageBatch")}
DYNAMODB_READS = {"Query", "GetItem", "BatchGetItem", "Scan", "TransactGetItems"}
LAMBDA_CONTROL_PLANE = "lambda"

# prices (us-east-1, on demand) and how a deployment is watched: the estimate's assumptions
ASSUMPTIONS: dict[str, Any] = {
    "getmetricdata_usd_per_1000_metrics": 0.01,
    "dynamodb_usd_per_million_read_units": 0.125,
    "dynamodb_usd_per_million_write_units": 0.625,
    "dynamodb_read_unit_kb": 4,
    "dynamodb_write_unit_kb": 1,
    "lambda_usd_per_gb_second": 0.0000166667,
    "lambda_usd_per_million_requests": 0.20,
    "sqs_usd_per_million_requests": 0.40,
    "function_memory_gb": 0.5,
    "canary_minutes_per_deployment": 10,
    "monitoring_assessments_per_deployment": 200,
    "deployments_per_service_per_day": 10,
    "days_per_month": 30,
    "ticks_per_month": 43200,
    "measured_at_deployments": 1000,
    "note": "canary assessments every minute for the canary's minutes, each reading both versions' metrics "
    "(metrics_per_canary_look, measured); post-deployment monitoring on its schedule (60 looks in the first hour, "
    "72 in the next 6 hours, 68 until 24 hours) per deployment, each an assessment written; its metrics read at "
    "the alias (alias_metrics_per_service_look, measured), once per service in a minute any of its deployments "
    "is due (services = deployments a day / deployments_per_service_per_day, deployments evenly spread over the "
    "day: service_looks_per_day); DynamoDB KB read and written, and client CPU per assessment measured by this "
    "bench (per deployment per cycle at age 120); one minute tick a minute (lock, one LOOP Query, alert tick) "
    "on top; CloudWatch Logs, X-Ray and SNS deliveries left out",
}


@dataclass
class CallCounter:
    """Counts the AWS calls of this thread by (service, operation), the KB of DynamoDB read
    responses, and the thread CPU time spent inside calls."""

    thread: int = field(default_factory=threading.get_ident)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    dynamodb_read_bytes: int = 0
    write_bytes: int = 0
    in_calls_cpu: float = 0.0
    _started: dict[int, float] = field(default_factory=dict)
    queries_requested: int = 0
    version_queries: int = 0  # queries of one version (canary reads; monitoring of per-version metrics)
    alias_queries: int = 0  # alias-level queries (post-promotion monitoring, shared per service and alias)
    alias_sets: int = 0  # distinct aliases read at the alias level, summed over calls

    def before_call(self, model: Any, params: Any = None, **_: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        self.calls[(model.service_model.service_name, model.name)] += 1
        self._started[id(params)] = time.thread_time()

    def before_parameter_build(self, model: Any, params: Any = None, **_: Any) -> None:
        """The call's own parameters (before-call sees them serialised)."""
        if threading.get_ident() != self.thread:
            return
        key = (model.service_model.service_name, model.name)
        if key == ("cloudwatch", "GetMetricData"):
            queries = params.get("MetricDataQueries", [])
            self.queries_requested += len(queries)
            aliases = set()
            for query in queries:
                dims = {d["Name"]: d["Value"] for d in query["MetricStat"]["Metric"]["Dimensions"]}
                if "ExecutedVersion" in dims:
                    self.version_queries += 1
                else:
                    self.alias_queries += 1
                    aliases.add(dims.get("Resource"))
            self.alias_sets += len(aliases)
        if key == ("dynamodb", "TransactWriteItems"):
            self.write_bytes += len(json.dumps(params.get("TransactItems", []), default=str))

    def after_call(self, model: Any, params: Any = None, http_response: Any = None, **_: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        started = self._started.pop(id(params), None)
        if started is not None:
            self.in_calls_cpu += time.thread_time() - started
        if model.service_model.service_name == "dynamodb" and model.name in DYNAMODB_READS and http_response:
            self.dynamodb_read_bytes += len(http_response.content or b"")

    def guard_calls(self) -> Counter[tuple[str, str]]:
        return Counter({k: v for k, v in self.calls.items() if k not in NOT_THE_GUARDS})


@contextmanager
def counting() -> Iterator[CallCounter]:
    """Register the counter on the default boto3 session (every client created after inherits it)."""
    counter = CallCounter()
    clients.reset()
    boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    events = session.events
    events.register("before-call.*.*", counter.before_call, unique_id="bench-scale-before")
    events.register("after-call.*.*", counter.after_call, unique_id="bench-scale-after")
    events.register("before-parameter-build.*.*", counter.before_parameter_build, unique_id="bench-scale-params")
    try:
        yield counter
    finally:
        events.unregister("before-call.*.*", unique_id="bench-scale-before")
        events.unregister("after-call.*.*", unique_id="bench-scale-after")
        events.unregister("before-parameter-build.*.*", unique_id="bench-scale-params")
        clients.reset()


def _target(n: int, functions: int = FUNCTIONS) -> LambdaTarget:
    return LambdaTarget(function_name=f"svc-{n % functions:02d}", alias="live", stable_version="1", new_version="2")


def _write_metrics(start: datetime, end: datetime, seed: int, functions: int) -> None:
    """Every function's five Lambda metrics, both versions (and the alias, as Lambda publishes them):
    a datapoint a minute from ``start`` to ``end`` (a datapoint every 5 minutes before the last 3 hours)."""
    rng = random.Random(seed)
    pending: list[dict[str, Any]] = []
    specs = default_metrics()
    at = start
    while at < end:
        step = 60 if end - at <= timedelta(hours=3) else 300
        for n in range(functions):
            target = _target(n, functions)
            for version, requests in (("1", 1000.0), ("2", 100.0)):
                values = {"invocations": requests, "errors": requests * 0.01 * (0.8 + 0.4 * rng.random()),
                          "throttles": 0.0, "duration_p50": 80 * (0.95 + 0.1 * rng.random()),
                          "duration_p99": 300 * (0.95 + 0.1 * rng.random())}  # fmt: skip
                for spec in specs:
                    dims = version_dimensions(spec, target, version)
                    for each in (dims, {k: v for k, v in dims.items() if k != "ExecutedVersion"}):
                        pending.append({"MetricName": spec.name, "Timestamp": at + timedelta(seconds=30),
                                        "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(each.items())],
                                        "Unit": spec.unit, "Value": float(values[spec.id])})  # fmt: skip
        at += timedelta(seconds=step)
    cloudwatch = clients.client("cloudwatch")
    for offset in range(0, len(pending), 1000):
        cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=pending[offset : offset + 1000])


def seed_loop(deployments: int, age_minutes: int, monitored: int, seed: int = 7) -> None:
    """N active CodeDeploy canaries aged ``age_minutes`` (with their assessment history, weight 10%,
    CodeDeploy's Lambda targets) and ``monitored`` promoted deployments, with their functions' metrics."""
    from deployguard_local.codedeploy import create_lambda_deployment
    from deployguard_local.ecs import TARGETS

    rng = random.Random(seed)
    now = clock.now()
    repository = DeploymentRepository()
    table = repository.table
    started = now - timedelta(minutes=age_minutes)
    functions = max(1, min(FUNCTIONS, max(deployments, monitored)))
    with table.batch_writer() as batch:
        for n in range(deployments):
            target = _target(n, functions)
            codedeploy_id = create_lambda_deployment(target, target.function_name, "live")
            TARGETS.add_lambda_target(codedeploy_id, target.function_name, "live", "1", "2")
            TARGETS.weigh_lambda(codedeploy_id, 10.0)
            last = now - timedelta(minutes=1)
            deployment = Deployment(
                deployment_id=f"bench-{n:05d}", service=target.function_name, environment="production",
                version="2", target=target, status=DeploymentStatus.IN_PROGRESS, phase=Phase.DEPLOYMENT_ACTIVE,
                driver="codedeploy", codedeploy_deployment_id=codedeploy_id, started_at=started,
                canary_weight=0.1, weight_changed_at=started + timedelta(minutes=1),
                weight_checked_at=now - timedelta(seconds=60 * rng.randrange(5) + 30), version_counter=1,
                last_assessment=AssessmentCursor(kind="canary", at=last, decision=Decision.HEALTHY,
                                                 health_status=HealthStatus.HEALTHY,
                                                 next_at=last + timedelta(seconds=55)),
            )  # fmt: skip
            batch.put_item(Item=repository._deployment_item(deployment))
            for minute in range(age_minutes):  # the history the loop left: one assessment a minute
                at = started + timedelta(minutes=minute + 1)
                assessment = Assessment(
                    deployment_id=deployment.deployment_id, at=at, canary_weight=0.1,
                    verdict=Verdict(decision=Decision.HEALTHY, summary="canary no worse than baseline"),
                    health_status=HealthStatus.HEALTHY, health_score=97.0, details={"periods": minute + 1},
                )  # fmt: skip
                batch.put_item(
                    Item=repository._history_item(
                        deployment.deployment_id, keys.ASSESSMENT, at, assessment.assessment_id, assessment
                    )
                )
        for n in range(monitored):
            target = _target(n, functions)
            promoted = now - timedelta(seconds=rng.uniform(0, 23.5 * 3600))
            age = (now - promoted).total_seconds()
            interval = 60 if age < 3600 else 300 if age < 7 * 3600 else 900
            last = now - timedelta(seconds=rng.uniform(0, interval))
            deployment = Deployment(
                deployment_id=f"bench-mon-{n:05d}", service=target.function_name, environment="production",
                version="2", target=target, status=DeploymentStatus.SUCCEEDED, phase=Phase.MONITORING,
                driver="codedeploy", started_at=promoted - timedelta(minutes=10), ended_at=promoted,
                canary_weight=1.0, version_counter=1,
                last_assessment=AssessmentCursor(kind="post_deployment", at=last, decision=Decision.HEALTHY,
                                                 health_status=HealthStatus.HEALTHY,
                                                 next_at=last + timedelta(seconds=interval - 5)),
            )  # fmt: skip
            batch.put_item(Item=repository._deployment_item(deployment))
    history = timedelta(hours=24) if monitored else timedelta(minutes=age_minutes + 1)
    _write_metrics(now - history, now + timedelta(minutes=CYCLES + 2), seed, functions)  # a warm-up tick too


def seed_ended(aws: EmbeddedAws, ended: int, seed: int = 7) -> None:
    """``ended`` rolled-back deployments (of a few real functions whose alias routes to the stable
    version), ended over the last 24 hours, each with the traffic checks the reconciler made so far
    (its schedule) and the next one due: the reconciler's calls are counted with the rest."""
    from deployguard.models import TrafficCheck
    from deployguard.workflows.reconciler import CHECK_SCHEDULE
    from deployguard_local.emulator import sample_handler

    if not ended:
        return
    rng = random.Random(seed)
    now = clock.now()
    repository = DeploymentRepository()
    names = [f"ended-{n:02d}" for n in range(min(5, ended))]
    targets = []
    for name in names:
        versions = aws.deploy_sample_function(name, "live", sample_handler)
        targets.append(LambdaTarget(function_name=name, alias="live", stable_version=versions[0],
                                    new_version=versions[1]))  # fmt: skip
    with repository.table.batch_writer() as batch:
        for n in range(ended):
            ended_at = now - timedelta(seconds=rng.uniform(0, 24 * 3600))
            done = [after for after in CHECK_SCHEDULE if ended_at + after <= now]
            later = [ended_at + after for after in CHECK_SCHEDULE if ended_at + after > now]
            check = TrafficCheck(checks=len(done), next_at=later[0] if later else None,
                                 reconciled_at=None if later else now)  # fmt: skip
            target = targets[n % len(targets)]
            deployment = Deployment(
                deployment_id=f"bench-end-{n:05d}", service=target.function_name, environment="production",
                version=target.new_version, target=target, status=DeploymentStatus.ROLLED_BACK, phase=Phase.FAILED,
                driver="codedeploy", started_at=ended_at - timedelta(minutes=10), ended_at=ended_at,
                decision="rolled_back", traffic_check=check, version_counter=1,
            )  # fmt: skip
            batch.put_item(Item=repository._deployment_item(deployment))


def _tick(aws: EmbeddedAws) -> None:
    assert aws.clock is not None
    aws.clock.advance(60)
    payload, errored = aws.invoke("AssessorFunction", _schedule_event(clock.now()))
    if errored:
        raise RuntimeError(f"AssessorFunction failed: {payload}")
    if payload["shards"]:
        aws.deliver_queue("AssessorShardFunction")


def _schedule_event(at: datetime) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "schedule.json").read_text(encoding="utf-8"))
    event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def measure(deployments: int, age_minutes: int, monitored: int, seed: int = 7, ended: int = 0) -> dict[str, Any]:
    """One configuration: CYCLES consecutive minute ticks (and their shards), per deployment per cycle."""
    with EmbeddedAws(start=datetime(2026, 11, 2, 12, 0, 30, tzinfo=UTC)) as aws:
        assert aws.clock is not None
        seed_loop(deployments, age_minutes, monitored, seed)
        seed_ended(aws, ended, seed)
        assessed = 0
        canary_looks = 0
        cpu = 0.0
        deferred = 0
        cycle_queries: list[int] = []
        _tick(aws)  # a warm-up tick, not counted: what the previous look leaves on the records (the judge's state)
        with counting() as counter:
            for _ in range(CYCLES):
                aws.clock.advance(60)
                queries_before = counter.queries_requested
                started_cpu = counter.in_calls_cpu
                cpu_before = time.thread_time()
                payload, errored = aws.invoke("AssessorFunction", _schedule_event(clock.now()))
                if errored:
                    raise RuntimeError(f"AssessorFunction failed: {payload}")
                assessed += len(payload["assessed"]) + len(payload["monitored"])
                canary_looks += len(payload["assessed"])
                deferred += len(payload["deferred"])
                if payload["shards"]:
                    for shard_payload, shard_errored in aws.deliver_queue("AssessorShardFunction"):
                        if shard_errored:
                            raise RuntimeError(f"AssessorShardFunction failed: {shard_payload}")
                        assessed += len(shard_payload["assessed"]) + len(shard_payload["monitored"])
                        canary_looks += len(shard_payload["assessed"])
                        deferred += len(shard_payload["deferred"])
                cpu += (time.thread_time() - cpu_before) - (counter.in_calls_cpu - started_cpu)
                cycle_queries.append(counter.queries_requested - queries_before)
        calls = counter.guard_calls()
        per = max(1, assessed)
        gmd = calls[("cloudwatch", "GetMetricData")]
        return {
            "deployments": deployments,
            "age_minutes": age_minutes,
            "monitored": monitored,
            "cycles": CYCLES,
            "assessments": assessed,
            "deferred": deferred,
            "calls_per_deployment": round(sum(calls.values()) / per, 3),
            "calls_by_operation": {f"{s}.{o}": round(v / per, 4) for (s, o), v in sorted(calls.items())},
            "dynamodb_kb_per_deployment": round(counter.dynamodb_read_bytes / 1024 / per, 3),
            "dynamodb_kb_written_per_deployment": round(counter.write_bytes / 1024 / per, 3),
            "getmetricdata_calls": gmd,
            "getmetricdata_limit": sum(math.ceil(q / 500) for q in cycle_queries),
            "metrics_per_deployment": round(counter.queries_requested / per, 2),
            "metrics_per_canary_look": round(counter.version_queries / max(1, canary_looks), 2),
            "alias_metrics_per_service_look": round(counter.alias_queries / max(1, counter.alias_sets), 2),
            "ended": ended,
            "lambda_control_plane_calls": sum(v for (s, _), v in calls.items() if s == LAMBDA_CONTROL_PLANE),
            "cpu_ms_per_deployment": round(cpu * 1000 / per, 3),
        }


def cold_imports(repeats: int = 5) -> dict[str, Any]:
    """CPU time of each handler's import in a fresh interpreter, against ``import boto3`` alone."""

    def cpu_of(code: str, path: str = "") -> float:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "layers" / "deployguard"), path) if p))
        samples = []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-c", f"import time; s = time.process_time(); {code}; print(time.process_time() - s)"],
                capture_output=True, text=True, env=env, check=True,
            )  # fmt: skip
            samples.append(float(out.stdout.strip().splitlines()[-1]))
        return statistics.median(samples)

    boto3_ms = cpu_of("import boto3") * 1000
    handlers = {}
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        ms = cpu_of("import app", str(app.parent)) * 1000
        handlers[app.parent.name] = {"ms": round(ms, 1), "ratio": round(ms / boto3_ms, 2)}
    return {"boto3_ms": round(boto3_ms, 1), "handlers": handlers}


def service_looks_per_day(deployments_per_day: float) -> int:
    """Minutes of a day in which one service's alias is read for post-promotion monitoring: any of its
    deployments (promoted evenly over the day, each watched 24 hours on the schedule) is due."""
    from deployguard.analysis.schedule import post_deployment_interval

    k = max(1, round(deployments_per_day))
    promoted = [j * 1440 / k - day * 1440 for j in range(k) for day in (0, 1)]
    looks = 0
    for minute in range(1440):
        for at in promoted:
            age = minute - at
            interval = post_deployment_interval(age * 60) if age >= 0 else None
            if interval is not None and int(age) % (interval // 60) == 0:
                looks += 1
                break
    return looks


def monthly_cost(run: dict[str, Any], deployments_per_day: int) -> dict[str, float]:
    """The estimate of ASSUMPTIONS from one measured run (age 120, per deployment per cycle), by service."""
    a = ASSUMPTIONS
    month = deployments_per_day * a["days_per_month"]
    canary_looks = month * a["canary_minutes_per_deployment"]
    looks = month * (a["canary_minutes_per_deployment"] + a["monitoring_assessments_per_deployment"])
    services = max(1, math.ceil(deployments_per_day / a["deployments_per_service_per_day"]))
    per_service = deployments_per_day / services
    alias_looks = services * service_looks_per_day(per_service) * a["days_per_month"]
    metrics = canary_looks * run["metrics_per_canary_look"] + alias_looks * run["alias_metrics_per_service_look"]
    getmetricdata = metrics * a["getmetricdata_usd_per_1000_metrics"] / 1000
    reads = looks * run["dynamodb_kb_per_deployment"] / a["dynamodb_read_unit_kb"]
    # TransactWriteItems: two write units per KB of each item (assessment and record)
    writes = looks * 2 * math.ceil(run["dynamodb_kb_written_per_deployment"] / a["dynamodb_write_unit_kb"])
    dynamodb = reads * a["dynamodb_usd_per_million_read_units"] + writes * a["dynamodb_usd_per_million_write_units"]
    cpu_seconds = looks * run["cpu_ms_per_deployment"] / 1000 + a["ticks_per_month"] * 0.2
    lambda_usd = cpu_seconds * a["function_memory_gb"] * a["lambda_usd_per_gb_second"]
    lambda_usd += a["ticks_per_month"] * 2 * a["lambda_usd_per_million_requests"] / 1e6
    sqs = a["ticks_per_month"] * 3 * a["sqs_usd_per_million_requests"] / 1e6
    parts = {"getmetricdata": getmetricdata, "dynamodb": dynamodb / 1e6, "lambda": lambda_usd, "sqs": sqs}
    return {"total": round(sum(parts.values()), 2), **{k: round(v, 2) for k, v in parts.items()}}


def _measure(configuration: tuple[int, int, int, int, int]) -> dict[str, Any]:
    return measure(*configuration)


def run(sizes: list[int], monitored_share: float = 0.5, jobs: int = 1) -> dict[str, Any]:
    configurations = [(n, age, int(n * monitored_share), 7, max(1, n // 10)) for n in sizes for age in (5, 120)]
    if jobs > 1:  # each configuration in its own process (its own embedded AWS)
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            runs = list(pool.map(_measure, configurations))
    else:
        runs = [_measure(c) for c in configurations]
    basis = next((r for r in runs if r["deployments"] == ASSUMPTIONS["measured_at_deployments"]
                  and r["age_minutes"] == 120), runs[-1])  # fmt: skip
    costs = {str(d): monthly_cost(basis, d) for d in (10, 100, 1000, 10000)}
    return {
        "runs": runs,
        "monthly_cost_usd": {str(d): costs[str(d)]["total"] for d in (10, 100, 1000, 10000)},
        "monthly_cost_breakdown_usd": costs,
        "assumptions": {**ASSUMPTIONS, "measured_run": {"deployments": basis["deployments"], "age_minutes": 120}},
        "cold_import": cold_imports(),
    }


def report(result: dict[str, Any]) -> str:
    lines = ["Minute loop at scale (embedded AWS, real AssessorFunction and AssessorShardFunction, per deployment "
             f"per cycle, {CYCLES} cycles)",
             f"  {'N':>6} {'age':>4} {'mon':>5} {'ended':>5} {'calls':>6} {'DDB KB':>7} {'GMD':>4} {'ceil':>4} "
             f"{'lambda':>6} {'CPU ms':>7}  by operation"]  # fmt: skip
    for r in result["runs"]:
        ops = ", ".join(f"{k}={v}" for k, v in r["calls_by_operation"].items())
        lines.append(f"  {r['deployments']:>6} {r['age_minutes']:>4} {r['monitored']:>5} {r['ended']:>5}"
                     f" {r['calls_per_deployment']:>6}"
                     f" {r['dynamodb_kb_per_deployment']:>7} {r['getmetricdata_calls']:>4} "
                     f"{r['getmetricdata_limit']:>4} {r['lambda_control_plane_calls']:>6} "
                     f"{r['cpu_ms_per_deployment']:>7}  {ops}")  # fmt: skip
    for n in sorted({r["deployments"] for r in result["runs"]}):
        pair = {r["age_minutes"]: r for r in result["runs"] if r["deployments"] == n}
        if 5 in pair and 120 in pair:
            kb = pair[120]["dynamodb_kb_per_deployment"] / max(1e-9, pair[5]["dynamodb_kb_per_deployment"])
            cpu = pair[120]["cpu_ms_per_deployment"] / max(1e-9, pair[5]["cpu_ms_per_deployment"])
            lines.append(f"  N={n}: age 120 / age 5: DynamoDB KB {kb:.2f}x, client CPU {cpu:.2f}x")
    lines.append("  monthly cost estimate (USD): " + ", ".join(
        f"{k}/day ${v}" for k, v in result["monthly_cost_usd"].items()))  # fmt: skip
    lines.append("  by service (USD): " + "; ".join(
        f"{k}/day " + ", ".join(f"{p} {v}" for p, v in parts.items() if p != "total")
        for k, parts in result["monthly_cost_breakdown_usd"].items()))  # fmt: skip
    lines.append("  assumptions: " + json.dumps(result["assumptions"]))
    cold = result["cold_import"]
    lines.append(f"  cold import (CPU, fresh interpreter): import boto3 {cold['boto3_ms']} ms; " + ", ".join(
        f"{k} {v['ms']} ms ({v['ratio']}x)" for k, v in cold["handlers"].items()))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deployguard bench scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--sizes", default="10,100,1000", help="active deployments per run (default 10,100,1000)")
    parser.add_argument("--jobs", type=int, default=1, help="configurations measured in parallel processes")
    args = parser.parse_args(argv)
    result = run([int(s) for s in args.sizes.split(",") if s.strip()], jobs=args.jobs)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def bench_main(argv: list[str]) -> int:
    """``deployguard bench scale ...``."""
    if argv[:1] != ["scale"]:
        print("usage: deployguard bench scale [--json] [--sizes N,...]", file=sys.stderr)
        return 2
    return main(argv[1:])
