"""`deployguard invoke` as the README shows it: the sample events run clean on the sample application's
configuration (events/sample-config.yaml), an unreadable --config is the command's error (exit 2, one line
naming the option) before any function runs, and a remediation approval that ran nothing says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from local_control import run

from deployguard_local import cli

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"


def test_an_unreadable_config_is_exit_2_naming_the_option(tmp_path: Path, capsys) -> None:
    event = str(EVENTS / "schedule.json")
    for config in ("/nonexistent.yaml", str(tmp_path)):  # missing; a directory
        code, out, err = run(capsys, "invoke", "AssessorFunction", "--event", event, "--config", config)
        assert code == 2 and out == ""  # no Lambda error payload: nothing was invoked
        assert err.startswith(f"deployguard invoke: --config {config}: cannot read: ")
        assert len(err.strip().splitlines()) == 1


def test_the_ecs_hook_sample_runs_clean_on_the_sample_configuration(capsys) -> None:
    code, out, err = run(capsys, "invoke", "LifecycleHookFunction", "--event",
                         str(EVENTS / "codedeploy_lifecycle_hook_ecs.json"))  # fmt: skip
    answer = json.loads(out)
    assert code == 0, err
    assert answer["status"] == "Succeeded" and answer["reported"]
    assert answer["warnings"] == [] and answer["warning"] is None, answer["warning"]
    assert "MetricsConfigError" not in err


def test_a_remediation_approval_that_ran_nothing_says_why(capsys) -> None:
    code, out, err = run(capsys, "invoke", "RemediationApprovalFunction", "--event",
                         str(EVENTS / "remediation_approval_run.json"))  # fmt: skip
    answer = json.loads(out)
    assert code == 0, err
    assert answer["outcome"] == "not_approved"
    assert answer["message"] == "approval ap-sample00001 is pending: not yet approved"


def test_the_sample_configuration_is_used_only_when_no_other_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEPLOYGUARD_CONFIG_FILE", raising=False)
    assert cli._sample_config(None) == EVENTS / cli.SAMPLE_CONFIG
    assert cli._sample_config("http://127.0.0.1:5000") is None  # a running endpoint has no sample application
    monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", "/somewhere/deployguard.yaml")
    assert cli._sample_config(None) is None


def test_the_sample_configuration_is_valid(capsys) -> None:
    code, out, err = run(capsys, "config", "validate", str(EVENTS / cli.SAMPLE_CONFIG))
    assert code == 0, err
    assert "services: checkout-api, checkout-web" in out


def test_an_unreadable_config_from_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", "/nonexistent.yaml")
    code, out, err = run(capsys, "invoke", "AssessorFunction", "--event", str(EVENTS / "schedule.json"))
    assert code == 2 and out == ""
    assert err.startswith("deployguard invoke: $DEPLOYGUARD_CONFIG_FILE /nonexistent.yaml: cannot read: ")
