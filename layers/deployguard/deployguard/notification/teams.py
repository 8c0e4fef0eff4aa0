"""Microsoft Teams incoming webhooks (and Workflows) with Adaptive Cards.

Payload: ``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": card}]}``
where ``card`` is an Adaptive Card 1.4 (``TextBlock``, ``FactSet``, ``Action.OpenUrl``).
TextBlocks and facts render Markdown: text from the event is escaped (:func:`escape_markdown`) and
cut like Slack's fields, and a card is kept under Teams' message size (about 28 KB, :data:`MAX_CARD_BYTES`).
"""

from __future__ import annotations

import json
import re
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
MAX_CARD_BYTES = 27_000  # Teams refuses a message over about 28 KB (HTTP 413)
_FIELD_CHARS = 1900  # a fact's value, the message (as Slack's fields)
_LINE_CHARS = 500  # the title, a reason
_MAX_REASONS = 20
_MAX_ACTIONS = 5
# TextBlocks and facts render Markdown: what the user wrote must not become a link or emphasis
_MARKDOWN = re.compile(r"([\\`*_~\[\]()<>#|])")


def escape_markdown(text: str) -> str:
    """``text`` shown as written: Markdown's link, emphasis and code characters escaped."""
    return _MARKDOWN.sub(r"\\\1", text)


def _text(text: str, limit: int) -> str:
    """User text for a TextBlock or fact: cut to ``limit`` characters first, then escaped."""
    return escape_markdown(fmt.truncate(text, limit))


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


def _size(payload: Any) -> int:
    return len(json.dumps(payload, ensure_ascii=False).encode())


def _fit(message: dict[str, Any]) -> dict[str, Any]:
    """Shorten the longest texts of the card (TextBlocks, fact values) until it is at most
    :data:`MAX_CARD_BYTES`: Teams refuses a larger one, and every retry of it would fail again."""
    body = message["attachments"][0]["content"]["body"]
    while _size(message) > MAX_CARD_BYTES:
        holders: list[tuple[dict[str, Any], str]] = [(b, "text") for b in body if b.get("type") == "TextBlock"]
        holders += [(f, "value") for b in body if b.get("type") == "FactSet" for f in b["facts"]]
        holder, key = max(holders, key=lambda h: len(h[0][h[1]]))
        text = holder[key]
        if len(text) <= 40:  # nothing long left: the card is made of many short parts (cannot happen here)
            break
        cut = fmt.truncate(text, len(text) // 2)
        holder[key] = cut[:-2] + cut[-1] if cut.endswith("\\…") else cut  # no dangling escape
    return message


def teams_card(event: DeploymentEvent) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _text(f"{fmt.label(event)}: {event.service} {event.version}", 200),
            "weight": "Bolder",
            "size": "Medium",
            "color": _COLOR[event.severity],
            "wrap": True,
        },
        {"type": "TextBlock", "text": _text(event.title, _LINE_CHARS), "wrap": True},
    ]
    if event.message:
        body.append({"type": "TextBlock", "text": _text(event.message, _FIELD_CHARS), "wrap": True, "isSubtle": True})
    facts = [{"title": f.title, "value": _text(f.value, _FIELD_CHARS)} for f in fmt.facts(event)]
    body.append({"type": "FactSet", "facts": facts})
    if event.reasons:
        body.append({"type": "TextBlock", "text": "Reasons", "weight": "Bolder", "wrap": True})
        shown = event.reasons[:_MAX_REASONS]
        body += [
            {"type": "TextBlock", "text": f"- {_text(fmt.reason_line(r), _LINE_CHARS)}", "wrap": True} for r in shown
        ]
        if len(event.reasons) > len(shown):
            more = f"…and {len(event.reasons) - len(shown)} more reasons"
            body.append({"type": "TextBlock", "text": more, "wrap": True})
    body.append(
        {
            "type": "TextBlock",
            "text": f"DeployGuard · {event.event_type.value} · {fmt.utc_stamp(event.at)}",
            "isSubtle": True,
            "size": "Small",
            "wrap": True,
        }
    )
    actions = [
        {"type": "Action.OpenUrl", "title": fmt.truncate(name, 75), "url": url}
        for name, url in event.links.items()
        if url.startswith(("https://", "http://")) and len(url) <= 2000
    ][:_MAX_ACTIONS]
    return _fit(_message(body, actions))


def teams_digest(events: Sequence[DeploymentEvent], max_events: int) -> dict[str, Any]:
    """The held events, one TextBlock each (at most ``max_events``, and as many as fit the card's size);
    the others counted in "…and N more"."""
    heading = {"type": "TextBlock", "text": fmt.digest_heading(events), "weight": "Bolder", "size": "Medium",
               "wrap": True}  # fmt: skip
    lines = [{"type": "TextBlock", "text": _text(fmt.short_text(e, limit=200), 260), "wrap": True}
             for e in list(events)[:max_events]]  # fmt: skip
    budget = MAX_CARD_BYTES - _size(_message([heading], [])) - 100  # 100: the "…and N more" block
    shown: list[dict[str, Any]] = []
    for line in lines:
        budget -= _size(line) + 1
        if budget < 0:
            break
        shown.append(line)
    body = [heading, *shown]
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
