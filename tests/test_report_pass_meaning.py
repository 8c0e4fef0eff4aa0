"""What a passing reason means: bounded within the healthy margin at healthy_confidence, with the
bound given; and the judge's summary does not state a consequence the workflow decides."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "unit" / "analysis"))

from analysis_support import make_window

from deployguard.analysis.judge import judge_canary
from deployguard.analysis.settings import JudgeSettings
from deployguard.models import Decision


def test_a_latency_25_percent_slower_that_passes_says_within_the_margin_with_its_bound() -> None:
    settings = JudgeSettings()
    # the audit's case: a canary 25% slower at low traffic, bounded below +50% (healthy at 90%)
    verdict = judge_canary(make_window(20, rpm=60, canary_latency_mult=1.25, jitter=0.1, seed=3), settings)
    assert verdict.decision == Decision.HEALTHY
    p50 = next(r for r in verdict.reasons if r.metric_id == "duration_p50")
    assert p50.status == "pass" and p50.effect is not None and p50.effect > 0.15
    # the reason says how it passed, not "not worse"
    assert "not worse" not in p50.message
    assert "within +50%: 90% upper bound +" in p50.message
    assert p50.confidence == settings.healthy_confidence
    assert p50.canary_bound is not None and p50.baseline_value is not None
    assert p50.canary_bound <= p50.baseline_value * 1.5 + 1e-9
    shown = float(p50.message.rsplit("upper bound ", 1)[1].rstrip("%"))
    assert abs(shown / 100 - (p50.canary_bound / p50.baseline_value - 1)) < 0.001


def test_every_pass_states_its_bound_and_the_healthy_summary_says_what_healthy_means() -> None:
    settings = JudgeSettings()
    verdict = judge_canary(make_window(20), settings)
    assert verdict.decision == Decision.HEALTHY
    assert "within the healthy margins on errors, throttles, duration_p50, duration_p99 (90% sure)" in verdict.summary
    for r in verdict.reasons:
        assert r.status == "pass" and "not worse" not in r.message
        assert r.canary_bound is not None and r.confidence == 0.9
        assert "90% upper bound" in r.message
    errors = next(r for r in verdict.reasons if r.metric_id == "errors")
    assert errors.canary_bound is not None and errors.canary_value is not None
    assert errors.canary_bound >= errors.canary_value  # an upper bound of the canary's rate


def test_the_judges_summary_does_not_say_hold_or_roll_back() -> None:
    window = make_window(20)
    lost = window.model_copy(
        update={
            "metrics": [
                m.model_copy(update={"canary": [None] * 20}) if m.spec.id == "errors" else m for m in window.metrics
            ]
        }
    )
    for on in ("hold", "rollback"):
        verdict = judge_canary(lost, JudgeSettings(on_no_evidence=on))
        assert verdict.decision == Decision.INCONCLUSIVE
        assert "no conclusive evidence after 20 periods" in verdict.summary
        assert "hold" not in verdict.summary and "roll back" not in verdict.summary
