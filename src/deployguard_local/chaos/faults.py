"""Fault injection on the embedded AWS through botocore's event system: the one injector of
``make chaos`` and of the tests.

A :class:`FaultInjector` registers one ``before-send`` handler first on each boto3
client DeployGuard uses (``deployguard.aws.clients``: the retrying and the single-attempt
client of each service, and the DynamoDB resource's), so it runs before moto answers
and inside botocore's retry loop: botocore retries what it would retry on AWS
(throttling, 5xx, timeouts) and gives up where it would. Faults come two ways:

- a :class:`Fault` (:meth:`FaultInjector.at`, :meth:`FaultInjector.arm`) names a service,
  optionally operations, a kind and a span of simulated time: every attempt in the span fails;
- a :class:`Plan` (:meth:`FaultInjector.on`) answers the attempts of one operation one by one
  (``["throttle"] * 8``, then the service), optionally only those whose request ``when`` accepts.

The kinds:

- ``throttle``: the service answers its throttling error (HTTP 400/429), nothing applied;
- ``5xx``: HTTP 500 (``InternalServerError`` from DynamoDB, ``InternalError`` from SNS and SQS,
  ``InternalFailure`` elsewhere), nothing applied;
- ``unavailable``: HTTP 503 ``ServiceUnavailable(Exception)``, nothing applied;
- ``timeout``: the read times out after the client's read timeout (simulated), nothing applied;
- ``outage``: the endpoint cannot be reached (connection refused), nothing applied;
- ``ambiguous``: the request *is* applied, then answered HTTP 500 (the write that succeeded
  but was reported failed).

Two more fault sources, for what is not a boto3 call of DeployGuard: ``task`` faults fail
the invocation of a Lambda function by a Step Functions task (``Lambda.ServiceException``,
``Lambda.TooManyRequestsException``, or ``Sandbox.Timedout`` after the handler ran: the
function timed out, what it did stands), and
:meth:`FaultInjector.arm` starts a fault when a function is invoked with a given action
(``at every state of the canary state machine``).

botocore's retry back-off sleeps advance the simulated clock (as the emulator does for
Step Functions retries), so a 300-second outage costs no wall time; the adaptive mode's pacing of a
throttled client does not wait (:mod:`deployguard_local.emulator.client_pacing`). For what is not an AWS
call, :func:`never_answering_server` is an HTTP endpoint that accepts and never answers.
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import types
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from deployguard import clock
from deployguard.aws import clients
from deployguard.clock import SimulatedClock
from deployguard_local.emulator import FunctionRegistry, client_pacing

FaultKind = Literal["throttle", "5xx", "unavailable", "timeout", "outage", "ambiguous"]
FAULT_KINDS: tuple[FaultKind, ...] = ("throttle", "5xx", "unavailable", "timeout", "outage", "ambiguous")

# botocore service ids (hyphenized) of the clients DeployGuard creates, by the name clients.client() takes
SERVICES = {
    "cloudwatch": "cloudwatch",
    "dynamodb": "dynamodb",
    "sns": "sns",
    "lambda": "lambda",
    "codedeploy": "codedeploy",
    "stepfunctions": "sfn",
    "sqs": "sqs",
    "ssm": "ssm",
    "secretsmanager": "secrets-manager",
    "ecs": "ecs",
    "task": "task",  # a Step Functions task's invocation of its Lambda function (not a boto3 call of ours)
}
_UNREACHABLE = "http://deployguard-fault.invalid/"  # an address moto does not serve: the request goes nowhere
_THROTTLE_CODES = {"lambda": "TooManyRequestsException", "sns": "Throttling", "dynamodb": "ThrottlingException"}
_INTERNAL_CODES = {"dynamodb": "InternalServerError", "sns": "InternalError", "sqs": "InternalError"}
_UNAVAILABLE_CODES = {"sns": "ServiceUnavailable", "sqs": "ServiceUnavailable"}
_SERVICE_NAMES = {service_id: name for name, service_id in SERVICES.items()}


@dataclass(frozen=True)
class Fault:
    service: str  # a key of SERVICES
    kind: FaultKind
    start: datetime
    seconds: float
    operations: frozenset[str] | None = None  # botocore operation names (PutItem ...); None: all

    def active(self, service_id: str, operation: str, now: datetime) -> bool:
        return (
            SERVICES[self.service] == service_id
            and (self.operations is None or operation in self.operations or service_id == "task")
            and self.start <= now < self.start + timedelta(seconds=self.seconds)
        )


@dataclass
class Plan:
    """The faults of one operation attempt by attempt: ``faults[i]`` answers its i-th attempt (of
    those ``when`` accepts), later ones ``then`` (None: the service answers)."""

    service: str  # a key of SERVICES
    operation: str | None  # a botocore operation name; None: every operation
    faults: list[FaultKind]
    then: FaultKind | None = None
    when: Callable[[Any], bool] | None = None  # (the botocore request) -> whether this plan answers it
    attempts: int = 0
    injected: int = 0

    def next_kind(self, service_id: str, operation: str, request: Any) -> FaultKind | None:
        if SERVICES[self.service] != service_id or self.operation not in (None, operation):
            return None
        if self.when is not None and not self.when(request):
            return None
        self.attempts += 1
        kind = self.faults.pop(0) if self.faults else self.then
        if kind is not None:
            self.injected += 1
        return kind


@dataclass
class FaultInjector:
    """Inject ``faults`` into every AWS call DeployGuard makes while installed (a context manager)."""

    clock: SimulatedClock
    faults: list[Fault] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)  # "service:Operation:kind" -> count
    published: list[dict[str, Any]] = field(default_factory=list)  # SNS messages that reached the topic
    calls: Counter[str] = field(default_factory=Counter)  # "service:Operation" -> attempts seen
    _armed: list[tuple[str, str, str, FaultKind, float, frozenset[str] | None]] = field(default_factory=list)
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inside: threading.local = field(default_factory=threading.local)  # .depth: function invocations running
    _functions_only: bool = False  # after watch(): only the calls DeployGuard's functions make

    def _in_function(self) -> bool:
        return not self._functions_only or getattr(self._inside, "depth", 0) > 0

    def advance(self, seconds: float) -> None:
        """Let simulated time pass; what the clock's listeners do meanwhile (the harness's traffic,
        schedules firing) is not a call of the function that waits, so it is not faulted as one."""
        depth = getattr(self._inside, "depth", 0)
        self._inside.depth = 0
        try:
            self.clock.advance(seconds)
        finally:
            self._inside.depth = depth

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def at(self, service: str, kind: FaultKind, seconds: float, *operations: str, after: float = 0.0) -> Fault:
        """A fault from now (+ ``after`` seconds) for ``seconds`` of simulated time."""
        start = clock.now() + timedelta(seconds=after)
        return self.add(Fault(service, kind, start, seconds, frozenset(operations) if operations else None))

    def on(
        self,
        service: str,
        operation: str | None,
        faults: Iterable[FaultKind],
        then: FaultKind | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> Plan:
        """Answer the attempts of ``operation`` of ``service`` (None: every operation) with ``faults``
        one by one, then with ``then`` (None: the service answers), whatever the time."""
        plan = Plan(service, operation, list(faults), then, when)
        with self._lock:
            self.plans.append(plan)
        return plan

    def clear(self) -> None:
        """No fault any more (the service recovers); the injector stays installed."""
        with self._lock:
            self.faults.clear()
            self.plans.clear()
            self._armed.clear()

    def arm(self, function: str, action: str, service: str, kind: FaultKind, seconds: float, *operations: str) -> None:
        """Start this fault when ``function`` (a function name) is next invoked with ``action``
        (``event["action"]``, ``*``: any event); needs :meth:`watch`."""
        with self._lock:
            self._armed.append((function, action, service, kind, seconds, frozenset(operations) or None))

    def watch(self, registry: FunctionRegistry) -> Callable[[], None]:
        """Watch the Lambda invocations the embedded AWS runs: armed faults start, task faults fail
        them. From then on only the AWS calls made inside function invocations are faulted (not the
        harness's). Returns the undo (also run by :meth:`uninstall`)."""
        original = registry.invoke
        self._functions_only = True

        def invoke(name: str, arn: str, event: Any) -> tuple[Any, bool]:
            self._inside.depth = getattr(self._inside, "depth", 0) + 1
            try:
                return faulted(name, arn, event)
            finally:
                self._inside.depth -= 1

        def faulted(name: str, arn: str, event: Any) -> tuple[Any, bool]:
            action = event.get("action") if isinstance(event, dict) else None
            now = clock.now()
            with self._lock:
                for armed in [a for a in self._armed if a[0] == name and a[1] in ("*", action)]:
                    self._armed.remove(armed)
                    self.faults.append(Fault(armed[2], armed[3], now, armed[4], armed[5]))
                fault = next((f for f in self.faults if f.active("task", str(action or "*"), now)), None)
                if fault is not None and not (fault.operations is None or name in fault.operations or
                                              action in fault.operations):  # fmt: skip
                    fault = None
                if fault is not None:
                    self.injected[f"task:{action}:{fault.kind}"] += 1
            if fault is None:
                return original(name, arn, event)
            if fault.kind in ("timeout", "ambiguous"):  # the handler ran; its answer never came back
                original(name, arn, event)
                return {"errorType": "Sandbox.Timedout", "errorMessage": "injected: task timed out"}, True
            error = "Lambda.TooManyRequestsException" if fault.kind == "throttle" else "Lambda.ServiceException"
            return {"errorType": error, "errorMessage": f"injected {fault.kind}"}, True

        registry.invoke = invoke  # type: ignore[method-assign]

        def undo() -> None:
            registry.invoke = original  # type: ignore[method-assign]

        self._undo.append(undo)
        return undo

    def __enter__(self) -> FaultInjector:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def install(self, services: Iterable[str] = SERVICES) -> None:
        for service in services:
            if service == "task":
                continue
            events = [clients.client(service).meta.events, clients.client(service, retries=False).meta.events]
            if service == "dynamodb":
                events.append(clients.resource("dynamodb").meta.client.meta.events)
            for emitter in events:
                emitter.register_first("before-send", self._before_send)
                self._undo.append(functools.partial(emitter.unregister, "before-send", self._before_send))
        self._undo.append(simulated_botocore_backoff(self.advance))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def _before_send(self, request: Any, event_name: str = "", **_: Any) -> AWSResponse | None:
        service_id, operation = event_name.split(".", 2)[1:]
        if not self._in_function():
            return None
        now = clock.now()
        with self._lock:
            self.calls[f"{service_id}:{operation}"] += 1
            kind = next((k for p in self.plans if (k := p.next_kind(service_id, operation, request))), None)
            if kind is None:
                fault = next((f for f in self.faults if f.active(service_id, operation, now)), None)
                kind = fault.kind if fault is not None else None
            if kind in (None, "ambiguous") and (service_id, operation) == ("sns", "Publish"):
                self.published.append(_published_message(request.body))
            if kind is None:
                return None
            service = _SERVICE_NAMES[service_id]
            self.injected[f"{service}:{operation}:{kind}"] += 1
        if kind == "outage":
            raise EndpointConnectionError(endpoint_url=request.url)
        if kind == "timeout":
            self.advance(clients.client(service).meta.config.read_timeout or 60)
            raise ReadTimeoutError(endpoint_url=request.url)
        if kind != "ambiguous":
            request.url = _UNREACHABLE  # moto must not apply what AWS refused
        if kind in ("5xx", "ambiguous"):
            status, code = 500, _INTERNAL_CODES.get(service_id, "InternalFailure")
        elif kind == "unavailable":
            status, code = 503, _UNAVAILABLE_CODES.get(service_id, "ServiceUnavailableException")
        else:
            status, code = _throttle(service_id)
        return _error_response(request, service_id, status, code)


def _published_message(body: Any) -> dict[str, Any]:
    form = urllib.parse.parse_qs(body.decode() if isinstance(body, bytes) else str(body or ""))
    try:
        message = json.loads(form.get("Message", ["{}"])[0])
    except json.JSONDecodeError:
        message = {}
    return {"topic": form.get("TopicArn", [""])[0], **(message if isinstance(message, dict) else {})}


def _throttle(service_id: str) -> tuple[int, str]:
    code = _THROTTLE_CODES.get(service_id, "ThrottlingException")
    return (429 if service_id == "lambda" else 400), code


def _error_response(request: Any, service_id: str, status: int, code: str) -> AWSResponse:
    message = f"injected {code}"
    headers = {"x-amzn-RequestId": "fault-injected", "x-amzn-ErrorType": code}
    if service_id == "sns" or (service_id == "sqs" and "x-amz-json" not in str(request.headers.get("Content-Type"))):
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>fault-injected</RequestId></ErrorResponse>"
        ).encode()
        headers["Content-Type"] = "text/xml"
    elif "cbor" in str(request.headers.get("Content-Type", "")) or "rpc-v2-cbor" in str(request.url):
        body = _cbor_text_map({"__type": code, "message": message})
        headers.update({"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"})
    else:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers["Content-Type"] = "application/x-amz-json-1.0"
    return AWSResponse(request.url, status, headers, _Raw(body))


