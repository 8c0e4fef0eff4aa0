"""The state machine's Validate runs the service's pre-traffic checks (the hook's checks and
settings) within the validation budget; a failed critical check fails the canary before any
traffic moves, and ``validation.failed`` raises ``canary-issue``."""

from __future__ import annotations

from typing import Any

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import DeploymentStatus, EventType, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.emulator import sample_handler


def _run(embedded: Any, name: str, handler: Any) -> tuple[dict[str, Any], LambdaTarget]:
    versions = embedded.deploy_sample_function(name, "live", handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    execution = embedded.run_state_machine(
        "CanaryStateMachine",
        {"deployment": {"deployment_id": f"dep-{name}", "service": name, "version": versions[1],
                        "target": target.model_dump()}},
    )  # fmt: skip
    embedded.invoker.drain()
    return execution, target


def test_a_failed_smoke_test_fails_the_canary_before_any_traffic_moves(embedded: Any) -> None:
    def unhealthy(event: Any, context: Any) -> dict[str, Any]:
        return {"statusCode": 503, "body": "{}"}

    execution, target = _run(embedded, "unready-api", unhealthy)
    assert execution["status"] == "SUCCEEDED"
    repository = DeploymentRepository()
    deployment = repository.get_deployment("dep-unready-api")
    assert (deployment.status, deployment.decision) == (DeploymentStatus.FAILED, "validation_failed")
    assert "smoke-test" in (deployment.decision_reason or "")
    trail = [e.action for e in repository.audit_trail(deployment.deployment_id)]
    assert "pre_deployment_checks" in trail and "traffic_shifted" not in trail
    state = LambdaTrafficShifter(target).current()
    assert (state.function_version, state.additional_weights) == (target.stable_version, {})
    kinds = [e.event_type for e in repository.events(deployment.deployment_id)]
    assert EventType.VALIDATION_FAILED in kinds and EventType.CANARY_COMPLETED in kinds
    assert EventType.CANARY_STARTED not in kinds
    incidents = [i for i in IncidentRepository(repository).recent() if i.deployment_id == deployment.deployment_id]
    assert any("canary-issue" in i.rules for i in incidents)


def test_passing_checks_let_the_canary_start(embedded: Any) -> None:
    execution, _ = _run(embedded, "ready-api", sample_handler)
    assert execution["status"] == "SUCCEEDED"
    repository = DeploymentRepository()
    [checks] = [e for e in repository.audit_trail("dep-ready-api") if e.action == "pre_deployment_checks"]
    assert checks.reason.startswith("pre-deployment checks: 2 passed, 0 failed")
    assert [c["name"] for c in checks.details["checks"]] == ["smoke-test", "baseline"]
    assert "traffic_shifted" in [e.action for e in repository.audit_trail("dep-ready-api")]
