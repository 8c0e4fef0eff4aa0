"""The hooks: section: checks, budgets, and the one-hour limit refused at load time naming the field."""

from __future__ import annotations

import pytest

from deployguard.config import parse_config
from deployguard.exceptions import ConfigError
from deployguard.hooks.settings import MAX_HOOK_SECONDS, CheckSettings, HookSettings


def test_defaults_are_a_smoke_test_and_a_baseline() -> None:
    settings = HookSettings()
    assert [(c.name, c.type, c.critical) for c in settings.pre_traffic] == [
        ("smoke-test", "lambda_invoke", True),
        ("baseline", "baseline", False),
    ]
    assert settings.ecs_check_hooks == ["AfterAllowTestTraffic"]
    assert settings.worst_case_seconds < MAX_HOOK_SECONDS


def test_worst_case_counts_attempts_backoff_and_waiting() -> None:
    check = CheckSettings(name="h", type="http", url="https://x.example.com", timeout_seconds=10, retries=2,
                          backoff_seconds=1, wait_until_healthy_seconds=5)  # fmt: skip
    assert check.worst_case_seconds == 3 * 15 + (1 + 2)


def test_a_validation_longer_than_the_hook_limit_is_refused_naming_the_field() -> None:
    text = (
        "services:\n  orders:\n    hooks:\n      pre_traffic:\n"
        "        - {name: quick, type: tcp, host: db.example.com, port: 5432}\n"
        "        - {name: slow, type: http, url: 'https://x.example.com', timeout_seconds: 600, retries: 5}\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "conf.yaml")
    assert err.value.field == "services.orders.hooks.pre_traffic"  # the list, with its line
    assert "pre_traffic.1" in str(err.value) and "'slow'" in str(err.value) and "one-hour" in str(err.value)
    assert "(line 4)" in str(err.value)


@pytest.mark.parametrize(
    ("check", "words"),
    [
        ("{name: h, type: http}", "url"),
        ("{name: t, type: tcp, host: db}", "host, port"),
        ("{name: a, type: alarms}", "alarm_names or alarm_prefix"),
        ("{name: x, type: carrier_pigeon}", "type"),
        ("{name: h, type: http, url: 'https://a.example.com', timeout_seconds: 0}", "timeout_seconds"),
    ],
)
def test_incomplete_checks_are_refused(check: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"defaults:\n  hooks:\n    pre_traffic:\n      - {check}\n", "conf.yaml")
    assert words in str(err.value)


def test_check_names_are_unique() -> None:
    with pytest.raises(ConfigError, match="unique"):
        parse_config(
            "defaults:\n  hooks:\n    pre_traffic:\n      - {name: a, type: alarms, alarm_prefix: x}\n"
            "      - {name: a, type: alarms, alarm_prefix: y}\n",
            "conf.yaml",
        )
