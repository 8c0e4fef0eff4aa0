"""Remediation of a canary that is already rolling back: Assess marks the record rolling back (phase
``failed`` while in progress), then the alert engine's automatic rollback (``canary-issue``) ends it.
The deployment's phase history says ``failed`` once. The real canary state machine on the embedded AWS
(moto's ASL interpreter, the handlers in-process), synthetic CloudWatch traffic, the simulated clock."""

from __future__ import annotations

from typing import Any

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.emulator import sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour


def test_remediating_a_canary_that_is_rolling_back_writes_one_failed_phase(embedded: Any) -> None:
    versions = embedded.deploy_sample_function("payments-api", "live", sample_handler)
    target = LambdaTarget(function_name="payments-api", alias="live", stable_version=versions[0],
                          new_version=versions[1])  # fmt: skip
    regressing = VersionBehaviour(regress_at=0, regressed_error_rate=0.10, regressed_p99_ms=2000)
    traffic = LambdaTrafficSource("payments-api", "live", 2000, {versions[0]: VersionBehaviour(),
                                                                  versions[1]: regressing}, seed=3)  # fmt: skip
    embedded.clock.listeners.append(traffic.on_clock)
    request = {"deployment_id": "dep-payments-api", "service": "payments-api", "version": versions[1],
               "target": target.model_dump()}  # fmt: skip
    execution = embedded.run_state_machine("CanaryStateMachine", {"deployment": request})
    embedded.invoker.drain()
    assert execution["status"] == "SUCCEEDED"

    repository = DeploymentRepository()
    deployment = repository.get_deployment("dep-payments-api")
    assert deployment.status == DeploymentStatus.ROLLED_BACK
    actions = [e.action for e in repository.audit_trail("dep-payments-api")]
    assert "remediation_succeeded" in actions  # the alert engine's rollback ended it, after Assess marked it
    [failed] = [p for p in deployment.phase_history if p.phase == Phase.FAILED]
    assert failed.reason.startswith("rolling back: canary worse")  # the first: when Assess decided it
    assert deployment.phase == Phase.FAILED
    alias = LambdaTrafficShifter(target).current()
    assert (alias.function_version, alias.additional_weights) == (target.stable_version, {})
