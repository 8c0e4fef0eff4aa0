from __future__ import annotations

from collections.abc import Iterator

import pytest

from deployguard import clock


@pytest.fixture
def sim_clock() -> Iterator[clock.SimulatedClock]:
    sim = clock.SimulatedClock()
    clock.install(sim)
    yield sim
    clock.reset()
