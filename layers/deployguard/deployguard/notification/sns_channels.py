"""Email and SMS through SNS topic subscriptions.

Email: subject ``[production] Deployment Failed`` and a plain-text body with the
deployment id, environment, components, duration, error, reasons and links.
SMS: one short line (transactional SMS type) in the GSM 03.38 alphabet (:func:`gsm7`), cut with an
ASCII "..." to 140 septets: one character outside it (even "…") would send the whole SMS as UCS-2,
70 characters a segment, three segments for one page.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

from deployguard.notification import formatting as fmt
from deployguard.notification.base import OutboundMessage, SnsMessage
from deployguard.notification.settings import ChannelKind

if TYPE_CHECKING:
    from deployguard.models import DeploymentEvent

SMS_LIMIT = 140  # septets
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€")  # two septets each (an escape, then the character)
_ASCII = {  # typographic punctuation outside GSM 03.38: its ASCII look-alike
    "\u2026": "...", "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"',
    "\u201e": '"', "\u2013": "-", "\u2014": "-", "\u2022": "-",
}  # fmt: skip


def _gsm(text: str) -> bool:
    return all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in text)


def gsm7(text: str) -> str:
    """``text`` in the GSM 03.38 alphabet: typographic punctuation as ASCII, accents dropped where the
    letter has none in GSM (``ł`` stays ``?``), line breaks and runs of spaces as one space, the rest ``?``."""
    out: list[str] = []
    for char in " ".join(text.split()):
        char = _ASCII.get(char, char)
        if not _gsm(char):
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            char = base if base and _gsm(base) else "?"
        out.append(char)
    return "".join(out)


def sms_text(text: str, limit: int = SMS_LIMIT) -> str:
    """``text`` in GSM 03.38, at most ``limit`` septets, cut with "..."."""
    text = gsm7(text)

    def septets(value: str) -> int:
        return sum(2 if c in _GSM_EXTENSION else 1 for c in value)

    if septets(text) <= limit:
        return text
    while septets(text) > limit - 3:
        text = text[:-1]
    return text + "..."


class EmailChannel:
    kind = ChannelKind.EMAIL

    def __init__(self, name: str, topic_arn: str, max_digest_events: int = 50) -> None:
        self.name = name
        self.topic_arn = topic_arn
        self.max_digest_events = max_digest_events

    def render(self, event: DeploymentEvent) -> list[OutboundMessage]:
        return [
            SnsMessage(
                topic_arn=self.topic_arn,
                subject=fmt.subject(event),
                body=fmt.plain_text(event),
                description=f"email {fmt.subject(event)}",
            )
        ]

    def render_digest(self, events: Sequence[DeploymentEvent]) -> list[OutboundMessage]:
        shown = list(events)[: self.max_digest_events]
        lines = [fmt.digest_heading(events), ""] + [f"- {fmt.short_text(e, limit=300)}" for e in shown]
        if len(events) > len(shown):
            lines.append(f"...and {len(events) - len(shown)} more")
        subject = fmt.clean_subject(f"[{fmt.digest_environment(events)}] DeployGuard digest: {len(events)} events")
        return [SnsMessage(topic_arn=self.topic_arn, subject=subject, body="\n".join(lines), description=subject)]


class SmsChannel:
    kind = ChannelKind.SMS

    def __init__(self, name: str, topic_arn: str, sender_id: str | None = None) -> None:
        self.name = name
        self.topic_arn = topic_arn
        self.sender_id = sender_id

    def _attributes(self) -> dict[str, dict[str, str]]:
        attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}}
        if self.sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": self.sender_id}
        return attributes

    def render(self, event: DeploymentEvent) -> list[OutboundMessage]:
        text = sms_text(fmt.short_text(event, limit=10 * SMS_LIMIT))
        return [SnsMessage(self.topic_arn, text, attributes=self._attributes(), description=f"sms {fmt.label(event)}")]

    def render_digest(self, events: Sequence[DeploymentEvent]) -> list[OutboundMessage]:
        worst = max(events, key=lambda e: e.severity.rank)
        text = sms_text(f"DeployGuard: {len(events)} events; worst: {fmt.short_text(worst, limit=10 * SMS_LIMIT)}")
        return [SnsMessage(self.topic_arn, text, attributes=self._attributes(), description="sms digest")]
