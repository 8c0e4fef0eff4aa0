"""Lambda in this process: template functions' handlers run in-process (moto would need Docker),
asynchronously for SNS deliveries as AWS does, with retries and an on-failure destination."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from deployguard import clock as dg_clock
from deployguard.aws import clients
from deployguard_local.emulator.iam import running_as
from deployguard_local.function_logs import function_running


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
            # its own logger keys (one Powertools logger here, one each in AWS); its own role (emulator.iam)
            with function_running(name), running_as(fn.logical_id if fn is not None else None):
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


def sns_event(topic_arn: str, message: str, subject: str | None) -> dict[str, Any]:
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


def install_in_process_lambda(
    registry: FunctionRegistry, invoker: AsyncInvoker, topics: Callable[[], list[str]]
) -> list[Callable[[], None]]:
    """Invocations run the registered handlers; SNS deliveries go to the asynchronous invoker. Returns the undos."""
    from moto.awslambda import models as lambda_models

    undo: list[Callable[[], None]] = []

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
        invoker.submit(fn.function_name, fn.function_arn, sns_event(topic, message, subject))

    original_sns = lambda_models.LambdaBackend.send_sns_message
    lambda_models.LambdaBackend.send_sns_message = send_sns_message_async  # type: ignore[method-assign]
    undo.append(lambda: setattr(lambda_models.LambdaBackend, "send_sns_message", original_sns))
    undo += install_alias_revisions()
    return undo


def install_alias_revisions() -> list[Callable[[], None]]:
    """Fill moto's alias revision gap: every UpdateAlias gives the alias a new ``RevisionId`` (moto keeps the
    first forever), and an UpdateAlias whose ``RevisionId`` is not the alias's current one fails with
    ``PreconditionFailedException`` (moto ignores it), as Lambda does. The check and the update are one step
    (a lock), as in Lambda. Returns the undos."""
    from moto.awslambda import exceptions as lambda_exceptions
    from moto.awslambda import models as lambda_models
    from moto.awslambda import responses as lambda_responses

    lock = threading.RLock()
    original_update = lambda_models.LambdaAlias.update
    original_response = lambda_responses.LambdaResponse.update_alias

    def update_with_new_revision(self: Any, *args: Any, **kwargs: Any) -> None:
        original_update(self, *args, **kwargs)
        self.revision_id = str(uuid.uuid4())

    def update_alias_if_revision(self: Any) -> Any:
        revision = json.loads(self.body or "{}").get("RevisionId")
        with lock:
            if revision:
                function_name = unquote(self.path.rsplit("/")[-3])
                alias_name = unquote(self.path.rsplit("/", 2)[-1])
                alias = self.backend.get_alias(name=alias_name, function_name=function_name)
                if alias.revision_id != revision:
                    raise lambda_exceptions.PreconditionFailedException(
                        "The Revision Id provided does not match the latest Revision Id. "
                        "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
                    )
            return original_response(self)

    setattr(lambda_models.LambdaAlias, "update", update_with_new_revision)  # noqa: B010
    setattr(lambda_responses.LambdaResponse, "update_alias", update_alias_if_revision)  # noqa: B010
    return [
        lambda: setattr(lambda_models.LambdaAlias, "update", original_update),
        lambda: setattr(lambda_responses.LambdaResponse, "update_alias", original_response),
    ]


def code_zip(code_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(code_dir.rglob("*.py")):
            archive.write(path, path.relative_to(code_dir).as_posix())
    return buffer.getvalue()


def zip_text(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()
