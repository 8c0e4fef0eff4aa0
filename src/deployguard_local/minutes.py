"""Whole simulated minutes: what the local traffic and metrics write minute by minute."""

from __future__ import annotations

from datetime import datetime, timedelta


def minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def minutes_between(start: datetime, end: datetime) -> list[datetime]:
    """Whole minutes that began in [start, end)."""
    first = minute_floor(start) + (timedelta(minutes=1) if start.second or start.microsecond else timedelta())
    out = []
    at = first
    while at < end:
        out.append(at)
        at += timedelta(minutes=1)
    return out
