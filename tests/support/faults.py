"""Faults injected into real boto3 clients through botocore's event system.

A handler on ``before-send.<service>.<Operation>`` answers an HTTP attempt instead of
moto: a throttling error or a 5xx the service never saw, or, for "written but answered
500", the request served by moto (the write lands) with its answer replaced by a 500.
Every other attempt goes on to moto untouched, so the code under test runs its real call
path (serialisation, botocore's retries when it has them, error parsing).

botocore runs every ``before-send`` handler and keeps the first answer, so moto's handler
would still serve a request a fault answered; a fault that must not land points the
attempt at an address no service matches while moto looks at it, and a last handler puts
the address back for the next attempt (botocore reuses the request when it retries).
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse

Fault = Callable[[Any, Any], AWSResponse | None]  # (request, client) -> an answer, or None: let it through


class _Raw(io.BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


def response(request: Any, status: int, body: dict[str, Any] | None = None) -> AWSResponse:
    data = json.dumps(body or {}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "Content-Length": str(len(data))}
    return AWSResponse(request.url, status, headers, _Raw(data))


def throttled(request: Any, _: Any) -> AWSResponse:
    return response(request, 400, {"__type": "ThrottlingException", "message": "Rate exceeded"})


def unavailable(request: Any, _: Any) -> AWSResponse:
    return response(request, 503, {"__type": "ServiceUnavailableException", "message": "Service Unavailable"})


def internal_error(request: Any, _: Any) -> AWSResponse:
    return response(request, 500, {"__type": "InternalServerError", "message": "Internal server error"})


def written_then_500(request: Any, _: Any) -> AWSResponse:
    """The request lands (moto serves it), and is answered 500 as if it had not."""
    return internal_error(request, None)


written_then_500.lands = True  # type: ignore[attr-defined]
_NOWHERE = "http://fault-injected.invalid/"


@dataclass
class Plan:
    """The faults of one operation: ``faults[i]`` answers attempt i; afterwards ``then`` (None: moto)."""

    faults: list[Fault]
    then: Fault | None = None
    when: Callable[[Any], bool] = lambda request: True
    attempts: int = 0
    injected: int = 0


@dataclass
class Faults:
    """Register plans on clients; undone by :meth:`clear` (or the ``faults`` context manager)."""

    handlers: list[tuple[Any, str, str]] = field(default_factory=list)

    def on(
        self,
        clients: Any,
        operation: str | None,
        faults: list[Fault],
        then: Fault | None = None,
        when: Callable[[Any], bool] = lambda request: True,
    ) -> Plan:
        """Answer the attempts of ``operation`` (None: every operation) of one client or several
        (sharing one plan: e.g. the retrying and the single-attempt client of a service)."""
        plan = Plan(list(faults), then, when)

        def handler(request: Any, **_: Any) -> AWSResponse | None:
            if not plan.when(request):
                return None
            plan.attempts += 1
            fault = plan.faults.pop(0) if plan.faults else plan.then
            if fault is None:
                return None
            answer = fault(request, None)
            if answer is not None:
                plan.injected += 1
                if not getattr(fault, "lands", False):
                    request.fault_url = request.url
                    request.url = _NOWHERE
            return answer

        def restore(request: Any, **_: Any) -> None:
            original = getattr(request, "fault_url", None)
            if original is not None:
                request.url = original
                del request.fault_url

        for client in clients if isinstance(clients, list | tuple) else [clients]:
            service = client.meta.service_model.service_id.hyphenize()
            event = f"before-send.{service}" + (f".{operation}" if operation else "")
            unique_id = f"fault-{id(plan)}-{id(client)}"
            client.meta.events.register_first(event, handler, unique_id=unique_id)
            # after moto's own handler, which is registered on the bare "before-send"
            client.meta.events.register_last("before-send", restore, unique_id=f"{unique_id}-restore")
            self.handlers += [(client, event, unique_id), (client, "before-send", f"{unique_id}-restore")]
        return plan

    def clear(self) -> None:
        """Remove every handler this object registered."""
        for client, event, unique_id in self.handlers:
            client.meta.events.unregister(event, unique_id=unique_id)
        self.handlers.clear()


@contextmanager
def faults() -> Iterator[Faults]:
    injected = Faults()
    try:
        yield injected
    finally:
        injected.clear()


def body_mentions(text: str) -> Callable[[Any], bool]:
    """Only requests whose body contains ``text`` (one execution id, one table key)."""
    return lambda request: text.encode() in (request.body or b"")


@contextmanager
def never_answering_server(path: str = "/never-answers") -> Iterator[str]:
    """A URL on 127.0.0.1 whose server accepts the connection and never answers: a timeout in a
    test comes from it, whatever the machine's speed, not from racing a short timer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # connections complete in the backlog; nothing ever reads or answers them
        yield f"http://127.0.0.1:{server.getsockname()[1]}{path}"
