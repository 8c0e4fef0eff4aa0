"""The ``deployguard`` command.

deployguard demo [--scenario FILE]          canary rollouts end to end on the embedded AWS
deployguard invoke FUNCTION --event FILE     run one function of template.yaml with an event
deployguard replay [--json] [--config FILE] PATH...   judge recorded scenarios period by period
deployguard notifications retry|list ...     redeliver dead letters, list deliveries
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

    return demo.main(args.scenario)


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


def _replay(argv: list[str]) -> int:
    from deployguard_local import replay

    return replay.main(argv)


def _notifications(argv: list[str]) -> int:
    from deployguard_local import notifications_cli

    return notifications_cli.main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deployguard", description="Keeps bad releases out of production on AWS.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run canary rollouts end to end on the embedded AWS")
    demo.add_argument("--scenario", type=Path, help="replay a deployguard-scenario/1 file through the system")
    demo.set_defaults(handler=_demo)
    invoke = sub.add_parser("invoke", help="run one function of template.yaml with an event file")
    invoke.add_argument("function", help="logical id in template.yaml, e.g. CanaryStepFunction")
    invoke.add_argument("--event", required=True, help="event JSON file, e.g. events/schedule.json")
    invoke.add_argument("--config", help="DeployGuard configuration file (default: built-in defaults)")
    invoke.add_argument("--endpoint-url", help="use a running local AWS endpoint instead of the embedded one")
    invoke.add_argument("--verbose", action="store_true", help="show the function's logs and metrics")
    invoke.set_defaults(handler=_invoke)
    sub.add_parser("replay", help="judge recorded scenarios period by period (see deployguard replay --help)")
    sub.add_parser("notifications", help="redeliver dead-lettered notifications, list deliveries")
    sub.add_parser("incidents", help="list, show, acknowledge, resolve incidents; approve remediations")
    sub.add_parser("alerts", help="which rule fields the metrics feed, which rules cannot fire (alerts fields)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # subcommands with their own parsers
    if argv and argv[0] == "replay":
        return _replay(argv[1:])
    if argv and argv[0] == "notifications":
        return _notifications(argv[1:])
    if argv and argv[0] == "alerts":
        from deployguard_local import alerts_cli

        return alerts_cli.main(argv[1:])
    if argv and argv[0] == "incidents":
        from deployguard_local import incidents_cli

        return incidents_cli.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except DeployGuardError as exc:
        print(f"deployguard {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
