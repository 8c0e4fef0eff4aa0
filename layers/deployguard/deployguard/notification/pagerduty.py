"""PagerDuty Events API v2: trigger on critical, resolve on recovery or rollback.

One PagerDuty incident per deployment (``dedup_key = deployguard/<deployment id>``),
per DeployGuard incident (``deployguard/<deployment id>/incident/<incident id>``, so
every alert grouped into one incident stays one PagerDuty incident) and per alert
without an incident (``deployguard/<deployment id>/alert/<rule>``); repeated triggers
update the open PagerDuty incident instead of opening new ones.

- an event at or above ``trigger_severity``, and every escalation page
  (``details.kind = page``), triggers;
- ``incident_acknowledged`` acknowledges; ``incident_resolved`` or an alert whose
  ``details.state`` is ``resolved`` resolves;
- deployment completed, promotion completed, canary completed, rollback completed and
  an assessment back to ``healthy`` resolve the deployment's key and the keys of the
  alerts and incidents recorded for the deployment (the router defers the resolve of an
  assessment back to healthy until the deployment stayed healthy: the flap guard,
  :mod:`deployguard.notification.flapguard`);
- everything else is not PagerDuty's business (the router records it as suppressed).

No cooldown, rate limit or digest of DeployGuard applies: PagerDuty groups repeated
triggers by ``dedup_key`` and answers HTTP 429 over its own per-routing-key limit, which
delivery retries and then dead-letters (see :mod:`deployguard.notification.settings`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import SecretStr

from deployguard.models import DeploymentEvent, EventType, Severity
from deployguard.notification import formatting as fmt
from deployguard.notification.base import HttpMessage, OutboundMessage
from deployguard.notification.settings import ChannelKind

EVENTS_API_URL = "https://events.pagerduty.com/v2/enqueue"

RECOVERY_EVENTS = frozenset(
    {
        EventType.DEPLOYMENT_COMPLETED,
        EventType.PROMOTION_COMPLETED,
        EventType.CANARY_COMPLETED,
        EventType.ROLLBACK_COMPLETED,
    }
)

_PD_SEVERITY = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.ERROR: "error",
    Severity.CRITICAL: "critical",
}


def deployment_dedup_key(deployment_id: str) -> str:
    return f"deployguard/{deployment_id}"[:255]


def alert_dedup_key(deployment_id: str, alert: str) -> str:
    return f"deployguard/{deployment_id}/alert/{alert}"[:255]


def incident_dedup_key(deployment_id: str, incident_id: str) -> str:
    return f"deployguard/{deployment_id}/incident/{incident_id}"[:255]


def alert_event_key(event: DeploymentEvent) -> str | None:
    """The dedup key of an alert, page or incident event; None for other events."""
    if event.event_type is not EventType.ALERT:
        return None
    incident = event.details.get("incident_id")
    if incident:
        return incident_dedup_key(event.deployment_id, str(incident))
    return alert_dedup_key(event.deployment_id, fmt.alert_name(event) or "alert")


def is_recovery(event: DeploymentEvent) -> bool:
    if event.event_type in RECOVERY_EVENTS:
        return True
    return event.event_type is EventType.ASSESSMENT_STATUS_CHANGED and fmt.health_status(event) == "healthy"


def trigger_payload(routing_key: str, dedup_key: str, event: DeploymentEvent) -> dict[str, Any]:
    custom: dict[str, Any] = {f.title.lower().replace(" ", "_"): f.value for f in fmt.facts(event)}
    custom["event_type"] = event.event_type.value
    custom["event_id"] = event.event_id
    if event.message:
        custom["message"] = event.message
    if event.reasons:
        custom["reasons"] = [fmt.reason_line(r) for r in event.reasons]
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": fmt.truncate(
                f"[{event.environment}] {fmt.label(event)}: {event.service} {event.version} - {event.title}", 1024
            ),
            "source": f"deployguard/{event.service}/{event.environment}",
            "severity": _PD_SEVERITY[event.severity],
            "timestamp": event.at.isoformat(),
            "component": event.service,
            "group": event.environment,
            "class": event.event_type.value,
            "custom_details": custom,
        },
        "client": "DeployGuard",
    }
    links = [
        {"href": url, "text": name} for name, url in event.links.items() if url.startswith(("https://", "http://"))
    ]
    if links:
        body["links"] = links
    return body


def resolve_payload(routing_key: str, dedup_key: str, action: str = "resolve") -> dict[str, Any]:
    """``resolve`` or ``acknowledge``: only the routing key, the action and the dedup key."""
    return {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key}


class PagerDutyChannel:
    kind = ChannelKind.PAGERDUTY

    def __init__(
        self,
        name: str,
        url: str,
        routing_key: Callable[[], SecretStr],
        trigger_severity: Severity = Severity.CRITICAL,
        alert_keys: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.name = name
        self.url = SecretStr(url)
        self._routing_key = routing_key
        self.trigger_severity = trigger_severity
        self._alert_keys = alert_keys or (lambda deployment_id: [])

    def _message(self, payload: dict[str, Any], description: str) -> HttpMessage:
        return HttpMessage.json(self.url, payload, description=description)

    def _action(self, action: str, key: str) -> HttpMessage:
        return self._message(resolve_payload(self._key(), key, action), f"pagerduty {action} {key}")

    def _trigger(self, key: str, event: DeploymentEvent) -> HttpMessage:
        return self._message(trigger_payload(self._key(), key, event), f"pagerduty trigger {key}")

    def triggers(self, event: DeploymentEvent) -> bool:
        """Whether :meth:`render` sends a trigger for ``event`` (a page: the flap guard's deferred resolve
        of the deployment must not close it afterwards)."""
        if alert_event_key(event) is not None:
            kind = event.details.get("kind")
            if fmt.alert_resolved(event) or kind == "incident_acknowledged":
                return False
            return kind == "page" or event.severity.rank >= self.trigger_severity.rank
        return not is_recovery(event) and event.severity.rank >= self.trigger_severity.rank

    def render(self, event: DeploymentEvent) -> list[OutboundMessage]:
        key = alert_event_key(event)
        if key is not None:
            if fmt.alert_resolved(event):
                return [self._action("resolve", key)]
            if event.details.get("kind") == "incident_acknowledged":
                return [self._action("acknowledge", key)]
            return [self._trigger(key, event)] if self.triggers(event) else []
        if is_recovery(event):
            keys = [deployment_dedup_key(event.deployment_id)]
            keys += [k for k in self._alert_keys(event.deployment_id) if k not in keys]
            return [self._action("resolve", k) for k in keys]
        if self.triggers(event):
            return [self._trigger(deployment_dedup_key(event.deployment_id), event)]
        return []

    def render_digest(self, events: Sequence[DeploymentEvent]) -> list[OutboundMessage]:
        """No digest: PagerDuty is never rate limited (each trigger, acknowledge and resolve is sent as it
        comes); events held by an earlier version are sent one by one when the router flushes."""
        return []

    def _key(self) -> str:
        return self._routing_key().get_secret_value()
