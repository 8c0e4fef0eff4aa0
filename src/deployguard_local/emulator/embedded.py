"""``EmbeddedAws``: the whole DeployGuard stack on moto, in this process (see the package's docstring)."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session

from deployguard import clock as dg_clock
from deployguard.aws import clients
from deployguard.workflows import runtime
from deployguard_local.emulator import client_pacing
from deployguard_local.emulator.clock import ListeningClock
from deployguard_local.emulator.cloudwatch import install_cloudwatch
from deployguard_local.emulator.dynamodb import (
    atomic_dynamodb,
    fast_attribute_values,
    faster_items,
    transactions_without_table_copy,
)
from deployguard_local.emulator.environment import REPO_ROOT, _environment
from deployguard_local.emulator.iam import IamEnforcement, role_policies
from deployguard_local.emulator.lambda_runtime import (
    AsyncInvoker,
    FunctionRegistry,
    LocalFunction,
    install_in_process_lambda,
)
from deployguard_local.emulator.sample import SampleApplication
from deployguard_local.emulator.schedules import ScheduleRun, Schedules
from deployguard_local.emulator.stepfunctions import install_simulated_waits, parse_definitions_once
from deployguard_local.function_logs import logs_to_stderr
from deployguard_local.template import Stack


@functools.cache
def _shared_loader() -> botocore.loaders.Loader:
    """The service models (read-only JSON) loaded once per process."""
    return botocore.loaders.create_loader()


def _session_with_shared_loader() -> botocore.session.Session:
    session = botocore.session.get_session()
    session.register_component("data_loader", _shared_loader())
    return session


def _execution_running(arn: str) -> Callable[[], bool]:
    """Whether the execution still runs, read from moto's backend: a poll every 10 ms through the API
    (botocore and moto's dispatch, a few ms of CPU each) took the GIL from the interpreter thread it waits
    on. When the backend cannot be read, the caller asks the API every time."""
    try:
        from moto.stepfunctions.responses import get_backend

        _, _, _, region, account, _ = arn.split(":", 5)
        execution = get_backend(account, region).describe_execution(arn)
    except Exception:  # not moto's parser backend: ask the API
        return lambda: True
    return lambda: bool(execution.status == "RUNNING")


def stop_running_executions() -> None:
    """Stop every Step Functions execution still running in moto (its interpreter thread ends at its
    next state)."""
    sfn = clients.client("stepfunctions")
    for machine in sfn.list_state_machines()["stateMachines"]:
        arn = machine["stateMachineArn"]
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn, statusFilter="RUNNING"):
            for execution in page["executions"]:
                with contextlib.suppress(Exception):  # it may end by itself meanwhile
                    sfn.stop_execution(executionArn=execution["executionArn"], cause="embedded AWS torn down")


class EmbeddedAwsClosed(RuntimeError):
    """The embedded AWS was torn down while something still waited on it."""


class EmbeddedAws(Schedules, SampleApplication):
    """Context manager: the whole DeployGuard stack on moto, in this process."""

    def __init__(
        self,
        root: Path = REPO_ROOT,
        *,
        simulated_clock: bool = True,
        start: datetime | None = None,
        config_file: Path | None = None,
        endpoint_url: str | None = None,
        quiet: bool = True,
        storage_only: bool = False,
        enforce_iam: bool | Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.storage_only = storage_only  # tables and buckets only: what read commands need
        # template functions' calls refused as AWS would when their roles do not allow them (emulator.iam); a
        # mapping gives the template parameters the roles are read for (default: every guard prefix set); not
        # given, DEPLOYGUARD_ENFORCE_IAM=1 in the environment turns it on (a whole test run under IAM)
        self.enforce_iam = os.environ.get("DEPLOYGUARD_ENFORCE_IAM") == "1" if enforce_iam is None else enforce_iam
        self.iam: IamEnforcement | None = None
        self.clock = ListeningClock(start) if simulated_clock else None
        self.config_file = config_file
        self.endpoint_url = endpoint_url
        self.quiet = quiet
        self.stack = Stack.load(root)
        self.registry = FunctionRegistry()
        self.functions: dict[str, LocalFunction] = {}
        self.function_environment: dict[str, str] = {}
        self.schedule_runs: list[ScheduleRun] = []
        self._schedule_fired: dict[str, datetime] = {}  # rule -> the last boundary it fired at
        self._schedule_lock = threading.Lock()
        self._exit = contextlib.ExitStack()
        self.closed = threading.Event()  # set when the stack is torn down: pollers stop

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> EmbeddedAws:
        try:
            return self._enter()
        except BaseException:
            self._exit.close()  # a half-built stack must not leave the mock (and its tables) behind
            raise

    def _enter(self) -> EmbeddedAws:
        env: dict[str, str | None] = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_REGION": self.stack.region,
            "DEPLOYGUARD_LOCAL": "1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
        }
        # the functions' logs go to stderr: stdout is for the answers of the commands
        self._exit.callback(logs_to_stderr())
        if self.quiet:
            env.update({"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"})
            level = runtime.logger.log_level
            runtime.logger.setLevel("WARNING")
            self._exit.callback(runtime.logger.setLevel, level)
            # moto's ASL interpreter logs every caught task error at ERROR; the audit trail tells it better
            asl_logger = logging.getLogger("moto.stepfunctions")
            asl_level = asl_logger.level
            asl_logger.setLevel(logging.CRITICAL)
            self._exit.callback(asl_logger.setLevel, asl_level)
            # disabled Powertools metrics keep their dimensions between invocations (a deployed
            # function's flush clears them), so the next invocation's own values draw a warning
            self._exit.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message=r"Dimension '.*' has already been added")
        if self.config_file is not None:
            env["DEPLOYGUARD_CONFIG_FILE"] = str(self.config_file)
        # in-process AWS has no endpoint; an endpoint left in the environment must not redirect it
        env["DEPLOYGUARD_ENDPOINT_URL"] = self.endpoint_url or None
        env["AWS_ENDPOINT_URL"] = None
        self._exit.enter_context(_environment(env))
        if self.clock is not None:
            dg_clock.install(self.clock)
            self._exit.callback(dg_clock.reset)
        if not self.endpoint_url:
            from moto import mock_aws

            self._exit.enter_context(
                mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}})
            )
            # moto starts a new default boto3 session (restored when it stops); this one reads the service
            # models through the process's one loader, not again from JSON for every embedded AWS
            boto3.setup_default_session(botocore_session=_session_with_shared_loader())
            search_paths = _shared_loader().search_paths  # each boto3 session adds its data folder again
            search_paths[:] = list(dict.fromkeys(search_paths))
            client_pacing.install()  # a throttled client's pacing does not wait on the simulated clock
            self.invoker = AsyncInvoker(self.registry)
            self._exit.callback(self.invoker.stop)
            topics = lambda: [v.get("Ref", "") for k, v in self.stack.physical.items() if "TopicName" in v]  # noqa: E731
            undos = [transactions_without_table_copy(), atomic_dynamodb(), fast_attribute_values(), faster_items(),
                     parse_definitions_once(), *install_in_process_lambda(self.registry, self.invoker, topics),
                     *install_cloudwatch(),
                     *(install_simulated_waits(self.clock) if self.clock is not None else [])]  # fmt: skip
            for undo in undos:
                self._exit.callback(undo)
            # runs before the undos: an execution left running (a test's live canary) must not go on
            # under the next embedded AWS's patched waits and advance *its* clock
            self._exit.callback(stop_running_executions)
            from deployguard_local.codedeploy import install_continue_api, install_hook_status_api
            from deployguard_local.codedeploy_targets import install_deployment_target_api

            self._exit.callback(install_hook_status_api())
            self._exit.callback(install_continue_api())
            self._exit.callback(install_deployment_target_api())
            from deployguard_local.eventbridge import install_lambda_targets

            self._exit.callback(install_lambda_targets(self.invoker))
        clients.reset()
        runtime.reset()
        self._exit.callback(clients.reset)
        self._exit.callback(runtime.reset)
        self._create_stack()
        if self.enforce_iam is not False:
            parameters = None if self.enforce_iam is True else dict(self.enforce_iam)
            self.iam = IamEnforcement(role_policies(self.stack, parameters))
            self._exit.callback(self.iam.install())
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed.set()
        self._exit.close()

    def run_state_machine(
        self, logical_id: str, execution_input: dict[str, Any], timeout: float = 120.0
    ) -> dict[str, Any]:
        """Start an execution and wait (in real time) until it ends; returns DescribeExecution.
        Raises :class:`EmbeddedAwsClosed` when the embedded AWS is torn down meanwhile."""
        sfn = clients.client("stepfunctions")
        arn = sfn.start_execution(
            stateMachineArn=self.ref(logical_id), name=f"run-{uuid.uuid4().hex[:12]}", input=json.dumps(execution_input)
        )["executionArn"]
        deadline = time.monotonic() + timeout
        running = _execution_running(arn)
        while time.monotonic() < deadline:
            if self.closed.is_set():
                raise EmbeddedAwsClosed(f"the embedded AWS was torn down while {arn} ran")
            if not running():
                desc = sfn.describe_execution(executionArn=arn)
                if desc["status"] != "RUNNING":
                    self.last_execution_arn = arn
                    return desc
            time.sleep(0.01)
        raise TimeoutError(f"state machine execution {arn} still running after {timeout:.0f} s")
