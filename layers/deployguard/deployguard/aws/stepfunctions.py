"""Step Functions: start a canary execution, answer a task token a state machine waits on, ask how an execution is."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deployguard.aws import clients
from deployguard.exceptions import StepFunctionsError


def start_execution(state_machine_arn: str, name: str, execution_input: dict[str, Any]) -> str:
    """StartExecution; returns the execution ARN (an execution of the same name is refused by AWS)."""
    try:
        resp = clients.client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input)
        )
    except (ClientError, BotoCoreError) as exc:
        raise StepFunctionsError(f"StartExecution {name}: {exc}") from exc
    return str(resp["executionArn"])


# what Step Functions answers for a token already answered (or whose wait ended): asking again cannot help
TOKEN_ANSWERED = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})


def answer_task(token: str, *, approved: bool, by: str, reason: str) -> None:
    """SendTaskSuccess (approved) or SendTaskFailure (rejected) for a waiting task token."""
    sfn = clients.client("stepfunctions")
    try:
        if approved:
            sfn.send_task_success(taskToken=token, output=json.dumps({"approved_by": by, "reason": reason}))
        else:
            sfn.send_task_failure(taskToken=token, error="Rejected", cause=f"rejected by {by}: {reason}"[:256])
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
        raise StepFunctionsError(f"{'SendTaskSuccess' if approved else 'SendTaskFailure'}: {exc}", code=code) from exc


def execution_status(execution_arn: str) -> tuple[str, dict[str, Any] | None]:
    """DescribeExecution's status of an execution (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED,
    PENDING_REDRIVE) and, for one that succeeded, its output (the state it ended with; None when it is
    not a JSON object). One attempt (the single-attempt client): a caller that asks again later (the
    minute tick) retries, and a throttled call never holds it."""
    try:
        resp = clients.client("stepfunctions", retries=False).describe_execution(executionArn=execution_arn)
    except (ClientError, BotoCoreError) as exc:
        raise StepFunctionsError(f"DescribeExecution {execution_arn}: {exc}") from exc
    output: Any = None
    if resp.get("output"):
        try:
            output = json.loads(resp["output"])
        except ValueError:
            output = None
    return str(resp["status"]), output if isinstance(output, dict) else None
