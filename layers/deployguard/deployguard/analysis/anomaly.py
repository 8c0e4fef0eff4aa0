"""Anomaly detection of a metric against the service's own history.

No canary is needed: the latest values are compared with the robust location and
spread (median and median absolute deviation) of the same metric over its recent
history (24 hours to 2 weeks, at least 10 points). The spread is the larger of the
robust one (1.4826 x MAD) and the history's own 1%..99% range, so that a metric's usual
spikes are not news: only what goes clearly beyond them is. When the history covers at least
three days, the comparison is made against the same time of day too (a daily
season), and a value must be unusual against both to count. Robust statistics keep
past incidents in the history from hiding new ones.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from deployguard.analysis.stats import median

MIN_POINTS = 10
DAY = timedelta(days=1)


class AnomalyPoint(BaseModel):
    at: datetime
    value: float
    expected: float
    score: float = Field(description="robust z-score: distance from the expected value in robust standard deviations")
    direction: Literal["high", "low"]


class AnomalyReport(BaseModel):
    status: Literal["normal", "anomalous", "unknown"]
    points: int = Field(description="history points used as reference")
    anomalies: list[AnomalyPoint] = Field(default_factory=list)
    latest_score: float | None = None
    expected: float | None = None
    spread: float | None = None
    seasonal: bool = False
    message: str


def robust_scale(values: Sequence[float], centre: float) -> float:
    """1.4826 x MAD, falling back to the mean absolute deviation and then to a sliver of the level,
    so that flat series (a CPU idling at 0.134%) do not make every change infinitely unusual."""
    deviations = sorted(abs(v - centre) for v in values)
    mad = 1.4826 * median(deviations) if deviations else 0.0
    if mad > 0:
        return mad
    mean_dev = sum(deviations) / len(deviations) if deviations else 0.0
    if mean_dev > 0:
        return 1.2533 * mean_dev
    return max(abs(centre) * 0.01, 1e-9)


def _score(value: float, centre: float, scale: float, relative_floor: float) -> float:
    return (value - centre) / max(scale, relative_floor * abs(centre), 1e-12)


def detect_anomalies(
    history: list[tuple[datetime, float]],
    *,
    recent: timedelta = timedelta(minutes=15),
    lookback: timedelta = timedelta(days=14),
    threshold: float = 6.0,
    relative_floor: float = 0.05,
    min_points: int = MIN_POINTS,
    direction: Literal["both", "high", "low"] = "both",
    now: datetime | None = None,
) -> AnomalyReport:
    """Are the values of the last ``recent`` before ``now`` unusual against the ``lookback`` before them?

    ``threshold`` is in robust standard deviations; ``relative_floor`` keeps the spread
    at least that share of the level (a 3% wobble of a steady metric is not an
    anomaly). Needs ``min_points`` reference points, else the status is unknown.

    ``now`` is the end of what was read (a live look passes its own time): with no value in
    (now - recent, now] the status is unknown, never normal, whatever older values say (the
    latest periods missing are not the latest periods usual). Without it the series' latest
    point is taken as now (a recorded series judged as of its own end).
    """
    points = sorted((t, float(v)) for t, v in history if v is not None and math.isfinite(v))
    if not points:
        return AnomalyReport(status="unknown", points=0, message="no history")
    end = points[-1][0] if now is None else now
    split = end - recent
    reference = [(t, v) for t, v in points if end - lookback <= t <= split]
    current = [(t, v) for t, v in points if split < t <= end]
    if not current:
        last_seen = max((t for t, _ in points if t <= end), default=None)
        return AnomalyReport(
            status="unknown",
            points=len(reference),
            message=f"no value in the last {recent.total_seconds() / 60:g} minutes"
            + (f" (the latest at {last_seen.isoformat()})" if last_seen is not None else ""),
        )
    if len(reference) < min_points:
        return AnomalyReport(
            status="unknown",
            points=len(reference),
            message=f"{len(reference)} history points, at least {min_points} needed",
        )
    values = sorted(v for _, v in reference)
    centre = median(values)
    scale = _stream_scale(values, centre)
    seasonal = reference[-1][0] - reference[0][0] >= 3 * DAY
    anomalies: list[AnomalyPoint] = []
    latest = 0.0
    for at, value in current:
        z = _score(value, centre, scale, relative_floor)
        if seasonal:
            same_time = [v for t, v in reference if abs(((at - t) % DAY).total_seconds() - 43200) >= 43200 - 1800]
            if len(same_time) >= min_points:
                same_time.sort()
                c2 = median(same_time)
                z2 = _score(value, c2, _stream_scale(same_time, c2), relative_floor)
                z = z if abs(z) < abs(z2) else z2  # unusual against both: the milder score
        latest = z
        flagged = abs(z) >= threshold and (
            direction == "both" or (direction == "high" and z > 0) or (direction == "low" and z < 0)
        )
        if flagged:
            anomalies.append(
                AnomalyPoint(
                    at=at, value=value, expected=centre, score=round(z, 3), direction="high" if z > 0 else "low"
                )
            )
    status: Literal["normal", "anomalous"] = "anomalous" if anomalies else "normal"
    message = (
        f"{len(anomalies)} of {len(current)} recent values unusual (|z| >= {threshold:g}) against a median of "
        f"{centre:.4g} over {len(reference)} points"
        if anomalies
        else f"recent values usual against a median of {centre:.4g} over {len(reference)} points"
    )
    return AnomalyReport(
        status=status,
        points=len(reference),
        anomalies=anomalies,
        latest_score=round(latest, 3),
        expected=centre,
        spread=scale,
        seasonal=seasonal,
        message=message,
    )


def stream_scores(
    history: list[tuple[datetime, float]],
    *,
    lookback: timedelta = timedelta(days=7),
    relative_floor: float = 0.05,
    min_points: int = MIN_POINTS,
) -> list[float | None]:
    """Each point's robust z-score against the ``lookback`` before it (None while the history
    is too short): the streaming form of detect_anomalies, for long series (the NAB bench).
    Kept sorted incrementally, so a day of 5-minute points costs little per step."""
    window: deque[tuple[datetime, float]] = deque()
    ordered: list[float] = []
    out: list[float | None] = []
    for at, value in history:
        while window and window[0][0] < at - lookback:
            _, old = window.popleft()
            del ordered[bisect.bisect_left(ordered, old)]
        if len(ordered) >= min_points:
            centre = (
                ordered[len(ordered) // 2]
                if len(ordered) % 2
                else 0.5 * (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2])
            )
            scale = _stream_scale(ordered, centre)
            out.append(_score(value, centre, scale, relative_floor))
        else:
            out.append(None)
        window.append((at, value))
        bisect.insort(ordered, value)
    return out


def _stream_scale(ordered: list[float], centre: float) -> float:
    # the MAD from the sorted values: the median of |v - centre| by a two-pointer merge
    n = len(ordered)
    mid = bisect.bisect_left(ordered, centre)
    left, right = mid - 1, mid
    k = (n - 1) // 2
    dev = 0.0
    for _ in range(k + 1):
        dl = centre - ordered[left] if left >= 0 else math.inf
        dr = ordered[right] - centre if right < n else math.inf
        if dl <= dr:
            dev, left = dl, left - 1
        else:
            dev, right = dr, right + 1
    mad = 1.4826 * dev
    # spiky metrics: their own 1%..99% range sets the spread too, so that the spikes they
    # always have are not news; only what goes beyond their usual extremes is
    lo, hi = ordered[int(0.01 * (n - 1))], ordered[math.ceil(0.99 * (n - 1))]
    tails = (hi - lo) / (2 * 2.326)
    scale = max(mad, tails)
    if scale > 0:
        return scale
    return robust_scale(ordered, centre)


def alarms(scores: list[float | None], threshold: float = 6.0, persistence: int = 1, cooldown: int = 36) -> list[int]:
    """Indices where an alarm is raised: ``persistence`` consecutive points beyond the
    threshold, at most one alarm per ``cooldown`` points."""
    out: list[int] = []
    run = 0
    last = -cooldown
    for i, z in enumerate(scores):
        run = run + 1 if z is not None and abs(z) >= threshold else 0
        if run >= persistence and i - last >= cooldown:
            out.append(i)
            last = i
    return out
