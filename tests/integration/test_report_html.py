"""`deployguard report ID --local --format html` opened in a real headless Chromium (Debian's /usr/bin/chromium)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from demo_support import DemoRun

from deployguard_local import cli

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


def _report(demo_run: DemoRun, rollout: str, fmt: str, out: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    deployment_id = demo_run.deployment_ids()[rollout]
    where = ["--local", "--state-dir", str(demo_run.state_dir)]
    assert cli.main(["report", deployment_id, *where, "--format", fmt, "-o", str(out)]) == 0
    assert cli.main(["report", deployment_id, *where, "--format", "json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module's reports (each opens its own page in a context of its own)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.mark.parametrize("rollout", ["regression-midway", "codedeploy-canary"])
def test_html_report_renders_every_chart_without_errors(
    demo_run: DemoRun, rollout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], browser: Any
) -> None:
    page_file = tmp_path / "report.html"
    history = _report(demo_run, rollout, "html", page_file, capsys)
    metrics = list(dict.fromkeys(r["metric_id"] for a in history["assessments"] for r in a["verdict"]["reasons"]))
    assert metrics, "the demo's assessments reason about metrics"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        errors: list[str] = []
        requests: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        title = page.title()
        charts = {
            chart: page.locator(f"svg#{chart}").count()
            for chart in ["traffic", "health", *(f"metric-{m}" for m in metrics)]
        }
        canary_points = {m: page.locator(f'svg#metric-{m} g[data-series="canary"] circle').count() for m in metrics}
        decision = page.locator("svg#traffic g.marker-rolled_back").count()
        accessible = page.locator("svg.chart[role=img] > title").count()
        verdict_rows = page.locator("section:has(h2:text('Verdict timeline')) tbody tr").count()
    finally:
        context.close()
    assert errors == []
    assert requests == [page_file.as_uri()]  # self-contained: nothing fetched but the file itself
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert "rolled back" in title
    assert all(count == 1 for count in charts.values()), charts
    known = {m: sum(1 for a in history["assessments"] for r in a["verdict"]["reasons"]
                    if r["metric_id"] == m and r["canary_value"] is not None) for m in metrics}  # fmt: skip
    assert canary_points == known and any(known.values())  # a metric never measured has its chart, empty
    assert decision == 1 and accessible == len(charts)
    assert verdict_rows == len(history["assessments"])


def test_markdown_report_and_json_schema(demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deployguard.readmodels import history_json_schema

    history = _report(demo_run, "healthy-release", "md", tmp_path / "report.md", capsys)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert text.startswith("# DeployGuard report: checkout-api") and "**Outcome: promoted** (exit 0)" in text
    assert text.count("| healthy |") + text.count("| inconclusive |") == len(history["assessments"])
    documented = json.loads((Path(__file__).parents[2] / "docs" / "history-schema.json").read_text(encoding="utf-8"))
    assert documented == history_json_schema(), "docs/history-schema.json is out of date: regenerate it"
