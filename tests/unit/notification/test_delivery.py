"""Delivery against a real HTTP server on 127.0.0.1 (pytest-httpserver); no real sleeping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

from deployguard.notification.base import HttpMessage
from deployguard.notification.delivery import Deliverer, parse_retry_after
from deployguard.notification.settings import DeliverySettings


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def _deliverer(fake: FakeTime, **settings: float) -> Deliverer:
    return Deliverer(
        DeliverySettings.model_validate(settings),
        allowlist=["localhost", "127.0.0.1"],  # loopback receivers: explicit opt-in, local mode only
        local_mode=True,
        sleep=fake.sleep,
        monotonic=fake.monotonic,
        random=lambda: 1.0,
    )


def _message(server: HTTPServer, path: str = "/hook") -> HttpMessage:
    return HttpMessage.json(SecretStr(server.url_for(path)), {"text": "hello"})


def test_success_first_time(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST", json={"text": "hello"}).respond_with_data("ok")
    fake = FakeTime()
    result = _deliverer(fake).deliver(_message(httpserver))
    assert (result.ok, result.attempts, result.status_code, fake.sleeps) == (True, 1, 200, [])
    request, _ = httpserver.log[0]
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("DeployGuard")


def test_5xx_is_retried_with_exponential_backoff(httpserver: HTTPServer) -> None:
    for status in (500, 502):
        httpserver.expect_ordered_request("/hook").respond_with_data("boom", status=status)
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    fake = FakeTime()
    result = _deliverer(fake, backoff_base_seconds=0.5).deliver(_message(httpserver))
    assert (result.ok, result.attempts) == (True, 3)
    assert fake.sleeps == [0.5, 1.0]


def test_429_honours_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/hook").respond_with_data("slow down", status=429, headers={"Retry-After": "7"})
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    fake = FakeTime()
    result = _deliverer(fake).deliver(_message(httpserver))
    assert result.ok and fake.sleeps == [7.0]


def test_retry_after_longer_than_the_limit_gives_up(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("later", status=429, headers={"Retry-After": "3600"})
    fake = FakeTime()
    result = _deliverer(fake, max_retry_after_seconds=60).deliver(_message(httpserver))
    assert not result.ok and result.attempts == 1 and fake.sleeps == []
    assert result.error is not None and "Retry-After 3600s exceeds 60s" in result.error


def test_persistent_5xx_exhausts_attempts(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("down", status=503)
    fake = FakeTime()
    result = _deliverer(fake, max_attempts=3).deliver(_message(httpserver))
    assert (result.ok, result.attempts, result.status_code, result.error) == (False, 3, 503, "HTTP 503")
    assert len(httpserver.log) == 3


def test_4xx_is_not_retried_and_redirects_are_not_followed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/bad").respond_with_data("no", status=400)
    httpserver.expect_request("/moved").respond_with_data(
        "", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    fake = FakeTime()
    assert _deliverer(fake).deliver(_message(httpserver, "/bad")).attempts == 1
    moved = _deliverer(fake).deliver(_message(httpserver, "/moved"))
    assert not moved.ok and moved.attempts == 1 and "redirect not followed" in (moved.error or "")
    assert len(httpserver.log) == 2


class _FirstRequestNeverAnswered:
    """A real HTTP server on 127.0.0.1 that never answers its first request and answers the rest at once."""

    def __init__(self) -> None:
        self.requests = 0
        self.answered = 0
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests += 1
                if owner.requests == 1:
                    owner.release.wait(timeout=30)  # never answered while the client waits
                    return
                owner.answered += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/hook"

    def __enter__(self) -> _FirstRequestNeverAnswered:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_timeout_is_retried() -> None:
    # the first attempt times out because its server never answers, not because a 50 ms timer
    # beat a slow one; the second is answered at once, well inside a read timeout of 1 s
    with _FirstRequestNeverAnswered() as server:
        fake = FakeTime()
        message = HttpMessage.json(SecretStr(server.url), {"text": "hello"})
        result = _deliverer(fake, read_timeout_seconds=1).deliver(message)
        assert result.ok and result.attempts == 2 and len(fake.sleeps) == 1
        assert (server.requests, server.answered) == (2, 1)


def test_connection_refused_is_retried_then_fails() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeTime()
    message = HttpMessage.json(SecretStr(f"http://127.0.0.1:{port}/services/secret-token"), {"x": 1})
    result = _deliverer(fake, max_attempts=2).deliver(message)
    assert (result.ok, result.attempts, result.error) == (False, 2, "connection failed")


def test_deadline_stops_retrying(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("down", status=500)
    fake = FakeTime()
    result = _deliverer(fake, max_attempts=10, backoff_base_seconds=10, deadline_seconds=25).deliver(
        _message(httpserver)
    )
    assert not result.ok and "deadline" in (result.error or "") and sum(fake.sleeps) <= 25


def test_unsafe_url_is_never_called(httpserver: HTTPServer) -> None:
    deliverer = Deliverer(DeliverySettings(), allowlist=["hooks.slack.com"], local_mode=False)
    result = deliverer.deliver(_message(httpserver))
    assert not result.ok and result.attempts == 0 and "https is required" in (result.error or "")
    assert httpserver.log == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (None, None), ("soon", None), ("", None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
