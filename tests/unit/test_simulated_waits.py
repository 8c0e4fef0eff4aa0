"""The embedded Step Functions' retry back-offs move the simulated clock for a running
execution only: a stopped one, its retry still unwinding, must not move another run's clock."""

from __future__ import annotations

import types
from typing import Any

import pytest


@pytest.mark.parametrize(("running", "advanced"), [(True, 42.0), (False, 0.0)])
def test_retry_backoff_moves_the_clock_only_for_a_running_execution(
    monkeypatch: pytest.MonkeyPatch, running: bool, advanced: float
) -> None:
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    from deployguard_local.emulator.clock import ListeningClock
    from deployguard_local.emulator.stepfunctions import install_simulated_waits

    def backoff_of_42_seconds(self: Any, env: Any) -> None:  # what the retrier does after its bookkeeping
        retrier_decl.time.sleep(42)

    monkeypatch.setattr(retrier_decl.RetrierDecl, "_eval_body", backoff_of_42_seconds)
    clock = ListeningClock()
    start = clock()
    undos = install_simulated_waits(clock)
    try:
        execution = types.SimpleNamespace(is_running=lambda: running)
        retrier_decl.RetrierDecl._eval_body(None, execution)  # type: ignore[arg-type]
        retrier_decl.time.sleep(7)  # a sleep outside any retrier moves nothing
    finally:
        for undo in reversed(undos):
            undo()
    assert (clock() - start).total_seconds() == advanced
    assert retrier_decl.RetrierDecl._eval_body is backoff_of_42_seconds
