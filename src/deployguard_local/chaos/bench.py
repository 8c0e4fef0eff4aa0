"""``make chaos``: DeployGuard under AWS faults, on the embedded AWS, counted.

Each run injects one fault (throttling, 5xx, timeouts or an outage, for 30, 60 or 300
simulated seconds) into one service (CloudWatch, DynamoDB, SNS, Lambda, CodeDeploy, SQS,
the Step Functions task's invocation, or the HTTP receivers) when one state begins: a state
of the canary state machine (validate, shift, assess, promote, rollback, notify), the
lifecycle hook (pre-traffic of a Lambda deployment, test traffic of an ECS blue/green one)
or the notification router. Faults go through botocore ``before-send`` hooks on the
clients (:mod:`deployguard_local.chaos.faults`), keyed on the simulated clock. After its
state machine, hook or router is done, every run goes on after its fault is over for a
period of the schedule that may repair it and a minute (at least two simulated minutes; six
for the recorder's five-minute sweep), with that schedule firing (the traffic checks and the outbox, the
recorder's sweep, the router's digest flush), before it is counted.

The runs are a seeded sample of every (subject, state, service, fault) combination, shared
by worker processes, each with one embedded AWS. It prints a table and writes
``chaos-report.json``:

- ``alias_split_at_end``: runs whose alias still routes to both versions;
- ``regressions_promoted`` / ``healthy_rolled_back``: wrong decisions (a rollback of a
  healthy release under an outage is safe, and only counted);
- ``hooks_unanswered``: hook executions CodeDeploy never got a status for;
  ``hooks_answered_twice``: executions told two different statuses;
- ``notifications_lost``: routed channels that neither got the event nor have it dead-lettered;
- ``events_lost``: events recorded but never published, or published but never recorded;
- ``records_inconsistent``: records still in progress, or whose decision the traffic contradicts.

The terminal gets the table, the report's path and a one-line summary; the functions' logs
(Powertools JSON) go to ``chaos-report.log`` next to the report, or with ``--verbose`` to the
terminal with one line per run.

    python -m deployguard_local.chaos.bench [--runs 200] [--seed 11] [--workers 2] [--report chaos-report.json]
                                            [--verbose]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployguard_local.chaos.faults import FaultKind

if TYPE_CHECKING:
    from deployguard.models import DeploymentEvent

CANARY_STATES = ("validate", "shift", "assess", "promote", "rollback", "notify")
HOOK_STATES = ("pre-traffic", "ecs-test-traffic")
SUBJECT_SERVICES = {
    "canary": ("cloudwatch", "dynamodb", "sns", "lambda", "task"),
    "hook": ("dynamodb", "codedeploy", "lambda", "cloudwatch", "sns"),
    "router": ("dynamodb", "sns", "sqs", "http"),
}
FAULT_SHAPES: tuple[tuple[FaultKind, int], ...] = tuple(
    (kind, seconds) for kind in ("throttle", "5xx", "timeout", "outage") for seconds in (30, 60, 300)
)
COUNTERS = (
    "alias_split_at_end",
    "regressions_promoted",
    "healthy_rolled_back",
    "hooks_unanswered",
    "hooks_answered_twice",
    "notifications_lost",
    "events_lost",
    "records_inconsistent",
)
MUST_BE_ZERO = tuple(c for c in COUNTERS if c != "healthy_rolled_back")
SETTLE_SECONDS = 120  # after each run and its fault: at least two minute ticks, so the reconciler can repair
PROBE_SERVICE = "notify-probe"

CHAOS_CONFIG_EXTRA = f"""\
notifications:
  allowed_hosts: [127.0.0.1]  # the local receivers: loopback by explicit opt-in (local mode only)
  channels:
    probe-slack: {{type: slack, url: "${{CHAOS_SLACK_URL}}"}}
    probe-webhook: {{type: webhook, url: "${{CHAOS_WEBHOOK_URL}}", signing_key: chaos-signing-key}}
  routes:
    - {{name: probe, channels: [probe-slack, probe-webhook], services: [{PROBE_SERVICE}]}}
  delivery: {{max_attempts: 3, connect_timeout_seconds: 0.5, read_timeout_seconds: 0.3, backoff_base_seconds: 0.05,
             backoff_max_seconds: 0.2, max_retry_after_seconds: 5}}
