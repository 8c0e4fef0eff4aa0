"""The CLI's stdout holds its answer alone: the embedded functions log (and print metrics) to stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployguard_local import cli

REPO = Path(__file__).resolve().parents[2]


def test_invoke_verbose_prints_the_payload_alone_and_logs_to_stderr(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployguard.workflows import runtime

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as a user's shell: metrics and INFO logs
    level = runtime.logger.log_level
    runtime.logger.setLevel("INFO")
    try:
        code = cli.main(["invoke", "AssessorFunction", "--event", str(REPO / "events" / "schedule.json"), "--verbose"])
    finally:
        runtime.logger.setLevel(level)
    out, err = capsys.readouterr()
    assert code == 0, err
    payload = json.loads(out)  # one JSON document: no log line, no EMF line
    assert isinstance(payload, dict)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line.get("message") == "assessment run" for line in lines)  # the function's Powertools log
    assert any("_aws" in line for line in lines)  # its EMF metrics
