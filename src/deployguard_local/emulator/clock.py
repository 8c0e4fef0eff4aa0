"""The embedded AWS's simulated clock, which tells listeners (traffic, schedules) of each advance."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from deployguard import clock as dg_clock
from deployguard_local.emulator.iam import running_as

ClockListener = Callable[[datetime, datetime], None]


class ListeningClock(dg_clock.SimulatedClock):
    """A simulated clock that tells listeners about each advance (start, end).

    ``listeners`` (traffic, metrics) run first, then ``late_listeners`` (EventBridge
    schedules), so a schedule that fires at a minute's end reads what that minute wrote.
    """

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start)
        self.listeners: list[ClockListener] = []
        self.late_listeners: list[ClockListener] = []
        self._advance_lock = threading.RLock()

    def advance(self, seconds: float) -> datetime:
        with self._advance_lock:
            before = self()
            after = super().advance(seconds)
            with running_as(None):  # the listeners' calls (traffic, schedules) are not the sleeping function's
                for listener in [*self.listeners, *self.late_listeners]:
                    listener(before, after)
            return after