"""


@dataclass(frozen=True)
class Case:
    index: int
    seed: int
    subject: str  # canary, hook, router
    state: str
    service: str
    kind: FaultKind
    seconds: int
    release: str = "healthy"  # canary: healthy or regression


@dataclass
class Outcome:
    case: Case
    counts: dict[str, int] = field(default_factory=dict)
    detail: str = ""
    injected: int = 0
    wall_seconds: float = 0.0
    cause: str | None = None  # a healthy release not promoted: why (see rollback_cause)


def plan(runs: int, seed: int) -> list[Case]:
    """A seeded sample of every combination, spread over subjects, states, services and faults."""
    rng = random.Random(seed)
    combos: dict[str, list[tuple[str, str, FaultKind, int]]] = {
        "canary": [
            (st, sv, k, s) for st in CANARY_STATES for sv in SUBJECT_SERVICES["canary"] for k, s in FAULT_SHAPES
        ],
        "hook": [(st, sv, k, s) for st in HOOK_STATES for sv in SUBJECT_SERVICES["hook"] for k, s in FAULT_SHAPES],
        "router": [("route", sv, k, s) for sv in SUBJECT_SERVICES["router"] for k, s in FAULT_SHAPES],
    }
    share = {"hook": max(1, runs * 3 // 16), "router": max(1, runs * 3 // 16)}
    share["canary"] = max(1, runs - share["hook"] - share["router"])
    cases: list[Case] = []
    for subject, all_combos in combos.items():
        rng.shuffle(all_combos)
        chosen = [all_combos[i % len(all_combos)] for i in range(share[subject])]
        for state, service, kind, seconds in chosen:
            release = "healthy"
            if subject == "canary":
                release = {"promote": "healthy", "rollback": "regression"}.get(state) or rng.choice(
                    ["healthy", "regression"]
                )
            cases.append(Case(len(cases), rng.randrange(1 << 30), subject, state, service, kind, seconds, release))
    rng.shuffle(cases)
    return cases


# --------------------------------------------------------------------------- one worker


class World:
    """One embedded AWS with the fault injector, the local receivers and the schedules, for many runs."""

    def __init__(self, stack: ExitStack, folder: Path) -> None:
        from deployguard_local.chaos.faults import FaultInjector
        from deployguard_local.chaos.scenario import write_lean_config
        from deployguard_local.emulator import EmbeddedAws
        from deployguard_local.receivers import local_receivers

        self.receivers = stack.enter_context(local_receivers(echo=None, signing_key="chaos-signing-key"))
        os.environ["CHAOS_SLACK_URL"] = self.receivers.urls["slack"]
        os.environ["CHAOS_WEBHOOK_URL"] = self.receivers.urls["webhook"]
        self.aws = stack.enter_context(EmbeddedAws(config_file=write_lean_config(folder, CHAOS_CONFIG_EXTRA)))
        self.aws.seed_sample()  # the CodeDeploy deployments the hook events name
        _end_sample_records()
        assert self.aws.clock is not None
        self.clock = self.aws.clock
        self.seeded = self._table_keys()
        self.faults = stack.enter_context(FaultInjector(self.clock))
        self.faults.watch(self.aws.registry)
        self._unfollow: Callable[[], None] | None = None

    @contextmanager
    def schedules(self, functions: list[str]) -> Iterator[None]:
        undo = self.aws.follow_schedules(functions)
        try:
            yield
        finally:
            undo()

    def fresh(self) -> None:
        """A day later with no fault armed: the previous run's deployments are out of every window,
        and its metrics forgotten (moto keeps every datapoint, and reads them all on every query)."""
        from moto.cloudwatch.models import cloudwatch_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        self.faults.clear()
        cloudwatch_backends[DEFAULT_ACCOUNT_ID][self.aws.stack.region].metric_data = []
        self._clear_table()  # moto reads every item on every query: each run starts from the seeded table
        self.clock.advance(25 * 3600)

    def _table_keys(self) -> set[tuple[str, str]]:
        from deployguard.aws import clients

        table = clients.resource("dynamodb").Table(self.aws.ref("DeploymentsTable"))
        keys: set[tuple[str, str]] = set()
        kwargs: dict[str, Any] = {"ProjectionExpression": "pk, sk"}
        while True:
            page = table.scan(**kwargs)
            keys.update((str(i["pk"]), str(i["sk"])) for i in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return keys
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _clear_table(self) -> None:
        from deployguard.aws import clients

        table = clients.resource("dynamodb").Table(self.aws.ref("DeploymentsTable"))
        with table.batch_writer() as batch:
            for pk, sk in self._table_keys() - self.seeded:
                batch.delete_item(Key={"pk": pk, "sk": sk})

    def settle(self, schedules: list[str]) -> None:
        """The schedules of these functions fire until one of their periods and a minute (at least
        two minutes) after the run and after the end of its fault, whichever is later: the
        recorder's sweep that answers a hook CodeDeploy did not take runs every five minutes."""
        self.aws.invoker.drain()
        now = self.clock()
        ends = [f.start + timedelta(seconds=f.seconds) for f in self.faults.faults]
        until = max([now, *ends]) + timedelta(seconds=max(SETTLE_SECONDS, self.period(schedules) + 60))
        with self.schedules(schedules):
            self.clock.advance((until - now).total_seconds())
            self.aws.invoker.drain()

    def period(self, functions: list[str]) -> int:
        """The longest period, in seconds, of these functions' schedule rules (read through EventBridge)."""
        from deployguard.aws import clients
        from deployguard_local.emulator import rate_seconds

        events = clients.client("events")
        expressions = [
            events.describe_rule(Name=rule).get("ScheduleExpression") for rule in self.aws.schedule_rules(functions)
        ]
        return max((rate_seconds(e) for e in expressions if e), default=60)


