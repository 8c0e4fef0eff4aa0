"""What every channel says about an event: labels, facts, reasons, plain text.

Conventional keys of ``DeploymentEvent.details`` read here (all optional):
``duration_seconds``, ``components`` (list or string), ``error``, ``status`` or
``health_status`` (assessment status), ``step_index``, ``canary_weight``,
``alert`` or ``rule`` (alert name) and ``state`` (``firing``/``resolved`` for alerts);
from the alert engine and incidents: ``kind`` (``alert``, ``page``,
``incident_opened``, ``incident_acknowledged``, ``incident_resolved``),
``incident_id``, ``page`` and ``routes`` (route, role or channel names to notify); the guard's own
CloudWatch alarms (``kind`` ``guard_alarm``, :mod:`deployguard.notification.guard_alarms`): ``alarm_state``,
``previous_state``, ``reason``, ``region``, ``account`` and ``metric``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deployguard.models import DeploymentEvent, EventType, Severity, VerdictReason

LABELS: dict[EventType, str] = {
    EventType.DEPLOYMENT_STARTED: "Deployment Started",
    EventType.DEPLOYMENT_COMPLETED: "Deployment Completed",
    EventType.DEPLOYMENT_FAILED: "Deployment Failed",
    EventType.ROLLBACK_INITIATED: "Rollback Initiated",
    EventType.ROLLBACK_COMPLETED: "Rollback Completed",
    EventType.ROLLBACK_FAILED: "Rollback Failed",
    EventType.CANARY_STARTED: "Canary Started",
    EventType.CANARY_STEP_ADVANCED: "Canary Step Advanced",
    EventType.CANARY_COMPLETED: "Canary Completed",
    EventType.PROMOTION_COMPLETED: "Promotion Completed",
    EventType.VALIDATION_FAILED: "Validation Failed",
    EventType.VALIDATION_WARNED: "Validation Warning",
    EventType.ASSESSMENT_STATUS_CHANGED: "Assessment Status Changed",
    EventType.DEPLOYMENT_LONG_RUNNING: "Long-Running Deployment",
    EventType.CONTROL_ACTION: "Control Action",
    EventType.ALERT: "Alert",
}

SEVERITY_EMOJI = {
    Severity.INFO: ":information_source:",
    Severity.WARNING: ":warning:",
    Severity.ERROR: ":x:",
    Severity.CRITICAL: ":rotating_light:",
}

# SNS: subjects are ASCII, without line breaks, at most 100 characters
_SUBJECT_LIMIT = 100
_NON_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def is_guard_alarm(event: DeploymentEvent) -> bool:
    """One of DeployGuard's own CloudWatch alarms (ALARM, OK or INSUFFICIENT_DATA)."""
    return event.event_type is EventType.ALERT and event.details.get("kind") == "guard_alarm"


def label(event: DeploymentEvent) -> str:
    text = LABELS[event.event_type]
    if is_guard_alarm(event):
        return f"Guard Alarm: {alert_name(event)}"
    status = health_status(event)
    if event.event_type is EventType.ASSESSMENT_STATUS_CHANGED and status:
        return f"Assessment {status.title()}"
    if event.event_type is EventType.ALERT and alert_name(event):
        return f"Alert: {alert_name(event)}"
    return text


def health_status(event: DeploymentEvent) -> str | None:
    value = event.details.get("status") or event.details.get("health_status")
    return str(value).lower() if value else None


def alert_name(event: DeploymentEvent) -> str | None:
    value = event.details.get("alert") or event.details.get("rule")
    return str(value) if value else None


def alert_resolved(event: DeploymentEvent) -> bool:
    if event.details.get("kind") == "incident_resolved":
        return True
    return str(event.details.get("state", "")).lower() in ("resolved", "ok", "cleared")


def duration_text(seconds: Any) -> str | None:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        return None
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def components(event: DeploymentEvent) -> str:
    value = event.details.get("components")
    if isinstance(value, list | tuple) and value:
        return ", ".join(str(v) for v in value)
    if isinstance(value, str) and value:
        return value
    return event.service


def error_text(event: DeploymentEvent) -> str | None:
    value = event.details.get("error")
    return str(value) if value else None


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def reason_line(reason: VerdictReason) -> str:
    """``error_rate FAIL: +320.0% (baseline 0.01, canary 0.042), confidence 99%: message``."""
    parts = [f"{reason.metric_id} {reason.status.upper()}"]
    numbers = []
    if reason.effect is not None:
        numbers.append(percent(reason.effect))
    if reason.baseline_value is not None or reason.canary_value is not None:
        numbers.append(f"baseline {_num(reason.baseline_value)}, canary {_num(reason.canary_value)}")
    if reason.confidence is not None:
        numbers.append(f"confidence {reason.confidence * 100:.0f}%")
    text = parts[0] + (": " + "; ".join(numbers) if numbers else "")
    return f"{text}. {reason.message}" if reason.message else text


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


