"""Bounds on everything that comes from outside: events, messages, configuration, scenario files.

Every parser of outside input checks the document here first: at most ``max_bytes``
(as JSON), nested at most :data:`MAX_DEPTH` deep, at most :data:`MAX_NODES` values in all
(a YAML alias "billion laughs" counts every expansion). Then the model validates it, and a
failure becomes :class:`~deployguard.exceptions.InvalidEventError` naming the field,
never a pydantic ``ValidationError``, a ``RecursionError`` or a ``MemoryError``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from deployguard.exceptions import InvalidEventError

MAX_EVENT_BYTES = 256 * 1024  # Lambda's asynchronous payload limit, and SNS's message limit
MAX_DEPTH = 32
MAX_NODES = 20_000

ModelT = TypeVar("ModelT", bound=BaseModel)


class TooLarge(ValueError):
    """A document over one of the bounds; the message says which."""


def check_bounds(document: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Raise :class:`TooLarge` if ``document`` nests deeper than ``max_depth`` or holds more than ``max_nodes`` values.

    Iterative, so a deep document cannot exhaust the stack while it is being measured.
    """
    stack: list[tuple[Any, int]] = [(document, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise TooLarge(f"more than {max_nodes} values")
        if isinstance(value, dict | list | tuple):
            if depth > max_depth:
                raise TooLarge(f"nested more than {max_depth} deep")
            children = value.values() if isinstance(value, dict) else value
            if isinstance(value, dict):
                nodes += len(value)  # the keys
            stack.extend((child, depth + 1) for child in children)


def field_of(exc: ValidationError, root: str = "(event)") -> str:
    """``a.b.0`` of the first error, or ``root`` for the document itself."""
    return ".".join(str(p) for p in exc.errors()[0]["loc"]) or root


def _invalid(what: str, exc: ValidationError, root: str = "(event)") -> InvalidEventError:
    errors = exc.errors()
    first = errors[0]
    others = [".".join(str(p) for p in e["loc"]) or root for e in errors[1:]]
    listed = ", ".join(others[:8]) + (", ..." if len(others) > 8 else "")
    more = f" ({len(others)} more: {listed})" if others else ""
    field = field_of(exc, root)
    return InvalidEventError(f"{what}: field {field}: {first['msg']}{more}", field=field)


def bounded(raw: Any, what: str, *, max_bytes: int = MAX_EVENT_BYTES) -> Any:
    """``raw`` if it is within the bounds, else :class:`InvalidEventError` naming ``what``."""
    try:
        check_bounds(raw)
        size = len(json.dumps(raw, default=str, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    except TooLarge as exc:
        raise InvalidEventError(f"{what}: {exc}", field="(event)") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidEventError(f"{what}: not a JSON document ({type(exc).__name__})", field="(event)") from None
    if size > max_bytes:
        raise InvalidEventError(f"{what}: {size} bytes, at most {max_bytes} are accepted", field="(event)")
    return raw


def parse_event(model: type[ModelT], raw: Any, what: str, *, max_bytes: int = MAX_EVENT_BYTES) -> ModelT:
    """Validate ``raw`` as ``model`` within the bounds; :class:`InvalidEventError` names the field."""
    bounded(raw, what, max_bytes=max_bytes)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(what, exc) from None
    except (TypeError, AttributeError, KeyError) as exc:  # a validator (ours or a library's) choked on the shape
        message = f"{what}: not the expected shape ({type(exc).__name__}: {exc})"
        raise InvalidEventError(message, field="(event)") from None


def parse_json_event(model: type[ModelT], text: str | bytes, what: str, *, max_bytes: int = MAX_EVENT_BYTES) -> ModelT:
    """Validate the JSON ``text`` as ``model``, refusing it unread when it is over ``max_bytes``."""
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > max_bytes:
        raise InvalidEventError(f"{what}: {size} bytes, at most {max_bytes} are accepted", field="(message)")
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise _invalid(what, exc, "(message)") from None
