"""Slack incoming webhooks with Block Kit messages.

Payload: ``{"text": fallback, "blocks": [header, section(fields), section(reasons),
actions(buttons), context]}`` within Block Kit limits (header 150 characters,
10 fields, section text 3000, 50 blocks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from deployguard.notification import formatting as fmt
from deployguard.notification.base import HttpMessage, OutboundMessage
from deployguard.notification.settings import ChannelKind

if TYPE_CHECKING:
    from pydantic import SecretStr

    from deployguard.models import DeploymentEvent

_MAX_FIELDS = 10
_MAX_BUTTONS = 5


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": fmt.truncate(text, 3000)}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_blocks(event: DeploymentEvent) -> dict[str, Any]:
    header = f"{fmt.label(event)}: {event.service} {event.version}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": fmt.truncate(header, 150), "emoji": True}},
        {
            "type": "section",
            "text": _mrkdwn(
                f"{fmt.SEVERITY_EMOJI[event.severity]} *{_escape(event.title)}*"
                + (f"\n{_escape(event.message)}" if event.message else "")
            ),
            "fields": [
                _mrkdwn(f"*{f.title}*\n{fmt.truncate(_escape(f.value), 1900)}") for f in fmt.facts(event)[:_MAX_FIELDS]
            ],
        },
    ]
    if event.reasons:
        lines = "\n".join(f"• {_escape(fmt.reason_line(r))}" for r in event.reasons)
        blocks.append({"type": "section", "text": _mrkdwn(f"*Reasons*\n{lines}")})
    buttons = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": fmt.truncate(name, 75)},
            "url": url,
            "action_id": f"link-{i}",
        }
        for i, (name, url) in enumerate(list(event.links.items())[:_MAX_BUTTONS])
        if url.startswith(("https://", "http://")) and len(url) <= 3000
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(f"DeployGuard · `{event.event_type.value}` · {event.at.strftime('%Y-%m-%d %H:%M:%S UTC')}")
            ],
        }
    )
    return {"text": fmt.short_text(event, limit=300), "blocks": blocks}


def slack_digest(events: Sequence[DeploymentEvent], max_events: int) -> dict[str, Any]:
    heading = fmt.digest_heading(events)
    shown = list(events)[:max_events]
    lines = "\n".join(f"{fmt.SEVERITY_EMOJI[e.severity]} {_escape(fmt.short_text(e, limit=200))}" for e in shown)
    if len(events) > len(shown):
        lines += f"\n…and {len(events) - len(shown)} more"
    return {
        "text": heading,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": fmt.truncate(heading, 150), "emoji": True}},
            {"type": "section", "text": _mrkdwn(lines)},
            {"type": "context", "elements": [_mrkdwn("Held by the channel's rate limit and sent as one message")]},
        ],
    }


class SlackChannel:
    kind = ChannelKind.SLACK

    def __init__(self, name: str, url: Callable[[], SecretStr], max_digest_events: int = 50) -> None:
        self.name = name
        self._url = url
        self.max_digest_events = max_digest_events

    def render(self, event: DeploymentEvent) -> list[OutboundMessage]:
        return [HttpMessage.json(self._url(), slack_blocks(event), description=f"slack {fmt.label(event)}")]

    def render_digest(self, events: Sequence[DeploymentEvent]) -> list[OutboundMessage]:
        payload = slack_digest(events, self.max_digest_events)
        return [HttpMessage.json(self._url(), payload, description=f"slack digest of {len(events)}")]
