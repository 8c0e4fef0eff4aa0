"""The scheduled assessor judges incrementally (issue 12): the judge state stored on the record is
folded forward look after look, gives the whole-window verdict every time, and stays small."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from analysis_support import make_window

from deployguard.analysis.judge import JudgeState, judge_canary
from deployguard.analysis.scenario import truncate_window
from deployguard.analysis.settings import JudgeSettings
from deployguard.aws.cloudwatch import WindowRequest
from deployguard.models import CanaryWindow, MetricWindow, Verdict
from deployguard.workflows.assessor import (
    SETTLE_PERIODS,
    TAIL_PERIODS,
    judge_tail,
    load_judge_state,
)

START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _request(periods: int, start: datetime = START) -> WindowRequest:
    return WindowRequest([], start, start + timedelta(minutes=periods), 60)


def judge_incrementally(
    window: CanaryWindow, settings: JudgeSettings, stored: dict[str, Any] | None, request: WindowRequest
) -> tuple[Verdict, dict[str, Any] | None]:
    """A look as the assessor makes it: the state stored by the previous look read back, then the whole window."""
    state = load_judge_state(stored, request.start, request.interval_seconds)
    return judge_tail(window, settings, state, request.start, request.interval_seconds)


def test_each_look_gives_the_whole_window_verdict_and_keeps_a_small_state() -> None:
    settings = JudgeSettings()
    full = make_window(40, canary_error=[0.005] * 25 + [0.05] * 15, seed=3)  # the canary starts failing at 25
    stored = None
    sizes = []
    for n in range(1, 41):
        window = truncate_window(full, n)
        verdict, stored = judge_incrementally(window, settings, stored, _request(n))
        assert verdict == judge_canary(window, settings), n
        if n > SETTLE_PERIODS:
            assert stored is not None and JudgeState.load(stored["state"]).periods == n - SETTLE_PERIODS
            stored = json.loads(json.dumps(stored))  # as the record stores it
            sizes.append(len(json.dumps(stored)))
    assert verdict.decision.value == "failing"
    assert max(sizes) < 4 * 1024 and len(set(sizes)) == 1  # one size whatever the age


def test_a_window_that_starts_elsewhere_or_a_broken_state_starts_the_judge_over() -> None:
    settings = JudgeSettings()
    full = make_window(12, seed=5)
    _, stored = judge_incrementally(truncate_window(full, 10), settings, None, _request(10))
    assert stored is not None
    moved = _request(12, START + timedelta(minutes=2))  # an ECS canary's traffic start learnt later
    verdict, again = judge_incrementally(full, settings, stored, moved)
    assert verdict == judge_canary(full, settings) and again is not None and again["start"] == moved.start.isoformat()
    verdict, _ = judge_incrementally(full, settings, {**stored, "state": {"format": "nonsense"}}, _request(12))
    assert verdict == judge_canary(full, settings)


def _tail(window: CanaryWindow, offset: int) -> CanaryWindow:
    """Periods ``offset`` onwards, as the assessor reads them (the shift still counted from the end)."""
    return CanaryWindow.model_construct(
        interval_seconds=window.interval_seconds, canary_weight=window.canary_weight,
        periods_since_shift=window.periods_since_shift,
        metrics=[MetricWindow.model_construct(spec=m.spec, baseline=m.baseline[offset:], canary=m.canary[offset:],
                                              gaps=[]) for m in window.metrics],
    )  # fmt: skip


def test_a_look_reads_only_the_periods_not_folded_and_gives_the_whole_window_verdict() -> None:
    settings = JudgeSettings()
    full = make_window(40, canary_error=[0.005] * 25 + [0.05] * 15, seed=4)
    stored = None
    read = []
    for n in range(1, 41):
        state = load_judge_state(stored, START, 60)
        offset = max(0, min(state.periods if state else 0, n - TAIL_PERIODS))  # as the assessor plans its read
        tail = _tail(truncate_window(full, n), offset)
        verdict, stored = judge_tail(tail, settings, state, START, 60, offset)
        assert verdict == judge_canary(truncate_window(full, n), settings), n
        stored = json.loads(json.dumps(stored))
        read.append(tail.periods)
    assert verdict.decision.value == "failing"
    assert max(read[TAIL_PERIODS:]) == TAIL_PERIODS  # a constant read whatever the age
