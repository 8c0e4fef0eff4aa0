"""Post-promotion monitoring looks of one service fall on the same minutes (issue 12), so that its
deployments share one alias-level read; never later than the schedule's interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from deployguard.workflows.monitoring import look_due, next_look

START = datetime(2026, 11, 2, 12, 0, 30, tzinfo=UTC)


def _looks(service: str, first: datetime, interval: int, until: datetime) -> list[datetime]:
    looks, last, now = [first], first, first
    while now < until:
        now += timedelta(minutes=1)
        if look_due(service, last, interval, now):
            looks.append(now)
            last = now
    return looks


def test_a_services_deployments_look_in_the_same_minutes_and_never_later_than_the_interval() -> None:
    until = START + timedelta(hours=3)
    for interval in (300, 900):
        runs = [_looks("svc-a", START + timedelta(minutes=offset), interval, until) for offset in (0, 3, 7, 11)]
        later = [{at for at in looks if at > START + timedelta(minutes=30)} for looks in runs]
        assert later[0] == later[1] == later[2] == later[3]  # after their first looks, all on the service's grid
        for looks in runs:
            gaps = [(b - a).total_seconds() for a, b in pairwise(looks)]
            assert max(gaps) <= interval and min(gaps[1:]) == interval


def test_services_have_their_own_phase_and_a_look_is_due_first_at_once() -> None:
    phases = {next_look(f"svc-{n:02d}", START, 900).minute % 15 for n in range(20)}
    assert len(phases) > 5  # the loop's load is spread over the interval
    assert look_due("svc-a", None, 900, START)
