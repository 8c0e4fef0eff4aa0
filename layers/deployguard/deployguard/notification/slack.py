"""Slack incoming webhooks with Block Kit messages.

Payload: ``{"text": fallback, "blocks": [header, section(fields), section(reasons),
actions(buttons), context]}`` within Block Kit limits (header 150 characters,
10 fields, section text 3000, 50 blocks). A digest's lines fill as many sections as
they need (none cut); those past the limits are counted in "…and N more".
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
_SECTION_CHARS = 3000  # a section's text
_MAX_DIGEST_SECTIONS = 48  # 50 blocks a message, less the digest's header and context


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
            "elements": [_mrkdwn(f"DeployGuard · `{event.event_type.value}` · {fmt.utc_stamp(event.at)}")],
        }
    )
    # the fallback (notifications, clients without blocks) is mrkdwn too: "<!channel>" there would ping
    return {"text": _escape(fmt.short_text(event, limit=300)), "blocks": blocks}


def _digest_sections(lines: list[str], total: int) -> list[str]:
    """``lines`` (one per event, ``total`` events) in section texts of at most 3000 characters, at most
    :data:`_MAX_DIGEST_SECTIONS` of them, none cut; what does not fit is counted in a last
    "…and N more" line, so that every event is either shown whole or counted."""
    sections: list[list[str]] = [[]]
    size = 0  # of the last section's text
    for line in lines:
        added = len(line) + (1 if sections[-1] else 0)
        if sections[-1] and size + added > _SECTION_CHARS:
            if len(sections) >= _MAX_DIGEST_SECTIONS:
                break
            sections.append([])
            size, added = 0, len(line)
        sections[-1].append(line)
        size += added
    shown = sum(len(section) for section in sections)
    while shown < total:
        more = f"…and {total - shown} more"
        if size + 1 + len(more) <= _SECTION_CHARS:
            sections[-1].append(more)
            break
        if len(sections) < _MAX_DIGEST_SECTIONS:
            sections.append([more])
            break
        dropped = sections[-1].pop()  # no room for the count: one event fewer shown
        size -= len(dropped) + 1
        shown -= 1
    return ["\n".join(section) for section in sections if section]


def slack_digest(events: Sequence[DeploymentEvent], max_events: int) -> dict[str, Any]:
    heading = fmt.digest_heading(events)
    shown = list(events)[:max_events]
    lines = [
        f"{fmt.SEVERITY_EMOJI[e.severity]} {_escape(' '.join(fmt.short_text(e, limit=200).split()))}" for e in shown
    ]
    sections = _digest_sections(lines, len(events)) if events else []
    return {
        "text": heading,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": fmt.truncate(heading, 150), "emoji": True}},
            *({"type": "section", "text": _mrkdwn(text)} for text in sections),
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
