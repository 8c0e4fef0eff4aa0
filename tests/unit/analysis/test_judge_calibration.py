"""The judge's stated confidence holds: the false-alarm budget is split over the metrics judged at
once, a new failure mode's run is paid for at every place it could start, and a young window's
latency spikes are weighed against heavy tails. Through the public judge API, on windows built
like CloudWatch returns them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_support import make_window

from deployguard.analysis.judge import evaluate_metrics, judge_canary
from deployguard.analysis.settings import JudgeSettings, default_metrics
from deployguard.models import CanaryWindow, Decision, MetricWindow

SPECS = {s.id: s for s in default_metrics()}


def _errors_window(calls: tuple[float, float], baseline: list[float], canary: list[float]) -> CanaryWindow:
    n = len(canary)
    return CanaryWindow(
        canary_weight=calls[1] / sum(calls),
        metrics=[
            MetricWindow(spec=SPECS["invocations"], baseline=[calls[0]] * n, canary=[calls[1]] * n),
            MetricWindow(spec=SPECS["errors"], baseline=baseline, canary=canary),
        ],
    )


def _among_the_lambda_metrics(window: CanaryWindow) -> CanaryWindow:
    """The errors window with the other Lambda metrics of a calm canary (20 periods): four tests."""
    others = [
        MetricWindow(spec=SPECS["throttles"], baseline=[0.0] * 20, canary=[0.0] * 20),
        MetricWindow(spec=SPECS["duration_p50"], baseline=[100.0] * 20, canary=[100.0] * 20),
        MetricWindow(spec=SPECS["duration_p99"], baseline=[400.0] * 20, canary=[400.0] * 20),
    ]
    return window.model_copy(update={"metrics": [*window.metrics, *others]})


def _errors_only() -> JudgeSettings:
    return JudgeSettings(metrics=[SPECS["invocations"], SPECS["errors"]])


def test_the_budget_is_split_over_the_metric_tests() -> None:
    settings = JudgeSettings()
    assert settings.threshold_for(4) == settings.threshold + math.log(4)
    assert settings.threshold_for(1) == settings.threshold
    assert JudgeSettings(evidence_threshold=5.0).threshold_for(4) == 5.0  # an expert's threshold is used as it is
    # the same canary errors: judged alone they fail; among four metric tests they do not reach
    # the higher threshold each of them must (the canary is failed wrongly at most 1 - c of the time)
    alone_window = _errors_window((1000.0, 1000.0), [5.0] * 20, [5.0] * 12 + [11.0] * 8)
    among_window = _among_the_lambda_metrics(alone_window)
    alone = next(r for r in evaluate_metrics(alone_window, settings) if r.spec.id == "errors")
    among = next(r for r in evaluate_metrics(among_window, settings) if r.spec.id == "errors")
    assert alone.evidence == among.evidence
    assert alone.status == "fail" and among.status != "fail"
    assert judge_canary(among_window, settings).decision != Decision.FAILING


def test_the_budget_follows_the_metrics_budget_weights() -> None:
    """A weighted Bonferroni split: the default Lambda metrics give Throttles a fifth of another's
    weight (a throttling version is far off when it comes), so the errors test among the four gets
    1 / 3.2 of the budget instead of a quarter: three periods of 16 canary errors against 5 fail
    the canary with the default weights and not with an even split, and the verdict's "sure"
    pays for the share its test had."""
    settings = JudgeSettings()
    assert settings.threshold_for_share(0.25) == settings.threshold_for(4) == settings.threshold + math.log(4)
    window = _among_the_lambda_metrics(_errors_window((1000.0, 1000.0), [5.0] * 20, [5.0] * 17 + [16.0] * 3))
    weighted = judge_canary(window, settings)
    assert weighted.decision == Decision.FAILING and "errors" in weighted.summary
    errors = next(r for r in weighted.reasons if r.metric_id == "errors")
    evidence = next(r.evidence for r in evaluate_metrics(window, settings) if r.spec.id == "errors")
    assert errors.confidence == pytest.approx(1.0 - 9 * 3.2 * math.exp(-evidence), abs=1e-6)
    even_specs = [s.model_copy(update={"budget_weight": 1.0}) for s in default_metrics()]
    assert judge_canary(window, JudgeSettings(metrics=even_specs)).decision != Decision.FAILING


def test_a_new_failure_mode_is_tested_nearly_exactly_against_a_clean_baseline() -> None:
    """10 canary errors against none at equal traffic: p ~ 0.001, failing; the same burst against a
    baseline that errs now and then is one of many places such a run could start by chance."""
    burst = [0.0] * 8 + [5.0, 5.0] + [0.0] * 4
    clean = judge_canary(_errors_window((1000.0, 1000.0), [0.0] * 14, burst), _errors_only())
    assert clean.decision == Decision.FAILING and "from none" in clean.summary
    # the baseline errs once in most periods (its rate 0.1%), but not in the burst's periods
    noisy_baseline = [1.0 if i % 4 else 0.0 for i in range(8)] + [0.0, 0.0] + [1.0] * 4
    clean_ev = evaluate_metrics(_errors_window((1000.0, 1000.0), [0.0] * 14, burst), _errors_only())[0].evidence
    noisy_ev = evaluate_metrics(_errors_window((1000.0, 1000.0), noisy_baseline, burst), _errors_only())[0].evidence
    assert noisy_ev < clean_ev  # paid for the places such a run could have started


def test_healthy_error_counts_keep_the_stated_confidence() -> None:
    """Monte Carlo, same error rate for both versions: at confidence 0.99 at most 1% of healthy
    canaries (15-30 periods, 300-20,000 requests a minute) are failed on errors, all looks included."""
    rng = np.random.default_rng(11)
    settings = JudgeSettings(confidence=0.99, metrics=[SPECS["invocations"], SPECS["errors"]])
    failed = 0
    runs = 300
    for _ in range(runs):
        n = int(rng.integers(15, 31))
        rpm = math.exp(rng.uniform(math.log(300), math.log(20000)))
        weight = float(rng.choice([0.05, 0.1, 0.2, 0.25]))
        p = math.exp(rng.uniform(math.log(0.0005), math.log(0.01)))
        calls = (round(rpm * (1 - weight)), round(rpm * weight))
        errors = [[float(k) for k in rng.binomial(c, p, size=n)] for c in calls]
        failed += judge_canary(_errors_window(calls, errors[0], errors[1]), settings).decision == Decision.FAILING
    assert failed <= 0.01 * runs, failed


def test_a_version_that_spikes_now_and_then_is_no_regression_but_a_shift_is() -> None:
    """Each version's latency wobbles on its own and spikes for a minute now and then (7% of its
    minutes 1.3-2x slower): weighed against heavy tails while the noise estimate is young, such
    canaries are not failed, and the same canaries 1.8x slower from period 5 are."""
    settings = JudgeSettings()
    healthy = [make_window(25, rpm=4000, jitter=0.05, spikes=0.07, seed=seed) for seed in range(30)]
    assert sum(judge_canary(w, settings).decision == Decision.FAILING for w in healthy) == 0
    slower = [1.0] * 5 + [1.8] * 20
    bad = [make_window(25, rpm=4000, jitter=0.05, spikes=0.07, canary_latency_mult=slower, seed=s) for s in range(20)]
    assert sum(judge_canary(w, settings).decision == Decision.FAILING for w in bad) >= 18


def test_counts_that_come_in_bursts_widen_the_split_test_by_the_baselines_own_wobble() -> None:
    """Over-dispersed counts: a service whose errors come in bursts beyond their rate (the
    baseline's own period-to-period steps tell it) splits them between the versions more
    unevenly than a binomial law does, so one period's uneven split (14 canary errors of 1,000
    against 15 of 5,000) does not fail a release; against a baseline whose counts are binomial
    the same split does. The canary's own bursts are never read as wobble: intermittent canary
    errors against a steady baseline fail."""
    settings = _errors_only()
    split = [8.0] * 12 + [14.0] + [8.0] * 3
    bursty = [20.0, 60.0, 15.0, 55.0, 25.0, 70.0, 10.0, 50.0, 30.0, 65.0, 20.0, 45.0, 15.0, 60.0, 25.0, 40.0]
    calm = [40.0] * 12 + [15.0] + [40.0] * 3
    assert bursty[12] == calm[12]
    assert judge_canary(_errors_window((5000.0, 1000.0), bursty, split), settings).decision != Decision.FAILING
    failing = judge_canary(_errors_window((5000.0, 1000.0), calm, split), settings)
    assert failing.decision == Decision.FAILING and "since period 12" in failing.summary
    intermittent = [8.0, 8.0, 30.0] * 5 + [8.0]
    verdict = judge_canary(_errors_window((5000.0, 1000.0), [40.0] * 16, intermittent), settings)
    assert verdict.decision == Decision.FAILING and "errors" in verdict.summary


def test_the_monte_carlo_draws_healthy_canaries_binomial_or_bursty() -> None:
    """``python -m deployguard_local.judge_montecarlo`` (the errors test's false-alarm share on healthy
    canaries, binomial or over-dispersed): its over-dispersed draws spread beyond the binomial,
    both versions alike, and the errors test fails few binomial ones (one run is in the README)."""
    from deployguard_local.judge_montecarlo import false_alarm_share, healthy_errors_canary

    rng = np.random.default_rng(5)
    pearson = {0.0: [], 2.0: []}
    for shape in pearson:
        for _ in range(40):
            window = healthy_errors_canary(rng, 30, shape)
            calls, errors = (np.array([x or 0.0 for x in m.baseline]) for m in window.metrics)
            rate = errors.sum() / calls.sum()
            if rate > 0:
                pearson[shape].append(float(np.mean((errors - calls * rate) ** 2 / (calls * rate))))
    assert np.median(pearson[0.0]) < 1.5 < np.median(pearson[2.0])
    assert false_alarm_share(0.99, 15, 0.0, 100, 7) <= 0.03
