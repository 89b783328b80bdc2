"""An echo plugin for tests: a hub kind whose resources answer in-process, and its provider.

Register it explicitly (it is not installed as an entry point)::

    manager = PluginManager(autoload=False)
    manager.add(gleitzeit_core.testing.echo, "echo")

Config: ``[hubs.e] kind = "echo"`` with resources ``{ id = "a", url = "echo://a" }``. The
provider ``echo/v1`` offers ``echo/say`` (returns the text and which resource answered; it can
be told to wait or to fail with a given failure class) and ``echo/stream`` (yields the words).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs

from .._errors import ResourceError
from .._health import ProbeResult
from .._hookspecs import hookimpl
from .._hub import ResourceHub
from .._kinds import HubKind, ProviderKind
from .._outcomes import FailureClass
from .._provider import Method, ProtocolProvider
from .._registry import Register
from .._request import Request
from .._resources import Resource

__all__ = ["EchoHub", "EchoProbe", "EchoProvider", "SayParams"]


class EchoHub(ResourceHub):
    kind = "echo"

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.down: set[str] = set()  # resources whose probe fails


@attrs.define(kw_only=True, eq=False)
class EchoProbe:
    """Healthy unless the test put the resource in ``hub.down``."""

    hub: EchoHub
    timeout: float = 1.0

    async def probe(self, resource: Resource) -> ProbeResult:
        if resource.id in self.hub.down:
            return ProbeResult(False, None, "marked down by the test")
        return ProbeResult(True, 0.0)


@attrs.frozen(kw_only=True)
class SayParams:
    text: str
    delay: float = 0.0
    fail: str | None = None  # a FailureClass value to raise instead of answering
    fail_on: list[str] = attrs.field(factory=list)  # only on these resources (empty: all)


@attrs.frozen(kw_only=True)
class StreamParams:
    text: str
    delay: float = 0.0


class EchoProvider(ProtocolProvider):
    protocol = "echo/v1"

    def methods(self) -> Mapping[str, Method]:
        return {
            "echo/say": Method("echo/say", self.say, SayParams),
            "echo/stream": Method("echo/stream", self.stream, StreamParams),
        }

    async def say(self, params: SayParams) -> dict[str, Any]:
        async def answer(lease: Any) -> dict[str, Any]:
            rid = lease.resource.id
            if params.delay:
                await asyncio.sleep(params.delay)
            if params.fail and (not params.fail_on or rid in params.fail_on):
                failure = FailureClass(params.fail)
                raise ResourceError(
                    f"told to fail with {failure.value}", failure=failure, resource=rid
                )
            return {"text": params.text, "resource": rid}

        result: dict[str, Any] = await self.hub.call(answer, Request())
        return result

    async def stream(self, params: StreamParams) -> AsyncIterator[dict[str, Any]]:
        async def words() -> AsyncIterator[dict[str, Any]]:
            async with self.hub.lease(Request()) as lease:
                for word in params.text.split():
                    if params.delay:
                        await asyncio.sleep(params.delay)
                    yield {"word": word, "resource": lease.resource.id}

        return words()


@hookimpl
def gleitzeit_register_hubs(register: Register) -> None:
    register("echo", HubKind(factory=EchoHub, default_probe="echo", default_scheme="echo"))


@hookimpl
def gleitzeit_register_probes(register: Register) -> None:
    register("echo", EchoProbe)


@hookimpl
def gleitzeit_register_providers(register: Register) -> None:
    register("echo/v1", ProviderKind(factory=EchoProvider, hub_kind="echo"))
