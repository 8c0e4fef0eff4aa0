"""A guarded function with application, infrastructure, business and security metrics, run through
the canary state machine on the embedded AWS with notifications to local receivers on 127.0.0.1."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from deployguard.analysis.settings import default_metrics
from deployguard.aws.cloudwatch import put_metric_values
from deployguard.models import LambdaTarget
from deployguard_local.emulator import REPO_ROOT, EmbeddedAws, _environment, sample_handler
from deployguard_local.receivers import LocalReceivers, local_receivers
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

NAMESPACE = "Shop"
SHOP_DIMENSIONS = {"FunctionName": "{function}", "Version": "{version}"}

# ids on purpose unlike the rule fields: fields are filled from what a metric is, not its id
SHOP_METRICS: list[dict[str, Any]] = [
    {"id": "cpu", "name": "CPUUtilization", "stat": "Average", "unit": "Percent", "metric_type": "infrastructure"},
    {"id": "mem", "name": "MemoryUtilization", "stat": "Average", "unit": "Percent", "metric_type": "infrastructure"},
    {"id": "paid", "name": "Conversions", "stat": "Sum", "kind": "rate_count", "relative_to": "invocations",
     "direction": "decrease_is_bad", "metric_type": "business"},
    {"id": "takings", "name": "Revenue", "stat": "Sum", "direction": "decrease_is_bad", "metric_type": "business"},
    {"id": "logins_failed", "name": "FailedLogins", "stat": "Sum", "kind": "rate_count", "relative_to": "invocations",
     "metric_type": "security"},
    {"id": "waf_blocks", "name": "SecurityViolations", "stat": "Sum", "metric_type": "security"},
]  # fmt: skip


@dataclass
class ShopBehaviour:
    """The custom metrics of one version (per minute)."""

    cpu: float = 45.0
    memory: float = 60.0
    conversion_rate: float = 0.05
    revenue_per_conversion: float = 40.0
    failed_login_rate: float = 0.004
    violations: int = 0


@dataclass
class ShopTrafficSource(LambdaTrafficSource):
    """LambdaTrafficSource that also publishes the Shop metrics of each version."""

    shop: dict[str, ShopBehaviour] = field(default_factory=dict)

    def _put(self, version: str, at: datetime, requests: int, errors: int, p50: float, p99: float) -> None:
        super()._put(version, at, requests, errors, p50, p99)
        b = self.shop.get(version, ShopBehaviour())
        dims = {"FunctionName": self.function_name, "Version": version}
        stamp = at + timedelta(seconds=30)
        conversions = self._binomial(requests, b.conversion_rate)
        values = {
            "CPUUtilization": (b.cpu * math.exp(self._rng.gauss(0.0, 0.02)), "Percent"),
            "MemoryUtilization": (b.memory * math.exp(self._rng.gauss(0.0, 0.01)), "Percent"),
            "Conversions": (conversions, "Count"),
            "Revenue": (conversions * b.revenue_per_conversion, "None"),
            "FailedLogins": (self._binomial(requests, b.failed_login_rate), "Count"),
            "SecurityViolations": (b.violations, "Count"),
        }
        for name, (value, unit) in values.items():
            put_metric_values(NAMESPACE, name, dims, stamp, unit, value=float(value))

    def _binomial(self, n: int, p: float) -> int:
        if n > 200:
            return max(0, round(self._rng.gauss(n * p, math.sqrt(n * p * (1 - p)))))
        return sum(1 for _ in range(n) if self._rng.random() < p)


def service_config(name: str) -> dict[str, Any]:
    metrics = [m.model_dump(mode="json", exclude_defaults=True) for m in default_metrics()]
    metrics += [{**m, "namespace": NAMESPACE, "dimensions": SHOP_DIMENSIONS} for m in SHOP_METRICS]
    return {
        "environment": "production",
        "function_name": name,
        "canary": {"steps": [50], "step_duration_seconds": 180, "assessment_interval_seconds": 60},
        "judge": {"metrics": metrics, "max_inconclusive_periods": 2},
    }


@contextmanager
def shop_stack(
    services: list[str], others: dict[str, Any] | None = None
) -> Iterator[tuple[EmbeddedAws, LocalReceivers]]:
    """The embedded AWS configured like the demo (alert routes to local receivers) for these
    services with the Shop metrics, and ``others`` as given."""
    config = yaml.safe_load((REPO_ROOT / "examples" / "demo.yaml").read_text(encoding="utf-8"))
    config["services"] = {name: service_config(name) for name in services} | (others or {})
    with tempfile.TemporaryDirectory() as tmp, local_receivers(echo=None) as receivers:
        path = Path(tmp) / "deployguard.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {f"DEMO_{kind.upper()}_URL": url for kind, url in receivers.urls.items()}
        with _environment(env), EmbeddedAws(config_file=path) as aws:
            yield aws, receivers


def run_canary(
    aws: EmbeddedAws,
    name: str,
    canary: VersionBehaviour,
    shop: ShopBehaviour,
    rpm: float = 3000,
    stable_shop: ShopBehaviour | None = None,
) -> tuple[dict[str, Any], LambdaTarget]:
    """A canary of ``name`` whose new version behaves as given from its first minute (the stable version's
    custom metrics: ``stable_shop``, the defaults when not given)."""
    versions = aws.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    traffic = ShopTrafficSource(
        name, "live", rpm, {versions[0]: VersionBehaviour(), versions[1]: canary}, seed=5,
        shop={versions[0]: stable_shop or ShopBehaviour(), versions[1]: shop},
    )  # fmt: skip
    assert aws.clock is not None
    aws.clock.listeners.append(traffic.on_clock)
    execution = aws.run_state_machine(
        "CanaryStateMachine",
        {"deployment": {"deployment_id": f"dep-{name}", "service": name, "version": versions[1],
                        "target": target.model_dump()}},
    )  # fmt: skip
    traffic.active = False
    aws.invoker.drain()
    return execution, target


def webhook_events(receivers: LocalReceivers) -> list[dict[str, Any]]:
    """Every event that reached the signed webhook receiver (single or in a digest)."""
    out: list[dict[str, Any]] = []
    for received in receivers.received("webhook"):
        body = received.json()
        out += [body["event"]] if body.get("type") == "event" else body.get("events", [])
    return out


def alert_deliveries(receivers: LocalReceivers) -> dict[str, set[str]]:
    """Per deployment, the rules whose alerts reached the webhook receiver."""
    out: dict[str, set[str]] = {}
    for event in webhook_events(receivers):
        details = event.get("details") or {}
        if details.get("kind") == "alert":
            out.setdefault(event["deployment_id"], set()).add(details["rule"])
    return out
