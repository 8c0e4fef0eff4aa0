"""Generic webhooks: a JSON body signed with HMAC-SHA256.

Headers: ``X-DeployGuard-Timestamp: <unix seconds>`` and
``X-DeployGuard-Signature: sha256=<hex>`` where the hex digest is
``HMAC-SHA256(key, f"{timestamp}.{body}")`` (the timestamp stops replays);
``X-DeployGuard-Event`` carries the event type and ``X-DeployGuard-Delivery`` an id
that stays the same across retries, so a receiver can drop duplicates.
Receivers check with :func:`verify_signature`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from deployguard import clock
from deployguard.notification import formatting as fmt
from deployguard.notification.base import HttpMessage, OutboundMessage
from deployguard.notification.settings import ChannelKind

if TYPE_CHECKING:
    from pydantic import SecretStr

    from deployguard.models import DeploymentEvent

TIMESTAMP_HEADER = "X-DeployGuard-Timestamp"
SIGNATURE_HEADER = "X-DeployGuard-Signature"
EVENT_HEADER = "X-DeployGuard-Event"
DELIVERY_HEADER = "X-DeployGuard-Delivery"
SCHEMA_VERSION = "1"


def sign(key: str | bytes, timestamp: str, body: bytes) -> str:
    secret = key.encode("utf-8") if isinstance(key, str) else key
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    key: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> bool:
    """True if ``signature`` is right for ``body`` and the timestamp is recent."""
    try:
        age = abs((now if now is not None else clock.now().timestamp()) - int(timestamp))
    except ValueError:
        return False
    if age > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(key, timestamp, body), signature)


def event_body(event: DeploymentEvent) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "event",
        "label": fmt.label(event),
        "summary": fmt.short_text(event, limit=300),
        "event": event.model_dump(mode="json"),
    }


def digest_body(events: Sequence[DeploymentEvent]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "digest",
        "summary": fmt.digest_heading(events),
        "events": [e.model_dump(mode="json") for e in events],
    }


class WebhookChannel:
    kind = ChannelKind.WEBHOOK

    def __init__(
        self,
        name: str,
        url: Callable[[], SecretStr],
        signing_key: Callable[[], SecretStr],
        signature_header: str = SIGNATURE_HEADER,
    ) -> None:
        self.name = name
        self._url = url
        self._signing_key = signing_key
        self.signature_header = signature_header

    def _signed(self, payload: dict[str, Any], event_type: str, delivery_id: str, description: str) -> HttpMessage:
        unsigned = HttpMessage.json(self._url(), payload, description=description)
        timestamp = str(int(clock.now().timestamp()))
        signature = sign(self._signing_key().get_secret_value(), timestamp, unsigned.body)
        headers = {
            **unsigned.headers,
            TIMESTAMP_HEADER: timestamp,
            self.signature_header: signature,
            EVENT_HEADER: event_type,
            DELIVERY_HEADER: delivery_id,
        }
        return HttpMessage(url=unsigned.url, body=unsigned.body, headers=headers, description=description)

    def render(self, event: DeploymentEvent) -> list[OutboundMessage]:
        return [
            self._signed(
                event_body(event),
                event.event_type.value,
                f"{event.event_id}/{self.name}",
                f"webhook {fmt.label(event)}",
            )
        ]

    def render_digest(self, events: Sequence[DeploymentEvent]) -> list[OutboundMessage]:
        first = events[0].event_id if events else "empty"
        return [
            self._signed(
                digest_body(events), "digest", f"digest-{first}/{self.name}", f"webhook digest of {len(events)}"
            )
        ]
