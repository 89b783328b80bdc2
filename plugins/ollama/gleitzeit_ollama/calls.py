"""Calls to Ollama with failover: plain JSON answers and streams.

``call_json`` runs through the core's ``hub.call`` (select, lease, classify, fail over to an
untried instance within the deadline). ``open_stream`` uses ``hub.open``, the same loop with
the lease left open: it fails over only until an instance has produced its first chunk, then
hands the caller a ``ChunkStream`` that holds the lease until the answer ends.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING

import aiohttp

from gleitzeit_core import FailureClass, Lease, LimitExceeded, Request, Resource, json_bytes
from gleitzeit_ollama.client import (
    JSON,
    error_from_response,
    lines,
    parse_object,
    post,
    read_object,
    refused,
    transport_error,
)
from gleitzeit_ollama.errors import ModelNotFound, OllamaError, StreamFailed, StreamStalled
from gleitzeit_ollama.models import loaded_models, record_absent, record_used
from gleitzeit_ollama.stream import ChunkStream
from gleitzeit_ollama.transport import Answer

if TYPE_CHECKING:
    from gleitzeit_ollama.hub import OllamaHub

__all__ = ["call_json", "open_stream", "post_to"]


async def post_to(hub: OllamaHub, resource: Resource, path: str, payload: bytes) -> Answer:
    try:
        return await post(
            hub.upstream,
            resource.endpoint.rstrip("/") + path,
            payload,
            resource=resource.id,
            connect_timeout=hub.settings.connect_timeout,
        )
    except OllamaError as exc:
        if exc.failure is FailureClass.CONNECTION:
            # unreachable (crashed, restarting): whatever it had loaded is gone or moot
            loaded_models(resource).clear()
            hub.loaded_changed(resource)
        raise


async def raise_for_status(
    resource: Resource, response: Answer, path: str, model: str | None
) -> None:
    """Non-200 -> the matching ``OllamaError``; a 404 for the model marks it absent there."""
    if response.status == 200:
        return
    error = await error_from_response(response, resource=resource.id, path=path, model=model)
    if isinstance(error, ModelNotFound):
        record_absent(resource, error.model)
    raise error


def _used(hub: OllamaHub, resource: Resource, model: str | None, keep_alive: float | None) -> None:
    if model is not None:
        record_used(resource, model, keep_alive, hub.default_keep_alive, time.time())
        hub.loaded_changed(resource)


def _answered(hub: OllamaHub, request: Request, resource: Resource, answer: JSON) -> None:
    """Show the final answer to a strategy that learns from answers (``prefix_affinity``
    reads ``prompt_eval_count`` to tell whether the instance's prompt cache was hit)."""
    observe = getattr(hub.strategy, "observe_answer", None)
    if observe is not None:
        observe(request, resource.id, answer)


async def call_json(
    hub: OllamaHub,
    path: str,
    body: JSON,
    request: Request,
    *,
    model: str | None = None,
    keep_alive: float | None = None,
) -> JSON:
    """POST ``body`` (not streamed) with failover; Ollama's JSON answer plus a ``gleitzeit``
    key naming the instance that served it and the attempts it took."""
    payload = json_bytes(body)
    attempts = 0

    async def attempt(lease: Lease) -> JSON:
        nonlocal attempts
        attempts += 1
        resource = lease.resource
        response = await post_to(hub, resource, path, payload)
        try:
            await raise_for_status(resource, response, path, model)
            answer = await read_object(
                response, hub.settings, resource=resource, what=f"the answer of {path}"
            )
        except OllamaError:
            response.close()  # whatever is left unread is not worth reading
            raise
        except (aiohttp.ClientError, OSError) as exc:
            response.close()
            raise transport_error(exc, resource.id, hub.settings.connect_timeout) from exc
        except BaseException:
            response.close()
            raise
        response.release()  # read to the end: the connection goes back to the pool
        if "error" in answer:
            raise OllamaError(
                f"error from {path}: {answer['error']}",
                failure=FailureClass.PROTOCOL,
                resource=resource.id,
                status=200,
                body=answer,
            )
        _used(hub, resource, model, keep_alive)
        _answered(hub, request, resource, answer)
        answer["gleitzeit"] = {"instance": resource.id, "attempts": attempts}
        return answer

    return await hub.call(attempt, request)


async def open_stream(
    hub: OllamaHub,
    path: str,
    body: JSON,
    request: Request,
    *,
    model: str | None = None,
    keep_alive: float | None = None,
    exclude: Collection[str] = (),
    retries: int | None = None,
) -> ChunkStream:
    """POST ``body`` as a stream, failing over (never to an instance already tried, within
    the deadline) until one answers with a first chunk; then the caller iterates.
    ``exclude`` lists instances that already failed this request (a resumed stream)."""
    payload = json_bytes(body)
    deadline = hub.deadline_for(request)
    attempts = 0

    async def attempt(lease: Lease) -> ChunkStream:
        nonlocal attempts
        attempts += 1
        return await _first_chunk(hub, lease, path, payload, deadline, attempts, model, keep_alive)

    # the core's failover loop, keeping the lease open: the stream holds it to the end
    stream, _ = await hub.open(attempt, request, exclude=exclude, retries=retries)
    return stream


async def _first_chunk(
    hub: OllamaHub,
    lease: Lease,
    path: str,
    payload: bytes,
    deadline: float,
    attempts: int,
    model: str | None,
    keep_alive: float | None,
) -> ChunkStream:
    resource = lease.resource
    response = await post_to(hub, resource, path, payload)
    try:
        await raise_for_status(resource, response, path, model)
        reader = lines(response, hub.settings, resource=resource, what=f"a line of {path}")
        # the wait for the first byte is bounded by the deadline around this call (a model
        # may be loading); once it has come, the line must end within stall_timeout
        stall = hub.settings.stall_timeout
        try:
            line = await reader.line(None, stall)
        except LimitExceeded as exc:
            raise refused(resource, exc) from None
        except TimeoutError:
            raise StreamStalled(stall, resource=resource.id) from None
        if line is None:
            raise StreamFailed(
                f"{path} answered with an empty stream",
                failure=FailureClass.PROTOCOL,
                resource=resource.id,
            )
        first = parse_object(
            line,
            resource=resource,
            what=f"the first line of {path}",
            settings=hub.settings,
        )
        if "error" in first:
            raise StreamFailed(
                f"error in the stream: {first['error']}",
                failure=FailureClass.PROTOCOL,
                resource=resource.id,
                status=200,
                body=first,
            )
    except OllamaError:
        response.close()
        raise
    except (aiohttp.ClientError, OSError) as exc:
        response.close()
        raise transport_error(exc, resource.id, hub.settings.connect_timeout) from exc
    except BaseException:
        response.close()
        raise

    def done(final: JSON) -> None:
        _used(hub, resource, model, keep_alive)
        _answered(hub, lease.request, resource, final)

    return ChunkStream(
        response=response,
        reader=reader,
        first=first,
        resource=resource,
        clock=hub.clock,
        deadline=deadline,
        stall_timeout=hub.settings.stall_timeout,
        connect_timeout=hub.settings.connect_timeout,
        settings=hub.settings,
        lease=lease,
        attempts=attempts,
        on_final=done,
        first_line=line,
    )
