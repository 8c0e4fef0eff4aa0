"""Publishing deployment events on the SNS topic.

SNS takes a message of at most 256 KiB (the message and its attributes); a larger one is refused
(InvalidParameter: "Message too long") however often it is sent. An event over the limit (its
``details`` can be large: every check's report) is sent trimmed (:func:`fit_for_sns`): the same
event id, type and time, its largest parts trimmed first (reasons, message, the details other than
those the router routes and acts on, :data:`ROUTING_DETAILS`, which are kept), with a marker saying
what was left out (the deployment's history keeps the event whole).
A refusal no retry changes (:func:`refused_for_good`: an invalid parameter SNS says is the message,
its attributes, its subject or its size) is told from all others (throttling, credentials, 5xx, the
network, the topic, its ARN or key, an expired request, an unknown code: every event waits for those):
the outbox gives such an event up after a few attempts instead of holding the others. The subject is
made what SNS takes (:func:`sns_subject`), so no title makes an event unpublishable.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from deployguard.aws import clients

if TYPE_CHECKING:
    from deployguard.models import DeploymentEvent

# SNS subject lines are limited to 100 characters
_SUBJECT_LIMIT = 100
SNS_MESSAGE_LIMIT = 262_144  # bytes, the message and its attributes together
_ATTRIBUTES_RESERVE = 2_048  # the attributes (names, types, values) and the subject, with room to spare
TRIMMED = "trimmed"  # the key of the marker saying what was left out of an event too large for SNS
# the details the router reads to route and act (notification/formatting.py, pagerduty.py, noise.py,
# settings.py's routes): kept when an event is trimmed, or PagerDuty would trigger instead of resolving,
# a page lose its routes, the noise control merge events it tells apart
ROUTING_DETAILS = frozenset({
    "kind", "status", "health_status", "previous", "state", "incident_id", "alert_id", "rule", "alert", "routes",
    "page", "step_index", "canary_weight", "duration_seconds",
})  # fmt: skip
_MARKER_KEYS = frozenset({TRIMMED, "original_bytes", "detail_keys"})
_FIELD_LIMIT = 4_096  # bytes of one routing field kept when the routing fields alone are too large
_CUT = " [cut: too long for SNS]"  # the end of a message cut
_MARKER_RESERVE = 2_048  # bytes kept for the marker (what was left out)
_MESSAGE_FLOOR = 1_000  # characters of a message kept while other parts can be trimmed

# the codes of a refusal that may be about the message itself; only when SNS's message says so
# (:data:`_ABOUT_THE_MESSAGE`): the same codes are answered for a wrong-region or malformed TopicArn or a
# FIFO topic without MessageGroupId, which every event meets alike and must wait out
_PARAMETER_CODES = frozenset({"InvalidParameter", "InvalidParameterValue", "ParameterValueInvalid"})
_ABOUT_THE_MESSAGE = re.compile(
    r"\bmessage\b(?!\s*group)|message\s*attribute|\bsubject\b|too\s+long|\bsize\b|\blength\b", re.IGNORECASE
)


def refused_for_good(exc: BaseException) -> bool:
    """Whether SNS refused a Publish for this message itself, so that sending it again never passes: an
    invalid parameter whose reason names the message, its attributes or subject, or its size ("Message too
    long"). Everything else waits (throttling, credentials, 5xx, the network, the topic's own state or ARN,
    an expired request, a region not opted in, a code unknown to us): every event meets those alike, and
    giving events up for them would empty the outbox."""
    if not isinstance(exc, ClientError):
        return False  # the network, a timeout, a bug of ours: not the event's fault
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if isinstance(status, int) and status >= 500:
        return False
    if str(error.get("Code", "")) not in _PARAMETER_CODES:
        return False
    return bool(_ABOUT_THE_MESSAGE.search(str(error.get("Message", ""))))


def sns_subject(text: str) -> str | None:
    """``text`` as an SNS subject takes it (ASCII printable, no line breaks, at most 100 characters): accents
    folded, other characters and runs of whitespace replaced; None when nothing is left (no subject)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    printable = "".join(c if " " <= c <= "~" else " " for c in folded)
    subject = " ".join(printable.split())[:_SUBJECT_LIMIT].strip()
    return subject or None


def _size(event: DeploymentEvent) -> int:
    return len(event.model_dump_json().encode())


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode())


def _cut_message(event: DeploymentEvent, limit: int, floor: int = 0) -> DeploymentEvent:
    """``event`` with its message cut (not below ``floor`` characters) until it fits in ``limit`` bytes."""
    cut = _CUT
    while (over := _size(event) - limit) > 0 and len(event.message) > floor:
        # cut in proportion to the bytes the message takes in JSON (escapes, multi-byte characters)
        message = event.message
        as_json = _json_bytes(message)
        keep = min(len(message) - 1, int(len(message) * (as_json - over) / as_json) - len(cut))
        keep = max(keep, floor)
        event = event.model_copy(update={"message": message[:keep] + cut if keep > 0 else ""})
        if keep == floor:
            break
    return event


