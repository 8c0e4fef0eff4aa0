"""What Slack and Teams receive: user text shown as written, cards Teams accepts, footers in UTC.

Real ``route()`` of events carrying hostile or huge text to local Slack and Teams receivers on
127.0.0.1: Slack's fallback ``text`` is escaped like its blocks; Teams' TextBlocks and facts escape
Markdown (no live link from a control reason), are cut like Slack's fields, and a card stays under
Teams' ~28 KB; both footers show the event's time converted to UTC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from notif_support import (
    Aws,
    aws,  # noqa: F401  (the fixture)
    make_event,
)

from deployguard.models import DeliveryStatus, EventType, Severity, VerdictReason
from deployguard.notification.settings import NotificationSettings
from deployguard.notification.teams import MAX_CARD_BYTES
from deployguard_local.receivers import LocalReceivers, local_receivers


def _route(aws: Aws, receivers: LocalReceivers, event: Any) -> list[Any]:  # noqa: F811
    settings = NotificationSettings.model_validate(
        {
            "allowed_hosts": ["127.0.0.1"],
            "channels": {
                "ops-slack": {"type": "slack", "url": receivers.urls["slack"]},
                "ops-teams": {"type": "teams", "url": receivers.urls["teams"]},
            },
            "routes": [{"channels": ["ops-slack", "ops-teams"]}],
        }
    )
    return aws.router(settings).route(event, lambda: 60_000)


def _card_texts(card: dict[str, Any]) -> list[str]:
    texts = [b["text"] for b in card["body"] if b["type"] == "TextBlock"]
    return texts + [f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]]


def test_user_text_cannot_ping_link_or_format(aws: Aws) -> None:  # noqa: F811
    event = make_event(
        EventType.ROLLBACK_FAILED,
        Severity.CRITICAL,
        title="Canary Abort by **alice**",
        message="aborted. Reason: see [Approve the rollback here](https://evil.example/login)",
        details={"error": "<!channel> hook said: <https://evil.example/login|click to re-run the rollback>"},
    )
    with local_receivers(kinds=("slack", "teams"), echo=None) as receivers:
        recorded = _route(aws, receivers, event)
        slack = receivers.received("slack")[-1].json()
        card = receivers.received("teams")[-1].json()["attachments"][0]["content"]
    assert {n.status for n in recorded} == {DeliveryStatus.DELIVERED}
    assert "<" not in slack["text"] and "&lt;!channel&gt;" in slack["text"]
    texts = _card_texts(card)
    assert r"aborted. Reason: see \[Approve the rollback here\]\(https://evil.example/login\)" in texts
    assert r"Canary Abort by \*\*alice\*\*" in texts
    assert not any("](" in text or "**alice" in text for text in texts)


def test_a_huge_error_makes_a_card_teams_accepts(aws: Aws) -> None:  # noqa: F811
    # escaped, every "*" and "_" takes 3 bytes of JSON: 20 reasons of 500 characters alone are over 28 KB
    trace = "Traceback (most recent call last):\n" + '  File "/var/task/hook.py", line 12, in check\n' * 700
    reasons = [
        VerdictReason(metric_id=f"m{i}", status="fail", message="*_" * 400, effect=0.5, confidence=0.99)
        for i in range(40)
    ]
    event = make_event(EventType.DEPLOYMENT_FAILED, Severity.ERROR, message="m" * 5000, reasons=reasons,
                       details={"error": trace, "components": ["c" * 3000]})  # fmt: skip
    with local_receivers(kinds=("slack", "teams"), echo=None) as receivers:
        recorded = _route(aws, receivers, event)
        body = receivers.received("teams")[-1].body
    assert {n.status for n in recorded} == {DeliveryStatus.DELIVERED}
    assert len(body) <= MAX_CARD_BYTES < 28 * 1024
    card = json.loads(body)["attachments"][0]["content"]
    texts = _card_texts(card)
    error = next(
        f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"] if f["title"] == "Error"
    )
    assert error.startswith("Traceback") and error.endswith("…") and len(error.replace("\\", "")) <= 1900
    assert "…and 20 more reasons" in texts


def test_footers_show_the_event_s_time_in_utc(aws: Aws) -> None:  # noqa: F811
    at = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))  # 12:00 UTC
    with local_receivers(kinds=("slack", "teams"), echo=None) as receivers:
        _route(aws, receivers, make_event(at=at))
        slack = receivers.received("slack")[-1].json()
        card = receivers.received("teams")[-1].json()["attachments"][0]["content"]
    assert at.astimezone(UTC).hour == 12
    assert slack["blocks"][-1]["elements"][0]["text"].endswith("2026-03-01 12:00:00 UTC")
    assert card["body"][-1]["text"].endswith("2026-03-01 12:00:00 UTC")
