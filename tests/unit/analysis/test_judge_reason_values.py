"""A latency reason's canary and baseline values are of the very periods its effect is of."""

from __future__ import annotations

import pytest
from analysis_support import make_window

from deployguard.analysis.judge import judge_canary
from deployguard.analysis.settings import JudgeSettings


@pytest.mark.parametrize(
    ("shift_at", "mult"),
    [(None, 1.0), (3, 1.02)],  # healthy; a small change from period 3 on, with the canary's traffic stepping up
)
def test_the_effect_shown_is_canary_over_baseline(shift_at: int | None, mult: float) -> None:
    window = make_window(16, rpm=3000.0, jitter=0.05, canary_latency_mult=[1.0] * 8 + [mult] * 8, seed=11)
    if shift_at is not None:
        window = window.model_copy(update={"periods_since_shift": 16 - shift_at})
    verdict = judge_canary(window, JudgeSettings())
    latency = [r for r in verdict.reasons if r.metric_id.startswith("duration_") and r.status != "fail"]
    assert latency, verdict.summary
    for reason in latency:
        assert reason.canary_value is not None and reason.baseline_value is not None and reason.effect is not None
        assert reason.canary_value / reason.baseline_value - 1.0 == pytest.approx(reason.effect, abs=1e-3)
        assert "weighted by traffic" in reason.message
        if shift_at is not None:
            assert "just after a traffic shift" in reason.message
