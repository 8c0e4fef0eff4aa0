"""The recorder's scheduled sweep audits each hook answer it finished once, a failed audit write included."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from deployguard import clock
from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.chaos.faults import FaultInjector
from deployguard_local.codedeploy import simulate_embedded_rollout
from deployguard_local.emulator import sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour


def test_a_resent_answer_whose_audit_write_fails_once_is_audited_once(embedded: Any) -> None:
    name = "late-befor"
    versions = embedded.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    traffic = LambdaTrafficSource(name, "live", 3000, {v: VersionBehaviour() for v in versions}, seed=6)
    embedded.clock.listeners.append(traffic.on_clock)
    outage: dict[str, Any] = {"until": None}

    def status_call_down(request: Any) -> bool:
        until = outage["until"]
        return until is not None and clock.now() < until

    steps: list[str] = []

    def on_step(line: str) -> None:
        steps.append(line)
        if line.startswith("CodeDeploy START"):  # the hook's own status calls fail: the sweep resends it
            outage["until"] = clock.now() + timedelta(seconds=60)

    def audit_of_resend(request: Any) -> bool:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        return "hook_resent" in body

    with FaultInjector(embedded.clock) as faults:
        faults.on("codedeploy", "PutLifecycleEventHookExecutionStatus", [], then="unavailable", when=status_call_down)
        audit_plan = faults.on("dynamodb", "PutItem", ["throttle"] * 9, when=audit_of_resend)  # one write, all tries
        result = simulate_embedded_rollout(embedded, target, application=name, on_step=on_step,
                                           recorder_schedule=True, hook_timeout_minutes=60)  # fmt: skip
    assert audit_plan.injected == 9
    assert result.final_state == "SUCCESS", steps
    assert result.hooks == [("BeforeAllowTraffic", "Succeeded"), ("AfterAllowTraffic", "Succeeded")]
    trail = DeploymentRepository().audit_trail(result.deployment_id)
    resent = [e for e in trail if e.action == "hook_resent"]
    assert len(resent) == 1, [e.action for e in trail]
    assert resent[0].details["status"] == "Succeeded" and resent[0].details["answer"]
