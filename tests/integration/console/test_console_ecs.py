"""The console for an ECS service, in a real headless Chromium (Debian's package, driven by Playwright)
against `deployguard serve --local`'s server over the embedded AWS holding the demo's rollouts (its
ECS blue/green one included):

- the services table names an ECS service's live version family:revision (its ARN on hover) and says
  why emergency rollback is greyed out for it;
- Abort of a running CodeDeploy ECS deployment says where traffic goes (the blue task set), not an alias;
- a failed poll's "Could not load" goes away once a later poll loads (the failure injected by the browser's
  own request routing: the request is aborted, then let through).
"""

from __future__ import annotations

from typing import Any

import pytest

from deployguard.models import DeploymentStatus, EcsTarget, Phase
from deployguard.storage.repository import DeploymentRepository

playwright_api = pytest.importorskip("playwright.sync_api")
playwright_api.expect.set_options(timeout=30_000)  # conditions, not races: a busy machine may take seconds


def _ecs_deployment() -> Any:
    ecs = [
        d
        for d in DeploymentRepository().deployments_of("checkout-web", "production")
        if isinstance(d.target, EcsTarget)
    ]
    assert ecs, "the demo's ECS blue/green rollout"
    return ecs[0]


def test_services_name_the_ecs_task_definition_and_say_why_rollback_is_greyed_out(console: Any, page: Any) -> None:
    expect = playwright_api.expect
    page.goto(f"{console.url}/#token={console.credentials.write_token}")
    expect(page.locator("#who")).to_contain_text("local-operator")
    page.get_by_role("link", name="Services").click()
    row = page.locator("#services tbody tr", has_text="checkout-web")
    expect(row).to_be_visible()
    live = row.locator("td").nth(3)
    expect(live).to_contain_text("checkout-web:")
    expect(live).not_to_contain_text("arn:aws:ecs")
    assert "task-definition/checkout-web:" in (live.get_attribute("title") or "")  # the ARN on hover
    button = page.get_by_role("button", name="Emergency rollback of checkout-web")
    expect(button).to_be_disabled()
    expect(button).to_have_attribute("title", "Emergency rollback moves Lambda aliases: for an ECS service, abort its "
                                     "CodeDeploy deployment (stop with rollback: production goes back to the blue "
                                     "task set)")  # fmt: skip
    expect(button).to_have_accessible_description(button.get_attribute("title"))  # said beside it too
    expect(row.locator(".hint")).to_be_visible()
    # a Lambda service's button stays enabled, without such a note
    lambda_button = page.get_by_role("button", name="Emergency rollback of checkout-api")
    expect(lambda_button).to_be_enabled()
    assert lambda_button.get_attribute("title") is None


def test_abort_of_a_codedeploy_ecs_deployment_says_traffic_goes_back_to_blue(console: Any, page: Any) -> None:
    expect = playwright_api.expect
    ended = _ecs_deployment()
    running = ended.model_copy(update={
        "deployment_id": "ecs-running", "codedeploy_deployment_id": "d-ECSRUNNING",
        "status": DeploymentStatus.IN_PROGRESS, "phase": Phase.VALIDATION, "decision": None,
        "decision_reason": None, "ended_at": None, "canary_weight": 0.1,
    })  # fmt: skip
    DeploymentRepository().create_deployment(running)
    try:
        page.goto(f"{console.url}/#token={console.credentials.write_token}")
        card = page.locator("#canaries article", has_text="ecs-running")
        expect(card).to_be_visible()
        card.get_by_role("button", name=f"Abort checkout-web {running.version}").click()
        dialog = page.locator("dialog#confirm")
        expect(dialog).to_be_visible()
        text = page.locator("#confirm-text")
        expect(text).to_contain_text("CodeDeploy stops the deployment with rollback")
        expect(text).to_contain_text("production traffic goes back to the blue (stable) task set")
        expect(text).not_to_contain_text("alias")
        page.locator("#confirm-cancel").click()
        expect(dialog).to_be_hidden()
        card.get_by_role("button", name=f"Promote checkout-web {running.version}").click()
        expect(text).to_contain_text("ContinueDeployment")
        page.locator("#confirm-cancel").click()
    finally:
        DeploymentRepository().update_deployment("ecs-running", lambda d: setattr(d, "status", DeploymentStatus.FAILED))


POLL_MS = 3_000  # app.js's POLL_MS


def test_a_failed_poll_is_cleared_by_the_next_one_that_loads(console: Any, page: Any) -> None:
    expect = playwright_api.expect
    page.clock.install()  # the page's timers on a clock the test moves: each poll comes when told, not 3 s later
    page.goto(f"{console.url}/#token={console.credentials.write_token}")
    expect(page.locator("#canaries article").first).to_be_visible()
    status = page.locator("#status")
    page.route("**/api/canaries", lambda route: route.abort())  # the network fails the dashboard's poll
    page.clock.fast_forward(POLL_MS)
    expect(status).to_contain_text("Could not load")
    page.unroute("**/api/canaries")  # the network is back: the next poll loads
    page.clock.fast_forward(POLL_MS)
    expect(status).not_to_contain_text("Could not load")
    expect(page.locator("#canaries article").first).to_be_visible()
