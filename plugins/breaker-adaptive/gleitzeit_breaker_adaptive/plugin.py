"""Hook implementation: registers the ``adaptive`` breaker by reference (imports nothing)."""

from __future__ import annotations

from gleitzeit_core import Register, hookimpl


@hookimpl
def gleitzeit_register_breakers(register: Register) -> None:
    register("adaptive", "gleitzeit_breaker_adaptive.breaker:AdaptiveThrottlingBreaker")
