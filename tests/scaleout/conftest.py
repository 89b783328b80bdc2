"""Fixtures for the scale-out tests: a real Redis, simulators, and replicas of one runtime."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from gleitzeit_core import Runtime
from tests.ollama.conftest import SimFactory, sim_factory  # noqa: F401  (fixtures)
from tests.scaleout.redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, stopped after the test."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def replica_config(
    redis_url: str, namespace: str, urls: list[str], replica: str, **hub: Any
) -> dict[str, Any]:
    """One replica's config: the same hub over the same instances, the Redis backend with
    fast timings (so tests converge within a few seconds) and a generous deadline per call."""
    resources = [{"id": f"s{i}", "url": url} for i, url in enumerate(urls)]
    return {
        "hubs": {
            "llm": {
                "kind": "ollama",
                "discovery": ["static"],
                "health": {"interval": 0.2, "timeout": 2.0},
                "resources": resources,
                **hub,
            }
        },
        "state": {
            "backend": "redis",
            "url": redis_url,
            "namespace": namespace,
            "replica_id": replica,
            "sync_interval": 0.05,
            # a replica whose heartbeat is 3 beats late counts as gone (its places are freed,
            # it leaves the registry): 3 s, so a stalled loop on a loaded machine is not that
            "heartbeat": 1.0,
            "op_timeout": 2.0,  # a loaded CI machine must not degrade a replica by itself
        },
    }


class Replicas:
    """``await replicas(n, urls, **hub)`` -> n started runtimes sharing one Redis namespace."""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.namespace = f"test-{uuid.uuid4().hex[:8]}"
        self.started: list[Runtime] = []

    async def __call__(self, n: int, urls: list[str], **hub: Any) -> list[Runtime]:
        runtimes = []
        first = len(self.started)  # a later call adds replicas to the same fleet
        for i in range(first, first + n):
            config = replica_config(self.redis.url, self.namespace, urls, f"r{i}", **hub)
            runtime = Runtime.from_config(config)
            await runtime.start()
            self.started.append(runtime)
            runtimes.append(runtime)
        return runtimes

    async def stop_all(self) -> None:
        for runtime in reversed(self.started):
            await runtime.stop()


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[Replicas]:
    made = Replicas(redis_server)
    try:
        yield made
    finally:
        await made.stop_all()
