"""``security-signals`` is traffic-relative: a busy healthy release (20,000 requests a minute, identical
versions failing 0.4% of logins) never fires it, while a real surge of failed logins on the new version
still does. The real path: the Shop metrics in the embedded CloudWatch, the canary state machine, the
alert engine, the local webhook receiver."""

from __future__ import annotations

from alert_rules_support import ShopBehaviour, alert_deliveries, run_canary, shop_stack

from deployguard.incidents.repository import IncidentRepository
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.traffic import VersionBehaviour


def _alerts(deployment_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for alert in IncidentRepository(DeploymentRepository()).alerts(deployment_id):
        out.setdefault(alert.rule, []).append(alert.message)
    return out


def test_busy_healthy_release_raises_no_security_alert_and_a_surge_does() -> None:
    with shop_stack(["busy", "surge"]) as (aws, receivers):
        run_canary(aws, "busy", VersionBehaviour(), ShopBehaviour(), rpm=20000)
        run_canary(aws, "surge", VersionBehaviour(), ShopBehaviour(failed_login_rate=0.05), rpm=3000)

        fields = [a.details.get("fields", {}) for a in DeploymentRepository().assessments("dep-busy")]
        assert any((f.get("canary") or {}).get("failed_authentications", 0) > 50 for f in fields)  # the old floor
        assert "security-signals" not in _alerts("dep-busy")
        assert "security-signals" not in alert_deliveries(receivers).get("dep-busy", set())

        assert "security-signals" in _alerts("dep-surge")
        assert "security-signals" in alert_deliveries(receivers)["dep-surge"]


def test_a_surge_of_failed_logins_from_none_fires() -> None:
    """A stable version that never fails a login: the new version's failed logins are a surge beyond any
    ratio (a baseline of zero is known, not missing), once past the floor of 20."""
    with shop_stack(["fromnone"]) as (aws, receivers):
        run_canary(aws, "fromnone", VersionBehaviour(), ShopBehaviour(failed_login_rate=0.05), rpm=3000,
                   stable_shop=ShopBehaviour(failed_login_rate=0.0))  # fmt: skip
        fields = [a.details.get("fields", {}) for a in DeploymentRepository().assessments("dep-fromnone")]
        assert any((f.get("baseline") or {}).get("failed_authentication_rate") == 0 for f in fields)
        assert "security-signals" in _alerts("dep-fromnone")
        assert "security-signals" in alert_deliveries(receivers)["dep-fromnone"]
