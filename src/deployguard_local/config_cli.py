"""``deployguard config validate|schema``: check a configuration file before it is deployed.

    deployguard config validate FILE...   every problem at once: file, line, field, what is expected
    deployguard config schema [-o FILE]   the JSON Schema of the configuration (editors complete and check with it)

``validate`` uses the same loader as the functions, ``invoke`` and ``replay``, and runs the
notification router's start-up check of its channels too (in this shell's local mode,
``DEPLOYGUARD_LOCAL``), so a file it accepts is a file they accept.
Exit codes: 0 valid, 1 problems found, 2 a file cannot be read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from deployguard.config import ConfigProblem, DeployGuardConfig, check_config, default_route_warnings, route_problems
from deployguard.exceptions import ConfigError
from deployguard.notification.router import local_mode_from_env
from deployguard.notification.secrets import SecretResolver
from deployguard.notification.settings import PagerDutyChannel
from deployguard.notification.urlsafety import validate_outbound_url
from deployguard_local.alerts_cli import coverage_warnings
from deployguard_local.commands import invoke, new_app

SCHEMA_ID = "https://deployguard.dev/schema/deployguard-config.json"

app = new_app("config", "Check a DeployGuard configuration file, or write its JSON Schema.", no_args_is_help=True)


def config_schema() -> dict[str, object]:
    """The JSON Schema of a DeployGuard configuration file (unknown keys refused, as the loader does)."""
    schema = DeployGuardConfig.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _warnings(config: DeployGuardConfig) -> list[str]:
    return coverage_warnings(config) + config.notifications.ignored_settings() + default_route_warnings(config)


def router_problems(config: DeployGuardConfig, source: str) -> list[ConfigProblem]:
    """The notification router's start-up check of every channel (``NotificationRouter.check``), every
    problem at once: a literal secret outside local mode, a literal URL it would refuse."""
    settings = config.notifications
    local_mode = local_mode_from_env()
    secrets = SecretResolver(local_mode=local_mode)
    problems = []

    def refused(check: Any, *args: Any, **kwargs: Any) -> None:
        try:
            check(*args, **kwargs)
        except ConfigError as exc:
            message = str(exc).removeprefix(f"field {exc.field}: ") if exc.field else str(exc)
            problems.append(ConfigProblem(source=source, field=exc.field, message=message))

    for name, channel in settings.channels.items():
        where = f"notifications.channels.{name}"
        for secret in channel.secret_sources():
            refused(secrets.check_allowed, secret, where)
            if secret.field == "url" and secret.value is not None:
                refused(validate_outbound_url, secret.value, settings.allowed_hosts, local_mode, field=f"{where}.url")
        if isinstance(channel, PagerDutyChannel):
            refused(validate_outbound_url, channel.url, settings.allowed_hosts, local_mode, field=f"{where}.url")
    return problems


@app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(help="configuration files (YAML or JSON) to check")],
    as_json: Annotated[bool, typer.Option("--json", help="print the problems as JSON, one object per file")] = False,
) -> None:
    """Report every problem of each file at once, with its line and field; exit 1 if any."""
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    found = 0
    unreadable = False
    reports = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            err.print(f"deployguard config validate: {file}: cannot read: {exc.strerror}")
            unreadable = True
            continue
        config, problems = check_config(text, str(file), checks=[route_problems, router_problems])
        found += len(problems)
        if as_json:
            reports.append(
                {
                    "file": str(file),
                    "valid": not problems,
                    "services": sorted(config.services) if config else None,
                    "warnings": _warnings(config) if config and not problems else [],
                    "problems": [{"line": p.line, "field": p.field, "message": p.message} for p in problems],
                }
            )
            continue
        if not problems and config is not None:
            names = ", ".join(sorted(config.services)) or "none (defaults only)"
            out.print(f"[green]ok[/green] {file}: valid; services: {names}")
            for warning in _warnings(config):  # alert rules whose fields no metric feeds, settings ignored
                out.print(f"[yellow]warning[/yellow] {warning}")
            continue
        for problem in problems:
            out.print(str(problem), markup=False)
        out.print(f"[red]{len(problems)} problem{'s' if len(problems) != 1 else ''}[/red] in {file}")
    if as_json:
        out.print_json(json.dumps(reports))
    raise typer.Exit(2 if unreadable else 1 if found else 0)


@app.command("schema")
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the schema to this file instead of printing it")
    ] = None,
) -> None:
    """Write the JSON Schema of the configuration file (reference it from your YAML for completion)."""
    text = json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror}", source=str(output)) from exc
    typer.echo(f"wrote {output}")


def main(argv: list[str]) -> int:
    try:
        return invoke(app, "deployguard config", argv)
    except ConfigError as exc:
        typer.echo(f"deployguard config: {exc}", err=True)
        return 2
