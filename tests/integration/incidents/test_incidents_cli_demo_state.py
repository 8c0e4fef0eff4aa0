"""`deployguard incidents --local` on the state `make demo` saves (the session's demo run): what acts on an incident
does it as `control --local` does, on the whole stack with the configuration the demo ran with, and keeps the result.
(A file of its own: the commands reload the whole embedded stack, and another worker can take it.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from demo_support import DemoRun
from local_control import local, run


def _canary_incidents(capsys: pytest.CaptureFixture[str], state: Path) -> dict[str, dict[str, Any]]:
    """deployment id -> its canary incident, as the saved state has them."""
    code, out, err = run(capsys, "incidents", "list", "--all", *local(state), "--json")
    assert code == 0, err
    return {i["deployment_id"]: i for i in json.loads(out) if i["group"] == "canary"}


def test_remediate_and_ack_use_the_saved_configuration_and_stack(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = Path(shutil.copytree(demo_run.state_dir, tmp_path / "state"))  # the session's copy is shared
    ids = demo_run.deployment_ids()
    incidents = _canary_incidents(capsys, state)
    canary = incidents[ids["regression-midway"]]

    # the demo's payments-api is a service of the saved configuration (examples/demo.yaml, no --config given):
    # its rollback acts on the saved alias, which the demo's own remediation already put back
    code, out, err = run(capsys, "incidents", "remediate", canary["incident_id"][:10], "--by", "bob", *local(state))
    assert code == 0, err
    assert "lambda:payments-api  noop     alias payments-api:live already at 100% version 1" in out
    code, out, err = run(capsys, "incidents", "show", canary["incident_id"], *local(state), "--json")
    assert code == 0, err
    assert ("remediation_noop", "bob") in {(e["action"], e["actor"]) for e in json.loads(out)["audit"]}  # kept

    # the ECS blue/green rollout's open incident (the README's example, with the demo's own --config): its service
    # is guarded, and its rollback is CodeDeploy's StopDeployment, which finds the deployment ended (as on AWS)
    ecs = incidents[ids["ecs-blue-green"]]
    code, out, err = run(capsys, "incidents", "remediate", ecs["incident_id"], "--by", "bob", "--dry-run",
                         *local(state), "--config", "examples/demo.yaml", "--json")  # fmt: skip
    assert code == 0, err
    [planned] = json.loads(out)
    assert (planned["target"], planned["outcome"]) == ("ecs:shop/checkout-web", "dry_run"), planned
    assert planned["plan"]["type"] == "codedeploy_stop" and planned["plan"]["noop"], planned

    # acknowledging is announced on the stack's topic, and its router delivers it to the demo's channels
    open_canary = incidents[ids["codedeploy-canary"]]
    assert open_canary["status"] == "open"
    code, out, err = run(capsys, "incidents", "ack", open_canary["incident_id"], "--by", "bob", *local(state))
    assert code == 0, err
    assert out.startswith(f"{open_canary['incident_id']} acknowledged by bob")
    code, out, err = run(capsys, "deployments", "show", ids["codedeploy-canary"], *local(state), "--json")
    assert code == 0, err
    history = json.loads(out)
    [announced] = [e for e in history["events"] if e["details"].get("kind") == "incident_acknowledged"]
    assert announced["message"] == "Acknowledged by bob"
    delivered = {n["channel"] for n in history["notifications"] if n["event_id"] == announced["event_id"]}
    assert {"ops-slack", "ops-pagerduty"} <= delivered
