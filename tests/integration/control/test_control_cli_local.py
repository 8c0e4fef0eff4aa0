"""`deployguard control ... --local` and `notifications retry --local` act on a saved local state as on a
deployed stack: the embedded stack's topic (and the router subscribed to it), canary state machine, dead-letter
queue and Lambda aliases, through the same workflows; the next command sees the effect.

The saved states are made as `make demo` makes its own (an embedded AWS configured like the demo, canaries run
by the real state machine, ``local_state.save``): the session's demo run (its four rollouts), and one made here
(module-scoped, a few seconds) with a canary held for a person, one in flight and a dead letter."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from local_control import BY, alias, local, reopened, run

from deployguard.aws import clients
from deployguard.aws.events import EventPublisher
from deployguard.config import load_config
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.notification.dlq import DeadLetter, DeadLetterQueue
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.control import CanaryControlService
from deployguard_local import local_state
from deployguard_local.codedeploy import _set_state, create_lambda_deployment
from deployguard_local.console_server import ClockGate, start_live_canary, wait_until
from deployguard_local.demo import DEMO_CONFIG
from deployguard_local.emulator import EmbeddedAws, _environment, sample_handler
from deployguard_local.receivers import local_receivers


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved local state, made as the demo makes its own: ``dep-quiet-api`` held for a person (its canary saw no
    traffic: no evidence), ``live-orders-api`` in flight at 10% (its execution waits at a gate, as serve --local's
    live canary), ``dep-waiting`` waiting for approval before 100%, and a dead letter of ops-slack."""
    directory = tmp_path_factory.mktemp("saved-local-state")
    with local_receivers(echo=None) as receivers:
        env = {f"DEMO_{kind.upper()}_URL": url for kind, url in receivers.urls.items()}
        with _environment(env), EmbeddedAws(config_file=DEMO_CONFIG) as aws:
            versions = aws.deploy_sample_function("quiet-api", "live", sample_handler)
            target = LambdaTarget(function_name="quiet-api", alias="live", stable_version=versions[0],
                                  new_version=versions[1])  # fmt: skip
            request = {"deployment": {"deployment_id": "dep-quiet-api", "service": "quiet-api",
                                      "version": versions[1], "target": target.model_dump()}}  # fmt: skip
            assert aws.run_state_machine("CanaryStateMachine", request)["status"] == "SUCCEEDED"
            repository = DeploymentRepository()
            assert repository.get_deployment("dep-quiet-api").decision == "held"
            start_live_canary(aws, seconds_per_minute=None)  # held at its gate until the embedded AWS closes
            assert wait_until(lambda: (d := repository.find_deployment("live-orders-api")) is not None
                              and d.canary_weight > 0)  # fmt: skip
            # started before dep-quiet-api: a retry is refused once a newer deployment of the service came after it
            before = repository.get_deployment("dep-quiet-api").started_at - timedelta(seconds=1)
            waiting = Deployment(deployment_id="dep-waiting", service="quiet-api", version=versions[1],
                                 environment="production", target=target, status=DeploymentStatus.IN_PROGRESS,
                                 canary_weight=0.5, started_at=before)  # fmt: skip
            repository.create_deployment(waiting)
            service = CanaryControlService(load_config(), repository, EventPublisher(aws.ref("DeploymentEventsTopic")))
            service.wait_for_approval("dep-waiting", "token-of-an-execution")  # as the canary's approval task does
            event = repository.events("dep-quiet-api")[0]
            DeadLetterQueue(aws.ref("NotificationDeadLetterQueue")).send(
                DeadLetter(kind="event", channel="ops-slack", events=[event], error="HTTP 503 from Slack", attempts=3)
            )
            aws.invoker.drain()
            local_state.save(aws, directory)
    return directory


@pytest.fixture
def state(saved: Path, tmp_path: Path) -> Path:
    """A copy of the saved state for one test (commands write it back)."""
    return Path(shutil.copytree(saved, tmp_path / "state"))


