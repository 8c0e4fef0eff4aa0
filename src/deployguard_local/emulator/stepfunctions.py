"""Step Functions on moto's ASL interpreter, on the simulated clock: Wait states and retry
back-offs advance it instead of sleeping, so a ten-minute canary runs in seconds."""

from __future__ import annotations

import contextvars
import time
import types
from collections.abc import Callable
from typing import Any

from deployguard_local.emulator.clock import ListeningClock


def install_simulated_waits(sim_clock: ListeningClock) -> list[Callable[[], None]]:
    """Wait states and retry back-offs advance ``sim_clock``; returns the undos."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function

    undo: list[Callable[[], None]] = []
    original_wait = wait_function.WaitFunction._wait_interval

    def simulated_wait(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds > 0 and env.is_running():  # a stopped execution moves no clock
            sim_clock.advance(wait_seconds)

    setattr(wait_function.WaitFunction, "_wait_interval", simulated_wait)  # noqa: B010
    undo.append(lambda: setattr(wait_function.WaitFunction, "_wait_interval", original_wait))

    # The retrier's back-off calls time.sleep without its execution: remember which execution
    # is retrying, so that a stopped one (its retry still unwinding) moves no clock either.
    retrying: contextvars.ContextVar[Any] = contextvars.ContextVar("retrying", default=None)
    original_eval_body = retrier_decl.RetrierDecl._eval_body

    def eval_body_of_execution(self: Any, env: Any) -> None:
        token = retrying.set(env)
        try:
            original_eval_body(self, env)
        finally:
            retrying.reset(token)

    def simulated_backoff(seconds: float) -> None:
        env = retrying.get()
        if seconds > 0 and env is not None and env.is_running():
            sim_clock.advance(seconds)

    setattr(retrier_decl.RetrierDecl, "_eval_body", eval_body_of_execution)  # noqa: B010
    undo.append(lambda: setattr(retrier_decl.RetrierDecl, "_eval_body", original_eval_body))
    original_time = retrier_decl.time
    retrier_decl.time = types.SimpleNamespace(sleep=simulated_backoff, time=time.time)  # type: ignore[assignment]
    undo.append(lambda: setattr(retrier_decl, "time", original_time))
    return undo


_PARSED: dict[str, Any] = {}  # definition -> its ANTLR parse tree, for every embedded AWS of the process
_VALIDATED: set[str] = set()  # definitions CreateStateMachine found valid (bounded as _PARSED is)


def parse_definitions_once() -> Callable[[], None]:
    """moto lexes and parses a state machine's definition (ANTLR, 40-90 ms of CPU) at CreateStateMachine and
    again at every StartExecution, though every embedded AWS creates the same two. Here a definition is parsed
    once per process; each caller still gets evaluation components of its own, built from the tree (which
    the preprocessor only reads). A definition that does not parse is never kept: moto's error comes again
    each time. CreateStateMachine's validation of a definition that was valid before is not built again.
    Returns the undo."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = AmazonStateLanguageParser.__dict__["parse"]
    original_validate = StepFunctionsParserBackend.__dict__["_validate_definition"]

    def validate(definition: str) -> None:
        # CreateStateMachine builds the evaluation components only to see that they build, then drops them: a
        # definition that built once builds again (the same tree, the same preprocessor)
        if definition not in _VALIDATED:
            original_validate.__func__(definition)
            _VALIDATED.add(definition)

    def parse(definition: str) -> tuple[Any, Any]:
        tree = _PARSED.get(definition)
        if tree is None:
            program, tree = original.__func__(definition)
            if len(_PARSED) >= 64:
                _PARSED.clear()
                _VALIDATED.clear()
            _PARSED[definition] = tree
            return program, tree
        return Preprocessor().visit(tree), tree

    setattr(AmazonStateLanguageParser, "parse", staticmethod(parse))  # noqa: B010
    setattr(StepFunctionsParserBackend, "_validate_definition", staticmethod(validate))  # noqa: B010

    def undo() -> None:
        setattr(AmazonStateLanguageParser, "parse", original)  # noqa: B010
        setattr(StepFunctionsParserBackend, "_validate_definition", original_validate)  # noqa: B010

    return undo
