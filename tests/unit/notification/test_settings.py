from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from notif_support import make_event

from deployguard.config import load_config
from deployguard.exceptions import ConfigError
from deployguard.models import EventType, Severity
from deployguard.notification.settings import (
    NotificationSettings,
    parse_notification_settings,
)

EXAMPLE = """
notifications:
  allowed_hosts: [hooks.slack.com, "*.webhook.office.com", events.pagerduty.com, hooks.example.com]
  channels:
    ops-slack: {type: slack, url_parameter: /deployguard/slack/ops}
    dev-slack: {type: slack, url_secret: deployguard/slack#dev_url}
    checkout-slack: {type: slack, url_parameter: /deployguard/slack/checkout}
    ops-teams: {type: teams, url_parameter: /deployguard/teams/ops}
    ops-pagerduty: {type: pagerduty, routing_key_secret: deployguard/pagerduty}
    audit-webhook: {type: webhook, url_parameter: /deployguard/webhook/url, signing_key_secret: deployguard/hmac}
    ops-email: {type: email, topic_arn: "arn:aws:sns:us-east-1:123456789012:deployguard-ops-email"}
    ops-sms: {type: sms, topic_arn: "arn:aws:sns:us-east-1:123456789012:deployguard-ops-sms"}
  roles:
    ops: {channels: [ops-slack, ops-teams, ops-pagerduty, ops-email, ops-sms]}
    dev: {channels: [dev-slack, ops-teams]}
  routes:
    - name: ops-failures-and-rollbacks
      roles: [ops]
      event_types: [deployment.failed, "rollback.*", validation.failed, deployment.completed]
      environments: [production]
    - name: dev-everything-on-slack
      roles: [dev]
      channel_kinds: [slack]
    - name: audit
      channels: [audit-webhook]
      min_severity: warning
  service_overrides:
    checkout:
      replace: {dev-slack: checkout-slack}
  noise:
    cooldown_seconds: 600
    cooldown_overrides: {deployment.long_running: 1800}
"""


def _settings() -> NotificationSettings:
    return parse_notification_settings(yaml.safe_load(EXAMPLE)["notifications"], "example.yaml")


def test_defaults_construct_without_arguments() -> None:
    settings = NotificationSettings()
    assert settings.enabled and settings.channels == {} and "hooks.slack.com" in settings.allowed_hosts


def test_role_based_routing_ops_get_failures_everywhere_dev_get_everything_on_slack() -> None:
    settings = _settings()
    failed = make_event(EventType.DEPLOYMENT_FAILED, Severity.ERROR, service="payments")
    assert settings.route_channels(failed) == [
        "ops-slack",
        "ops-teams",
        "ops-pagerduty",
        "ops-email",
        "ops-sms",
        "dev-slack",
        "audit-webhook",
    ]
    started = make_event(EventType.DEPLOYMENT_STARTED, Severity.INFO, service="payments")
    assert settings.route_channels(started) == ["dev-slack"]  # teams dropped by channel_kinds: [slack]
    staging = make_event(EventType.ROLLBACK_INITIATED, Severity.WARNING, service="payments", environment="staging")
    assert settings.route_channels(staging) == ["dev-slack", "audit-webhook"]


def test_per_service_override_replaces_a_channel() -> None:
    settings = _settings()
    started = make_event(EventType.CANARY_STARTED, Severity.INFO, service="checkout")
    assert settings.route_channels(started) == ["checkout-slack"]


def test_cooldown_override_by_event_type() -> None:
    settings = _settings()
    assert settings.cooldown_seconds(EventType.DEPLOYMENT_LONG_RUNNING) == 1800
    assert settings.cooldown_seconds(EventType.ALERT) == 600


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"routes": [{"channels": ["nope"]}]}, "notifications", "routes.0.channels.0: unknown channel 'nope'"),
        ({"routes": [{"roles": ["qa"], "channels": []}]}, "notifications", "routes.0.roles.0: unknown role 'qa'"),
        (
            {"channels": {"s": {"type": "slack", "url_parameter": "/a", "url_secret": "b"}}},
            "notifications.channels.s.slack",
            "set only one of url, url_parameter, url_secret",
        ),
        ({"channels": {"s": {"type": "slack"}}}, "notifications.channels.s.slack", "url_parameter"),
        (
            {"routes": [{"channels": [], "roles": [], "event_types": ["deploy.*"]}]},
            "notifications.routes.0.event_types",
            "matches no event type",
        ),
        ({"channels": {"x": {"type": "carrier-pigeon"}}}, "notifications.channels.x", "does not match any"),
    ],
)
def test_errors_name_the_field(change: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_notification_settings(change, "deployguard.yaml")
    assert caught.value.source == "deployguard.yaml"
    assert caught.value.field == field
    assert text in str(caught.value)


def test_a_rate_limit_on_pagerduty_is_ignored_with_a_warning_not_refused() -> None:
    """A page or resolve held back for a digest PagerDuty does not have would be lost: PagerDuty is never rate
    limited. A configuration stored before (which set one) still loads, so no function stops on it; validate warns."""
    settings = parse_notification_settings(
        {"channels": {"pd": {"type": "pagerduty", "routing_key": "k", "rate_limit": {"max_messages": 5}}}},
        "deployguard.yaml",
    )
    assert settings.rate_limit("pd") is None
    [warning] = settings.ignored_settings()
    assert warning.startswith("notifications.channels.pd.rate_limit: ignored, a pagerduty channel is never rate")


def test_load_reads_the_notifications_key_of_yaml_and_json(tmp_path: Path) -> None:
    path = tmp_path / "deployguard.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert set(load_config(path).notifications.channels) >= {"ops-slack", "ops-sms"}
    as_json = tmp_path / "deployguard.json"
    as_json.write_text('{"environment": "x"}', encoding="utf-8")
    assert load_config(as_json).notifications.channels == {}


def test_load_errors_name_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("notifications:\n  noise: {cooldown_seconds: -1}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path) and caught.value.field == "notifications.noise.cooldown_seconds"
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("notifications: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_alerts_and_pages_name_their_targets() -> None:
    settings = _settings()
    page = make_event(
        EventType.ALERT,
        Severity.ERROR,
        service="payments",
        environment="staging",
        details={"kind": "page", "routes": ["ops", "audit", "ops-email", "nobody"]},
    )
    channels = settings.route_channels(page)
    assert channels[:2] == ["dev-slack", "audit-webhook"]  # matched by routes, then the named ones
    assert set(channels) == {
        "dev-slack",
        "ops-teams",
        "audit-webhook",
        "ops-slack",
        "ops-pagerduty",
        "ops-email",
        "ops-sms",
    }
    assert settings.unknown_targets(page) == ["nobody"]


def test_load_interpolates_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_SLACK_URL", "http://127.0.0.1:9999/services/x")
    monkeypatch.delenv("MISSING_VAR", raising=False)
    path = tmp_path / "dg.yaml"
    path.write_text(
        "notifications:\n  channels:\n    s: {type: slack, url: '${DEMO_SLACK_URL}'}\n"
        "    t: {type: teams, url_parameter: '${TEAMS_PARAM:-/deployguard/teams}'}\n",
        encoding="utf-8",
    )
    settings = load_config(path).notifications
    assert settings.channels["s"].url == "http://127.0.0.1:9999/services/x"  # type: ignore[union-attr]
    assert settings.channels["t"].url_parameter == "/deployguard/teams"  # type: ignore[union-attr]
    path.write_text("notifications:\n  channels:\n    s: {type: slack, url: '${MISSING_VAR}'}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == "notifications.channels.s.url" and "MISSING_VAR" in str(caught.value)
