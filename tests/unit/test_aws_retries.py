"""Throttled AWS calls are retried with backoff, against a real HTTP endpoint on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest

from deployguard.aws import clients
from deployguard.storage.repository import DeploymentRepository


class _ThrottlingDynamoDB(BaseHTTPRequestHandler):
    throttles_left = 2
    requests = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cls = type(self)
        cls.requests += 1
        if cls.throttles_left > 0:
            cls.throttles_left -= 1
            body = {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "Rate exceeded"}
            status = 400
        else:
            body = {}
            status = 200
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def backoffs() -> Iterator[list[float]]:
    """botocore's retry back-off sleeps, recorded instead of slept (about 3 s of real waiting otherwise)."""
    from deployguard_local.chaos.faults import simulated_botocore_backoff

    slept: list[float] = []
    undo = simulated_botocore_backoff(slept.append)
    yield slept
    undo()


@pytest.fixture
def throttling_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_ThrottlingDynamoDB]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ThrottlingDynamoDB)
    Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()  # a quick shutdown
    monkeypatch.setenv("DEPLOYGUARD_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    clients.reset()
    _ThrottlingDynamoDB.throttles_left, _ThrottlingDynamoDB.requests = 2, 0
    yield _ThrottlingDynamoDB
    server.shutdown()
    clients.reset()


def test_throttled_calls_are_retried_not_dropped(
    throttling_endpoint: type[_ThrottlingDynamoDB], backoffs: list[float]
) -> None:
    repository = DeploymentRepository(table_name="t")
    assert repository.find_deployment("d-1") is None  # answered after two throttles
    assert throttling_endpoint.requests == 3
    assert len(backoffs) == 2 and all(b > 0 for b in backoffs)  # a back-off before each retry


def test_clients_use_adaptive_retries() -> None:
    clients.reset()
    config = clients.client("sqs").meta.config
    assert config.retries["mode"] == "adaptive"
    assert config.retries["total_max_attempts"] >= 5
