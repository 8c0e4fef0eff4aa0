from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import pytest

from deployguard.analysis.anomaly import alarms, detect_anomalies, stream_scores
from deployguard.analysis.schedule import next_assessment_seconds, post_deployment_interval
from deployguard.models import Decision, HealthStatus, Phase

T0 = datetime(2024, 1, 1)


def _series(n: int, level: float = 50.0, noise: float = 2.0, seed: int = 1) -> list[tuple[datetime, float]]:
    rng = random.Random(seed)
    return [(T0 + timedelta(minutes=5 * i), level + rng.gauss(0, noise)) for i in range(n)]


def test_anomaly_needs_ten_points() -> None:
    report = detect_anomalies(_series(8))
    assert report.status == "unknown"
    assert "10" in report.message
    assert detect_anomalies([]).status == "unknown"


def test_spike_is_anomalous_and_normal_is_not() -> None:
    history = _series(300)
    assert detect_anomalies(history).status == "normal"
    spiked = [*history, (history[-1][0] + timedelta(minutes=5), 120.0)]
    report = detect_anomalies(spiked)
    assert report.status == "anomalous"
    assert report.anomalies[0].direction == "high"
    assert report.anomalies[0].score > 6


def test_flat_and_degenerate_series_do_not_crash() -> None:
    flat = [(T0 + timedelta(minutes=i), 0.134) for i in range(30)]
    assert detect_anomalies(flat).status == "normal"
    assert detect_anomalies([*flat, (T0 + timedelta(minutes=31), 0.134)]).status == "normal"
    zeros = [(T0 + timedelta(minutes=i), 0.0) for i in range(30)]
    report = detect_anomalies([*zeros, (T0 + timedelta(minutes=31), 5.0)])
    assert report.status == "anomalous"
    nan = [(T0 + timedelta(minutes=i), math.nan if i % 2 else 1.0) for i in range(30)]
    assert detect_anomalies(nan).status in {"normal", "unknown", "anomalous"}


def test_seasonal_history_uses_same_time_of_day() -> None:
    history = [(T0 + timedelta(minutes=30 * i), 100 + 50 * math.sin(2 * math.pi * i / 48)) for i in range(48 * 5)]
    report = detect_anomalies(history, lookback=timedelta(days=14))
    assert report.seasonal
    assert report.status == "normal"


def test_stream_scores_and_alarms() -> None:
    history = _series(400)
    history[350] = (history[350][0], 200.0)
    scores = stream_scores(history)
    assert scores[0] is None
    raised = alarms(scores, threshold=6.0)
    assert 350 in raised


@pytest.mark.parametrize(
    ("seconds", "interval"),
    [(0, 60), (3599, 60), (3600, 300), (7 * 3600 - 1, 300), (7 * 3600, 900), (24 * 3600 - 1, 900), (24 * 3600, None)],
)
def test_post_deployment_schedule(seconds: int, interval: int | None) -> None:
    assert post_deployment_interval(seconds) == interval
    assert next_assessment_seconds(Phase.MONITORING, HealthStatus.HEALTHY, seconds) == interval


def test_adaptive_interval_by_phase_and_status() -> None:
    assert next_assessment_seconds(Phase.DEPLOYMENT_ACTIVE, HealthStatus.HEALTHY) == 60
    assert next_assessment_seconds(Phase.DEPLOYMENT_ACTIVE, Decision.FAILING) == 30
    assert next_assessment_seconds("validation", "inconclusive") == 60
    assert next_assessment_seconds(Phase.MONITORING, HealthStatus.WARNING, 8 * 3600) == 450
    assert next_assessment_seconds(Phase.MONITORING, HealthStatus.CRITICAL, 8 * 3600) == 60
    assert next_assessment_seconds(Phase.COMPLETED, HealthStatus.HEALTHY) is None
    assert next_assessment_seconds(Phase.FAILED) is None
    assert next_assessment_seconds(Phase.PRE_DEPLOYMENT) == 60
