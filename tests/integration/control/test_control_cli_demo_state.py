"""`deployguard control --local` on the state `make demo` saves (the session's demo run, its four rollouts):
an emergency rollback acts on the saved alias and is kept for the next command; an abort of the CodeDeploy canary,
whose deployment the record says has ended, gets CodeDeploy's answer as on AWS (already completed, nothing
changed). (A file of its own: the commands reload the whole embedded stack, and another worker can take it.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from demo_support import DemoRun
from local_control import BY, alias, local, reopened, run

from deployguard.storage.repository import DeploymentRepository


def test_the_demo_state_rolls_back_and_answers_for_codedeploys_ended_deployment(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = Path(shutil.copytree(demo_run.state_dir, tmp_path / "state"))  # the session's copy is shared
    ids = demo_run.deployment_ids()
    confirm = ["--confirm", "checkout-api"]
    code, out, err = run(capsys, "control", "rollback", "checkout-api", *BY, *confirm, *local(state))
    assert code == 0, err
    assert out.strip() == "checkout-api: checkout-api:live back on version 1 (was 2)"
    with reopened(state):
        assert alias("checkout-api") == ("1", {})
        healthy = DeploymentRepository().get_deployment(ids["healthy-release"])
        assert healthy.decision == "emergency_rolled_back"
        trail = [
            (e.action, e.actor, e.details.get("to")) for e in DeploymentRepository().audit_trail(healthy.deployment_id)
        ]
        assert ("emergency_rollback", "erin", "1") in trail
    code, out, err = run(capsys, "control", "abort", ids["codedeploy-canary"], *BY, *local(state))
    assert code == 0 and out.startswith(f"{ids['codedeploy-canary']} abort: CodeDeploy deployment "), err
    assert out.rstrip().endswith("had already completed (nothing changed)")
    with reopened(state):
        canary = DeploymentRepository().get_deployment(ids["codedeploy-canary"])
        assert canary.status.is_terminal and canary.driver == "codedeploy"
        assert canary.codedeploy_deployment_id is not None and canary.codedeploy_deployment_id in out
