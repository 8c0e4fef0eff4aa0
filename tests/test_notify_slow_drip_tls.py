"""A receiver over HTTPS that answers one byte at a time cannot hold a delivery past its deadline either.

The TLS wrap of urllib3 detaches the TCP socket the connection opened (its ``fileno()`` becomes -1), so a
watchdog that shut that socket object down did nothing on HTTPS, the scheme every real receiver uses. Real
TLS servers on 127.0.0.1, with a throwaway CA and certificate made here (trusted through
``REQUESTS_CA_BUNDLE``, which the pinned session honours; verification stays on), drip their answer a
byte every 0.2 s: the delivery ends at the invocation's budget.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from notif_support import (
    Aws,
    aws,  # noqa: F401  (the fixture)
    make_event,
)

from deployguard.models import DeliveryStatus, EventType, Severity
from deployguard.notification.dlq import DeadLetter
from deployguard.notification.settings import NotificationSettings

pytest.importorskip("cryptography.x509")
from tls_support import make_tls

BODY_DRIP = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"  # then the body, a byte at a time
DRIPS = 60  # 12 s of dripping, then the server hangs up: a delivery not cut at its 1.5 s budget takes ~12 s


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key): a CA and a certificate for IP 127.0.0.1 it signed."""
    tls = make_tls(tmp_path_factory.mktemp("tls"), ["127.0.0.1"])
    return tls.ca_file, tls.cert_file, tls.key_file


@contextmanager
def dripping_tls_server(cert_file: Path, key_file: Path) -> Iterator[str]:
    """A TLS URL whose server, after the handshake and the answer's head, sends a body byte every 0.2 s.
    (A handshake dripped a byte at a time needs no watchdog: CPython bounds the whole handshake by the
    socket's timeout, urllib3's connect timeout, at most the time left.)"""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    stop = threading.Event()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def answer_body(raw: socket.socket) -> None:
        with context.wrap_socket(raw, server_side=True) as conn:
            conn.recv(65536)  # the request (small: one read)
            conn.sendall(BODY_DRIP)
            for _ in range(DRIPS):
                if stop.wait(0.2):
                    return
                conn.sendall(b"x")

    def answer(raw: socket.socket) -> None:
        try:
            answer_body(raw)
        except (OSError, ssl.SSLError):  # the client gave up
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
        yield f"https://127.0.0.1:{server.getsockname()[1]}/services/T0/B0/drip"
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


def test_a_dripping_https_receiver_is_dead_lettered_at_the_invocation_s_budget(
    aws: Aws,  # noqa: F811
    tls_files: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca_file, cert_file, key_file = tls_files
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))  # the test CA; the certificate is still checked
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with dripping_tls_server(cert_file, key_file) as url:
        router = aws.router(_settings(url))
        event = make_event(EventType.DEPLOYMENT_FAILED, Severity.ERROR)
        started = time.monotonic()
        [record] = router.route(event, lambda: 2_000)  # 2 s left: the delivery gets 1.5 s
        took = time.monotonic() - started
    # the answer would take 1,000 s (the server gives up after 12 s); one read never waits the 2 s read timeout
    assert took < 1.5 + 2, f"the delivery took {took:.1f}s with a budget of 1.5s"
    assert record.status is DeliveryStatus.DEAD_LETTERED
    assert "before the delivery deadline" in (record.error or "")
    [letter] = [DeadLetter.model_validate_json(m["Body"]) for m in aws.dlq_messages()]
    assert letter.channel == "ops-slack" and [e.event_id for e in letter.events] == [event.event_id]


def test_an_https_receiver_that_answers_is_delivered(
    aws: Aws,  # noqa: F811
    tls_files: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control: the same TLS setup, an answer at once; verification passes with the test CA."""
    ca_file, cert_file, key_file = tls_files
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        try:
            raw, _ = server.accept()
            with context.wrap_socket(raw, server_side=True) as conn:
                request = b""
                while b"\r\n\r\n" not in request:  # the whole request, or closing would reset the connection
                    request += conn.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))[15:])
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except (OSError, ssl.SSLError):
            return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.getsockname()[1]}/services/T0/B0/ok"
        router = aws.router(_settings(url))
        [record] = router.route(make_event(EventType.DEPLOYMENT_FAILED, Severity.ERROR), lambda: 4_000)
    finally:
        server.close()
    assert record.status is DeliveryStatus.DELIVERED, record.error
