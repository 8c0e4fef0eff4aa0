"""An automatic rollback not confirmed within ``emergency_deadline_seconds`` of the decision pages
the incident's first escalation routes at once. Faults are injected on the real boto3 path
(botocore ``before-call`` hooks on UpdateAlias); time comes from the simulated clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alert_rules_support import shop_stack, webhook_events
from botocore.exceptions import ClientError

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import (
    Assessment,
    Decision,
    Deployment,
    DeploymentStatus,
    LambdaTarget,
    Verdict,
    VerdictReason,
)
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.runtime import alert_engine
from deployguard_local.emulator import sample_handler
from deployguard_local.receivers import LocalReceivers

NAME = "pay-api"


@pytest.fixture
def stack() -> Iterator[tuple[Any, LocalReceivers]]:
    with shop_stack([], {NAME: {"environment": "production", "function_name": NAME}}) as (aws, receivers):
        yield aws, receivers


def _failing_canary(aws: Any) -> tuple[Deployment, Assessment]:
    versions = aws.deploy_sample_function(NAME, "live", sample_handler)
    target = LambdaTarget(function_name=NAME, alias="live", stable_version=versions[0], new_version=versions[1])
    LambdaTrafficShifter(target).shift(0.25)
    deployment = Deployment(
        deployment_id="dep-deadline", service=NAME, environment="production", version=versions[1], target=target,
        status=DeploymentStatus.IN_PROGRESS, canary_weight=0.25,
    )  # fmt: skip
    DeploymentRepository().create_deployment(deployment)
    reason = VerdictReason(metric_id="errors", status="fail", canary_value=0.09, baseline_value=0.004, message="x")
    verdict = Verdict(decision=Decision.FAILING, summary="errors regressed", reasons=[reason])
    return deployment, Assessment(deployment_id=deployment.deployment_id, canary_weight=0.25, verdict=verdict)


def _assess_with_update_alias(aws: Any, hook: Callable[..., Any], deployment: Deployment, assessment: Any) -> None:
    """The engine judges the failing assessment while UpdateAlias behaves as ``hook`` makes it."""
    events = clients.client("lambda").meta.events
    events.register("before-call.lambda.UpdateAlias", hook)
    try:
        alert_engine().on_assessment(deployment, assessment)
    finally:
        events.unregister("before-call.lambda.UpdateAlias", hook)
    aws.invoker.drain()


def _missed(deployment_id: str) -> list[Any]:
    return [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "emergency_deadline_missed"]


def _paged(receivers: LocalReceivers) -> list[dict[str, Any]]:
    return [e for e in webhook_events(receivers) if (e.get("details") or {}).get("kind") == "emergency_deadline_missed"]


def test_a_rollback_that_fails_pages_at_once(stack: Any) -> None:
    aws, receivers = stack
    deployment, assessment = _failing_canary(aws)

    def refuse(**kwargs: Any) -> None:
        raise ClientError({"Error": {"Code": "ServiceException", "Message": "injected: unavailable"}}, "UpdateAlias")

    _assess_with_update_alias(aws, refuse, deployment, assessment)
    [missed] = _missed(deployment.deployment_id)
    assert missed.details["outcome"] == "failed" and missed.details["routes"] == ["oncall-primary", "oncall-secondary"]
    [page] = _paged(receivers)
    assert page["severity"] == "critical" and "not confirmed within 30 s" in page["message"]


def test_a_rollback_confirmed_too_late_pages(stack: Any) -> None:
    aws, receivers = stack
    deployment, assessment = _failing_canary(aws)

    def slow(**kwargs: Any) -> None:
        aws.clock.advance(45)  # UpdateAlias answers after 45 s

    _assess_with_update_alias(aws, slow, deployment, assessment)
    assert DeploymentRepository().get_deployment(deployment.deployment_id).status == DeploymentStatus.ROLLED_BACK
    [missed] = _missed(deployment.deployment_id)
    assert missed.details["outcome"] == "succeeded" and missed.details["seconds_since_decision"] >= 45
    assert len(_paged(receivers)) == 1


def test_a_rollback_confirmed_in_time_pages_nobody_extra(stack: Any) -> None:
    aws, receivers = stack
    deployment, assessment = _failing_canary(aws)
    alert_engine().on_assessment(deployment, assessment)
    aws.invoker.drain()
    assert DeploymentRepository().get_deployment(deployment.deployment_id).status == DeploymentStatus.ROLLED_BACK
    assert _missed(deployment.deployment_id) == [] and _paged(receivers) == []