class _Raw:
    """The raw body botocore reads from an AWSResponse."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._body

    def read(self, *_: Any) -> bytes:
        body, self._body = self._body, b""
        return body


def _cbor_text_map(values: dict[str, str]) -> bytes:
    """A CBOR map of short text strings (what a Smithy RPC v2 CBOR error body is)."""

    def head(major: int, length: int) -> bytes:
        if length < 24:
            return bytes([major << 5 | length])
        if length < 256:
            return bytes([major << 5 | 24, length])
        return bytes([major << 5 | 25]) + length.to_bytes(2, "big")

    out = head(5, len(values))
    for key, value in values.items():
        for text in (key, value):
            data = text.encode()
            out += head(3, len(data)) + data
    return out


def simulated_botocore_backoff(sleep: Callable[[float], Any]) -> Callable[[], None]:
    """botocore's retry back-off sleeps and adaptive client-side pacing on the simulated clock; returns the undo.

    On AWS these are real waits; on the embedded AWS they advance simulated time, as Step
    Functions' retry back-offs do, so a fault costs simulated seconds, not wall seconds.
    """
    from botocore import endpoint

    original_time = endpoint.time
    endpoint.time = types.SimpleNamespace(sleep=sleep, time=original_time.time)
    paced = client_pacing.without_waits()  # and afterwards while the clock is simulated (client_pacing)

    def undo() -> None:
        endpoint.time = original_time
        paced()

    return undo


def body_mentions(text: str) -> Callable[[Any], bool]:
    """A plan's ``when``: only requests whose body contains ``text`` (one execution id, one table key)."""
    return lambda request: text.encode() in (request.body or b"")


@contextmanager
def never_answering_server(path: str = "/never-answers") -> Iterator[str]:
    """A URL on 127.0.0.1 whose server accepts the connection and never answers: a timeout comes
    from it, whatever the machine's speed, not from racing a short timer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # connections complete in the backlog; nothing ever reads or answers them
        yield f"http://127.0.0.1:{server.getsockname()[1]}{path}"