def history(capsys: pytest.CaptureFixture[str], directory: Path, deployment_id: str) -> dict[str, Any]:
    code, out, err = run(capsys, "deployments", "show", deployment_id, *local(directory), "--json")
    assert code == 0, err
    return dict(json.loads(out))


def test_pause_is_recorded_announced_and_seen_by_the_next_command(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "control", "pause", "live-orders-api", *BY, *local(state))
    assert code == 0, err
    assert out.strip() == "live-orders-api pause: held at 10%; a failing verdict still rolls back"
    assert "its canary's execution is not in the saved local state" in err  # nothing here moves its traffic
    after = history(capsys, state, "live-orders-api")
    assert after["deployment"]["control"]["paused"] and after["deployment"]["control"]["last_actor"] == "erin"
    assert after["outcome"]["state"] == "running"
    audit = [(a["action"], a["actor"], a["reason"], a["details"].get("changed")) for a in after["audit"]]
    assert audit[-1] == ("control_pause", "erin", "checking the canary by hand", True)
    announced = [e for e in after["events"] if e["event_type"] == "control.action"]
    assert [e["details"]["verb"] for e in announced] == ["pause"]
    # published on the embedded stack's topic: its router delivered it to the demo's channels (local receivers)
    delivered = {n["channel"] for n in after["notifications"] if n["event_id"] == announced[0]["event_id"]}
    assert delivered >= {"dev-slack", "audit-webhook"}


