"""The embedded AWS: moto in-process, shaped by template.yaml, with a simulated clock.

- Tables, topic, queue, functions and the state machine are created from
  template.yaml (keys, names, ASL definition with its DefinitionSubstitutions).
- Step Functions executions run on moto's ASL interpreter; their Lambda tasks run the
  real handlers of ``functions/`` in this process.
- Wait states and retry back-offs advance a simulated clock instead of sleeping, so
  a ten-minute canary runs in seconds; listeners on the clock (the demo's traffic)
  see every simulated minute go by, and so, when asked (:meth:`EmbeddedAws.follow_schedules`),
  do the template's EventBridge schedules: their functions run at every boundary passed.

Gaps of moto that are filled here, and only these: invoking a Lambda function runs
its handler in-process (moto would need Docker), asynchronously for SNS deliveries as
AWS does; GetMetricData answers percentile statistics (p50, p99 ...) from the
datapoints it holds, and looks them up through an index instead of a scan per query
and period (same answers, usable at 500 queries a call).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import math
import os
import re
import sys
import threading
import time
import traceback
import types
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from deployguard import clock as dg_clock
from deployguard import runtime
from deployguard.aws import clients
from deployguard_local.function_logs import function_running, logs_to_stderr
from deployguard_local.template import Stack

REPO_ROOT = Path(__file__).resolve().parents[2]
ClockListener = Callable[[datetime, datetime], None]


class ListeningClock(dg_clock.SimulatedClock):
    """A simulated clock that tells listeners about each advance (start, end).

    ``listeners`` (traffic, metrics) run first, then ``late_listeners`` (EventBridge
    schedules), so a schedule that fires at a minute's end reads what that minute wrote.
    """

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start)
        self.listeners: list[ClockListener] = []
        self.late_listeners: list[ClockListener] = []
        self._advance_lock = threading.RLock()

    def advance(self, seconds: float) -> datetime:
        with self._advance_lock:
            before = self()
            after = super().advance(seconds)
            for listener in [*self.listeners, *self.late_listeners]:
                listener(before, after)
            return after


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


def rate_seconds(expression: str) -> int:
    """The period of an EventBridge ``rate(...)`` schedule expression, in seconds."""
    match = _RATE.match(expression.strip())
    if match is None:
        raise ValueError(f"only rate(...) schedules follow the simulated clock, not {expression}")
    value, unit = int(match.group(1)), match.group(2)
    if value < 1 or (value == 1) != (not unit.endswith("s")):  # EventBridge: rate(1 minute), rate(5 minutes)
        raise ValueError(f"invalid schedule expression {expression}")
    return value * {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]


def schedule_boundaries(period_seconds: int, before: datetime, after: datetime) -> list[datetime]:
    """The times in (before, after] at which a schedule of this period fires (whole periods since the epoch)."""
    first = math.floor(before.timestamp() / period_seconds) + 1
    last = math.floor(after.timestamp() / period_seconds)
    return [datetime.fromtimestamp(n * period_seconds, tz=before.tzinfo) for n in range(first, last + 1)]


@dataclass(frozen=True)
class ScheduleRun:
    """One firing of an EventBridge schedule rule: its target invoked with the Scheduled Event."""

    rule: str
    function: str  # the template's logical id
    at: datetime  # the schedule's time (the event's ``time``)
    event: dict[str, Any]
    payload: Any  # what the function answered
    errored: bool


@dataclass
class LambdaContext:
    """What a Lambda handler gets as its context object."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


