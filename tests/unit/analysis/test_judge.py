from __future__ import annotations

import math

import pytest
from analysis_support import make_window
from pydantic import ValidationError

from deployguard.analysis.judge import judge_canary
from deployguard.analysis.settings import JudgeSettings
from deployguard.models import CanaryWindow, Decision, MetricKind, MetricSpec, MetricWindow


def test_clear_error_regression_fails_naming_the_metric() -> None:
    errors = [0.005] * 5 + [0.08] * 10
    verdict = judge_canary(make_window(15, canary_error=errors), JudgeSettings())
    assert verdict.decision == Decision.FAILING
    failing = verdict.failing_reasons
    assert failing and failing[0].metric_id == "errors"
    assert failing[0].effect is not None and failing[0].effect > 1.0
    assert failing[0].confidence is not None and failing[0].confidence > 0.99
    assert "errors" in verdict.summary


def test_latency_regression_fails() -> None:
    mult = [1.0] * 5 + [1.6] * 10
    verdict = judge_canary(make_window(15, canary_latency_mult=mult), JudgeSettings())
    assert verdict.decision == Decision.FAILING
    assert {r.metric_id for r in verdict.failing_reasons} & {"duration_p50", "duration_p99"}


def test_identical_versions_become_healthy_with_enough_evidence() -> None:
    settings = JudgeSettings()
    for seed in range(5):
        verdict = judge_canary(make_window(20, seed=seed), settings)
        assert verdict.decision == Decision.HEALTHY, verdict.summary
        assert all(r.status != "fail" for r in verdict.reasons)


def test_too_early_is_inconclusive_not_healthy() -> None:
    verdict = judge_canary(make_window(1, rpm=100), JudgeSettings())
    assert verdict.decision == Decision.INCONCLUSIVE


def test_no_traffic_is_inconclusive_never_healthy() -> None:
    window = make_window(30, weight=0.0)
    verdict = judge_canary(window, JudgeSettings())
    assert verdict.decision == Decision.INCONCLUSIVE
    assert "not enough evidence" in verdict.summary


def test_shared_incident_does_not_fail() -> None:
    incident = {8: 0.25, 9: 0.25}
    for seed in range(3):
        window = make_window(20, shared_error=incident, seed=seed)
        verdict = judge_canary(window, JudgeSettings())
        assert verdict.decision != Decision.FAILING, verdict.summary


def test_better_canary_is_not_failing() -> None:
    verdict = judge_canary(make_window(20, canary_error=0.0, canary_latency_mult=0.7), JudgeSettings())
    assert verdict.decision == Decision.HEALTHY


def _window(values: dict[str, tuple[list[float | None], list[float | None]]]) -> CanaryWindow:
    specs = {
        "invocations": MetricSpec(id="invocations", name="Invocations", kind=MetricKind.COUNT),
        "errors": MetricSpec(id="errors", name="Errors", kind=MetricKind.RATE_COUNT, relative_to="invocations"),
        "duration_p99": MetricSpec(id="duration_p99", name="Duration", stat="p99", kind=MetricKind.LATENCY),
        "cpu": MetricSpec(id="cpu", namespace="Custom", name="CPU", stat="Average"),
    }
    return CanaryWindow(
        canary_weight=0.1,
        metrics=[MetricWindow(spec=specs[k], baseline=b, canary=c) for k, (b, c) in values.items()],
    )


@pytest.mark.parametrize(
    "values",
    [
        {"invocations": ([None] * 5, [None] * 5), "errors": ([None] * 5, [None] * 5)},  # gaps only
        {"invocations": ([0.0] * 5, [0.0] * 5), "errors": ([0.0] * 5, [0.0] * 5)},  # zeros
        {"invocations": ([100.0] * 8, [10.0] * 8), "errors": ([0.0] * 8, [0.0] * 8)},  # all equal
        {"invocations": ([100.0], [10.0]), "errors": ([1.0], [1.0]), "duration_p99": ([5.0], [5.0])},  # one point
        {"duration_p99": ([100.0] * 6, [100.0] * 6), "cpu": ([50.0] * 6, [50.0] * 6)},  # no counts, flat
        {"cpu": ([1.0, None, 3.0, 0.0, -1.0], [None, 2.0, 0.0, 0.0, 5.0])},  # odd gauge
        {"invocations": ([100.0, None, 80.0], [10.0, 5.0, None]), "errors": ([None, 1.0, 2.0], [3.0, None, 0.0])},
        {"invocations": ([], []), "errors": ([], [])},  # no periods at all
    ],
)
def test_bad_data_never_crashes(values: dict[str, tuple[list[float | None], list[float | None]]]) -> None:
    verdict = judge_canary(_window(values), JudgeSettings())
    assert verdict.decision in set(Decision)
    assert verdict.summary


def test_all_canary_errors_against_clean_baseline_fails() -> None:
    inv = ([1000.0] * 10, [100.0] * 10)
    err = ([0.0] * 10, [0.0] * 3 + [30.0] * 7)
    verdict = judge_canary(_window({"invocations": inv, "errors": err}), JudgeSettings())
    assert verdict.decision == Decision.FAILING
    assert verdict.failing_reasons[0].effect is None or math.isinf(verdict.failing_reasons[0].effect)


def test_settings_defaults_and_kind_inference() -> None:
    settings = JudgeSettings()
    assert {m.id for m in settings.metrics} >= {"invocations", "errors", "throttles", "duration_p50", "duration_p99"}
    inferred = JudgeSettings.model_validate(
        {
            "metrics": [
                {"id": "invocations", "name": "Invocations"},
                {"id": "errors", "name": "Errors"},
                {"id": "p99", "name": "Duration", "stat": "p99"},
                {"id": "conversions", "namespace": "Shop", "name": "Done", "relative_to": "invocations"},
            ]
        }
    )
    kinds = {m.id: m.kind for m in inferred.metrics}
    assert kinds == {
        "invocations": MetricKind.COUNT,
        "errors": MetricKind.RATE_COUNT,
        "p99": MetricKind.LATENCY,
        "conversions": MetricKind.RATE_COUNT,
    }
    assert inferred.metrics[1].relative_to == "invocations"


def test_settings_errors_name_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        JudgeSettings.model_validate({"confidence": 2})
    assert "confidence" in str(err.value)
    with pytest.raises(ValidationError) as err:
        JudgeSettings.model_validate({"metrics": [{"id": "errors", "name": "Errors", "relative_to": "nope"}]})
    assert "metrics.0.relative_to" in str(err.value)
    with pytest.raises(ValidationError) as err:
        JudgeSettings.model_validate({"min_effect": {"rate_relative": -1}})
    assert "rate_relative" in str(err.value)


def test_grace_period_ignores_cold_start_latency() -> None:
    mult = [3.0, 3.0] + [1.0] * 18  # two slow periods the next one does not confirm
    verdict = judge_canary(make_window(20, canary_latency_mult=mult), JudgeSettings())
    assert verdict.decision != Decision.FAILING
    strict = judge_canary(make_window(20, canary_latency_mult=mult), JudgeSettings(grace_periods=0))
    assert strict.decision == Decision.FAILING
