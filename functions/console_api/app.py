"""The operations console (HTTP API and web page): routes in deployguard.console_api, the page's
assets from ./static; every /api request is refused without an authorised caller, every write
without write permission, before its input is read."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from deployguard.console_api import app, error_response, refuse_before_reading
from deployguard.exceptions import NotFoundError
from deployguard.workflows import runtime

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
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refused = refuse_before_reading(event)
    return refused if refused is not None else app.resolve(event, context)