@dataclass
class LocalFunction:
    logical_id: str
    name: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, str]

    def load_handler(self) -> Callable[[Any, Any], Any]:
        module_file, func_name = self.handler.rsplit(".", 1)
        module_name = f"deployguard_function_{self.code_dir.name}_{module_file}"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, self.code_dir / f"{module_file}.py")
            if spec is None or spec.loader is None:
                raise FileNotFoundError(f"{self.code_dir / module_file}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        return getattr(module, func_name)


class FunctionRegistry:
    """Handlers that moto's Lambda runs in-process, by function name."""

    def __init__(self) -> None:
        self.functions: dict[str, LocalFunction] = {}
        self.handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self.invocations: list[tuple[str, str]] = []  # (function name, outcome)
        self._lock = threading.Lock()

    def register(self, fn: LocalFunction) -> None:
        self.functions[fn.name] = fn

    def register_handler(self, name: str, handler: Callable[[Any, Any], Any]) -> None:
        self.handlers[name] = handler

    def invoke(self, name: str, arn: str, event: Any) -> tuple[Any, bool]:
        """Run the handler; returns (payload, errored) as Lambda would."""
        fn = self.functions.get(name)
        try:
            if fn is not None:
                handler = fn.load_handler()
                context = LambdaContext(name, arn, fn.memory, fn.timeout)
            elif name in self.handlers:
                handler = self.handlers[name]
                context = LambdaContext(name, arn, 128, 30)
            else:
                raise LookupError(f"no local handler for Lambda function {name}")
            with function_running():
                result = handler(event, context)
        except Exception as exc:  # a Lambda runtime turns any exception into a function error
            with self._lock:
                self.invocations.append((name, f"error: {type(exc).__name__}"))
            return {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }, True
        with self._lock:
            self.invocations.append((name, "ok"))
        return result, False


class AsyncInvoker:
    """Lambda's asynchronous invocation (SNS, EventBridge): a queue, retries, an on-failure destination.

    moto delivers SNS messages to Lambda synchronously, inside Publish; AWS does not:
    the publisher never sees the subscriber fail. Here deliveries go to a worker
    thread, are retried twice as Lambda does, and what still fails is sent to the
    function's OnFailure SQS destination, so nothing is lost.
    """

    def __init__(self, registry: FunctionRegistry, max_retries: int = 2) -> None:
        self.registry = registry
        self.max_retries = max_retries
        self.on_failure: dict[str, str] = {}  # function name -> SQS queue URL
        self.failed: list[tuple[str, Any]] = []
        self._queue: list[tuple[str, str, Any]] = []
        self._cv = threading.Condition()
        self._busy = 0
        self._thread = threading.Thread(target=self._work, daemon=True, name="lambda-async")
        self._stopped = False
        self._thread.start()

    def submit(self, name: str, arn: str, event: Any) -> None:
        with self._cv:
            self._queue.append((name, arn, event))
            self._cv.notify_all()

    def drain(self, timeout: float = 60.0) -> None:
        """Wait until every queued invocation has run (its retries included)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("asynchronous Lambda invocations still running")
                self._cv.wait(remaining)

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        self._thread.join(5)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopped:
                    self._cv.wait()
                if self._stopped and not self._queue:
                    return
                name, arn, event = self._queue.pop(0)
                self._busy += 1
            try:
                for _attempt in range(1 + self.max_retries):
                    result, errored = self.registry.invoke(name, arn, event)
                    if not errored:
                        break
                else:
                    self._fail(name, arn, event, result)
            finally:
                with self._cv:
                    self._busy -= 1
                    self._cv.notify_all()

    def _fail(self, name: str, arn: str, event: Any, result: Any) -> None:
        self.failed.append((name, result))
        queue_url = self.on_failure.get(name)
        if queue_url:
            record = {
                "version": "1.0",
                "requestContext": {
                    "functionArn": arn,
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": 1 + self.max_retries,
                },
                "requestPayload": event,
                "responsePayload": result,
            }
            clients.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(record, default=str))


def _sns_event(topic_arn: str, message: str, subject: str | None) -> dict[str, Any]:
    """The event Lambda receives from an SNS subscription, in AWS's shape."""
    message_id = str(uuid.uuid4())
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic_arn}:{uuid.uuid4()}",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "TopicArn": topic_arn,
                    "Subject": subject,
                    "Message": message,
                    "Timestamp": dg_clock.now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "SignatureVersion": "1",
                    "Signature": "EXAMPLE",
                    "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
                    "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
                    "MessageAttributes": {},
                },
            }
        ]
    }


_DYNAMODB_OPERATIONS = (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
    "scan",
    "batch_get_item",
    "batch_write_item",
    "transact_write_items",
    "transact_get_items",
)


def atomic_dynamodb() -> Callable[[], None]:
    """Make moto's DynamoDB operations atomic between threads, as DynamoDB's are.

    moto checks a ConditionExpression and then writes without a lock, and iterates a
    table's items while another thread may add one; the state machine, the asynchronous
    Lambda invocations and the caller all use it at once. Returns the undo.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    originals = {name: getattr(DynamoDBBackend, name) for name in _DYNAMODB_OPERATIONS}
    for name, original in originals.items():

        def serialised(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, serialised)

    def undo() -> None:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)

    return undo


def transactions_without_table_copy() -> Callable[[], None]:
    """moto's TransactWriteItems deep-copies every table it touches (to roll back on failure), so a
    transaction costs as much as the table is large. Here the conditions are checked first and the
    operations applied only if all hold, which needs no copy; any other case (a condition fails,
    an operation moto must refuse) goes to moto's own code for its exact answer. Atomic between
    threads once :func:`atomic_dynamodb` serialises it. Returns the undo."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        plan = []
        seen = set()
        for entry in transact_items:
            if len(entry) != 1:
                return original(self, transact_items)
            op_type, op = next(iter(entry.items()))
            if op_type not in ("Put", "Delete", "ConditionCheck") or op["TableName"] not in self.tables:
                return original(self, transact_items)
            table = self.tables[op["TableName"]]
            if op_type == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            marker = (op["TableName"], str(sorted(key.items())))
            if marker in seen:
                return original(self, transact_items)
            seen.add(marker)
            condition = op.get("ConditionExpression")
            if condition is not None:
                check = get_filter_expression(
                    condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
                )
                if not check.expr(self.get_item(op["TableName"], key)):
                    return original(self, transact_items)  # moto cancels it, with the reasons
            plan.append((op_type, op, key))
        for op_type, op, key in plan:
            if op_type == "Put":
                self.put_item(op["TableName"], op["Item"])
            elif op_type == "Delete":
                self.delete_item(op["TableName"], key)
        return None

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]

    def undo() -> None:
        DynamoDBBackend.transact_write_items = original  # type: ignore[method-assign]

    return undo


