"""Pre-traffic checks, each run with retries and backoff inside a deadline.

Each attempt runs in a worker thread and is abandoned at its budget (never later than
the hook's deadline): a check that hangs counts as failed, and the hook always keeps
time to answer CodeDeploy. Every outbound address (http and tcp checks) passes the
SSRF guard in one place, :func:`safe_target`: the host is resolved once and checked,
and the connection goes to that checked address (the name kept for TLS and ``Host``);
redirects are not followed.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from deployguard import clock
from deployguard.aws import alarms, lambda_invoke
from deployguard.exceptions import ConfigError, MetricsConfigError, ValidationCheckError
from deployguard.models import Deployment, LambdaTarget, MetricSpec, Model

if TYPE_CHECKING:  # the metrics reader and the outbound guard: imported by the checks that use them
    from deployguard.hooks.settings import CheckSettings
    from deployguard.notification.urlsafety import CheckedTarget, Resolver

CheckStatus = Literal["passed", "failed", "warned"]
Sleep = Callable[[float], None]


class CheckResult(Model):
    """One check's outcome, as reported (``can_deploy`` style) and recorded in the audit trail."""

    name: str
    description: str = ""
    status: CheckStatus
    critical: bool
    attempts: int = Field(ge=0)
    duration_ms: float = Field(ge=0)
    message: str
    details: dict[str, Any] = Field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "critical": self.critical,
            "attempts": self.attempts,
            "duration_ms": round(self.duration_ms, 1),
            "message": self.message,
        }


@dataclass
class CheckContext:
    deployment: Deployment
    metrics: list[MetricSpec]
    local_mode: bool
    resolver: Resolver | None = None  # tests inject one; by default the system's


def safe_target(check: CheckSettings, ctx: CheckContext) -> CheckedTarget:
    """The check's URL (http) or ``host:port`` (tcp), resolved once; refused unless the SSRF rules allow it."""
    from deployguard.notification.urlsafety import check_outbound

    if check.type == "http" and check.url:
        return check_outbound(
            check.url, check.allowed_hosts, ctx.local_mode, field=f"{check.name}.url", resolver=ctx.resolver
        )
    if check.type == "tcp" and check.host and check.port:
        host = f"[{check.host}]" if ":" in check.host else check.host
        # the scheme only carries the host through the same rules; a tcp check speaks no https
        scheme = "http" if ctx.local_mode else "https"
        return check_outbound(f"{scheme}://{host}:{check.port}/", check.allowed_hosts, ctx.local_mode,
                              field=f"{check.name}.host", resolver=ctx.resolver)  # fmt: skip
    raise ValidationCheckError(f"{check.name}: a {check.type} check has no address")


