"""Where the CLI cannot reach AWS it says why in one line, with the hint the README promises, whichever connection
option named the stack; run as a user runs it (a process of its own, without AWS credentials)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def deployguard(*argv: str) -> subprocess.CompletedProcess[str]:
    """``deployguard ARGV`` in a shell without AWS credentials (none in the environment, no profile, no config files,
    no instance metadata): botocore gives up at once, before any request."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DEPLOYGUARD_"))}
    env.update({"AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                "PYTHONPATH": os.pathsep.join([str(REPO / "layers" / "deployguard"), str(REPO / "src")])})  # fmt: skip
    return subprocess.run([sys.executable, "-m", "deployguard_local.cli", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


HINT = "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or try --local)"


def test_a_stack_without_credentials_gets_the_credentials_hint() -> None:
    done = deployguard("incidents", "list", "--stack", "deployguard")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip() == f"deployguard incidents list: stack deployguard: {HINT}"
    done = deployguard("deployments", "list", "--stack", "deployguard")  # 4: the gate's 2 is an outcome
    assert done.returncode == 4 and done.stderr.strip().endswith(f"stack deployguard: {HINT}"), done.stderr
    done = deployguard("incidents", "list", "--table", "DeploymentsTable")  # as --table always said it
    assert done.returncode == 2 and done.stderr.strip() == f"deployguard incidents list: {HINT}"


def test_debug_shows_the_traceback_instead_of_the_line(tmp_path: Path) -> None:
    nowhere = str(tmp_path / "nowhere")
    bad = tmp_path / "bad.yaml"
    bad.write_text("alerting:\n  rules:\n    - {name: x, expression: 'cpu > 5'}\n", encoding="utf-8")
    for argv, error in [
        (["--debug", "incidents", "list", "--table", "DeploymentsTable"], "botocore.exceptions.NoCredentialsError"),
        (["deployments", "list", "--debug", "--stack", "deployguard"], "DeployGuardError: stack deployguard: no AWS"),
        (["notifications", "list", "x", "--local", "--state-dir", nowhere, "--debug"], "DeployGuardError: no local"),
        (["alerts", "fields", "--config", str(bad), "--debug"], "deployguard.exceptions.ConfigError"),
    ]:
        done = deployguard(*argv)
        assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr, (argv, done.stderr)
        assert error in done.stderr.strip().splitlines()[-1], (argv, done.stderr)
        without = deployguard(*[a for a in argv if a != "--debug"])  # the one line, and its exit code
        expected = 4 if "deployments" in argv else 2  # deployments: its 2 is an outcome
        assert without.returncode == expected and "Traceback" not in without.stderr + without.stdout, (argv, without)
