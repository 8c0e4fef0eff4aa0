"""Writing reports to the ReportsBucket: a deployment's when it ends, summaries on a schedule.

Presentation (entry-point floor, shared by ReportWriterFunction): it renders the read models.

Keys: ``reports/<deployment_id>.html`` (and ``.md``, ``.json``: the history export), written
again whenever another ending event arrives, so the latest stays; ``summaries/<period>/<date>.md``
and ``.json`` for the daily and weekly summaries.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from deployguard.aws.events import EventPublisher
from deployguard.aws.reports_bucket import ReportStore
from deployguard.models import DeploymentEvent, EventType, Severity
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
    def __init__(
        self, reader: DeploymentReader, store: ReportStore, publisher: EventPublisher | None = None,
        environment: str = "production",
    ) -> None:  # fmt: skip
        self.reader = reader
        self.store = store
        self.publisher = publisher
        self.environment = environment

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
        if self.publisher is not None:  # the notification router sends it on the routes for "summary.*"
            self.publisher.publish(summary_event(summary, uris, self.environment))
        return summary, uris


def summary_event(summary: Summary, uris: list[str], environment: str) -> DeploymentEvent:
    """The summary as an event on the topic: title, headline figures, and where the full text is."""
    cur = summary.current
    rate = "-" if cur.success_rate is None else f"{cur.success_rate:.0%}"
    message = (
        f"{cur.deployments} deployments ({summary.previous.deployments} the period before): {cur.succeeded} "
        f"succeeded, {cur.rolled_back} rolled back, {cur.failed} failed; success rate {rate}; "
        f"{summary.incidents.incidents} incidents. Full summary: {uris[0]}"
    )
    return DeploymentEvent(
        event_type=EventType.SUMMARY_PUBLISHED,
        deployment_id=f"summary-{summary.period}-{cur.end:%Y-%m-%d}",
        service="deployguard",
        version=summary.period,
        environment=environment,
        severity=Severity.INFO,
        title=f"DeployGuard {summary.period} summary",
        message=message,
        links={"summary": uris[0], "json": uris[1]},
        details={"success_rate": cur.success_rate, "change_failure_rate": cur.change_failure_rate,
                 "deployments": cur.deployments},
    )  # fmt: skip
