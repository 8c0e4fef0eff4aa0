"""Late Assess attempts: Step Functions gave up on an Assess attempt after its 120 s TimeoutSeconds and retried it
(the retry decided, the canary moved on: next step, promoted), while the first invocation ran on (its function may
run 360 s) and lands now. Through the real CanaryStepFunction handler on the embedded AWS with synthetic traffic on
the simulated clock; the late attempt is held inside its own CloudWatch read (a botocore hook) while the retry and
what follows it run, then goes on. A stale attempt changes nothing (no verdict recorded, no phase, no approval wait)
and is audited once as stale; a retry of the look that is still current decides as any attempt does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alias_race_support import audit_actions, started, step
from control_support import control_service

from deployguard.aws import clients
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.models import DeploymentStatus, EventType, LambdaTarget, Phase
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import ControlRequest, rolling_back
from deployguard_local.chaos.scenario import write_lean_config
from deployguard_local.emulator import EmbeddedAws
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

FAILING = VersionBehaviour(error_rate=0.12, p99_ms=2000)  # the new version fails from its first minute
TIMED_OUT = 122  # Assess's TimeoutSeconds (120) and its retry's first interval (2): when the retry starts


def _canary(aws: EmbeddedAws, deployment_id: str, new: VersionBehaviour | None = None) -> dict[str, Any]:
    """Validated, shifted to step 1 (20%, the lean plan's [20, 50] over 120 s steps), traffic on the clock."""
    return _canary_and_traffic(aws, deployment_id, new)[0]


def _canary_and_traffic(
    aws: EmbeddedAws, deployment_id: str, new: VersionBehaviour | None = None
) -> tuple[dict[str, Any], LambdaTrafficSource]:
    _, s0 = started(aws, deployment_id)
    traffic = LambdaTrafficSource("svc", "live", 2000, {"1": VersionBehaviour(), "2": new or VersionBehaviour()},
                                  seed=3)  # fmt: skip
    assert aws.clock is not None
    aws.clock.listeners.append(traffic.on_clock)
    s1, errored = step(aws, "shift", s0)
    assert not errored and s1["weight"] == 20
    return s1, traffic


def _looks(aws: EmbeddedAws, state: dict[str, Any], count: int) -> dict[str, Any]:
    """``count`` looks that say wait, a minute apart: the next Assess's input (its minute already passed)."""
    assert aws.clock is not None
    for _ in range(count):
        aws.clock.advance(60)
        state, errored = step(aws, "assess", state)
        assert not errored and state["next"] == "wait", state
    aws.clock.advance(60)
    return state


@contextmanager
def _inside_the_metrics_read(meanwhile: Callable[[], None]) -> Iterator[list[bool]]:
    """The next Assess attempt is held in its first CloudWatch call while ``meanwhile`` runs (Step Functions timed
    it out: the retry and what follows it), then goes on: it judges what it read, as a late attempt does."""
    ran: list[bool] = []
    events = clients.client("cloudwatch").meta.events

    def hold(**_: Any) -> None:
        if not ran:
            ran.append(True)
            meanwhile()

    events.register("before-call.cloudwatch", hold, unique_id="late-assess")
    try:
        yield ran
    finally:
        events.unregister("before-call.cloudwatch", unique_id="late-assess")


def _stale(deployment_id: str) -> list[Any]:
    return [a for a in DeploymentRepository().audit_trail(deployment_id) if a.action == "assessment_stale"]


def test_a_late_attempt_landing_after_the_next_step_records_no_verdict(tmp_path: Path) -> None:
    """The retry advanced and ShiftTraffic moved the canary to step 2 (50%); the late step-1 attempt lands. Before:
    its verdict was recorded (an assessment and an ``assessed`` entry at 20%, next advance) under step 2's 50%."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        assert aws.clock is not None
        look = _looks(aws, _canary(aws, "dep-N"), 2)  # 12:03: healthy, the step's 120 s are over
        after: dict[str, Any] = {}

        def retried_and_advanced() -> None:
            aws.clock.advance(TIMED_OUT)
            retry, errored = step(aws, "assess", look)
            assert not errored and (retry["next"], retry["step_index"]) == ("advance", 1), retry
            after["shifted"], errored = step(aws, "shift", retry)
            assert not errored and after["shifted"]["weight"] == 50

        with _inside_the_metrics_read(retried_and_advanced) as ran:
            _, errored = step(aws, "assess", look)  # attempt 1, late
        assert ran and not errored
        repo = DeploymentRepository()
        record = repo.get_deployment("dep-N")
        assert (record.step_index, record.canary_weight, record.phase) == (1, 0.5, Phase.DEPLOYMENT_ACTIVE)
        latest = repo.latest_assessment("dep-N")
        assert latest is not None and latest.canary_weight == 0.2
        assert len(repo.assessments("dep-N")) == 3  # two looks that waited and the retry's: not the late attempt's
        actions = audit_actions("dep-N")
        assert actions.count("assessed") == 3 and actions[-1] == "assessment_stale", actions
        assert len(_stale("dep-N")) == 1 and "step 2" in _stale("dep-N")[0].reason
        alias = LambdaTrafficShifter(LambdaTarget(**look["target"])).current()
        assert alias.additional_weights == {"2": 0.5}


def test_a_late_failing_attempt_never_marks_rolling_back_after_the_retry_went_on(tmp_path: Path) -> None:
    """A person skipped the analysis while the first attempt hung: the retry honours it (the canary goes on to
    step 2), the late attempt read the record before and judges failing. It must not say rolling back: the record
    would contradict the execution, and every verb but abort would be refused."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        assert aws.clock is not None
        look = _looks(aws, _canary(aws, "dep-F", FAILING), 0)  # 12:01: failing

        def skipped_retried_and_advanced() -> None:
            skip = ControlRequest(verb="skip_analysis", actor="alice", reason="emergency fix")
            assert control_service(aws).apply("dep-F", skip).changed
            aws.clock.advance(TIMED_OUT)
            retry, errored = step(aws, "assess", look)
            assert not errored and (retry["next"], retry["last_verdict"]) == ("advance", "failing"), retry
            _, errored = step(aws, "shift", retry)
            assert not errored

        with _inside_the_metrics_read(skipped_retried_and_advanced) as ran:
            _, errored = step(aws, "assess", look)
        assert ran and not errored
        record = DeploymentRepository().get_deployment("dep-F")
        assert (record.status, record.step_index, record.canary_weight) == (DeploymentStatus.IN_PROGRESS, 1, 0.5)
        assert record.phase == Phase.DEPLOYMENT_ACTIVE and not rolling_back(record), record.phase_history[-1]
        pause = ControlRequest(verb="pause", actor="bob", reason="look closer")
        assert control_service(aws).apply("dep-F", pause).changed  # a person's verb is still honoured
        actions = audit_actions("dep-F")
        assert actions.count("assessed") == 1, actions  # the retry's
        assert len(_stale("dep-F")) == 1


def test_a_late_failing_attempt_after_the_same_looks_retry_decided(tmp_path: Path) -> None:
    """The retry of the same look decided (advance: analysis skipped), its ShiftTraffic not run yet; the late
    attempt lands now and must not record its verdict over the retry's or mark rolling back."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        assert aws.clock is not None
        look = _looks(aws, _canary(aws, "dep-W", FAILING), 0)

        def skipped_and_retried() -> None:
            skip = ControlRequest(verb="skip_analysis", actor="alice", reason="emergency fix")
            assert control_service(aws).apply("dep-W", skip).changed
            aws.clock.advance(TIMED_OUT)
            retry, errored = step(aws, "assess", look)
            assert not errored and retry["next"] == "advance", retry

        with _inside_the_metrics_read(skipped_and_retried) as ran:
            step(aws, "assess", look)
        assert ran
        repo = DeploymentRepository()
        record = repo.get_deployment("dep-W")
        assert record.phase == Phase.DEPLOYMENT_ACTIVE and not rolling_back(record)
        assert len(repo.assessments("dep-W")) == 1 and len(_stale("dep-W")) == 1


def test_a_late_attempt_landing_after_the_promotion_records_nothing(tmp_path: Path) -> None:
    """The retry promoted and Promote recorded it; the late attempt of that look lands. Before: it recorded its
    verdict after the promotion and, finding the record ended once the alerts were told, took the end for a
    remediation: it rewrote the promoted record's reason and announced Rollback Initiated and Rollback Completed
    for a canary the alias serves at 100%."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        assert aws.clock is not None
        s1 = _looks(aws, _canary(aws, "dep-P"), 2)
        s2, _ = step(aws, "assess", s1)
        assert s2["next"] == "advance"
        s2, _ = step(aws, "shift", s2)
        assert s2["weight"] == 50
        look = _looks(aws, s2, 1)  # the last step's 120 s are over: this look promotes
        after: dict[str, Any] = {}

        def retried_and_promoted() -> None:
            aws.clock.advance(TIMED_OUT)
            retry, errored = step(aws, "assess", look)
            assert not errored and retry["next"] == "promote", retry
            done, errored = step(aws, "promote", retry)
            assert not errored and done["decision"] == "promoted"
            after["reason"] = DeploymentRepository().get_deployment("dep-P").decision_reason

        with _inside_the_metrics_read(retried_and_promoted) as ran:
            step(aws, "assess", look)
        assert ran
        repo = DeploymentRepository()
        record = repo.get_deployment("dep-P")
        assert (record.status, record.decision) == (DeploymentStatus.SUCCEEDED, "promoted")
        assert not [p for p in record.phase_history if p.phase == Phase.FAILED]
        assert record.decision_reason == after["reason"], record.decision_reason
        events = [e.event_type for e in repo.events("dep-P")]
        assert EventType.PROMOTION_COMPLETED in events and EventType.ROLLBACK_INITIATED not in events, events
        actions = audit_actions("dep-P")
        assert "assessed" not in actions[actions.index("promoted") :], actions
        assert len(repo.assessments("dep-P")) == 5  # 3 looks of step 1, 2 of step 2 (the retry's the last)
        assert len(_stale("dep-P")) == 1


def test_a_retry_of_the_look_that_is_still_current_decides(tmp_path: Path) -> None:
    """Attempt 1 failed inside its CloudWatch read (nothing recorded); Step Functions' retry of the same look
    decides as usual, and nothing is stale."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        assert aws.clock is not None
        look = _looks(aws, _canary(aws, "dep-R"), 2)

        def throttled() -> None:
            raise RuntimeError("CloudWatch throttled the read")

        with _inside_the_metrics_read(throttled):
            _, errored = step(aws, "assess", look)
        assert errored
        aws.clock.advance(4)
        retry, errored = step(aws, "assess", look)
        assert not errored and (retry["next"], retry["step_index"]) == ("advance", 1)
        assert audit_actions("dep-R").count("assessed") == 3 and _stale("dep-R") == []


def test_a_retry_whose_older_attempt_lands_during_its_read_still_decides(tmp_path: Path) -> None:
    """The other order: attempt 1 (begun at 12:03) records its verdict while the retry (begun at 12:05:02) reads.
    That newer assessment is an older attempt's (its look began first): the retry is the attempt Step Functions
    reads, and decides; it is not taken for a stale one. Single-threaded: inside the retry's read the simulated
    clock is set back to attempt 1's start (the traffic paused, no minute written twice), attempt 1 runs, and its
    own read takes the clock past the retry's start before it records."""
    with EmbeddedAws(config_file=write_lean_config(tmp_path)) as aws:
        assert aws.clock is not None
        clock = aws.clock
        s1, traffic = _canary_and_traffic(aws, "dep-O")
        look = _looks(aws, s1, 2)  # 12:03
        began = clock()
        clock.advance(TIMED_OUT)  # the retry begins at 12:05:02
        calls: list[str] = []
        events = clients.client("cloudwatch").meta.events
        first: list[Any] = []

        def interleave(**_: Any) -> None:
            calls.append("read")
            if len(calls) == 1:  # the retry's first read: attempt 1, begun at 12:03, runs on and lands now
                traffic.active = False
                clock.advance((began - clock()).total_seconds())
                first.append(step(aws, "assess", look))
                clock.advance(20)  # back in the retry's read, past attempt 1's landing
                traffic.active = True
            elif len(calls) == 2:  # attempt 1's first read: it lands after the retry began
                clock.advance(TIMED_OUT + 8)

        events.register("before-call.cloudwatch", interleave, unique_id="older-lands")
        try:
            retry, errored = step(aws, "assess", look)
        finally:
            events.unregister("before-call.cloudwatch", unique_id="older-lands")
        (late, late_errored) = first[0]
        assert not late_errored and late["next"] == "advance"  # it decided as the look's only attempt so far
        assert not errored and (retry["next"], retry["step_index"]) == ("advance", 1), retry
        assert _stale("dep-O") == [] and audit_actions("dep-O").count("assessed") == 4
