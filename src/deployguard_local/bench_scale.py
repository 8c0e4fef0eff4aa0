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
guard's), the KB of DynamoDB read responses and the read and write units DynamoDB would bill
(item sizes as it counts them), GetMetricData calls against ceil(queries/500) of the canary
reads and of the monitoring reads (never mixed in a call: a call's time range is shared) and the
datapoints of the largest answer (AWS pages past 100,800), the functions' log bytes and EMF
metrics, and the guard's client CPU of the cycle (:class:`CpuSplit`: the exclusive thread CPU time of the
guard's handler invocations, less the time moto's server side takes inside them, which runs
in-process here: every emulated AWS call is answered by moto's ``BotocoreStubber.process_request``,
and a Lambda Invoke's handler runs inside that call). A fresh interpreter per handler measures its cold import
against ``import boto3`` alone (CPU time, the least of five; the layer built by its Makefile, with and without
bytecode). The monthly cost estimate is computed from the measured run at 1,000 deployments and the
assumptions printed with it.

The starting state (records, history, a day of metrics) is written straight into moto's stores
(:class:`DirectSeed`), the same items the boto3 calls would store: that was most of an N=1,000
configuration's time. What is measured goes through boto3 and the real functions.
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import json
import math
import random
import resource
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
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
from deployguard_local import cold_start
from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = 20  # distinct guarded functions the deployments belong to (metrics are per function and version)
MIN_CYCLES = 3  # measured cycles at least (a median of the per-cycle figures: one slow cycle does not move it)
MIN_LOOKS = 600  # measured looks at least: small configurations run more cycles (N=10: 55, N=100: 6)


def cycles_for(deployments: int, monitored: int) -> int:
    """Measured cycles of a configuration: enough for MIN_LOOKS looks, at least MIN_CYCLES."""
    return max(MIN_CYCLES, math.ceil(MIN_LOOKS / max(1, deployments + monitored // 3)))


NOT_THE_GUARDS = {("lambda", "Invoke"), ("sqs", "ReceiveMessage"), ("sqs", "DeleteMessageBatch")}
DYNAMODB_READS = {"Query", "GetItem", "BatchGetItem", "Scan", "TransactGetItems"}
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
LAMBDA_CONTROL_PLANE = "lambda"

# prices (us-east-1, on demand) and how deployments are watched: the estimate's assumptions; what one
# look costs (metrics, DynamoDB units, CPU, AWS calls, log bytes) is measured by this bench
ASSUMPTIONS: dict[str, Any] = {
    "getmetricdata_usd_per_1000_metrics": 0.01,
    "dynamodb_usd_per_million_read_units": 0.125,
    "dynamodb_usd_per_million_write_units": 0.625,
    "lambda_usd_per_gb_second": 0.0000166667,
    "lambda_usd_per_million_requests": 0.20,
    "sqs_usd_per_million_requests": 0.40,
    "sns_usd_per_million_publishes": 0.50,
    "stepfunctions_usd_per_1000_transitions": 0.025,
    "cloudwatch_usd_per_custom_metric_month": 0.30,
    "cloudwatch_logs_usd_per_gb": 0.50,
    "cloudwatch_logs_usd_per_gb_month_stored": 0.03,
    "log_retention_days": 30,  # the template's LogRetentionDays default
    "cloudwatch_usd_per_alarm_metric_month": 0.10,  # standard resolution; an alarm on metric math pays each metric
    "cloudwatch_usd_per_dashboard_month": 3.00,
    "dynamodb_usd_per_gb_month": 0.25,
    "dynamodb_pitr_usd_per_gb_month": 0.20,  # the template enables point-in-time recovery
    "dynamodb_item_overhead_bytes": 100,
    "retention_days": 90,  # the template's RetentionDays default: assessments expire (TTL) after it
    "xray_usd_per_million_traces": 5.00,
    "xray_free_traces_per_month": 100000,
    "other_function_invocations_per_deployment": 9,  # recorder 3 (CodeDeploy state changes), hook 2, router 4
    "other_function_ms": 250,
    "function_memory_mb": 512,
    "lambda_memory_mb_per_vcpu": 1769,
    "aws_call_latency_ms": {"dynamodb": 8, "cloudwatch": 150, "codedeploy": 40, "sqs": 15, "sns": 20, "other": 30},
    "canary_minutes_per_deployment": 10,
    "deployments_per_service_per_day": 10,
    "days_per_month": 30,
    "ticks_per_month": 43200,
    "tick_fixed_ms": 200,
    "sns_publishes_per_deployment": 4,
    "stepfunctions_share_of_deployments": 0.0,
    "stepfunctions_transitions_per_deployment": 40,
    "measured_at_deployments": 1000,
    "note": "canary: an assessment a minute for the canary's minutes, each reading both versions' metrics "
    "(metrics_per_canary_look, measured); post-deployment monitoring on its schedule (monitoring_looks_per_deployment, "
    "from deployguard.analysis.schedule) per deployment, each an assessment written; its metrics read at the alias "
    "(alias_metrics_per_service_look, measured), once per service in a minute any of its deployments is due on the "
    "service's grid (deployguard.workflows.monitoring.look_due; services = deployments a day / "
    "deployments_per_service_per_day, deployments evenly spread over the day: service_looks_per_day); DynamoDB read "
    "and write units (item sizes as DynamoDB counts them, transactions twice, each index write), guard CPU, AWS "
    "calls and log bytes per assessment measured by this bench (per look at age 120); Lambda "
    "billed for the CPU stretched to the memory's vCPU share plus the AWS calls' latency (assumed, per service); "
    "one tick a minute on top, and one run of the traffic check function (its DynamoDB units measured); "
    "verdict metrics (EMF, one set per service, measured names) billed for the hours a "
    "service has a canary; SNS publishes per deployment assumed; the bench's deployments are CodeDeploy-driven "
    "(no Step Functions), a share driven by the canary state machine is an assumption; DynamoDB storage and "
    "point-in-time recovery for the assessments kept retention_days (their bytes a look measured); X-Ray traces "
    "(Tracing: Active; the default sampling rule's 1 a second reservoir takes every invocation here) for the tick, "
    "the shards and the other functions' invocations (assumed per deployment, with their duration); the "
    "template's alarms (each metric they read) and dashboard; log storage for log_retention_days",
}


def attribute_bytes(value: dict[str, Any]) -> int:
    """The size DynamoDB bills for one attribute value (wire format, e.g. ``{"S": "..."}``)."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_bytes(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_bytes(x) for k, x in v.items())
    return sum(attribute_bytes({kind[0]: x}) for x in v)  # SS, NS, BS


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: attribute names and values."""
    return sum(len(name.encode()) + attribute_bytes(value) for name, value in item.items())


def write_kind(operation: str, body: dict[str, Any]) -> str:
    """The look a write is for: an assessment's transaction by the record it writes, else ``other``."""
    if operation == "TransactWriteItems":
        kinds = {look_kind(e["Put"]["Item"]) for e in body["TransactItems"] if "Put" in e} - {"other"}
        return kinds.pop() if len(kinds) == 1 else "other"
    return "other"


def write_units(operation: str, body: dict[str, Any]) -> int:
    """Write units of one DynamoDB write request: 1 KB units per item, twice in a transaction, and one
    more write of the item per index it is projected into (gsi1, gsi2: projection ALL), two for gsi1
    when its key is a due time that moves with each write (a monitored or ended deployment)."""

    def of_item(item: dict[str, Any], transactional: bool) -> int:
        units = math.ceil(item_bytes(item) / 1024)
        moving = not item.get(keys.GSI1_SK, {}).get("S", keys.ALWAYS).startswith(keys.ALWAYS)
        indexes = (keys.GSI2_PK in item) + (keys.GSI1_PK in item) * (2 if moving else 1)
        return units * (2 if transactional else 1) + units * indexes

    if operation == "PutItem":
        return of_item(body["Item"], False)
    if operation == "BatchWriteItem":
        return sum(of_item(r["PutRequest"]["Item"], False) if "PutRequest" in r else 1
                   for requests in body["RequestItems"].values() for r in requests)  # fmt: skip
    if operation == "TransactWriteItems":
        return sum(of_item(e["Put"]["Item"], True) if "Put" in e else 2 for e in body["TransactItems"])
    return 1  # UpdateItem, DeleteItem: small items here (leases, counters)


def put_items(operation: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The items a DynamoDB write request puts."""
    if operation == "PutItem":
        return [body["Item"]]
    if operation == "TransactWriteItems":
        return [e["Put"]["Item"] for e in body["TransactItems"] if "Put" in e]
    if operation == "BatchWriteItem":
        return [r["PutRequest"]["Item"] for requests in body["RequestItems"].values() for r in requests
                if "PutRequest" in r]  # fmt: skip
    return []


def look_kind(item: dict[str, Any]) -> str:
    """Which look an item is read or written for: ``canary`` (an active deployment's record),
    ``monitoring`` (a monitored one's) or ``other`` (leases, events, incidents, ended deployments)."""
    kind = keys.loop_kind(item[keys.GSI1_SK]["S"]) if keys.GSI1_SK in item else None
    return {keys.ACTIVE: "canary", keys.MONITORING: "monitoring"}.get(kind or "", "other")


def read_units(operation: str, parsed: dict[str, Any], consistent: bool) -> dict[str, float]:
    """Read units of one DynamoDB read response by look kind: a Query by the sum of its items' sizes
    (shared by size), the others per item, 4 KB units, half a unit for an eventually consistent read
    (every index Query)."""
    factor = 1.0 if consistent else 0.5
    units: dict[str, float] = defaultdict(float)
    if operation in ("Query", "Scan"):
        sizes = [(look_kind(i), item_bytes(i)) for i in parsed.get("Items", [])]
        total = sum(size for _, size in sizes)
        paid = factor * max(1, math.ceil(total / 4096))
        for kind, size in sizes:
            units[kind] += paid * size / total
        if not sizes:
            units["other"] += paid
    elif operation == "GetItem":
        item = parsed.get("Item") or {}
        units[look_kind(item)] += factor * max(1, math.ceil(item_bytes(item) / 4096))
    elif operation == "BatchGetItem":
        for found in parsed.get("Responses", {}).values():
            for item in found:
                units[look_kind(item)] += factor * max(1, math.ceil(item_bytes(item) / 4096))
    elif operation == "TransactGetItems":
        for response in parsed.get("Responses", []):
            item = response.get("Item") or {}
            units[look_kind(item)] += 2.0 * max(1, math.ceil(item_bytes(item) / 4096))
    return units


@dataclass
class CallCounter:
    """Counts the AWS calls of this thread by (service, operation) and the KB of DynamoDB read
    responses."""

    thread: int = field(default_factory=threading.get_ident)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    dynamodb_read_bytes: int = 0
    dynamodb_read_units: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # by look kind
    dynamodb_write_units: Counter[str] = field(default_factory=Counter)
    dynamodb_written_bytes: int = 0
    dynamodb_stored_bytes: Counter[str] = field(default_factory=Counter)  # new items (not the records) by look kind
    consistent_read: bool = False
    max_points_per_call: int = 0  # datapoints of the largest GetMetricData answer (AWS pages past 100,800)
    queries_requested: int = 0
    queries_by_period: Counter[int] = field(default_factory=Counter)
    version_queries: int = 0  # queries of one version (canary reads; monitoring of per-version metrics)
    alias_queries: int = 0  # alias-level queries (post-promotion monitoring, shared per service and alias)
    alias_sets: int = 0  # distinct aliases read at the alias level, summed over calls

    def before_call(self, model: Any, params: Any = None, **_: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        self.calls[(model.service_model.service_name, model.name)] += 1
        if model.service_model.service_name == "dynamodb" and model.name in DYNAMODB_WRITES:
            body = json.loads(params["body"])
            kind = write_kind(model.name, body)
            self.dynamodb_write_units[kind] += write_units(model.name, body)
            for item in put_items(model.name, body):
                size = item_bytes(item)
                self.dynamodb_written_bytes += size
                if item.get(keys.SK, {}).get("S", "").startswith(keys.ASSESSMENT):
                    self.dynamodb_stored_bytes[kind] += size

    def before_parameter_build(self, model: Any, params: Any = None, **_: Any) -> None:
        """The call's own parameters (before-call sees them serialised)."""
        if threading.get_ident() != self.thread:
            return
        key = (model.service_model.service_name, model.name)
        if key == ("cloudwatch", "GetMetricData"):
            queries = params.get("MetricDataQueries", [])
            self.queries_requested += len(queries)
            for query in queries:  # by the read's period: the canary's minute, monitoring's 5 minutes
                self.queries_by_period[int(query["MetricStat"]["Period"])] += 1
            aliases = set()
            for query in queries:
                dims = {d["Name"]: d["Value"] for d in query["MetricStat"]["Metric"]["Dimensions"]}
                if "ExecutedVersion" in dims:
                    self.version_queries += 1
                else:
                    self.alias_queries += 1
                    aliases.add(dims.get("Resource"))
            self.alias_sets += len(aliases)
        if key[0] == "dynamodb":
            self.consistent_read = bool(params.get("ConsistentRead"))

    def after_call(self, model: Any, http_response: Any = None, parsed: Any = None, **_: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        if (model.service_model.service_name, model.name) == ("cloudwatch", "GetMetricData") and parsed:
            points = sum(len(r.get("Values", [])) for r in parsed.get("MetricDataResults", []))
            self.max_points_per_call = max(self.max_points_per_call, points)
        if model.service_model.service_name == "dynamodb" and model.name in DYNAMODB_READS and http_response:
            self.dynamodb_read_bytes += len(http_response.content or b"")
            for kind, units in read_units(model.name, parsed or {}, self.consistent_read).items():
                self.dynamodb_read_units[kind] += units

    def guard_calls(self) -> Counter[tuple[str, str]]:
        return Counter({k: v for k, v in self.calls.items() if k not in NOT_THE_GUARDS})


class CpuSplit:
    """Thread CPU time split between the guard's handlers and moto's server side, exclusive of what
    runs nested inside: moto answers every AWS call in-process (``BotocoreStubber.process_request``)
    and a Lambda Invoke runs the handler inside moto's answer, whose own calls go to moto again. The
    guard's figure is the CPU of its handler invocations (its code, botocore's serialising, signing
    and parsing) less moto's work for the calls they make."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.totals: Counter[str] = Counter()
        self._stack: list[list[Any]] = []  # [kind, CPU of the frames nested in it]

    @contextmanager
    def frame(self, kind: str) -> Iterator[None]:
        if threading.get_ident() != self.thread:
            yield
            return
        started = time.thread_time()
        self._stack.append([kind, 0.0])
        try:
            yield
        finally:
            _, nested = self._stack.pop()
            elapsed = time.thread_time() - started
            self.totals[kind] += elapsed - nested
            if self._stack:
                self._stack[-1][1] += elapsed

    @contextmanager
    def installed(self) -> Iterator[CpuSplit]:
        """Time moto's request processing (``moto``) and the handler invocations (``guard``)."""
        from unittest import mock

        from moto.core.botocore_stubber import BotocoreStubber

        from deployguard_local.emulator.lambda_runtime import FunctionRegistry

        serve, invoke = BotocoreStubber.process_request, FunctionRegistry.invoke
        split = self

        def timed_serve(stubber: Any, request: Any) -> Any:
            with split.frame("moto"):
                return serve(stubber, request)

        def timed_invoke(registry: Any, name: str, arn: str, event: Any) -> Any:
            with split.frame("guard"):
                return invoke(registry, name, arn, event)

        with mock.patch.object(BotocoreStubber, "process_request", timed_serve), \
                mock.patch.object(FunctionRegistry, "invoke", timed_invoke):  # fmt: skip
            yield self


@contextmanager
def counting(split: CpuSplit | None = None) -> Iterator[CallCounter]:
    """Register the counter on the default boto3 session (every client created after inherits it); with
    ``split``, its handlers' CPU is the bench's (``bench``), not the guard's."""
    counter = CallCounter()
    clients.reset()
    boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    events = session.events

    def timed(handler: Any) -> Any:
        if split is None:
            return handler

        def run(*args: Any, **kwargs: Any) -> Any:
            with split.frame("bench"):
                return handler(*args, **kwargs)

        return run

    events.register("before-call.*.*", timed(counter.before_call), unique_id="bench-scale-before")
    events.register("after-call.*.*", timed(counter.after_call), unique_id="bench-scale-after")
    events.register("before-parameter-build.*.*", timed(counter.before_parameter_build),
                    unique_id="bench-scale-params")  # fmt: skip
    try:
        yield counter
    finally:
        events.unregister("before-call.*.*", unique_id="bench-scale-before")
        events.unregister("after-call.*.*", unique_id="bench-scale-after")
        events.unregister("before-parameter-build.*.*", unique_id="bench-scale-params")
        clients.reset()


class LogSink:
    """What the functions log (stderr here, CloudWatch Logs on AWS): bytes counted while ``counting``,
    and the metrics their EMF lines define (namespace, name, dimension values); nothing printed."""

    def __init__(self) -> None:
        self.counting = False
        self.split: CpuSplit | None = None  # the parsing below is the bench's CPU, not the guard's
        self.bytes = 0
        self.metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
        self._line = ""

    def write(self, text: str) -> int:
        if self.counting and self.split is not None:
            with self.split.frame("bench"):
                self._count(text)
        elif self.counting:
            self._count(text)
        return len(text)

    def _count(self, text: str) -> None:
        self.bytes += len(text.encode())
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            if '"_aws"' in line:
                self._emf(json.loads(line))

    def flush(self) -> None:
        return None

    def _emf(self, record: dict[str, Any]) -> None:
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for dimensions in directive["Dimensions"]:
                values = tuple(sorted((d, str(record.get(d))) for d in dimensions))
                for metric in directive["Metrics"]:
                    self.metrics.add((directive["Namespace"], metric["Name"], values))

    def per_service(self) -> tuple[float, int]:
        """Metrics per deployed service (verdict metrics), and metrics of the guard's own (the rest)."""
        services = {dict(dims).get("DeployedService") for _, _, dims in self.metrics} - {None}
        verdict = sum(1 for _, _, dims in self.metrics if dict(dims).get("DeployedService"))
        return verdict / max(1, len(services)), len(self.metrics) - verdict


@contextmanager
def capturing_logs() -> Iterator[LogSink]:
    sink = LogSink()
    stderr = sys.stderr
    sys.stderr = sink
    try:
        yield sink
    finally:
        sys.stderr = stderr


def _target(n: int, functions: int = FUNCTIONS) -> LambdaTarget:
    return LambdaTarget(function_name=f"svc-{n % functions:02d}", alias="live", stable_version="1", new_version="2")


class DirectSeed:
    """Writes the bench's starting state straight into the embedded AWS's stores (moto's backends):
    the same items and datapoints the boto3 calls would store, without serialising, validating and
    parsing each of them (which took most of an N=1,000 configuration's time). Only the setup goes
    this way; everything measured goes through boto3."""

    def __init__(self, table_name: str) -> None:
        from boto3.dynamodb.types import TypeSerializer
        from moto.cloudwatch.models import cloudwatch_backends
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        region = clients.client("dynamodb").meta.region_name
        self.dynamodb = dynamodb_backends[DEFAULT_ACCOUNT_ID][region]
        self.cloudwatch = cloudwatch_backends[DEFAULT_ACCOUNT_ID][region]
        self.table_name = table_name
        self._serialize = TypeSerializer().serialize

    def __enter__(self) -> DirectSeed:  # used as boto3's batch_writer() would be
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def put_item(self, Item: dict[str, Any]) -> None:  # batch_writer's signature
        self.dynamodb.put_item(self.table_name, {k: self._serialize(v) for k, v in Item.items()})

    def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
        naive = [{**d, "Timestamp": d["Timestamp"].astimezone(UTC).replace(tzinfo=None)} for d in MetricData]
        self.cloudwatch.put_metric_data(Namespace, naive)  # UTC without a zone, as moto keeps what it parsed


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
    cloudwatch = DirectSeed(DeploymentRepository().table_name)
    for offset in range(0, len(pending), 1000):
        cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=pending[offset : offset + 1000])


def seed_loop(deployments: int, age_minutes: int, monitored: int, seed: int = 7, cycles: int = MIN_CYCLES) -> None:
    """N active CodeDeploy canaries aged ``age_minutes`` (with their assessment history, weight 10%,
    CodeDeploy's Lambda targets) and ``monitored`` promoted deployments, with their functions' metrics."""
    from deployguard.analysis.schedule import post_deployment_interval
    from deployguard.workflows.monitoring import next_look
    from deployguard_local.codedeploy import create_lambda_deployment
    from deployguard_local.ecs import TARGETS

    rng = random.Random(seed)
    now = clock.now()
    repository = DeploymentRepository()
    started = now - timedelta(minutes=age_minutes)
    functions = max(1, min(FUNCTIONS, max(deployments, monitored)))
    with DirectSeed(repository.table_name) as batch:
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
            interval = post_deployment_interval(age) or 900
            last = next_look(target.function_name, now - timedelta(seconds=interval), interval)  # its grid's
            if last > now:
                last -= timedelta(seconds=interval)
            last = max(last, promoted)
            deployment = Deployment(
                deployment_id=f"bench-mon-{n:05d}", service=target.function_name, environment="production",
                version="2", target=target, status=DeploymentStatus.SUCCEEDED, phase=Phase.MONITORING,
                driver="codedeploy", started_at=promoted - timedelta(minutes=10), ended_at=promoted,
                canary_weight=1.0, version_counter=1,
                last_assessment=AssessmentCursor(kind="post_deployment", at=last, decision=Decision.HEALTHY,
                                                 health_status=HealthStatus.HEALTHY,
                                                 next_at=next_look(target.function_name, last, interval)),
            )  # fmt: skip
            batch.put_item(Item=repository._deployment_item(deployment))
    history = timedelta(hours=24) if monitored else timedelta(minutes=age_minutes + 1)
    _write_metrics(now - history, now + timedelta(minutes=cycles + 2), seed, functions)  # a warm-up tick too


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
    with DirectSeed(repository.table_name) as batch:
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


@dataclass
class TrafficChecks:
    """The traffic check function's runs, one after each cycle as its own schedule fires them: counted
    apart (they are not the minute cycle's: another function, another schedule), then taken out of
    the cycle's counter and CPU."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: float = 0.0
    checked: int = 0

    def run(self, aws: EmbeddedAws, counter: CallCounter, split: CpuSplit) -> None:
        saved, totals = copy.deepcopy(counter.__dict__), Counter(split.totals)
        payload, errored = aws.invoke("TrafficCheckFunction", _schedule_event(clock.now()))
        if errored:
            raise RuntimeError(f"TrafficCheckFunction failed: {payload}")
        self.checked += payload["checked"]
        self.calls += counter.guard_calls() - Counter({k: v for k, v in saved["calls"].items()
                                                       if k not in NOT_THE_GUARDS})  # fmt: skip
        self.read_units += sum(counter.dynamodb_read_units.values()) - sum(saved["dynamodb_read_units"].values())
        self.write_units += sum(counter.dynamodb_write_units.values()) - sum(saved["dynamodb_write_units"].values())
        counter.__dict__.update(saved)
        split.totals = totals

    def report(self, cycles: int) -> dict[str, Any]:
        runs = max(1, cycles)
        return {
            "runs": cycles,
            "checked": self.checked,
            "calls_per_run": round(sum(self.calls.values()) / runs, 3),
            "calls_by_operation": {f"{s}.{o}": round(v / runs, 3) for (s, o), v in sorted(self.calls.items())},
            "lambda_control_plane_calls": sum(v for (s, _), v in self.calls.items() if s == LAMBDA_CONTROL_PLANE),
            "dynamodb_units_per_run": [round(self.read_units / runs, 3), round(self.write_units / runs, 3)],
        }


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
    """One configuration: :func:`cycles_for` consecutive minute ticks (and their shards) after a warm-up
    tick; counts per look over all of them (a look: one deployment assessed in a cycle, each canary every
    cycle, a monitored deployment when due; the ``*_per_deployment`` figures are per look), the guard's CPU
    per look the median of the cycles' (each cycle starts from the same collector state: collected,
    everything older frozen)."""
    cycles = cycles_for(deployments, monitored)
    started = time.monotonic()
    with capturing_logs() as logs, EmbeddedAws(start=datetime(2026, 11, 2, 12, 0, 30, tzinfo=UTC), quiet=False) as aws:
        assert aws.clock is not None
        gc.disable()  # setup only: full passes over a store that grows to N x age items made seeding quadratic
        try:
            seed_loop(deployments, age_minutes, monitored, seed, cycles)
            seed_ended(aws, ended, seed)
        finally:
            gc.enable()
        assessed = 0
        canary_looks = 0
        deferred = 0
        least_calls = 0  # ceil(queries / 500) for the canary reads and for the monitoring reads of each cycle
        gc.collect()
        gc.freeze()
        _tick(aws)  # a warm-up tick, not counted: what the previous look leaves on the records (the judge's state)
        shards = 0
        traffic = TrafficChecks()
        references: list[float] = []  # the reference workload's CPU ms after each cycle (reference_cpu_ms)
        per_cycle: list[dict[str, float]] = []  # the guard's and moto's CPU ms per look, each cycle
        split = CpuSplit()
        with counting(split) as counter, split.installed():
            logs.split = split
            for _ in range(cycles):
                # the embedded AWS's stores (N x age history items, a day of datapoints) live in this process:
                # frozen before every cycle, the collector's passes in the guard's time see only what the cycle
                # makes, at every age alike (on AWS the stores are not in the function's heap at all)
                gc.collect()
                gc.freeze()
                logs.counting = True
                aws.clock.advance(60)
                queries_before = Counter(counter.queries_by_period)
                cpu_before, looks_before = Counter(split.totals), assessed
                payload, errored = aws.invoke("AssessorFunction", _schedule_event(clock.now()))
                if errored:
                    raise RuntimeError(f"AssessorFunction failed: {payload}")
                assessed += len(payload["assessed"]) + len(payload["monitored"])
                canary_looks += len(payload["assessed"])
                deferred += len(payload["deferred"])
                shards += payload["shards"]
                if payload["shards"]:
                    for shard_payload, shard_errored in aws.deliver_queue("AssessorShardFunction"):
                        if shard_errored:
                            raise RuntimeError(f"AssessorShardFunction failed: {shard_payload}")
                        assessed += len(shard_payload["assessed"]) + len(shard_payload["monitored"])
                        canary_looks += len(shard_payload["assessed"])
                        deferred += len(shard_payload["deferred"])
                logs.counting = False
                least_calls += sum(math.ceil(q / 500) for q in (counter.queries_by_period - queries_before).values())
                cycle_looks = max(1, assessed - looks_before)
                per_cycle.append({kind: (split.totals[kind] - cpu_before[kind]) * 1000 / cycle_looks
                                  for kind in ("guard", "moto", "bench")})  # fmt: skip
                traffic.run(aws, counter, split)
                references.append(reference_cpu_ms())
        verdict_metrics, own_metrics = logs.per_service()
        gc.unfreeze()
        calls = counter.guard_calls()
        per = max(1, assessed)  # the *_per_deployment figures are per look: one deployment assessed in a cycle
        looks = {"canary": canary_looks, "monitoring": assessed - canary_looks}
        units_per_look = {
            kind: [round(counter.dynamodb_read_units[source] / max(1, times), 3),
                   round(counter.dynamodb_write_units[source] / max(1, times), 3)]
            for kind, source, times in (("canary", "canary", looks["canary"]),
                                        ("monitoring", "monitoring", looks["monitoring"]), ("tick", "other", cycles))
        }  # fmt: skip
        gmd = calls[("cloudwatch", "GetMetricData")]
        return {
            "deployments": deployments,
            "age_minutes": age_minutes,
            "monitored": monitored,
            "cycles": cycles,
            "assessments": assessed,
            "deferred": deferred,
            "calls_per_deployment": round(sum(calls.values()) / per, 3),
            "calls_by_operation": {f"{s}.{o}": round(v / per, 4) for (s, o), v in sorted(calls.items())},
            "dynamodb_kb_per_deployment": round(counter.dynamodb_read_bytes / 1024 / per, 3),
            "dynamodb_kb_written_per_deployment": round(counter.dynamodb_written_bytes / 1024 / per, 3),
            "dynamodb_read_units_per_deployment": round(sum(counter.dynamodb_read_units.values()) / per, 3),
            "dynamodb_write_units_per_deployment": round(sum(counter.dynamodb_write_units.values()) / per, 3),
            "dynamodb_units_per_look": units_per_look,  # read, write: a canary look, a monitoring look, a tick's own
            "getmetricdata_calls": gmd,
            "getmetricdata_limit": least_calls,
            "getmetricdata_max_points_per_call": counter.max_points_per_call,
            "metrics_per_deployment": round(counter.queries_requested / per, 2),
            "metrics_per_canary_look": round(counter.version_queries / max(1, canary_looks), 2),
            "alias_metrics_per_service_look": round(counter.alias_queries / max(1, counter.alias_sets), 2),
            "ended": ended,
            "lambda_control_plane_calls": sum(v for (s, _), v in calls.items() if s == LAMBDA_CONTROL_PLANE),
            "traffic_checks": traffic.report(cycles),
            "cpu_ms_per_deployment": round(statistics.median(c["guard"] for c in per_cycle), 3),  # median of cycles
            "cpu_ms_per_deployment_by_cycle": [round(c["guard"], 2) for c in per_cycle],
            "moto_cpu_ms_per_deployment": round(statistics.median(c["moto"] for c in per_cycle), 3),
            "bench_cpu_ms_per_deployment": round(statistics.median(c["bench"] for c in per_cycle), 3),
            "bench_cpu_ms_per_deployment_by_cycle": [round(c["bench"], 3) for c in per_cycle],
            "reference_cpu_ms_by_cycle": [round(r, 3) for r in references],
            "dynamodb_stored_bytes_per_look": {
                kind: round(counter.dynamodb_stored_bytes[kind] / max(1, times))
                for kind, times in (("canary", looks["canary"]), ("monitoring", looks["monitoring"]))
            },
            "log_bytes_per_deployment": round(logs.bytes / per),
            "verdict_metrics_per_service": round(verdict_metrics, 2),
            "guard_metrics": own_metrics,
            "shards_per_cycle": shards / cycles,
            "wall_seconds": round(time.monotonic() - started),  # seeding included
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # this process's so far
        }


@functools.cache
def service_looks_per_day(deployments_per_day: float) -> int:
    """Minutes of a day in which one service's alias is read for post-promotion monitoring: any of its
    deployments (promoted evenly over the day, each watched 24 hours on the schedule, its looks on
    the service's grid as :func:`deployguard.workflows.monitoring.look_due` decides) is due."""
    from deployguard.analysis.schedule import post_deployment_interval
    from deployguard.workflows.monitoring import look_due

    k = max(1, round(deployments_per_day))
    day = datetime(2026, 11, 2, tzinfo=UTC)
    promoted = [day + timedelta(minutes=j * 1440 / k - back * 1440) for j in range(k) for back in (1, 0)]
    last: list[datetime | None] = [None] * len(promoted)
    looks = 0
    for minute in range(-1440, 1440):  # a day of warm-up: the deployments promoted the day before
        now = day + timedelta(minutes=minute)
        due = False
        for n, at in enumerate(promoted):
            interval = post_deployment_interval((now - at).total_seconds()) if now >= at else None
            if interval is not None and look_due("service", last[n], interval, now):
                last[n] = now
                due = True
        looks += due and minute >= 0
    return looks


def monitoring_looks_per_deployment() -> int:
    """Post-promotion assessments of one deployment over its 24 hours (the schedule, healthy)."""
    from deployguard.analysis.schedule import POST_DEPLOYMENT_SCHEDULE

    looks, since = 0, 0
    for until, interval in POST_DEPLOYMENT_SCHEDULE:
        looks += (until - since) // interval
        since = until
    return looks


def monthly_cost(run: dict[str, Any], deployments_per_day: int) -> dict[str, float]:
    """The estimate of ASSUMPTIONS from one measured run (age 120, per look), by service."""
    a = ASSUMPTIONS
    month = deployments_per_day * a["days_per_month"]
    canary_looks = month * a["canary_minutes_per_deployment"]
    looks = canary_looks + month * monitoring_looks_per_deployment()
    services = max(1, math.ceil(deployments_per_day / a["deployments_per_service_per_day"]))
    alias_looks = services * service_looks_per_day(deployments_per_day / services) * a["days_per_month"]
    metrics = canary_looks * run["metrics_per_canary_look"] + alias_looks * run["alias_metrics_per_service_look"]
    getmetricdata = metrics * a["getmetricdata_usd_per_1000_metrics"] / 1000
    read_usd, write_usd = a["dynamodb_usd_per_million_read_units"], a["dynamodb_usd_per_million_write_units"]
    units = run["dynamodb_units_per_look"]
    dynamodb = 0.0
    for kind, times in (("canary", canary_looks), ("monitoring", looks - canary_looks),
                        ("tick", a["ticks_per_month"])):  # fmt: skip
        read, write = units[kind]
        dynamodb += times * (read * read_usd + write * write_usd) / 1e6
    latency = a["aws_call_latency_ms"]
    calls = run["calls_by_operation"].items()
    waiting_ms = sum(per * latency.get(op.split(".")[0], latency["other"]) for op, per in calls)
    stretch = a["lambda_memory_mb_per_vcpu"] / a["function_memory_mb"]  # the function's share of a vCPU
    look_ms = run["cpu_ms_per_deployment"] * stretch + waiting_ms
    seconds = (looks * look_ms + a["ticks_per_month"] * a["tick_fixed_ms"]) / 1000
    lambda_usd = seconds * a["function_memory_mb"] / 1024 * a["lambda_usd_per_gb_second"]
    traffic = run.get("traffic_checks") or {"dynamodb_units_per_run": [0.0, 0.0]}  # its own minute runs
    lambda_usd += a["ticks_per_month"] * a["tick_fixed_ms"] / 1000 * a["function_memory_mb"] / 1024 * (
        a["lambda_usd_per_gb_second"])  # fmt: skip
    read, write = traffic["dynamodb_units_per_run"]
    dynamodb += a["ticks_per_month"] * (read * read_usd + write * write_usd) / 1e6
    invocations = a["ticks_per_month"] * (2 + run["shards_per_cycle"])  # the tick, the traffic checks, the shards
    lambda_usd += invocations * a["lambda_usd_per_million_requests"] / 1e6
    sqs_requests = a["ticks_per_month"] * run["shards_per_cycle"] * 3  # send, receive, delete
    sqs = sqs_requests * a["sqs_usd_per_million_requests"] / 1e6
    sns = month * a["sns_publishes_per_deployment"] * a["sns_usd_per_million_publishes"] / 1e6
    stepfunctions = (month * a["stepfunctions_share_of_deployments"] * a["stepfunctions_transitions_per_deployment"]
                     * a["stepfunctions_usd_per_1000_transitions"] / 1000)  # fmt: skip
    # a verdict metric is billed for the hours it is written in: a service's canaries (10 min each) touch 1-2 hours
    per_service = deployments_per_day / services
    canary_hours = min(24.0, per_service * (a["canary_minutes_per_deployment"] + 60) / 60)
    metric_months = services * run["verdict_metrics_per_service"] * canary_hours / 24
    custom_metrics = metric_months * a["cloudwatch_usd_per_custom_metric_month"]
    log_gb = looks * run["log_bytes_per_deployment"] / 1e9
    kept_months = a["log_retention_days"] / a["days_per_month"]
    logs = log_gb * (a["cloudwatch_logs_usd_per_gb"] + a["cloudwatch_logs_usd_per_gb_month_stored"] * kept_months)
    custom_metrics += run["guard_metrics"] * a["cloudwatch_usd_per_custom_metric_month"]  # the functions' own
    alarms = (alarm_metrics() * a["cloudwatch_usd_per_alarm_metric_month"]
              + a["cloudwatch_usd_per_dashboard_month"])  # fmt: skip
    # DynamoDB storage: the assessments written a month (their measured bytes a look), kept retention_days
    stored = run["dynamodb_stored_bytes_per_look"]
    written = (("canary", canary_looks), ("monitoring", looks - canary_looks))
    stored_gb = sum(times * (stored[kind] + a["dynamodb_item_overhead_bytes"]) for kind, times in written) / 1e9
    stored_gb *= a["retention_days"] / a["days_per_month"]
    dynamodb += stored_gb * (a["dynamodb_usd_per_gb_month"] + a["dynamodb_pitr_usd_per_gb_month"])
    other_invocations = month * a["other_function_invocations_per_deployment"]
    lambda_usd += other_invocations * (a["lambda_usd_per_million_requests"] / 1e6 + a["other_function_ms"] / 1000
                                       * a["function_memory_mb"] / 1024 * a["lambda_usd_per_gb_second"])  # fmt: skip
    traces = invocations + other_invocations
    xray = max(0.0, traces - a["xray_free_traces_per_month"]) * a["xray_usd_per_million_traces"] / 1e6
    parts = {"getmetricdata": getmetricdata, "dynamodb": dynamodb, "lambda": lambda_usd, "sqs": sqs, "sns": sns,
             "stepfunctions": stepfunctions, "eventbridge": 0.0, "cloudwatch_metrics": custom_metrics,
             "cloudwatch_alarms": alarms, "cloudwatch_logs": logs, "xray": xray}  # fmt: skip
    return {"total": round(sum(parts.values()), 2), **{k: round(v, 2) for k, v in parts.items()}}


@functools.cache
def alarm_metrics(template: Path = ROOT / "template.yaml") -> int:
    """Metrics the template's alarms read (an alarm on one metric: 1; on metric math: each metric it reads)."""
    from deployguard_local.template import load_template

    resources = load_template(template)["Resources"].values()
    alarms = [r["Properties"] for r in resources if r.get("Type") == "AWS::CloudWatch::Alarm"]
    return sum(sum(1 for m in p["Metrics"] if "MetricStat" in m) if "Metrics" in p else 1 for p in alarms)


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
    per_service = ASSUMPTIONS["deployments_per_service_per_day"]
    assumptions = {
        **ASSUMPTIONS,
        "measured_run": {"deployments": basis["deployments"], "age_minutes": basis["age_minutes"]},
        "monitoring_looks_per_deployment": monitoring_looks_per_deployment(),
        "service_looks_per_day": {str(k): service_looks_per_day(k) for k in (1, per_service)},
    }
    return {
        "runs": runs,
        "monthly_cost_usd": {str(d): costs[str(d)]["total"] for d in (10, 100, 1000, 10000)},
        "monthly_cost_breakdown_usd": costs,
        "assumptions": assumptions,
        "cold_import": cold_start.cold_imports(),
    }


REFERENCE_ROUNDS = 5  # the reference workload's rounds a cycle (about 80 ms of CPU here)


def reference_cpu_ms(rounds: int = REFERENCE_ROUNDS) -> float:
    """The thread CPU of a fixed workload of the guard's kind (a deployment record and an assessment
    validated, dumped and read back as JSON, the judge's verdict on a fixed window), run in the bench's
    process right after each cycle: what makes the same code slower in one configuration than in another
    (other processes on the cores, the process's heap, the CPU's clock) slows it as it slows the guard,
    and it does the very same work at every age and size."""
    from deployguard.analysis.judge import judge_canary
    from deployguard.analysis.settings import JudgeSettings
    from deployguard.models import CanaryWindow, MetricWindow

    settings = JudgeSettings()
    rng = random.Random(3)
    window = CanaryWindow(interval_seconds=60, canary_weight=0.1, metrics=[
        MetricWindow(spec=spec, baseline=[100.0 * (0.9 + 0.2 * rng.random()) for _ in range(30)],
                     canary=[10.0 * (0.9 + 0.2 * rng.random()) for _ in range(30)])
        for spec in settings.metrics
    ])  # fmt: skip
    target = LambdaTarget(function_name="reference", alias="live", stable_version="1", new_version="2")
    deployment = Deployment(deployment_id="reference", service="reference", environment="production", version="2",
                            target=target, status=DeploymentStatus.IN_PROGRESS)  # fmt: skip
    start = time.thread_time()
    for _ in range(rounds):
        verdict = judge_canary(window, settings)
        assessment = Assessment(deployment_id="reference", verdict=verdict, health_status=HealthStatus.HEALTHY)
        Deployment.model_validate_json(deployment.model_dump_json())
        Assessment.model_validate_json(assessment.model_dump_json())
    return (time.thread_time() - start) * 1000


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """The median and the first and third quartiles (the median three times for fewer than 4 values)."""
    if len(values) < 4:
        median = statistics.median(values)
        return median, median, median
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q2, q1, q3


def paired_cpu_ratios(young: dict[str, Any], old: dict[str, Any], reference: str = "") -> list[float]:
    """The cycles' guard CPU ratios, cycle i at the older age against cycle i at the younger (see
    :func:`paired_cpu_ratio`), each cycle's figure in units of ``reference`` when given: ``bench`` (the
    bench's own counting) or ``reference`` (:func:`reference_cpu_ms`)."""
    guard = list(zip(young["cpu_ms_per_deployment_by_cycle"], old["cpu_ms_per_deployment_by_cycle"], strict=False))
    if not reference:
        return [b / a for a, b in guard if a > 0]
    key = {"bench": "bench_cpu_ms_per_deployment_by_cycle", "reference": "reference_cpu_ms_by_cycle"}[reference]
    refs = zip(young.get(key, []), old.get(key, []), strict=False)
    return [
        (gb / rb) / (ga / ra) for (ga, gb), (ra, rb) in zip(guard, refs, strict=False) if ga > 0 and ra > 0 and rb > 0
    ]


def paired_cpu_ratio(young: dict[str, Any], old: dict[str, Any], against_bench: bool = False) -> float:
    """The median of the cycles' guard CPU ratios, cycle i of one age against cycle i of the other: the
    same minute does the same work at both ages (the same canary and monitoring looks), and a minute with
    monitoring looks costs more than one without, so cycles compared in pairs leave the mix out.

    ``against_bench``: each cycle's guard CPU in units of the bench's own counting CPU of that cycle, a
    reference that does the same work at both ages (the same calls, bodies and log lines), interleaved
    with the guard's in the same thread: what makes the same code slower in one run than in another (other
    processes on the cores, the process's heap) slows both."""
    return statistics.median(paired_cpu_ratios(young, old, "bench" if against_bench else ""))


def report(result: dict[str, Any]) -> str:
    lines = ["Minute loop at scale (embedded AWS, real AssessorFunction and AssessorShardFunction, per look: one "
             "deployment assessed, each canary every cycle and a monitored deployment when due, over `cyc` cycles; "
             "CPU: the guard's, the median of the cycles', moto's server side and the bench's counting apart)",
             f"  {'N':>6} {'age':>4} {'mon':>5} {'ended':>5} {'cyc':>3} {'calls':>6} {'DDB KB':>7} {'RU':>5} {'WU':>5} "
             f"{'GMD':>4} {'ceil':>4} {'lambda':>6} {'CPU ms':>7} {'moto ms':>7}  by operation"]  # fmt: skip
    for r in result["runs"]:
        ops = ", ".join(f"{k}={v}" for k, v in r["calls_by_operation"].items())
        lines.append(f"  {r['deployments']:>6} {r['age_minutes']:>4} {r['monitored']:>5} {r['ended']:>5}"
                     f" {r['cycles']:>3} {r['calls_per_deployment']:>6} {r['dynamodb_kb_per_deployment']:>7}"
                     f" {r['dynamodb_read_units_per_deployment']:>5} {r['dynamodb_write_units_per_deployment']:>5}"
                     f" {r['getmetricdata_calls']:>4} {r['getmetricdata_limit']:>4}"
                     f" {r['lambda_control_plane_calls']:>6}"
                     f" {r['cpu_ms_per_deployment']:>7} {r['moto_cpu_ms_per_deployment']:>7}  {ops}")  # fmt: skip
    for n in sorted({r["deployments"] for r in result["runs"]}):
        pair = {r["age_minutes"]: r for r in result["runs"] if r["deployments"] == n}
        if 5 in pair and 120 in pair:
            kb = pair[120]["dynamodb_kb_per_deployment"] / max(1e-9, pair[5]["dynamodb_kb_per_deployment"])
            cpu = pair[120]["cpu_ms_per_deployment"] / max(1e-9, pair[5]["cpu_ms_per_deployment"])
            spreads = {ref: quartiles(paired_cpu_ratios(pair[5], pair[120], ref)) for ref in ("", "reference", "bench")}
            shown = {ref: f"{m:.2f}x [{lo:.2f}-{hi:.2f}]" for ref, (m, lo, hi) in spreads.items()}
            lines.append(f"  N={n}: age 120 / age 5: DynamoDB KB {kb:.2f}x; client CPU {cpu:.2f}x (medians); "
                         f"cycle by cycle, median [quartiles] over {len(paired_cpu_ratios(pair[5], pair[120]))} "
                         f"pairs: raw {shown['']}, against the reference workload {shown['reference']}, against "
                         f"the bench's own counting {shown['bench']}")  # fmt: skip
    for r in result["runs"]:
        traffic = r.get("traffic_checks")
        if traffic:
            ops = ", ".join(f"{k}={v}" for k, v in traffic["calls_by_operation"].items())
            lines.append(f"  N={r['deployments']} age {r['age_minutes']}: traffic checks (TrafficCheckFunction, its "
                         f"own schedule, not in the cycle): {traffic['checked']} checks in {traffic['runs']} runs, "
                         f"{traffic['calls_per_run']} calls a run ({ops}), Lambda control plane "
                         f"{traffic['lambda_control_plane_calls']}")  # fmt: skip
    lines.append("  monthly cost estimate (USD): " + ", ".join(
        f"{k}/day ${v}" for k, v in result["monthly_cost_usd"].items()))  # fmt: skip
    lines.append("  by service (USD): " + "; ".join(
        f"{k}/day " + ", ".join(f"{p} {v}" for p, v in parts.items() if p != "total")
        for k, parts in result["monthly_cost_breakdown_usd"].items()))  # fmt: skip
    lines.append("  assumptions: " + json.dumps(result["assumptions"]))
    cold = result["cold_import"]
    variants = [("layer compiled, as built", cold)] + (
        [("layer without bytecode", cold["without_bytecode"])] if "without_bytecode" in cold else []
    )
    for title, figures in variants:
        lines.append(
            f"  cold import (CPU, fresh interpreter, {title}, medians of {cold['repeats']} rounds): "
            f"import boto3 {figures['boto3_ms']} ms; "
            + ", ".join(
                f"{k} {v['ms']} ms ({v['ratio']}x"
                + ("" if v["imports_boto3"] else f"; {v['with_boto3_ratio']}x with the boto3 of its first call")
                + ")"
                for k, v in figures["handlers"].items()
            )
        )
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
