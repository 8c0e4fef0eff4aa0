"""Fixtures of the notification integration tests (helpers in notif_support_it.py)."""

from __future__ import annotations

from notif_support import aws, event_factory

__all__ = ["aws", "event_factory"]
