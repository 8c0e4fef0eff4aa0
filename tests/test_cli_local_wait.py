"""`status --wait` and `deployments watch` on the --local state: a saved state changes only when a command saves it,
so they read once and say they did not wait (no simulated timeout burnt, no "timed out after 3600s")."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from local_control import local, run

from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import local_state
from deployguard_local.emulator import EmbeddedAws


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved local state holding a deployment still in progress, one held for a person and one promoted."""
    directory = tmp_path_factory.mktemp("local-wait")
    with EmbeddedAws(storage_only=True) as aws:
        repository = DeploymentRepository(aws.ref("DeploymentsTable"))
        target = LambdaTarget(function_name="orders", alias="live", stable_version="1", new_version="2")
        for deployment_id, status, decision in (("dg-running", DeploymentStatus.IN_PROGRESS, None),
                                                ("dg-held", DeploymentStatus.STOPPED, "held"),
                                                ("dg-done", DeploymentStatus.SUCCEEDED, "promote")):  # fmt: skip
            repository.create_deployment(Deployment(deployment_id=deployment_id, service="orders", version="2",
                                                    environment="production", target=target, status=status,
                                                    decision=decision))  # fmt: skip
        local_state.save(aws, directory)
    return directory


def test_status_wait_on_a_running_local_deployment_answers_at_once(state: Path, capsys) -> None:
    started = time.monotonic()
    code, out, err = run(capsys, "status", "dg-running", *local(state), "--wait", "--timeout", "60")
    assert code == 3, err  # still running: the README's 3, not an error
    assert out.startswith("running: ") and "not waited: the --local state does not change on its own" in out
    assert "timed out" not in out
    code, out, _ = run(capsys, "status", "dg-running", *local(state), "--wait", "--json")
    outcome = json.loads(out)
    assert code == 3 and outcome["state"] == "running" and "not waited" in outcome["message"]
    assert time.monotonic() - started < 60  # two reads, no polling


def test_status_wait_on_an_ended_local_deployment_is_its_outcome(state: Path, capsys) -> None:
    code, out, _ = run(capsys, "status", "dg-done", *local(state), "--wait")
    assert code == 0 and "not waited" not in out
    code, out, _ = run(capsys, "status", "dg-held", *local(state), "--wait")
    assert code == 2 and "not waited" not in out


def test_watch_on_the_local_state_prints_the_timeline_once_and_does_not_wait(state: Path, capsys) -> None:
    code, out, err = run(capsys, "deployments", "watch", "dg-running", *local(state), "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 3, err
    assert lines[0]["kind"] == "traffic"  # the timeline, once
    assert lines[-1]["state"] == "running" and "not waited" in lines[-1]["message"]
    assert "timed out after 3600s" not in out


def test_help_says_local_does_not_wait(capsys) -> None:
    code, out, _ = run(capsys, "status", "--help")
    assert code == 0 and "--local: no wait" in " ".join(out.split())