@dataclass(frozen=True)
class Fact:
    title: str
    value: str


def guard_alarm_facts(event: DeploymentEvent) -> list[Fact]:
    """A guard alarm's name, state, reason, time, region and account (and what else it says)."""
    d = event.details
    state = str(d.get("alarm_state") or event.version)
    if d.get("previous_state"):
        state += f" (was {d['previous_state']})"
    items = [
        Fact("Alarm", alert_name(event) or ""),
        Fact("State", state),
        Fact("Reason", str(d.get("reason") or "")),
        Fact("Time", utc_stamp(event.at)),
        Fact("Region", str(d.get("region") or "")),
        Fact("Account", str(d.get("account") or "")),
        Fact("Environment", event.environment),
        Fact("Severity", event.severity.value),
    ]
    if d.get("metric"):
        items.append(Fact("Metric", str(d["metric"])))
    return [f for f in items if f.value]


def facts(event: DeploymentEvent) -> list[Fact]:
    if is_guard_alarm(event):
        return guard_alarm_facts(event)
    items = [
        Fact("Service", event.service),
        Fact("Version", event.version),
        Fact("Environment", event.environment),
        Fact("Severity", event.severity.value),
        Fact("Deployment", event.deployment_id),
    ]
    if event.details.get("components"):
        items.append(Fact("Components", components(event)))
    duration = duration_text(event.details.get("duration_seconds"))
    if duration:
        items.append(Fact("Duration", duration))
    weight = event.details.get("canary_weight")
    if isinstance(weight, int | float) and not isinstance(weight, bool):
        items.append(Fact("Canary weight", f"{weight * 100:.0f}%" if weight <= 1 else f"{weight:.0f}%"))
    status = health_status(event)
    if status:
        items.append(Fact("Status", status))
    error = error_text(event)
    if error:
        items.append(Fact("Error", error))
    return items


def subject(event: DeploymentEvent) -> str:
    """Email subject: ``[production] Deployment Failed``."""
    return clean_subject(f"[{event.environment}] {label(event)}")


def clean_subject(text: str) -> str:
    return _NON_PRINTABLE.sub("?", " ".join(text.split()))[:_SUBJECT_LIMIT]


def plain_text(event: DeploymentEvent) -> str:
    """Plain-text body for email: every fact, reasons and links."""
    lines = [f"{label(event)}: {event.title}", ""]
    if event.message:
        lines += [event.message, ""]
    if is_guard_alarm(event):
        lines += [f"{f.title + ':':<14} {f.value}" for f in guard_alarm_facts(event)]
        if event.links:
            lines += ["", "Links:"] + [f"  {name}: {url}" for name, url in event.links.items()]
        return "\n".join([*lines, "", f"Event id: {event.event_id} ({event.event_type.value})"])
    lines += [
        f"Deployment id: {event.deployment_id}",
        f"Environment:   {event.environment}",
        f"Service:       {event.service}",
        f"Version:       {event.version}",
        f"Components:    {components(event)}",
        f"Severity:      {event.severity.value}",
        f"Duration:      {duration_text(event.details.get('duration_seconds')) or 'n/a'}",
        f"Error:         {error_text(event) or 'none'}",
        f"At:            {event.at.isoformat()}",
    ]
    if event.reasons:
        lines += ["", "Reasons:"] + [f"  - {reason_line(r)}" for r in event.reasons]
    if event.links:
        lines += ["", "Links:"] + [f"  {name}: {url}" for name, url in event.links.items()]
    lines += ["", f"Event id: {event.event_id} ({event.event_type.value})"]
    return "\n".join(lines)


def short_text(event: DeploymentEvent, limit: int = 140) -> str:
    """One line for SMS and summaries."""
    if is_guard_alarm(event):
        reason = event.details.get("reason")
        text = f"[{event.environment}] {label(event)} is {event.version}" + (f" - {reason}" if reason else "")
        return text if len(text) <= limit else text[: limit - 1] + "…"
    text = f"[{event.environment}] {label(event)}: {event.service} {event.version} ({event.deployment_id})"
    error = error_text(event)
    if error:
        text += f" - {error}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def digest_heading(events: Sequence[DeploymentEvent]) -> str:
    deployments = {e.deployment_id for e in events}
    return f"DeployGuard digest: {len(events)} events for {len(deployments)} deployment(s)"


def digest_environment(events: Sequence[DeploymentEvent]) -> str:
    environments = sorted({e.environment for e in events})
    return environments[0] if len(environments) == 1 else "multiple"


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def utc_stamp(at: datetime) -> str:
    """``2026-03-01 12:00:00 UTC``: ``at`` converted to UTC (a time without offset is taken as UTC)."""
    when = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")
