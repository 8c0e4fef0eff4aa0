"""The CLI answers errors in one line with a hint; a traceback only with --debug."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from deployguard_local import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def retries_without_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients still retry a refused connection (8 attempts, the product's retry mode), without sleeping the
    jittered back-off between them (up to 6 s of real time a call)."""
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


def _closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_endpoint_is_one_line(capsys: pytest.CaptureFixture[str]):
    port = _closed_port()
    code = cli.main(
        ["invoke", "AssessorFunction", "--event", str(REPO / "events" / "schedule.json"),
         "--endpoint-url", f"http://127.0.0.1:{port}"]
    )  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines() == [f"deployguard invoke: cannot reach http://127.0.0.1:{port}/: is it running?"]


def test_debug_shows_the_traceback():
    port = _closed_port()
    with pytest.raises(Exception, match="Could not connect"):
        cli.main(
            ["--debug", "invoke", "AssessorFunction", "--event", str(REPO / "events" / "schedule.json"),
             "--endpoint-url", f"http://127.0.0.1:{port}"]
        )  # fmt: skip


def test_missing_credentials_and_refusals_have_hints():
    assert "no AWS credentials" in cli.describe_error(NoCredentialsError())
    refused = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "Query")
    assert cli.describe_error(refused) == "AWS refused Query: AccessDeniedException: not allowed"
    assert cli.describe_error(ValueError("odd\nsecond line")) == (
        "ValueError: odd (run with --debug for the traceback)"
    )
