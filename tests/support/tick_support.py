"""The minute tick as EventBridge's schedule invokes it on the embedded AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployguard import clock

ROOT = Path(__file__).resolve().parents[2]


def schedule_event() -> dict[str, Any]:
    """``events/schedule.json`` with the simulated clock's time."""
    event = json.loads((ROOT / "events" / "schedule.json").read_text(encoding="utf-8"))
    event["time"] = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    return dict(event)


def minute_tick(aws: Any) -> dict[str, Any]:
    """One run of AssessorFunction (the minute tick) through Lambda Invoke; its report."""
    payload, errored = aws.invoke("AssessorFunction", schedule_event())
    assert not errored, payload
    return dict(payload)


CANARIES = ["bench-00000", "bench-00001", "bench-00002"]  # the deployments seeded_loop() seeds


@contextmanager
def seeded_loop() -> Iterator[Any]:
    """The embedded AWS with three 5-minute-old canaries of the scale bench's seeding (``CANARIES``), a minute
    on, so the next tick has them due."""
    from deployguard_local.bench_scale import seed_loop
    from deployguard_local.emulator import EmbeddedAws

    with EmbeddedAws(start=datetime(2026, 11, 2, 12, 0, 30, tzinfo=UTC)) as aws:
        seed_loop(deployments=3, age_minutes=5, monitored=0)
        assert aws.clock is not None
        aws.clock.advance(60)
        yield aws


@contextmanager
def function_faults(aws: Any) -> Iterator[Any]:
    """A fault injector on the functions' calls only (not the test's own)."""
    from deployguard_local.chaos.faults import FaultInjector

    assert aws.clock is not None
    with FaultInjector(aws.clock) as injector:
        injector.watch(aws.registry)
        yield injector
