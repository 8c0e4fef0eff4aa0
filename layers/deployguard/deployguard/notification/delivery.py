"""Delivery of one outbound message with retries, backoff and ``Retry-After``.

- timeouts, connection errors, HTTP 408 and 5xx are retried with exponential
  backoff and jitter, up to ``max_attempts`` and within ``deadline_seconds`` (or the
  caller's ``deadline_at``, the router's time budget, if sooner): no wait and no read
  outlasts it, nor an answer sent a byte at a time (each read well inside the read timeout):
  a watchdog shuts the attempt's socket down at the deadline;
- HTTP 429 (and 503) wait what ``Retry-After`` says (seconds or an HTTP date); a wait
  longer than ``max_retry_after_seconds`` ends the delivery (the router dead-letters it);
- other 4xx and every 3xx fail at once: redirects are never followed (no SSRF hop);
- the URL is checked and its host resolved once with :func:`check_outbound` before the
  first attempt; every attempt connects to that checked address (:func:`pinned_session`),
  so a second DNS answer cannot send the message elsewhere.

``sleep``, ``monotonic`` and ``random`` are injectable so tests never really wait.
Error texts are built here and never contain the URL (webhook URLs are secrets).
"""

from __future__ import annotations

import contextlib
import logging
import random as _random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from botocore.exceptions import BotoCoreError, ClientError

from deployguard import clock
from deployguard.aws import sns
from deployguard.exceptions import ConfigError
from deployguard.notification.base import HttpMessage, OutboundMessage, SnsMessage
from deployguard.notification.settings import DeliverySettings
from deployguard.notification.urlsafety import CheckedTarget, Resolver, check_outbound

USER_AGENT = "DeployGuard-Notifier/1"


