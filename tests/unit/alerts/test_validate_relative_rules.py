"""``deployguard config validate`` refuses rules that can never fire: a relative change written without
``%`` (a bare number would be read as a ratio: ``increase > 500`` is +50,000%), and a change ``vs
baseline`` of a field that never has a baseline (a deployment's or an assessment's own value, such as
``health_score``). Each error names the rule and the field; a correct rule beside them is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployguard_local import cli

CONFIG = """\
environment: production
services:
  checkout-api: {environment: production, function_name: checkout-api}
alerting:
  custom_fields: {checkout_failures: count}
  rules:
    - name: checkout-failures
      expression: "checkout_failures > 20 or checkout_failures increase > 200% vs baseline"
      severity: critical
    - {name: p99-ms, expression: "response_time_p99 increase > 500 vs baseline", severity: warning}
    - {name: hs-base, expression: "health_score decrease > 10% vs baseline", severity: warning}
    - {name: cold, expression: "cold_starts > 10", severity: warning}
"""


def test_validate_names_each_rule_that_can_never_fire(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deployguard.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    assert cli.main(["config", "validate", str(path)]) == 1
    out, err = capsys.readouterr()
    text = out + err
    p99 = [line for line in text.splitlines() if "p99-ms" in line]
    assert p99 and "response_time_p99" in p99[0] and "500%" in p99[0], text
    health = [line for line in text.splitlines() if "hs-base" in line]
    assert health and "health_score" in health[0] and "no baseline" in health[0], text
    assert "checkout-failures" not in text and "'cold'" not in text  # the rules that can fire are accepted


def test_the_same_rules_written_right_are_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    right = CONFIG.replace("increase > 500 vs", "increase > 500% vs").replace(
        "health_score decrease > 10% vs baseline", "health_score < 75"
    )
    path = tmp_path / "deployguard.yaml"
    path.write_text(right, encoding="utf-8")
    assert cli.main(["config", "validate", str(path)]) == 0, capsys.readouterr()
