"""Hook implementation: registers the ``window`` breaker by reference (imports nothing)."""

from __future__ import annotations

from gleitzeit_core import Register, hookimpl


@hookimpl
def gleitzeit_register_breakers(register: Register) -> None:
    register("window", "gleitzeit_breaker_window.breaker:SlidingWindowBreaker")
