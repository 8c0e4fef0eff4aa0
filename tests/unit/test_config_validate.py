"""`deployguard config validate|schema`: every problem at once, with file, line and field; no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployguard.config import check_config, load_config
from deployguard.exceptions import ConfigError
from deployguard_local import cli
from deployguard_local.config_cli import config_schema

REPO = Path(__file__).resolve().parents[2]

FIVE_MISTAKES = """\
environment: prod
retention_days: 0
defaults:
  judge:
    confidnce: 0.99
  canary:
    steps: [10, 5]
services:
  api:
    function_name: ${DG_TEST_UNSET_VARIABLE}
    alais: live
"""


@pytest.fixture
def five_mistakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DG_TEST_UNSET_VARIABLE", raising=False)
    path = tmp_path / "conf.yaml"
    path.write_text(FIVE_MISTAKES, encoding="utf-8")
    return path


def test_five_mistakes_give_five_errors_with_line_and_field(five_mistakes: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["config", "validate", str(five_mistakes)]) == 1
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith(str(five_mistakes))]
    assert len(lines) == 5, out
    expected = {
        "retention_days": (2, "greater than or equal to 1"),
        "defaults.judge.confidnce": (5, "did you mean 'confidence'"),
        "defaults.canary.steps.1": (7, "weights must increase"),
        "services.api.function_name": (10, "DG_TEST_UNSET_VARIABLE is not set"),
        "services.api.alais": (11, "did you mean 'alias'"),
    }
    for field, (line, text) in expected.items():
        assert any(f"{five_mistakes}:{line}: {field}: " in row and text in row for row in lines), (field, out)
    assert "Traceback" not in out + err
    assert "5 problems" in out


def test_json_output_lists_every_problem(five_mistakes: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["config", "validate", "--json", str(five_mistakes)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report[0]["valid"] is False
    assert {p["line"] for p in report[0]["problems"]} == {2, 5, 7, 10, 11}


def test_the_examples_are_valid(capsys: pytest.CaptureFixture[str]):
    assert cli.main(["config", "validate", str(REPO / "examples" / "deployguard.yaml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_a_setting_that_never_applies_is_a_warning_not_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    """A rate limit on a PagerDuty channel was accepted before it was ignored: a stored configuration with one
    still loads (no function stops on it), and validate says it is ignored, naming the field."""
    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")  # a literal routing key: the router accepts it in local mode only
    path = tmp_path / "deployguard.yaml"
    path.write_text(
        "notifications:\n  channels:\n    pd: {type: pagerduty, routing_key: k, rate_limit: {max_messages: 5}}\n",
        encoding="utf-8",
    )
    assert load_config(str(path)).notifications.rate_limit("pd") is None
    assert cli.main(["config", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning notifications.channels.pd.rate_limit: ignored" in out
    assert cli.main(["config", "validate", "--json", str(path)]) == 0
    [report] = json.loads(capsys.readouterr().out)
    ignored = [w for w in report["warnings"] if w.startswith("notifications.channels.pd.rate_limit: ignored")]
    assert report["valid"] and len(ignored) == 1


def test_unreadable_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["config", "validate", str(tmp_path / "missing.yaml")]) == 2
    _, err = capsys.readouterr()
    assert "cannot read" in err and "Traceback" not in err


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("defaults:\n  canary: [1, 2\n", encoding="utf-8")
    config, problems = check_config(path.read_text(), str(path))
    assert config is None and len(problems) == 1
    assert problems[0].line is not None and "not valid YAML" in problems[0].message


def test_the_functions_loader_refuses_what_validate_refuses(five_mistakes: Path):
    """One loader: the functions (load_config), invoke and replay refuse the same file, naming how many more."""
    with pytest.raises(ConfigError) as raised:
        load_config(five_mistakes)
    assert "4 more" in str(raised.value) and "deployguard config validate" in str(raised.value)


def test_committed_schema_is_current():
    committed = json.loads((REPO / "docs" / "deployguard-config.schema.json").read_text(encoding="utf-8"))
    assert committed == config_schema(), "regenerate: deployguard config schema -o docs/deployguard-config.schema.json"


def test_version(capsys: pytest.CaptureFixture[str]):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("deployguard ")
