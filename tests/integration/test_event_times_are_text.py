"""A time in an outside event is ISO 8601 text: a number (read by pydantic as seconds since 1970)
is refused naming the field, through the real functions on the embedded AWS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]


def _event(name: str) -> Any:
    return json.loads((ROOT / "events" / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def aws() -> Any:
    with EmbeddedAws() as embedded:
        embedded.seed_sample()
        yield embedded


@pytest.mark.parametrize(
    ("function", "event_file"),
    [
        ("AssessorFunction", "schedule.json"),
        ("TrafficCheckFunction", "schedule.json"),
        ("DeploymentRecorderFunction", "codedeploy_state_change.json"),
    ],
)
def test_an_eventbridge_time_given_as_a_number_is_refused(aws: Any, function: str, event_file: str) -> None:
    event = _event(event_file) | {"time": 12345}
    payload, errored = aws.invoke(function, event)
    assert errored and payload["errorType"] == "InvalidEventError", payload
    assert "field time" in payload["errorMessage"] and "ISO 8601" in payload["errorMessage"]


def test_a_canary_state_time_given_as_a_number_is_refused(aws: Any) -> None:
    event = _event("canary_assess.json")
    event["state"]["step_started_at"] = 12345
    payload, errored = aws.invoke("CanaryStepFunction", event)
    assert errored and payload["errorType"] == "InvalidEventError", payload
    assert "step_started_at" in payload["errorMessage"] and "ISO 8601" in payload["errorMessage"]


def test_the_sample_times_as_text_still_run(aws: Any) -> None:
    payload, errored = aws.invoke("DeploymentRecorderFunction", _event("codedeploy_state_change.json"))
    assert not errored and payload["status"] == "in_progress", payload


@pytest.mark.parametrize(("time", "says"), [("1700000000", "not the number"), ("2026-12-02T03:00:00", "its zone")])
def test_digits_or_a_time_without_its_zone_are_refused(aws: Any, time: str, says: str) -> None:
    payload, errored = aws.invoke("AssessorFunction", _event("schedule.json") | {"time": time})
    assert errored and payload["errorType"] == "InvalidEventError", payload
    assert "field time" in payload["errorMessage"] and says in payload["errorMessage"]
