"""What a channel hands to delivery: an HTTP POST or an SNS publish."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pydantic import SecretStr

    from deployguard.models import DeploymentEvent
    from deployguard.notification.settings import ChannelKind


@dataclass(frozen=True)
class HttpMessage:
    """A JSON POST. ``url`` is a secret (webhook URLs are credentials) and never logged."""

    url: SecretStr
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @classmethod
    def json(cls, url: SecretStr, payload: dict[str, Any], description: str = "", **headers: str) -> HttpMessage:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return cls(url=url, body=body, headers={"Content-Type": "application/json", **headers}, description=description)

    def payload(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class SnsMessage:
    """A publish to an SNS topic whose subscriptions are email addresses or phone numbers."""

    topic_arn: str
    body: str
    subject: str | None = None
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    description: str = ""


OutboundMessage = HttpMessage | SnsMessage


class Channel(Protocol):
    """One configured destination."""

    name: str
    kind: ChannelKind

    def render(self, event: DeploymentEvent) -> list[OutboundMessage]:
        """The messages that tell ``event``; empty when this channel does not act on it."""
        ...

    def render_digest(self, events: Sequence[DeploymentEvent]) -> list[OutboundMessage]:
        """One message for a burst of events held by the rate limit (empty: not sent)."""
        ...
