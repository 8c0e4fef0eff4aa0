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


def test_invoke_leaves_powertools_empty_metrics_warning_to_verbose() -> None:
    """A function that puts no metric draws Powertools' UserWarning at its flush: noise on stderr unless --verbose
    (run as a user runs it: a process of its own, no test warning filters, no Powertools settings in the shell)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "DEPLOYGUARD_", "PYTHONWARNINGS"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "layers" / "deployguard"), str(REPO / "src")])
    argv = [sys.executable, "-m", "deployguard_local.cli", "invoke", "ConsoleReadFunction",
            "--event", str(REPO / "events" / "console_api_canaries.json")]  # fmt: skip
    quiet = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert quiet.returncode == 0 and json.loads(quiet.stdout), quiet.stderr
    assert "Warning" not in quiet.stderr, quiet.stderr
    verbose = subprocess.run([*argv, "--verbose"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                             check=False)  # fmt: skip
    assert verbose.returncode == 0 and "UserWarning: No application metrics to publish" in verbose.stderr
