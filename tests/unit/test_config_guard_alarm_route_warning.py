"""`config validate` warns when the guard's own alarms have no route of their own (the default names an
undefined role), and stays quiet when the role exists or the routes are written."""

from __future__ import annotations

from deployguard import config as config_module
from deployguard.config import DeployGuardConfig

CHANNEL = {"c": {"type": "slack", "url_parameter": "/x"}}


def _warnings(notifications: dict) -> list[str]:
    config = DeployGuardConfig.model_validate({"notifications": notifications})
    return [w for w in config_module.default_route_warnings(config) if w.startswith("notifications.guard_alarms")]


def test_default_route_undefined_warns_and_names_the_fix():
    (warning,) = _warnings({"channels": CHANNEL})
    assert "'oncall-primary' names no notification route, role or channel" in warning
    assert "service 'deployguard'" in warning
    assert "define notifications.roles.oncall-primary or set notifications.guard_alarms.routes" in warning


def test_defined_role_written_routes_or_alarms_off_do_not_warn():
    assert _warnings({"channels": CHANNEL, "roles": {"oncall-primary": {"channels": ["c"]}}}) == []
    assert _warnings({"channels": CHANNEL, "guard_alarms": {"routes": ["c"]}}) == []
    assert _warnings({"channels": CHANNEL, "guard_alarms": {"enabled": False}}) == []


def test_a_file_without_notifications_does_not_warn():
    assert _warnings({}) == []
