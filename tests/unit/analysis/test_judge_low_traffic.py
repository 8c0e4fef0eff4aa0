"""Latency at low traffic, through the public judge API: a p99 that has traffic enough in few of
the canary's periods does not hold a healthy canary (it is judged through the p50), and a gross
slowdown (10x) is told by its second slow period, without traffic enough for any p99."""

from __future__ import annotations

from analysis_support import make_window

from deployguard.analysis.judge import judge_canary
from deployguard.analysis.scenario import truncate_window
from deployguard.analysis.settings import JudgeSettings
from deployguard.models import Decision


def test_a_p99_with_traffic_enough_in_few_periods_is_judged_through_the_p50() -> None:
    # about 90 canary invocations a minute: a p99 (100 needed) is read in a few minutes only
    window = make_window(25, rpm=900.0, weight=0.1, base_error=0.002, seed=11)
    calls = next(m for m in window.metrics if m.spec.id == "invocations").canary
    assert 0 < sum(1 for n in calls if n is not None and n >= 100) < len(calls) / 2
    verdict = judge_canary(window, JudgeSettings())
    assert verdict.decision == Decision.HEALTHY, verdict.summary
    p99 = next(r for r in verdict.reasons if r.metric_id == "duration_p99")
    assert p99.status == "inconclusive" and "judged through duration_p50" in p99.message, p99.message


def test_a_gross_slowdown_at_low_traffic_is_told_by_its_second_slow_period() -> None:
    # 12 canary and 48 baseline invocations a minute (never 100 for a p99), the canary 10x slower
    # from period 4: a heavy-tailed period weighs most for the shift it matches, so 10x needs
    # alternatives near 10x (the gross ones) to be told at once
    onset, settings, second = 4, JudgeSettings(), 0
    for seed in range(8):
        slow = [1.0] * onset + [10.0] * 16
        window = make_window(20, rpm=60.0, weight=0.2, base_error=0.0, canary_latency_mult=slow, seed=seed)
        looks = [judge_canary(truncate_window(window, n), settings).decision for n in range(1, 21)]
        assert Decision.FAILING in looks, seed
        decided = looks.index(Decision.FAILING)  # the period of the first failing verdict
        assert onset < decided <= onset + 2, (seed, decided)
        second += decided == onset + 1
        healthy = make_window(20, rpm=60.0, weight=0.2, base_error=0.0, seed=seed)
        assert judge_canary(healthy, settings).decision != Decision.FAILING
    assert second >= 6, second  # most at the second slow period (without the gross alternatives: none)
