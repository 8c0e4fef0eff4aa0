"""The console page in a real headless Chromium (Playwright, /usr/bin/chromium): a rollback of the live canary asked
of people shows in a "Waiting for your answer" panel on the dashboard and the deployment page (which incident, what
action, asked and expiring when), with Approve / Reject buttons a read-only token cannot use. A person approves it
with a reason: the request is answered with their identity, the canary is rolled back, the panel goes away and the
deployment page lists the answered request and says it in its timeline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Console
from remediation_requests_support import LIVE, ask, configured_console, store_state

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import wait_until

playwright_api = pytest.importorskip("playwright.sync_api")
playwright_api.expect.set_options(timeout=30_000)  # conditions, not races: a busy 2-core machine is slow


@pytest.fixture(scope="module")
def console(demo_run: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with configured_console(demo_run.state_dir, tmp_path_factory.mktemp("remediation-page-state")) as console:
        yield console


def test_a_person_approves_a_pending_rollback_from_the_waiting_for_your_answer_panel(console: Any, page: Any) -> None:
    expect = playwright_api.expect
    asked = ask(0)
    approve = f"Approve rollback request {asked.approval_id}"

    # a read-only token sees the request, and cannot answer it
    page.goto(f"{console.url}/#token={console.credentials.read_token}")
    panel = page.locator("#dashboard-answers")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("heading", name="Waiting for your answer")).to_be_visible()
    item = panel.locator(f'article[data-approval="{asked.approval_id}"]')
    for text in (asked.incident_id, "rollback of orders-api", "Asked", "Expires", "lambda:orders-api"):
        expect(item).to_contain_text(text)
    expect(item.get_by_role("button", name=approve)).to_be_disabled()
    page.evaluate("sessionStorage.clear()")
    page.goto("about:blank")  # a fresh load signs in with the link's token

    # a person who may act: the deployment page shows the same panel; Approve asks a reason
    page.goto(f"{console.url}/#token={console.credentials.write_token}")
    expect(page.locator("#who")).to_contain_text("local-operator")
    page.goto(f"{console.url}/#/deployments/{LIVE}")
    mine = page.locator("#deployment-answers")
    expect(mine).to_be_visible()
    mine.get_by_role("button", name=approve).click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-title")).to_contain_text("Approve: rollback of orders-api")
    page.get_by_label("Reason (kept in the audit trail)").fill("revenue halved since the canary started")
    page.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#status")).to_contain_text(
        re.compile(r"(approved|executed) by local-operator")
    )  # or run already

    # answered: the rollback runs, the panel goes, the answer is listed and in the timeline
    assert wait_until(lambda: store_state(asked.approval_id) == "executed", timeout=30)
    target = DeploymentRepository().get_deployment(LIVE).target
    assert LambdaTrafficShifter(target).current().additional_weights == {}  # type: ignore[arg-type]
    expect(mine).to_be_hidden()
    answered = page.locator(f'#deployment-requests li[data-approval="{asked.approval_id}"]')
    expect(answered).to_contain_text("by local-operator")
    expect(answered).to_contain_text("revenue halved since the canary started")
    expect(page.locator("#deployment-timeline")).to_contain_text("rollback approved by local-operator")
    entry = [e for e in DeploymentRepository().audit_trail(LIVE) if e.action == "remediation_approved"][-1]
    assert (entry.actor, entry.reason) == ("local-operator", "revenue halved since the canary started")

    page.goto(f"{console.url}/#/")
    expect(page.locator("#canaries")).to_be_visible()
    expect(page.locator("#dashboard-answers")).to_be_hidden()
