"""The incremental judge (``judge_step`` with a stored ``JudgeState``) gives the verdicts of the
whole-window judge (``judge_canary``), look after look, whatever the chunks it is fed."""

from __future__ import annotations

import json
import random

import pytest
from analysis_support import make_window

from deployguard.analysis.judge import JudgeState, judge_canary, judge_step, state_fits
from deployguard.analysis.scenario import truncate_window
from deployguard.analysis.settings import JudgeSettings
from deployguard.exceptions import JudgeStateError
from deployguard.models import CanaryWindow, DataGap, MetricSpec, MetricWindow


def _scenario(rng: random.Random, periods: int) -> tuple[CanaryWindow, int | None]:
    """A random canary: healthy or not, jittery or not, with gaps, a gauge and maybe a traffic shift."""
    onset = rng.randrange(periods)
    kind = rng.choice(["healthy", "errors", "latency", "jitter", "low"])
    mult = [1.0] * periods
    errors: list[float] | None = None
    if kind == "latency":
        mult = [1.0 if i < onset else rng.uniform(1.2, 4.0) for i in range(periods)]
    if kind == "errors":
        errors = [0.005 if i < onset else rng.uniform(0.01, 0.1) for i in range(periods)]
    if rng.random() < 0.3:
        mult = [m * (3.0 if i == 0 else 1.5 if i == 1 else 1.0) for i, m in enumerate(mult)]  # a cold start
    window = make_window(
        periods,
        rpm=rng.choice([30.0, 300.0, 2000.0]) if kind != "low" else 8.0,
        weight=rng.choice([0.1, 0.2, 0.5]),
        canary_error=errors,
        canary_latency_mult=mult,
        jitter=0.15 if kind == "jitter" else 0.0,
        spikes=0.05 if kind == "jitter" else 0.0,
        seed=rng.randrange(10**6),
    )
    metrics = list(window.metrics)
    if rng.random() < 0.4:  # the canary's errors went missing for a while (silent or reported)
        errs = next(m for m in metrics if m.spec.id == "errors")
        a = rng.randrange(periods)
        b = min(periods, a + rng.randint(1, 5))
        canary = [None if a <= i < b else v for i, v in enumerate(errs.canary)]
        gaps = [DataGap(version="canary", periods=list(range(a, b)), reason="CloudWatch returned InternalError")]
        metrics[metrics.index(errs)] = MetricWindow(
            spec=errs.spec, baseline=errs.baseline, canary=canary, gaps=gaps if rng.random() < 0.5 else []
        )
    if rng.random() < 0.5:  # a gauge
        spec = MetricSpec(id="cpu", namespace="App", name="CpuUtilization", stat="Average", unit="Percent")
        shift = rng.choice([0.0, 0.0, 15.0])
        base = [50.0 + rng.gauss(0, 2) for _ in range(periods)]
        canary = [50.0 + rng.gauss(0, 2) + (shift if i >= onset else 0.0) for i in range(periods)]
        metrics.append(MetricWindow(spec=spec, baseline=base, canary=canary))
    shift_at = rng.randrange(3, periods) if rng.random() < 0.3 and periods > 4 else None
    since = periods - shift_at if shift_at is not None else None
    return window.model_copy(update={"metrics": metrics, "periods_since_shift": since}), shift_at


def _chunk(window: CanaryWindow, start: int, end: int, shift_at: int | None) -> CanaryWindow:
    """Periods start..end-1 as a reader would return them: gap periods and the time since the
    last shift counted within the chunk."""
    since = end - shift_at if shift_at is not None and shift_at < end else None
    return CanaryWindow(
        interval_seconds=window.interval_seconds,
        canary_weight=window.canary_weight,
        periods_since_shift=since,
        metrics=[
            MetricWindow(
                spec=m.spec,
                baseline=m.baseline[start:end],
                canary=m.canary[start:end],
                gaps=[
                    DataGap(
                        version=g.version, periods=[p - start for p in g.periods if start <= p < end], reason=g.reason
                    )
                    for g in m.gaps
                    if any(start <= p < end for p in g.periods)
                ],
            )
            for m in window.metrics
        ],
    )


def test_incremental_equals_batch_over_many_scenarios() -> None:
    rng = random.Random(12)
    settings = JudgeSettings()
    decisions = set()
    for _ in range(60):
        periods = rng.randint(3, 40)
        window, shift_at = _scenario(rng, periods)
        state: JudgeState | None = None
        done = 0
        while done < periods:
            end = min(periods, done + rng.choice([1, 1, 1, 2, 5]))
            state, verdict = judge_step(state, _chunk(window, done, end, shift_at), settings)
            state = JudgeState.load(json.dumps(state.dump()))  # stored and read back between looks
            done = end
            whole = truncate_window(window, end)
            if shift_at is not None:
                whole = whole.model_copy(update={"periods_since_shift": end - shift_at if shift_at < end else None})
            assert verdict == judge_canary(whole, settings), (periods, end)
            decisions.add(verdict.decision)
    assert len(decisions) == 3  # failing, healthy and inconclusive verdicts were all compared


def _size(state: JudgeState) -> int:
    return len(json.dumps(state.dump(), separators=(",", ":")))


def test_state_has_one_size_from_the_first_period_whatever_the_age() -> None:
    """Issue 12: the state on the deployment's record does not grow as its windows fill up."""
    window = make_window(240, jitter=0.1, spikes=0.05, seed=3)
    settings = JudgeSettings()
    sizes = {}
    state: JudgeState | None = None
    for n in (1, 5, 12, 120, 240):
        state, verdict = judge_step(state, truncate_window(window, n), settings, offset=0)
        sizes[n] = _size(state)
    assert state is not None and state.periods == 240 and verdict.periods == 240
    assert sizes[5] == sizes[120] == sizes[1] == sizes[12] == sizes[240], sizes
    # five metrics, both versions, packed as float32 (12 latency alternatives, the rate wobble, the latency
    # tests' weighted log values, the p99's room for four awaiting periods: 3,808 bytes)
    assert sizes[120] < 3900, sizes