def _end_sample_records() -> None:
    """The sample's deployment records end (the assessor would judge them every tick of every run)."""
    from deployguard import clock
    from deployguard.models import Deployment, DeploymentStatus, Phase
    from deployguard.storage.repository import DeploymentRepository

    def end(d: Deployment) -> None:
        d.status, d.phase, d.ended_at = DeploymentStatus.SUCCEEDED, Phase.COMPLETED, clock.now()

    for deployment_id in ("dg-sample-0001", "dg-sample-0003"):
        DeploymentRepository().update_deployment(deployment_id, end)


def run_case(world: World, case: Case) -> Outcome:
    world.fresh()
    started = time.monotonic()
    before = sum(world.faults.injected.values())
    if case.subject == "canary":
        outcome = _canary(world, case)
    elif case.subject == "hook":
        outcome = _hook(world, case)
    else:
        outcome = _router(world, case)
    outcome.injected = sum(world.faults.injected.values()) - before
    outcome.wall_seconds = round(time.monotonic() - started, 3)
    return outcome


def _canary(world: World, case: Case) -> Outcome:
    from deployguard.storage.repository import DeploymentRepository
    from deployguard_local.chaos.scenario import REGRESSION, prepare_canary, run_canary

    run = prepare_canary(
        world.aws, f"c{case.index}", REGRESSION if case.release == "regression" else None, seed=case.seed
    )
    world.faults.arm(world.aws.ref("CanaryStepFunction"), case.state, case.service, case.kind, case.seconds)
    run_canary(world.aws, run, timeout=300)
    world.settle(["AssessorFunction", "TrafficCheckFunction"])  # the outbox and the traffic checks, every minute
    alias = run.alias()
    stable = alias.weight_of(run.target.stable_version) == 1.0
    new = alias.weight_of(run.target.new_version) == 1.0
    repository = DeploymentRepository()
    deployment = repository.find_deployment(run.deployment_id)
    decision = deployment.decision if deployment else None
    counts = dict.fromkeys(COUNTERS, 0)
    counts["alias_split_at_end"] = int(not stable and not new)
    counts["regressions_promoted"] = int(case.release == "regression" and (new or decision == "promoted"))
    counts["healthy_rolled_back"] = int(case.release == "healthy" and not new)
    if deployment is not None:
        inconsistent = (
            not deployment.status.is_terminal
            or (decision == "promoted" and not new)
            or (decision != "promoted" and not stable)
        )
        counts["records_inconsistent"] = int(inconsistent)
        recorded = {e.event_id for e in repository.events(run.deployment_id)}
        published = {m.get("event_id") for m in world.faults.published if m.get("deployment_id") == run.deployment_id}
        counts["events_lost"] = len(recorded ^ published)
    status = run.execution["status"] if run.execution else "?"
    error = (run.execution or {}).get("error", "")
    cause = None
    if counts["healthy_rolled_back"]:
        reason = deployment.decision_reason if deployment is not None else None
        cause = rollback_cause(reason or _execution_reason(run.execution))
    return Outcome(
        case,
        counts,
        f"{status} {error} decision={decision} alias={alias.function_version}{alias.additional_weights or ''}".strip()
        + (f" cause={cause}" if cause else ""),
        cause=cause,
    )


