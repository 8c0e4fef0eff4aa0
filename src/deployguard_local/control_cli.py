"""``deployguard control``: the canary verbs and emergency rollback from a terminal (deployguard.workflows.control).

    deployguard control promote|abort|pause|resume|retry|skip_analysis|approve ID --by NAME --reason TEXT
                                                    # skip_analysis is also skip-analysis (Argo's spelling)
    deployguard control rollback SERVICE --by NAME --reason TEXT --confirm SERVICE [--environment E] [--from-version V]

ID is a deployment id or a unique prefix of one, as the read commands take it.

The verbs are Argo Rollouts' (``kubectl argo rollouts promote|abort|pause|retry ...``), on the same
code as the console's API and page. The connection options (:mod:`deployguard_local.options`) say
where: ``--stack NAME`` reads the table, topic and canary state machine from a deployed stack's
outputs; ``--table`` / ``--topic-arn`` / ``--state-machine-arn`` name them; otherwise
``DEPLOYMENTS_TABLE``, ``EVENTS_TOPIC_ARN`` and ``CANARY_STATE_MACHINE_ARN`` from the environment.
``--local`` acts on the demo's saved state: the whole stack on the embedded AWS (its topic and the
router subscribed to it, the canary state machine, the application's Lambda aliases), saved back
afterwards; what it cannot do there (CodeDeploy's deployments and Step Functions executions are not
kept) is refused naming what is missing (:func:`deployguard_local.local_state.unemulated`), except abort and
promote of a CodeDeploy deployment its record says has ended: CodeDeploy's answer (already completed) is
given, as on AWS.
Exit codes: 0 done (or nothing to change), 2 refused or an error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated

import typer
from pydantic import BaseModel

from deployguard.aws.events import EventPublisher
from deployguard.config import load_config
from deployguard.exceptions import DeployGuardError
from deployguard.readmodels.deployments import DeploymentReader
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import (
    VERBS,
    CanaryControlService,
    ControlOutcome,
    ControlRequest,
    EmergencyRollbackRequest,
)
from deployguard_local.commands import invoke, new_app, print_json, run
from deployguard_local.options import Connection, Json, connected

PROG = "deployguard control"

app = new_app("control", "Control a canary (Argo Rollouts' verbs), or roll a service back in an emergency.",
              no_args_is_help=True)  # fmt: skip

By = Annotated[str, typer.Option("--by", help="who asks (kept in the audit trail)")]
Reason = Annotated[str, typer.Option("--reason", help="why (kept in the audit trail)")]
StateMachineArn = Annotated[
    str | None, typer.Option("--state-machine-arn", help="the canary state machine (retry; default: the stack's)")
]

VERB_HELP = {  # the README's verb table, word for word where it can be
    "promote": "Skip the remaining steps: the next assessment that is not failing promotes to 100% (for a canary "
    "waiting for approval before 100%, it is the approval). CodeDeploy: ContinueDeployment.",
    "abort": "Roll back now: the alias at 100% stable at once; the execution ends at its next task. "
    "CodeDeploy: StopDeployment with rollback.",
    "pause": "Hold the current weight; analysis continues and a failing verdict still rolls back.",
    "resume": "Let a paused canary step on again when its verdict is healthy.",
    "retry": "A canary held for a person (no conclusive evidence) starts its step again (a new execution).",
    "skip_analysis": "Emergency fix: verdicts are recorded but no longer roll back (nor raise alerts); steps follow "
    "their bake time. Announced as critical. Also typed skip-analysis.",
    "approve": "Answer the task token of a canary waiting before 100% (approval_before_full_traffic: true).",
}


def aws_identity() -> str | None:
    """The ARN the CLI acts as on AWS (STS GetCallerIdentity), for the audit trail next to --by; None if STS
    cannot say (the action itself then meets the same credentials)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from deployguard.aws import clients

    try:
        return str(clients.client("sts").get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError, KeyError):
        return None


