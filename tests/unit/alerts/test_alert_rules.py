from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from deployguard.alerts.evaluator import RuleEvaluator
from deployguard.alerts.settings import AlertingSettings, AlertRule
from deployguard.models import (
    Assessment,
    Decision,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EventType,
    LambdaTarget,
    Severity,
    Verdict,
    VerdictReason,
)

TARGET = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")


def _deployment(environment: str = "production", **kw: Any) -> Deployment:
    return Deployment(
        deployment_id="dg-1",
        service="checkout-api",
        environment=environment,
        version="2",
        target=TARGET,
        status=DeploymentStatus.IN_PROGRESS,
        **kw,
    )


def _assessment(decision: Decision = Decision.HEALTHY, score: float | None = 95, **kw: Any) -> Assessment:
    return Assessment(deployment_id="dg-1", verdict=Verdict(decision=decision, summary="s", **kw), health_score=score)


def _fired(settings: AlertingSettings | None = None, **kw: Any) -> set[str]:
    evaluation = RuleEvaluator(settings or AlertingSettings()).evaluate(**kw)
    return {a.rule for a in evaluation.fired}


def test_defaults_compile_and_cover_the_issue() -> None:
    names = {r.name for r in AlertingSettings().effective_rules}
    assert names == {
        "deployment-failed",
        "long-running-deployment",
        "rollback-failed",
        "canary-issue",
        "high-error-rate",
        "performance-degradation",
        "business-impact",
        "system-overload",
        "security-signals",
        "post-deployment-anomaly",
        "critical-health-score",
        "minimum-health-score",
    }


def test_a_healthy_assessment_fires_nothing() -> None:
    assert _fired(deployment=_deployment(), assessment=_assessment()) == set()


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"assessment": _assessment(Decision.FAILING)}, "canary-issue"),
        ({"assessment": _assessment(score=65)}, "critical-health-score"),
        ({"metric_values": {"error_rate": 0.08}}, "high-error-rate"),
        (
            {"metric_values": {"response_time_p99": 900}, "baseline_values": {"response_time_p99": 400}},
            "performance-degradation",
        ),
        ({"metric_values": {"throughput": 60}, "baseline_values": {"throughput": 100}}, "performance-degradation"),
        (
            {"metric_values": {"conversion_rate": 0.030}, "baseline_values": {"conversion_rate": 0.040}},
            "business-impact",
        ),
        ({"metric_values": {"cpu_utilization": 93, "memory_utilization": 97}}, "system-overload"),
        ({"metric_values": {"security_violations": 1}}, "security-signals"),
        (
            {"metric_values": {"failed_authentications": 40}, "baseline_values": {"failed_authentications": 5}},
            "security-signals",
        ),
    ],
)
def test_each_default_rule_fires_on_its_condition(kwargs: dict[str, Any], rule: str) -> None:
    kwargs.setdefault("assessment", _assessment())
    assert rule in _fired(deployment=_deployment(), **kwargs)


def test_metric_values_come_from_the_assessments_fields_not_from_reason_ids() -> None:
    # a verdict reason's value is what the judge compared (a rate for "errors"), not a field
    reasons = [VerdictReason(metric_id="errors", status="fail", baseline_value=0.004, canary_value=0.09, message="x")]
    assert "high-error-rate" not in _fired(deployment=_deployment(), assessment=_assessment(reasons=reasons))
    fields = {"canary": {"response_time_p99": 200.0}, "baseline": {"response_time_p99": 100.0}}
    assessment = _assessment(reasons=reasons).model_copy(update={"details": {"fields": fields}})
    assert "performance-degradation" in _fired(deployment=_deployment(), assessment=assessment)


def test_minimum_health_score_is_scoped_to_production() -> None:
    assessment = _assessment(score=80)
    assert _fired(deployment=_deployment("production"), assessment=assessment) == {"minimum-health-score"}
    assert _fired(deployment=_deployment("staging"), assessment=assessment) == set()


def test_event_rules() -> None:
    def event(kind: EventType) -> DeploymentEvent:
        return DeploymentEvent(
            event_type=kind,
            deployment_id="dg-1",
            service="checkout-api",
            version="2",
            environment="production",
            title="t",
        )

    assert _fired(deployment=_deployment(), event=event(EventType.DEPLOYMENT_FAILED)) == {"deployment-failed"}
    assert _fired(deployment=_deployment(), event=event(EventType.ROLLBACK_FAILED)) == {"rollback-failed"}
    assert _fired(event=event(EventType.DEPLOYMENT_LONG_RUNNING)) == {"long-running-deployment"}
    assert _fired(event=event(EventType.VALIDATION_FAILED)) == {"canary-issue"}


