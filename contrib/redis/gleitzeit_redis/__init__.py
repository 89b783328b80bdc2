"""Gleitzeit plugin: a Redis state backend, so gateway replicas share what they learn."""

from __future__ import annotations

__all__ = ["RedisState"]


def __getattr__(name: str) -> object:
    if name == "RedisState":
        from .backend import RedisState

        return RedisState
    raise AttributeError(f"module 'gleitzeit_redis' has no attribute {name!r}")
