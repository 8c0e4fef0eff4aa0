"""Where the embedded functions' logs go: stderr, never the CLI's stdout; and whose keys they carry.

The embedded AWS runs the functions of template.yaml in this process (asynchronous
invocations in a worker thread). Their Powertools logs and EMF metric lines would go to
stdout, where a command prints its answer (``--json``), and interleave with it.
:func:`logs_to_stderr` points every Powertools log handler at whatever ``sys.stderr`` is
when a line is written (so a test's capture sees it there too), and puts in front of
stdout a stream that sends what a function prints while it runs (:func:`function_running`,
per thread) to stderr; the undo puts everything back.

Every function shares one Powertools logger here (``deployguard.workflows.runtime.logger``), where
each has its own in AWS: one function's keys (``function_name``, ``deployment_id``, ``correlation_id``,
``action`` ...) would land on another's lines, one running in the other thread or invoked within it.
So while :func:`logs_to_stderr` is in place the logger's keys are kept per thread, and
:func:`function_running` gives a function its own keys while it runs (those its last invocation left,
as a warm Lambda environment keeps them) and puts back the ones it found.
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
_function_keys: dict[str, dict[str, Any]] = {}  # a function's logger keys as its last invocation left them
_function_keys_lock = threading.Lock()


@contextlib.contextmanager
def function_running(name: str | None = None) -> Iterator[None]:
    """While a function's handler runs in this thread: what it prints goes to stderr, and the logger
    carries the function's own keys (``name``'s; those the thread had are back afterwards). Afterwards,
    with metrics disabled, their values are cleared as a deployed function's flush clears them:
    Powertools keeps disabled metrics and prints them once a metric holds 100 values."""
    formatter = _formatter()
    found = dict(formatter.log_format) if formatter is not None else None
    if formatter is not None and name is not None:
        with _function_keys_lock:
            own = _function_keys.get(name)
        formatter.log_format = dict(own if own is not None else _base_keys(formatter))
    _running.depth = getattr(_running, "depth", 0) + 1
    try:
        yield
    finally:
        _running.depth -= 1
        if formatter is not None and found is not None:
            if name is not None:
                with _function_keys_lock:
                    _function_keys[name] = dict(formatter.log_format)
            formatter.log_format = found
        if is_metrics_disabled():
            runtime.metrics.clear_metrics()


def _formatter() -> Any:
    """The shared logger's Powertools formatter (its keys: ``log_format``), if it has one."""
    formatter = getattr(runtime.logger, "registered_formatter", None)
    return formatter if isinstance(formatter, BasePowertoolsFormatter) and hasattr(formatter, "log_format") else None


def _base_keys(formatter: Any) -> dict[str, Any]:
    """The keys a function's first invocation starts with: the logger's own (its order, service ...) as
    ``clear_state`` leaves them, none of an invocation's."""
    keys: dict[str, Any] = dict.fromkeys(getattr(formatter, "log_record_order", ()))
    keys.update(getattr(formatter, "keys_combined", {}))
    return keys


def _keys_per_thread(formatter: Any) -> Callable[[], None]:
    """Keep ``formatter.log_format`` (the keys every line carries) per thread, each thread starting with
    the keys it had now; returns the undo (the keys as they were now)."""
    base = dict(formatter.log_format)
    local = threading.local()
    original = type(formatter)

    class PerThreadKeys(original):  # type: ignore[misc,valid-type]
        @property
        def log_format(self) -> dict[str, Any]:
            if getattr(local, "keys", None) is None:
                local.keys = dict(base)
            return local.keys

        @log_format.setter
        def log_format(self, value: dict[str, Any]) -> None:
            local.keys = value

    formatter.__class__ = PerThreadKeys

    def undo() -> None:
        formatter.__class__ = original
        with _function_keys_lock:
            _function_keys.clear()

    return undo


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
    formatter = _formatter()
    keys_back = _keys_per_thread(formatter) if formatter is not None else None

    def undo() -> None:
        for handler, previous in moved:
            _swap(handler, previous)
        if sys.stdout is proxy:
            sys.stdout = stdout
        if keys_back is not None:
            keys_back()

    return undo