def _patch_moto(
    registry: FunctionRegistry, invoker: AsyncInvoker, topics: Callable[[], list[str]], sim_clock: ListeningClock | None
) -> list[Callable[[], None]]:
    """Fill moto's gaps; returns the undo functions."""
    from moto.awslambda import models as lambda_models
    from moto.cloudwatch import models as cw_models
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function

    undo: list[Callable[[], None]] = [transactions_without_table_copy(), atomic_dynamodb()]

    def invoke_in_process(self: Any, event: Any = None) -> tuple[str, bool, str]:
        payload = json.loads(event) if isinstance(event, str | bytes) else event
        result, errored = registry.invoke(self.function_name, self.function_arn, payload)
        return json.dumps(result, default=str), errored, ""

    original_invoke = lambda_models.LambdaFunction._invoke_lambda
    setattr(lambda_models.LambdaFunction, "_invoke_lambda", invoke_in_process)  # noqa: B010
    undo.append(lambda: setattr(lambda_models.LambdaFunction, "_invoke_lambda", original_invoke))

    # moto's Docker-free backend echoes the payload; send invocations to the function instead
    from moto.awslambda_simple import models as simple_models

    original_simple_invoke = simple_models.LambdaSimpleBackend.invoke
    simple_models.LambdaSimpleBackend.invoke = lambda_models.LambdaBackend.invoke  # type: ignore[method-assign]
    undo.append(lambda: setattr(simple_models.LambdaSimpleBackend, "invoke", original_simple_invoke))

    def send_sns_message_async(
        self: Any, function_name: str, message: str, subject: str | None = None, qualifier: str | None = None
    ) -> None:
        fn = self.get_function(function_name, qualifier)
        topic = next((t for t in topics() if t), "arn:aws:sns:us-east-1:123456789012:unknown")
        invoker.submit(fn.function_name, fn.function_arn, _sns_event(topic, message, subject))

    original_sns = lambda_models.LambdaBackend.send_sns_message
    lambda_models.LambdaBackend.send_sns_message = send_sns_message_async  # type: ignore[method-assign]
    undo.append(lambda: setattr(lambda_models.LambdaBackend, "send_sns_message", original_sns))

    original_stat = cw_models.Statistics.get_statistics_for_type

    def statistics_with_percentiles(self: Any, stat: str) -> Any:
        if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
            values = sorted(self.metric_single_values_list)
            if not values:
                return None
            rank = max(1, math.ceil(float(stat[1:]) / 100.0 * len(values)))
            return values[min(rank, len(values)) - 1]
        return original_stat(self, stat)

    setattr(cw_models.Statistics, "get_statistics_for_type", statistics_with_percentiles)  # noqa: B010
    undo.append(lambda: setattr(cw_models.Statistics, "get_statistics_for_type", original_stat))

    original_get_metric_data = cw_models.CloudWatchBackend.get_metric_data

    def indexed_get_metric_data(
        self: Any,
        queries: list[dict[str, Any]],
        start_time: datetime,
        end_time: datetime,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        """GetMetricData for MetricStat queries with an index instead of a scan per query and period.

        moto filters every stored datapoint for every query and every period, which makes a
        batch of 500 queries over thousands of datapoints take minutes; the answer is the same.
        """
        if any("MetricStat" not in q for q in queries) or start_time >= end_time:
            return original_get_metric_data(self, queries, start_time, end_time, scan_by)
        start_time = start_time.replace(microsecond=0)
        end_time = end_time.replace(microsecond=0)
        index: dict[tuple[str, str, frozenset[tuple[str, str]]], list[Any]] = {}
        for md in self.get_all_metrics():
            if start_time <= md.timestamp < end_time:
                key = (md.namespace, md.name, frozenset((d.name, d.value) for d in md.dimensions))
                index.setdefault(key, []).append(md)
        results = []
        for query in queries:
            stat_query = query["MetricStat"]
            metric = stat_query["Metric"]
            period = int(stat_query["Period"])
            key = (
                metric["Namespace"],
                metric["MetricName"],
                frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])),
            )
            buckets: dict[int, list[Any]] = {}
            for md in index.get(key, []):
                if stat_query.get("Unit") and md.unit != stat_query["Unit"]:
                    continue
                buckets.setdefault(int((md.timestamp - start_time).total_seconds()) // period, []).append(md)
            timestamps, values = [], []
            for bucket in sorted(buckets):
                at = start_time + timedelta(seconds=bucket * period)
                stats = cw_models.Statistics([stat_query["Stat"]], at)
                stats.metric_data = buckets[bucket]
                value = stats.get_statistics_for_type(stat_query["Stat"])
                if value is not None:
                    timestamps.append(stats.timestamp)
                    values.append(value)
            if scan_by == "TimestampDescending":
                timestamps.reverse()
                values.reverse()
            if query.get("ReturnData", True):
                results.append(
                    {
                        "id": query["Id"],
                        "label": query.get("Label") or f"{metric['MetricName']} {stat_query['Stat']}",
                        "values": values,
                        "timestamps": timestamps,
                        "status_code": "Complete",
                    }
                )
        return results

    cw_models.CloudWatchBackend.get_metric_data = indexed_get_metric_data  # type: ignore[method-assign]
    undo.append(lambda: setattr(cw_models.CloudWatchBackend, "get_metric_data", original_get_metric_data))

    if sim_clock is not None:
        original_wait = wait_function.WaitFunction._wait_interval

        def simulated_wait(self: Any, env: Any, wait_seconds: int) -> None:
            if wait_seconds > 0:
                sim_clock.advance(wait_seconds)

        setattr(wait_function.WaitFunction, "_wait_interval", simulated_wait)  # noqa: B010
        undo.append(lambda: setattr(wait_function.WaitFunction, "_wait_interval", original_wait))

        original_time = retrier_decl.time
        retrier_decl.time = types.SimpleNamespace(sleep=sim_clock.advance, time=time.time)  # type: ignore[assignment]
        undo.append(lambda: setattr(retrier_decl, "time", original_time))
    return undo


def _code_zip(code_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(code_dir.rglob("*.py")):
            archive.write(path, path.relative_to(code_dir).as_posix())
    return buffer.getvalue()


class EmbeddedAws:
    """Context manager: the whole DeployGuard stack on moto, in this process."""

    def __init__(
        self,
        root: Path = REPO_ROOT,
        *,
        simulated_clock: bool = True,
        start: datetime | None = None,
        config_file: Path | None = None,
        endpoint_url: str | None = None,
        quiet: bool = True,
        storage_only: bool = False,
    ) -> None:
        self.root = root
        self.storage_only = storage_only  # tables and buckets only: what read commands need
        self.clock = ListeningClock(start) if simulated_clock else None
        self.config_file = config_file
        self.endpoint_url = endpoint_url
        self.quiet = quiet
        self.stack = Stack.load(root)
        self.registry = FunctionRegistry()
        self.functions: dict[str, LocalFunction] = {}
        self.function_environment: dict[str, str] = {}
        self.schedule_runs: list[ScheduleRun] = []
        self._schedule_fired: dict[str, datetime] = {}  # rule -> the last boundary it fired at
        self._schedule_lock = threading.Lock()
        self._exit = contextlib.ExitStack()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> EmbeddedAws:
        try:
            return self._enter()
        except BaseException:
            self._exit.close()  # a half-built stack must not leave the mock (and its tables) behind
            raise

    def _enter(self) -> EmbeddedAws:
        env: dict[str, str | None] = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_REGION": self.stack.region,
            "DEPLOYGUARD_LOCAL": "1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
        }
        # the functions' logs go to stderr: stdout is for the answers of the commands
        self._exit.callback(logs_to_stderr())
        if self.quiet:
            env.update({"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"})
            level = runtime.logger.log_level
            runtime.logger.setLevel("WARNING")
            self._exit.callback(runtime.logger.setLevel, level)
            # moto's ASL interpreter logs every caught task error at ERROR; the audit trail tells it better
            asl_logger = logging.getLogger("moto.stepfunctions")
            asl_level = asl_logger.level
            asl_logger.setLevel(logging.CRITICAL)
            self._exit.callback(asl_logger.setLevel, asl_level)
            # disabled Powertools metrics keep their dimensions between invocations (a deployed
            # function's flush clears them), so the next invocation's own values draw a warning
            self._exit.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message=r"Dimension '.*' has already been added")
        if self.config_file is not None:
            env["DEPLOYGUARD_CONFIG_FILE"] = str(self.config_file)
        # in-process AWS has no endpoint; an endpoint left in the environment must not redirect it
        env["DEPLOYGUARD_ENDPOINT_URL"] = self.endpoint_url or None
        env["AWS_ENDPOINT_URL"] = None
        self._exit.enter_context(_environment(env))
        if self.clock is not None:
            dg_clock.install(self.clock)
            self._exit.callback(dg_clock.reset)
        if not self.endpoint_url:
            from moto import mock_aws

            self._exit.enter_context(
                mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})
            )
            self.invoker = AsyncInvoker(self.registry)
            self._exit.callback(self.invoker.stop)
            topics = lambda: [v.get("Ref", "") for k, v in self.stack.physical.items() if "TopicName" in v]  # noqa: E731
            for undo in _patch_moto(self.registry, self.invoker, topics, self.clock):
                self._exit.callback(undo)
            from deployguard_local.codedeploy import install_continue_api, install_hook_status_api
            from deployguard_local.ecs import install_deployment_target_api

            self._exit.callback(install_hook_status_api())
            self._exit.callback(install_continue_api())
            self._exit.callback(install_deployment_target_api())
            from deployguard_local.eventbridge import install_lambda_targets

            self._exit.callback(install_lambda_targets(self.invoker))
        clients.reset()
        runtime.reset()
        self._exit.callback(clients.reset)
        self._exit.callback(runtime.reset)
        self._create_stack()
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    # ------------------------------------------------------------------ resources

    def _create_stack(self) -> None:
        stack = self.stack
        name = stack.stack_name
        dynamodb = clients.client("dynamodb")
        for logical_id, res in stack.of_type("AWS::DynamoDB::Table").items():
            props = stack.resolve(res["Properties"])
            table_name = f"{name}-{logical_id}"
            request = {
                k: props[k]
                for k in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
                if k in props
            }
            dynamodb.create_table(TableName=table_name, **request)
            ttl = props.get("TimeToLiveSpecification")
            if ttl:
                dynamodb.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)
            stack.set_physical(
                logical_id, Ref=table_name, Arn=f"arn:aws:dynamodb:{stack.region}:{stack.account_id}:table/{table_name}"
            )
        s3 = clients.client("s3")
        for logical_id in stack.of_type("AWS::S3::Bucket"):
            bucket = f"{name}-{logical_id}".lower()
            s3.create_bucket(Bucket=bucket)
            stack.set_physical(logical_id, Ref=bucket, Arn=f"arn:aws:s3:::{bucket}")
        if self.storage_only:
            return
        sqs = clients.client("sqs")
        for logical_id, _res in stack.of_type("AWS::SQS::Queue").items():
            queue_name = f"{name}-{logical_id}"
            url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            stack.set_physical(logical_id, Ref=url, Arn=arn, QueueName=queue_name)
        sns = clients.client("sns")
        for logical_id, res in stack.of_type("AWS::SNS::Topic").items():
            props = stack.resolve(res["Properties"])
            topic_name = f"{name}-{logical_id}"
            attributes = {"KmsMasterKeyId": props["KmsMasterKeyId"]} if "KmsMasterKeyId" in props else {}
            arn = sns.create_topic(Name=topic_name, Attributes=attributes)["TopicArn"]
            stack.set_physical(logical_id, Ref=arn, TopicName=topic_name)
        for logical_id in stack.of_type("AWS::Serverless::LayerVersion"):
            stack.set_physical(logical_id, Ref=f"arn:aws:lambda:{stack.region}:{stack.account_id}:layer:{logical_id}:1")
        iam = clients.client("iam")
        role_arn = iam.create_role(
            RoleName=f"{name}-execution",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        self.role_arn = role_arn
        # names first, so environments can refer to any function
        for logical_id, res in stack.of_type("AWS::Serverless::Function").items():
            fn_name = str(stack.resolve(res["Properties"].get("FunctionName", f"{name}-{logical_id}")))
            arn = f"arn:aws:lambda:{stack.region}:{stack.account_id}:function:{fn_name}"
            stack.set_physical(logical_id, Ref=fn_name, Arn=arn)
        for logical_id in stack.of_type("AWS::Serverless::StateMachine"):
            sm_name = f"{name}-{logical_id}"
            stack.set_physical(
                logical_id, Ref=f"arn:aws:states:{stack.region}:{stack.account_id}:stateMachine:{sm_name}", Name=sm_name
            )
        lambda_client = clients.client("lambda")
        for logical_id in stack.of_type("AWS::Serverless::Function"):
            definition = stack.function_definition(logical_id)
            environment = {k: str(v) for k, v in stack.resolve(definition["Environment"]["Variables"]).items()}
            fn = LocalFunction(
                logical_id=logical_id,
                name=stack.ref(logical_id),
                code_dir=self.root / definition["CodeUri"],
                handler=definition["Handler"],
                timeout=int(definition.get("Timeout", 3)),
                memory=int(definition.get("MemorySize", 128)),
                environment=environment,
            )
            lambda_client.create_function(
                FunctionName=fn.name,
                Runtime=definition["Runtime"],
                Role=role_arn,
                Handler=fn.handler,
                Code={"ZipFile": _code_zip(fn.code_dir)},
                Timeout=fn.timeout,
                MemorySize=fn.memory,
                Environment={"Variables": environment},
            )
            self.functions[logical_id] = fn
            self.registry.register(fn)
            self.function_environment.update(environment)
            self._subscribe_events(logical_id, fn, stack.resolve(definition.get("Events", {})))
            on_failure = (
                stack.resolve(definition.get("EventInvokeConfig", {})).get("DestinationConfig", {}).get("OnFailure")
            )
            if on_failure and on_failure.get("Type") == "SQS" and hasattr(self, "invoker"):
                queue_url = next(v["Ref"] for v in stack.physical.values() if v.get("Arn") == on_failure["Destination"])
                self.invoker.on_failure[fn.name] = queue_url
        sfn = clients.client("stepfunctions")
        for logical_id in stack.of_type("AWS::Serverless::StateMachine"):
            arn = sfn.create_state_machine(
                name=stack.physical[logical_id]["Name"],
                definition=stack.state_machine_definition(logical_id),
                roleArn=role_arn,
            )["stateMachineArn"]
            stack.set_physical(logical_id, Ref=arn)
        # the functions run in this process: their environment becomes the process's
        self._exit.enter_context(_environment(self.function_environment))
        runtime.reset()

    def _subscribe_events(self, logical_id: str, fn: LocalFunction, events: dict[str, Any]) -> None:
        arn = self.stack.get_att(logical_id, "Arn")
        for event in events.values():
            props = event.get("Properties", {})
            if event["Type"] == "SNS":
                attributes = {"FilterPolicy": json.dumps(props["FilterPolicy"])} if "FilterPolicy" in props else {}
                clients.client("sns").subscribe(
                    TopicArn=props["Topic"], Protocol="lambda", Endpoint=arn, Attributes=attributes
                )
            elif event["Type"] == "SQS":
                queue_url = next(v["Ref"] for v in self.stack.physical.values() if v.get("Arn") == props["Queue"])
                self.queue_sources[logical_id] = (queue_url, props["Queue"], int(props.get("BatchSize", 10)))
            elif event["Type"] in ("Schedule", "EventBridgeRule"):
                rule = f"{fn.name}-{len(self.rules)}"
                kwargs: dict[str, Any] = {"Name": rule}
                if event["Type"] == "Schedule":
                    kwargs["ScheduleExpression"] = props["Schedule"]
                    kwargs["State"] = props.get("State", "ENABLED")
                else:
                    kwargs["EventPattern"] = json.dumps(props["Pattern"])
                clients.client("events").put_rule(**kwargs)
                clients.client("events").put_targets(Rule=rule, Targets=[{"Id": "1", "Arn": arn}])
                self.rules[rule] = (event["Type"], logical_id)

    @property
    def queue_sources(self) -> dict[str, tuple[str, str, int]]:
        """Per function with an SQS event: its queue's URL and ARN, and the batch size."""
        if not hasattr(self, "_queue_sources"):
            self._queue_sources: dict[str, tuple[str, str, int]] = {}
        return self._queue_sources

    def deliver_queue(self, logical_id: str) -> list[tuple[Any, bool]]:
        """Deliver what waits in the function's SQS event source, as Lambda's poller does: batches of
        ``BatchSize`` messages in an ``aws:sqs`` event through the Lambda Invoke API, deleted when the
        invocation succeeds (left on the queue when it fails). Returns each invocation's answer."""
        queue_url, queue_arn, batch_size = self.queue_sources[logical_id]
        sqs = clients.client("sqs")
        answers: list[tuple[Any, bool]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=min(10, batch_size), AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return answers
            event = {
                "Records": [
                    {
                        "messageId": m["MessageId"],
                        "receiptHandle": m["ReceiptHandle"],
                        "body": m["Body"],
                        "attributes": m.get("Attributes", {}),
                        "messageAttributes": {},
                        "md5OfBody": m["MD5OfBody"],
                        "eventSource": "aws:sqs",
                        "eventSourceARN": queue_arn,
                        "awsRegion": self.stack.region,
                    }
                    for m in messages
                ]
            }
            payload, errored = self.invoke(logical_id, event)
            answers.append((payload, errored))
            if errored:
                return answers  # left on the queue: visible again after its visibility timeout
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    @property
    def rules(self) -> dict[str, tuple[str, str]]:
        if not hasattr(self, "_rules"):
            self._rules: dict[str, tuple[str, str]] = {}
        return self._rules

    # ------------------------------------------------------------------ EventBridge schedules

    def schedule_rules(self, functions: Iterable[str] | None = None) -> list[str]:
        """The Schedule rules of these functions (logical ids of template.yaml; every function's when None)."""
        wanted = None if functions is None else set(functions)
        unknown = (wanted or set()) - set(self.functions)
        if unknown:
            raise KeyError(f"no function {', '.join(sorted(unknown))} in template.yaml")
        return [
            rule
            for rule, (kind, logical_id) in self.rules.items()
            if kind == "Schedule" and (wanted is None or logical_id in wanted)
        ]

    def fire_due_schedules(
        self, before: datetime, after: datetime, rules: Iterable[str] | None = None
    ) -> list[ScheduleRun]:
        """Fire every ENABLED schedule rule whose boundary falls in (before, after], as EventBridge does.

        The rule, its state and its target are read through the real EventBridge API
        (DescribeRule, ListTargetsByRule), so a rule disabled with DisableRule does not fire.
        Each target function gets a ``Scheduled Event`` (the shape of events/schedule.json,
        the rule's ARN in ``resources``, the schedule's time) through the real Lambda Invoke
        API. EventBridge invokes asynchronously; here the invocation completes before the
        clock moves on, so each simulated minute's run is over when the next one begins.
        """
        events = clients.client("events")
        runs = []
        for rule in self.schedule_rules() if rules is None else list(rules):
            described = events.describe_rule(Name=rule)
            if described.get("State") != "ENABLED" or not described.get("ScheduleExpression"):
                continue
            period = rate_seconds(described["ScheduleExpression"])
            targets = events.list_targets_by_rule(Rule=rule).get("Targets", [])
            for at in schedule_boundaries(period, before, after):
                with self._schedule_lock:
                    if self._schedule_fired.get(rule) is not None and at <= self._schedule_fired[rule]:
                        continue  # fired already (a nested clock advance)
                    self._schedule_fired[rule] = at
                for target in targets:
                    runs.append(self._fire(rule, described["Arn"], target["Arn"], at))
        return runs

    def _fire(self, rule: str, rule_arn: str, function_arn: str, at: datetime) -> ScheduleRun:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.stack.account_id,
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.stack.region,
            "resources": [rule_arn],
            "detail": {},
        }
        resp = clients.client("lambda").invoke(FunctionName=function_arn, Payload=json.dumps(event).encode())
        payload = json.loads(resp["Payload"].read() or b"null")
        logical_id = self.rules.get(rule, ("", function_arn))[1]
        run = ScheduleRun(rule, logical_id, at, event, payload, "FunctionError" in resp)
        self.schedule_runs.append(run)
        return run

    def follow_schedules(
        self, functions: Iterable[str] | None = None, on_fire: Callable[[ScheduleRun], None] | None = None
    ) -> Callable[[], None]:
        """From now on fire these functions' schedule rules as the simulated clock passes their
        boundaries (:meth:`fire_due_schedules`); ``on_fire`` sees every run. Returns the undo.

        Opt-in: without it no schedule fires, and time passes without the assessor."""
        if self.clock is None:
            raise RuntimeError("schedules follow the simulated clock; this EmbeddedAws has none")
        rules = self.schedule_rules(functions)

        def listener(before: datetime, after: datetime) -> None:
            for run in self.fire_due_schedules(before, after, rules):
                if on_fire is not None:
                    on_fire(run)

        self.clock.late_listeners.append(listener)

        def undo() -> None:
            if self.clock is not None and listener in self.clock.late_listeners:
                self.clock.late_listeners.remove(listener)

        return undo

    # ------------------------------------------------------------------ use

    def ref(self, logical_id: str) -> str:
        return str(self.stack.ref(logical_id))

    def invoke(self, logical_id: str, event: Any) -> tuple[Any, bool]:
        """Invoke a template function through the real Lambda Invoke API (served in-process)."""
        resp = clients.client("lambda").invoke(FunctionName=self.ref(logical_id), Payload=json.dumps(event).encode())
        payload = json.loads(resp["Payload"].read() or b"null")
        return payload, "FunctionError" in resp

    def run_state_machine(
        self, logical_id: str, execution_input: dict[str, Any], timeout: float = 120.0
    ) -> dict[str, Any]:
        """Start an execution and wait (in real time) until it ends; returns DescribeExecution."""
        sfn = clients.client("stepfunctions")
        arn = sfn.start_execution(
            stateMachineArn=self.ref(logical_id), name=f"run-{uuid.uuid4().hex[:12]}", input=json.dumps(execution_input)
        )["executionArn"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            desc = sfn.describe_execution(executionArn=arn)
            if desc["status"] != "RUNNING":
                self.last_execution_arn = arn
                return desc
            time.sleep(0.01)
        raise TimeoutError(f"state machine execution {arn} still running after {timeout:.0f} s")

    def deploy_sample_function(
        self, name: str, alias: str, handler: Callable[[Any, Any], Any], versions: int = 2
    ) -> list[str]:
        """Create an application function with published versions and an alias at version 1."""
        lambda_client = clients.client("lambda")
        lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=self.role_arn,
            Handler="app.handler",
            Code={"ZipFile": _zip_text("app.py", "def handler(event, context):\n    return {'statusCode': 200}\n")},
        )
        published = []
        for i in range(versions):
            lambda_client.update_function_configuration(FunctionName=name, Description=f"release {i + 1}")
            published.append(lambda_client.publish_version(FunctionName=name)["Version"])
        lambda_client.create_alias(FunctionName=name, Name=alias, FunctionVersion=published[0])
        self.registry.register_handler(name, handler)
        return published

    def seed_sample(self) -> list[str]:
        """The sample application the events/ files refer to.

        Function ``checkout-api`` with versions 1 and 2 and alias ``live`` at version 1;
        deployment ``dg-sample-0001`` (a canary driven by the state machine) and
        ``dg-sample-0003`` (a CodeDeploy-driven one the scheduled assessor judges).
        """
        from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
        from deployguard.storage.repository import DeploymentRepository

        versions = self.deploy_sample_function("checkout-api", "live", sample_handler)
        target = LambdaTarget(
            function_name="checkout-api", alias="live", stable_version=versions[0], new_version=versions[1]
        )
        repository = DeploymentRepository()
        for deployment_id, driver in (("dg-sample-0001", "stepfunctions"), ("dg-sample-0003", "codedeploy")):
            repository.create_deployment(
                Deployment(
                    deployment_id=deployment_id,
                    service="checkout-api",
                    environment="production",
                    version=versions[1],
                    target=target,
                    status=DeploymentStatus.IN_PROGRESS,
                    driver=driver,
                )
            )
        self._seed_codedeploy(target)
        self._seed_ecs_codedeploy()
        self._seed_approval()
        return versions

    @staticmethod
    def _seed_approval() -> None:
        """A pending remediation approval ``ap-sample00001`` (the approval function's sample event)."""
        from datetime import timedelta

        from deployguard import clock
        from deployguard.remediation.models import Approval
        from deployguard.remediation.store import RemediationStore
        from deployguard.storage.repository import DeploymentRepository

        RemediationStore(DeploymentRepository()).request_approval(
            Approval(
                approval_id="ap-sample00001",
                incident_id="inc-sample00001",
                deployment_id="dg-sample-0001",
                action="rollback",
                target="lambda:checkout-api",
                description="roll checkout-api:live back to 1",
                expires_at_time=clock.now() + timedelta(hours=1),
            ),
            timedelta(hours=1),
        )

    @staticmethod
    def _seed_codedeploy(target: Any) -> None:
        """CodeDeploy deployment d-SAMPLE0001 of the sample function, with one issued hook execution.

        moto names deployments with UUIDs; the sample keeps the id the events/ files use.
        """
        from moto.codedeploy.models import codedeploy_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        from deployguard_local.codedeploy import LEDGER, create_lambda_deployment

        created = create_lambda_deployment(target, "checkout-api", "checkout-api-live")
        backend = codedeploy_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        info = backend.deployments.pop(created)
        info.deployment_id = "d-SAMPLE0001"
        backend.deployments["d-SAMPLE0001"] = info
        hook_event = json.loads((REPO_ROOT / "events" / "codedeploy_lifecycle_hook.json").read_text(encoding="utf-8"))
        LEDGER.issued[hook_event["LifecycleEventHookExecutionId"]] = "d-SAMPLE0001"

    @staticmethod
    def _seed_ecs_codedeploy() -> None:
        """ECS service ``shop/checkout-web`` behind a load balancer, and CodeDeploy blue/green deployment
        d-SAMPLEECS1 of it at AfterAllowTestTraffic, with the ECS hook event's execution issued."""
        from moto.codedeploy.models import codedeploy_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        from deployguard_local.codedeploy import LEDGER
        from deployguard_local.ecs import TARGETS, create_ecs_deployment, create_ecs_service

        stack = create_ecs_service("shop", "checkout-web")
        created = create_ecs_deployment(stack, "checkout-web", "checkout-web-bg")
        backend = codedeploy_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        info = backend.deployments.pop(created)
        info.deployment_id = "d-SAMPLEECS1"
        info.status = "InProgress"
        backend.deployments["d-SAMPLEECS1"] = info
        with TARGETS.lock:
            target = TARGETS.targets.pop(created)
            target["ecsTarget"]["deploymentId"] = "d-SAMPLEECS1"
            TARGETS.targets["d-SAMPLEECS1"] = target
        TARGETS.enter("d-SAMPLEECS1", "AfterAllowTestTraffic")
        event = json.loads((REPO_ROOT / "events" / "codedeploy_lifecycle_hook_ecs.json").read_text(encoding="utf-8"))
        LEDGER.issued[event["LifecycleEventHookExecutionId"]] = "d-SAMPLEECS1"


def sample_handler(event: Any, context: Any) -> dict[str, Any]:
    """The sample application's handler: answers like a healthy API."""
    return {"statusCode": 200, "body": json.dumps({"ok": True, "echo": event})}


def _zip_text(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


@contextlib.contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set ``values`` in the environment (``None`` unsets) and put back what was there."""
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def minutes_between(start: datetime, end: datetime) -> list[datetime]:
    """Whole minutes that began in [start, end)."""
    first = minute_floor(start) + (timedelta(minutes=1) if start.second or start.microsecond else timedelta())
    out = []
    at = first
    while at < end:
        out.append(at)
        at += timedelta(minutes=1)
    return out
