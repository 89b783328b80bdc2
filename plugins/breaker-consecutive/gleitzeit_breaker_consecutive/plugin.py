"""Hook implementation: registers the ``consecutive`` breaker by reference (imports nothing)."""

from __future__ import annotations

from gleitzeit_core import Register, hookimpl


@hookimpl
def gleitzeit_register_breakers(register: Register) -> None:
    register("consecutive", "gleitzeit_breaker_consecutive.breaker:ConsecutiveFailuresBreaker")
