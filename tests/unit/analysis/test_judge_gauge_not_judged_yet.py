"""A guarded gauge (revenue, CPU) the judge cannot judge yet (fewer periods than it needs to tell its noise)
keeps the verdict inconclusive, naming it, as any configured metric does (issue 10: a metric that is
missing or not judged yet never lets a canary through); ``optional: true`` opts it out. Through the public
judge API (``judge_canary``) on the default Lambda metrics plus a business gauge."""

from __future__ import annotations

from analysis_support import make_window

from deployguard.analysis.evidence import GAUGE_MIN_PAIRS
from deployguard.analysis.judge import judge_canary
from deployguard.analysis.settings import JudgeSettings, default_metrics
from deployguard.models import CanaryWindow, Decision, MetricSpec, MetricWindow


def _with_revenue(window: CanaryWindow, optional: bool = False) -> tuple[CanaryWindow, JudgeSettings]:
    revenue = MetricSpec.model_validate({
        "id": "revenue", "namespace": "Shop", "name": "Revenue", "stat": "Sum", "kind": "gauge",
        "direction": "decrease_is_bad", "metric_type": "business", "optional": optional,
    })  # fmt: skip
    periods = window.periods
    metrics = [*window.metrics, MetricWindow(spec=revenue, baseline=[1000.0] * periods, canary=[1000.0] * periods)]
    settings = JudgeSettings(metrics=[*default_metrics(), revenue]).for_run(periods)
    return window.model_copy(update={"metrics": metrics}), settings


def test_a_gauge_with_too_few_periods_holds_the_promotion() -> None:
    window, settings = _with_revenue(make_window(GAUGE_MIN_PAIRS - 1, rpm=20000))
    verdict = judge_canary(window, settings)
    assert verdict.decision == Decision.INCONCLUSIVE, verdict.summary
    assert "revenue" in verdict.summary and "too few to judge" in verdict.summary


def test_once_it_has_its_periods_it_is_judged_and_the_healthy_canary_passes() -> None:
    window, settings = _with_revenue(make_window(GAUGE_MIN_PAIRS + 4, rpm=20000))
    verdict = judge_canary(window, settings)
    assert verdict.decision == Decision.HEALTHY, verdict.summary


def test_an_optional_gauge_does_not_hold_it() -> None:
    window, settings = _with_revenue(make_window(GAUGE_MIN_PAIRS - 1, rpm=20000), optional=True)
    held = judge_canary(*_with_revenue(make_window(GAUGE_MIN_PAIRS - 1, rpm=20000)))
    verdict = judge_canary(window, settings)
    assert held.decision == Decision.INCONCLUSIVE
    assert verdict.decision == Decision.HEALTHY, verdict.summary  # the Lambda metrics alone are enough