def test_long_running_from_the_deployment_alone(sim_clock: Any) -> None:
    deployment = _deployment(expected_duration_seconds=600)
    deployment.started_at = sim_clock() - timedelta(seconds=1000)
    assert _fired(deployment=deployment) == {"long-running-deployment"}
    deployment.started_at = sim_clock() - timedelta(seconds=800)
    assert _fired(deployment=deployment) == set()


def test_fired_alert_carries_what_the_rule_saw() -> None:
    evaluation = RuleEvaluator(AlertingSettings()).evaluate(deployment=_deployment(), assessment=_assessment(score=50))
    alert = next(a for a in evaluation.fired if a.rule == "critical-health-score")
    assert alert.values == {"health_score": 50}
    assert alert.grouping_key == "dg-1#health" and alert.severity == Severity.CRITICAL
    assert alert.escalation_policy == "emergency"
    assert "canary-issue" in {r.name for r in evaluation.clear}


def test_a_rule_that_fails_to_parse_names_rule_and_column() -> None:
    with pytest.raises(ValidationError) as info:
        AlertingSettings.model_validate(
            {
                "rules": [
                    {"name": "ok-rule", "expression": "error_rate > 1%"},
                    {"name": "cpu-hot", "expression": "cpu_utilization >> 90%"},
                ]
            }
        )
    (error,) = info.value.errors()
    assert error["loc"] == ("rules", 1, "expression")
    assert error["msg"].startswith("rule 'cpu-hot': column 18: expected a field name")


def test_unknown_fields_are_refused_at_load_time_unless_declared() -> None:
    rule = {"name": "checkout-failures", "expression": "checkout_failures > 3", "severity": "error"}
    with pytest.raises(ValidationError, match="column 1: unknown field 'checkout_failures'"):
        AlertingSettings.model_validate({"rules": [rule]})
    settings = AlertingSettings.model_validate({"rules": [rule], "custom_fields": {"checkout_failures": "count"}})
    assert "checkout-failures" in _fired(
        settings, deployment=_deployment(), assessment=_assessment(), metric_values={"checkout_failures": 4}
    )


def test_rules_replace_defaults_by_name_and_can_be_disabled() -> None:
    settings = AlertingSettings.model_validate(
        {
            "rules": [{"name": "critical-health-score", "expression": "health_score < 50", "severity": "critical"}],
            "disabled_rules": ["minimum-health-score"],
        }
    )
    assert _fired(settings, deployment=_deployment(), assessment=_assessment(score=60)) == set()
    assert _fired(settings, deployment=_deployment(), assessment=_assessment(score=40)) == {"critical-health-score"}
    only_mine = AlertingSettings.model_validate(
        {"use_default_rules": False, "rules": [{"name": "mine", "expression": "error_rate > 1%"}]}
    )
    assert [r.name for r in only_mine.effective_rules] == ["mine"]


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        (
            {"rules": [{"name": "a", "expression": "error_rate > 1%", "escalation": "panic"}]},
            "unknown escalation policy",
        ),
        ({"rules": [{"name": "a", "expression": "error_rate > 1%"}] * 2}, "defined twice"),
        ({"disabled_rules": ["nope"]}, "disabled_rules.0: unknown rule 'nope'"),
        ({"escalation": {"by_severity": {"critical": "panic"}}}, "by_severity.critical: unknown policy"),
        ({"remediation": {"plans": [{"actions": [{"action": "reboot"}]}]}}, "plans.0.actions.0: unknown action"),
        ({"remediation": {"plans": [{"rules": ["nope"], "actions": [{"action": "rollback"}]}]}}, "unknown rule"),
        ({"remediation": {"allowed_targets": ["checkout-api"]}}, "allowed_targets.0"),
        ({"remediation": {"actions": {"x": {"type": "ecs_scale"}}}}, "exactly one of desired_count"),
        ({"rules": [{"name": "Bad Name", "expression": "error_rate > 1%"}]}, "rules.0.name"),
    ],
)
def test_configuration_errors_name_the_field(section: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        AlertingSettings.model_validate(section)
    text = str(info.value)
    # a validator names the field in its message, or (reporting every problem at once) in the error's place
    located = "\n".join(".".join(map(str, e["loc"])) + ": " + e["msg"] for e in info.value.errors())
    assert fragment in text or fragment.replace(".", " -> ") in text or fragment in located, text


def test_rule_compile_error_outside_settings() -> None:
    rule = AlertRule(name="x", expression="health_score <")
    with pytest.raises(Exception, match="rule 'x': column 15"):
        rule.compile()
