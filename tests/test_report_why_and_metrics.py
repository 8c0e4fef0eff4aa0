"""The report's "why" leads with the verdict's cause; the HTML report has the metrics table of the
canary's last verdict, formatted as the Markdown one and as the reasons (one formatter)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from demo_support import DemoRun

from deployguard.analysis.health import assess_health
from deployguard.models import Decision, Verdict, VerdictReason
from deployguard.readmodels import DeploymentHistory, timeline, verdict_why
from deployguard_local import cli

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass(frozen=True)
class Reports:
    """The demo's regression-midway rollout as the report command exports it: its history (``--json``) and
    its Markdown report, made once for the module's tests (they only read them)."""

    history: DeploymentHistory
    markdown: str
    where: list[str]


@pytest.fixture(scope="module")
def regression(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Reports:
    deployment_id = demo_run.deployment_ids()["regression-midway"]
    where = ["--local", "--state-dir", str(demo_run.state_dir)]
    folder = tmp_path_factory.mktemp("regression-reports")
    exported, md_file = folder / "history.json", folder / "report.md"
    assert cli.main(["report", deployment_id, *where, "--json", "-o", str(exported)]) == 0
    assert cli.main(["report", deployment_id, *where, "--format", "md", "-o", str(md_file)]) == 0
    data = json.loads(exported.read_text(encoding="utf-8"))
    for incident in data["incidents"]:  # computed fields of the export
        incident.pop("time_to_acknowledge_seconds", None)
        incident.pop("time_to_resolve_seconds", None)
    return Reports(DeploymentHistory.model_validate(data), md_file.read_text(encoding="utf-8"), where)


def test_a_non_healthy_verdict_leads_with_its_summary_not_a_non_blocking_note() -> None:
    note = VerdictReason(
        metric_id="duration_p99", status="inconclusive",
        message="duration_p99: too few invocations per period for a p99; judged through duration_p50",
    )  # fmt: skip
    cause = VerdictReason(metric_id="errors", status="fail", message="errors: canary 8.85% vs baseline 0.33%")
    failing = Verdict(
        decision=Decision.FAILING, summary="canary worse: errors: canary 8.85% vs baseline 0.33%; 99.9% sure",
        reasons=[note, cause],
    )  # fmt: skip
    why = verdict_why(failing)
    assert why.startswith("canary worse: errors")
    assert why.count("errors: canary 8.85%") == 1 and why.endswith("judged through duration_p50")
    healthy = Verdict(decision=Decision.HEALTHY, summary="canary within the healthy margins", reasons=[note])
    assert verdict_why(healthy) == note.message  # a healthy verdict's notes, as before


def test_report_timeline_and_show_lead_with_the_cause(regression: Reports) -> None:
    history = regression.history
    failing = [a for a in history.assessments if a.verdict.decision == Decision.FAILING]
    assert failing
    text = regression.markdown
    row = next(line for line in text.splitlines() if "| failing |" in line)
    assert row.split(" | ")[-1].startswith(failing[-1].verdict.summary.replace("|", "\\|")[:40])
    items = [i for i in timeline(history) if i.kind == "assessment" and i.title.startswith("failing")]
    assert items and items[-1].detail.startswith(failing[-1].verdict.summary)


def test_html_report_has_the_last_canary_verdicts_metrics_as_the_markdown_does(
    regression: Reports, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    history = regression.history
    deployment_id = history.deployment.deployment_id
    page_file = tmp_path / "report.html"
    assert cli.main(["report", deployment_id, *regression.where, "--format", "html", "-o", str(page_file)]) == 0
    md = regression.markdown.split("## Metrics (last canary assessment)", 1)[1].split("## ", 1)[0]
    md_rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.strip().splitlines()[2:]]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        section = page.locator("section:has(h2:text('Metrics (last canary assessment)'))")
        headers = section.locator("thead th").all_inner_texts()
        rows = [r.locator("td").all_inner_texts() for r in section.locator("tbody tr").all()]
        browser.close()
    assert errors == []
    last = history.canary_assessments()[-1].verdict
    assert headers[:5] == ["metric", "status", "canary", "baseline", "effect"]
    assert len(rows) == len(last.reasons) and rows == md_rows
    # the effect in the table is the reason's own: "+2583%" in both, never "+2582.6%" beside it
    for row, reason in zip(rows, last.reasons, strict=True):
        if reason.status == "fail":
            shown = re.findall(r"[+-]\d+(?:\.\d)?%", reason.message)
            assert shown and shown[-1] == row[4], (reason.message, row)
        if reason.status == "pass" and reason.canary_bound is not None:
            assert row[5].endswith("(90%)")


def test_health_messages_show_no_exponent() -> None:
    report = assess_health({"latency_p99_ms": 1433.49, "error_rate": 0.5})
    message = next(m.message for m in report.metrics if m.id == "latency_p99_ms")
    assert "1433ms" in message and "e+" not in message and "1000ms" in message


def test_a_period_is_given_its_clock_time_where_the_record_tells_it(regression: Reports) -> None:
    history = regression.history
    text = regression.markdown
    found = re.findall(r"since (\d\d:\d\d) \(period (\d+)\)", text)
    assert found and "since period" not in text, text
    failing = next(a for a in history.assessments if a.verdict.decision == Decision.FAILING)
    for clock, _period in found:  # within the canary's run, before the verdict that named it
        assert history.deployment.started_at.strftime("%H:%M") <= clock <= failing.at.strftime("%H:%M")
