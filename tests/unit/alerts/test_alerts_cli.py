"""``deployguard alerts fields``: the fields each metric feeds, and the rules that cannot fire."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployguard_local.cli import main

ROOT = Path(__file__).resolve().parents[3]

SHOP = """
services:
  shop:
    function_name: shop
    judge:
      metrics:
        - {id: invocations, name: Invocations, stat: Sum}
        - {id: errors, name: Errors, stat: Sum}
        - {id: p99, name: Duration, stat: p99, unit: Milliseconds}
        - {id: cpu, namespace: Shop, name: CPUUtilization, stat: Average, metric_type: infrastructure}
        - {id: mem, namespace: Shop, name: MemoryUtilization, stat: Average, metric_type: infrastructure}
        - {id: paid, namespace: Shop, name: Conversions, kind: rate_count, relative_to: invocations,
           direction: decrease_is_bad, metric_type: business}
        - {id: blocked, namespace: Shop, name: SecurityViolations, stat: Sum, metric_type: security}
"""


def test_the_lambda_defaults_leave_three_rules_unable_to_fire(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["alerts", "fields", "--config", str(ROOT / "examples" / "deployguard.yaml"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    lambda_rules = report["checkout-api"]["rules"]
    assert lambda_rules["system-overload"]["status"] == "cannot_fire"
    assert lambda_rules["high-error-rate"]["status"] == "ok"
    assert report["checkout-api"]["fields"]["error_rate"] == "errors / invocations"
    assert report["checkout-web"]["fields"]["response_time_p99"] == "median of latency_p99 (seconds -> ms)"


def test_custom_metrics_let_every_rule_fire(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "shop.yaml"
    config.write_text(SHOP, encoding="utf-8")
    code = main(["alerts", "fields", "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "cpu_utilization          <- median of cpu" in out and "never fires" not in out


def test_a_bad_configuration_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("alerting:\n  rules:\n    - {name: x, expression: 'cpu > 5'}\n", encoding="utf-8")
    assert main(["alerts", "fields", "--config", str(config)]) == 2
    assert "alerting" in capsys.readouterr().err


def test_config_validate_warns_of_rules_that_cannot_fire(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["config", "validate", str(ROOT / "examples" / "deployguard.yaml")])
    out = capsys.readouterr().out
    assert code == 0, out  # a warning, not a problem
    assert "warning service checkout-api: rule system-overload: never fires: no metric feeds cpu_utilization" in out


def test_an_unknown_service_is_named_with_the_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "examples" / "deployguard.yaml")
    assert main(["alerts", "fields", "--config", config, "--service", "nosuch"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == (
        "deployguard alerts: --service nosuch: not a service of the configuration "
        "(its services: checkout-api, checkout-web, payments-api)"
    )
    assert main(["alerts", "fields", "--config", config, "--service", "checkout-web", "--json"]) == 1
    assert list(json.loads(capsys.readouterr().out)) == ["checkout-web"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("environment: production\n", encoding="utf-8")
    assert main(["alerts", "fields", "--config", str(empty), "--service", "shop"]) == 2
    assert "it names none" in capsys.readouterr().err
