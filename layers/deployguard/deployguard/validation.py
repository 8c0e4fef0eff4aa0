"""Validators that report every problem they find at once, each at its own field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Problem = tuple[tuple[int | str, ...], str]  # (location inside the model being validated, message)


def problems_error(title: str, problems: Sequence[Problem], value: Any = None) -> ValidationError:
    """One :class:`ValidationError` holding each problem at its location (pydantic nests it under
    the validated field), so that a validator reports them all, not its first."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}), loc=loc, input=value
            )
            for loc, message in problems
        ],
    )
