"""botocore's adaptive pacing of a throttled client waits on the wall clock (as on AWS), never on the embedded AWS's
simulated clock nor while faults are injected (deployguard_local.emulator.client_pacing): a test's calls after its
injected throttles once waited seconds of wall time in the token bucket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.exceptions import CapacityNotAvailableError
from botocore.retries import bucket

from deployguard import clock
from deployguard_local.emulator import client_pacing


class FrozenWallClock:
    """botocore's bucket clock, stopped: an empty bucket never fills by itself."""

    def current_time(self) -> float:
        return 1_000.0

    def sleep(self, amount: float) -> None:  # pragma: no cover - the bucket waits on its condition
        raise AssertionError("not called")


@pytest.fixture
def empty_bucket() -> Iterator[bucket.TokenBucket]:
    client_pacing.install()
    paced = bucket.TokenBucket(max_rate=0.5, clock=FrozenWallClock())  # made empty: it fills with time
    yield paced
    clock.reset()


def test_on_the_wall_clock_an_empty_bucket_paces_the_client(empty_bucket: bucket.TokenBucket) -> None:
    with pytest.raises(CapacityNotAvailableError):
        empty_bucket.acquire(block=False)


def test_on_a_simulated_clock_or_under_injected_faults_it_does_not_wait(empty_bucket: bucket.TokenBucket) -> None:
    clock.install(clock.SimulatedClock())
    assert empty_bucket.acquire(block=False) is True and empty_bucket.acquire(block=False) is True
    clock.reset()
    undo = client_pacing.without_waits()
    assert empty_bucket.acquire(block=False) is True
    undo()
    with pytest.raises(CapacityNotAvailableError):
        empty_bucket.acquire(block=False)
