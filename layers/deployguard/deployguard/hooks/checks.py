"""Pre-traffic checks, each run with retries and backoff inside a deadline.

A check that hangs is abandoned at its deadline (it runs in a worker thread) and
counts as failed, so the hook always keeps time to answer CodeDeploy.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import requests

from deployguard import clock
from deployguard.aws import clients
from deployguard.aws.cloudwatch import MetricsReader, canary_queries
from deployguard.exceptions import ValidationCheckError
from deployguard.hooks.settings import CheckSettings
from deployguard.models import Deployment, LambdaTarget, MetricSpec
from deployguard.notification.urlsafety import validate_outbound_url

CheckStatus = Literal["passed", "failed", "warned"]


@dataclass
class CheckResult:
    name: str
    description: str
    status: CheckStatus
    critical: bool
    attempts: int
    duration_ms: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckContext:
    deployment: Deployment
    metrics: list[MetricSpec]
    local_mode: bool


def _lambda_invoke(check: CheckSettings, ctx: CheckContext) -> tuple[str, dict[str, Any]]:
    target = ctx.deployment.target
    if not isinstance(target, LambdaTarget):
        raise ValidationCheckError("lambda_invoke needs a Lambda deployment")
    resp = clients.client("lambda").invoke(
        FunctionName=target.function_name, Qualifier=target.new_version, Payload=json.dumps(check.payload).encode()
    )
    body_text = resp["Payload"].read().decode("utf-8", "replace")
    if resp.get("FunctionError"):
        raise ValidationCheckError(f"version {target.new_version} raised: {body_text[:200]}")
    body: Any = json.loads(body_text) if body_text else None
    if (
        check.expect_status_code is not None
        and isinstance(body, dict)
        and body.get("statusCode", check.expect_status_code) != check.expect_status_code
    ):
        raise ValidationCheckError(f"statusCode {body['statusCode']}, expected {check.expect_status_code}")
    inner = body.get("body") if isinstance(body, dict) else None
    if check.expect_fields:
        document = json.loads(inner) if isinstance(inner, str) else body
        for key, expected in check.expect_fields.items():
            if not isinstance(document, dict) or document.get(key) != expected:
                raise ValidationCheckError(f"response field {key!r} is not {expected!r}")
    return f"version {target.new_version} answered", {"version": target.new_version}


def _http(check: CheckSettings, ctx: CheckContext, deadline: float) -> tuple[str, dict[str, Any]]:
    assert check.url is not None
    url = validate_outbound_url(check.url, check.allowed_hosts, ctx.local_mode, field=f"{check.name}.url")
    wait_until = time.monotonic() + check.wait_until_healthy_seconds
    last = ""
    while True:
        started = time.monotonic()
        timeout = max(0.05, min(check.timeout_seconds, deadline - started))
        try:
            resp = requests.get(url, timeout=timeout, allow_redirects=False)
            elapsed_ms = (time.monotonic() - started) * 1000.0
            problems = []
            if resp.status_code != check.expect_status:
                problems.append(f"status {resp.status_code}, expected {check.expect_status}")
            if check.max_response_ms is not None and elapsed_ms > check.max_response_ms:
                problems.append(f"answered in {elapsed_ms:.0f} ms, over {check.max_response_ms:.0f} ms")
            if check.expect_fields and not problems:
                try:
                    document = resp.json()
                except ValueError:
                    document = None
                for key, expected in check.expect_fields.items():
                    if not isinstance(document, dict) or document.get(key) != expected:
                        problems.append(f"body field {key!r} is not {expected!r}")
            if not problems:
                return f"healthy in {elapsed_ms:.0f} ms", {"status": resp.status_code, "ms": round(elapsed_ms, 1)}
            last = "; ".join(problems)
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}"
        if time.monotonic() >= min(wait_until, deadline):
            raise ValidationCheckError(last)
        time.sleep(min(1.0, max(0.0, wait_until - time.monotonic())))


def _tcp(check: CheckSettings, ctx: CheckContext, deadline: float) -> tuple[str, dict[str, Any]]:
    assert check.host is not None and check.port is not None
    started = time.monotonic()
    timeout = max(0.05, min(check.timeout_seconds, deadline - started))
    try:
        with socket.create_connection((check.host, check.port), timeout=timeout):
            pass
    except OSError as exc:
        raise ValidationCheckError(f"{check.host}:{check.port} unreachable: {exc.strerror or exc}") from exc
    return f"{check.host}:{check.port} reachable in {(time.monotonic() - started) * 1000:.0f} ms", {}


def _alarms(check: CheckSettings, ctx: CheckContext) -> tuple[str, dict[str, Any]]:
    kwargs: dict[str, Any] = {"StateValue": "ALARM"}
    if check.alarm_prefix:
        kwargs["AlarmNamePrefix"] = check.alarm_prefix
    if check.alarm_names:
        kwargs["AlarmNames"] = check.alarm_names
    alarms = clients.client("cloudwatch").describe_alarms(**kwargs).get("MetricAlarms", [])
    firing = [a["AlarmName"] for a in alarms]
    if firing:
        raise ValidationCheckError(f"in ALARM: {', '.join(firing)}")
    return "no alarm of the service is in ALARM", {}


def _baseline(check: CheckSettings, ctx: CheckContext) -> tuple[str, dict[str, Any]]:
    now = clock.now()
    start = now - timedelta(minutes=check.baseline_minutes)
    queries = [q for q in canary_queries("baseline", ctx.deployment, ctx.metrics) if q.key[2] == "baseline"]
    values = MetricsReader().read(queries, start, now, 60)
    summary = {
        key[1]: round(sum(v for v in series if v is not None), 3) if series else None for key, series in values.items()
    }
    return f"stable version's last {check.baseline_minutes} min captured", {"baseline": summary}


def run_check(
    check: CheckSettings,
    ctx: CheckContext,
    deadline: float,
    sleep: Callable[[float], None] = time.sleep,
) -> CheckResult:
    """Run one check with its retries and backoff; never past ``deadline`` (time.monotonic())."""
    started = time.monotonic()
    attempts, message = 0, ""
    details: dict[str, Any] = {}
    for attempt in range(check.retries + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            message = message or "no time left before the hook must answer"
            break
        attempts += 1
        budget = min(check.timeout_seconds + check.wait_until_healthy_seconds, remaining)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"check-{check.name}")
        future = pool.submit(_run_once, check, ctx, time.monotonic() + budget)
        try:
            message, details = future.result(timeout=budget)
            pool.shutdown(wait=False)
            return CheckResult(
                check.name,
                check.description,
                "passed",
                check.critical,
                attempts,
                (time.monotonic() - started) * 1000.0,
                message,
                details,
            )
        except concurrent.futures.TimeoutError:
            message = f"timed out after {budget:.1f} s"
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
        pool.shutdown(wait=False, cancel_futures=True)
        if attempt < check.retries:
            pause = min(check.backoff_seconds * 2**attempt, max(0.0, deadline - time.monotonic()))
            sleep(pause)
    return CheckResult(
        check.name,
        check.description,
        "failed" if check.critical else "warned",
        check.critical,
        attempts,
        (time.monotonic() - started) * 1000.0,
        message,
        details,
    )


def _run_once(check: CheckSettings, ctx: CheckContext, deadline: float) -> tuple[str, dict[str, Any]]:
    if check.type == "lambda_invoke":
        return _lambda_invoke(check, ctx)
    if check.type == "http":
        return _http(check, ctx, deadline)
    if check.type == "tcp":
        return _tcp(check, ctx, deadline)
    if check.type == "alarms":
        return _alarms(check, ctx)
    return _baseline(check, ctx)
