"""How every ``deployguard`` command is made, prints and ends (kept light: no boto3 imported here).

Exit codes (:data:`EXIT_CODES`, listed in the README) follow Argo Rollouts' CLI: the outcome first
(``status``: 0 promoted, 1 rolled back or failed, 2 held, 3 timed out), then errors.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import typer
from rich.console import Console

# Exit codes, as Argo Rollouts' `status`: the outcome first, then errors.
EXIT_CODES = {
    0: "done (status: promoted)",
    1: "a negative answer: problems found, rolled back or failed, a function errored, a delivery still failing",
    2: "an error: bad usage, unreadable file, unknown id, AWS unreachable (status: held for a person)",
    3: "status --wait: still running when the timeout came",
    4: "an error of a command whose 2 and 3 are outcomes (deployments, status, report, summary)",
    130: "interrupted (Ctrl-C)",
}
ERROR_EXIT = 2
GATE_ERROR_EXIT = 4
INTERRUPTED = 130

_DEBUG: contextvars.ContextVar[bool] = contextvars.ContextVar("deployguard_debug", default=False)


@contextlib.contextmanager
def debugging(on: bool = True) -> Iterator[None]:
    """``deployguard --debug``: while it lasts, an error a command would answer in one line is raised instead, so
    the Python traceback shows (:func:`run`, and the commands that answer their own errors)."""
    token = _DEBUG.set(on)
    try:
        yield
    finally:
        _DEBUG.reset(token)


def debug() -> bool:
    """Whether errors show their traceback (``--debug``)."""
    return _DEBUG.get()


# ---------------------------------------------------------------------------- output and ending


def console() -> Console:
    terminal = Console()
    return Console(highlight=False, soft_wrap=False, width=terminal.width if terminal.is_terminal else 160)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def run(action: Callable[[], int], prog: str = "deployguard", error_exit: int = ERROR_EXIT) -> int:
    """Run a command's action; an error prints one line naming what is wrong and exits ``error_exit`` (with
    ``--debug``, :func:`debugging`: it is raised, its traceback shown)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from pydantic import ValidationError

    from deployguard.exceptions import DeployGuardError

    try:
        return action()
    except (DeployGuardError, BotoCoreError, ClientError, ValidationError) as exc:
        if debug():
            raise
        sys.stderr.write(f"{prog}: {describe_error(exc)}\n")
        return error_exit


def new_app(name: str, help_text: str, **kwargs: Any) -> typer.Typer:
    """A Typer app as every ``deployguard`` command group is made."""
    return typer.Typer(name=name, help=help_text, add_completion=False, pretty_exceptions_enable=False, **kwargs)


def flags_take_no_value(command: Any) -> Any:
    """Show on/off options (``--json``, ``--local`` ...) without Typer's ``<bool>`` in ``--help``: it reads as if
    they took a value. Walks the command and its subcommands; returns it."""
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    made = command.get_help_option  # --help itself is made for each context

    def help_option(ctx: Any) -> Any:
        option = made(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        flags_take_no_value(sub)
    return command


def invoke(typer_app: typer.Typer, prog: str, argv: list[str], usage_exit: int = ERROR_EXIT) -> int:
    """Run a Typer app on ``argv``; returns its exit code (a usage error prints click's message)."""
    command = flags_take_no_value(typer.main.get_command(typer_app))
    try:  # without standalone mode, click returns the code a command exits with
        code = int(command.main(args=argv, prog_name=prog, standalone_mode=False) or 0)
    except typer.Exit as done:
        code = int(done.exit_code)
    except typer.Abort:
        code = INTERRUPTED
    except Exception as exc:  # Typer's (vendored click's) usage errors: name the option
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        return usage_exit
    if code == INTERRUPTED:  # Ctrl-C: Typer ends the command with 130 (no command exits so otherwise)
        sys.stderr.write(f"{prog}: interrupted\n")
    return code


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


# a request model's field as the command line gives it (ControlRequest.actor is --by); others: --field-name
OPTION_OF_FIELD = {"actor": "--by", "notes": "--notes"}
REQUEST_MODELS = ("ControlRequest", "EmergencyRollbackRequest")


def _invalid_input(exc: Any) -> str:
    """A pydantic ValidationError in the API's words (``invalid_from_errors``): the first field and its message,
    how many others failed. A control request's fields are named as the options that fill them."""
    from deployguard.inbound import invalid_from_errors

    errors, what = list(exc.errors()), f"invalid {exc.title}"
    if exc.title in REQUEST_MODELS:
        what = "invalid option"
        errors = [
            {**e, "loc": tuple(OPTION_OF_FIELD.get(str(p), f"--{str(p).replace('_', '-')}") for p in e["loc"][:1])}
            for e in errors
        ]
    return str(invalid_from_errors(what, errors, "input"))


def describe_error(exc: BaseException) -> str:
    """One line for a person: what went wrong and, where we know it, what to do about it."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ReadTimeoutError,
    )
    from pydantic import ValidationError

    from deployguard.exceptions import DeployGuardError

    if isinstance(exc, DeployGuardError):
        return str(exc)
    if isinstance(exc, ValidationError):  # a request the options made: the field as its option names it
        return _invalid_input(exc)
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or try --local)"
    if isinstance(exc, NoRegionError):
        return "no AWS region set (set AWS_REGION or pass --region)"
    if isinstance(exc, EndpointConnectionError | ReadTimeoutError):
        return f"cannot reach {getattr(exc, 'kwargs', {}).get('endpoint_url', 'the AWS endpoint')}: is it running?"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "a call")
        return f"AWS refused {operation}: {error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"
