"""Each failure class of issue 10 through the public judge API (``judge_canary``)."""

from __future__ import annotations

import math

import pytest
from analysis_support import make_window

from deployguard.analysis.judge import judge_canary
from deployguard.analysis.settings import JudgeSettings, default_metrics
from deployguard.models import CanaryWindow, DataGap, Decision, MetricWindow


def _with(window: CanaryWindow, metric_id: str, **changes: object) -> CanaryWindow:
    metrics = [m.model_copy(update=changes) if m.spec.id == metric_id else m for m in window.metrics]
    return window.model_copy(update={"metrics": metrics})


def _optional(metric_id: str) -> JudgeSettings:
    specs = [m.model_copy(update={"optional": True}) if m.id == metric_id else m for m in default_metrics()]
    return JudgeSettings(metrics=specs)


# ---------------------------------------------------------------- 1. missing evidence blocks promotion


def test_errors_without_datapoints_while_invoked_are_missing_not_zero() -> None:
    window = make_window(20)
    assert judge_canary(window, JudgeSettings()).decision == Decision.HEALTHY
    lost = _with(window, "errors", canary=[None] * 20)
    verdict = judge_canary(lost, JudgeSettings())
    assert verdict.decision == Decision.INCONCLUSIVE
    assert "errors" in verdict.summary and "periods 0-19" in verdict.summary and "missing" in verdict.summary
    assert "no conclusive evidence after 20 periods" in verdict.summary and "hold" not in verdict.summary
    errors = next(r for r in verdict.reasons if r.metric_id == "errors")
    assert errors.status == "inconclusive"


def test_a_regression_missing_its_error_data_is_never_promoted() -> None:
    """The issue's case: a 10% error-rate regression whose Errors came back empty is not promoted
    on the other metrics' evidence."""
    window = make_window(20, canary_error=0.10)
    verdict = judge_canary(_with(window, "errors", canary=[None] * 20), JudgeSettings())
    assert verdict.decision == Decision.INCONCLUSIVE


def test_reported_gap_names_metric_reason_and_periods() -> None:
    window = make_window(20)
    values = [
        None if 3 <= i <= 9 else v
        for i, v in enumerate(next(m for m in window.metrics if m.spec.id == "errors").canary)
    ]
    gap = DataGap(version="canary", periods=list(range(3, 10)), reason="CloudWatch returned InternalError")
    verdict = judge_canary(_with(window, "errors", canary=values, gaps=[gap]), JudgeSettings())
    assert verdict.decision == Decision.INCONCLUSIVE
    assert "errors: missing evidence: CloudWatch returned InternalError for the canary's periods 3-9" in verdict.summary


def test_a_gap_is_unknown_even_for_a_metric_with_a_fill_value() -> None:
    window = make_window(20)
    errors = next(m for m in window.metrics if m.spec.id == "errors")
    spec = errors.spec.model_copy(update={"fill_missing": 0.0})
    gap = DataGap(version="baseline", periods=[5], reason="CloudWatch returned Forbidden")
    verdict = judge_canary(_with(window, "errors", spec=spec, gaps=[gap]), JudgeSettings())
    assert verdict.decision == Decision.INCONCLUSIVE and "Forbidden for the baseline's period 5" in verdict.summary


def test_optional_metric_may_be_missing() -> None:
    lost = _with(make_window(20), "errors", canary=[None] * 20)
    assert judge_canary(lost, _optional("errors")).decision == Decision.HEALTHY


def test_no_invocation_no_datapoint_is_not_missing() -> None:
    """A minute without invocations has no datapoint of any metric: nothing is missing."""
    window = make_window(20, rpm=30, weight=0.1, seed=3)
    invocations = next(m for m in window.metrics if m.spec.id == "invocations")
    assert None in invocations.canary
    verdict = judge_canary(window, JudgeSettings(min_canary_invocations=10))
    assert "missing" not in verdict.summary


# ---------------------------------------------------------------- 2. latency at any traffic


def test_four_times_slower_at_twenty_invocations_a_minute_fails() -> None:
    mult = [1.0] * 4 + [4.0] * 8
    verdict = judge_canary(make_window(12, rpm=100, weight=0.2, canary_latency_mult=mult), JudgeSettings())
    assert verdict.decision == Decision.FAILING, verdict.summary
    assert verdict.failing_reasons[0].metric_id == "duration_p50"
    p99 = next(r for r in verdict.reasons if r.metric_id == "duration_p99")
    assert "judged through duration_p50" in p99.message  # too few invocations a minute for a p99


def test_low_traffic_healthy_latency_is_not_failed() -> None:
    for seed in range(4):
        verdict = judge_canary(make_window(20, rpm=100, weight=0.2, seed=seed), JudgeSettings())
        assert verdict.decision != Decision.FAILING, verdict.summary


# ---------------------------------------------------------------- 3. calibrated on real noise


@pytest.mark.parametrize("seed", range(6))
def test_each_version_wobbling_on_its_own_is_not_a_regression(seed: int) -> None:
    window = make_window(25, rpm=5000, jitter=0.08, spikes=0.07, seed=seed)
    verdict = judge_canary(window, JudgeSettings())
    assert verdict.decision != Decision.FAILING, verdict.summary


