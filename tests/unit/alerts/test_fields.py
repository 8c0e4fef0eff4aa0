"""Rule fields are filled from what a metric is (kind, statistic, rate of what, type), not its id."""

from __future__ import annotations

from typing import Any

import pytest

from deployguard.alerts.evaluator import RuleEvaluator
from deployguard.alerts.fields import field_sources, fields_from_window, rule_coverage
from deployguard.alerts.settings import AlertingSettings
from deployguard.analysis.settings import alb_metrics, default_metrics
from deployguard.models import (
    Assessment,
    CanaryWindow,
    Decision,
    Deployment,
    LambdaTarget,
    MetricSpec,
    MetricWindow,
    Verdict,
)


def _custom() -> list[MetricSpec]:
    shop = {"namespace": "Shop", "dimensions": {"FunctionName": "{function}", "Version": "{version}"}}
    return [
        MetricSpec(id="cpu", name="CPUUtilization", stat="Average", unit="Percent", metric_type="infrastructure",
                   **shop),
        MetricSpec(id="mem", name="MemoryUtilization", stat="Maximum", unit="Percent", metric_type="infrastructure",
                   **shop),
        MetricSpec(id="paid", name="Conversions", kind="rate_count", relative_to="invocations",
                   direction="decrease_is_bad", metric_type="business", **shop),
        MetricSpec(id="takings", name="Revenue", stat="Sum", direction="decrease_is_bad", metric_type="business",
                   **shop),
        MetricSpec(id="logins_failed", name="FailedLogins", kind="rate_count", relative_to="invocations",
                   metric_type="security", **shop),
        MetricSpec(id="waf_blocks", name="SecurityViolations", stat="Sum", metric_type="security", **shop),
    ]  # fmt: skip


def test_lambda_defaults_feed_the_application_and_performance_fields() -> None:
    sources = field_sources(default_metrics())
    assert {name: s.metrics for name, s in sources.items()} == {
        "invocations": ("invocations",),
        "throughput": ("invocations",),
        "errors": ("errors",),
        "error_rate": ("errors",),
        "availability": ("errors",),
        "throttles": ("throttles",),
        "throttle_rate": ("throttles",),
        "response_time_p50": ("duration_p50",),
        "response_time_p99": ("duration_p99",),
    }
    assert sources["error_rate"].description == "errors / invocations"


def test_alb_preset_feeds_the_same_fields_in_milliseconds() -> None:
    sources = field_sources(alb_metrics())
    assert sources["error_rate"].metrics == ("errors",) and sources["error_rate"].denominator == "requests"
    assert sources["throughput"].metrics == ("requests",)
    assert sources["response_time_p99"].to_milliseconds == 1000.0
    assert "throttle_rate" not in sources  # a load balancer has no throttles: unknown, not 0


def test_custom_metrics_feed_fields_by_type_and_name_whatever_their_ids() -> None:
    sources = field_sources([*default_metrics(), *_custom()])
    assert sources["cpu_utilization"].metrics == ("cpu",)
    assert sources["memory_utilization"].metrics == ("mem",)
    assert sources["conversion_rate"].metrics == ("paid",) and sources["conversion_rate_drop"].how == "drop"
    assert sources["revenue_per_minute"].metrics == ("takings",)
    assert sources["failed_authentications"].metrics == ("logins_failed",)
    assert sources["security_violations"].metrics == ("waf_blocks",)


def _window(
    weight: float,
    series: dict[str, tuple[list[float | None], list[float | None]]],
    specs: list[MetricSpec],
    since_shift: int | None = None,
) -> CanaryWindow:
    by_id = {s.id: s for s in specs}
    return CanaryWindow(
        canary_weight=weight,
        periods_since_shift=since_shift,
        metrics=[MetricWindow(spec=by_id[k], baseline=b, canary=c) for k, (c, b) in series.items()],
    )  # fmt: skip


