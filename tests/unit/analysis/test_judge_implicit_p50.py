"""The implicit p50 read beside a tail percentile configured alone (review of the "implicit p50" change):
it is only what the tail is judged through while the tail cannot be estimated, never a guarded metric of
its own. At traffic enough for a p99 it neither fails, holds, nor takes a share of the false-alarm
budget; a percentile configured as a gauge gets none; a configured metric recorded under another id
(its CloudWatch namespace, name and statistic) is there for the judge as for replay."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from analysis_support import make_window

from deployguard.analysis.judge import evaluate_metrics, judge_canary, judge_step, state_fits
from deployguard.analysis.scenario import truncate_window
from deployguard.analysis.settings import ALTERNATIVES, JudgeSettings
from deployguard.config import parse_config
from deployguard.models import CanaryWindow, Decision, MetricSpec, MetricWindow, Verdict
from deployguard_local import replay

P99_ONLY = """
defaults:
  judge:
    metrics:
      - {id: invocations, name: Invocations, stat: Sum, unit: Count}
      - {id: errors, name: Errors, stat: Sum, unit: Count}
      - {id: duration_p99, name: Duration, stat: p99, unit: Milliseconds}
"""
N = 15


def _settings(text: str = P99_ONLY) -> JudgeSettings:
    return parse_config(text, "dg.yaml").defaults.judge


def _window(
    settings: JudgeSettings, calls: list[float], p50: tuple[float, float], p99: tuple[float, float],
    errors: tuple[float, float] = (0.0, 0.0), seed: int = 1,
) -> CanaryWindow:  # fmt: skip
    """Periods of a canary at ``calls`` canary invocations a period (the baseline 9x), each metric
    (baseline, canary) with a 2% wobble; errors as rates of the invocations."""
    rnd = random.Random(seed)
    specs = {m.id: m for m in settings.read_metrics}

    def wobble(level: float) -> list[float | None]:
        return [level * (1.0 + rnd.uniform(-0.02, 0.02)) for _ in calls]

    def pair(spec_id: str, base: float, canary: float) -> MetricWindow:
        return MetricWindow(spec=specs[spec_id], baseline=wobble(base), canary=wobble(canary))

    counts: list[float | None] = list(calls)
    return CanaryWindow(
        interval_seconds=60, canary_weight=0.1,
        metrics=[
            MetricWindow(spec=specs["invocations"], baseline=[9.0 * c for c in calls], canary=counts),
            MetricWindow(spec=specs["errors"], baseline=[round(9.0 * c * errors[0]) for c in calls],
                         canary=[round(c * errors[1]) for c in calls]),
            pair("duration_p99", *p99),
            *([pair("duration_p50", *p50)] if "duration_p50" in specs else []),
        ],
    )  # fmt: skip


def _configured_only(window: CanaryWindow, settings: JudgeSettings) -> CanaryWindow:
    ids = {m.id for m in settings.metrics}
    return window.model_copy(update={"metrics": [m for m in window.metrics if m.spec.id in ids]})


def _same(a: Verdict, b: Verdict) -> None:
    assert (a.decision, a.summary, a.reasons) == (b.decision, b.summary, b.reasons)


def _errors(verdict: Verdict) -> Any:
    return next(r for r in verdict.reasons if r.metric_id == "errors")


def test_at_traffic_enough_for_a_p99_a_slower_implicit_p50_neither_fails_nor_takes_budget() -> None:
    settings = _settings().for_run(N)
    assert [m.id for m in settings.read_metrics] == ["invocations", "errors", "duration_p99", "duration_p50"]
    # 1,000 canary calls a minute: the p99 is estimable; the p50 30% slower, the p99 the same
    window = _window(settings, [1000.0] * N, p50=(100.0, 130.0), p99=(800.0, 800.0))
    verdict = judge_canary(window, settings)
    assert verdict.decision == Decision.HEALTHY, verdict.summary
    assert "duration_p50" not in verdict.summary
    assert "duration_p50" not in [r.metric_id for r in verdict.reasons]
    # as with the configured metrics alone (the p99's spread is read from the pair, so its numbers may differ)
    alone = judge_canary(_configured_only(window, settings), settings)
    assert alone.decision == Decision.HEALTHY and _errors(verdict) == _errors(alone)

    # its budget: a failing errors test is as sure as with the configured metrics alone (a half of the
    # budget each for errors and the p99, not a third)
    bad = _window(settings, [1000.0] * N, p50=(100.0, 130.0), p99=(800.0, 800.0), errors=(0.002, 0.0035))
    failing = judge_canary(bad, settings)
    assert failing.decision == Decision.FAILING and failing.summary.startswith("canary worse: errors:")
    alone = judge_canary(_configured_only(bad, settings), settings)
    assert (failing.summary, _errors(failing)) == (alone.summary, _errors(alone))
    # where a p50 is configured, it is a metric test of its own and errors get a third of the budget
    both = _settings(P99_ONLY + "      - {id: duration_p50, name: Duration, stat: p50, unit: Milliseconds}\n").for_run(
        N
    )
    third = judge_canary(
        _window(both, [1000.0] * N, p50=(100.0, 100.0), p99=(800.0, 800.0), errors=(0.002, 0.0035)), both
    )
    assert _errors(third).confidence is not None and _errors(failing).confidence is not None
    assert _errors(third).confidence < _errors(failing).confidence


def test_at_low_traffic_the_p99_is_judged_through_its_implicit_p50_which_fails_the_canary() -> None:
    settings = _settings().for_run(N)
    # 20 canary calls a minute: no p99 datapoint the judge can use (it needs 100 a period)
    window = _window(settings, [20.0] * N, p50=(100.0, 400.0), p99=(800.0, 3200.0))
    verdict = judge_canary(window, settings)
    assert verdict.decision == Decision.FAILING, verdict.summary
    assert verdict.summary.startswith("canary worse: duration_p50: canary"), verdict.summary
    assert any(r.metric_id == "duration_p99" and "judged through duration_p50" in r.message for r in verdict.reasons)
    # a healthy low-traffic canary passes through its p50, the p99's missing bound does not hold it
    healthy = judge_canary(_window(settings, [20.0] * N, p50=(100.0, 100.0), p99=(800.0, 800.0)), settings)
    assert healthy.decision == Decision.HEALTHY, healthy.summary
    assert "duration_p50" in healthy.summary


def test_a_judge_state_folded_across_the_rise_in_traffic_gives_the_whole_windows_verdict() -> None:
    settings = _settings().for_run(2 * N)
    calls = [20.0] * 5 + [1000.0] * (2 * N - 5)  # the p99 judged through the p50 at first, on its own later
    window = _window(settings, calls, p50=(100.0, 130.0), p99=(800.0, 800.0), seed=4)
    whole = judge_canary(window, settings)
    assert whole.decision == Decision.HEALTHY and "duration_p50" not in whole.summary, whole.summary

    def part(lo: int, hi: int) -> CanaryWindow:
        return window.model_copy(update={"metrics": [
            m.model_copy(update={"baseline": m.baseline[lo:hi], "canary": m.canary[lo:hi]}) for m in window.metrics
        ]})  # fmt: skip

    state, early = judge_step(None, part(0, 5), settings)
    assert any(r.metric_id == "duration_p50" for r in early.reasons)  # judged through it: a metric test then
    stored = state.dump()
    assert state_fits(stored, settings, settings.read_metrics)  # what the assessor checks before folding on
    _, later = judge_step(type(state).load(stored), part(5, 2 * N), settings)
    _same(later, whole)


def test_a_percentile_configured_as_a_gauge_gets_no_implicit_p50() -> None:
    gauge = (
        P99_ONLY
        + "      - {id: cpu_p99, namespace: App, name: CpuUtilization, stat: p99, unit: Percent, kind: gauge}\n"
    )
    settings = _settings(gauge)
    assert [m.id for m in settings.read_metrics] == [*(m.id for m in settings.metrics), "duration_p50"]
    # as MetricSpec objects too: an explicit gauge gets none; a p99 whose kind is not given is inferred a latency
    built = JudgeSettings(metrics=[
        MetricSpec(id="invocations", name="Invocations", stat="Sum", kind="count"),
        MetricSpec(id="cpu_p99", namespace="App", name="CpuUtilization", stat="p99", unit="Percent", kind="gauge"),
        MetricSpec(id="queue_p95", namespace="App", name="QueueWait", stat="p95"),
    ])  # fmt: skip
    assert [(m.id, m.stat, m.kind.value) for m in built.read_metrics[3:]] == [("queue_p50", "p50", "latency")]


FULL = """judge:
  metrics:
    - {id: invocations, name: Invocations, stat: Sum, unit: Count}
    - {id: errors, name: Errors, stat: Sum, unit: Count, relative_to: invocations}
    - {id: throttles, name: Throttles, stat: Sum, unit: Count, relative_to: invocations}
    - {id: duration_p50, name: Duration, stat: p50, unit: Milliseconds}
    - {id: duration_p99, name: Duration, stat: p99, unit: Milliseconds}
