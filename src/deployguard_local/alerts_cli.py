"""``deployguard alerts fields``: which rule fields each service's metrics feed, and which alert
rules can never fire on them (their fields stay unknown: no metric feeds them).

    deployguard alerts fields [--config FILE] [--service NAME] [--json]

Exit status 0 when every enabled rule can fire for every service, 1 when some cannot (a
configuration check for CI), 2 on a configuration error or a service it does not name.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from deployguard.alerts.fields import field_sources, rule_coverage
from deployguard.config import DeployGuardConfig, load_config
from deployguard.exceptions import DeployGuardError
from deployguard_local.commands import debug, invoke, new_app


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
    """Each service's fields and rules (``only``: that service; one the configuration does not name is an error)."""
    if only and only not in config.services:
        known = ", ".join(sorted(config.services))
        raise DeployGuardError(
            f"--service {only}: not a service of the configuration "
            + (f"(its services: {known})" if known else "(it names none: leave --service out for the defaults)")
        )
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


app = new_app("alerts", "What the alert rules can see: the fields each metric feeds.", no_args_is_help=True)


@app.callback()
def alerts() -> None:
    """What the alert rules can see: the fields each service's metrics feed."""


@app.command("fields")
def fields(
    config: Annotated[
        str | None, typer.Option(help="configuration file (default: $DEPLOYGUARD_CONFIG_FILE or built-in)")
    ] = None,
    service: Annotated[str | None, typer.Option(help="only this service")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Rule fields each service's metrics feed, and rules that cannot fire; exit 1 if some cannot."""
    try:
        result = report(config, service)
    except DeployGuardError as exc:
        if debug():
            raise
        print(f"deployguard alerts: {exc}", file=sys.stderr)
        raise typer.Exit(2) from exc
    blocked = any(r["status"] == "cannot_fire" for s in result.values() for r in s["rules"].values())
    if as_json:
        print(json.dumps(result, indent=2))
        raise typer.Exit(1 if blocked else 0)
    for name, data in result.items():
        print(f"{name}:")
        for field_name, how in data["fields"].items():
            print(f"  {field_name:<24} <- {how}")
        for rule in data["rules"].values():
            if rule["status"] != "ok":
                print(f"  ! {rule['message']}")
    raise typer.Exit(1 if blocked else 0)


def main(argv: list[str]) -> int:
    return invoke(app, "deployguard alerts", argv)
