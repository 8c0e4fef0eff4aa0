"""The report says each thing once and draws inside its charts: read through ``deployguard report`` on the state
the session's demo run saved (its rollouts rolled back by remediation on a failing verdict), as users run it.

- the failing verdict is said once in the report's header ("Canary's last verdict"), the remediation's cause
  once ("Why it ended"), the outcome without either again (the stored reason says the verdict twice: kept);
- every chart's text lies inside its SVG's viewBox in Chromium (the last time label was cut: "12:15:0");
- a metric that was zero at every look gets an axis without an exponent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from demo_support import DemoRun

from deployguard_local import cli

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
WHY = re.compile(
    r"^rolled back by remediation for incident inc-[0-9a-f]+ \(canary-issue\) on the canary's failing verdict"
)


def _facts(html: str) -> dict[str, str]:
    """The header's facts (``<dl class="facts">``): term -> the text of its definition, tags dropped."""
    header = html.split('<dl class="facts">', 1)[1].split("</dl>", 1)[0]
    text = lambda markup: " ".join(unescape(re.sub(r"<[^>]+>", " ", markup)).split())  # noqa: E731
    return {text(term): text(value) for term, value in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", header)}


def _report(demo_run: DemoRun, rollout: str, fmt: str, out: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    deployment_id = demo_run.deployment_ids()[rollout]
    where = ["--local", "--state-dir", str(demo_run.state_dir)]
    assert cli.main(["report", deployment_id, *where, "--format", fmt, "-o", str(out)]) == 0
    assert cli.main(["report", deployment_id, *where, "--format", "json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def _last_verdict(history: dict) -> str:
    canary = [a for a in history["assessments"] if a["details"].get("kind") != "post_deployment"]
    return str(canary[-1]["verdict"]["summary"])


@pytest.mark.parametrize("rollout", ["regression-midway", "codedeploy-canary"])
def test_the_report_says_the_verdict_and_the_remediation_once(
    demo_run: DemoRun, rollout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = _report(demo_run, rollout, "html", tmp_path / "report.html", capsys)
    reason = history["deployment"]["decision_reason"]
    verdict = _last_verdict(history)
    assert verdict.startswith("canary worse: errors:") and reason.count("canary worse: errors:") >= 1, reason
    assert "remediation rollback for incident" in reason, "the stored audit text stays as it was written"
    facts = _facts((tmp_path / "report.html").read_text())
    assert WHY.match(facts["Why it ended"]), facts
    assert facts["Outcome"] == "rolled back (exit 1)", facts
    assert facts["Canary's last verdict"].startswith("failing canary worse: errors: canary"), facts
    header = " ".join(facts.values())
    assert header.count("canary worse:") == 1, header  # the verdict once
    assert header.count("remediation") == 1 and header.count("canary-issue") == 1, header  # the cause once
    if rollout == "codedeploy-canary":  # CodeDeploy's own end is kept after the cause
        assert facts["Why it ended"].endswith("; CodeDeploy STOP"), facts
    else:  # the periods on the clock, as the verdict timeline says them
        assert "since 12:14 (period 5)" in facts["Canary's last verdict"] and "since period" not in header, facts

    assert _report(demo_run, rollout, "markdown", tmp_path / "report.md", capsys) is not None
    markdown = (tmp_path / "report.md").read_text()
    top = markdown.split("## Verdict timeline", 1)[0]
    assert "**Outcome: rolled back** (exit 1)\n" in top and top.count("canary worse:") == 1, top
    assert top.count("remediation") == 1 and "- why it ended: rolled back by remediation for incident" in top, top


def test_a_promotion_says_its_verdict_once(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = _report(demo_run, "healthy-release", "html", tmp_path / "report.html", capsys)
    verdict = _last_verdict(history)
    assert history["deployment"]["decision_reason"] == verdict  # stored as the verdict: the report said it three times
    facts = _facts((tmp_path / "report.html").read_text())
    assert facts["Why it ended"] == "promoted on the canary's healthy verdict", facts
    assert facts["Outcome"] == "promoted (exit 0)", facts
    assert " ".join(facts.values()).count(verdict) == 1, facts


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


OUTSIDE = """() => [...document.querySelectorAll("svg.chart")].flatMap((svg) => {
  const box = svg.getBoundingClientRect();  // the viewBox, drawn at the figure's width
  const texts = [...svg.querySelectorAll("text")];
  return texts.map((t) => ({ chart: svg.id, text: t.textContent, r: t.getBoundingClientRect() }))
    .filter(({ r }) => r.left < box.left - 0.5 || r.top < box.top - 0.5 || r.right > box.right + 0.5
                       || r.bottom > box.bottom + 0.5)
    .map(({ chart, text, r }) => `${chart}: "${text}" at ${r.left - box.left}..${r.right - box.left} of ${box.width}`);
})"""


def test_every_chart_label_lies_inside_its_viewbox(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str], browser: Any
) -> None:
    history = _report(demo_run, "regression-midway", "html", tmp_path / "report.html", capsys)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto((tmp_path / "report.html").as_uri())
        metrics = {r["metric_id"] for a in history["assessments"] for r in a["verdict"]["reasons"]}
        assert page.locator("svg.chart").count() == 2 + len(metrics)
        last = page.evaluate("""() => [...document.querySelectorAll("svg#traffic text")]
            .filter((t) => /^\\d\\d:\\d\\d/.test(t.textContent)).map((t) => t.textContent)""")
        assert last[-1] == "12:15:00", last  # the last time label, whole (it was drawn cut: "12:15:0")
        assert page.evaluate(OUTSIDE) == []
    finally:
        context.close()


def test_an_all_zero_metric_gets_an_axis_without_an_exponent(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = _report(demo_run, "regression-midway", "html", tmp_path / "report.html", capsys)
    values = [
        v for a in history["assessments"] for r in a["verdict"]["reasons"] if r["metric_id"] == "throttles"
        for v in (r["canary_value"], r["baseline_value"])
    ]  # fmt: skip
    assert values and set(values) == {0.0}, values  # the demo's throttles: zero at every look
    html = (tmp_path / "report.html").read_text()
    svg = html.split('id="metric-throttles"', 1)[1].split("</svg>", 1)[0]
    labels = re.findall(r'text-anchor="end" fill="#444">([^<]*)</text>', svg)
    y_labels = [label for label in labels if not re.match(r"\d\d:\d\d", label)]
    assert y_labels == ["0%", "25%", "50%", "75%", "100%"], y_labels
    assert not any(re.search(r"\de[-+]?\d", label) for label in labels), labels
