"""Cold starts that outlast the grace periods, through the public judge API: a few slow calls on new
instances lift the canary's p99 and not its p50 (tail-only), and decay; a regression of every call moves
the p50 too and persists. Each period's aggregates are computed from simulated calls (lognormal durations,
a share of them paying a cold start), as CloudWatch computes them."""

from __future__ import annotations

import numpy as np
import pytest

from deployguard.analysis.judge import judge_canary
from deployguard.analysis.scenario import truncate_window
from deployguard.analysis.settings import JudgeSettings, default_metrics
from deployguard.models import CanaryWindow, Decision, MetricWindow

PERIODS = 20


def _window(
    canary_rpm: int, cold: list[float], *, slow_share: float = 0.0, mult: float = 1.0, sigma: float = 0.5, seed: int = 1
) -> CanaryWindow:
    """Canary at ``canary_rpm`` calls a minute, the baseline at 9x; ``cold``: the canary's share of calls paying
    a 1.5 s cold start, period by period; ``slow_share``: a share of the canary's calls 1.5 s slower in every
    period (a tail-only regression); ``mult``: every canary call that many times slower."""
    rng = np.random.default_rng(seed)
    specs = {s.id: s for s in default_metrics()}
    series: dict[str, dict[str, list[float | None]]] = {k: {"baseline": [], "canary": []} for k in specs}
    for i in range(PERIODS):
        for side, n, extra_share, m in (
            ("baseline", canary_rpm * 9, 0.0, 1.0),
            ("canary", canary_rpm, (cold[i] if i < len(cold) else 0.0) + slow_share, mult),
        ):
            calls = rng.lognormal(np.log(100.0 * m), sigma, size=n)
            calls[rng.random(n) < extra_share] += 1500.0
            series["invocations"][side].append(float(n))
            series["errors"][side].append(0.0)
            series["throttles"][side].append(0.0)
            series["duration_p50"][side].append(round(float(np.percentile(calls, 50)), 3))
            series["duration_p99"][side].append(round(float(np.percentile(calls, 99)), 3))
    return CanaryWindow(
        canary_weight=0.1,
        metrics=[MetricWindow(spec=specs[k], baseline=v["baseline"], canary=v["canary"]) for k, v in series.items()],
    )


def _first_failing(window: CanaryWindow) -> int | None:
    for i in range(window.periods):
        if judge_canary(truncate_window(window, i + 1), JudgeSettings()).decision == Decision.FAILING:
            return i
    return None


@pytest.mark.parametrize(
    ("canary_rpm", "cold"),
    [(1000, [0.10, 0.03, 0.01]), (3000, [0.10, 0.03, 0.01]), (300, [0.2, 0.08, 0.03]), (1000, [0.2, 0.1, 0.05, 0.02])],
)
def test_a_cold_start_that_outlasts_the_grace_periods_is_not_a_regression(canary_rpm: int, cold: list[float]) -> None:
    """Three or four periods of cold starts (the grace periods are two): the p99 is up to 4x the baseline's in
    each, the p50 barely moves. Before tail-only periods waited, all four were rolled back."""
    failing = [_first_failing(_window(canary_rpm, cold, seed=seed)) for seed in (1, 2)]
    assert failing == [None, None]


def test_a_slowdown_of_every_call_is_caught_as_fast_with_cold_starts_around_it() -> None:
    """8x from the first minute, with the same decaying cold starts: the p50 moved, so the p99 and p50 periods
    after the grace periods confirm at once (a regression from the first minute in at most 3 periods)."""
    for seed in (1, 2, 3):
        assert _first_failing(_window(300, [0.2, 0.08, 0.03], mult=8.0, seed=seed)) == 2


def test_a_tail_only_regression_that_persists_is_still_caught_after_twice_the_grace_periods() -> None:
    """3% of calls 1.5 s slower from the first minute on, forever: not a cold start, for it does not decay;
    its tail-only periods wait for the period after twice the grace periods to confirm them."""
    for seed in (1, 2, 3):
        assert _first_failing(_window(1000, [], slow_share=0.03, seed=seed)) == 4
