"""Writing reports to the ReportsBucket: a deployment's when it ends, summaries on a schedule.

Keys: ``reports/<deployment_id>.html`` (and ``.md``, ``.json``: the history export), written
again whenever another ending event arrives, so the latest stays; ``summaries/<period>/<date>.md``
and ``.json`` for the daily and weekly summaries.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from deployguard.aws.reports_bucket import ReportStore
from deployguard.models import EventType
from deployguard.readmodels import DeploymentReader, Summary, SummaryBuilder
from deployguard.reporting import CONTENT_TYPES, FORMATS, render
from deployguard.reporting.summary import render_summary_markdown

ENDING_EVENTS = frozenset(
    {EventType.DEPLOYMENT_COMPLETED, EventType.DEPLOYMENT_FAILED, EventType.ROLLBACK_COMPLETED,
     EventType.ROLLBACK_FAILED, EventType.PROMOTION_COMPLETED}
)  # fmt: skip
SummaryPeriod = Literal["daily", "weekly"]
PERIODS: dict[str, timedelta] = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


def report_key(deployment_id: str, fmt: str) -> str:
    return f"reports/{deployment_id}.{fmt}"


def summary_key(period: str, end: datetime, fmt: str) -> str:
    return f"summaries/{period}/{end:%Y-%m-%d}.{fmt}"


class ReportWriter:
    def __init__(self, reader: DeploymentReader, store: ReportStore) -> None:
        self.reader = reader
        self.store = store

    def write_deployment(self, deployment_id: str) -> list[str]:
        """The deployment's report in every format; returns the s3:// URIs."""
        history = self.reader.history(deployment_id)
        return [
            self.store.put(report_key(history.deployment.deployment_id, fmt), render(history, fmt), CONTENT_TYPES[fmt])
            for fmt in FORMATS
        ]

    def write_summary(self, period: SummaryPeriod, now: datetime) -> tuple[Summary, list[str]]:
        """The summary of the period ending now (against the one before); returns it and its URIs."""
        summary = SummaryBuilder(self.reader).build(now - PERIODS[period], now, period)
        uris = [
            self.store.put(summary_key(period, now, "md"), render_summary_markdown(summary), CONTENT_TYPES["md"]),
            self.store.put(summary_key(period, now, "json"), summary.model_dump_json(by_alias=True, indent=2),
                           CONTENT_TYPES["json"]),
        ]  # fmt: skip
        return summary, uris
