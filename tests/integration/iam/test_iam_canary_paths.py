"""The canary state machine with IAM enforced on the embedded AWS (``EmbeddedAws(enforce_iam=True)``): every
call of CanaryStepFunction (and the functions it reaches) is refused unless its role in template.yaml allows it,
as on AWS. A healthy canary is promoted, a regression rolled back, an approval answered; and a role missing an
action is refused (the enforcement is real)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from canary_flow_support import config_with_approval, in_background, prepare, until

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import LocalCredentials, http_api_event
from deployguard_local.emulator import EmbeddedAws

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "examples" / "deployguard.yaml"
DEP = "dep-checkout-api"


JSON = {"content-type": "application/json"}  # a write's body (415 without it)


@pytest.fixture
def aws() -> Iterator[Any]:
    with EmbeddedAws(config_file=DEMO_CONFIG, enforce_iam=True) as embedded:
        yield embedded


def _run(aws: Any, regress_at: int | None = None) -> tuple[dict[str, Any], Any]:
    request, target = prepare(aws, regress_at)
    execution = aws.run_state_machine("CanaryStateMachine", request, timeout=120)
    aws.invoker.drain()
    return execution, target


def test_a_healthy_canary_is_validated_and_promoted_under_its_role(aws: Any) -> None:
    execution, target = _run(aws)
    deployment = DeploymentRepository().get_deployment(DEP)
    assert execution["status"] == "SUCCEEDED"
    assert (deployment.status, deployment.decision) == (DeploymentStatus.SUCCEEDED, "promoted")
    trail = [e.action for e in DeploymentRepository().audit_trail(DEP)]
    assert trail[0] == "validated"  # the pre-traffic checks (smoke test: lambda:InvokeFunction) passed
    assert LambdaTrafficShifter(target).current().function_version == target.new_version
    assert aws.iam.refused == []


def test_a_regression_is_rolled_back_under_its_role(aws: Any) -> None:
    execution, target = _run(aws, regress_at=2)
    deployment = DeploymentRepository().get_deployment(DEP)
    assert execution["status"] == "SUCCEEDED"
    assert (deployment.status, deployment.decision) == (DeploymentStatus.ROLLED_BACK, "rolled_back")
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version
    assert aws.iam.refused == []


def test_a_canary_waiting_for_approval_is_promoted_once_approved(tmp_path: Path) -> None:
    with EmbeddedAws(config_file=config_with_approval(tmp_path, True), enforce_iam=True) as aws:
        request, target = prepare(aws)
        worker, result = in_background(aws, request)
        until(lambda: (found := DeploymentRepository().find_deployment(DEP)) and found.control.awaiting_approval)
        creds = LocalCredentials()  # the person approves in the console: ConsoleWriteFunction answers the token
        body = json.dumps({"reason": "looks good"}).encode()
        event = http_api_event(
            "POST", f"/api/deployments/{DEP}/control/approve", JSON, body, creds.claims(creds.write_token)
        )
        payload, errored = aws.invoke("ConsoleWriteFunction", event)
        assert not errored and payload["statusCode"] == 200, payload
        worker.join(60)
        deployment = DeploymentRepository().get_deployment(DEP)
        assert result["status"] == "SUCCEEDED"
        assert (deployment.status, deployment.decision) == (DeploymentStatus.SUCCEEDED, "promoted")
        assert LambdaTrafficShifter(target).current().function_version == target.new_version
        assert aws.iam.refused == []


def test_an_action_missing_from_the_role_is_refused_as_on_aws(aws: Any) -> None:
    """Without lambda:InvokeFunction (the role before this fix), the smoke test is refused and the canary ends
    validation_failed, as it did on AWS; the refusal names the function and the action."""
    aws.iam.roles["CanaryStepFunction"].allow.remove("lambda:invokefunction")
    execution, target = _run(aws)
    deployment = DeploymentRepository().get_deployment(DEP)
    assert execution["status"] == "SUCCEEDED"
    assert deployment.decision == "validation_failed"
    assert LambdaTrafficShifter(target).current().function_version == target.stable_version
    # refused at each attempt of the check, and nothing else
    assert {(r.function, r.action) for r in aws.iam.refused} == {("CanaryStepFunction", "lambda:InvokeFunction")}
    assert "not authorized to perform: lambda:InvokeFunction" in str(deployment.model_dump())