def test_a_regression_stands_out_of_the_wobble() -> None:
    mult = [1.0] * 8 + [2.0] * 12
    verdict = judge_canary(make_window(20, rpm=5000, jitter=0.08, canary_latency_mult=mult), JudgeSettings())
    assert verdict.decision == Decision.FAILING, verdict.summary


def test_a_long_canary_does_not_accumulate_false_alarms() -> None:
    """A healthy wobbling canary looked at 240 times (the verdict at period 240 fails if the evidence
    crossed the line at any period, so one call covers every look). The budget is spread over the
    canary's planned run: a 240-period plan raises the threshold by ln(240 / 30) from its first
    period on; a run that outlasts its plan pays more as it goes."""
    planned = JudgeSettings(horizon_periods=240)
    assert planned.horizon_penalty(0) == pytest.approx(math.log(8.0)) == planned.horizon_penalty(239)
    assert planned.horizon_penalty(479) == pytest.approx(math.log(8.0) + 2.0 * math.log(2.0))
    default = JudgeSettings()  # no plan: a 30-period run, beyond it the threshold grows
    assert default.horizon_penalty(29) == 0.0 < default.horizon_penalty(239)
    window = make_window(240, rpm=2000, jitter=0.04, seed=5)
    assert judge_canary(window, planned).decision != Decision.FAILING
    assert judge_canary(window, default).decision != Decision.FAILING


def test_a_short_planned_canary_spends_its_budget_over_its_own_run() -> None:
    """A 15-period plan has half the chances of a 30-period one to fail wrongly: its threshold is
    ln 2 lower, so a small shift is told sooner; shorter plans keep the 15-period threshold (their
    first periods' lower hazard does not make up for more)."""
    assert JudgeSettings(horizon_periods=15).horizon_penalty(3) == pytest.approx(-math.log(2.0))
    assert JudgeSettings(horizon_periods=5).horizon_penalty(3) == pytest.approx(-math.log(2.0))
    mult = [1.0] * 6 + [1.12] * 9
    window = make_window(15, rpm=20000, weight=0.1, canary_latency_mult=mult, seed=3)
    short, default = _first_failing(window, JudgeSettings(horizon_periods=15)), _first_failing(window, JudgeSettings())
    assert short is not None and default is not None and short <= default


# ---------------------------------------------------------------- 4. fast on plain regressions


def _first_failing(window: CanaryWindow, settings: JudgeSettings) -> int | None:
    from deployguard.analysis.scenario import truncate_window

    for i in range(window.periods):
        if judge_canary(truncate_window(window, i + 1), settings).decision == Decision.FAILING:
            return i
    return None


def test_regression_from_the_first_minute_is_caught_within_three_periods() -> None:
    window = make_window(15, rpm=3000, weight=0.1, canary_latency_mult=8.0)
    at = _first_failing(window, JudgeSettings())
    assert at is not None and at <= 2


def test_a_confirmed_shift_at_high_traffic_weighs_as_its_sampling_noise_says() -> None:
    """Where the known sampling noise of a median dominates the noise (thousands of invocations a
    minute, versions that do not wobble), a period far beyond it is weighed near a normal law, not
    against the heavy tails a young wobble estimate needs: 15% slower from period 6 fails at period
    7, the second period of it (the first counts once a second confirms it)."""
    mult = [1.0] * 6 + [1.15] * 9
    windows = [make_window(15, rpm=20000, weight=0.1, canary_latency_mult=mult, seed=seed) for seed in range(1, 7)]
    assert [_first_failing(w, JudgeSettings()) for w in windows] == [7] * 6


def test_a_cold_start_decays_and_is_not_a_regression() -> None:
    window = make_window(20, canary_latency_mult=[4.0, 1.6] + [1.0] * 18)
    assert _first_failing(window, JudgeSettings()) is None


def test_one_odd_minute_does_not_fail_but_two_do() -> None:
    one = make_window(20, canary_latency_mult=[1.0] * 10 + [8.0] + [1.0] * 9)
    assert _first_failing(one, JudgeSettings()) is None
    two = make_window(20, canary_latency_mult=[1.0] * 10 + [8.0] * 10)
    assert _first_failing(two, JudgeSettings()) == 11  # no cap: the confirming period decides


def test_ten_errors_against_none_at_equal_traffic_fail() -> None:
    specs = {s.id: s for s in default_metrics()}

    def window(canary_errors: int) -> CanaryWindow:
        errors = [float(canary_errors // 10 + (1 if i < canary_errors % 10 else 0)) for i in range(10)]
        return CanaryWindow(
            canary_weight=0.5,
            metrics=[
                MetricWindow(spec=specs["invocations"], baseline=[100.0] * 10, canary=[100.0] * 10),
                MetricWindow(spec=specs["errors"], baseline=[0.0] * 10, canary=errors),
            ],
        )

    assert judge_canary(window(10), JudgeSettings()).decision == Decision.FAILING
    assert judge_canary(window(4), JudgeSettings()).decision != Decision.FAILING