_ERROR_NAME = re.compile(r"^([A-Za-z][\w.]*(?:Error|Exception|Timedout|Timeout|Fault|Failed)[\w.]*)\s*:")


def rollback_cause(reason: str | None) -> str:
    """Why a healthy release was not promoted: ``fault: <error>`` when a task failed beyond its
    retries with an error (the reason the Rollback task recorded starts with the error's name),
    ``metrics`` when the verdict said so, ``unknown`` without a reason."""
    if not reason:
        return "unknown"
    match = _ERROR_NAME.match(reason.strip())
    return f"fault: {match.group(1)}" if match else "metrics"


def _execution_reason(execution: dict[str, Any] | None) -> str | None:
    """The reason in the execution's output, or its error (a record that never got one)."""
    if not execution:
        return None
    try:
        output = json.loads(execution.get("output") or "{}")
    except json.JSONDecodeError:
        output = {}
    reason = output.get("reason") if isinstance(output, dict) else None
    if reason:
        return str(reason)
    error = execution.get("error")
    return f"{error}: {execution.get('cause', '')}" if error else None


def _hook(world: World, case: Case) -> Outcome:
    from deployguard_local.codedeploy import LEDGER
    from deployguard_local.emulator import REPO_ROOT

    name = "codedeploy_lifecycle_hook.json" if case.state == "pre-traffic" else "codedeploy_lifecycle_hook_ecs.json"
    event = json.loads((REPO_ROOT / "events" / name).read_text(encoding="utf-8"))
    execution_id = LEDGER.issue(event["DeploymentId"])
    event["LifecycleEventHookExecutionId"] = execution_id
    function = world.aws.functions["LifecycleHookFunction"]
    world.faults.arm(function.name, "*", case.service, case.kind, case.seconds)
    arn = world.aws.stack.get_att("LifecycleHookFunction", "Arn")
    world.aws.invoker.submit(function.name, arn, event)  # CodeDeploy invokes hooks asynchronously
    world.settle(["DeploymentRecorderFunction"])  # its sweep may answer what a delivery could not
    statuses = {c.status for c in LEDGER.calls if c.execution_id == execution_id}
    counts = dict.fromkeys(COUNTERS, 0)
    counts["hooks_unanswered"] = int(LEDGER.status_of(execution_id) is None)
    counts["hooks_answered_twice"] = int(len(statuses) > 1)
    return Outcome(
        case, counts, f"status={LEDGER.status_of(execution_id)} requests={LEDGER.attempts_for(execution_id)}"
    )


_HTTP_BEHAVIOURS: dict[str, dict[str, Any]] = {
    "throttle": {"mode": "throttle", "retry_after": "1"},
    "5xx": {"mode": "error", "status": 500},
    "timeout": {"mode": "slow", "delay_seconds": 0.6},
    "outage": {"mode": "error", "status": 503},
}


PROBE_CHANNELS = {"probe-slack": "slack", "probe-webhook": "webhook"}  # channel -> local receiver


def probe_event(deployment_id: str, message: str) -> DeploymentEvent:
    """A critical event of the probe service, which the probe route sends to both probe channels."""
    from deployguard.models import DeploymentEvent, EventType, Severity

    return DeploymentEvent(
        event_type=EventType.ROLLBACK_COMPLETED,
        deployment_id=deployment_id,
        service=PROBE_SERVICE,
        version="2",
        environment="production",
        severity=Severity.CRITICAL,
        title="Rollback Completed",
        message=message,
    )