def _level(sizes: list[int], budget: int) -> int:
    """The largest level such that the parts, each cut down to it (``min(size, level)``), take at most
    ``budget`` bytes together: the largest parts are cut first, the small ones kept whole."""
    remaining, parts = max(budget, 0), sorted(sizes)
    for index, size in enumerate(parts):
        share = remaining // (len(parts) - index)
        if size > share:
            return share
        remaining -= size
    return max(parts, default=0)


def fit_for_sns(event: DeploymentEvent, limit: int = SNS_MESSAGE_LIMIT - _ATTRIBUTES_RESERVE) -> DeploymentEvent:
    """``event`` as SNS takes it: itself when its JSON fits in ``limit`` bytes; else the same event (id, type,
    time, deployment) made to fit, what is largest first: its reasons dropped from the last, its message cut,
    its ``details`` reduced to the fields routing reads (:data:`ROUTING_DETAILS`: the PagerDuty action and
    key, an escalation's routes, the noise control's discriminator), with a marker (``details["trimmed"]``)
    saying what was left out."""
    size = _size(event)
    if size <= limit:
        return event
    left_out: list[str] = []
    room = limit - _MARKER_RESERVE  # the marker saying what was left out is added after
    trimmed = event
    for _ in range(3):  # the largest parts cut down to one level, so that the event fits (again if short)
        over = _size(trimmed) - room
        if over <= 0:
            break
        extra = {k: v for k, v in trimmed.details.items() if k not in ROUTING_DETAILS and k not in _MARKER_KEYS}
        sizes = {
            "details": _json_bytes(extra) if extra else 0,
            "reasons": _json_bytes([r.model_dump(mode="json") for r in trimmed.reasons]) if trimmed.reasons else 0,
            "message": _json_bytes(trimmed.message) if len(trimmed.message) > _MESSAGE_FLOOR + len(_CUT) else 0,
        }
        level = _level(list(sizes.values()), sum(sizes.values()) - over)
        if sizes["details"] > level:
            kept = {k: v for k, v in trimmed.details.items() if k in ROUTING_DETAILS}
            kept["detail_keys"] = sorted(extra)[:50]
            left_out.append(f"details {', '.join(sorted(extra)[:20])}")
            trimmed = trimmed.model_copy(update={"details": kept})
        if sizes["reasons"] > level:
            reasons, used, keep = trimmed.reasons, 2, 0  # the JSON list's brackets, then each reason and a comma
            while keep < len(reasons):
                used += _json_bytes(reasons[keep].model_dump(mode="json")) + 1
                if used > level:
                    break
                keep += 1
            left_out.append(f"the reasons after the first {keep}")
            trimmed = trimmed.model_copy(update={"reasons": reasons[:keep]})
        if sizes["message"] > level:
            shorter = _cut_message(trimmed, _size(trimmed) - (sizes["message"] - level), _MESSAGE_FLOOR)
            if shorter.message != trimmed.message:
                left_out.append("the end of the message")
                trimmed = shorter
    if _size(trimmed) > room:  # the routing fields alone are too large: the rest goes, then the message
        if trimmed.links:
            left_out.append("links")
        trimmed = _cut_message(trimmed.model_copy(update={"links": {}}), room)
    if _size(trimmed) > room:  # a routing field itself is huge: only the small ones are kept
        huge = sorted(k for k, v in trimmed.details.items() if _json_bytes(v) > _FIELD_LIMIT)
        left_out.append(f"details {', '.join(huge)}")
        kept = {k: v for k, v in trimmed.details.items() if k not in huge}
        trimmed = trimmed.model_copy(
            update={"details": {**kept, "detail_keys": sorted(set(huge) | set(kept.get("detail_keys", [])))[:50]}}
        )
    told = "; ".join(dict.fromkeys(left_out))[:1_000]
    marker = {TRIMMED: f"left out: {told} (the event is {size} bytes, over SNS's {limit}; "
                       "the deployment's history keeps it whole)", "original_bytes": size}  # fmt: skip
    details = {**trimmed.details, **marker}
    trimmed = trimmed.model_copy(update={"details": details})
    if _size(trimmed) > limit:
        trimmed = _cut_message(trimmed, limit)
    return trimmed


class EventPublisher:
    def __init__(self, topic_arn: str | None = None) -> None:
        self.topic_arn = topic_arn or os.environ["EVENTS_TOPIC_ARN"]

    def publish(self, event: DeploymentEvent) -> str:
        """Publish ``event`` (trimmed to SNS's limit: :func:`fit_for_sns`); returns the SNS message id.
        Attributes allow subscription filters."""
        event = fit_for_sns(event)
        subject = sns_subject(f"[{event.environment}] {event.title}")
        resp = clients.client("sns").publish(
            TopicArn=self.topic_arn,
            **({"Subject": subject} if subject else {}),
            Message=event.model_dump_json(),
            MessageAttributes={
                "event_type": {"DataType": "String", "StringValue": event.event_type.value},
                "severity": {"DataType": "String", "StringValue": event.severity.value},
                "environment": {"DataType": "String", "StringValue": event.environment},
                "service": {"DataType": "String", "StringValue": event.service},
            },
        )
        return str(resp["MessageId"])
