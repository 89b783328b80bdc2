"""Time as an injectable dependency, so breakers and health logic can be tested step by step."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with a monotonic ``now()`` in seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The process's monotonic clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to; for tests and reference models."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            msg = f"a clock cannot go back ({seconds} s)"
            raise ValueError(msg)
        self._now += seconds