def _router(world: World, case: Case) -> Outcome:
    from deployguard.aws.events import EventPublisher
    from deployguard_local.receivers import Behaviour

    event = probe_event(f"chaos-r{case.index:04d}", f"chaos run {case.index}")  # fixed width: r17 is not in r170
    restore: Callable[[datetime, datetime], None] | None = None
    if case.service == "http":
        end = world.clock() + timedelta(seconds=case.seconds)
        for receiver in world.receivers.receivers.values():
            receiver.behaviour = Behaviour(**_HTTP_BEHAVIOURS[case.kind])

        def restore(before: datetime, after: datetime) -> None:
            if after >= end:
                for receiver in world.receivers.receivers.values():
                    receiver.behaviour = Behaviour()

        world.clock.listeners.append(restore)
    else:
        world.faults.arm(
            world.aws.functions["NotificationRouterFunction"].name, "*", case.service, case.kind, case.seconds
        )
    try:
        EventPublisher().publish(event)
        world.settle(["NotificationRouterFunction"])  # its minute schedule flushes digests
    finally:
        if restore is not None:
            world.clock.listeners.remove(restore)
            for receiver in world.receivers.receivers.values():
                receiver.behaviour = Behaviour()
    counts = dict.fromkeys(COUNTERS, 0)
    delivered, dead, lost = notification_fate(world, event)
    counts["notifications_lost"] = len(lost)
    return Outcome(case, counts, f"delivered={sorted(delivered)} dead_lettered={sorted(dead)} lost={sorted(lost)}")


def notification_fate(world: World, event: DeploymentEvent) -> tuple[set[str], set[str], set[str]]:
    """The probe channels that got ``event`` (a 2xx at their receiver), those whose delivery of it the
    dead-letter queue holds, and the lost ones: neither."""
    from deployguard.aws import clients

    delivered = {
        kind
        for kind, receiver in world.receivers.receivers.items()
        if any(
            event.deployment_id in r.body.decode(errors="replace") and 200 <= r.status < 300 for r in receiver.received
        )
    }
    queue = world.aws.ref("NotificationDeadLetterQueue")
    dead = dead_lettered(clients.client("sqs"), queue, event.event_id)
    wanted = set(PROBE_CHANNELS.values())
    return delivered, dead, wanted - delivered - dead


def dead_lettered(sqs: Any, queue_url: str, event_id: str) -> set[str]:
    """The probe receivers whose delivery of the event a dead-letter message holds: the router's
    dead letter names one channel; an SNS message or a Lambda on-failure record (the invocation
    failed) holds the whole event, every channel. The whole queue is read, each message once (a
    visibility timeout hides those read), then made visible again: they stay for ``retry``."""
    from pydantic import ValidationError

    from deployguard.notification.dlq import DeadLetter, events_in

    handles: list[str] = []
    found: set[str] = set()
    try:
        while True:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300).get(
                "Messages", []
            )
            if not messages:
                break
            for message in messages:
                handles.append(message["ReceiptHandle"])
                try:
                    letter = DeadLetter.model_validate_json(message["Body"])
                except ValidationError:
                    try:
                        events = events_in(message["Body"])
                    except (ValueError, ValidationError, KeyError, TypeError):
                        continue
                    if any(e.event_id == event_id for e in events):
                        found.update(PROBE_CHANNELS.values())
                    continue
                if letter.channel in PROBE_CHANNELS and any(e.event_id == event_id for e in letter.events):
                    found.add(PROBE_CHANNELS[letter.channel])
    finally:
        for handle in handles:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    return found


def _worker(cases: list[Case], verbose: bool = False) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        world = World(stack, Path(folder))
        for case in cases:
            try:
                outcomes.append(run_case(world, case))
            except Exception as exc:  # a harness failure is a finding too: every counter it could hide is 1
                outcomes.append(
                    Outcome(
                        case,
                        {c: int(c != "healthy_rolled_back") for c in COUNTERS},
                        f"harness error {type(exc).__name__}: {exc}",
                    )
                )
            if verbose:
                last = outcomes[-1]
                flagged = {c: v for c, v in last.counts.items() if v}
                print(f"{last.case} {last.wall_seconds}s {flagged or ''} {last.detail}", file=sys.stderr, flush=True)
    return outcomes


# --------------------------------------------------------------------------- report


