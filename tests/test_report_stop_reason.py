"""A remediation rollback of a CodeDeploy (ECS) deployment keeps the failing verdict that raised its incident.

The assessor's failing verdict raises canary-issue, whose remediation stops the deployment
(StopDeployment with rollback) on the embedded AWS; the record's reason, then ``status`` and the
report, say the remediation, the canary's failing verdict, then CodeDeploy's STOP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from local_control import run

from deployguard.models import Decision, DeploymentStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.codedeploy import put_state_change
from deployguard_local.ecs import AlbTrafficSource, create_ecs_service, simulate_ecs_rollout
from deployguard_local.traffic import VersionBehaviour


def test_a_remediation_stop_says_which_verdict_failed(
    embedded: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stack = create_ecs_service("shop", "checkout-web")
    green = VersionBehaviour(regress_at=0, regressed_error_rate=0.1)
    source = AlbTrafficSource(
        stack.prod_listener_arn, 3000, {stack.blue_target_group: VersionBehaviour(), stack.green_target_group: green},
        seed=25,
    )  # fmt: skip
    embedded.clock.listeners.append(source.on_clock)

    def through_eventbridge(event: dict[str, Any]) -> None:
        detail = event["detail"]
        put_state_change(detail["deploymentId"], detail["application"], detail["deploymentGroup"], detail["state"])
        embedded.invoker.drain()

    undo = embedded.follow_schedules(["AssessorFunction"])
    try:
        result = simulate_ecs_rollout(
            stack, application="checkout-web", group="checkout-web-bg",
            hooks_function=lambda event: embedded.invoke("LifecycleHookFunction", event),
            recorder_function=through_eventbridge, clock_advance=embedded.clock.advance,
        )  # fmt: skip
    finally:
        undo()
    assert result.final_state == "STOP" and result.rolled_back
    repository = DeploymentRepository()
    record = repository.get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.ROLLED_BACK
    failing = [a for a in repository.assessments(result.deployment_id) if a.verdict.decision == Decision.FAILING]
    assert failing
    reason = record.decision_reason or ""
    assert reason.startswith("remediation rollback for incident ") and "(canary-issue)" in reason, reason
    assert f"; canary verdict: {failing[0].verdict.summary}" in reason, reason
    assert "canary worse: errors: canary" in reason and reason.endswith("; CodeDeploy STOP"), reason
    code, out, _ = run(capsys, "status", result.deployment_id, "--table", embedded.ref("DeploymentsTable"))
    assert code == 1 and "canary worse: errors" in " ".join(out.split()), out
