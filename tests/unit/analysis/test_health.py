from __future__ import annotations

import pytest
from analysis_support import make_window
from pydantic import ValidationError

from deployguard.analysis.health import assess_health, health_values_from_window
from deployguard.analysis.settings import HealthSettings, MetricThreshold
from deployguard.models import HealthStatus, MetricType


@pytest.mark.parametrize(
    ("metric", "warning", "critical"),
    [
        ("error_rate", 2.0, 5.0),
        ("latency_p99_ms", 1000.0, 2000.0),
        ("cpu_utilization", 70.0, 90.0),
        ("memory_utilization", 80.0, 95.0),
        ("disk_utilization", 85.0, 95.0),
        ("conversion_rate_drop", 10.0, 20.0),
        ("revenue_impact_per_hour", 1000.0, 5000.0),
    ],
)
def test_default_thresholds(metric: str, warning: float, critical: float) -> None:
    def status(value: float) -> HealthStatus:
        report = assess_health({metric: value})
        return next(m.status for m in report.metrics if m.id == metric)

    assert status(warning * 0.99) == HealthStatus.HEALTHY
    assert status(warning) == HealthStatus.WARNING
    assert status(critical) == HealthStatus.CRITICAL


def test_all_healthy_scores_100() -> None:
    report = assess_health({"error_rate": 0.1, "latency_p99_ms": 200, "cpu_utilization": 20, "conversion_rate_drop": 0})
    assert report.overall_status == HealthStatus.HEALTHY
    assert report.score == 100.0
    assert report.business_impact < 1.0
    assert report.recommendations


def test_score_is_weighted_by_type() -> None:
    # application critical-at-threshold (50) and performance healthy (100): (0.35*50 + 0.10*100) / 0.45
    report = assess_health({"error_rate": 5.0, "latency_p99_ms": 100.0})
    assert report.score == pytest.approx((0.35 * 50 + 0.10 * 100) / 0.45, abs=0.01)
    assert report.overall_status == HealthStatus.CRITICAL
    assert report.confidence == pytest.approx(0.45)
    assert any("Error rate" in r for r in report.recommendations)


def test_security_critical_alone_is_a_warning() -> None:
    report = assess_health({"error_rate": 0.1, "auth_failure_rate": 10.0, "cpu_utilization": 10})
    assert report.overall_status == HealthStatus.WARNING


def test_nothing_known_is_unknown() -> None:
    report = assess_health({})
    assert report.overall_status == HealthStatus.UNKNOWN
    assert report.score is None
    assert report.confidence == 0.0


def test_business_impact() -> None:
    assert assess_health({"revenue_impact_per_hour": 5000}).business_impact == 5.0
    assert assess_health({"conversion_rate_drop": 40}).business_impact == 10.0


def test_custom_metric_and_thresholds() -> None:
    settings = HealthSettings(
        extra_metrics=[
            MetricThreshold(id="queue_depth", metric_type=MetricType.INFRASTRUCTURE, warning=100, critical=1000),
            MetricThreshold(id="error_rate", metric_type=MetricType.APPLICATION, warning=1, critical=3, unit="%"),
        ]
    )
    report = assess_health({"queue_depth": 500, "error_rate": 1.5}, settings)
    statuses = {m.id: m.status for m in report.metrics}
    assert statuses["queue_depth"] == HealthStatus.WARNING
    assert statuses["error_rate"] == HealthStatus.WARNING


def test_bad_thresholds_name_the_field() -> None:
    with pytest.raises(ValidationError):
        MetricThreshold(id="x", metric_type=MetricType.APPLICATION, warning=5, critical=1)
    with pytest.raises(ValidationError) as err:
        HealthSettings.model_validate({"type_weights": {"application": -1}})
    assert "type_weights" in str(err.value)


def test_values_from_window() -> None:
    window = make_window(10, canary_error=0.1)
    values = health_values_from_window(window)
    assert values["error_rate"] is not None and 5.0 < values["error_rate"] < 20.0
    assert values["latency_p99_ms"] is not None and values["latency_p99_ms"] > 100
    report = assess_health(values)
    assert report.overall_status == HealthStatus.CRITICAL


def test_values_from_empty_window() -> None:
    values = health_values_from_window(make_window(5, weight=0.0))
    assert values["error_rate"] is None
    assert assess_health(values).overall_status == HealthStatus.UNKNOWN
