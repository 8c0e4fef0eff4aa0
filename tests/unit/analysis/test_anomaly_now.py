"""detect_anomalies judges the values of the ``recent`` window before ``now`` (the end of the read),
not before the series' latest point: the latest periods missing are unknown, never usual."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deployguard.analysis.anomaly import detect_anomalies

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _usual(hours: int) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(minutes=5 * i), 0.005 * (1 + 0.05 * (i % 3 - 1))) for i in range(hours * 12)]


def test_with_the_latest_periods_missing_the_status_is_unknown_not_normal() -> None:
    history = _usual(4)
    now = history[-1][0] + timedelta(minutes=25)  # the last 5 periods not returned
    assert detect_anomalies(history).status == "normal"  # judged as of its own end: the old, stale reading
    report = detect_anomalies(history, now=now)
    assert report.status == "unknown" and report.points >= 10
    assert report.message.startswith("no value in the last 15 minutes (the latest at ")


def test_values_in_the_recent_window_before_now_are_judged() -> None:
    history = [*_usual(4), (T0 + timedelta(hours=4), 0.08)]
    now = T0 + timedelta(hours=4, minutes=3)
    report = detect_anomalies(history, now=now)
    assert report.status == "anomalous" and [a.value for a in report.anomalies] == [0.08]
    assert detect_anomalies(history, now=now + timedelta(minutes=20)).status == "unknown"
