"""Hook implementations: the ``redis`` state backend (imported only when a config selects it)."""

from __future__ import annotations

from gleitzeit_core import Register, hookimpl


@hookimpl
def gleitzeit_register_state_backends(register: Register) -> None:
    register("redis", "gleitzeit_redis.backend:RedisState")
