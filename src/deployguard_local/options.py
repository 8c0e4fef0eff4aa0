"""What every ``deployguard`` command shares: which DeployGuard to talk to, how to print, how to end.

Connection options (one place, every command that reads or changes DeployGuard's state takes them)::

    --local              the state `make demo` saved (.deployguard/local-state), on the embedded AWS
    --stack NAME         a deployed DeployGuard stack: table, topic, state machine from its outputs
    --table NAME         the DeploymentsTable (default: $DEPLOYMENTS_TABLE)
    --region REGION      AWS region (default: $AWS_REGION)
    --endpoint-url URL   a local AWS endpoint (moto_server, LocalStack) instead of AWS
    --state-dir DIR      where --local state is (default: $DEPLOYGUARD_LOCAL_STATE)

A command gets them by :func:`connected`, which adds them to its options and hands it one
:class:`Connection`. Exit codes are in :data:`EXIT_CODES` (the README lists them).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from botocore.exceptions import BotoCoreError, ClientError

from deployguard.aws import clients
from deployguard.exceptions import DeployGuardError
from deployguard.readmodels import DeploymentReader
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.commands import describe_error

F = TypeVar("F", bound=Callable[..., Any])

# ---------------------------------------------------------------------------- shared options

Local = Annotated[bool, typer.Option("--local", help="use the state `make demo` saved (.deployguard/local-state)")]
Stack = Annotated[str | None, typer.Option("--stack", help="a deployed DeployGuard stack (resources from its outputs)")]
TableName = Annotated[str | None, typer.Option("--table", help="the DeploymentsTable (default: $DEPLOYMENTS_TABLE)")]
Region = Annotated[str | None, typer.Option("--region", help="AWS region (default: $AWS_REGION)")]
EndpointUrl = Annotated[
    str | None, typer.Option("--endpoint-url", help="a local AWS endpoint (moto_server, LocalStack) instead of AWS")
]
StateDir = Annotated[
    Path | None, typer.Option("--state-dir", help="where --local state is (default: $DEPLOYGUARD_LOCAL_STATE)")
]
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
ConfigFile = Annotated[
    str | None, typer.Option("--config", help="DeployGuard configuration file (default: $DEPLOYGUARD_CONFIG_FILE)")
]
TopicArn = Annotated[
    str | None, typer.Option("--topic-arn", help="the events topic, to announce changes (default: $EVENTS_TOPIC_ARN)")
]


@dataclass(frozen=True)
class Connection:
    """Which DeployGuard a command talks to (the connection options, resolved on use)."""

    local: bool = False
    stack: str | None = None
    table: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    state_dir: Path | None = None
    topic_arn: str | None = None
    config: str | None = None

    def apply_environment(self) -> None:
        """Region and endpoint for every boto3 client made from now on."""
        if self.region:
            os.environ["AWS_REGION"] = self.region
        if self.endpoint_url:
            os.environ["DEPLOYGUARD_ENDPOINT_URL"] = self.endpoint_url
        if self.region or self.endpoint_url:
            clients.reset()

    def outputs(self) -> dict[str, str]:
        return stack_outputs(self.stack) if self.stack else {}

    @contextlib.contextmanager
    def resources(self, *, save: bool = False, whole_stack: bool = False) -> Iterator[Resources]:
        """The table, topic, canary state machine, dead-letter queue and reports bucket to use.

        ``--local``: the demo's saved state on the embedded AWS (:mod:`deployguard_local.local_state`),
        written back afterwards when ``save`` (holding the state's lock from the load to the save:
        :func:`deployguard_local.local_state.locked`). By default only its tables and buckets (no topic: nothing
        listens); ``whole_stack`` (commands that act: control verbs, dead letters) starts every resource of
        the template with the application's functions, so a verb acts as on AWS: the events topic and its
        subscribers, the canary state machine, the notification dead-letter queue. What such a command
        starts (an execution, the topic's deliveries) ends before the state is saved."""
        if self.local:
            yield from self._local(save, whole_stack)
            return
        self.apply_environment()
        outputs = self.outputs()
        if self.stack and not (self.table or outputs.get("DeploymentsTableName")):
            raise DeployGuardError(f"stack {self.stack} has no output DeploymentsTableName")
        table = self.table or outputs.get("DeploymentsTableName") or os.environ.get("DEPLOYMENTS_TABLE")
        if not table:
            raise DeployGuardError(
                "name the stack (--stack NAME) or the table (--table NAME), set DEPLOYMENTS_TABLE, "
                "or use the demo's state with --local"
            )
        yield Resources(
            table=table,
            topic=self.topic_arn or outputs.get("DeploymentEventsTopicArn") or os.environ.get("EVENTS_TOPIC_ARN"),
            state_machine=outputs.get("CanaryStateMachineArn") or os.environ.get("CANARY_STATE_MACHINE_ARN"),
            reports_bucket=outputs.get("ReportsBucketName") or os.environ.get("REPORTS_BUCKET"),
            sleep=time.sleep,
            dead_letter_queue=outputs.get("NotificationDeadLetterQueueUrl") or os.environ.get("NOTIFICATION_DLQ_URL"),
        )

    def _local(self, save: bool, whole_stack: bool) -> Iterator[Resources]:
        from deployguard_local import local_state

        directory = self.state_dir or local_state.default_dir()
        # a command that saves holds the state's lock from before it loads until its save: two at once never
        # both load, change and save (the later save would drop the other's changes)
        lock = local_state.locked(directory) if save else contextlib.nullcontext()
        with lock, local_state.opened(directory, whole_stack=whole_stack, config_file=self.config) as aws:
            assert aws.clock is not None  # local time is simulated: waiting advances it
            physical = aws.stack.physical
            ref = lambda logical: aws.ref(logical) if logical in physical else None  # noqa: E731
            yield Resources(
                table=aws.ref("DeploymentsTable"),
                topic=self.topic_arn or ref("DeploymentEventsTopic"),
                state_machine=ref("CanaryStateMachine"),
                reports_bucket=ref("ReportsBucket"),
                sleep=aws.clock.advance,
                local_dir=directory,
                changes=False,
                dead_letter_queue=ref("NotificationDeadLetterQueue"),
                config_file=str(aws.config_file) if aws.config_file else None,
            )
            if whole_stack:
                for execution in local_state.settle(aws):  # stderr: stdout holds the command's answer alone
                    sys.stderr.write(f"deployguard: local: {local_state.what_ran(execution)}\n")
                    if execution["status"] == "RUNNING":  # stopped half-way: saving it would keep half a step
                        clients.client("stepfunctions").stop_execution(executionArn=execution["executionArn"])
                        raise DeployGuardError(
                            f"execution {execution['name']} did not end within {local_state.SETTLE_TIMEOUT:g} s: "
                            "stopped, and the local state left as it was (nothing saved)"
                        )
            if save:
                local_state.save(aws, directory)


@dataclass
class Resources:
    """What a command found to talk to."""

    table: str
    topic: str | None
    state_machine: str | None
    reports_bucket: str | None
    sleep: Callable[[float], object]
    local_dir: Path | None = None
    dead_letter_queue: str | None = None
    config_file: str | None = None  # --local: the configuration the embedded stack runs with
    # False with --local: the saved state changes only when a command saves it, so nothing a command could wait
    # for happens while it waits (`status --wait` and `deployments watch` answer at once instead)
    changes: bool = True

    @functools.cached_property
    def reader(self) -> DeploymentReader:
        return DeploymentReader(DeploymentRepository(self.table), prefixes=True)  # people type prefixes of ids


def stack_outputs(stack: str) -> dict[str, str]:
    """The outputs of a deployed CloudFormation stack, by key (an AWS error named with its hint, as every command's)."""
    try:
        stacks = clients.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise DeployGuardError(f"stack {stack}: {describe_error(exc)}") from exc
    outputs = stacks[0].get("Outputs", []) if stacks else []
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}


