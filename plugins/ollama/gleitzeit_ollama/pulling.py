"""Putting models on instances: where to pull, the pull stream, and ``auto_pull``.

A pull takes no lease: it is provisioning, not a call, so it neither occupies a model slot nor
feeds the latency figures the strategies read. It is bounded by ``pull_timeout`` as a whole
(verifying a large blob can be silent for long, so there is no stall timeout).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from gleitzeit_core import Health, NoResourceAvailable, Request, Resource
from gleitzeit_ollama.access import check_registry, pull_insecure
from gleitzeit_ollama.calls import post_to
from gleitzeit_ollama.client import JSON, error_from_response, lines
from gleitzeit_ollama.errors import OllamaError
from gleitzeit_ollama.models import record_installed
from gleitzeit_ollama.stream import ChunkStream, is_pull_success

if TYPE_CHECKING:
    from gleitzeit_ollama.hub import OllamaHub

__all__ = ["auto_pull", "open_progress", "open_pull", "pull_target", "unfit"]


def unfit(resource: Resource, now: float) -> str | None:
    if resource.draining:
        return "draining"
    if resource.health is Health.UNHEALTHY:
        return "unhealthy"
    if resource.is_ejected(now):
        return "ejected"
    if not resource.breaker.available():
        return f"breaker {resource.breaker.state.value}"
    return None


def pull_target(hub: OllamaHub, instance: str | None) -> Resource:
    """The named instance, or one healthy instance chosen by the hub's strategy."""
    if instance is not None:
        return hub.get(instance)
    now = hub.clock.now()
    reasons = {r.id: why for r in hub.resources if (why := unfit(r, now)) is not None}
    healthy = [r for r in hub.resources if r.id not in reasons]
    if not healthy:
        raise NoResourceAvailable(hub.name, reasons, "no healthy instance to pull onto")
    return hub.strategy.select(healthy, Request())


async def open_pull(
    hub: OllamaHub, model: str, resource: Resource, *, insecure: bool | None = None
) -> ChunkStream:
    """Start ``POST /api/pull`` on ``resource``; iterating yields Ollama's progress lines up
    to ``{"status": "success"}``, after which the model counts as installed there. The
    registry must be on the hub's ``pull_registries``; ``insecure`` passes only where the hub
    allows it (``pull_insecure``)."""
    check_registry(model, hub.settings)
    insecure = pull_insecure(insecure, hub.settings)
    body: JSON = {"model": model, "stream": True}
    if insecure is not None:
        body["insecure"] = insecure
    return await open_progress(
        hub, resource, "/api/pull", body, lambda: record_installed(resource, model)
    )


async def open_progress(
    hub: OllamaHub,
    resource: Resource,
    path: str,
    body: JSON,
    succeeded: Callable[[], None] | None = None,
) -> ChunkStream:
    """Start a streamed provisioning call (pull, create, push) on ``resource``; iterating
    yields its progress lines up to ``{"status": "success"}``, when ``succeeded`` runs.
    Bounded by ``pull_timeout`` as a whole."""
    timeout = hub.settings.pull_timeout
    deadline = hub.clock.now() + timeout
    async with asyncio.timeout(timeout):
        response = await post_to(hub, resource, path, json.dumps(body).encode())
        try:
            if response.status != 200:
                raise await error_from_response(
                    response, resource=resource.id, path=path, model=None
                )
            reader = lines(response, hub.settings, resource=resource, what="a line of /api/pull")
        except BaseException:
            response.close()
            raise

    def done(_: JSON) -> None:
        if succeeded is not None:
            succeeded()

    return ChunkStream(
        response=response,
        reader=reader,
        first=None,
        resource=resource,
        clock=hub.clock,
        deadline=deadline,
        stall_timeout=timeout,
        connect_timeout=hub.settings.connect_timeout,
        settings=hub.settings,
        final=is_pull_success,
        on_final=done,
    )


async def auto_pull(hub: OllamaHub, model: str) -> None:
    """Pull ``model`` onto one healthy instance, draining the progress; errors name the model."""
    target = pull_target(hub, None)
    try:
        stream = await open_pull(hub, model, target)
        async with stream:
            async for _ in stream:
                pass
    except OllamaError as exc:
        body = exc.body
        reason = body.get("error", body) if isinstance(body, dict) else body or str(exc)
        raise OllamaError(
            f"auto_pull of {model!r} failed: {reason}",
            failure=exc.failure,
            resource=target.id,
            status=exc.status,
            body=exc.body,
        ) from exc