class _NoRequestLines(logging.Filter):
    """urllib3 logs every request line, path included, at DEBUG: webhook paths are secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _NoRequestLines) for f in _URLLIB3_LOG.filters):
    _URLLIB3_LOG.addFilter(_NoRequestLines())
_RETRYABLE_SNS_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "InternalError",
    "ServiceUnavailable",
}


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    attempts: int
    latency_ms: float
    status_code: int | None = None
    error: str | None = None
    deadline_reached: bool = False  # ended by the deadline (the caller's budget or deadline_seconds), not an answer


@dataclass(frozen=True)
class _Attempt:
    ok: bool
    retryable: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    deadline_reached: bool = False


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or clock.now())).total_seconds())


class _Watchdog:
    """Shuts down the sockets of one HTTP attempt when it fires (a blocked read then ends at once).

    It keeps its own duplicate of each socket's descriptor: on HTTPS, urllib3 wraps the TCP socket it was
    told of in TLS, which detaches that object (``fileno()`` -1, ``shutdown()`` fails), so shutting the
    object down would not reach the connection; a shutdown through the duplicate does (it acts on the
    connection, not on one descriptor), without touching the TLS object a reader may be blocked in.
    :meth:`close` closes the duplicates (each holds the connection open until then)."""

    def __init__(self) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def watch(self, sock: socket.socket) -> None:
        try:
            own = sock.dup()
        except OSError:  # no descriptor left: the object itself (enough for plain HTTP)
            own = sock
        with self._lock:
            self._sockets.append(own)
            if self.fired:
                _shut(own)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shut(sock)

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already
        sock.shutdown(socket.SHUT_RDWR)


class Deliverer:
    def __init__(
        self,
        settings: DeliverySettings | None = None,
        allowlist: Iterable[str] = (),
        local_mode: bool = False,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        resolver: Resolver | None = None,
    ) -> None:
        self.settings = settings or DeliverySettings()
        self.allowlist = list(allowlist)
        self.local_mode = local_mode
        self.sleep = sleep
        self.monotonic = monotonic
        self.random = random
        self.resolver = resolver

    def backoff(self, attempt: int) -> float:
        """Wait before attempt ``attempt + 1``: exponential, capped, with jitter in [50%, 100%]."""
        delay = min(self.settings.backoff_max_seconds, self.settings.backoff_base_seconds * 2 ** (attempt - 1))
        return delay * (0.5 + self.random() / 2)

    def deliver(
        self, message: OutboundMessage, field: str | None = None, deadline_at: float | None = None
    ) -> DeliveryResult:
        """One message, retried; ``deadline_at`` (on ``monotonic``) ends it sooner than ``deadline_seconds``."""
        started = self.monotonic()
        target: CheckedTarget | None = None
        ends_at = started + self.settings.deadline_seconds
        if deadline_at is not None and deadline_at < ends_at:
            ends_at = deadline_at
        budget = ends_at - started
        if isinstance(message, HttpMessage):
            try:
                target = check_outbound(
                    message.url.get_secret_value(), self.allowlist, self.local_mode, field=field, resolver=self.resolver
                )
            except ConfigError as exc:
                return DeliveryResult(ok=False, attempts=0, latency_ms=0.0, error=str(exc))
        attempts = 0
        last = _Attempt(ok=False, retryable=False, error="not attempted")
        while attempts < self.settings.max_attempts:
            left = ends_at - self.monotonic()
            if left <= 0:
                reached = f"delivery deadline of {budget:.0f}s reached"
                last = _Attempt(ok=False, retryable=False, status_code=last.status_code, deadline_reached=True,
                                error=f"{last.error}; {reached}" if attempts else reached)  # fmt: skip
                break
            attempts += 1
            if isinstance(message, HttpMessage):
                assert target is not None
                last = self._http(message, target, left)
            else:
                last = self._sns(message)
            if not last.ok and self.monotonic() >= ends_at:  # cut by the deadline (a read shortened to it)
                last = replace(last, deadline_reached=True)
            if last.ok or not last.retryable or attempts >= self.settings.max_attempts:
                break
            wait = self.backoff(attempts) if last.retry_after is None else last.retry_after
            if last.retry_after is not None and last.retry_after > self.settings.max_retry_after_seconds:
                last = _Attempt(
                    ok=False,
                    retryable=False,
                    status_code=last.status_code,
                    error=f"{last.error}; Retry-After {last.retry_after:.0f}s exceeds "
                    f"{self.settings.max_retry_after_seconds:.0f}s",
                )
                break
            if self.monotonic() + wait > ends_at:
                last = _Attempt(
                    ok=False,
                    retryable=False,
                    status_code=last.status_code,
                    error=f"{last.error}; delivery deadline of {budget:.0f}s reached",
                    deadline_reached=True,
                )
                break
            self.sleep(wait)
        latency = (self.monotonic() - started) * 1000
        return DeliveryResult(
            ok=last.ok,
            attempts=attempts,
            latency_ms=round(latency, 3),
            status_code=last.status_code,
            error=None if last.ok else last.error,
            deadline_reached=not last.ok and last.deadline_reached,
        )

    def _http(self, message: HttpMessage, target: CheckedTarget, left: float) -> _Attempt:
        import requests  # at the first HTTP send, not with the module (cold start)

        from deployguard.notification.pinned_http import pinned_session

        headers = {"User-Agent": USER_AGENT, **message.headers}
        # the read timeout bounds each read, not the answer: a receiver that sends a byte now and then would
        # hold the attempt for ever; the watchdog shuts its sockets down when the attempt's time is up
        watchdog = _Watchdog()
        timer = threading.Timer(left, watchdog.fire)
        timer.daemon = True
        try:
            with pinned_session(target, on_socket=watchdog.watch) as session:
                timer.start()
                resp = session.post(
                    target.url,
                    data=message.body,
                    headers=headers,
                    timeout=(
                        min(self.settings.connect_timeout_seconds, left),
                        min(self.settings.read_timeout_seconds, left),
                    ),
                    allow_redirects=False,
                )
        except requests.RequestException as exc:
            if watchdog.fired:
                return _Attempt(
                    ok=False,
                    retryable=True,
                    error="no complete answer before the delivery deadline",
                    deadline_reached=True,
                )
            if isinstance(exc, requests.Timeout):
                return _Attempt(ok=False, retryable=True, error="timed out")
            if isinstance(exc, requests.ConnectionError):
                return _Attempt(ok=False, retryable=True, error="connection failed")
            return _Attempt(ok=False, retryable=False, error=f"request failed ({type(exc).__name__})")
        finally:
            timer.cancel()
            watchdog.close()  # the session is closed: its connections with it
        if watchdog.fired:  # what was read may be a cut answer ("HTTP/1.1 200 O" parses as a 200): not one
            resp.close()
            return _Attempt(ok=False, retryable=True, error="no complete answer before the delivery deadline",
                            deadline_reached=True)  # fmt: skip
        with resp:
            code = resp.status_code
            if 200 <= code < 300:
                return _Attempt(ok=True, retryable=False, status_code=code)
            if 300 <= code < 400:
                return _Attempt(
                    ok=False, retryable=False, status_code=code, error=f"HTTP {code}: redirect not followed"
                )
            if code in (429, 503):
                return _Attempt(
                    ok=False,
                    retryable=True,
                    status_code=code,
                    error=f"HTTP {code}",
                    retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                )
            if code == 408 or code >= 500:
                return _Attempt(ok=False, retryable=True, status_code=code, error=f"HTTP {code}")
            return _Attempt(ok=False, retryable=False, status_code=code, error=f"HTTP {code}")

    def _sns(self, message: SnsMessage) -> _Attempt:
        try:
            sns.publish(message.topic_arn, message.body, message.subject, message.attributes)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            retryable = code in _RETRYABLE_SNS_CODES or (isinstance(status, int) and status >= 500)
            return _Attempt(ok=False, retryable=retryable, status_code=status, error=f"SNS {code}")
        except BotoCoreError as exc:
            return _Attempt(ok=False, retryable=True, error=f"SNS {type(exc).__name__}")
        return _Attempt(ok=True, retryable=False, status_code=200)
