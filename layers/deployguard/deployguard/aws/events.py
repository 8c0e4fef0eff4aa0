"""Publishing deployment events on the SNS topic.

SNS takes a message of at most 256 KiB (the message and its attributes); a larger one is refused
(InvalidParameter: "Message too long") however often it is sent. An event over the limit (its
``details`` can be large: every check's report) is sent trimmed (:func:`fit_for_sns`): the same
event id, type and time, ``details`` replaced by a marker saying what was left out (the
deployment's history keeps the event whole), and, if still too long, its reasons and message cut.
A refusal no retry changes (:func:`refused_for_good`) is told from one that passes (throttling,
credentials, 5xx, the network, a topic that is missing or whose key is unusable: every event waits
for those): the outbox gives such an event up after a few attempts instead of holding the others.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from deployguard.aws import clients

if TYPE_CHECKING:
    from deployguard.models import DeploymentEvent

# SNS subject lines are limited to 100 characters
_SUBJECT_LIMIT = 100
SNS_MESSAGE_LIMIT = 262_144  # bytes, the message and its attributes together
_ATTRIBUTES_RESERVE = 2_048  # the attributes (names, types, values) and the subject, with room to spare
TRIMMED = "trimmed"  # the key of the marker that replaces the details of an event too large for SNS

# refusals that pass, or that every event meets alike (the topic, its key, the credentials): never an event's own fault
_TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "Throttled", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "RequestTimeout", "RequestTimeoutException",
    "AuthorizationError", "AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "ExpiredToken",
    "ExpiredTokenException", "UnrecognizedClientException", "SignatureDoesNotMatch", "InvalidSecurity",
    "NotFound", "EndpointDisabled", "KMSAccessDenied", "KMSDisabled", "KMSInvalidState", "KMSNotFound",
    "KMSOptInRequired", "KMSThrottling", "InternalError", "InternalFailure", "ServiceUnavailable",
})  # fmt: skip


def refused_for_good(exc: BaseException) -> bool:
    """Whether SNS refused a Publish for the message itself, so that sending it again never passes
    (InvalidParameter, InvalidParameterValue, a message too long: a client error other than
    throttling, credentials and the topic's own state); throttling, 5xx and transport errors pass."""
    if not isinstance(exc, ClientError):
        return False  # the network, a timeout, a bug of ours: not the event's fault
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
        return False
    return bool(code)


def _size(event: DeploymentEvent) -> int:
    return len(event.model_dump_json().encode())


def fit_for_sns(event: DeploymentEvent, limit: int = SNS_MESSAGE_LIMIT - _ATTRIBUTES_RESERVE) -> DeploymentEvent:
    """``event`` as SNS takes it: itself when its JSON fits in ``limit`` bytes; else the same event (id,
    type, time, deployment) with its ``details`` replaced by a marker (``{"trimmed": ...}``), and, if still
    too long, its reasons dropped and its message cut to fit."""
    size = _size(event)
    if size <= limit:
        return event
    marker: dict[str, Any] = {TRIMMED: f"details left out: the event is {size} bytes, over SNS's {limit}; "
                                       "the deployment's history keeps it whole",
                              "original_bytes": size, "detail_keys": sorted(event.details)[:50]}  # fmt: skip
    trimmed = event.model_copy(update={"details": marker})
    if _size(trimmed) <= limit:
        return trimmed
    trimmed = trimmed.model_copy(update={"reasons": [], "links": {}})
    cut = " [cut: too long for SNS]"
    while (over := _size(trimmed) - limit) > 0 and trimmed.message:
        # cut in proportion to the bytes the message takes in JSON (escapes, multi-byte characters)
        message = trimmed.message
        as_json = len(json.dumps(message, ensure_ascii=False).encode())
        keep = min(len(message) - 1, int(len(message) * (as_json - over) / as_json) - len(cut))
        trimmed = trimmed.model_copy(update={"message": message[:keep] + cut if keep > 0 else ""})
    return trimmed


class EventPublisher:
    def __init__(self, topic_arn: str | None = None) -> None:
        self.topic_arn = topic_arn or os.environ["EVENTS_TOPIC_ARN"]

    def publish(self, event: DeploymentEvent) -> str:
        """Publish ``event`` (trimmed to SNS's limit: :func:`fit_for_sns`); returns the SNS message id.
        Attributes allow subscription filters."""
        event = fit_for_sns(event)
        subject = f"[{event.environment}] {event.title}"[:_SUBJECT_LIMIT]
        resp = clients.client("sns").publish(
            TopicArn=self.topic_arn,
            Subject=subject,
            Message=event.model_dump_json(),
            MessageAttributes={
                "event_type": {"DataType": "String", "StringValue": event.event_type.value},
                "severity": {"DataType": "String", "StringValue": event.severity.value},
                "environment": {"DataType": "String", "StringValue": event.environment},
                "service": {"DataType": "String", "StringValue": event.service},
            },
        )
        return str(resp["MessageId"])
