"""A canary rollout on the embedded AWS, small enough to run hundreds of times (tests, ``make chaos``)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import AliasState, LambdaTrafficShifter
from deployguard.models import LambdaTarget
from deployguard_local.emulator import EmbeddedAws, sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

# two steps, two minutes each, no alert rules: the canary's own Rollback and Promote decide
LEAN_CONFIG = """\
environment: production
defaults:
  alias: live
  canary: {steps: [20, 50], step_duration_seconds: 120, assessment_interval_seconds: 60}
  judge: {max_inconclusive_periods: 3, on_no_evidence: hold}
alerting: {use_default_rules: false}
"""

REGRESSION = VersionBehaviour(regress_at=2, regressed_error_rate=0.12, regressed_p99_ms=2000)


def write_lean_config(folder: Path, extra: str = "") -> Path:
    path = folder / "deployguard-lean.yaml"
    path.write_text(LEAN_CONFIG + extra, encoding="utf-8")
    return path


@dataclass
class CanaryRun:
    deployment_id: str
    target: LambdaTarget
    traffic: LambdaTrafficSource
    execution: dict[str, Any] | None = None

    def alias(self) -> AliasState:
        return LambdaTrafficShifter(self.target).current()

    @property
    def stable_only(self) -> bool:
        return self.alias().weight_of(self.target.stable_version) == 1.0


def prepare_canary(aws: EmbeddedAws, name: str, new_version: VersionBehaviour | None = None,
                   rpm: float = 2000, seed: int = 3) -> CanaryRun:  # fmt: skip
    """Function ``name`` (versions 1 and 2, alias ``live`` at 1) with synthetic traffic on the clock."""
    versions = aws.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    behaviours = {versions[0]: VersionBehaviour(), versions[1]: new_version or VersionBehaviour()}
    traffic = LambdaTrafficSource(name, "live", rpm, behaviours, seed=seed)
    assert aws.clock is not None
    aws.clock.listeners.append(traffic.on_clock)
    return CanaryRun(f"dep-{name}", target, traffic)


def run_canary(aws: EmbeddedAws, run: CanaryRun, timeout: float = 120.0) -> CanaryRun:
    """Run the canary state machine for ``run`` to its end (then its traffic stops)."""
    request = {
        "deployment_id": run.deployment_id,
        "service": run.target.function_name,
        "version": run.target.new_version,
        "target": run.target.model_dump(),
    }
    sfn = clients.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=aws.ref("CanaryStateMachine"), name=f"run-{uuid.uuid4().hex[:12]}",
        input=json.dumps({"deployment": request}),
    )["executionArn"]  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while True:  # polled gently: DescribeExecution competes with the execution for the interpreter
            time.sleep(0.05)
            description = sfn.describe_execution(executionArn=arn)
            if description["status"] != "RUNNING":
                run.execution = description
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"canary execution {arn} still running after {timeout:.0f} s")
    finally:
        run.traffic.active = False
    aws.invoker.drain()
    return run
