"""Tearing the embedded AWS down stops what still runs in it: a Step Functions execution left
running (a console's live canary) would otherwise go on under the next embedded AWS of the same
process, whose patched Wait states advance *its* simulated clock (the demo then decided a minute late)."""

from __future__ import annotations

from deployguard.aws import clients
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import start_live_canary, wait_until
from deployguard_local.emulator import EmbeddedAws
from deployguard_local.emulator.embedded import stop_running_executions


def test_running_executions_are_stopped_at_teardown() -> None:
    with EmbeddedAws() as aws:
        assert aws.clock is not None
        _, gate, worker = start_live_canary(aws, seconds_per_minute=None)  # parked at its first Wait
        repository = DeploymentRepository()
        assert wait_until(lambda: (d := repository.find_deployment("live-orders-api")) is not None
                          and d.canary_weight > 0)  # fmt: skip
        sfn = clients.client("stepfunctions")
        machine = aws.ref("CanaryStateMachine")
        [running] = sfn.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"]

        stop_running_executions()
        gate.released.set()  # the parked Wait returns; the stopped execution takes no further state
        worker.join(timeout=30)  # its poller sees the execution end
        assert not worker.is_alive()
        assert sfn.describe_execution(executionArn=running["executionArn"])["status"] == "ABORTED"
        assert sfn.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"] == []