def test_readings_of_a_window_put_the_baseline_on_the_canarys_footing() -> None:
    specs = [*default_metrics(), *_custom()]
    # canary 25% of 4000 rpm; the last period regressed (8% errors, p99 3 s)
    window = _window(
        0.25,
        {
            "invocations": ([1000.0] * 4, [3000.0] * 4),
            "errors": ([5.0, 5.0, 5.0, 80.0], [15.0] * 4),
            "duration_p99": ([300.0, 310.0, 320.0, 3000.0], [300.0] * 4),
            "cpu": ([50.0] * 4, [40.0] * 4),
            "paid": ([20.0] * 4, [120.0] * 4),
            "takings": ([500.0] * 4, [3000.0] * 4),
            "waf_blocks": ([None, None, None, 2.0], [None] * 4),
        },
        specs,
        since_shift=4,
    )
    readings = fields_from_window(window)
    canary, baseline = readings.canary, readings.baseline
    # the latest period alone holds enough requests (>= 200): the reading is current
    assert canary["error_rate"] == pytest.approx(0.08) and baseline["error_rate"] == pytest.approx(0.005)
    assert canary["availability"] == pytest.approx(0.92)
    assert canary["response_time_p99"] == 3000.0 and baseline["response_time_p99"] == 300.0
    assert canary["throughput"] == 1000.0 and baseline["throughput"] == pytest.approx(1000.0)  # 3000 x 25/75
    assert canary["conversion_rate"] == pytest.approx(0.02) and canary["conversion_rate_drop"] == pytest.approx(0.5)
    assert canary["revenue_per_minute"] == 500.0 and baseline["revenue_per_minute"] == pytest.approx(1000.0)
    assert canary["cpu_utilization"] == 50.0 and canary["security_violations"] == 2.0
    assert baseline["security_violations"] is None  # no datapoint on the baseline: unknown, never 0
    assert canary.get("memory_utilization") is None and canary.get("throttle_rate") is None  # no metric: unknown
    # counts span all recent periods; the baseline's at the canary's number of requests (60 x 4000/12000)
    assert canary["errors"] == 95.0 and baseline["errors"] == pytest.approx(20.0)
    assert canary["takings"] == 500.0  # each metric's own id is a field too


def test_too_few_requests_leave_rates_unknown_and_unknown_rules_quiet() -> None:
    specs = default_metrics()
    window = _window(0.1, {"invocations": ([20.0] * 5, [180.0] * 5), "errors": ([10.0] * 5, [1.0] * 5)}, specs)
    readings = fields_from_window(window)
    assert readings.canary["error_rate"] is None  # 100 requests: 50% errors is not yet a reading
    target = LambdaTarget(function_name="f", alias="live", stable_version="1", new_version="2")
    deployment = Deployment(deployment_id="d", service="f", environment="production", version="2", target=target)
    assessment = Assessment(
        deployment_id="d", verdict=Verdict(decision=Decision.INCONCLUSIVE, summary="s"), health_score=None,
        details={"fields": readings.as_details()},
    )  # fmt: skip
    evaluation = RuleEvaluator(AlertingSettings()).evaluate(deployment=deployment, assessment=assessment)
    assert not evaluation.fired
    assert "high-error-rate" in {r.name for r in evaluation.unknown}


def test_throughput_baseline_is_unknown_in_the_period_split_by_a_shift() -> None:
    specs = default_metrics()
    window = _window(0.5, {"invocations": ([400.0], [1600.0])}, specs, since_shift=1)
    readings = fields_from_window(window)
    assert readings.canary["throughput"] is None and readings.baseline["throughput"] is None


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        (default_metrics(), {"business-impact": "cannot_fire", "system-overload": "cannot_fire",
                             "security-signals": "cannot_fire", "high-error-rate": "ok",
                             "performance-degradation": "ok"}),
        ([*default_metrics(), *_custom()], {"business-impact": "ok", "system-overload": "ok",
                                            "security-signals": "ok", "high-error-rate": "ok"}),
    ],
)  # fmt: skip
def test_rule_coverage_says_which_rules_cannot_fire(metrics: list[MetricSpec], expected: dict[str, Any]) -> None:
    coverage = {c.rule: c for c in rule_coverage(AlertingSettings().effective_rules, metrics)}
    assert {name: coverage[name].status for name in expected} == expected
    assert coverage["canary-issue"].status == "ok" and coverage["deployment-failed"].status == "ok"
    if expected["system-overload"] == "cannot_fire":
        assert coverage["system-overload"].message == (
            "system-overload: never fires: no metric feeds cpu_utilization, memory_utilization"
        )
