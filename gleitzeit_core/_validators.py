"""attrs validators whose messages read well in a config error.

A failing validator raises ``ValueError("expected a number of seconds > 0, got 'fast'")``; the
config loader puts the full key path in front (``hubs.llm.health.interval: expected ...``).
Plugins use them for the attrs classes that hold their options.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable
from typing import Any

import attrs

__all__ = [
    "FieldError",
    "InvalidValue",
    "MissingKey",
    "at_least",
    "did_you_mean",
    "fraction",
    "in_range",
    "one_of",
    "positive",
    "satisfies",
    "seconds",
    "shown",
]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


class FieldError(ValueError):
    """A problem with one field, in free words (``"must be at least open_for (30.0)"``);
    ``field`` names it for the config error's key path. Raise it from a validator that
    compares fields."""

    def __init__(self, field: str, message: str, *, index: int | None = None) -> None:
        self.field = field
        self.index = index  # the item of a list field it is about: ``engines[1]``
        super().__init__(message)


class InvalidValue(FieldError):
    """A field's value is out of range or of the wrong kind."""

    def __init__(self, field: str, expected: str, value: Any) -> None:
        self.expected = expected
        super().__init__(field, f"expected {expected}, got {shown(value)}")


class MissingKey(KeyError):
    """A required key is absent; ``field`` names it for the config error's key path."""

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(field)

    def __str__(self) -> str:
        return "missing required key"


def shown(value: Any) -> str:
    """A value as a config or request error quotes it: JSON where possible."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to a misspelt ``name``, if any is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def satisfies(expected: str, test: Callable[[Any], object]) -> Validator:
    """A validator passing values for which ``test`` is true (``None`` always passes); a failure
    reads ``expected <expected>, got <value>``."""

    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not test(value):
            raise InvalidValue(attribute.name, expected, value)

    check.expected = expected  # type: ignore[attr-defined]
    return check


def positive(what: str = "a number") -> Validator:
    """Value must be a number > 0 (``None`` passes: use it for optional fields)."""
    return satisfies(f"{what} > 0", lambda v: _number(v) and v > 0)


def seconds(*, allow_zero: bool = False) -> Validator:
    """A duration in seconds: > 0, or >= 0 when ``allow_zero``."""
    if allow_zero:
        return satisfies("a number of seconds >= 0", lambda v: _number(v) and v >= 0)
    return satisfies("a number of seconds > 0", lambda v: _number(v) and v > 0)


def at_least(minimum: float, what: str = "an integer") -> Validator:
    return satisfies(f"{what} >= {minimum:g}", lambda v: _number(v) and v >= minimum)


def in_range(low: float, high: float, what: str = "a number") -> Validator:
    return satisfies(
        f"{what} between {low:g} and {high:g}", lambda v: _number(v) and low <= v <= high
    )


def fraction() -> Validator:
    """A share between 0 and 1."""
    return in_range(0.0, 1.0, "a fraction")


def one_of(*choices: str) -> Validator:
    return satisfies("one of " + ", ".join(repr(c) for c in choices), lambda v: v in choices)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
