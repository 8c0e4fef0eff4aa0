"""Invoking one version of a Lambda function (the pre-traffic hook's ``lambda_invoke`` check)."""

from __future__ import annotations

import json
from typing import Any

from deployguard.aws import clients


def invoke_version(function_name: str, version: str, payload: Any) -> tuple[str | None, str]:
    """Invoke ``function_name:version`` synchronously with ``payload`` (as JSON); returns Lambda's
    ``FunctionError`` (None when the function returned) and the response payload as text.
    AWS and transport errors propagate (botocore's)."""
    resp = clients.client("lambda").invoke(
        FunctionName=function_name, Qualifier=version, Payload=json.dumps(payload).encode()
    )
    body = resp["Payload"].read().decode("utf-8", "replace")
    error = resp.get("FunctionError")
    return (str(error) if error else None), body
