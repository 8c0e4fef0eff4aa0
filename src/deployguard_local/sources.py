"""Where the read commands read from, and how they print times.

``--local`` (the demo's saved state, :mod:`deployguard_local.local_state`), ``--stack NAME``
(a deployed stack: the table and bucket from its CloudFormation outputs
``DeploymentsTableName`` / ``ReportsBucketName``), ``--table NAME``, or ``$DEPLOYMENTS_TABLE``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from deployguard.aws import clients
from deployguard.exceptions import DeployGuardError
from deployguard.readmodels import DeploymentReader
from deployguard.storage.repository import DeploymentRepository


def stack_outputs(stack: str) -> dict[str, str]:
    """The outputs of a deployed CloudFormation stack, by key."""
    try:
        stacks = clients.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise DeployGuardError(f"stack {stack}: {exc}") from exc
    outputs = stacks[0].get("Outputs", []) if stacks else []
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}


@dataclass
class Source:
    """An open source of deployments: the reader, the reports bucket, and how time passes there."""

    reader: DeploymentReader
    reports_bucket: str | None
    sleep: Callable[[float], object]
    local_dir: Path | None = None


@contextlib.contextmanager
def open_source(
    *,
    local: bool = False,
    stack: str | None = None,
    table: str | None = None,
    region: str | None = None,
    state_dir: Path | None = None,
) -> Iterator[Source]:
    """The deployments to read: ``local`` state, a ``stack``, a ``table``, or ``$DEPLOYMENTS_TABLE``."""
    if local:
        from deployguard_local import local_state

        directory = state_dir or local_state.default_dir()
        with local_state.opened(directory) as aws:
            assert aws.clock is not None  # local time is simulated: waiting advances it
            bucket = aws.ref("ReportsBucket") if "ReportsBucket" in aws.stack.physical else None
            repository = DeploymentRepository(aws.ref("DeploymentsTable"))
            yield Source(DeploymentReader(repository), bucket, aws.clock.advance, directory)
        return
    if region:
        os.environ["AWS_REGION"] = region
        clients.reset()
    bucket = None
    if stack:
        outputs = stack_outputs(stack)
        table = table or outputs.get("DeploymentsTableName")
        bucket = outputs.get("ReportsBucketName")
        if not table:
            raise DeployGuardError(f"stack {stack} has no output DeploymentsTableName")
    table = table or os.environ.get("DEPLOYMENTS_TABLE")
    if not table:
        raise DeployGuardError(
            "name the stack (--stack NAME) or the table (--table NAME), set DEPLOYMENTS_TABLE, "
            "or read the demo's state with --local"
        )
    yield Source(DeploymentReader(DeploymentRepository(table)), bucket or os.environ.get("REPORTS_BUCKET"), time.sleep)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
