"""A Slack digest shows every held event whole or counts it: none silently cut.

Sixty events over the Slack channel's rate limit, each line about 150 characters: the digest fills
as many sections (3000 characters at most each) as its lines need, lists at most ``digest.max_events``
and counts the rest in "…and N more". A real local Slack receiver on 127.0.0.1.
"""

from __future__ import annotations

import re

import pytest
from notif_support import (
    Aws,
    aws,  # noqa: F401  (the fixture)
    make_event,
)

from deployguard.models import DeliveryStatus, EventType, Severity
from deployguard.notification.settings import NotificationSettings
from deployguard_local.receivers import local_receivers


@pytest.mark.parametrize("max_events", [50, 100])
def test_a_digest_lists_every_held_event_or_counts_it(aws: Aws, max_events: int) -> None:  # noqa: F811
    with local_receivers(kinds=("slack",), echo=None) as receivers:
        settings = NotificationSettings.model_validate(
            {
                "allowed_hosts": ["127.0.0.1"],
                "channels": {"ops-slack": {"type": "slack", "url": receivers.urls["slack"]}},
                "routes": [{"channels": ["ops-slack"]}],
                "noise": {"cooldown_seconds": 0, "default_rate_limit": {"max_messages": 1, "per_seconds": 60}},
                "digest": {"max_events": max_events},
            }
        )
        router = aws.router(settings)
        for i in range(61):
            router.route(
                make_event(
                    EventType.CANARY_STEP_ADVANCED,
                    Severity.INFO,
                    deployment_id=f"dep-{i:03d}-checkout-api-canary-2026-03-01",
                    details={"step_index": i, "error": "p99 latency above 1200 ms\non 3 of 5 shards & <rising>"},
                )
            )
        recorded = router.flush_digests(force=True)
        digest = receivers.received("slack")[-1].json()
    assert len(recorded) == 60 and {n.status for n in recorded} == {DeliveryStatus.DELIVERED}
    blocks = digest["blocks"]
    assert len(blocks) <= 50 and blocks[0]["type"] == "header" and blocks[-1]["type"] == "context"
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert len(sections) >= 2 and all(len(text) <= 3000 for text in sections)
    lines = "\n".join(sections).split("\n")
    listed = [line for line in lines if re.search(r"dep-\d{3}", line)]
    shown = [re.search(r"dep-(\d{3})", line).group(1) for line in listed]  # type: ignore[union-attr]
    assert shown == [f"{i:03d}" for i in range(1, 1 + min(60, max_events))]  # whole, in order
    assert all(line.endswith("&lt;rising&gt;") for line in listed)  # nothing cut, escaped
    more = [line for line in lines if line.startswith("…and")]
    assert more == ([f"…and {60 - max_events} more"] if max_events < 60 else [])
