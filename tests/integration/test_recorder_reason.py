"""When CodeDeploy ends a deployment DeployGuard failed or stopped, the reason DeployGuard gave stays.

An ECS blue/green rollout on the embedded AWS, through the real lifecycle hook and CodeDeploy's
state-change notifications put on EventBridge (PutEvents; the template's rule invokes the
recorder): the record's ``decision_reason`` keeps the hook's verdict (or the remediation that
stopped it) first, CodeDeploy's state after it, and ``deployguard status`` and ``deployguard
deployments list`` print it. A deployment DeployGuard said nothing about ends with CodeDeploy's word.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from local_control import run

from deployguard.models import DeploymentStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import put_state_change
from deployguard_local.ecs import AlbTrafficSource, EcsStack, create_ecs_service, simulate_ecs_rollout
from deployguard_local.traffic import VersionBehaviour


def _rollout(embedded: Any, stack: EcsStack, green: VersionBehaviour, seed: int) -> Any:
    source = AlbTrafficSource(
        stack.prod_listener_arn, 3000, {stack.blue_target_group: VersionBehaviour(), stack.green_target_group: green},
        seed=seed,
    )  # fmt: skip
    embedded.clock.listeners.append(source.on_clock)

    def through_eventbridge(event: dict[str, Any]) -> None:
        detail = event["detail"]
        put_state_change(detail["deploymentId"], detail["application"], detail["deploymentGroup"], detail["state"])
        embedded.invoker.drain()  # the rule's asynchronous invocation of DeploymentRecorderFunction
        assert not embedded.invoker.failed

    return simulate_ecs_rollout(
        stack, application="checkout-web", group="checkout-web-bg",
        hooks_function=lambda event: embedded.invoke("LifecycleHookFunction", event),
        recorder_function=through_eventbridge, clock_advance=embedded.clock.advance,
    )  # fmt: skip


def _cli(capsys: pytest.CaptureFixture[str], embedded: Any, *argv: str) -> tuple[int, str]:
    code, out, err = run(capsys, *argv, "--table", embedded.ref("DeploymentsTable"))
    assert not err or code in (0, 1), err
    return code, out


def test_hook_failure_reason_stays_when_codedeploy_reports_failure(
    embedded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = create_ecs_service("shop", "checkout-web")
    result = _rollout(embedded, stack, VersionBehaviour(regress_at=0, regressed_error_rate=0.08), seed=22)
    assert result.hooks[-1] == ("AfterAllowTraffic", "Failed") and result.final_state == "FAILURE"
    record = DeploymentRepository().get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.ROLLED_BACK
    reason = record.decision_reason or ""
    assert reason.startswith("post-traffic: ") and "judge failing: canary worse: errors" in reason, reason
    assert reason.endswith("; CodeDeploy FAILURE"), reason
    # the recorder's own audit entry still says what CodeDeploy said
    trail = DeploymentRepository().audit_trail(result.deployment_id)
    assert any(e.action == "codedeploy_failure" for e in trail)

    code, out = _cli(capsys, embedded, "status", result.deployment_id)
    assert code == 1 and "judge failing: canary worse" in out and "CodeDeploy FAILURE" in out, out
    code, out = _cli(capsys, embedded, "status", result.deployment_id, "--json")
    assert "judge failing: canary worse" in json.dumps(json.loads(out))
    code, out = _cli(capsys, embedded, "deployments", "list", "--json")
    listed = {d["deployment_id"]: d for d in json.loads(out)["items"]}
    assert "judge failing: canary worse" in json.dumps(listed[result.deployment_id])


def test_remediation_stop_reason_stays_when_codedeploy_reports_stop(
    embedded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The assessor's failing verdict raises canary-issue, whose remediation stops the deployment (StopDeployment
    with rollback): the record says that remediation, then CodeDeploy's STOP."""
    stack = create_ecs_service("shop", "checkout-web")
    undo = embedded.follow_schedules(["AssessorFunction"])
    try:
        result = _rollout(embedded, stack, VersionBehaviour(regress_at=0, regressed_error_rate=0.1), seed=25)
    finally:
        undo()
    assert result.final_state == "STOP" and result.rolled_back
    record = DeploymentRepository().get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.ROLLED_BACK
    reason = record.decision_reason or ""
    assert reason.startswith("remediation rollback for incident ") and "(canary-issue)" in reason, reason
    assert reason.endswith("; CodeDeploy STOP"), reason
    code, out = _cli(capsys, embedded, "status", result.deployment_id)
    assert code == 1 and "remediation rollback for incident" in out and "CodeDeploy STOP" in out, out


def test_codedeploy_words_alone_when_deployguard_said_nothing(
    embedded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = create_ecs_service("shop", "checkout-web")
    result = _rollout(embedded, stack, VersionBehaviour(), seed=21)
    assert result.final_state == "SUCCESS"
    record = DeploymentRepository().get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.SUCCEEDED and record.decision_reason == "CodeDeploy SUCCESS"
