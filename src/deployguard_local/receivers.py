"""Local HTTP receivers for the demo and the tests: Slack, Teams, PagerDuty, webhook.

Each is a real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread) that
answers like the service it stands for (Slack ``200 ok``, Teams ``200 1``, PagerDuty
``202 {"status": "success"}``, webhook ``200`` after checking the HMAC signature),
prints a one-line summary of what arrived and counts deliveries per channel.

A receiver can be made to misbehave: ``error`` (HTTP 500 always), ``throttle``
(HTTP 429 with ``Retry-After``), ``flaky`` (the first ``failures`` requests get
``status``: 5xx, or 429 with ``Retry-After``),
``slow`` (answers after ``delay_seconds``) or ``down`` (a closed port).

    with local_receivers({"slack": Behaviour(mode="down")}) as receivers:
        receivers.urls["slack"]      # http://127.0.0.1:PORT/services/...
        ...
        print(receivers.summary())  # deliveries per channel
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from deployguard.notification.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

KINDS = ("slack", "teams", "pagerduty", "webhook")
Kind = Literal["slack", "teams", "pagerduty", "webhook"]
Mode = Literal["ok", "error", "throttle", "flaky", "slow", "down"]

_PATHS = {
    "slack": "/services/T0LOCAL/B0LOCAL/local-slack-token",
    "teams": "/webhookb2/local-teams-token",
    "pagerduty": "/v2/enqueue",
    "webhook": "/deployguard/events",
}


@dataclass
class Behaviour:
    mode: Mode = "ok"
    status: int = 500
    retry_after: str = "1"
    failures: int = 2
    delay_seconds: float = 2.0
    slow_requests: int | None = None  # slow: only the first N requests (None: all)


@dataclass(frozen=True)
class Received:
    kind: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


def summarize(kind: str, payload: Any, headers: Mapping[str, str] | None = None) -> str:
    """One line telling what a channel received."""
    if not isinstance(payload, dict):
        return f"[{kind}] {type(payload).__name__} payload"
    if kind == "slack":
        return f"[slack] {payload.get('text', '')} ({len(payload.get('blocks', []))} blocks)"
    if kind == "teams":
        attachments = payload.get("attachments") or [{}]
        body = (attachments[0].get("content") or {}).get("body") or [{}]
        return f"[teams] {body[0].get('text', '')} (adaptive card)"
    if kind == "pagerduty":
        summary = (payload.get("payload") or {}).get("summary", "")
        return f"[pagerduty] {payload.get('event_action')} {payload.get('dedup_key')} {summary}".rstrip()
    event = payload.get("event") or {}
    event_type = event.get("event_type") or payload.get("type")
    return f"[webhook] {event_type}: {payload.get('summary', '')}"


class LocalReceiver:
    def __init__(
        self,
        kind: str,
        behaviour: Behaviour,
        signing_key: str | None = None,
        echo: Callable[[str], None] | None = print,
    ) -> None:
        self.kind = kind
        self.behaviour = behaviour
        self.signing_key = signing_key
        self.echo = echo
        self.received: list[Received] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{_PATHS.get(self.kind, '/')}"

    @property
    def delivered(self) -> int:
        with self._lock:
            return sum(1 for r in self.received if 200 <= r.status < 300)

    def start(self) -> None:
        if self.behaviour.mode == "down":
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            return
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"receiver-{self.kind}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _respond(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests += 1
            number = self.requests
        b = self.behaviour
        if b.mode == "error":
            return b.status, {}, b"error"
        if b.mode == "throttle":
            return 429, {"Retry-After": b.retry_after}, b"rate limited"
        if b.mode == "flaky" and number <= b.failures:
            status = b.status if b.status in (408, 429) or b.status >= 500 else 503
            return status, ({"Retry-After": b.retry_after} if status == 429 else {}), b"unavailable"
        if b.mode == "slow" and (b.slow_requests is None or number <= b.slow_requests):
            time.sleep(b.delay_seconds)
        if self.kind == "webhook" and self.signing_key is not None:
            ok = verify_signature(
                self.signing_key,
                headers.get(TIMESTAMP_HEADER, ""),
                body,
                headers.get(SIGNATURE_HEADER, ""),
                tolerance_seconds=10**11,  # the demo's simulated clock is not the wall clock
            )
            if not ok:
                return 401, {}, b"bad signature"
        if self.kind == "pagerduty":
            try:
                dedup = json.loads(body).get("dedup_key")
            except (ValueError, AttributeError):
                return 400, {"Content-Type": "application/json"}, b'{"status":"invalid event"}'
            reply = {"status": "success", "message": "Event processed", "dedup_key": dedup}
            return 202, {"Content-Type": "application/json"}, json.dumps(reply).encode()
        if self.kind == "teams":
            return 200, {}, b"1"
        return 200, {}, b"ok"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k: v for k, v in self.headers.items()}
                status, extra, reply = receiver._respond(headers, body)
                with receiver._lock:
                    receiver.received.append(Received(receiver.kind, self.path, headers, body, status))
                if receiver.echo is not None and 200 <= status < 300:
                    try:
                        line = summarize(receiver.kind, json.loads(body), headers)
                    except ValueError:
                        line = f"[{receiver.kind}] non-JSON body of {len(body)} bytes"
                    receiver.echo(line)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler


@dataclass
class LocalReceivers:
    receivers: dict[str, LocalReceiver] = field(default_factory=dict)

    @property
    def urls(self) -> dict[str, str]:
        return {kind: r.url for kind, r in self.receivers.items()}

    def counts(self) -> dict[str, int]:
        """Successful deliveries per channel kind."""
        return {kind: r.delivered for kind, r in self.receivers.items()}

    def received(self, kind: str) -> list[Received]:
        return list(self.receivers[kind].received)

    def summary(self) -> str:
        parts = [f"{kind}={count}" for kind, count in self.counts().items()]
        down = [k for k, r in self.receivers.items() if r.behaviour.mode == "down"]
        text = "deliveries per channel: " + ", ".join(parts)
        return text + (f" (down: {', '.join(down)})" if down else "")


@contextmanager
def local_receivers(
    behaviours: Mapping[str, Behaviour] | None = None,
    kinds: tuple[str, ...] = KINDS,
    signing_key: str | None = None,
    echo: Callable[[str], None] | None = print,
) -> Iterator[LocalReceivers]:
    """Start one receiver per kind on free ports of 127.0.0.1; stop them on exit."""
    behaviours = behaviours or {}
    group = LocalReceivers()
    try:
        for kind in kinds:
            receiver = LocalReceiver(kind, behaviours.get(kind, Behaviour()), signing_key, echo)
            receiver.start()
            group.receivers[kind] = receiver
        yield group
    finally:
        for receiver in group.receivers.values():
            receiver.stop()
