"""Reading deployments back: lists with filters, one deployment's history, the CI gate.

A workflow-floor read model: it composes :mod:`deployguard.storage` (deployments, history)
and the incidents repository; nothing here writes. No query scans the table:

- by service and environment: index ``gsi2`` (newest first), one query per pair;
- every service: the pairs come from the catalog item (``pk = CATALOG``), and their
  newest-first pages are merged (keyset paging with an opaque cursor);
- running deployments (status ``pending``/``in_progress``): index ``gsi1`` (``ACTIVE``);
  promoted ones still watched: ``gsi1`` (``MONITOR``).

Typical use::

    reader = DeploymentReader(DeploymentRepository(table_name))
    page = reader.page(DeploymentQuery(service="checkout-api", since=..., limit=20))
    for d in page.items: ...
    page = reader.page(query.model_copy(update={"cursor": page.next_cursor}))
    history = reader.history("dg-1234")            # DeploymentHistory, the JSON export (exact id; a
                                                   # unique prefix with DeploymentReader(..., prefixes=True))
    outcome = reader.outcome("dg-1234")            # GateOutcome: exit code for CI
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from deployguard import clock
from deployguard.exceptions import NotFoundError, QueryError
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import Deployment, DeploymentStatus, Model
from deployguard.readmodels.history import DeploymentHistory, GateOutcome, build_history

if TYPE_CHECKING:
    from deployguard.alerts.models import Alert
    from deployguard.incidents.models import Incident
    from deployguard.storage.repository import DeploymentRepository

_ACTIVE = {DeploymentStatus.PENDING, DeploymentStatus.IN_PROGRESS}


class DeploymentQuery(Model):
    """Filters of a deployment list; every field optional."""

    service: str | None = None
    environment: str | None = None
    statuses: list[DeploymentStatus] = Field(default_factory=list, description="any of these statuses")
    since: datetime | None = Field(default=None, description="started at or after")
    limit: int = Field(default=20, ge=1, le=500)
    cursor: str | None = Field(default=None, description="next_cursor of the previous page")

    @field_validator("since")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("since must carry a time zone (e.g. 2026-01-01T00:00:00Z)")
        return value


MAX_EXAMINED = 1000
"""Deployments one page request examines with a status filter (DynamoDB reads the ones the filter drops), shared
by the service/environment pairs it reads (each at least ``limit + 1``): a rare status over a long history
answers a page with fewer items than ``limit``, even none, and a ``next_cursor`` to go on from where it stopped."""


class DeploymentPage(Model):
    items: list[Deployment]
    next_cursor: str | None = Field(
        default=None,
        description="pass as cursor for the next page; None at the end. With a status filter a page examines about "
        "1,000 deployments (each service/environment pair at least limit + 1: more when there are more than "
        "1,000 / (limit + 1) pairs): it may hold fewer items than limit (even none) and still a next_cursor to go on",
    )


_DURATION = re.compile(r"([0-9]{1,7})([mhdw])")  # ASCII digits only: "²d" is no duration
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_SINCE = timedelta(days=100 * 366)
_PLUS_AS_SPACE = re.compile(r"^([0-9-]{10}T[0-9:.]{2,15}) ([0-9]{2}(?::?[0-9]{2})?)$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` before now (at most a hundred years), or an ISO 8601 time (UTC if no
    zone given). :class:`QueryError` (its message starts ``since:``) for anything else."""
    value = text.strip()
    duration = _DURATION.fullmatch(value)
    if duration:
        back = timedelta(**{_UNITS[duration.group(2)]: int(duration.group(1))})
        if back > MAX_SINCE:
            raise QueryError(f"since: {text!r} reaches back more than {MAX_SINCE.days // 366} years")
        return (now or clock.now()) - back
    # a '+' typed into a URL arrives as a space (form decoding: API Gateway's and the local server's)
    value = _PLUS_AS_SPACE.sub(r"\1+\2", value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise QueryError(f"since: {text!r} is neither a duration (7d, 12h, 30m, 2w) nor an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": sort_key}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        before = data["before"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise QueryError(f"cursor: {cursor!r} is not a cursor this command returned") from exc
    if not isinstance(before, str):
        raise QueryError(f"cursor: {cursor!r} is not a cursor this command returned")
    return before


PREFIX_RECENT = 200  # a prefix (CLI only) is matched against the ids of this many newest deployments


class DeploymentReader:
    """Read-only view of deployments and their history."""

    def __init__(
        self, repository: DeploymentRepository, incidents: IncidentRepository | None = None, *, prefixes: bool = False
    ) -> None:
        """``prefixes``: :meth:`get` also takes a unique prefix of a recent deployment's id (the CLI's, for people
        typing ids); without it (the console API) an id is exact, and an unknown one costs one GetItem."""
        self.repository = repository
        self.incidents = incidents or IncidentRepository(repository)
        self.prefixes = prefixes

    # ------------------------------------------------------------------ lists

    def page(self, query: DeploymentQuery) -> DeploymentPage:
        """Deployments matching ``query``, newest first, one page."""
        before = _decode_cursor(query.cursor) if query.cursor else None
        statuses = [s.value for s in query.statuses]
        if query.statuses and set(query.statuses) <= _ACTIVE and not before:
            return self._active(query)
        pairs = self._pairs(query)
        found: list[tuple[str, Deployment]] = []
        examine = max(query.limit + 1, MAX_EXAMINED // max(len(pairs), 1))
        frontier: str | None = None  # the newest key down to which every pair was examined, if any stopped short
        for service, environment in pairs:
            items, stopped = self.repository.deployments_page(
                service,
                environment,
                before=before,
                since=query.since,
                statuses=statuses,
                limit=query.limit + 1,
                examine=examine,
            )
            found += items
            if stopped is not None and (frontier is None or stopped > frontier):
                frontier = stopped
        if frontier is not None:  # older than the frontier, some pair was not examined: not known yet
            found = [pair for pair in found if pair[0] >= frontier]
        newest = heapq.nlargest(query.limit + 1, found, key=lambda pair: pair[0])
        page = newest[: query.limit]
        if len(newest) > query.limit:
            next_cursor: str | None = _encode_cursor(page[-1][0])
        else:  # every match down to the frontier is on this page (perhaps none): go on below it
            next_cursor = _encode_cursor(frontier) if frontier is not None else None
        return DeploymentPage(items=[d for _, d in page], next_cursor=next_cursor)

    def _pairs(self, query: DeploymentQuery) -> list[tuple[str, str]]:
        if query.service and query.environment:
            return [(query.service, query.environment)]
        return [
            (s, e)
            for s, e in self.repository.service_environments()
            if (not query.service or s == query.service) and (not query.environment or e == query.environment)
        ]

    def _active(self, query: DeploymentQuery) -> DeploymentPage:
        """Running deployments through the ACTIVE index (few: never paged)."""
        items = [
            d
            for d in self.repository.active_deployments()
            if d.status in query.statuses
            and (not query.service or d.service == query.service)
            and (not query.environment or d.environment == query.environment)
            and (not query.since or d.started_at >= query.since)
        ]
        items.sort(key=lambda d: (d.started_at, d.deployment_id), reverse=True)
        return DeploymentPage(items=items[: query.limit])

    def active(self) -> list[Deployment]:
        """Deployments in progress (index gsi1, ACTIVE)."""
        return self.repository.active_deployments()

    def monitored(self) -> list[Deployment]:
        """Promoted deployments still in post-deployment monitoring (index gsi1, MONITOR)."""
        return self.repository.monitored_deployments()

    # ------------------------------------------------------------------ one deployment

    def get(self, deployment_id: str) -> Deployment:
        """A deployment by its exact id (one GetItem); with ``prefixes`` (the CLI), else by a unique prefix of the
        id of one of the :data:`PREFIX_RECENT` newest deployments or a running one."""
        found = self.repository.find_deployment(deployment_id)
        if found is not None:
            return found
        if not self.prefixes:
            raise NotFoundError(f"deployment {deployment_id} not found")
        recent = self.page(DeploymentQuery(limit=PREFIX_RECENT)).items + self.active()
        matches = {d.deployment_id: d for d in recent if d.deployment_id.startswith(deployment_id)}
        if len(matches) == 1:
            return next(iter(matches.values()))
        if not matches:
            raise NotFoundError(f"deployment {deployment_id} not found")
        raise NotFoundError(f"deployment {deployment_id} is ambiguous: " + ", ".join(sorted(matches)))

    def outcome(self, deployment_id: str) -> GateOutcome:
        return GateOutcome.of(self.get(deployment_id))

    def history(self, deployment_id: str) -> DeploymentHistory:
        """Everything recorded about one deployment (the JSON export, ``deployguard-history/1``)."""
        deployment = self.get(deployment_id)
        dep_id = deployment.deployment_id
        alerts = self.incidents.alerts(dep_id)
        return build_history(
            deployment,
            assessments=self.repository.assessments(dep_id),
            audit=self.repository.audit_trail(dep_id),
            events=self.repository.events(dep_id),
            notifications=self.repository.notifications(dep_id),
            alerts=alerts,
            incidents=self.incidents_of(alerts),
            exported_at=clock.now(),
        )

    def incidents_of(self, alerts: list[Alert]) -> list[Incident]:
        ids = list(dict.fromkeys(a.incident_id for a in alerts if a.incident_id))
        found = (self.incidents.find(i) for i in ids)
        return sorted((i for i in found if i is not None), key=lambda i: i.opened_at)

    def wait(
        self,
        deployment_id: str,
        *,
        timeout_seconds: float,
        poll_seconds: float = 10.0,
        sleep: Callable[[float], object],
        on_change: Callable[[Deployment], None] | None = None,
    ) -> GateOutcome:
        """Poll until the deployment ends or ``timeout_seconds`` pass (measured on :mod:`deployguard.clock`).

        ``sleep`` is how time passes between polls (``time.sleep`` in the CLI; a simulated
        clock's advance in tests). Returns the outcome; ``running`` (exit 3) on timeout.
        """
        deadline = clock.now() + timedelta(seconds=timeout_seconds)
        seen: tuple[int, str] | None = None
        while True:
            deployment = self.get(deployment_id)
            mark = (deployment.version_counter, deployment.status.value)
            if on_change is not None and mark != seen:
                on_change(deployment)
            seen = mark
            outcome = GateOutcome.of(deployment)
            if outcome.state != "running":
                return outcome
            remaining = (deadline - clock.now()).total_seconds()
            if remaining <= 0:
                message = f"timed out after {timeout_seconds:g}s: {outcome.message}"
                return outcome.model_copy(update={"message": message})
            sleep(min(poll_seconds, remaining))


__all__ = ["MAX_EXAMINED", "DeploymentPage", "DeploymentQuery", "DeploymentReader", "QueryError", "parse_since"]
