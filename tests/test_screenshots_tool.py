"""`make docs-screenshots` (deployguard_local.screenshots): the pages it photographs hold what the README's
pictures claim. The session's demo state is served as the module serves it (the live canary held at its
simulated minute), the report rendered by `deployguard report --format html`, and each page opened in
Debian's headless Chromium the way the module opens it before taking its picture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployguard_local import screenshots

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def pages(demo_run: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[screenshots.Pages]:
    with screenshots.serve_pages(demo_run.state_dir, tmp_path_factory.mktemp("screenshots")) as served:
        yield served


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with screenshots.browser() as browser:
        yield browser


@pytest.fixture
def page(chromium: Any, pages: screenshots.Pages) -> Iterator[Any]:
    context = chromium.new_context(viewport=screenshots.VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    refused: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    screenshots._only_local(page, refused, pages.report)
    yield page
    context.close()
    assert errors == [] and refused == [], (errors, refused)


def test_the_canary_card_shows_its_weight_verdict_and_reasons(page: Any, pages: screenshots.Pages) -> None:
    screenshots.open_canaries(page, pages)
    card = page.locator("#canaries article", has_text="orders-api 2")
    text = card.inner_text()
    assert "50%" in text and "healthy" in text  # held at the same simulated minute every run
    assert "assessed 2026-01-01 12:39:00 UTC" in text
    assert "canary within the healthy margins on errors, throttles, duration_p50, duration_p99" in text
    assert card.locator("ul li").count() == 4 and all(
        r.startswith("pass: ") for r in card.locator("ul li").all_inner_texts()
    )
    assert [b.inner_text() for b in card.get_by_role("button").all()] == ["Pause", "Promote", "Skip analysis", "Abort"]


def test_the_deployment_detail_shows_the_rollback_its_charts_and_timeline(page: Any, pages: screenshots.Pages) -> None:
    screenshots.open_deployment(page, pages)
    assert page.locator("#deployment-title").inner_text() == "payments-api 2 (demo-regression-midway)"
    summary = page.locator("#deployment-summary").inner_text()
    assert "rolled back" in summary and "canary worse: errors: canary 7.63% (35/459)" in summary
    charts = page.locator("figure.chart h4").all_inner_texts()
    assert charts[:4] == ["errors (%)", "throttles (%)", "duration_p50 (ms)", "duration_p99 (ms)"]
    assert page.locator("#deployment-timeline li").count() > 6  # traffic, verdicts, incident, remediation


def test_the_report_shows_the_decision_and_the_verdict_timeline(page: Any, pages: screenshots.Pages) -> None:
    screenshots.open_report(page, pages)
    assert page.title().startswith("DeployGuard report: payments-api 2 (rolled back)")
    rows = page.locator("section:has(h2:text('Verdict timeline')) tbody tr")
    verdicts = [r.locator("td").nth(2).inner_text() for r in rows.all()]
    assert verdicts == ["inconclusive", "inconclusive", "healthy", "healthy", "healthy", "failing"]
    assert [r.locator("td").nth(1).inner_text() for r in rows.all()][-1] == "25%"  # rolled back at 25%
    assert page.locator("svg#traffic g.marker-rolled_back").count() == 1


def test_the_pictures_are_taken_at_the_fixed_viewport(pages: screenshots.Pages, chromium: Any, tmp_path: Path) -> None:
    written = screenshots.take(pages, tmp_path, chromium)
    assert [p.name for p in written] == ["console.png", "console-deployment.png", "report-screenshot.png"]
    for path in written:
        data = path.read_bytes()
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # the PNG's IHDR
        expected = {"console.png": screenshots.VIEWPORT["height"], "console-deployment.png": screenshots.DETAIL_HEIGHT,
                    "report-screenshot.png": screenshots.REPORT_HEIGHT}[path.name]  # fmt: skip
        assert (width, height) == (screenshots.VIEWPORT["width"], expected), path.name
