"""The operations console (HTTP API and web page): two functions of this code with their own roles,
``read_handler`` (ConsoleReadFunction: GET routes and the page, a role that can only read) and
``write_handler`` (ConsoleWriteFunction: POST routes). Routes, the refusals (no authorised caller,
no write permission, the other function's request, input out of bounds) and the logic are in
deployguard.console_api; the page's assets come from ./static."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from deployguard.console_api import app, error_response, handle
from deployguard.exceptions import NotFoundError
from deployguard.workflows import runtime

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer
STATIC = Path(__file__).resolve().parent / "static"


def _asset(name: str) -> Response[str]:
    files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
    if name not in files:
        return error_response(404, NotFoundError(f"{name} not found"))
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if kind == "text/html":
        headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
    return Response(200, kind, files[name].read_text(encoding="utf-8"), headers=headers)


@app.get("/", include_in_schema=False)
def index() -> Response[str]:
    return _asset("index.html")


@app.get("/static/<name>", include_in_schema=False)
def static(name: str) -> Response[str]:
    return _asset(name)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def read_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context, "read")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def write_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context, "write")
