"""The console's deployment page in headless Chromium: rates in percent as the report shows them,
values with their unit, the post-deployment looks drawn apart from the canary and baseline, and
the canary's last verdict labelled apart from the latest post-deployment look."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from deployguard_local.console_server import demo_console

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api")
playwright_api.expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def console(demo_run: Any) -> Iterator[Any]:
    with demo_console(0, state_dir=demo_run.state_dir, seconds_per_minute=None) as (server, _aws, credentials):
        yield server, credentials


@pytest.fixture(scope="module")
def page(console: Any) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert not errors, errors


def _open(page: Any, console: Any, deployment_id: str) -> None:
    server, credentials = console
    page.goto(f"{server.url}/#token={credentials.read_token}")
    page.goto(f"{server.url}/#/deployments/{deployment_id}")
    playwright_api.expect(page.locator("figure.chart").first).to_be_visible()


def _data(page: Any, metric: str) -> list[list[str]]:
    figure = page.locator("figure.chart", has=page.locator(f"h4:text-matches('^{metric}( |$)')"))
    rows = figure.locator("details tbody tr")
    return [r.locator("td").all_text_contents() for r in rows.all()]


def test_rates_in_percent_and_latency_with_its_unit(page: Any, console: Any) -> None:
    _open(page, console, "demo-regression-midway")
    errors = _data(page, "errors")
    assert errors and any(cell.endswith("%") for row in errors for cell in row[1:3])
    for row in errors:
        for cell in row[1:3]:
            assert cell == "-" or re.fullmatch(r"\d+(\.\d+)?%", cell), row  # 7.63%, never 0.07625
    assert page.locator("figure.chart h4", has_text="errors (%)").count() == 1
    p50 = _data(page, "duration_p50")
    assert p50 and any(cell.endswith(" ms") for row in p50 for cell in row[1:3]), p50


def test_post_deployment_looks_apart_and_the_canary_verdict_labelled(page: Any, console: Any) -> None:
    def with_a_look(route: Any) -> None:
        """The demo's looks after promotion judged nothing: add one that judged the metrics (as a live look does)."""
        response = route.fetch()
        history = response.json()
        canary = [a for a in history["assessments"] if (a.get("details") or {}).get("kind") != "post_deployment"]
        look = json.loads(json.dumps(canary[-1]))
        look["at"] = history["assessments"][-1]["at"]
        look["details"] = {"kind": "post_deployment"}
        look["verdict"].update(decision="inconclusive", summary="post-deployment: a look after promotion")
        for reason in look["verdict"]["reasons"]:
            reason["baseline_value"] = None
        history["assessments"].append(look)
        route.fulfill(response=response, json=history)

    page.route(re.compile(r".*/api/deployments/demo-healthy-release$"), with_a_look)  # the page polls it too
    _open(page, console, "demo-healthy-release")
    summary = page.locator("#deployment-summary")
    playwright_api.expect(summary).to_contain_text("Canary's last verdict")
    playwright_api.expect(summary).to_contain_text("Latest post-deployment look")
    verdict = page.locator("#deployment-verdict").inner_text()
    assert verdict.startswith("healthy"), verdict  # the canary's verdict, not the look after it
    assert "a look after promotion" in page.locator("#deployment-look").inner_text()
    figure = page.locator("figure.chart", has=page.locator("h4:text-matches('^errors')"))
    assert figure.locator("polyline[data-series='after']").count() == 1
    assert figure.locator(".legend .a").count() == 1
    rows = [r.locator("td").all_text_contents() for r in figure.locator("details tbody tr").all()]
    looks = [cells for cells in rows if cells[3] != "-"]
    assert len(looks) == 1 and looks[0][1:3] == ["-", "-"], rows  # never drawn or tabled as canary values
    assert all(cells[3] == "-" for cells in rows[:-1])
