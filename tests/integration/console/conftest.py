"""One console over the embedded AWS per test module: the state the session's demo run saved (its four
rollouts), a canary held in flight (its simulated clock waits at a gate until the module ends), the
local server on 127.0.0.1.

Module-scoped: the embedded AWS is one moto mock; left open past this folder, every later test's
mock would nest inside it and find its tables already created."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from deployguard_local.console_server import ConsoleServer, LocalCredentials, demo_console


@dataclass
class Console:
    server: ConsoleServer
    aws: Any
    credentials: LocalCredentials

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def console(demo_run: Any) -> Iterator[Console]:
    """What the session's demo run saved, loaded into a fresh embedded AWS, with the live canary."""
    with demo_console(0, state_dir=demo_run.state_dir, seconds_per_minute=None) as (server, aws, credentials):
        yield Console(server, aws, credentials)
