"""`deployguard config validate` refuses what the functions refuse, and lists every problem at once:
the notification router's start-up URL check, alert and escalation routes naming nothing, a canary
plan and alert rules with several mistakes (issues 1-3 of the CLI audit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployguard import config as config_module
from deployguard.config import DeployGuardConfig, check_config
from deployguard_local import cli

REPO = Path(__file__).resolve().parents[2]


def validate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    path = tmp_path / "conf.yaml"
    path.write_text(text, encoding="utf-8")
    code = cli.main(["config", "validate", *extra, str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out


PRIVATE_URL = """\
services:
  api: {function_name: api}
notifications:
  channels:
    s: {type: slack, url: "http://10.0.0.5/hook"}
"""


def test_validate_refuses_the_literal_url_the_router_refuses(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")
    code, out = validate(tmp_path, PRIVATE_URL, capsys)
    assert code == 1
    assert ":5: notifications.channels.s.url: URL http://10.0.0.5/… refused: private address" in out


def test_outside_local_mode_a_literal_url_is_refused_as_the_router_does(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DEPLOYGUARD_LOCAL", raising=False)
    text = PRIVATE_URL.replace("http://10.0.0.5/hook", "https://hooks.slack.com/services/x")
    code, out = validate(tmp_path, text, capsys)
    assert code == 1 and "a literal url is allowed only in local mode (DEPLOYGUARD_LOCAL=1)" in out
    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")
    code, out = validate(tmp_path, text, capsys)
    assert code == 0 and out.startswith("ok "), out


def test_the_functions_loader_still_leaves_local_mode_to_the_router(monkeypatch):
    # the other functions do not send notifications: the loader they share checks routes, not channels
    monkeypatch.delenv("DEPLOYGUARD_LOCAL", raising=False)
    config, problems = check_config(PRIVATE_URL, "conf.yaml")
    assert problems == [] and config is not None


MISSPELLED_ROUTES = """\
services:
  api: {function_name: api}
notifications:
  channels:
    ops-slack: {type: slack, url_parameter: /x}
  roles:
    ops: {channels: [ops-slack]}
alerting:
  rules:
    - {name: r1, expression: "error_rate > 5%", severity: critical, routes: [opps]}
  escalation:
    policies:
      emergency: {steps: [{routes: [oncall-primry], wait_seconds: 120}]}
      standard: {steps: [{routes: [ops], wait_seconds: 120}]}
"""


def test_a_route_that_names_nothing_known_is_an_error_naming_the_field(tmp_path, capsys):
    code, out = validate(tmp_path, MISSPELLED_ROUTES, capsys)
    assert code == 1
    assert ":10: alerting.rules.0.routes.0: unknown route 'opps'" in out and "did you mean 'ops'?" in out
    assert ":13: alerting.escalation.policies.emergency.steps.0.routes.0: unknown route 'oncall-primry'" in out
    assert "2 problems" in out


def test_the_functions_load_a_file_with_an_unknown_route_and_warn(caplog):
    """A function does not stop guarding every deployment for a page that would reach no one: it logs it."""
    with caplog.at_level("WARNING", logger="deployguard.config"):
        config = config_module.parse_config(MISSPELLED_ROUTES, "conf.yaml")
    assert config.alerting.rules[0].routes == ["opps"]
    warned = [r.getMessage() for r in caplog.records]
    assert any("alerting.rules.0.routes.0: unknown route 'opps'" in m for m in warned), warned


def test_default_policies_paging_undefined_roles_warn_and_the_example_stays_valid(capsys):
    assert cli.main(["config", "validate", "--json", str(REPO / "examples" / "deployguard.yaml")]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["valid"] and report["problems"] == []
    paging = [w for w in report["warnings"] if "paged by the default" in w]
    assert {w.split("'")[1] for w in paging} == {
        "oncall-primary",
        "oncall-secondary",
        "engineering-manager",
        "incident-commander",
    }
    assert any("define notifications.roles.oncall-primary" in w for w in paging)


def test_defaults_that_name_configured_roles_do_not_warn():
    roles = {r: {"channels": ["c"]} for r in ("oncall-primary", "oncall-secondary", "engineering-manager")}
    config = DeployGuardConfig.model_validate(
        {"notifications": {"channels": {"c": {"type": "slack", "url_parameter": "/x"}}, "roles": roles}}
    )
    warnings = config_module.default_route_warnings(config)
    assert len(warnings) == 1 and "'incident-commander'" in warnings[0]


def test_every_mistake_of_a_canary_plan_at_once(tmp_path, capsys):
    text = "defaults:\n  canary:\n    steps: [10, 5, 120]\n    step_duration_seconds: 10\n"
    code, out = validate(tmp_path, text, capsys)
    assert code == 1
    assert "defaults.canary.steps.1: weights must increase (10.0 then 5.0)" in out
    assert "defaults.canary.steps.2: weight 120.0 must be between 0 and 100" in out
    assert ":4: defaults.canary.step_duration_seconds: Input should be greater than or equal to 60" in out
    assert "3 problems" in out


def test_every_bad_rule_expression_and_reference_at_once(tmp_path, capsys):
    text = """\
alerting:
  rules:
    - {name: r1, expression: "error_rate >> 5", severity: critical}
    - {name: r2, expression: "nosuchfield > 5"}
  remediation:
    plans:
      - {rules: [nosuch], actions: [{action: nope, mode: auto}, {action: nope2}]}
"""
    code, out = validate(tmp_path, text, capsys)
    assert code == 1
    for fragment in (
        ":3: alerting.rules.0.expression: rule 'r1': column",
        ":4: alerting.rules.1.expression: rule 'r2': column 1: unknown field 'nosuchfield'",
        "alerting.remediation.plans.0.actions.0: unknown action 'nope'",
        "alerting.remediation.plans.0.actions.1: unknown action 'nope2'",
        "alerting.remediation.plans.0.rules: unknown rule 'nosuch'",
    ):
        assert fragment in out, (fragment, out)
    assert "5 problems" in out