"""


def _recording(window: CanaryWindow, name: str, rename: dict[str, str]) -> dict[str, Any]:
    return {
        "format": "deployguard-scenario/1", "name": name, "interval_seconds": 60,
        "intervals": window.periods, "canary_weight": window.canary_weight,
        "metrics": [
            {"id": rename.get(m.spec.id, m.spec.id), "namespace": m.spec.namespace, "name": m.spec.name,
             "stat": m.spec.stat, "unit": m.spec.unit, "baseline": m.baseline, "canary": m.canary}
            for m in window.metrics
        ],
    }  # fmt: skip


def _replay(tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, Any]) -> dict[str, Any]:
    config, recording = tmp_path / "full.yaml", tmp_path / f"{document['name']}.json"
    config.write_text(FULL)
    recording.write_text(json.dumps(document))
    assert replay.main(["--json", "--config", str(config), str(recording)]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return dict(row)


def test_a_configured_metric_recorded_under_another_id_is_judged_under_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    renamed = {"errors": "lambda_errors"}  # Errors/Sum, as the configured errors
    good = make_window(20, rpm=2000, weight=0.1, base_error=0.002, canary_error=0.002, seed=11)
    row = _replay(tmp_path, capsys, _recording(good, "good", renamed))
    assert row["decision"] == "promote", row["reason"]
    assert "lambda_errors" in row["reason"] and "missing evidence" not in row["reason"]
    bad = make_window(20, rpm=2000, weight=0.1, base_error=0.002, canary_error=0.1, seed=11)
    row = _replay(tmp_path, capsys, _recording(bad, "bad", renamed))
    assert row["decision"] == "rollback" and "lambda_errors" in row["reason"], row["reason"]
    # the judge itself, given a window whose settings name errors: the same rule
    settings = JudgeSettings.model_validate({"metrics": [m.model_dump(exclude_unset=True) for m in _settings(
        "defaults:\n  " + FULL.replace("\n", "\n  ")).metrics]})  # fmt: skip
    window = good.model_copy(update={"metrics": [
        m.model_copy(update={"spec": m.spec.model_copy(update={"id": "lambda_errors"})}) if m.spec.id == "errors" else m
        for m in good.metrics
    ]})  # fmt: skip
    verdict = judge_canary(window, settings.for_run(20))
    assert verdict.decision == Decision.HEALTHY and "lambda_errors" in verdict.summary, verdict.summary
    # a metric truly absent is still missing evidence
    absent = window.model_copy(update={"metrics": [m for m in window.metrics if m.spec.id != "lambda_errors"]})
    held = judge_canary(absent, settings.for_run(20))
    assert held.decision == Decision.INCONCLUSIVE and held.summary.startswith("errors: missing evidence"), held.summary


def test_a_p50_shift_while_the_tail_was_judged_alone_is_no_evidence_later() -> None:
    """The median 50% slower in the first 10 minutes at 1,000 calls (the p99 judged on its own, no regression),
    then traffic falls to 20 calls and the median is fine: the implicit p50 folds only the periods its tail
    cannot be estimated in, so the canary does not fail on the old shift when the p99 starts being judged
    through it (it did, 11 periods after the median recovered)."""
    periods = 40
    settings = _settings().for_run(periods)
    specs = {m.id: m for m in settings.read_metrics}
    rnd = random.Random(3)
    calls = [1000.0] * 10 + [20.0] * 30
    p50 = [150.0] * 10 + [100.0] * 30

    def w(x: float, s: float = 0.02) -> float:
        return x * (1 + rnd.uniform(-s, s))

    series = {
        "invocations": ([9 * c for c in calls], calls),
        "errors": ([0.0] * periods, [0.0] * periods),
        "duration_p99": ([w(800.0, 0.3) for _ in calls], [w(800.0, 0.3) for _ in calls]),
        "duration_p50": ([w(100.0) for _ in calls], [w(v) for v in p50]),
    }

    def window(n: int) -> CanaryWindow:
        return CanaryWindow(
            interval_seconds=60,
            canary_weight=0.1,
            metrics=[MetricWindow(spec=specs[k], baseline=b[:n], canary=c[:n]) for k, (b, c) in series.items()],
        )

    decisions = [judge_canary(window(n), settings).decision for n in range(12, periods + 1)]
    assert Decision.FAILING not in decisions, decisions


def test_a_tail_recorded_under_another_id_is_still_judged_through_the_implicit_p50() -> None:
    """The p99 held under another id (same namespace, name and statistic: the configured one, by same_metric):
    the implicit p50 is still its stand-in, so a 4x slower canary at 20 calls fails through it."""
    settings = _settings().for_run(N)
    window = _window(settings, [20.0] * N, p50=(100.0, 400.0), p99=(800.0, 3200.0))
    renamed = [
        m.model_copy(update={"spec": m.spec.model_copy(update={"id": "lambda_duration_p99"})})
        if m.spec.id == "duration_p99"
        else m
        for m in window.metrics
    ]
    verdict = judge_canary(window.model_copy(update={"metrics": renamed}), settings)
    assert verdict.decision == Decision.FAILING, verdict.summary
    assert "duration_p50" in verdict.summary


def test_each_tests_share_of_the_budget_is_the_same_whether_the_p50_stands_in_or_not() -> None:
    """A tail and its implicit p50 share the tail's budget weight, half each, at every look: a failing errors
    test has the same share (1/2 of the budget: errors 1, p99 1/2, p50 1/2) at 20 calls a minute, where the p99 is
    judged through the p50, and at 1,000, where the p50 is idle, so no test's threshold moves when traffic does."""
    settings = _settings().for_run(N)

    def errors_share(calls: float, canary_errors: float) -> float:
        bad = _window(settings, [calls] * N, p50=(100.0, 100.0), p99=(800.0, 800.0), errors=(0.002, canary_errors))
        for n in range(1, N + 1):  # the first failing look: its evidence just past the threshold, not certainty
            (result,) = [r for r in evaluate_metrics(truncate_window(bad, n), settings) if r.spec.id == "errors"]
            if result.status == "fail" and result.confidence is not None:
                return ALTERNATIVES * math.exp(-result.evidence) / (1.0 - result.confidence)
        raise AssertionError("errors never failed")

    assert errors_share(20.0, 0.05) == pytest.approx(0.5, rel=1e-3)
    assert errors_share(1000.0, 0.0035) == pytest.approx(0.5, rel=1e-3)
