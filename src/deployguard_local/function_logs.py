"""Where the embedded functions' logs go: stderr, never the CLI's stdout.

The embedded AWS runs the functions of template.yaml in this process (asynchronous
invocations in a worker thread). Their Powertools logs and EMF metric lines would go to
stdout, where a command prints its answer (``--json``), and interleave with it.
:func:`logs_to_stderr` points every Powertools log handler at whatever ``sys.stderr`` is
when a line is written (so a test's capture sees it there too), and puts in front of
stdout a stream that sends what a function prints while it runs (:func:`function_running`,
per thread) to stderr; the undo puts everything back.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from deployguard.workflows import runtime


class CurrentStderr:
    """A stream that writes to the ``sys.stderr`` of the moment."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_running = threading.local()


@contextlib.contextmanager
def function_running() -> Iterator[None]:
    """While a function's handler runs in this thread: what it prints goes to stderr. Afterwards,
    with metrics disabled, their values are cleared as a deployed function's flush clears them:
    Powertools keeps disabled metrics and prints them once a metric holds 100 values."""
    _running.depth = getattr(_running, "depth", 0) + 1
    try:
        yield
    finally:
        _running.depth -= 1
        if is_metrics_disabled():
            runtime.metrics.clear_metrics()


class FunctionStdout:
    """stdout for the command, stderr for a function running in the writing thread."""

    def __init__(self, stdout: TextIO) -> None:
        self.stdout = stdout

    def _target(self) -> TextIO:
        return sys.stderr if getattr(_running, "depth", 0) else self.stdout

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding ... of the command's stdout
        return getattr(self.stdout, name)


def _powertools_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(
        item for item in logging.root.manager.loggerDict.values() if isinstance(item, logging.Logger)
    )]  # fmt: skip
    return [
        handler
        for logger in loggers
        for handler in logger.handlers
        if type(handler) is logging.StreamHandler and isinstance(handler.formatter, BasePowertoolsFormatter)
    ]


def _swap(handler: logging.StreamHandler, stream: Any) -> Any:
    """Point ``handler`` at ``stream``; returns the stream it had. Unlike ``setStream``, the old stream
    is not flushed: it may be closed (a handler made while a test captured stdout outlives the capture)."""
    with handler.lock:  # type: ignore[union-attr]
        previous, handler.stream = handler.stream, stream
    return previous


def logs_to_stderr() -> Callable[[], None]:
    """Send the functions' logs and metric lines to stderr; returns the undo."""
    stream = CurrentStderr()
    moved = [(handler, _swap(handler, stream)) for handler in _powertools_handlers()]
    stdout = sys.stdout
    proxy = FunctionStdout(stdout)
    sys.stdout = proxy

    def undo() -> None:
        for handler, previous in moved:
            _swap(handler, previous)
        if sys.stdout is proxy:
            sys.stdout = stdout

    return undo
