"""Bounds on everything that comes from outside: events, messages, configuration, scenario files.

Every parser of outside input checks the document here first: at most ``max_bytes``
(as JSON), nested at most :data:`MAX_DEPTH` deep, at most :data:`MAX_NODES` values in all
(a YAML alias "billion laughs" counts every expansion). Then the model validates it, and a
failure becomes :class:`~deployguard.exceptions.InvalidEventError` naming the field,
never a pydantic ``ValidationError``, a ``RecursionError`` or a ``MemoryError``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError

from deployguard.exceptions import InvalidEventError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

MAX_EVENT_BYTES = 256 * 1024  # Lambda's asynchronous payload limit, and SNS's message limit
MAX_DEPTH = 32
MAX_NODES = 20_000

# HTTP requests (the console API): what a person's request can need, far below API Gateway's limits
MAX_REQUEST_BODY_BYTES = 16 * 1024
MAX_REQUEST_PATH_CHARS = 1024
MAX_REQUEST_QUERY_CHARS = 2048
# identifiers that come from outside: deployment and incident ids, service names
RECORD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
SERVICE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

ModelT = TypeVar("ModelT", bound=BaseModel)


def _time_as_text(value: Any) -> Any:
    """Times from outside come as ISO 8601 text; a number (or digits) would be read as seconds since 1970."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and _is_number(value)):
        raise ValueError(f"a time is ISO 8601 text (2026-12-02T03:00:00Z), not the number {value!r}")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _with_zone(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time needs its zone (2026-12-02T03:00:00Z or +00:00)")
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_time_as_text), AfterValidator(_with_zone)]
"""A datetime field of an outside document: ISO 8601 text with its zone (or an aware datetime), never a number."""


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
    return invalid_from_errors(what, exc.errors(), root)


def invalid_from_errors(what: str, errors: Sequence[Mapping[str, Any]], root: str = "(event)") -> InvalidEventError:
    """One :class:`InvalidEventError` for pydantic-style ``errors`` (``loc``, ``msg``): the first
    field named with its message, and how many others failed."""
    if not errors:
        return InvalidEventError(f"{what}: not valid", field=root)
    first = errors[0]
    others = [".".join(str(p) for p in e.get("loc", ())) or root for e in errors[1:]]
    listed = ", ".join(others[:8]) + (", ..." if len(others) > 8 else "")
    more = f" ({len(others)} more: {listed})" if others else ""
    field = ".".join(str(p) for p in first.get("loc", ())) or root
    message = str(first.get("msg") or first.get("type") or "not valid")
    return InvalidEventError(f"{what}: field {field}: {message}{more}", field=field)


def bounded_http_request(event: Mapping[str, Any], what: str, *, max_body_bytes: int = MAX_REQUEST_BODY_BYTES) -> None:
    """An API Gateway (payload 2.0) request within the bounds: path, query string and body sizes,
    a body that is JSON within :func:`bounded`'s depth and size. :class:`InvalidEventError` names
    the part (``path``, ``query``, ``body``) otherwise; the body is measured before it is parsed."""
    path, query = str(event.get("rawPath") or ""), str(event.get("rawQueryString") or "")
    if len(path) > MAX_REQUEST_PATH_CHARS:
        raise InvalidEventError(f"{what}: field path: {len(path)} characters, at most {MAX_REQUEST_PATH_CHARS}",
                                field="path")  # fmt: skip
    if len(query) > MAX_REQUEST_QUERY_CHARS:
        raise InvalidEventError(f"{what}: field query: {len(query)} characters, at most {MAX_REQUEST_QUERY_CHARS}",
                                field="query")  # fmt: skip
    body = event.get("body")
    if body is None or body == "":
        return
    raw: bytes
    if event.get("isBase64Encoded"):
        if len(str(body)) > (max_body_bytes * 4) // 3 + 4:
            raise InvalidEventError(f"{what}: field body: over {max_body_bytes} bytes", field="body")
        try:
            raw = base64.b64decode(str(body), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEventError(f"{what}: field body: not valid base64", field="body") from None
    else:
        raw = str(body).encode("utf-8", "surrogatepass")
    if len(raw) > max_body_bytes:
        raise InvalidEventError(f"{what}: field body: {len(raw)} bytes, at most {max_body_bytes} are accepted",
                                field="body")  # fmt: skip
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidEventError(f"{what}: field body: not a JSON document", field="body") from None
    try:
        check_bounds(document)
    except TooLarge as exc:
        raise InvalidEventError(f"{what}: field body: {exc}", field="body") from None


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


@functools.cache
def _eventbridge_model() -> type[EventBridgeModel]:
    # Powertools' parser models are imported by the functions that take EventBridge events only
    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

    class EventBridgeEvent(EventBridgeModel):
        """Powertools' EventBridge envelope, its ``time`` ISO 8601 text as EventBridge sends it."""

        time: IsoDatetime

    return EventBridgeEvent


def parse_eventbridge_event(raw: Any, what: str) -> EventBridgeModel:
    """An EventBridge event (a schedule's, a CodeDeploy state change) within the bounds, validated by
    Powertools' model; a ``time`` that is a number is refused (it would be read as seconds since 1970)."""
    return parse_event(_eventbridge_model(), raw, what)