_CONNECTION_PARAMETERS = (
    ("local", Local, False),
    ("stack", Stack, None),
    ("table", TableName, None),
    ("region", Region, None),
    ("endpoint_url", EndpointUrl, None),
    ("state_dir", StateDir, None),
)
_TOPIC_PARAMETER = ("topic_arn", TopicArn, None)
_CONFIG_PARAMETER = ("config", ConfigFile, None)


def connected(command: F | None = None, *, topic: bool = False, config: bool = False) -> Any:
    """Give a command the connection options: its parameter ``conn`` becomes --local, --stack,
    --table, --region, --endpoint-url and --state-dir (with ``topic``: --topic-arn; with ``config``:
    --config), handed to it as one :class:`Connection`. Use as ``@connected`` or ``@connected(topic=True)``."""
    parameters = [*_CONNECTION_PARAMETERS, *([_TOPIC_PARAMETER] if topic else []),
                  *([_CONFIG_PARAMETER] if config else [])]  # fmt: skip

    def decorate(function: F) -> F:
        signature = inspect.signature(function, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "conn"]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, annotation, default in parameters
        ]

        @functools.wraps(function)
        def wrapper(**kwargs: Any) -> Any:
            conn = Connection(**{name: kwargs.pop(name) for name, _, _ in parameters})
            return function(conn=conn, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        return wrapper  # type: ignore[return-value]

    return decorate if command is None else decorate(command)
