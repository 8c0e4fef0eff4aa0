"""Helpers of the tests of incidents grouped without the deployment (service, environment, group): the
real alert engine and executor on moto (Lambda alias, DynamoDB table), alerts raised from assessments."""

from __future__ import annotations

from typing import Any

from deployguard import clock
from deployguard.alerts.engine import AlertEngine
from deployguard.alerts.settings import AlertingSettings, default_rules
from deployguard.aws import clients
from deployguard.models import (
    Assessment,
    Decision,
    Deployment,
    DeploymentStatus,
    LambdaTarget,
    Verdict,
)
from deployguard.remediation.targets import TargetAllowlist

GROUPED = ["service", "environment", "group"]  # a second release joins the first one's open incident


def grouped_engine(repo: Any, publisher: Any, **remediation: Any) -> AlertEngine:
    """The default rules, grouped per service, environment and group (not per deployment)."""
    rules = [r.model_dump(exclude={"grouping_key"}) | {"grouping_key": GROUPED} for r in default_rules()]
    settings = AlertingSettings.model_validate({"rules": rules, "remediation": remediation})
    return AlertEngine(settings, repo, publisher, allowlist=TargetAllowlist(["lambda:checkout-*"]))


def deployment(repo: Any, deployment_id: str, stable: str, new: str) -> Deployment:
    d = Deployment(
        deployment_id=deployment_id,
        service="checkout-api",
        environment="production",
        version=new,
        target=LambdaTarget(function_name="checkout-api", alias="live", stable_version=stable, new_version=new),
        status=DeploymentStatus.IN_PROGRESS,
    )
    repo.create_deployment(d)
    return d


def end(repo: Any, deployment_id: str, status: DeploymentStatus) -> None:
    def change(d: Deployment) -> None:
        d.status, d.ended_at = status, clock.now()

    repo.update_deployment(deployment_id, change)


def assessment(d: Deployment, decision: Decision = Decision.HEALTHY) -> Assessment:
    return Assessment(deployment_id=d.deployment_id, verdict=Verdict(decision=decision, summary="s"), health_score=90)


def failing_verdict(engine: AlertEngine, d: Deployment) -> list[Any]:
    """The judge finds the canary worse: ``canary-issue`` (its plan: an automatic rollback)."""
    return engine.on_assessment(d, assessment(d, Decision.FAILING))


def high_errors(engine: AlertEngine, d: Deployment) -> list[Any]:
    """10% errors: ``high-error-rate`` (its plan: a rollback a person approves)."""
    return engine.on_assessment(d, assessment(d), {"error_rate": 0.10}, {"error_rate": 0.001})


def slow(engine: AlertEngine, d: Deployment) -> list[Any]:
    """p99 three times the baseline: ``performance-degradation``."""
    return engine.on_assessment(d, assessment(d), {"response_time_p99": 900.0}, {"response_time_p99": 300.0})


def fine(engine: AlertEngine, d: Deployment) -> list[Any]:
    """An assessment where every rule evaluates false."""
    now = {"response_time_p99": 300.0, "throughput": 100.0, "error_rate": 0.001}
    return engine.on_assessment(d, assessment(d), now, {"response_time_p99": 300.0, "throughput": 100.0})


def alias() -> tuple[str, dict[str, float]]:
    a = clients.client("lambda").get_alias(FunctionName="checkout-api", Name="live")
    return a["FunctionVersion"], a.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})


def set_alias(version: str, weights: dict[str, float] | None = None) -> None:
    clients.client("lambda").update_alias(
        FunctionName="checkout-api", Name="live", FunctionVersion=version,
        RoutingConfig={"AdditionalVersionWeights": weights or {}},
    )  # fmt: skip


def audit(repo: Any, deployment_id: str) -> list[str]:
    return [e.action for e in repo.audit_trail(deployment_id)]


def per_deployment_engine(repo: Any, publisher: Any, **remediation: Any) -> AlertEngine:
    """The default rules (one incident per deployment and group)."""
    settings = AlertingSettings.model_validate({"remediation": remediation} if remediation else {})
    return AlertEngine(settings, repo, publisher, allowlist=TargetAllowlist(["lambda:checkout-*"]))


def tick_remediations(engine: AlertEngine) -> list[Any]:
    """The approved-actions part of the minute tick (AlertEngine.on_tick: open incidents, run_approved)."""
    return engine.remediation.run_approved({i.incident_id: i for i in engine.incident_store.open_incidents()})


def pages(publisher: Any, kind: str = "approved_remediation_failed") -> list[Any]:
    return [e for e in publisher.events if e.details.get("kind") == kind]
