from __future__ import annotations

from pathlib import Path

import pytest

from deployguard.config import DeployGuardConfig, load_config, parse_config
from deployguard.exceptions import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_services_inherit_defaults() -> None:
    config = load_config(REPO_ROOT / "examples" / "deployguard.yaml")
    checkout = config.service("checkout-api")
    assert checkout.canary.steps == [10, 25, 50]
    assert checkout.canary.step_duration_seconds == 180  # from defaults, not the built-in 300
    assert config.service("unknown-service") is config.defaults


def test_env_interpolation_with_default_and_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DG_TEST_ENV", "staging")
    text = "environment: ${DG_TEST_ENV}\nservices:\n  a:\n    alias: ${DG_ALIAS_UNSET:-blue}\n"
    config = parse_config(text, "inline.yaml")
    assert config.environment == "staging"
    assert config.services["a"].alias == "blue"


def test_missing_env_var_names_file_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DG_NOT_SET", raising=False)
    with pytest.raises(ConfigError) as err:
        parse_config("services:\n  a:\n    alias: ${DG_NOT_SET}\n", "conf.yaml")
    assert err.value.source == "conf.yaml"
    assert err.value.field == "services.a.alias"
    assert "DG_NOT_SET" in str(err.value)


def test_invalid_value_names_the_field_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("services:\n  a:\n    canary:\n      steps: [10, 5]\n", "conf.yaml")
    assert err.value.field is not None and err.value.field.startswith("services.a.canary")
    assert "steps.1" in str(err.value)


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("services:\n  a:\n    canary:\n      stepz: [10]\n", "conf.yaml")
    assert err.value.field == "services.a.canary.stepz"


def test_bad_yaml_and_json_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.json"):
        load_config(bad)
    with pytest.raises(ConfigError, match="top level"):
        parse_config("- a\n- b\n", "list.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_defaults_without_any_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEPLOYGUARD_CONFIG_FILE", raising=False)
    monkeypatch.delenv("DEPLOYGUARD_CONFIG_PARAMETER", raising=False)
    assert load_config() == DeployGuardConfig()


def test_the_judge_spreads_its_budget_over_the_canary_plans_run() -> None:
    """Unless judge.horizon_periods is given, a service's judge is set for its canary's planned run
    (every step baked, in assessment periods); derived, not given, so a copy with another plan or a
    replay of a recording can set its own."""
    text = (
        "defaults:\n  canary:\n    steps: [10, 50]\n    step_duration_seconds: 300\n"
        "services:\n  fixed:\n    judge:\n      horizon_periods: 60\n"
        "  slow:\n    canary:\n      assessment_interval_seconds: 120\n"
    )
    config = parse_config(text, "inline.yaml")
    assert config.defaults.judge.horizon_periods == 2 * 300 // 60 == 10
    assert config.services["fixed"].judge.horizon_periods == 60  # as given
    assert config.services["slow"].judge.horizon_periods == 2 * 300 // 120 == 5
    assert DeployGuardConfig().defaults.judge.horizon_periods == 3 * 300 // 60
    assert "horizon_periods" not in config.defaults.judge.model_fields_set
    assert "horizon_periods" in config.services["fixed"].judge.model_fields_set


def test_a_replay_with_a_whole_configuration_takes_the_recordings_length(tmp_path: Path) -> None:
    from deployguard.analysis.scenario import Scenario
    from deployguard_local.replay import load_settings, run_settings

    scenario = Scenario.model_validate(
        {
            "format": "deployguard-scenario/1", "name": "short", "intervals": 12, "canary_weight": 0.1,
            "metrics": [{"id": "invocations", "name": "Invocations", "baseline": [900.0] * 12, "canary": [100.0] * 12}],
        }
    )  # fmt: skip
    whole = tmp_path / "whole.yaml"
    whole.write_text("defaults:\n  canary:\n    steps: [10, 50]\n", encoding="utf-8")
    assert run_settings(scenario, load_settings(whole)).horizon_periods == 12
    given = tmp_path / "given.yaml"
    given.write_text("judge:\n  horizon_periods: 90\n", encoding="utf-8")
    assert run_settings(scenario, load_settings(given)).horizon_periods == 90
