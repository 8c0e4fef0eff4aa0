"""The ``deployguard`` command: one Typer app, its command groups loaded when they run.

deployguard demo [--scenario FILE] [--quiet] [--json]    canary rollouts end to end on the embedded AWS
deployguard invoke FUNCTION --event FILE                 run one function of template.yaml with an event
deployguard replay [--json] [--config FILE] PATH...      judge recorded scenarios period by period
deployguard config validate FILE... | schema             check a configuration file, write its JSON Schema
deployguard deployments list|show|watch                  what DeployGuard decided
deployguard status ID [--wait] [--timeout S]             CI gate: exit 0 promoted, 1 rolled back, 2 held, 3 timeout
deployguard report ID [--format md|html|json] [-o FILE]  one deployment's health report
deployguard summary [--since 7d]                         what DeployGuard decided in a period
deployguard incidents list|show|ack|resolve|...          incidents, escalation, remediation approvals
deployguard notifications retry|list                     redeliver dead letters, list deliveries
deployguard control promote|abort|pause|resume|retry|skip_analysis|approve|rollback   Argo Rollouts' verbs
deployguard alerts fields                                which rule fields the metrics feed
deployguard serve --local [--port 8700]                  the operations console over the embedded AWS
deployguard bench scale [--json] [--jobs N]              the minute loop at scale on the embedded AWS
deployguard version | --version

Every command that reads or changes DeployGuard's state takes the connection options of
:mod:`deployguard_local.options`; exit codes are :data:`deployguard_local.commands.EXIT_CODES`.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from deployguard_local.commands import ERROR_EXIT, debugging, describe_error, invoke
from deployguard_local.options import EndpointUrl

# Powertools warns on every flush of a function that put no metric; locally that is noise on stderr (--verbose shows it)
EMPTY_METRICS_WARNING = r"No application metrics to publish"

# what `invoke` runs the sample events with (in events/), unless --config or $DEPLOYGUARD_CONFIG_FILE names another
SAMPLE_CONFIG = "sample-config.yaml"

# Command groups with a module of their own: name -> (module in deployguard_local, its Typer app, its entry point).
# A module is imported only when its command runs (or help lists it); its entry point keeps its exit codes.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "replay": ("replay", "app", "main"),
    "config": ("config_cli", "app", "main"),
    "deployments": ("deployments_cli", "app", "main"),
    "status": ("deployments_cli", "status_app", "status_main"),
    "report": ("report_cli", "app", "main"),
    "summary": ("summary_cli", "app", "main"),
    "incidents": ("incidents_cli", "app", "main"),
    "notifications": ("notifications_cli", "app", "main"),
    "control": ("control_cli", "app", "main"),
    "alerts": ("alerts_cli", "app", "main"),
}


class DeployGuardGroup(TyperGroup):
    """The root group: its own commands, and the command groups of :data:`SUBCOMMANDS`, imported on use."""

    def list_commands(self, ctx: Any) -> list[str]:
        own = super().list_commands(ctx)
        return [*own[:2], *SUBCOMMANDS, *own[2:]]  # demo, invoke first; then the groups; serve, bench, version

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in SUBCOMMANDS:
            module, attribute, _ = SUBCOMMANDS[cmd_name]
            typer_app = getattr(importlib.import_module(f"deployguard_local.{module}"), attribute)
            command = typer.main.get_command(typer_app)
            command.name = cmd_name
            return command
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="deployguard",
    help="Keeps bad releases out of production on AWS: canary verdicts, rollbacks, incidents, notifications.",
    cls=DeployGuardGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deployguard")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"deployguard {_version()}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="show the Python traceback of an error")] = False,
) -> None:
    """Keeps bad releases out of production on AWS: canary verdicts, rollbacks, incidents, notifications."""


@app.command("demo")
def demo(
    scenario: Annotated[
        Path | None, typer.Option(help="replay a deployguard-scenario/1 file through the system")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="print only the summary table")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print only the summary, as JSON")] = False,
) -> None:
    """Run canary rollouts end to end on the embedded AWS, and tell what happened, minute by minute."""
    from deployguard_local import demo as demo_module

    raise typer.Exit(demo_module.main(scenario, quiet=quiet, as_json=as_json))


@app.command("invoke")
def invoke_function(
    function: Annotated[str, typer.Argument(help="logical id in template.yaml, e.g. CanaryStepFunction")],
    event: Annotated[Path, typer.Option(help="event JSON file, e.g. events/schedule.json")],
    config: Annotated[
        str | None,
        typer.Option(help="DeployGuard configuration file (default: $DEPLOYGUARD_CONFIG_FILE, else the sample's, "
                     f"events/{SAMPLE_CONFIG})"),
    ] = None,
    endpoint_url: EndpointUrl = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="show all the function's logs and metrics on stderr "
                                          "(its warnings and errors show without it)")] = False,
) -> None:  # fmt: skip
    """Run one function of template.yaml with an event file; exit 1 if the function errored."""
    from deployguard_local.emulator import EmbeddedAws

    if verbose:  # main() silences it for every command
        warnings.filterwarnings("default", message=EMPTY_METRICS_WARNING, category=UserWarning)

    try:
        payload_in = json.loads(event.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"deployguard invoke: event file {event}: {exc}", file=sys.stderr)
        raise typer.Exit(ERROR_EXIT) from exc
    named = ("--config", config) if config else ("$DEPLOYGUARD_CONFIG_FILE", os.environ.get("DEPLOYGUARD_CONFIG_FILE"))
    if named[1]:  # read here: an unreadable file is the command's error (exit 2), not the function's
        try:
            with open(named[1], encoding="utf-8") as fh:
                fh.read(1)
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(f"deployguard invoke: {named[0]} {named[1]}: cannot read: {why}", file=sys.stderr)
            raise typer.Exit(ERROR_EXIT) from exc
    config_file = Path(config) if config else _sample_config(endpoint_url)
    with EmbeddedAws(config_file=config_file, endpoint_url=endpoint_url, quiet=not verbose) as aws:
        if function not in aws.functions:
            known = ", ".join(sorted(aws.functions))
            print(f"deployguard invoke: {function} is not a function of template.yaml ({known})", file=sys.stderr)
            raise typer.Exit(ERROR_EXIT)
        if not endpoint_url:
            aws.seed_sample()
        payload, errored = aws.invoke(function, payload_in)
    print(json.dumps(payload, indent=2, default=str))
    raise typer.Exit(1 if errored else 0)


def _sample_config(endpoint_url: str | None) -> Path | None:
    """Without --config or $DEPLOYGUARD_CONFIG_FILE, the embedded AWS's functions run with the configuration of
    the sample application the events/ files refer to (events/sample-config.yaml: its ECS service is judged by
    its load balancer's metrics); on a running endpoint (--endpoint-url, no sample) the built-in defaults."""
    from deployguard_local.emulator.environment import REPO_ROOT

    sample = REPO_ROOT / "events" / SAMPLE_CONFIG
    if endpoint_url or os.environ.get("DEPLOYGUARD_CONFIG_FILE") or not sample.is_file():
        return None
    return sample


@app.command("serve")
def serve(
    local: Annotated[bool, typer.Option("--local", help="over the embedded AWS holding the demo's rollouts")] = False,
    port: Annotated[int, typer.Option(help="the port on 127.0.0.1")] = 8700,
    no_live: Annotated[bool, typer.Option("--no-live", help="do not start the slow canary you can abort")] = False,
    seconds_per_minute: Annotated[float, typer.Option(help="pace of the live canary (seconds a minute)")] = 5.0,
    state_dir: Annotated[
        Path | None, typer.Option(help="the saved local state (default: where make demo saves it)")
    ] = None,
    openapi: Annotated[bool, typer.Option("--openapi", help="print the OpenAPI document and exit")] = False,
) -> None:
    """The operations console (API and page) on 127.0.0.1, over the demo's saved state."""
    from deployguard_local import console_server

    argv = [*(["--local"] if local else []), "--port", str(port), *(["--no-live"] if no_live else []),
            "--seconds-per-minute", str(seconds_per_minute), *(["--state-dir", str(state_dir)] if state_dir else []),
            *(["--openapi"] if openapi else [])]  # fmt: skip
    raise typer.Exit(console_server.main(argv))


bench_app = typer.Typer(name="bench", help="Benchmarks on the embedded AWS.", no_args_is_help=True)
app.add_typer(bench_app)


@bench_app.command("scale")
def bench_scale(
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one JSON object")] = False,
    sizes: Annotated[str, typer.Option(help="active deployments per run, comma separated")] = "10,100,1000",
    jobs: Annotated[int, typer.Option(min=1, help="configurations measured in parallel processes")] = 1,
) -> None:
    """The minute loop at scale: active deployments judged per minute, its cost per month."""
    from deployguard_local import bench_scale as bench_module

    raise typer.Exit(bench_module.main([*(["--json"] if as_json else []), "--sizes", sizes, "--jobs", str(jobs)]))


@app.command("version")
def version() -> None:
    """Print the version (as --version)."""
    typer.echo(f"deployguard {_version()}")


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        module, _, entry = SUBCOMMANDS[argv[0]]
        return int(getattr(importlib.import_module(f"deployguard_local.{module}"), entry)(argv[1:]))
    return invoke(app, "deployguard", argv)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: :data:`deployguard_local.commands.EXIT_CODES` (0 done; 1 a negative answer; 2 an error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        with debugging(debug), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=EMPTY_METRICS_WARNING, category=UserWarning)
            return _dispatch(argv)
    except KeyboardInterrupt:  # Ctrl-C outside a command's parsing (click answers that one: commands.invoke)
        command = argv[0] if argv and not argv[0].startswith("-") else ""
        print(f"deployguard{' ' + command if command else ''}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `deployguard replay --json DIR | head -1`: the reader has gone, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if debug:
            raise
        command = argv[0] if argv and not argv[0].startswith("-") else ""
        print(f"deployguard{' ' + command if command else ''}: {describe_error(exc)}", file=sys.stderr)
        return ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
