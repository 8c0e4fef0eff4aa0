"""When to assess next: by deployment phase and current status, and after promotion.

After a promotion the new version is watched on a fixed schedule: every minute for the
first hour, every 5 minutes for the next 6 hours, every 15 minutes until 24 hours,
then no more (``None``). A warning or critical status shortens the interval.
"""

from __future__ import annotations

from deployguard.models import Decision, HealthStatus, Phase

# (until seconds after promotion, interval seconds)
POST_DEPLOYMENT_SCHEDULE: tuple[tuple[int, int], ...] = (
    (3600, 60),  # first hour: every minute
    (7 * 3600, 300),  # next 6 hours: every 5 minutes
    (24 * 3600, 900),  # until 24 hours: every 15 minutes
)
MIN_INTERVAL_SECONDS = 30  # CloudWatch publishes Lambda metrics per minute: faster rarely sees more

# interval while a canary runs (deployment_active, validation), by status
_ACTIVE_INTERVALS: dict[HealthStatus, int] = {
    HealthStatus.HEALTHY: 60,
    HealthStatus.UNKNOWN: 60,
    HealthStatus.WARNING: 60,
    HealthStatus.CRITICAL: MIN_INTERVAL_SECONDS,
}
_DECISION_STATUS = {
    Decision.HEALTHY: HealthStatus.HEALTHY,
    Decision.INCONCLUSIVE: HealthStatus.UNKNOWN,
    Decision.FAILING: HealthStatus.CRITICAL,
}


def post_deployment_interval(seconds_since_promotion: float) -> int | None:
    """The monitoring schedule after promotion; None once 24 hours have passed."""
    if seconds_since_promotion < 0:
        return POST_DEPLOYMENT_SCHEDULE[0][1]
    for until, interval in POST_DEPLOYMENT_SCHEDULE:
        if seconds_since_promotion < until:
            return interval
    return None


def _status(status: HealthStatus | Decision | str | None) -> HealthStatus:
    if status is None:
        return HealthStatus.UNKNOWN
    if isinstance(status, Decision):
        return _DECISION_STATUS[status]
    if isinstance(status, HealthStatus):
        return status
    value = str(status).lower()
    if value in {d.value for d in Decision}:
        return _DECISION_STATUS[Decision(value)]
    return HealthStatus(value)


def next_assessment_seconds(
    phase: Phase | str,
    status: HealthStatus | Decision | str | None = None,
    seconds_since_promotion: float | None = None,
    *,
    base_seconds: int = 60,
) -> int | None:
    """Seconds until the next assessment, or None when nothing is left to assess.

    - pre-deployment: every ``base_seconds`` (checks before traffic moves);
    - deployment active / validation: ``base_seconds`` (60), 30 when critical, to
      confirm a rollback quickly;
    - monitoring (after promotion): the post-deployment schedule by
      ``seconds_since_promotion``; a warning halves the interval (not below a
      minute), critical assesses every minute; None after 24 hours;
    - completed / failed: None.
    """
    phase = Phase(phase)
    state = _status(status)
    if phase in (Phase.COMPLETED, Phase.FAILED):
        return None
    if phase == Phase.PRE_DEPLOYMENT:
        return max(MIN_INTERVAL_SECONDS, base_seconds)
    if phase in (Phase.DEPLOYMENT_ACTIVE, Phase.VALIDATION):
        interval = _ACTIVE_INTERVALS[state]
        return max(MIN_INTERVAL_SECONDS, min(interval, base_seconds) if state != HealthStatus.CRITICAL else interval)
    # monitoring
    scheduled = post_deployment_interval(seconds_since_promotion or 0.0)
    if scheduled is None:
        return None
    if state == HealthStatus.CRITICAL:
        return 60
    if state == HealthStatus.WARNING:
        return max(60, scheduled // 2)
    return scheduled
