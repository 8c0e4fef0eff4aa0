"""An ECS service's live version on the console (``GET /api/services``, the real read function through the embedded
Lambda Invoke) follows green's share of production traffic as the latest deployment's record last has it, not its
status alone: at AfterAllowTraffic (green 100%) and after a failure CodeDeploy did not roll back (green still 100%)
the new task definition is live; during the canary the card says the split; once rolled back, blue's again."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from deployguard import clock
from deployguard.models import Deployment, DeploymentStatus, EcsTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import LocalCredentials, http_api_event
from deployguard_local.emulator import EmbeddedAws

BLUE = "arn:aws:ecs:us-east-1:123456789012:task-definition/checkout-web:1"
GREEN = "arn:aws:ecs:us-east-1:123456789012:task-definition/checkout-web:2"


def _card(embedded: EmbeddedAws) -> tuple[Any, Any, Any]:
    """checkout-web's (live_version, live_version_source, live_version_note) as ``GET /api/services`` answers."""
    credentials = LocalCredentials()
    event = http_api_event("GET", "/api/services", {}, b"", credentials.claims(credentials.read_token))
    payload, errored = embedded.invoke("ConsoleReadFunction", event)
    assert not errored and payload["statusCode"] == 200, payload
    card = next(c for c in json.loads(payload["body"]) if c["service"] == "checkout-web")
    assert card["latest"]["deployment_id"] == "dep-checkout-web-bg"
    return card["live_version"], card["live_version_source"], card["live_version_note"]


def _record(status: DeploymentStatus, weight: float) -> None:
    def change(d: Deployment) -> None:
        d.status, d.canary_weight = status, weight

    DeploymentRepository().update_deployment("dep-checkout-web-bg", change)


def _deployment() -> None:
    target = EcsTarget(cluster="shop", service="checkout-web", stable_task_definition=BLUE, new_task_definition=GREEN)
    DeploymentRepository().create_deployment(
        Deployment(deployment_id="dep-checkout-web-bg", service="checkout-web", environment="production",
                   version="checkout-web:2", target=target, status=DeploymentStatus.IN_PROGRESS,
                   phase=Phase.VALIDATION, driver="codedeploy", started_at=clock.now() + timedelta(minutes=1))
    )  # fmt: skip


def test_the_live_ecs_version_follows_greens_production_share(embedded: EmbeddedAws) -> None:
    _deployment()
    # AfterAllowTestTraffic: green serves only the test listener
    assert _card(embedded) == (BLUE, "record", "from the latest deployment's record")
    # the canary: 10% of production on green
    _record(DeploymentStatus.IN_PROGRESS, 0.1)
    assert _card(embedded) == (
        BLUE, "record", "the production listener splits its traffic: 10% to green (checkout-web:2), as last recorded"
    )  # fmt: skip
    # AfterAllowTraffic: all of production on green, the deployment not yet succeeded
    _record(DeploymentStatus.IN_PROGRESS, 1.0)
    note = "green (checkout-web:2) serves all production traffic (the latest deployment's record)"
    assert _card(embedded) == ("checkout-web:2", "record", note)
    # failed and its rollback failed (or none was configured): green still serves production
    _record(DeploymentStatus.FAILED, 1.0)
    live, source, note = _card(embedded)
    assert (live, source) == ("checkout-web:2", "record")
    assert note == (
        "deployment failed and no rollback is recorded: green (checkout-web:2) still serves 100% of production "
        "traffic, as last recorded"
    )
    # stopped during the canary, no rollback recorded: blue, and the split said
    _record(DeploymentStatus.STOPPED, 0.1)
    live, _, note = _card(embedded)
    assert live == BLUE and note.startswith("deployment stopped and no rollback is recorded: green (checkout-web:2)")
    assert note.endswith(
        "; the production listener splits its traffic: 10% to green (checkout-web:2), as last recorded"
    )
    # the rollback deployment succeeded: blue again
    _record(DeploymentStatus.ROLLED_BACK, 0.0)
    assert _card(embedded) == (BLUE, "record", "from the latest deployment's record")


def test_a_succeeded_ecs_deployment_names_the_new_version(embedded: EmbeddedAws) -> None:
    _deployment()
    _record(DeploymentStatus.SUCCEEDED, 1.0)
    assert _card(embedded) == ("checkout-web:2", "record", "from the latest deployment's record")
