"""Summary statistics of a period (daily and weekly reports, ``deployguard summary --since 7d``).

Counts deployments by service, environment and strategy; success and change-failure rates;
time to detect (first failing verdict after the start) and to roll back (from that verdict
to the end); incidents with time to acknowledge and resolve; releases rolled back and later
redeployed unchanged (false-rollback candidates); the noisiest alert rules and channels; and
the same figures for the previous period of equal length, for trends.
"""

from collections import Counter
from datetime import datetime
from statistics import median

from pydantic import Field

from deployguard.incidents.models import Incident, IncidentStats
from deployguard.models import Decision, Deployment, DeploymentStatus, Model
from deployguard.readmodels.deployments import DeploymentQuery, DeploymentReader

SUMMARY_SCHEMA = "deployguard-summary/1"
_FAILED = {DeploymentStatus.ROLLED_BACK, DeploymentStatus.FAILED, DeploymentStatus.STOPPED}


class GroupCount(Model):
    key: str
    deployments: int
    succeeded: int
    failed: int = Field(description="rolled back, failed or stopped")


class PeriodFigures(Model):
    """The figures of one period."""

    start: datetime
    end: datetime
    deployments: int = Field(description="releases started in the period (CodeDeploy's rollback deployments apart)")
    rollback_deployments: int = Field(
        default=0, description="CodeDeploy rollback deployments started in the period: the old version put back"
    )
    succeeded: int
    rolled_back: int
    failed: int
    held: int
    running: int
    success_rate: float | None = Field(description="succeeded / ended")
    change_failure_rate: float | None = Field(description="rolled back, failed or stopped / ended")
    median_duration_seconds: float | None
    median_time_to_detect_seconds: float | None = Field(description="start to the first failing verdict")
    median_time_to_rollback_seconds: float | None = Field(description="first failing verdict to the end")


class FalseRollbackCandidate(Model):
    service: str
    environment: str
    version: str
    rolled_back: str = Field(description="deployment id that was rolled back")
    redeployed: str = Field(description="later deployment of the same version that succeeded")


class Summary(Model):
    schema_: str = Field(default=SUMMARY_SCHEMA, alias="schema")
    period: str = Field(description="daily, weekly or the --since given")
    current: PeriodFigures
    previous: PeriodFigures
    by_service: list[GroupCount]
    by_environment: list[GroupCount]
    by_strategy: list[GroupCount]
    incidents: IncidentStats
    false_rollback_candidates: list[FalseRollbackCandidate]
    noisiest_rules: list[tuple[str, int]]
    noisiest_channels: list[tuple[str, int]]
    failed_deployments: list[str] = Field(description="ids of the deployments that did not succeed")


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _median(values: list[float]) -> float | None:
    return float(median(values)) if values else None


def _groups(deployments: list[Deployment], key: str) -> list[GroupCount]:
    by: dict[str, list[Deployment]] = {}
    for d in deployments:
        by.setdefault(str(getattr(d, key)), []).append(d)
    return sorted(
        (
            GroupCount(
                key=k,
                deployments=len(v),
                succeeded=sum(d.status == DeploymentStatus.SUCCEEDED for d in v),
                failed=sum(d.status in _FAILED and d.decision != "held" for d in v),
            )
            for k, v in by.items()
        ),
        key=lambda g: (-g.deployments, g.key),
    )


