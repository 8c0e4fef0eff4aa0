"""``deployguard alerts fields``: which rule fields each service's metrics feed, and which alert
rules can never fire on them (their fields stay unknown: no metric feeds them).

    deployguard alerts fields [--config FILE] [--service NAME] [--json]

Exit status 0 when every enabled rule can fire for every service, 1 when some cannot (a
configuration check for CI), 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from deployguard.alerts.fields import field_sources, rule_coverage
from deployguard.config import DeployGuardConfig, load_config
from deployguard.exceptions import DeployGuardError


def report(config_file: str | None, only: str | None = None) -> dict[str, Any]:
    return report_of(load_config(config_file), only)


def coverage_warnings(config: DeployGuardConfig) -> list[str]:
    """One line per service and rule that can never fire (for ``deployguard config validate``)."""
    return [
        f"service {name}: rule {rule['message']}"
        for name, data in report_of(config).items()
        for rule in data["rules"].values()
        if rule["status"] == "cannot_fire"
    ]


def report_of(config: DeployGuardConfig, only: str | None = None) -> dict[str, Any]:
    alerting = config.alerting
    names = [only] if only else sorted(config.services) or ["(defaults)"]
    out: dict[str, Any] = {}
    for name in names:
        service = config.services.get(name) or config.defaults
        metrics = service.judge.metrics
        rules = [r for r in alerting.effective_rules if r.applies_to(service.environment)]
        coverage = rule_coverage(rules, metrics, alerting.custom_fields)
        out[name] = {
            "fields": {f: s.description for f, s in sorted(field_sources(metrics).items())},
            "rules": {c.rule: {"status": c.status, "unknown_fields": list(c.unknown_fields), "message": c.message}
                      for c in coverage},
        }  # fmt: skip
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="deployguard alerts", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fields = sub.add_parser("fields", help="rule fields each service's metrics feed; rules that cannot fire")
    fields.add_argument("--config", help="configuration file (default: DEPLOYGUARD_CONFIG_FILE or built-in)")
    fields.add_argument("--service", help="only this service")
    fields.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = report(args.config, args.service)
    except DeployGuardError as exc:
        print(f"deployguard alerts: {exc}", file=sys.stderr)
        return 2
    blocked = any(r["status"] == "cannot_fire" for s in result.values() for r in s["rules"].values())
    if args.json:
        print(json.dumps(result, indent=2))
        return 1 if blocked else 0
    for name, data in result.items():
        print(f"{name}:")
        for field_name, how in data["fields"].items():
            print(f"  {field_name:<24} <- {how}")
        for rule in data["rules"].values():
            if rule["status"] != "ok":
                print(f"  ! {rule['message']}")
    return 1 if blocked else 0