def test_abort_puts_the_alias_back_at_stable_for_the_next_command(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved_alias = local_state.read_manifest(state)["functions"]["orders-api"]["aliases"]["live"]
    assert saved_alias == {"version": "1", "weights": {"2": 0.1}}  # the saved state: the canary in flight at 10%
    code, out, err = run(capsys, "control", "abort", "live-orders-api", *BY, *local(state))
    assert code == 0, err
    assert "alias orders-api:live back at 100% version 1" in out
    with reopened(state):
        assert alias("orders-api") == ("1", {})
        deployment = DeploymentRepository().get_deployment("live-orders-api")
        assert (deployment.status, deployment.decision, deployment.canary_weight) == (
            DeploymentStatus.ROLLED_BACK, "aborted", 0.0)  # fmt: skip
        trail = [(e.action, e.actor) for e in DeploymentRepository().audit_trail("live-orders-api")]
        assert trail[-2:] == [("rolled_back", "erin"), ("control_abort", "erin")]


def test_retry_runs_the_held_step_again_on_the_embedded_state_machine(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code, out, err = run(capsys, "control", "retry", "dep-quiet-api", *BY, *local(state))
    assert code == 0, err
    assert out.startswith("dep-quiet-api retry: step 1 starts again (execution dep-quiet-api-retry-")
    assert "ran to its end on the simulated clock (SUCCEEDED)" in err  # an execution ends with the command
    after = history(capsys, state, "dep-quiet-api")
    actions = [a["action"] for a in after["audit"]]
    retried = actions.index("control_retry")
    assert "assessed" in actions[retried:]  # the new execution judged the step again ...
    # ... and, as no traffic reaches quiet-api in the saved state (no evidence), held it for a person again
    assert (after["deployment"]["decision"], after["outcome"]["state"]) == ("held", "held")
    assert time.monotonic() - started < 60


def test_notifications_retry_redelivers_the_saved_dead_letters(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = json.loads((state / "sqs" / "NotificationDeadLetterQueue.json").read_text(encoding="utf-8"))
    assert len(dead) == 1 and json.loads(dead[0]["Body"])["channel"] == "ops-slack"
    before = history(capsys, state, "dep-quiet-api")["notifications"]
    code, out, err = run(capsys, "notifications", "retry", *local(state))
    assert code == 0, out + err
    assert "delivered event to ops-slack" in out and out.rstrip().endswith("redelivered 1, still failing 0, skipped 0")
    assert json.loads((state / "sqs" / "NotificationDeadLetterQueue.json").read_text(encoding="utf-8")) == []
    after = history(capsys, state, "dep-quiet-api")["notifications"]
    fresh = [n for n in after if n not in before]
    assert [(n["channel"], n["status"]) for n in fresh] == [("ops-slack", "delivered")]


def test_what_the_local_state_does_not_keep_is_named(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "control", "approve", "dep-waiting", *BY, *local(state))
    assert code == 2 and "saved local state has no Step Functions executions" in err
    assert "approval task token" in err
    code, _, err = run(capsys, "control", "promote", "nonexist", *BY, *local(state))
    assert code == 2 and err.strip() == "deployguard control promote: deployment nonexist not found"
    with reopened(state):  # refused before anything changed
        waiting = DeploymentRepository().get_deployment("dep-waiting")
        assert waiting.control.awaiting_approval and waiting.control.approval_token
        assert not [e for e in DeploymentRepository().audit_trail("dep-waiting") if e.action.startswith("control_")]


def test_abort_of_a_codedeploy_deployment_that_ended_answers_as_on_aws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CodeDeploy-driven record that says its deployment ended: on a stack whose CodeDeploy has that deployment
    (finished), abort answers ``had already completed`` (StopDeployment refused) and exits 0, promote is refused
    (ContinueDeployment) with 2; ``--local`` on the same records saved answers the same, line for line. A record
    still in progress is refused locally: what CodeDeploy would do with it is not in the saved state."""
    directory = tmp_path / "state"
    verbs = [("abort", "dep-cd-ended"), ("promote", "dep-cd-ended")]
    with local_receivers(echo=None) as receivers:
        env = {f"DEMO_{kind.upper()}_URL": url for kind, url in receivers.urls.items()}
        with _environment(env), EmbeddedAws(config_file=DEMO_CONFIG) as aws:
            versions = aws.deploy_sample_function("search-api", "live", sample_handler)
            target = LambdaTarget(function_name="search-api", alias="live", stable_version=versions[0],
                                  new_version=versions[1])  # fmt: skip
            ended = create_lambda_deployment(target, "search-api", "search-api-live")
            _set_state(ended, "InProgress")
            aws.clock.advance(600)
            _set_state(ended, "Stopped", ended=True)  # stopped with rollback by CodeDeploy, the record says so
            repository = DeploymentRepository()
            for deployment_id, cd_id, status in (
                ("dep-cd-ended", ended, DeploymentStatus.ROLLED_BACK),
                ("dep-cd-running", "d-NOTKEPT01", DeploymentStatus.IN_PROGRESS),
            ):
                repository.create_deployment(Deployment(
                    deployment_id=deployment_id, service="search-api", environment="production",
                    version=versions[1], target=target, status=status, driver="codedeploy",
                    codedeploy_application="search-api", codedeploy_group="search-api-live",
                    codedeploy_deployment_id=cd_id,
                    ended_at=aws.clock() if status.is_terminal else None))  # fmt: skip
            local_state.save(aws, directory)  # the records; CodeDeploy's deployments are not kept
            on_aws = ["--table", aws.ref("DeploymentsTable"), "--topic-arn", aws.ref("DeploymentEventsTopic")]
            answers = [run(capsys, "control", verb, dep, *BY, *on_aws) for verb, dep in verbs]
    assert answers[0] == (0, f"dep-cd-ended abort: CodeDeploy deployment {ended} had already completed "
                             "(nothing changed)\n", "")  # fmt: skip
    assert answers[1][0] == 2 and "is not waiting to reroute traffic" in answers[1][2]
    assert [run(capsys, "control", verb, dep, *BY, *local(directory)) for verb, dep in verbs] == answers
    with reopened(directory):
        trail = DeploymentRepository().audit_trail("dep-cd-ended")
        assert [(e.action, e.actor, e.details["changed"], e.details["result"]) for e in trail] == [
            ("control_abort", "erin", False, f"CodeDeploy deployment {ended} had already completed")]  # fmt: skip
        assert DeploymentRepository().get_deployment("dep-cd-ended").status == DeploymentStatus.ROLLED_BACK
    code, _, err = run(capsys, "control", "abort", "dep-cd-running", *BY, *local(directory))
    assert code == 2 and "d-NOTKEPT01, which the record leaves in_progress" in err
    assert "the saved local state has no CodeDeploy deployments" in err


class SteppedClock:
    """A monotonic clock that moves only when slept on: ``settle``'s wait without real time. Its first sleep waits
    until ``ready`` is set (the execution is held), so the settle time runs out only once it can never end."""

    def __init__(self, ready: threading.Event) -> None:
        self.now, self.slept, self.ready = 0.0, 0, ready

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if not self.slept:
            assert self.ready.wait(60), "the execution was never held at the clock"
        self.now += seconds
        self.slept += 1


def ended(sfn: Any, arn: str) -> dict[str, Any]:
    """DescribeExecution once the execution has ended (moto's StopExecution takes effect at the execution's
    next state, AWS's at once)."""
    for _ in range(3000):
        described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.01)
    raise AssertionError(f"{arn} still runs")


def test_an_execution_that_does_not_end_is_stopped_and_nothing_is_saved(
    state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``control retry --local`` starts the held canary's step again; here its execution never ends: its own thread
    is held at its first advance of the simulated clock (its Wait state), as serve --local holds its live canary
    (:class:`ClockGate`, released once the command is over). ``settle`` waits the settle time out on an injected
    clock, then the command stops the execution, fails with 2 and leaves the saved state byte for byte."""
    before = {p.relative_to(state): p.read_bytes() for p in state.rglob("*") if p.is_file()}
    gate, held, seen = ClockGate(None), threading.Event(), []
    opened = local_state.opened

    command = threading.current_thread()  # the CLI runs here; the topic's deliveries run on "lambda-async"

    def held_in_executions(start: Any, end: Any) -> None:  # the execution's thread only
        if threading.current_thread() is not command and threading.current_thread().name != "lambda-async":
            held.set()
            gate(start, end)

    @contextlib.contextmanager
    def opened_with_the_gate(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with opened(*args, **kwargs) as aws:
            aws.clock.late_listeners.append(held_in_executions)
            try:
                yield aws
            finally:  # the command is over: let the execution go on, to see where the command left it
                gate.released.set()
                sfn = clients.client("stepfunctions")
                for machine in sfn.list_state_machines()["stateMachines"]:
                    for execution in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
                        seen.append(ended(sfn, execution["executionArn"]))

    clock = SteppedClock(held)
    monkeypatch.setattr(local_state, "opened", opened_with_the_gate)
    monkeypatch.setattr(
        local_state, "settle", functools.partial(local_state.settle, monotonic=clock, sleep=clock.sleep)
    )
    code, out, err = run(capsys, "control", "retry", "dep-quiet-api", *BY, *local(state))
    assert code == 2 and out == ""  # the outcome is printed once the state is saved: never, here
    [name] = [e["name"] for e in seen]
    assert name.startswith("dep-quiet-api-retry-")
    assert f"deployguard: local: execution {name} still ran after 120 s\n" in err
    assert err.rstrip().endswith(
        f"execution {name} did not end within 120 s: stopped, and the local state left as it was (nothing saved)"
    )
    assert clock.now == pytest.approx(local_state.SETTLE_TIMEOUT) and clock.slept > 1  # its settle time, run out
    assert [e["status"] for e in seen] == ["ABORTED"]  # stopped by the command (released, it went no further)
    assert {p.relative_to(state): p.read_bytes() for p in state.rglob("*") if p.is_file()} == before
