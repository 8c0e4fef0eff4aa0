"""An SMS stays in the GSM 03.38 alphabet: one segment, not three.

A "…" (U+2026) or a typographic quote is outside GSM 03.38: the whole SMS would go out as UCS-2
(70 characters a segment, 67 concatenated), so a cut page cost three. Real ``route()`` and digest to a
moto SNS topic, read back through an SQS subscription (raw delivery).
"""

from __future__ import annotations

import boto3
from notif_support import (
    Aws,
    aws,  # noqa: F401  (the fixture)
    make_event,
)

from deployguard.models import DeliveryStatus, EventType, Severity
from deployguard.notification.settings import NotificationSettings

GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = set("^{}\\[~]|€")


def _septets(text: str) -> int:
    assert all(c in GSM_BASIC or c in GSM_EXTENSION for c in text), sorted({c for c in text if c not in GSM_BASIC})
    return sum(2 if c in GSM_EXTENSION else 1 for c in text)


def _subscribe(topic: str) -> str:
    sqs, sns = boto3.client("sqs", region_name="us-east-1"), boto3.client("sns", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="sms-copy")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return queue


def _sent(queue: str) -> list[str]:
    messages = boto3.client("sqs", region_name="us-east-1").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    return [m["Body"] for m in messages.get("Messages", [])]


def test_a_cut_page_and_a_digest_are_one_gsm_segment(aws: Aws) -> None:  # noqa: F811
    queue = _subscribe(aws.sms_topic)
    settings = NotificationSettings.model_validate(
        {
            "channels": {"ops-sms": {"type": "sms", "topic_arn": aws.sms_topic}},
            "routes": [{"channels": ["ops-sms"]}],
            "noise": {"cooldown_seconds": 0, "default_rate_limit": {"max_messages": 1, "per_seconds": 60}},
        }
    )
    router = aws.router(settings)
    error = "\u201clive\u201d busy\u2026 \u2013 UpdateAlias failed: ResourceConflictException, retry later"
    page = make_event(EventType.ROLLBACK_FAILED, Severity.CRITICAL, deployment_id="d-7QX2LM4PA", service="checkout-api",
                      version="2026.03.01-1142", details={"error": error * 3})  # fmt: skip
    [record] = router.route(page)
    assert record.status is DeliveryStatus.DELIVERED
    [text] = _sent(queue)
    assert _septets(text) <= 140 and text.endswith("...")  # 160 septets is one segment
    assert '(d-7QX2LM4PA) - "live" busy... - UpdateAlias failed' in text
    for i in range(3):  # the first goes out (critical bypasses the limit: warnings are held)
        router.route(make_event(EventType.VALIDATION_WARNED, Severity.WARNING, deployment_id=f"dg-{i}",
                                details={"error": "p\u00f8d \u0142\u00f3d\u017a \u2014 \u201cslow\u201d"}))  # fmt: skip
    _sent(queue)
    router.flush_digests(force=True)
    [digest] = _sent(queue)
    assert digest.startswith("DeployGuard: 2 events; worst: ") and _septets(digest) <= 140
    assert 'pød ?odz - "slow"' in digest  # ø is GSM; ł has no GSM letter; ó and ź lose their accents
