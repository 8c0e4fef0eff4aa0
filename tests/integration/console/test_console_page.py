"""The console page in a real headless Chromium (Debian's package, driven by Playwright) against
`deployguard serve --local`'s server over the embedded AWS holding the demo's rollouts."""

from __future__ import annotations

from typing import Any

import pytest

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository

playwright_api = pytest.importorskip("playwright.sync_api")
# Waits are for conditions, not races: on a busy 2-core machine a page can take seconds to settle.
playwright_api.expect.set_options(timeout=30_000)


def _confirm(page: Any, reason: str) -> None:
    dialog = page.locator("dialog#confirm")
    playwright_api.expect(dialog).to_be_visible()
    page.get_by_label("Reason (kept in the audit trail)").fill(reason)
    page.locator("#confirm-ok").click()
    playwright_api.expect(dialog).to_be_hidden()


def test_the_operator_watches_opens_acknowledges_and_aborts(console: Any, page: Any) -> None:
    expect = playwright_api.expect
    page.goto(f"{console.url}/#token={console.credentials.write_token}")
    expect(page.locator("#who")).to_contain_text("local-operator")
    card = page.locator("#canaries article", has_text="orders-api 2")
    expect(card).to_contain_text("10%")  # the live canary at its first step

    # history: the demo's four rollouts
    page.get_by_role("link", name="History").click()
    rows = page.locator("#history-body tr")
    expect(rows.first).to_be_visible()
    for text in ("demo-healthy-release", "demo-regression-midway", "search-api", "checkout-web"):
        expect(rows.filter(has_text=text).first).to_be_visible()
    page.get_by_label("Status").select_option("rolled_back")
    page.get_by_role("button", name="Filter").click()
    expect(rows.filter(has_text="demo-healthy-release")).to_have_count(0)
    expect(rows.filter(has_text="demo-regression-midway")).to_have_count(1)

    # open one: the judge's metric charts and its timeline
    page.get_by_role("link", name="demo-regression-midway").click()
    expect(page.locator("#deployment-title")).to_contain_text("payments-api 2")
    expect(page.locator("figure.chart", has_text="errors")).to_be_visible()
    expect(page.locator("#deployment-timeline li").first).to_be_visible()
    expect(page.locator("#deployment-summary")).to_contain_text("rolled back")

    # acknowledge an open incident
    page.get_by_role("link", name="Incidents").click()
    row = page.locator("#incidents tr[data-incident]").first
    incident_id = row.get_attribute("data-incident")
    row.get_by_role("button", name=f"Acknowledge incident {incident_id}").click()
    _confirm(page, "looking at it from the console")
    expect(page.locator("#status")).to_contain_text(f"Incident {incident_id}: acknowledge done")
    incident = IncidentRepository(DeploymentRepository()).get(str(incident_id))
    assert (incident.status.value, incident.acknowledged_by) == ("acknowledged", "local-operator")

    # abort the running canary; its alias is back at stable in the embedded AWS
    page.get_by_role("link", name="Canaries").click()
    page.get_by_role("button", name="Abort orders-api 2").click()
    _confirm(page, "abort from the browser test")
    expect(page.locator("#status")).to_contain_text("back at 100% version 1")
    expect(page.locator("#canaries article", has_text="orders-api 2")).to_have_count(0)
    deployment = DeploymentRepository().get_deployment("live-orders-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "aborted")
    assert isinstance(deployment.target, LambdaTarget)
    alias = LambdaTrafficShifter(deployment.target).current()
    assert (alias.function_version, alias.additional_weights) == (deployment.target.stable_version, {})
    trail = DeploymentRepository().audit_trail("live-orders-api")
    assert [(e.actor, e.reason) for e in trail if e.action == "control_abort"] == [
        ("local-operator", "abort from the browser test")
    ]


def test_keyboard_labels_and_a_read_only_caller(console: Any, page: Any) -> None:
    expect = playwright_api.expect
    page.goto(f"{console.url}/")
    page.get_by_label("Access token").fill(console.credentials.read_token)
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_contain_text("local-viewer · read only")
    page.get_by_role("link", name="Services").click()
    expect(page.get_by_role("button", name="Emergency rollback of checkout-api")).to_be_disabled()
    page.get_by_role("link", name="Incidents").click()
    page.get_by_label("Show acknowledged and resolved").check()
    expect(page.locator("#incidents tr[data-incident]").first).to_be_visible()
    for button in page.locator("#incidents button").all():
        expect(button).to_be_disabled()
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
             .filter(el => !el.labels || el.labels.length === 0).map(el => el.id)"""
    )
    assert unlabeled == []


def test_confirmation_works_from_the_keyboard(console: Any, page: Any) -> None:
    expect = playwright_api.expect
    page.goto(f"{console.url}/#token={console.credentials.write_token}")
    page.get_by_role("link", name="Services").click()
    button = page.get_by_role("button", name="Emergency rollback of checkout-api")
    button.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-name")).to_be_focused()  # type the service name first
    page.keyboard.type("checkout")  # wrong name
    page.keyboard.press("Tab")
    page.keyboard.type("bad release")
    page.locator("#confirm-ok").press("Enter")
    expect(page.locator("#confirm-error")).to_contain_text("Type checkout-api exactly")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    alias = LambdaTrafficShifter(
        LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")
    ).current()
    assert alias.function_version == "2"  # nothing rolled back without the confirmation


def test_an_emergency_rollback_sent_twice_from_the_page_rolls_back_once(console: Any, browser: Any) -> None:
    """Two tabs show refunds-api live on version 3; both roll it back. The second finds the rollback
    from 3 done (the page sends the version it showed): the service stays on 2, not 1."""
    from datetime import timedelta

    from deployguard import clock
    from deployguard.models import Deployment
    from deployguard_local.emulator import sample_handler

    expect = playwright_api.expect
    versions = console.aws.deploy_sample_function("refunds-api", "live", sample_handler, versions=3)
    repository = DeploymentRepository()
    for i, (stable, new) in enumerate([(versions[0], versions[1]), (versions[1], versions[2])]):
        target = LambdaTarget(function_name="refunds-api", alias="live", stable_version=stable, new_version=new)
        repository.create_deployment(
            Deployment(deployment_id=f"dep-refunds-{i}", service="refunds-api", environment="production", version=new,
                       target=target, status=DeploymentStatus.SUCCEEDED, decision="promoted", canary_weight=1.0,
                       started_at=clock.now() - timedelta(hours=2 - i))
        )  # fmt: skip
    newest = LambdaTarget(
        function_name="refunds-api", alias="live", stable_version=versions[0], new_version=versions[2]
    )
    LambdaTrafficShifter(newest).promote_verified()
    tabs = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        tab = context.new_page()
        tab.goto(f"{console.url}/#token={console.credentials.write_token}")
        tab.get_by_role("link", name="Services").click()
        expect(tab.locator("#services tr", has_text="refunds-api")).to_contain_text(versions[2])
        tabs.append(tab)
    try:
        for tab in tabs:
            tab.get_by_role("button", name="Emergency rollback of refunds-api").click()
            tab.locator("#confirm-name").fill("refunds-api")
            _confirm(tab, "refunds fail after the release")
        expect(tabs[0].locator("#status")).to_contain_text(f"back on version {versions[1]}")
        expect(tabs[1].locator("#status")).to_contain_text(f"already rolled back from version {versions[2]}")
    finally:
        for tab in tabs:
            tab.context.close()
    assert LambdaTrafficShifter(newest).current().function_version == versions[1]
    trail = repository.audit_trail("dep-refunds-1")
    assert [(e.details["from_version"], e.details["to"]) for e in trail if e.action == "emergency_rollback"] == [
        (versions[2], versions[1])
    ]


def test_a_canary_rolling_back_says_so_and_offers_only_abort(console: Any, page: Any) -> None:
    """Assess decided to roll back (the record: in progress, phase failed); the page says "rolling back",
    offers abort only, and the API refuses the other verbs with 409."""
    import requests

    from deployguard.models import Deployment, Phase, PhaseChange
    from deployguard_local.emulator import sample_handler

    expect = playwright_api.expect
    versions = console.aws.deploy_sample_function("ledger-api", "live", sample_handler)
    target = LambdaTarget(function_name="ledger-api", alias="live", stable_version=versions[0], new_version=versions[1])
    LambdaTrafficShifter(target).shift(0.25)
    deployment = Deployment(deployment_id="dep-ledger-rolling", service="ledger-api", environment="production",
                            version=versions[1], target=target, status=DeploymentStatus.IN_PROGRESS,
                            canary_weight=0.25, phase=Phase.FAILED)  # fmt: skip
    deployment.phase_history.append(PhaseChange(phase=Phase.FAILED, at=deployment.started_at, reason="rolling back"))
    DeploymentRepository().create_deployment(deployment)
    page.goto(f"{console.url}/#token={console.credentials.write_token}")
    card = page.locator("#canaries article", has_text=f"ledger-api {versions[1]}")
    expect(card).to_contain_text("rolling back")
    expect(card.get_by_role("button")).to_have_count(1)
    expect(card.get_by_role("button", name=f"Abort ledger-api {versions[1]}")).to_be_enabled()
    refused = requests.post(
        f"{console.url}/api/deployments/dep-ledger-rolling/control/promote", json={"reason": "looks fine"},
        headers={"Authorization": f"Bearer {console.credentials.write_token}"}, timeout=30,
    )  # fmt: skip
    assert refused.status_code == 409 and "is rolling back" in refused.json()["message"], refused.text
    page.get_by_role("button", name=f"Abort ledger-api {versions[1]}").click()  # leave no canary in flight
    _confirm(page, "finish it")
    expect(page.locator("#status")).to_contain_text(f"back at 100% version {versions[0]}")


def test_an_iam_caller_is_told_what_a_write_needs(console: Any, page: Any) -> None:
    """Behind a SigV4-signing proxy whoami answers can_write: null (IAM decides each write route): the buttons
    stay enabled and the page says writes need the write policy. (The local server speaks JWT only: whoami's
    answer is the IAM one, everything else is served as usual.)"""
    import json

    expect = playwright_api.expect
    iam = {"identity": "arn:aws:iam::123456789012:role/oncall", "kind": "iam", "can_write": None}
    page.route("**/api/whoami", lambda route: route.fulfill(status=200, content_type="application/json",
                                                            body=json.dumps(iam)))  # fmt: skip
    page.goto(f"{console.url}/#token={console.credentials.write_token}")
    expect(page.locator("#who")).to_contain_text("oncall · writes need the console write policy")
    page.get_by_role("link", name="Services").click()
    expect(page.get_by_role("button", name="Emergency rollback of checkout-api")).to_be_enabled()
