"""Log correlation: every function's summary line names the deployments it worked on, and on the embedded
AWS, where all functions share one Powertools logger in one process (asynchronous invocations in a worker
thread), a line carries its own function's keys, never another's. The real handlers through Lambda Invoke
with the sample events of events/ (what `deployguard invoke` sends), their log lines read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployguard.workflows import runtime
from deployguard_local.emulator import EmbeddedAws

EVENTS = Path(__file__).resolve().parents[1] / "events"


@pytest.fixture
def aws() -> Iterator[EmbeddedAws]:
    level = runtime.logger.log_level
    runtime.logger.setLevel("INFO")  # the tests' default is WARNING: the summary lines are INFO
    try:
        with EmbeddedAws(quiet=False) as stack:
            stack.seed_sample()
            yield stack
    finally:
        runtime.logger.setLevel(level)


def _invoke(aws: EmbeddedAws, capsys: pytest.CaptureFixture[str], function: str, event: str) -> list[dict[str, Any]]:
    capsys.readouterr()
    payload, errored = aws.invoke(function, json.loads((EVENTS / event).read_text(encoding="utf-8")))
    assert not errored, payload
    aws.invoker.drain()  # what it published, routed in the worker thread
    captured = capsys.readouterr()
    return [json.loads(line) for line in (captured.out + captured.err).splitlines() if line.startswith('{"level"')]


def _line(lines: list[dict[str, Any]], message: str) -> dict[str, Any]:
    (line,) = [line for line in lines if line["message"] == message]
    return line


@pytest.mark.parametrize(
    ("function", "event", "message", "deployment"),
    [
        ("AssessorFunction", "schedule.json", "assessment run", "dg-sample-0003"),
        ("AssessorShardFunction", "assessment_shard.json", "assessment shard", "dg-sample-0003"),
        ("NotificationRouterFunction", "sns_deployment_event.json", "notifications routed", "dg-sample-0001"),
        ("ReportWriterFunction", "sns_deployment_event.json", "reports written", "dg-sample-0001"),
        ("CanaryStepFunction", "canary_validate.json", "canary task done", "dg-sample-0002"),
        ("CanaryStepFunction", "canary_assess.json", "canary task done", "dg-sample-0001"),
    ],
)
def test_a_functions_summary_line_names_its_deployments(
    aws: EmbeddedAws, capsys: pytest.CaptureFixture[str], function: str, event: str, message: str, deployment: str
) -> None:
    lines = _invoke(aws, capsys, function, event)
    mine = [line for line in lines if line["function_name"] == aws.stack.ref(function)]
    line = _line(mine, message)
    assert line["deployment_id"] == deployment
    if function != "CanaryStepFunction":
        assert line["deployment_ids"] == [deployment]


def test_each_line_carries_its_own_functions_keys(aws: EmbeddedAws, capsys: pytest.CaptureFixture[str]) -> None:
    """The canary's Validate publishes events the router delivers in the worker thread meanwhile; then the
    recorder runs in the thread the canary step ran in. No line carries another function's name, request
    id, action or deployment."""
    lines = _invoke(aws, capsys, "CanaryStepFunction", "canary_validate.json")
    lines += _invoke(aws, capsys, "DeploymentRecorderFunction", "codedeploy_state_change.json")
    lines += _invoke(aws, capsys, "NotificationRouterFunction", "sns_deployment_event.json")
    by_message = {
        "canary task done": ("CanaryStepFunction", "dg-sample-0002"),
        "deployment recorded": ("DeploymentRecorderFunction", "d-SAMPLE0001"),
    }
    for message, (function, deployment) in by_message.items():
        line = _line(lines, message)
        assert line["function_name"] == aws.stack.ref(function), line
        assert line.get("deployment_id") == deployment, line
    assert "action" not in _line(lines, "deployment recorded")  # the canary step's key stayed with it
    routed = [line for line in lines if line["message"] == "notifications routed"]
    assert len(routed) >= 2  # the validate's events, and the sample event
    assert all(line["function_name"] == aws.stack.ref("NotificationRouterFunction") for line in routed)
    assert all("action" not in line for line in routed)
    requests: dict[str, set[str]] = {}
    for line in lines:
        requests.setdefault(line["function_request_id"], set()).add(line["function_name"])
    assert all(len(names) == 1 for names in requests.values()), requests  # a request's lines: one function's
