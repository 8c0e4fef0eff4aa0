"""What the alias race tests share: the real CanaryStepFunction handler's tasks on the embedded AWS, one at a time
(as Step Functions runs them, its retries and late attempts included)."""

from __future__ import annotations

from typing import Any

from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.emulator import EmbeddedAws, sample_handler

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:canary:"


def step(aws: EmbeddedAws, action: str, state: dict[str, Any], execution: str | None = None) -> tuple[Any, bool]:
    """One task of the canary state machine through the handler: (its output or error, whether it errored)."""
    event: dict[str, Any] = {"action": action, "state": state}
    if execution:
        event["execution"] = execution
    out, errored = aws.invoke("CanaryStepFunction", event)
    return out, errored


def request(deployment_id: str, target: LambdaTarget) -> dict[str, Any]:
    return {"deployment": {"deployment_id": deployment_id, "service": target.function_name,
                           "version": target.new_version, "target": target.model_dump()}}  # fmt: skip


def started(aws: EmbeddedAws, deployment_id: str, function: str = "svc") -> tuple[LambdaTarget, dict[str, Any]]:
    """Function ``function`` (versions 1 and 2, alias ``live`` on 1) and a canary of version 2 validated."""
    versions = aws.deploy_sample_function(function, "live", sample_handler)
    target = LambdaTarget(function_name=function, alias="live", stable_version=versions[0], new_version=versions[1])
    state, errored = step(aws, "validate", request(deployment_id, target), EXECUTION + deployment_id)
    assert not errored, state
    return target, state


def audit_actions(deployment_id: str) -> list[str]:
    return [a.action for a in DeploymentRepository().audit_trail(deployment_id)]
