"""``make chaos`` (issue 11, parts 4 and 5): quiet output, causes of healthy releases not promoted.

The benchmark as ``make chaos`` runs it, in its own process, on the embedded AWS (three runs: a
canary, a hook and a router): the functions' Powertools JSON logs go to a file next to the
report, and the terminal gets the table, the report's path and a one-line summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deployguard_local.chaos.bench import rollback_cause


def test_make_chaos_prints_the_table_and_keeps_the_functions_logs_in_a_file(tmp_path: Path) -> None:
    report = tmp_path / "chaos-report.json"
    command = [sys.executable, "-m", "deployguard_local.chaos.bench", "--runs", "1", "--workers", "1"]

    done = subprocess.run([*command, "--report", str(report)], capture_output=True, text=True, timeout=300)

    out, err, code = done.stdout, done.stderr, done.returncode
    lines = out.splitlines()
    assert lines[0].startswith("subject/service") and "notif_lost" in lines[0]
    assert not [line for line in (out + err).splitlines() if line.lstrip().startswith("{")]  # no JSON log line
    assert f"report: {report}" in out and str(report.with_suffix(".log")) in out
    summary = lines[-1] if code == 0 else err.splitlines()[-1]
    assert summary.startswith("every counter that must be 0 is 0" if code == 0 else "not yet zero")
    logs = report.with_suffix(".log").read_text(encoding="utf-8")
    assert '"level":' in logs  # the functions' logs are kept, not lost
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["runs"] == 3 and sum(data["healthy_rolled_back_by_cause"].values()) == data["healthy_rolled_back"]


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        ("Lambda.ServiceException: injected 5xx", "fault: Lambda.ServiceException"),
        ("Sandbox.Timedout: injected: task timed out", "fault: Sandbox.Timedout"),
        ("InternalServerError: An error occurred (InternalServerError)", "fault: InternalServerError"),
        ("canary failing: error rate 12.0% vs 1.0%", "metrics"),
        (None, "unknown"),
    ],
)
def test_the_cause_of_a_healthy_release_not_promoted(reason: str | None, cause: str) -> None:
    assert rollback_cause(reason) == cause