def _document(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _missing_fields(document: Any, expected: dict[str, Any]) -> list[str]:
    if not isinstance(document, dict):
        return [f"body is not a JSON object (expected {', '.join(expected)})"] if expected else []
    return [f"field {key!r} is {document.get(key)!r}, not {want!r}" for key, want in expected.items()
            if document.get(key) != want]  # fmt: skip


def _lambda_invoke(check: CheckSettings, ctx: CheckContext, deadline: float) -> tuple[str, dict[str, Any]]:
    target = ctx.deployment.target
    if not isinstance(target, LambdaTarget):
        raise ValidationCheckError("lambda_invoke needs a Lambda deployment")
    started = time.monotonic()
    function_error, body_text = lambda_invoke.invoke_version(target.function_name, target.new_version, check.payload)
    elapsed_ms = (time.monotonic() - started) * 1000.0
    if function_error:
        raise ValidationCheckError(f"version {target.new_version} raised {function_error}: {body_text[:200]}")
    body = _document(body_text)
    expected_code = check.expect_status_code
    if expected_code is not None and isinstance(body, dict) and body.get("statusCode", expected_code) != expected_code:
        raise ValidationCheckError(f"statusCode {body['statusCode']}, expected {check.expect_status_code}")
    if check.expect_fields:
        inner = body.get("body") if isinstance(body, dict) else None
        problems = _missing_fields(_document(inner) if isinstance(inner, str) else body, check.expect_fields)
        if problems:
            raise ValidationCheckError("; ".join(problems))
    if check.max_response_ms is not None and elapsed_ms > check.max_response_ms:
        raise ValidationCheckError(f"answered in {elapsed_ms:.0f} ms, over {check.max_response_ms:.0f} ms")
    return f"version {target.new_version} answered in {elapsed_ms:.0f} ms", {
        "version": target.new_version,
        "ms": round(elapsed_ms, 1),
    }


def _http(check: CheckSettings, ctx: CheckContext, deadline: float) -> tuple[str, dict[str, Any]]:
    import requests  # only HTTP checks need it: a cold start saved for every other hook

    target = safe_target(check, ctx)
    healthy_by = min(deadline, time.monotonic() + check.wait_until_healthy_seconds)
    polls = 0
    while True:
        polls += 1
        started = time.monotonic()
        timeout = max(0.05, min(check.timeout_seconds, deadline - started))
        try:
            from deployguard.notification.pinned_http import pinned_session  # requests: at the first send

            with pinned_session(target) as session:
                resp = session.get(target.url, timeout=timeout, allow_redirects=False)
            elapsed_ms = (time.monotonic() - started) * 1000.0
            problems = []
            if resp.status_code != check.expect_status:
                problems.append(f"status {resp.status_code}, expected {check.expect_status}")
            if check.max_response_ms is not None and elapsed_ms > check.max_response_ms:
                problems.append(f"answered in {elapsed_ms:.0f} ms, over {check.max_response_ms:.0f} ms")
            if check.expect_fields and not problems:
                problems.extend(_missing_fields(_document(resp.text), check.expect_fields))
            if not problems:
                return f"healthy in {elapsed_ms:.0f} ms", {
                    "status": resp.status_code,
                    "ms": round(elapsed_ms, 1),
                    "polls": polls,
                }
            last = "; ".join(problems)
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: unreachable"
        pause = min(check.poll_interval_seconds, healthy_by - time.monotonic())
        if pause <= 0:
            raise ValidationCheckError(f"{last} (after {polls} poll{'s' if polls > 1 else ''})")
        time.sleep(pause)


def _tcp(check: CheckSettings, ctx: CheckContext, deadline: float) -> tuple[str, dict[str, Any]]:
    from deployguard.notification.urlsafety import open_tcp

    target = safe_target(check, ctx)
    address = f"{check.host}:{check.port}"
    started = time.monotonic()
    timeout = max(0.05, min(check.timeout_seconds, deadline - started))
    try:
        connection = open_tcp(target, timeout)
    except OSError as exc:
        raise ValidationCheckError(f"{address} unreachable: {exc.strerror or exc}") from exc
    connection.close()
    elapsed_ms = (time.monotonic() - started) * 1000.0
    return f"{address} reachable in {elapsed_ms:.0f} ms", {"ms": round(elapsed_ms, 1)}


def _alarms(check: CheckSettings, ctx: CheckContext, deadline: float) -> tuple[str, dict[str, Any]]:
    firing = alarms.firing(check.alarm_prefix, check.alarm_names or ())
    if firing:
        raise ValidationCheckError(f"in ALARM: {', '.join(sorted(firing))}")
    return "no alarm of the service is in ALARM", {}


def _baseline(check: CheckSettings, ctx: CheckContext, deadline: float) -> tuple[str, dict[str, Any]]:
    target = ctx.deployment.target
    stable = (
        f"stable version {target.stable_version}"
        if isinstance(target, LambdaTarget)
        else f"blue task set ({target.stable_target_group or 'target group unknown'})"
    )
    now = clock.now()
    start = now - timedelta(minutes=check.baseline_minutes)
    from deployguard.aws.cloudwatch import MetricsReader, canary_queries

    # a MetricsConfigError (metrics that cannot be read for this target) is a configuration error: not retried
    queries = [q for q in canary_queries("baseline", ctx.deployment, ctx.metrics) if q.key[2] == "baseline"]
    values = MetricsReader().read(queries, start, now, 60)
    summary: dict[str, dict[str, float | int | None]] = {}
    for key, series in values.items():
        points = [v for v in series if v is not None]
        summary[key[1]] = {
            "points": len(points),
            "sum": round(sum(points), 3) if points else None,
            "mean": round(sum(points) / len(points), 3) if points else None,
            "max": round(max(points), 3) if points else None,
        }
    return f"{stable}: last {check.baseline_minutes} min captured", {
        "baseline": summary,
        "from": start.isoformat(),
        "to": now.isoformat(),
    }


_KINDS: dict[str, Callable[[CheckSettings, CheckContext, float], tuple[str, dict[str, Any]]]] = {
    "lambda_invoke": _lambda_invoke,
    "http": _http,
    "tcp": _tcp,
    "alarms": _alarms,
    "baseline": _baseline,
}


def run_check(check: CheckSettings, ctx: CheckContext, deadline: float, sleep: Sleep = time.sleep) -> CheckResult:
    """Run one check with its retries and backoff; never past ``deadline`` (a ``time.monotonic()`` value)."""
    started = time.monotonic()
    attempts, message = 0, ""
    for attempt in range(check.retries + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            message = (message + "; " if message else "") + "no time left before the hook must answer"
            break
        attempts += 1
        budget = min(check.attempt_seconds, remaining)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"check-{check.name}")
        future = pool.submit(_KINDS[check.type], check, ctx, time.monotonic() + budget)
        try:
            message, details = future.result(timeout=budget)
        except concurrent.futures.TimeoutError:
            message = f"attempt {attempts} timed out after {budget:.1f} s"
        except (ConfigError, MetricsConfigError) as exc:  # a retry cannot fix a configuration: fail at once
            pool.shutdown(wait=False)
            message = f"{type(exc).__name__}: {exc} (a configuration error: not retried)"
            break
        except Exception as exc:  # any error of the check is its failure, recorded with its type
            message = f"{type(exc).__name__}: {exc}"
        else:
            pool.shutdown(wait=False)
            duration = (time.monotonic() - started) * 1000.0
            return CheckResult(name=check.name, description=check.description, status="passed",
                               critical=check.critical, attempts=attempts, duration_ms=duration,
                               message=message, details=details)  # fmt: skip
        pool.shutdown(wait=False, cancel_futures=True)  # a hung attempt is abandoned, not waited for
        if attempt < check.retries:
            sleep(max(0.0, min(check.backoff_seconds * 2**attempt, deadline - time.monotonic())))
    return CheckResult(
        name=check.name, description=check.description, status="failed" if check.critical else "warned",
        critical=check.critical, attempts=attempts, duration_ms=(time.monotonic() - started) * 1000.0,
        message=message,
    )  # fmt: skip
