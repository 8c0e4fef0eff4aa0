"""The console's deployment page in headless Chromium says each thing once, as the report does.

demo-regression-midway was rolled back by remediation on its failing verdict; its stored reason said the verdict
twice and the gate's outcome repeated it: the page showed the verdict three times. Now the reason is composed with
the verdict once (its parts kept apart, ``end_cause``), and the page says the verdict once
("Canary's last verdict", its periods on the clock as the report says them: "since 12:14 (period 5)"), the
remediation's cause once ("Why it ended"), the outcome without either; a metric zero at every look (throttles)
gets an axis labelled 0% to 1%, not "1e-7%".
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

DEPLOYMENT = "demo-regression-midway"
WHY = re.compile(
    r"^rolled back by remediation for incident inc-[0-9a-f]+ \(canary-issue\) on the canary's failing verdict$"
)

playwright_api = pytest.importorskip("playwright.sync_api")


def test_the_detail_api_says_why_once_and_tells_the_period_clock(console: Any) -> None:
    reader = {"Authorization": f"Bearer {console.credentials.read_token}"}
    detail = requests.get(f"{console.url}/api/deployments/{DEPLOYMENT}", headers=reader, timeout=30).json()
    reason = detail["deployment"]["decision_reason"]
    assert reason.count("canary worse: errors:") == 1, "the stored audit text says the verdict once"
    assert detail["deployment"]["end_cause"]["verdict"].startswith("canary worse: errors:")
    assert WHY.match(detail["why_ended"]), detail["why_ended"]
    assert detail["outcome_note"] == "" and detail["outcome"]["message"] == reason
    assert detail["period_clock"] == {"start": "2026-01-01T12:09:00Z", "seconds": 60.0}, detail["period_clock"]


def test_the_page_says_the_verdict_once_on_the_clock_and_draws_a_zero_axis(console: Any, page: Any) -> None:
    expect = playwright_api.expect
    page.goto(f"{console.url}/#token={console.credentials.read_token}")
    page.goto(f"{console.url}/#/deployments/{DEPLOYMENT}")
    expect(page.locator("#deployment-title")).to_contain_text(DEPLOYMENT)
    expect(page.locator("figure.chart").first).to_be_visible()

    verdict = page.locator("#deployment-verdict")
    expect(verdict).to_contain_text("since 12:14 (period 5)")
    expect(verdict).to_contain_text("canary worse: errors: canary")
    assert WHY.match(page.locator("#deployment-why").inner_text().strip())
    assert page.locator("#deployment-outcome").inner_text().strip() == "rolled back (exit 1)"
    summary = page.locator("#deployment-summary").inner_text()
    assert summary.count("canary worse:") == 1, summary  # the verdict once
    assert summary.count("remediation") == 1 and summary.count("canary-issue") == 1, summary  # the cause once
    assert "since period" not in summary, summary

    # the timeline's rollback events (rollback.initiated, deployment.failed, ...): their messages said it twice too
    expect(page.locator("#deployment-timeline li").first).to_be_visible()
    items = [" ".join(t.split()) for t in page.locator("#deployment-timeline li").all_inner_texts()]
    told = [t for t in items if "remediation rollback for incident" in t]
    assert len(told) >= 3 and any("deployment.failed" in t for t in told), items
    assert all(t.count("canary worse:") == 1 and "since 12:14 (period 5)" in t for t in told), told

    # throttles were zero at every look: 0% to 1%, labelled as the others are
    throttles = page.locator("figure.chart", has=page.locator("h4", has_text=re.compile(r"^throttles ")))
    labels = throttles.locator("svg text").all_text_contents()
    assert labels == ["1%", "0%"], labels
    every = page.locator("figure.chart svg text").all_text_contents()
    assert every and not any(re.search(r"\de[-+]?\d", label) for label in every), every
