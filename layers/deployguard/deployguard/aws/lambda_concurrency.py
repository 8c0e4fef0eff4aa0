"""Lambda concurrency: the reserved concurrency of a function and the provisioned concurrency of
an alias, read and set (the remediation actions that shed load or add warm capacity).

Every AWS or transport error is a :class:`~deployguard.exceptions.LambdaError` that names the
operation (``lambda:PutFunctionConcurrency: ...``).
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from deployguard.aws import clients
from deployguard.exceptions import LambdaError


def reserved_concurrency(function_name: str) -> int | None:
    """The function's reserved concurrency; None when it has none (it shares the account's pool)."""
    try:
        resp = clients.client("lambda").get_function_concurrency(FunctionName=function_name)
    except (ClientError, BotoCoreError) as exc:
        raise LambdaError(f"lambda:GetFunctionConcurrency: {exc}") from exc
    value = resp.get("ReservedConcurrentExecutions")
    return None if value is None else int(value)


def put_reserved_concurrency(function_name: str, executions: int) -> None:
    try:
        clients.client("lambda").put_function_concurrency(
            FunctionName=function_name, ReservedConcurrentExecutions=executions
        )
    except (ClientError, BotoCoreError) as exc:
        raise LambdaError(f"lambda:PutFunctionConcurrency: {exc}") from exc


def provisioned_concurrency(function_name: str, alias: str) -> int | None:
    """The alias's requested provisioned concurrency; None when it has no configuration."""
    try:
        resp = clients.client("lambda").get_provisioned_concurrency_config(FunctionName=function_name, Qualifier=alias)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ProvisionedConcurrencyConfigNotFoundException":
            return None
        raise LambdaError(f"lambda:GetProvisionedConcurrencyConfig: {exc}") from exc
    except BotoCoreError as exc:
        raise LambdaError(f"lambda:GetProvisionedConcurrencyConfig: {exc}") from exc
    value = resp.get("RequestedProvisionedConcurrentExecutions")
    return None if value is None else int(value)


def put_provisioned_concurrency(function_name: str, alias: str, executions: int) -> str:
    """Request ``executions`` on the alias; returns Lambda's status of the configuration (``IN_PROGRESS``...)."""
    try:
        resp = clients.client("lambda").put_provisioned_concurrency_config(
            FunctionName=function_name, Qualifier=alias, ProvisionedConcurrentExecutions=executions
        )
    except (ClientError, BotoCoreError) as exc:
        raise LambdaError(f"lambda:PutProvisionedConcurrencyConfig: {exc}") from exc
    return str(resp.get("Status", "requested"))
