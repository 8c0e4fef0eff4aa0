"""A canary whose rollback failed (its record ended, its alias still splits traffic onto the new version), seen
in a real headless Chromium against the console server on 127.0.0.1 over the embedded AWS: the deployment's
page and the Services view offer Abort (the API's ``left_on_new``), and the abort puts the alias back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from control_support import canary_controller, canary_in_flight

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import ConsoleServer, LocalCredentials

playwright_api = pytest.importorskip("playwright.sync_api")
playwright_api.expect.set_options(timeout=30_000)


@pytest.fixture
def served(embedded: Any) -> Iterator[tuple[ConsoleServer, LocalCredentials]]:
    credentials = LocalCredentials()
    server = ConsoleServer(embedded, credentials, 0).start()
    try:
        yield server, credentials
    finally:
        server.stop()


def _rollback_failed(embedded: Any) -> Any:
    """payments-api's canary at 25% whose Rollback failed for good: NotifyOutcome ended the record."""
    target = canary_in_flight(embedded, "payments-api")
    canary_controller(embedded).notify({
        "deployment_id": "dep-payments-api", "decision": "rolled_back", "target": target.model_dump(mode="json"),
        "error": {"Error": "TrafficShiftError", "Cause": "UpdateAlias throttled"},
    })  # fmt: skip
    record = DeploymentRepository().get_deployment("dep-payments-api")
    assert record.status.is_terminal and record.decision != "promoted"
    assert LambdaTrafficShifter(target).current().additional_weights == {target.new_version: 0.25}
    return target


def _confirm(page: Any, reason: str) -> None:
    dialog = page.locator("dialog#confirm")
    playwright_api.expect(dialog).to_be_visible()
    page.get_by_label("Reason (kept in the audit trail)").fill(reason)
    page.locator("#confirm-ok").click()
    playwright_api.expect(dialog).to_be_hidden()


def test_the_deployment_page_offers_abort_when_the_rollback_failed(embedded: Any, served: Any, page: Any) -> None:
    expect = playwright_api.expect
    target = _rollback_failed(embedded)
    server, credentials = served
    page.goto(f"{server.url}/#token={credentials.write_token}")
    expect(page.locator("#who")).not_to_be_empty()
    page.goto(f"{server.url}/#/deployments/dep-payments-api")
    actions = page.locator("#deployment-actions")
    abort = actions.get_by_role("button", name=f"Abort payments-api {target.new_version}")
    expect(abort).to_be_enabled()
    expect(actions.get_by_role("button")).to_have_count(2)  # abort and the report, nothing else
    abort.click()
    _confirm(page, "the rollback failed")
    expect(page.locator("#status")).to_contain_text(f"back at 100% version {target.stable_version}")
    alias = LambdaTrafficShifter(target).current()
    assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
    expect(actions.get_by_role("button")).to_have_count(1)  # the alias is back: nothing left to abort


def test_services_offers_abort_beside_the_emergency_rollback(embedded: Any, served: Any, page: Any) -> None:
    expect = playwright_api.expect
    target = _rollback_failed(embedded)
    server, credentials = served
    page.goto(f"{server.url}/#token={credentials.write_token}")
    page.get_by_role("link", name="Services").click()
    row = page.locator("#services tr", has_text="payments-api")
    expect(row).to_contain_text("splits its traffic")
    row.get_by_role("button", name=f"Abort payments-api {target.new_version}").click()
    _confirm(page, "put it back")
    expect(page.locator("#status")).to_contain_text(f"back at 100% version {target.stable_version}")
    assert LambdaTrafficShifter(target).current().additional_weights == {}
    expect(row.get_by_role("button", name=f"Abort payments-api {target.new_version}")).to_have_count(0)
