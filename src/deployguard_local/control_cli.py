"""``deployguard control``: the canary verbs and emergency rollback from a terminal (deployguard.control).

    deployguard control promote|abort|pause|resume|retry|skip_analysis|approve DEPLOYMENT_ID --by NAME --reason TEXT
    deployguard control rollback SERVICE --by NAME --reason TEXT --confirm SERVICE [--environment E] [--from-version V]

The same code as the console's API and page. ``--stack NAME`` reads the table, topic and canary state
machine from a deployed stack's outputs; ``--table`` / ``--topic-arn`` / ``--state-machine-arn`` name them;
otherwise ``DEPLOYMENTS_TABLE``, ``EVENTS_TOPIC_ARN`` and ``CANARY_STATE_MACHINE_ARN`` from the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pydantic import BaseModel, ValidationError

from deployguard.aws.events import EventPublisher
from deployguard.config import load_config
from deployguard.control import VERBS, CanaryControlService, ControlRequest, EmergencyRollbackRequest
from deployguard.exceptions import DeployGuardError
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.incidents_cli import where_parser
from deployguard_local.sources import stack_outputs

PROG = "deployguard control"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="control a canary, or roll a service back in an emergency", parents=[where_parser()]
    )
    parser.add_argument("verb", choices=[*VERBS, "rollback"])
    parser.add_argument("target", help="deployment id (a verb) or service name (rollback)")
    parser.add_argument("--by", required=True, help="who asks (kept in the audit trail)")
    parser.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    rollback = parser.add_argument_group("rollback")
    rollback.add_argument("--confirm", help="the service's name again")
    rollback.add_argument("--environment", help="the service's environment (default: its configuration's)")
    rollback.add_argument("--from-version", help="the version you saw live (a repeat then changes nothing)")
    parser.add_argument("--state-machine-arn", help="the canary state machine (retry; default: the stack's)")
    return parser


def build_service(args: argparse.Namespace) -> CanaryControlService:
    if args.region:
        os.environ["AWS_REGION"] = args.region
    outputs = stack_outputs(args.stack) if args.stack else {}
    table = args.table or outputs.get("DeploymentsTableName") or os.environ.get("DEPLOYMENTS_TABLE")
    topic = args.topic_arn or outputs.get("DeploymentEventsTopicArn") or os.environ.get("EVENTS_TOPIC_ARN")
    machine = (
        args.state_machine_arn or outputs.get("CanaryStateMachineArn") or os.environ.get("CANARY_STATE_MACHINE_ARN")
    )
    if not table or not topic:
        raise DeployGuardError("name the stack (--stack) or the table and topic (--table, --topic-arn)")
    config = load_config(args.config)
    repository = DeploymentRepository(table, retention_days=config.retention_days)
    return CanaryControlService(config, repository, EventPublisher(topic), canary_state_machine_arn=machine)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        service = build_service(args)
        if args.verb == "rollback":
            request = EmergencyRollbackRequest(
                service=args.target,
                environment=args.environment,
                actor=args.by,
                reason=args.reason,
                confirm=args.confirm or "",
                from_version=args.from_version,
            )
            rolled = service.emergency_rollback(request)
            outcome: BaseModel = rolled
            text = f"{rolled.service}: {rolled.message}" + ("" if rolled.changed else " (nothing changed)")
        else:
            result = service.apply(args.target, ControlRequest(verb=args.verb, actor=args.by, reason=args.reason))
            outcome = result
            text = f"{result.deployment_id} {result.verb}: {result.message}" + (
                "" if result.changed else " (nothing changed)"
            )
    except (DeployGuardError, ValidationError) as exc:
        print(f"{PROG} {args.verb}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(outcome.model_dump(mode="json"), indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
