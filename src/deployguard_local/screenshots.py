"""``make docs-screenshots``: the README's three pictures, taken again from the real console and report.

    python -m deployguard_local.screenshots [--out docs] [--state-dir DIR]

1. The state the README describes, built as ``make demo`` builds it: the built-in demo's rollouts on the
   embedded AWS, saved as ``--local`` state (or an existing ``--state-dir``), with a fixed seed for the ids
   the code draws at random (incident ids), so a rerun gives the same pages.
2. The report: ``deployguard report demo-regression-midway --local --format html`` (the payments-api canary
   rolled back at 25% when its error rate rose), written to a file.
3. The console as ``deployguard serve --local`` serves it on 127.0.0.1 (the saved state loaded into a
   fresh embedded AWS) with the live ``orders-api`` canary started through the real state machine and its
   simulated clock held at a fixed simulated minute (:class:`HoldAt`): the card shows the same weight,
   verdict and reasons at every run.
4. Debian's Chromium (``/usr/bin/chromium``, driven by Playwright as the browser tests do) at a fixed
   viewport photographs ``console.png`` (the canaries in flight), ``console-deployment.png`` (the
   regression's detail) and ``report-screenshot.png`` (the report). Nothing is fetched beyond 127.0.0.1
   and the report's own file: any other request is aborted and fails the run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--font-render-hinting=none",
]
VIEWPORT = {"width": 1280, "height": 960}  # the whole canary card, the incidents heading below it
DETAIL_HEIGHT = 1900  # the deployment's first 1900 pixels: summary, charts, incidents, the timeline's newest entries
REPORT_HEIGHT = 1700  # the report's first 1700 pixels: header, verdict timeline, the first charts
SEED = 20260101
LIVE_CANARY = "live-orders-api"
DETAIL = "demo-regression-midway"  # the README's regression: payments-api 2 rolled back at 25%
HOLD_AFTER_MINUTES = 7  # the live canary's simulated minutes before its clock is held (of 9: 50%, a healthy verdict)


def seed_ids(seed: int = SEED) -> None:
    """The ids the code draws with ``uuid.uuid4`` (incidents, leases, messages) from seeded generators instead:
    one per thread (the state machine's, Lambda's asynchronous invocations', ...), so the order in which two
    threads happen to draw does not change which id each gets."""
    streams: dict[str, random.Random] = {}
    lock = threading.Lock()

    def uuid4() -> uuid.UUID:
        name = threading.current_thread().name
        with lock:
            rng = streams.setdefault(name, random.Random(f"{seed}:{name}"))
            return uuid.UUID(int=rng.getrandbits(128), version=4)

    uuid.uuid4 = uuid4


def build_state(state_dir: Path) -> Path:
    """What ``make demo`` saves: the built-in demo's rollouts on the embedded AWS, as ``--local`` state."""
    from deployguard_local import demo

    out = io.StringIO()
    if demo.main(out=out, state_dir=state_dir, quiet=True) != 0:
        raise RuntimeError(f"the demo failed:\n{out.getvalue()}")
    return state_dir


def render_report(state_dir: Path, out: Path, deployment_id: str = DETAIL) -> Path:
    """``deployguard report ID --local --format html -o FILE``, as a user runs it."""
    from deployguard_local import cli

    where = ["--local", "--state-dir", str(state_dir)]
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["report", deployment_id, *where, "--format", "html", "-o", str(out)])
    if code != 0:
        raise RuntimeError(f"deployguard report {deployment_id} exited {code}")
    return out


class HoldAt:
    """A late clock listener that lets the simulated clock run until ``minutes`` after it is installed, then
    holds the advance past it for good: the canary is caught at the same simulated minute each run."""

    def __init__(self, start: datetime, minutes: int) -> None:
        self.until = start + timedelta(minutes=minutes)
        self.holding = threading.Event()

    def __call__(self, before: datetime, after: datetime) -> None:
        if after > self.until:
            self.holding.set()
            threading.Event().wait()  # never set: parked


@dataclass(frozen=True)
class Pages:
    """What the screenshots photograph: the console (its URL and a token that may act) and the report file."""

    console_url: str
    write_token: str
    read_token: str
    report: Path
    live_canary: str = LIVE_CANARY
    detail: str = DETAIL

    @property
    def canaries(self) -> str:
        return f"{self.console_url}/#token={self.write_token}"

    @property
    def deployment(self) -> str:
        return f"{self.console_url}/#/deployments/{self.detail}"