def summarise(outcomes: list[Outcome], wall: float, workers: int, seed: int) -> dict[str, Any]:
    totals = Counter({c: 0 for c in COUNTERS})
    groups: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        totals.update(outcome.counts)
        key = f"{outcome.case.subject}/{outcome.case.service}"
        group = groups.setdefault(key, Counter())
        group["runs"] += 1
        group.update(outcome.counts)
    bad = [o for o in outcomes if any(o.counts.get(c) for c in MUST_BE_ZERO)]
    causes = Counter(o.cause or "unknown" for o in outcomes if o.counts.get("healthy_rolled_back"))
    return {
        "runs": len(outcomes),
        **{c: totals[c] for c in COUNTERS},
        "healthy_rolled_back_by_cause": dict(causes.most_common()),
        "healthy_rolled_back_runs": [
            {"case": asdict(o.case), "cause": o.cause, "detail": o.detail}
            for o in outcomes
            if o.counts.get("healthy_rolled_back")
        ],
        "seed": seed,
        "workers": workers,
        "wall_seconds": round(wall, 1),
        "faults_injected": sum(o.injected for o in outcomes),
        "by_subject_service": {k: dict(v) for k, v in sorted(groups.items())},
        "failures": [
            {"case": asdict(o.case), "counts": {c: v for c, v in o.counts.items() if v}, "detail": o.detail}
            for o in bad
        ],
    }


def table(report: dict[str, Any]) -> str:
    short = {
        "alias_split_at_end": "split",
        "regressions_promoted": "regr_prom",
        "healthy_rolled_back": "healthy_rb",
        "hooks_unanswered": "hook_unans",
        "hooks_answered_twice": "hook_twice",
        "notifications_lost": "notif_lost",
        "events_lost": "ev_lost",
        "records_inconsistent": "rec_incons",
    }
    header = f"{'subject/service':22}{'runs':>6}" + "".join(f"{short[c]:>12}" for c in COUNTERS)
    lines = [header, "-" * len(header)]
    for key, group in report["by_subject_service"].items():
        lines.append(f"{key:22}{group['runs']:>6}" + "".join(f"{group.get(c, 0):>12}" for c in COUNTERS))
    lines.append("-" * len(header))
    lines.append(f"{'total':22}{report['runs']:>6}" + "".join(f"{report[c]:>12}" for c in COUNTERS))
    lines.append(
        f"\n{report['runs']} runs, {report['faults_injected']} faulted AWS calls, seed {report['seed']}, "
        f"{report['workers']} workers, {report['wall_seconds']} s wall, {report.get('cpu_seconds', '?')} s CPU"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report", type=Path, default=Path("chaos-report.json"))
    parser.add_argument(
        "--verbose", action="store_true", help="one line per run and the functions' logs on stderr (else in a file)"
    )
    args = parser.parse_args(argv)
    cases = plan(args.runs, args.seed)
    started = time.monotonic()
    shards = [cases[i :: args.workers] for i in range(args.workers)]
    log = None if args.verbose else args.report.with_suffix(".log")
    with output_to(log):
        if args.workers == 1:
            outcomes = _worker(shards[0], args.verbose)
        else:
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                results = pool.starmap(_worker, [(shard, args.verbose) for shard in shards])
                outcomes = [o for shard in results for o in shard]
    outcomes.sort(key=lambda o: o.case.index)
    report = summarise(outcomes, time.monotonic() - started, args.workers, args.seed)
    used = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    report["cpu_seconds"] = round(sum(u.ru_utime + u.ru_stime for u in used), 1)
    args.report.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(table(report))
    print(f"report: {args.report}" + (f" (the functions' logs: {log}; --verbose shows them)" if log else ""))
    failing = [c for c in MUST_BE_ZERO if report[c]]
    if failing:
        print("not yet zero: " + ", ".join(f"{c}={report[c]}" for c in failing), file=sys.stderr)
    else:
        print(f"every counter that must be 0 is 0 in {report['runs']} runs; " + healthy_summary(report))
    return 1 if failing else 0


def healthy_summary(report: dict[str, Any]) -> str:
    causes = report.get("healthy_rolled_back_by_cause") or {}
    detail = ", ".join(f"{cause} {count}" for cause, count in causes.items())
    return f"healthy releases not promoted: {report['healthy_rolled_back']}" + (f" ({detail})" if detail else "")


@contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """Everything written to stdout and stderr meanwhile (the functions' Powertools JSON logs, the
    local receivers' tracebacks), by this process and the worker processes it starts, goes to the
    file ``path`` (None: where it would go)."""
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with path.open("wb") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


if __name__ == "__main__":
    raise SystemExit(main())
