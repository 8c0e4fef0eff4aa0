"""A digest too large for one SQS message is dead-lettered in several, none of its events lost.

Teams (a local receiver on 127.0.0.1) answers 500 while the rate limit holds a storm of events;
the dead-letter queue (moto) refuses bodies over SQS's 256 KiB. The flush dead-letters the digest
in letters that each fit, in order; every held event is in exactly one and none stays held.
"""

from __future__ import annotations

import boto3
from notif_support import (
    Aws,
    aws,  # noqa: F401  (the fixture)
    make_event,
)

from deployguard.models import DeliveryStatus, EventType, Severity
from deployguard.notification.dlq import SQS_MESSAGE_BYTES, DeadLetter
from deployguard.notification.settings import NotificationSettings
from deployguard_local.receivers import Behaviour, local_receivers


def test_a_digest_larger_than_an_sqs_message_is_dead_lettered_in_parts(aws: Aws) -> None:  # noqa: F811
    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.set_queue_attributes(QueueUrl=aws.dlq_url, Attributes={"MaximumMessageSize": str(SQS_MESSAGE_BYTES)})
    with local_receivers({"teams": Behaviour(mode="error", status=500)}, kinds=("teams",), echo=None) as receivers:
        settings = NotificationSettings.model_validate(
            {
                "allowed_hosts": ["127.0.0.1"],
                "channels": {"ops-teams": {"type": "teams", "url": receivers.urls["teams"]}},
                "routes": [{"channels": ["ops-teams"]}],
                "noise": {"cooldown_seconds": 0, "default_rate_limit": {"max_messages": 1, "per_seconds": 60}},
                "delivery": {"max_attempts": 2, "backoff_base_seconds": 0.01},
            }
        )
        router = aws.router(settings)
        events = [
            make_event(
                EventType.CANARY_STEP_ADVANCED,
                Severity.INFO,
                deployment_id=f"dg-{i}",
                details={"step_index": i, "error": "x" * 2000},
            )
            for i in range(151)
        ]
        for event in events:
            router.route(event, lambda: 120_000)
        held = [h.event.event_id for h in router.noise.held("ops-teams")]
        assert len(held) == 150  # the first went out (and was dead-lettered): the rest are held
        recorded = router.flush_digests(force=True, remaining_ms=lambda: 120_000)
    assert len(recorded) == 150 and {n.status for n in recorded} == {DeliveryStatus.DEAD_LETTERED}
    assert router.noise.held("ops-teams") == []
    bodies = [m["Body"] for m in aws.dlq_messages()]
    assert all(len(body.encode()) <= SQS_MESSAGE_BYTES for body in bodies)
    letters = sorted(
        (DeadLetter.model_validate_json(b) for b in bodies), key=lambda x: x.events[0].details["step_index"]
    )
    digests = [x for x in letters if x.kind == "digest"]
    assert len(digests) >= 2 and {x.channel for x in digests} == {"ops-teams"}
    assert sum(len(x.events) for x in digests) == 150
    assert sorted(e.event_id for x in digests for e in x.events) == sorted(held)
