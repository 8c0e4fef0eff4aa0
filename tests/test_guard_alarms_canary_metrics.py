"""The dashboard's "State machine canaries: promoted and rolled back" widget reads CanaryPromote and
CanaryRollback: a canary the judge rolls back in its Assess task (no Rollback task runs) is counted rolled
back, once. The canary state machine end to end on the embedded AWS (moto's ASL interpreter, the real
CanaryStepFunction in-process), the EMF records its tasks print read back; and every task's log line
names its deployment, validate's included."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard_local.emulator import EmbeddedAws, sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "deployguard.yaml"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedAws]:
    runtime.metrics.clear_metrics()
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed: each task prints its EMF record
    level = runtime.logger.log_level
    runtime.logger.setLevel("INFO")  # the tests' default is WARNING: the tasks' info lines are read here
    try:
        with EmbeddedAws(config_file=DEMO_CONFIG, quiet=False) as stack:
            yield stack
    finally:
        runtime.logger.setLevel(level)


def _run(aws: EmbeddedAws, name: str, behaviours: dict[int, VersionBehaviour], with_id: bool = True) -> dict[str, Any]:
    versions = aws.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    traffic = LambdaTrafficSource(
        name, "live", 2000, {v: behaviours.get(i, VersionBehaviour()) for i, v in enumerate(versions)}, seed=3
    )
    assert aws.clock is not None
    aws.clock.listeners.append(traffic.on_clock)
    request: dict[str, Any] = {"service": name, "version": versions[1], "target": target.model_dump()}
    if with_id:
        request["deployment_id"] = f"dep-{name}"
    execution = aws.run_state_machine("CanaryStateMachine", {"deployment": request})
    aws.invoker.drain()
    return execution


def _lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _records_with(capsys: pytest.CaptureFixture[str], name: str) -> list[dict[str, Any]]:
    """The JSON log lines so far, and those still being written until one carries ``name``: a task's metrics are
    flushed when its handler returns, which the execution's end may come before (a busy machine)."""
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30.0
    while True:
        captured = capsys.readouterr()
        records += _lines(captured.out + "\n" + captured.err)
        if _sum(records, name) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def _sum(records: list[dict[str, Any]], name: str) -> float:
    return sum(sum(r[name]) if isinstance(r[name], list) else r[name] for r in records if "_aws" in r and name in r)


def test_the_judges_rollback_is_counted_as_a_canary_rolled_back(
    aws: EmbeddedAws, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    regressing = VersionBehaviour(regress_at=4, regressed_error_rate=0.10, regressed_p99_ms=2000)
    execution = _run(aws, "payments-api", {1: regressing})
    assert execution["status"] == "SUCCEEDED"
    assert DeploymentRepository().get_deployment("dep-payments-api").decision == "rolled_back"
    records = _records_with(capsys, "CanaryRollback")
    tasks = [r.get("action") for r in records if r.get("message") == "canary task done"]
    assert "rollback" not in tasks and tasks[-1] == "notify"  # Assess ended it: no Rollback task ran
    assert _sum(records, "CanaryRollback") == 1 and _sum(records, "CanaryPromote") == 0


def test_a_promoted_canary_is_counted_once_and_validate_logs_its_deployment(
    aws: EmbeddedAws, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    execution = _run(aws, "checkout-api", {}, with_id=False)  # the record named after the execution
    assert execution["status"] == "SUCCEEDED"
    records = _records_with(capsys, "CanaryPromote")
    assert _sum(records, "CanaryPromote") == 1 and _sum(records, "CanaryRollback") == 0
    done = [r for r in records if r.get("message") == "canary task done"]
    (deployment_id,) = {r["deployment_id"] for r in done}
    assert deployment_id.startswith("dg-") and done[0]["action"] == "validate"
    assert DeploymentRepository().get_deployment(deployment_id).decision == "promoted"
