"""Helpers of the IAM-enforced integration tests: a guarded function with a canary in flight, and the alert
engine that asks a person before its rollback (as the incident tests' helpers, here beside the IAM tests)."""

from __future__ import annotations

from typing import Any

from deployguard.alerts.engine import AlertEngine
from deployguard.alerts.settings import AlertingSettings
from deployguard.aws.events import EventPublisher
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import Assessment, Decision, Deployment, DeploymentStatus, LambdaTarget, Verdict, VerdictReason
from deployguard.remediation.targets import TargetAllowlist
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.emulator import sample_handler

FUNCTION = "checkout-api"  # a service of examples/deployguard.yaml, so the CLI's allowlist has it


def guarded_canary_in_flight(embedded: Any, weight: float = 0.25) -> tuple[Deployment, LambdaTrafficShifter]:
    versions = embedded.deploy_sample_function(FUNCTION, "live", sample_handler)
    target = LambdaTarget(function_name=FUNCTION, alias="live", stable_version=versions[0], new_version=versions[1])
    shifter = LambdaTrafficShifter(target)
    shifter.shift(weight)
    deployment = Deployment(
        deployment_id="dg-regression-1", service=FUNCTION, environment="production", version=versions[1],
        target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=weight,
    )  # fmt: skip
    DeploymentRepository().create_deployment(deployment)
    return deployment, shifter


def alert_engine() -> AlertEngine:
    settings = AlertingSettings()
    allowlist = TargetAllowlist(settings.remediation.allowed_targets, [FUNCTION])
    return AlertEngine(settings, DeploymentRepository(), EventPublisher(), allowlist=allowlist)


def healthy_assessment(deployment: Deployment) -> Assessment:
    reason = VerdictReason(metric_id="error_rate", status="pass", baseline_value=0.004, canary_value=0.005,
                           message="same")  # fmt: skip
    return Assessment(
        deployment_id=deployment.deployment_id,
        verdict=Verdict(decision=Decision.HEALTHY, summary="no difference", reasons=[reason]),
        health_score=96.0,
        details={"fields": {"canary": {"error_rate": 0.005}, "baseline": {"error_rate": 0.004}}},
    )
