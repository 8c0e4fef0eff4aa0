"""A canary holding its promotion for people's answer, answered on the console page in a real headless Chromium
(Playwright, /usr/bin/chromium) served by the local server in front of the real console functions, over the embedded
AWS the canary runs in (promotion_hold_support.py). Two minutes into the hold the person opens the dashboard: the
"Waiting for your answer" panel says which incident asks for what and that the canary's promotion is held at its
weight since the hold began; they click Approve, give a reason, and the canary rolls back (the alias on stable)."""

from __future__ import annotations

import re
import shutil
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from alert_rules_support import run_canary, shop_stack
from promotion_hold_support import DEP, REVENUE_DOWN, tolerant, trail

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import ConsoleServer, LocalCredentials
from deployguard_local.traffic import VersionBehaviour

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]  # fmt: skip


class PagePerson:
    """Two minutes into the hold, the simulated clock waits while the person answers on the page (Playwright works
    in the test's thread; the clock's listeners are called in the canary's)."""

    def __init__(self) -> None:
        self.hold_began: datetime | None = None
        self.due = threading.Event()  # the clock reached the moment: the person answers now
        self.done = threading.Event()  # answered: the clock goes on
        self.answered_at: datetime | None = None

    def on_clock(self, before: datetime, after: datetime) -> None:
        if self.answered_at is not None:
            return
        if self.hold_began is None:
            began = trail(DEP, "promotion_held")
            self.hold_began = began[0].at if began else None
            return
        if after - self.hold_began < timedelta(minutes=2):
            return
        self.answered_at = after
        self.due.set()
        self.done.wait(120)


def answer_on_the_page(page: Any, url: str, token: str) -> str:
    """The person opens the dashboard, reads the panel and approves the rollback; the panel's text."""
    expect = playwright_api.expect
    page.goto(f"{url}/#token={token}")
    panel = page.locator("#dashboard-answers")
    expect(panel).to_be_visible()
    expect(panel.locator(".held")).to_contain_text("promotion held at ")
    text = str(panel.inner_text())
    panel.get_by_role("button", name="Approve rollback request").click()
    page.get_by_label("Reason (kept in the audit trail)").fill("revenue per conversion halved")
    page.locator("#confirm-ok").click()
    expect(page.locator("dialog#confirm")).to_be_hidden()
    # approved, or already executed by the time the answer came back (its state machine runs at once)
    expect(page.locator("#status")).to_contain_text(re.compile(r"(approved|executed) by local-operator"))
    return text


def test_a_held_canary_approved_on_the_page_rolls_back() -> None:
    playwright_api.expect.set_options(timeout=30_000)
    with shop_stack([], {"revenue": tolerant()}) as (aws, _receivers), playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        credentials = LocalCredentials()
        server = ConsoleServer(aws, credentials, port=0).start()
        person = PagePerson()
        assert aws.clock is not None
        aws.clock.listeners.append(person.on_clock)
        ran: dict[str, Any] = {}
        canary = threading.Thread(
            target=lambda: ran.update(out=run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)), daemon=True
        )
        panel_text: str | None = None
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            canary.start()
            if person.due.wait(120):
                try:
                    panel_text = answer_on_the_page(page, server.url, credentials.write_token)
                finally:
                    person.done.set()
            canary.join(120)
        finally:
            person.done.set()
            server.stop()
            browser.close()
        assert not errors, errors
        assert panel_text is not None and "out" in ran, "the hold was never answered, or the canary did not end"
        _execution, target = ran["out"]
        began = trail(DEP, "promotion_held")[0]
        weight = f"{began.details['weight']:g}%"
        assert f"promotion held at {weight} since {began.at:%Y-%m-%d %H:%M:%S} UTC" in panel_text, panel_text
        assert "rollback of revenue" in panel_text and "Expires" in panel_text
        record = DeploymentRepository().get_deployment(DEP)
        assert record.decision == "rolled_back", record.decision_reason
        alias = LambdaTrafficShifter(target).current()
        assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
        approved = trail(DEP, "remediation_approved")
        assert [(e.actor, e.reason) for e in approved] == [("local-operator", "revenue per conversion halved")]
