"""The one source of "now" for DeployGuard.

On AWS this is the wall clock. The embedded AWS installs a simulated clock so a
ten-minute canary runs in seconds: Step Functions Wait states advance it instead of
sleeping, and synthetic CloudWatch datapoints are stamped with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_source: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    return _source()


def install(source: Callable[[], datetime]) -> None:
    global _source
    _source = source


def reset() -> None:
    install(lambda: datetime.now(UTC))


def is_simulated() -> bool:
    """Whether "now" is a clock that moves only when told (:class:`SimulatedClock`), not the wall clock."""
    return callable(getattr(_source, "advance", None))


def sleep(seconds: float) -> None:
    """Wait ``seconds``: really on AWS; under a :class:`SimulatedClock` by moving it instead."""
    if seconds <= 0:
        return
    advance = getattr(_source, "advance", None)
    if callable(advance):
        advance(seconds)
    else:
        time.sleep(seconds)


class SimulatedClock:
    """A thread-safe clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now
