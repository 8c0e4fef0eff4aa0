"""A receiver that answers one byte at a time cannot hold a delivery past its deadline.

Real servers on 127.0.0.1 that accept the request and then send their answer one byte every 0.2 s (each
byte well inside the read timeout, so no read ever times out), never finishing within the test: the
delivery ends at the invocation's budget, on the single-channel path of ``route()`` and on the flush.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from notif_support import (
    Aws,
    aws,  # noqa: F401  (the fixture)
    make_event,
)

from deployguard.models import DeliveryStatus, EventType, Severity
from deployguard.notification.dlq import DeadLetter
from deployguard.notification.settings import NotificationSettings

BODY_DRIP = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"  # then the body, a byte at a time


@contextmanager
def dripping_server(head: bytes, drip_headers: bool) -> Iterator[str]:
    """A URL whose server answers ``head`` (at once, or a byte at a time) then a byte every 0.2 s."""
    stop = threading.Event()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the request (small: one read)
                if not drip_headers:
                    conn.sendall(head)
                for i in range(5000):
                    if stop.wait(0.2):
                        return
                    conn.sendall(head[i : i + 1] if drip_headers and i < len(head) else b"x")
            except OSError:  # the client gave up
                return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/services/T0/B0/drip"
    finally:
        stop.set()
        server.close()


def _settings(url: str) -> NotificationSettings:
    return NotificationSettings.model_validate(
        {
            "allowed_hosts": ["127.0.0.1"],
            "channels": {"ops-slack": {"type": "slack", "url": url}},
            "routes": [{"channels": ["ops-slack"]}],
            "noise": {"cooldown_seconds": 0, "default_rate_limit": {"max_messages": 1, "per_seconds": 60}},
            "delivery": {"read_timeout_seconds": 2, "connect_timeout_seconds": 1, "max_attempts": 1},
        }
    )


@pytest.mark.parametrize("drip_headers", [False, True], ids=["body", "headers"])
def test_a_dripping_receiver_is_dead_lettered_at_the_invocation_s_budget(
    aws: Aws,  # noqa: F811
    drip_headers: bool,
) -> None:
    with dripping_server(BODY_DRIP, drip_headers) as url:
        router = aws.router(_settings(url))
        event = make_event(EventType.DEPLOYMENT_FAILED, Severity.ERROR)
        started = time.monotonic()
        [record] = router.route(event, lambda: 2_000)  # 2 s left: the delivery gets 1.5 s
        took = time.monotonic() - started
    # the answer would take 1,000 s; one read never waits the 2 s read timeout
    assert took < 1.5 + 2, f"the delivery took {took:.1f}s with a budget of 1.5s"
    assert record.status is DeliveryStatus.DEAD_LETTERED
    assert "before the delivery deadline" in (record.error or "")
    [letter] = [DeadLetter.model_validate_json(m["Body"]) for m in aws.dlq_messages()]
    assert letter.channel == "ops-slack" and [e.event_id for e in letter.events] == [event.event_id]


def test_a_dripping_receiver_does_not_hold_the_digest_flush_past_its_budget(aws: Aws) -> None:  # noqa: F811
    with dripping_server(BODY_DRIP, drip_headers=False) as url:
        router = aws.router(_settings(url))
        router.route(make_event(EventType.CANARY_STEP_ADVANCED, Severity.INFO), lambda: 1_000)  # sent (cut)
        held = make_event(EventType.CANARY_STEP_ADVANCED, Severity.INFO, details={"step_index": 2})
        [record] = router.route(held, lambda: 4_000)
        assert record.status is DeliveryStatus.SUPPRESSED and len(router.noise.held("ops-slack")) == 1
        started = time.monotonic()
        kept = router.flush_digests(force=True, remaining_ms=lambda: 2_000)  # 1.5 s of the 120 s deadline
        took = time.monotonic() - started
    assert took < 1.5 + 2, f"the flush took {took:.1f}s with a budget of 1.5s"
    assert kept == [] and len(router.noise.held("ops-slack")) == 1  # held for the next flush