@contextlib.contextmanager
def serve_pages(state_dir: Path, workdir: Path, hold_after_minutes: int = HOLD_AFTER_MINUTES) -> Iterator[Pages]:
    """The report rendered from ``state_dir``, and the console serving it on 127.0.0.1 with the live canary
    held ``hold_after_minutes`` simulated minutes in (as ``deployguard serve --local`` starts it)."""
    from deployguard.storage.repository import DeploymentRepository
    from deployguard_local.console_server import demo_console, start_live_canary, wait_until

    report = render_report(state_dir, workdir / "report.html")
    with demo_console(0, state_dir=state_dir, live=False) as (server, aws, credentials):
        assert aws.clock is not None
        hold = HoldAt(aws.clock(), hold_after_minutes)
        aws.clock.late_listeners.insert(0, hold)  # before the schedules: held before a minute's end fires them
        start_live_canary(aws, seconds_per_minute=0.0)  # its own gate lets every minute pass at once
        # never released: the canary would go on calling AWS after this embedded AWS closes; it stays parked
        # (its daemon thread ends with the process), as demo_console leaves the live canary it starts
        if not hold.holding.wait(120):
            raise RuntimeError("the live canary never reached its held minute")
        repository = DeploymentRepository()
        if not wait_until(lambda: (d := repository.find_deployment(LIVE_CANARY)) is not None and d.canary_weight > 0):
            raise RuntimeError("the live canary is not in flight")
        yield Pages(server.url, credentials.write_token, credentials.read_token, report)


def _only_local(page: Any, refused: list[str], report: Path) -> None:
    """Every request beyond 127.0.0.1 and the report's own file is aborted (and reported)."""

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith(("http://127.0.0.1:", "data:")) or url == report.as_uri():
            r.continue_()
        else:
            refused.append(url)
            r.abort()

    page.route("**/*", route)


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (as the browser tests launch it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_canaries(page: Any, pages: Pages) -> None:
    from playwright.sync_api import expect

    page.goto(pages.canaries)
    card = page.locator("#canaries article", has_text="orders-api")
    expect(card).to_be_visible()
    expect(card.locator("ul li").first).to_be_visible()  # its verdict's reasons
    expect(page.get_by_role("button", name="Acknowledge incident").first).to_be_visible()  # the open incidents


def open_deployment(page: Any, pages: Pages) -> None:
    from playwright.sync_api import expect

    page.goto(pages.canaries)  # signs in (the token stays with the tab), as the console tests open a detail
    page.goto(pages.deployment)
    expect(page.locator("#deployment-title")).to_contain_text(pages.detail)
    expect(page.locator("figure.chart").first).to_be_visible()
    expect(page.locator("#deployment-timeline li").first).to_be_visible()


def open_report(page: Any, pages: Pages) -> None:
    page.goto(pages.report.as_uri())
    page.wait_for_load_state("load")


def take(pages: Pages, out: Path, chromium: Any) -> list[Path]:
    """The three pictures in ``chromium`` (:func:`browser`), at a fixed viewport, the focus ring and caret hidden."""
    out.mkdir(parents=True, exist_ok=True)
    refused: list[str] = []
    errors: list[str] = []
    shots = [
        ("console.png", open_canaries, None),
        ("console-deployment.png", open_deployment, DETAIL_HEIGHT),
        ("report-screenshot.png", open_report, REPORT_HEIGHT),
    ]
    written = []
    for name, opened, height in shots:
        context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1, reduced_motion="reduce")
        try:
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            _only_local(page, refused, pages.report)
            opened(page, pages)
            page.evaluate("document.activeElement && document.activeElement.blur()")
            target = out / name
            if height is None:
                page.screenshot(path=str(target), animations="disabled", caret="hide")
            else:
                clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height}
                page.screenshot(path=str(target), full_page=True, clip=clip, animations="disabled", caret="hide")
            written.append(target)
        finally:
            context.close()
    if refused or errors:
        raise RuntimeError(f"requests beyond 127.0.0.1: {refused}; page errors: {errors}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deployguard_local.screenshots", description="the README's three pictures, taken again"
    )
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the PNGs go (default: docs)")
    parser.add_argument("--state-dir", type=Path, help="a saved demo state to photograph (default: run the demo)")
    args = parser.parse_args(argv)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_LOG_LEVEL": "WARNING"}.items():  # fmt: skip
        os.environ.setdefault(key, value)
    seed_ids()
    with tempfile.TemporaryDirectory(prefix="deployguard-screenshots-") as tmp:
        workdir = Path(tmp)
        state_dir = args.state_dir or build_state(workdir / "local-state")
        with serve_pages(state_dir, workdir) as pages, browser() as chromium:
            for path in take(pages, args.out, chromium):
                print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
