"""Microsoft Teams incoming webhooks (and Workflows) with Adaptive Cards.

Payload: ``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": card}]}``
where ``card`` is an Adaptive Card 1.4 (``TextBlock``, ``FactSet``, ``Action.OpenUrl``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from deployguard.models import DeploymentEvent, Severity
from deployguard.notification import formatting as fmt
from deployguard.notification.base import HttpMessage, OutboundMessage
from deployguard.notification.settings import ChannelKind

if TYPE_CHECKING:
    from pydantic import SecretStr

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
_COLOR = {
    Severity.INFO: "Accent",
    Severity.WARNING: "Warning",
    Severity.ERROR: "Attention",
    Severity.CRITICAL: "Attention",
}


def _message(card_body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": card_body,
        "msteams": {"width": "Full"},
    }
    if actions:
        card["actions"] = actions
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }


def teams_card(event: DeploymentEvent) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"{fmt.label(event)}: {event.service} {event.version}",
            "weight": "Bolder",
            "size": "Medium",
            "color": _COLOR[event.severity],
            "wrap": True,
        },
        {"type": "TextBlock", "text": event.title, "wrap": True},
    ]
    if event.message:
        body.append({"type": "TextBlock", "text": event.message, "wrap": True, "isSubtle": True})
    body.append({"type": "FactSet", "facts": [{"title": f.title, "value": f.value} for f in fmt.facts(event)]})
    if event.reasons:
        body.append({"type": "TextBlock", "text": "Reasons", "weight": "Bolder", "wrap": True})
        body += [{"type": "TextBlock", "text": f"- {fmt.reason_line(r)}", "wrap": True} for r in event.reasons]
    body.append(
        {
            "type": "TextBlock",
            "text": f"DeployGuard · {event.event_type.value} · {event.at.strftime('%Y-%m-%d %H:%M:%S UTC')}",
            "isSubtle": True,
            "size": "Small",
            "wrap": True,
        }
    )
    actions = [
        {"type": "Action.OpenUrl", "title": name, "url": url}
        for name, url in event.links.items()
        if url.startswith(("https://", "http://"))
    ][:5]
    return _message(body, actions)


def teams_digest(events: Sequence[DeploymentEvent], max_events: int) -> dict[str, Any]:
    shown = list(events)[:max_events]
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": fmt.digest_heading(events), "weight": "Bolder", "size": "Medium", "wrap": True}
    ]
    body += [{"type": "TextBlock", "text": fmt.short_text(e, limit=200), "wrap": True} for e in shown]
    if len(events) > len(shown):
        body.append({"type": "TextBlock", "text": f"…and {len(events) - len(shown)} more", "wrap": True})
    return _message(body, [])


class TeamsChannel:
    kind = ChannelKind.TEAMS

    def __init__(self, name: str, url: Callable[[], SecretStr], max_digest_events: int = 50) -> None:
        self.name = name
        self._url = url
        self.max_digest_events = max_digest_events

    def render(self, event: DeploymentEvent) -> list[OutboundMessage]:
        return [HttpMessage.json(self._url(), teams_card(event), description=f"teams {fmt.label(event)}")]

    def render_digest(self, events: Sequence[DeploymentEvent]) -> list[OutboundMessage]:
        payload = teams_digest(events, self.max_digest_events)
        return [HttpMessage.json(self._url(), payload, description=f"teams digest of {len(events)}")]