def test_a_state_with_a_gauge_and_a_shift_round_trips_exactly() -> None:
    """Every number the fold keeps is a float32: dump and load lose nothing, pending cold-start
    periods and a gauge's first pairs included."""
    rng = random.Random(5)
    for _ in range(10):
        window, _ = _scenario(rng, rng.randint(2, 12))
        state, _ = judge_step(None, window, JudgeSettings())
        assert JudgeState.load(json.dumps(state.dump())) == JudgeState.load(state.dump())
        again = JudgeState.load(state.dump())
        assert again.dump() == state.dump()
        assert again.metrics == state.metrics and again.periods == state.periods and again.shift == state.shift


def test_a_damaged_state_is_refused_naming_the_field() -> None:
    state, _ = judge_step(None, make_window(6, seed=1), JudgeSettings())
    dumped = state.dump()
    with pytest.raises(ValueError, match=r"^data: "):
        JudgeState.load({**dumped, "data": dumped["data"][:-8]})
    with pytest.raises(ValueError, match=r"^data: "):
        JudgeState.load({**dumped, "data": "not base64!"})
    with pytest.raises(ValueError, match=r"^metrics: "):
        JudgeState.load({**dumped, "metrics": "errors"})
    with pytest.raises(ValueError, match=r"^fingerprint: "):
        JudgeState.load({k: v for k, v in dumped.items() if k != "fingerprint"})


def test_whole_window_with_offset_skips_what_was_folded() -> None:
    window = make_window(20, canary_latency_mult=[1.0] * 10 + [3.0] * 10, seed=5)
    settings = JudgeSettings()
    state, _ = judge_step(None, truncate_window(window, 12), settings)
    state, verdict = judge_step(state, window, settings, offset=0)
    assert verdict == judge_canary(window, settings)
    assert verdict.decision.value == "failing"


def test_a_state_that_does_not_fit_is_refused() -> None:
    window = make_window(10, seed=2)
    state, _ = judge_step(None, truncate_window(window, 5), JudgeSettings())
    with pytest.raises(JudgeStateError, match="other settings"):
        judge_step(state, window, JudgeSettings(confidence=0.99), offset=0)
    with pytest.raises(JudgeStateError, match="starts at period 7"):
        judge_step(state, window, JudgeSettings(), offset=7)
    with pytest.raises(ValueError, match="format"):
        JudgeState.load({"format": "something else", "fingerprint": "x"})


def test_state_fits_tells_what_judge_step_takes_without_reading_the_numbers() -> None:
    """``state_fits`` (for the assessor's scale path): a stored state fits the settings and metrics it
    was built with, in this format, and nothing else (judge_step would refuse those)."""
    window = make_window(10, seed=2)
    specs = [m.spec for m in window.metrics]
    state, _ = judge_step(None, truncate_window(window, 5), JudgeSettings())
    stored = json.loads(json.dumps(state.dump()))
    assert state_fits(stored, JudgeSettings(), specs) and state_fits(state, JudgeSettings(), specs)
    assert judge_step(JudgeState.load(stored), window, JudgeSettings(), offset=0)[0].periods == 10
    assert not state_fits(stored, JudgeSettings(confidence=0.99), specs)
    assert not state_fits(stored, JudgeSettings(), specs[:-1])
    assert not state_fits({**stored, "format": "deployguard-judge-state/3"}, JudgeSettings(), specs)
    assert not state_fits({"data": "x"}, JudgeSettings(), specs)


def test_a_look_reads_only_the_new_periods() -> None:
    """The periods already folded are never read again: garbage in them changes nothing."""
    window = make_window(60, canary_latency_mult=[1.0] * 50 + [2.0] * 10, seed=4)
    settings = JudgeSettings()
    state, _ = judge_step(None, truncate_window(window, 55), settings)
    scrambled = window.model_copy(
        update={
            "metrics": [
                m.model_copy(update={"baseline": [None] * 55 + m.baseline[55:], "canary": [1e9] * 55 + m.canary[55:]})
                for m in window.metrics
            ]
        }
    )
    _, verdict = judge_step(state, scrambled, settings, offset=0)
    assert verdict == judge_canary(window, settings)
    assert verdict.decision.value == "failing"


def test_a_latency_creep_on_a_quiet_service_is_caught_within_a_few_periods() -> None:
    """10% slower every minute from period 5: the ramp is no wobble of the versions."""
    settings = JudgeSettings()
    delays = []
    for seed in range(8):
        mult = [1.0] * 5 + [1.0 + 0.1 * k for k in range(15)]
        window = make_window(20, rpm=2000, canary_latency_mult=mult, seed=seed)
        state: JudgeState | None = None
        for i in range(20):
            state, verdict = judge_step(state, truncate_window(window, i + 1), settings, offset=0)
            if verdict.decision.value == "failing":
                delays.append(i - 5 + 1)  # the onset period counted as 1
                break
        assert judge_canary(make_window(20, rpm=2000, seed=seed), settings).decision.value == "healthy"
    assert len(delays) == 8
    # the threshold pays for the four metric tests judged at once (Bonferroni): a period later
    # than a single test's would be
    assert sorted(delays)[4] <= 5 and max(delays) <= 7, delays
