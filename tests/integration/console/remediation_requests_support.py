"""The console over the embedded AWS holding what the demo saved and its live canary of orders-api, the configuration
naming orders-api among its services (remediation acts only on the configured services' functions), and a rollback
of that canary asked of people as an incident's ``approval`` step asks it (the remediation executor)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from conftest import Console

from deployguard.alerts.settings import PlanStep
from deployguard.remediation.models import Approval, Outcome
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard_local.console_server import demo_console, wait_until
from deployguard_local.local_state import DEMO_CONFIG

LIVE = "live-orders-api"


@contextmanager
def configured_console(saved: Path, state: Path) -> Iterator[Console]:
    """The demo's ``saved`` state copied into ``state``, its configuration naming orders-api, served on 127.0.0.1."""
    shutil.copytree(saved, state, dirs_exist_ok=True)
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    config["services"]["orders-api"] = {"environment": "production", "function_name": "orders-api"}
    (state / "deployguard.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    manifest = json.loads((state / "state.json").read_text(encoding="utf-8"))
    (state / "state.json").write_text(json.dumps(manifest | {"config_file": str(state / "deployguard.yaml")}))
    with demo_console(0, state_dir=state, seconds_per_minute=None) as (server, aws, credentials):
        yield Console(server, aws, credentials)


def ask(nth: int = 0) -> Approval:
    """A rollback of the live canary asked of people, as an incident's ``approval`` step asks it; ``nth``: which
    of the demo's incidents asks (one request per incident, deployment and action while it is open)."""
    engine = runtime.alert_engine()
    deployment = DeploymentRepository().get_deployment(LIVE)
    incident = engine.incident_store.recent(50)[nth]
    result = engine.remediation.run(incident, deployment, PlanStep(action="rollback", mode="approval"))
    assert result.outcome == Outcome.PENDING_APPROVAL and result.approval_id, result
    store = engine.remediation.store
    # asked once its approval state machine waits on it: that registers a task token on the stored request (a
    # write of its own, on its own thread), so a test that then rewrites the request starts from the stored one
    registered = wait_until(lambda: store.approval(result.approval_id).task_token is not None, timeout=30)
    assert registered, f"approval {result.approval_id}: its state machine registered no task token"
    return store.approval(result.approval_id)


def store_state(approval_id: str) -> str:
    return runtime.alert_engine().remediation.store.approval(approval_id).status.value
