"""``ProbeContract``: what every health probe must hold.

Subclass it and implement ``make_probe()``, ``healthy_target()`` (an async context manager
yielding a ``ResourceSpec`` of a live resource) and ``dead_spec()`` (a ``ResourceSpec`` nobody
answers at, on loopback)::

    class TestMyProbe(ProbeContract):
        def make_probe(self):
            return MyProbe(timeout=1.0)
        ...
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager

from .._health import Probe, ProbeResult
from .._resources import Resource, ResourceSpec

__all__ = ["ProbeContract", "free_loopback_port", "unused_endpoint"]


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unused_endpoint(scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{free_loopback_port()}"


class ProbeContract:
    #: a dead endpoint must be reported within this many seconds
    max_seconds_for_dead: float = 5.0

    def make_probe(self) -> Probe:
        raise NotImplementedError

    def healthy_target(self) -> AbstractAsyncContextManager[ResourceSpec]:
        raise NotImplementedError

    def dead_spec(self) -> ResourceSpec:
        return ResourceSpec(id="dead", endpoint=unused_endpoint())

    def _run(self, spec: ResourceSpec) -> ProbeResult:
        async def go() -> ProbeResult:
            probe = self.make_probe()
            try:
                return await probe.probe(Resource(spec))
            finally:
                close = getattr(probe, "close", None)
                if close is not None:
                    await close()

        return asyncio.run(go())

    def test_live_resource_is_healthy(self) -> None:
        """A probe of a live resource reports ok with a non-negative latency."""

        async def go() -> ProbeResult:
            probe = self.make_probe()
            try:
                async with self.healthy_target() as spec:
                    return await probe.probe(Resource(spec))
            finally:
                close = getattr(probe, "close", None)
                if close is not None:
                    await close()

        result = asyncio.run(go())
        assert result.ok, result.detail
        assert result.latency is None or result.latency >= 0

    def test_dead_resource_fails_fast_without_raising(self) -> None:
        """A probe of an endpoint nobody listens on returns ok=False with a reason, quickly,
        instead of raising or hanging."""
        started = time.monotonic()
        result = self._run(self.dead_spec())
        assert not result.ok
        assert result.detail
        assert time.monotonic() - started < self.max_seconds_for_dead
