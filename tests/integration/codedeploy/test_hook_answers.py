"""Issue 11, part 2 on the embedded AWS: CodeDeploy's answers to a status, and a hook whose
status call fails being answered later by the recorder's schedule, exactly once.

Faults come from botocore ``before-send`` handlers (deployguard_local.chaos.faults); every wait
is simulated time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deployguard import clock
from deployguard.aws import clients
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.codedeploy import LEDGER, create_lambda_deployment, simulate_embedded_rollout
from deployguard_local.emulator import sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour


def _put(deployment_id: str, execution_id: str, status: str) -> str:
    """The status call as a hook makes it; CodeDeploy's error code, or "accepted"."""
    try:
        clients.client("codedeploy", retries=False).put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status=status
        )
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "accepted"


def test_codedeploy_takes_one_result_per_execution_and_refuses_once_it_no_longer_waits(embedded: Any) -> None:
    versions = embedded.deploy_sample_function("answers", "live", sample_handler)
    target = LambdaTarget(function_name="answers", alias="live", stable_version=versions[0], new_version=versions[1])
    deployment_id = create_lambda_deployment(target, "answers", "live")
    execution = LEDGER.issue(deployment_id)
    assert _put(deployment_id, execution, "InProgress") == "InvalidLifecycleEventHookExecutionStatusException"
    assert _put(deployment_id, "hook-never-issued", "Succeeded") == "InvalidLifecycleEventHookExecutionIdException"
    assert _put(deployment_id, execution, "Succeeded") == "accepted"
    assert _put(deployment_id, execution, "Succeeded") == "accepted"  # a repeat while CodeDeploy still waits
    assert _put(deployment_id, execution, "Failed") == "LifecycleEventAlreadyCompletedException"
    LEDGER.complete(execution)  # the engine took the result and moved on
    assert _put(deployment_id, execution, "Succeeded") == "LifecycleEventAlreadyCompletedException"
    assert LEDGER.calls_for(execution) == 1 and LEDGER.status_of(execution) == "Succeeded"


@pytest.mark.parametrize("hook", ["BeforeAllowTraffic", "AfterAllowTraffic"])
def test_a_hook_whose_status_call_fails_is_answered_by_the_recorder_schedule_once(embedded: Any, hook: str) -> None:
    name = f"late-{hook[:5].lower()}"
    versions = embedded.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    traffic = LambdaTrafficSource(name, "live", 3000, {v: VersionBehaviour() for v in versions}, seed=6)
    embedded.clock.listeners.append(traffic.on_clock)
    outage: dict[str, Any] = {"until": None}

    def status_call_down(request: Any) -> bool:
        until = outage["until"]
        return until is not None and clock.now() < until

    steps: list[str] = []
    # the hook runs right after START (BeforeAllowTraffic), or a minute after 100% (AfterAllowTraffic)
    trigger, outage_seconds = ("CodeDeploy START", 60) if hook == "BeforeAllowTraffic" else ("traffic 100%", 120)

    def on_step(line: str) -> None:
        steps.append(line)
        if line.startswith(trigger):  # CodeDeploy's status API answers 503 through the hook's whole margin
            outage["until"] = clock.now() + timedelta(seconds=outage_seconds)

    with FaultInjector(embedded.clock) as faults:
        plan = faults.on("codedeploy", "PutLifecycleEventHookExecutionStatus", [], then="unavailable",
                         when=status_call_down)  # fmt: skip
        result = simulate_embedded_rollout(embedded, target, application=name, on_step=on_step,
                                           recorder_schedule=True, hook_timeout_minutes=60)  # fmt: skip
    assert plan.injected >= 3  # the hook tried within its margin, then left the status for the sweep
    assert result.final_state == "SUCCESS", steps
    assert result.hooks == [("BeforeAllowTraffic", "Succeeded"), ("AfterAllowTraffic", "Succeeded")]
    accepted = [c for c in result.status_calls if c.accepted and not c.repeat]
    assert len(accepted) == 2  # one result per hook execution
    assert any(line.startswith(f"{hook} hook answered after") for line in steps), steps
    assert any("resent Succeeded (accepted)" in line for line in steps), steps
    record = DeploymentRepository().get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.SUCCEEDED
    actions = [e.action for e in DeploymentRepository().audit_trail(result.deployment_id)]
    assert actions.count("hook_verdict") == 2 and actions.count("hook_resent") == 1
