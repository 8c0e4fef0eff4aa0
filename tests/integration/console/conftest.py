"""One console over the embedded AWS per test module: the state the session's demo run saved (its four
rollouts), a canary held in flight (its simulated clock waits at a gate until the module ends), the
local server on 127.0.0.1.

Module-scoped: the embedded AWS is one moto mock; left open past this folder, every later test's
mock would nest inside it and find its tables already created."""

from __future__ import annotations

import shutil
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


# --------------------------------------------------------------------------- a real headless Chromium

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()
    assert not errors, errors