def _apply(conn: Connection, state_machine_arn: str | None, verb: str,
           use: Callable[[CanaryControlService, str | None, str], BaseModel], text: Callable[[BaseModel], str],
           json_: bool, deployment_id: str | None = None) -> None:  # fmt: skip
    def action() -> int:
        with conn.resources(save=True, whole_stack=True) as res:
            if not res.topic:
                raise DeployGuardError(
                    "the events topic is unknown: name the stack (--stack NAME) or the topic "
                    "(--topic-arn ARN, or EVENTS_TOPIC_ARN), or use the demo's state with --local"
                )
            config = load_config(conn.config)
            repository = DeploymentRepository(res.table, retention_days=config.retention_days)
            local = res.local_dir is not None
            # an id or a unique prefix of one, as the read commands take it (an unknown one: not found, exit 2)
            found = DeploymentReader(repository, prefixes=True).get(deployment_id) if deployment_id else None
            if local:  # the saved local state keeps no CodeDeploy deployments nor executions: say so first
                from deployguard_local import local_state

                refusal = local_state.unemulated(found, verb) if found is not None else None
                if refusal:
                    raise DeployGuardError(refusal)
                if found is not None:  # one the record says has ended: CodeDeploy answers it (already completed)
                    local_state.restore_codedeploy(found)
            machine = state_machine_arn or res.state_machine
            identity = None if local else aws_identity()  # on AWS: who the credentials are, next to --by
            outcome = use(CanaryControlService(config, repository, EventPublisher(res.topic),
                                               canary_state_machine_arn=machine), identity,
                          found.deployment_id if found else "")  # fmt: skip
        if json_:
            print_json(outcome.model_dump(mode="json"))
        else:
            sys.stdout.write(text(outcome) + "\n")
        if local and isinstance(outcome, ControlOutcome) and outcome.changed:
            from deployguard_local import local_state

            note = local_state.unhonoured(outcome.deployment, verb)
            if note:
                sys.stderr.write(f"{PROG} {verb}: note: {note}\n")
        return 0

    raise typer.Exit(run(action, f"{PROG} {verb}"))


def _verb_command(verb: str, name: str | None = None, hidden: bool = False) -> None:
    """The command of ``verb``, named ``name`` (default: the verb itself; an alias is ``hidden`` from the list)."""

    @app.command(name or verb, help=VERB_HELP.get(verb, f"{verb} a canary"), hidden=hidden)
    @connected(topic=True, config=True)
    def command(
        conn: Connection,
        deployment_id: Annotated[str, typer.Argument(help="the deployment id or a unique prefix")],
        by: By,
        reason: Reason,
        state_machine_arn: StateMachineArn = None,
        json_: Json = False,
    ) -> None:
        def text(result: BaseModel) -> str:
            data = result.model_dump()
            return f"{data['deployment_id']} {data['verb']}: {data['message']}" + (
                "" if data["changed"] else " (nothing changed)"
            )

        def use(service: CanaryControlService, identity: str | None, full_id: str) -> BaseModel:
            request = ControlRequest(verb=verb, actor=by, reason=reason, identity=identity)
            return service.apply(full_id, request)

        _apply(conn, state_machine_arn, verb, use, text, json_, deployment_id)


for _verb in VERBS:
    _verb_command(_verb)
    if "_" in _verb:  # skip_analysis: also as Argo Rollouts users type it, skip-analysis
        _verb_command(_verb, name=_verb.replace("_", "-"), hidden=True)


@app.command("rollback")
@connected(topic=True, config=True)
def rollback(
    conn: Connection,
    service_name: Annotated[str, typer.Argument(metavar="SERVICE", help="the service to roll back")],
    by: By,
    reason: Reason,
    confirm: Annotated[str, typer.Option("--confirm", help="the service's name again")] = "",
    environment: Annotated[str | None, typer.Option(help="the service's environment (default: its configuration's)")]
    = None,
    from_version: Annotated[str | None, typer.Option(help="the version you saw live (a repeat then changes nothing)")]
    = None,
    state_machine_arn: StateMachineArn = None,
    json_: Json = False,
) -> None:  # fmt: skip
    """Emergency rollback: the service's stable version takes all traffic, whatever runs."""

    def use(service: CanaryControlService, identity: str | None, _: str) -> BaseModel:
        seen = from_version
        if seen is None:  # the version live now, shown: the rollback is keyed on it, as the page's
            seen = service.live_version(service_name, environment)
            sys.stderr.write(f"{PROG} rollback: version {seen} is live (--from-version {seen} repeats harmlessly)\n")
        request = EmergencyRollbackRequest(service=service_name, environment=environment, actor=by, reason=reason,
                                           confirm=confirm, from_version=seen, identity=identity)  # fmt: skip
        return service.emergency_rollback(request)

    def text(result: BaseModel) -> str:
        data = result.model_dump()
        return f"{data['service']}: {data['message']}" + ("" if data["changed"] else " (nothing changed)")

    _apply(conn, state_machine_arn, "rollback", use, text, json_)


def main(argv: list[str]) -> int:
    return invoke(app, PROG, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
