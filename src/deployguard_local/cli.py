"""The ``deployguard`` command.

deployguard demo [--scenario FILE]          canary rollouts end to end on the embedded AWS
deployguard invoke FUNCTION --event FILE     run one function of template.yaml with an event
deployguard replay [--json] [--config FILE] PATH...   judge recorded scenarios period by period
deployguard notifications retry|list ...     redeliver dead letters, list deliveries
deployguard config validate FILE... | schema  check a configuration file, write its JSON Schema
deployguard serve --local [--port 8700]      the operations console over the embedded AWS
deployguard control VERB ID --by --reason    promote, abort, pause, resume, retry, skip_analysis, approve; rollback
deployguard deployments list|show|watch ...  what DeployGuard decided (deployments_cli, Typer)
deployguard status ID [--wait] [--timeout S] CI gate: exit 0 promoted, 1 rolled back, 2 held, 3 timeout
deployguard report ID [--format md|html|json] [-o FILE]   one deployment's health report
deployguard summary [--since 7d]             what DeployGuard decided in a period, against the one before
deployguard serve --local [--port 8700]      the operations console over the embedded AWS
deployguard alerts fields [--config FILE]     rule fields each metric feeds; rules that cannot fire
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deployguard.exceptions import DeployGuardError


def _demo(args: argparse.Namespace) -> int:
    from deployguard_local import demo

    return demo.main(args.scenario, quiet=args.quiet, as_json=args.json)


def _invoke(args: argparse.Namespace) -> int:
    from deployguard_local.emulator import EmbeddedAws

    try:
        event = json.loads(Path(args.event).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"deployguard invoke: event file {args.event}: {exc}", file=sys.stderr)
        return 2
    config = Path(args.config) if args.config else None
    with EmbeddedAws(config_file=config, endpoint_url=args.endpoint_url, quiet=not args.verbose) as aws:
        if args.function not in aws.functions:
            known = ", ".join(sorted(aws.functions))
            print(f"deployguard invoke: {args.function} is not a function of template.yaml ({known})", file=sys.stderr)
            return 2
        if not args.endpoint_url:
            aws.seed_sample()
        payload, errored = aws.invoke(args.function, event)
    print(json.dumps(payload, indent=2, default=str))
    return 1 if errored else 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deployguard")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deployguard", description="Keeps bad releases out of production on AWS.")
    parser.add_argument("--version", action="version", version=f"deployguard {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run canary rollouts end to end on the embedded AWS")
    demo.add_argument("--scenario", type=Path, help="replay a deployguard-scenario/1 file through the system")
    demo.add_argument("--quiet", action="store_true", help="print only the summary table")
    demo.add_argument("--json", action="store_true", help="print only the summary, as JSON")
    demo.set_defaults(handler=_demo)
    invoke = sub.add_parser("invoke", help="run one function of template.yaml with an event file")
    invoke.add_argument("function", help="logical id in template.yaml, e.g. CanaryStepFunction")
    invoke.add_argument("--event", required=True, help="event JSON file, e.g. events/schedule.json")
    invoke.add_argument("--config", help="DeployGuard configuration file (default: built-in defaults)")
    invoke.add_argument("--endpoint-url", help="use a running local AWS endpoint instead of the embedded one")
    invoke.add_argument("--verbose", action="store_true", help="show the function's logs and metrics")
    invoke.set_defaults(handler=_invoke)
    for name, (_, _, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text)
    return parser


# Subcommands with parsers of their own: name -> (module in deployguard_local, its entry point, help).
# Each module is imported only when its command runs.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "replay": ("replay", "main", "judge recorded scenarios period by period (see deployguard replay --help)"),
    "notifications": ("notifications_cli", "main", "redeliver dead-lettered notifications, list deliveries"),
    "incidents": ("incidents_cli", "main", "list, show, acknowledge, resolve incidents; approve remediations"),
    "config": ("config_cli", "main", "validate a configuration file (every problem at once), write its JSON Schema"),
    "control": ("control_cli", "main", "control a canary or roll a service back (see deployguard control --help)"),
    "serve": ("console_server", "main", "the operations console (API and page) on 127.0.0.1"),
    "deployments": ("deployments_cli", "main", "list, show and watch deployments: what DeployGuard decided"),
    "status": ("deployments_cli", "status_main", "a deployment's outcome as an exit code (CI gate; --wait)"),
    "report": ("report_cli", "main", "one deployment's health report (md, html, json)"),
    "summary": ("summary_cli", "main", "deployments, success rate, incidents of a period (--since 7d)"),
    "alerts": ("alerts_cli", "main", "which rule fields the metrics feed, which rules cannot fire (alerts fields)"),
    "bench": ("bench_scale", "bench_main", "bench scale [--json]: the minute loop at scale on the embedded AWS"),
}


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module, entry, _ = SUBCOMMANDS[argv[0]]
        return int(getattr(importlib.import_module(f"deployguard_local.{module}"), entry)(argv[1:]))
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


def describe_error(exc: BaseException) -> str:
    """One line for a person: what went wrong and, where we know it, what to do about it."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ReadTimeoutError,
    )

    if isinstance(exc, DeployGuardError):
        return str(exc)
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or try --local)"
    if isinstance(exc, NoRegionError):
        return "no AWS region set (set AWS_REGION or pass --region)"
    if isinstance(exc, EndpointConnectionError | ReadTimeoutError):
        return f"cannot reach {getattr(exc, 'kwargs', {}).get('endpoint_url', 'the AWS endpoint')}: is it running?"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "a call")
        return f"AWS refused {operation}: {error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 1 a negative answer (problems found, the function errored, ...); 2 an error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `deployguard replay --json DIR | head -1`: the reader has gone, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if debug:
            raise
        command = argv[0] if argv and not argv[0].startswith("-") else ""
        print(f"deployguard{' ' + command if command else ''}: {describe_error(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
