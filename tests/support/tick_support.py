"""The minute tick as EventBridge's schedule invokes it on the embedded AWS."""

from __future__ import annotations

import json
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