class SummaryBuilder:
    """Summaries of what DeployGuard decided in a period, from the read models."""

    def __init__(self, reader: DeploymentReader, max_deployments: int = 5000) -> None:
        self.reader = reader
        self.max_deployments = max_deployments

    def deployments_between(self, start: datetime, end: datetime) -> list[Deployment]:
        found: list[Deployment] = []
        query = DeploymentQuery(since=start, limit=500)
        while len(found) < self.max_deployments:
            page = self.reader.page(query)
            found += [d for d in page.items if d.started_at < end]
            if not page.next_cursor:
                break
            query = query.model_copy(update={"cursor": page.next_cursor})
        return found

    def figures(self, deployments: list[Deployment], start: datetime, end: datetime) -> PeriodFigures:
        rollbacks = sum(d.rollback_of is not None for d in deployments)
        deployments = releases(deployments)
        ended = [d for d in deployments if d.status.is_terminal]
        succeeded = [d for d in ended if d.status == DeploymentStatus.SUCCEEDED]
        held = [d for d in ended if d.decision == "held"]
        failed = [d for d in ended if d.status in _FAILED and d.decision != "held"]
        detect, rollback = [], []
        for d in failed:
            failing = [
                a for a in self.reader.repository.assessments(d.deployment_id)
                if a.verdict.decision == Decision.FAILING
            ]  # fmt: skip
            if failing:
                first = min(a.at for a in failing)
                detect.append((first - d.started_at).total_seconds())
                if d.ended_at is not None:
                    rollback.append(max(0.0, (d.ended_at - first).total_seconds()))
        durations = [d.duration_seconds for d in ended if d.duration_seconds is not None]
        judged = len(succeeded) + len(failed)
        return PeriodFigures(
            start=start,
            end=end,
            deployments=len(deployments),
            rollback_deployments=rollbacks,
            succeeded=len(succeeded),
            rolled_back=sum(d.status == DeploymentStatus.ROLLED_BACK for d in failed),
            failed=sum(d.status != DeploymentStatus.ROLLED_BACK for d in failed),
            held=len(held),
            running=len(deployments) - len(ended),
            success_rate=_rate(len(succeeded), judged),
            change_failure_rate=_rate(len(failed), judged),
            median_duration_seconds=_median(durations),
            median_time_to_detect_seconds=_median(detect),
            median_time_to_rollback_seconds=_median(rollback),
        )

    def build(self, start: datetime, end: datetime, period: str) -> Summary:
        length = end - start
        current = self.deployments_between(start, end)
        previous = self.deployments_between(start - length, start)
        alerts_by_rule: Counter[str] = Counter()
        deliveries: Counter[str] = Counter()
        incidents: dict[str, Incident] = {}
        for d in current:
            alerts = self.reader.incidents.alerts(d.deployment_id)
            alerts_by_rule.update(a.rule for a in alerts)
            deliveries.update(n.channel for n in self.reader.repository.notifications(d.deployment_id))
            for incident in self.reader.incidents_of(alerts):
                incidents[incident.incident_id] = incident
        return Summary(
            period=period,
            current=self.figures(current, start, end),
            previous=self.figures(previous, start - length, start),
            by_service=_groups(releases(current), "service"),
            by_environment=_groups(releases(current), "environment"),
            by_strategy=_groups(releases(current), "strategy"),
            incidents=IncidentStats.of(list(incidents.values())),
            false_rollback_candidates=false_rollbacks(releases(current)),
            noisiest_rules=alerts_by_rule.most_common(5),
            noisiest_channels=deliveries.most_common(5),
            failed_deployments=[d.deployment_id for d in releases(current) if d.status in _FAILED],
        )


def releases(deployments: list[Deployment]) -> list[Deployment]:
    """The releases among ``deployments``: a CodeDeploy rollback deployment puts the old version back, and counts
    neither as a release that succeeded nor as one more failure (the release it rolls back counts)."""
    return [d for d in deployments if d.rollback_of is None]


def false_rollbacks(deployments: list[Deployment]) -> list[FalseRollbackCandidate]:
    """Releases rolled back, then deployed again unchanged (same version) and promoted."""
    ordered = sorted(deployments, key=lambda d: d.started_at)
    found = []
    for i, d in enumerate(ordered):
        if d.status not in _FAILED or d.decision == "held":
            continue
        later = next(
            (
                x for x in ordered[i + 1:]
                if (x.service, x.environment, x.version) == (d.service, d.environment, d.version)
                and x.status == DeploymentStatus.SUCCEEDED
            ),
            None,
        )  # fmt: skip
        if later is not None:
            found.append(
                FalseRollbackCandidate(
                    service=d.service, environment=d.environment, version=d.version,
                    rolled_back=d.deployment_id, redeployed=later.deployment_id,
                )
            )  # fmt: skip
    return found
