"""botocore's adaptive client-side pacing on the embedded AWS's simulated time.

botocore's ``adaptive`` retry mode (DeployGuard's clients use it) paces a client that was throttled with a
token bucket that waits in real time, for as long as the client lives. On AWS that is right. On the embedded
AWS the throttles are injected faults on a simulated clock: while they are injected, and afterwards while
DeployGuard's clock is simulated (:func:`deployguard.clock.install` of a clock that moves when told), the
pacing does not wait (a test's calls after its throttles were over waited seconds of wall time). On the wall
clock, outside injected faults, it waits as on AWS."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from deployguard import clock

_lock = threading.Lock()
_installed = False
_forced = 0  # scopes of injected faults that want no real-time pacing whatever the clock


def install() -> None:
    """Process-wide and idempotent: the bucket reads the clock (and the scopes) at each call."""
    global _installed
    from botocore.retries import bucket

    with _lock:
        if _installed:
            return
        original_acquire = bucket.TokenBucket.acquire

        def acquire(self: Any, amount: int = 1, block: bool = True) -> bool:
            if _forced > 0 or clock.is_simulated():
                return True
            return bool(original_acquire(self, amount=amount, block=block))

        bucket.TokenBucket.acquire = acquire
        _installed = True


def without_waits() -> Callable[[], None]:
    """No real-time pacing until the returned undo is called (whatever the clock): for injected faults."""
    global _forced
    install()
    with _lock:
        _forced += 1

    def undo() -> None:
        global _forced
        with _lock:
            _forced -= 1

    return undo
