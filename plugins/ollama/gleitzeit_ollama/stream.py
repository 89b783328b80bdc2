"""``ChunkStream``: the caller's async iterator over one streamed Ollama answer.

It yields the chunks exactly as Ollama sent them and holds the hub's lease until the answer is
over, so the per-model slot stays taken while tokens flow. How it ends is recorded once:

* the final chunk (``done: true``; ``status: success`` for a pull) -> success;
* an ``{"error": ...}`` line (Ollama sends those with status 200), a reset or a truncated
  body -> ``StreamFailed`` (PROTOCOL/CONNECTION), counted against the instance;
* no complete line for ``stall_timeout`` (nothing came, or a line dripped and never ended)
  -> ``StreamStalled`` (TIMEOUT); the request deadline -> the core's ``RequestTimeout``;
* a line longer than ``max_line_bytes``, nested deeper than ``max_json_depth``, with more
  than ``max_json_values`` values, or not a JSON object -> ``BadAnswer`` (PROTOCOL), counted
  against the instance; the reader never holds more than one line, and the caller's pace
  sets the pace of reading (backpressure);
* the caller stops early (``aclose()``, ``async with`` exit, dropping the iterator) or is
  cancelled -> the upstream response is closed at once and the lease records CANCELLED.

There is no failover here: once the first chunk has reached the caller, a failure is the
caller's to see (the hub fails over only before that, while opening the stream).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import NoReturn

import aiohttp

from gleitzeit_core import (
    BoundedLines,
    Clock,
    FailureClass,
    Lease,
    LimitExceeded,
    RequestTimeout,
    Resource,
)
from gleitzeit_ollama.client import JSON, parse_object, refused
from gleitzeit_ollama.errors import OllamaError, StreamFailed, StreamStalled
from gleitzeit_ollama.settings import OllamaSettings
from gleitzeit_ollama.transport import Answer

__all__ = ["ChunkStream", "is_done", "is_pull_success"]

_DRAIN_SECONDS = 1.0  # after the final chunk: how long to wait for the body's end


def is_done(chunk: JSON) -> bool:
    return chunk.get("done") is True


def is_pull_success(chunk: JSON) -> bool:
    return chunk.get("status") == "success"


class ChunkStream:
    """``async for chunk in stream`` (or ``async with stream``); ``instance`` and ``attempts``
    say which instance is answering and after how many tries; ``line`` is the chunk last
    returned as the instance sent it (one line that parsed as a bounded JSON object), so a
    relay can pass it on without encoding it again (None when not known)."""

    def __init__(
        self,
        *,
        response: Answer,
        reader: BoundedLines,
        first: JSON | None,
        resource: Resource | str,
        clock: Clock,
        deadline: float,
        stall_timeout: float,
        connect_timeout: float,
        settings: OllamaSettings,
        lease: Lease | None = None,
        attempts: int = 1,
        final: Callable[[JSON], bool] = is_done,
        on_final: Callable[[JSON], None] | None = None,
        first_line: bytes | None = None,
    ) -> None:
        self.instance = resource.id if isinstance(resource, Resource) else resource
        self._resource = resource
        self._settings = settings
        self.attempts = attempts
        self._response: Answer | None = response
        self._reader = reader
        self._pending = first
        self._pending_line = first_line
        self.line: bytes | None = None
        self._clock = clock
        self._deadline = deadline
        self._stall = stall_timeout
        self._connect_timeout = connect_timeout
        self._lease = lease
        self._final = final
        self._on_final = on_final
        self._finished = False  # the final chunk went out

    # -- iteration ------------------------------------------------------------------------------
    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> JSON:
        pending = self._pending
        if pending is not None:
            self._pending = None
            self.line = self._pending_line
            return self._deliver(pending)
        if self._finished or self._response is None:
            await self._drain()
            raise StopAsyncIteration
        remaining = self._deadline - self._clock.now()
        timeout = min(self._stall, remaining)
        try:
            line = await self._reader.line(max(timeout, 0.0))
        except TimeoutError:
            if remaining <= self._stall:
                self._close(FailureClass.TIMEOUT)
                raise RequestTimeout(
                    f"{self.instance}: the request deadline passed in the middle of the stream"
                ) from None
            self._fail(StreamStalled(self._stall, resource=self.instance))
        except asyncio.CancelledError:
            self._close(FailureClass.CANCELLED)
            raise
        except LimitExceeded as exc:
            self._fail(refused(self._resource, exc))
        except (aiohttp.ClientError, OSError) as exc:
            self._fail(
                StreamFailed(
                    f"the stream broke: {type(exc).__name__}: {exc}",
                    failure=FailureClass.CONNECTION,
                    resource=self.instance,
                )
            )
        if line is None:
            self._fail(
                StreamFailed(
                    "the stream ended before its final chunk",
                    failure=FailureClass.PROTOCOL,
                    resource=self.instance,
                )
            )
        try:
            chunk = parse_object(
                line, resource=self._resource, what="a stream line", settings=self._settings
            )
        except OllamaError as exc:
            self._fail(exc)
        self.line = line
        return self._deliver(chunk)

    def ready(self) -> bool:
        """Whether the next chunk (or the end) is here already: a relay may then write this
        chunk together with the next one instead of one write (one system call) each."""
        if self._pending is not None:
            return True
        if self._finished or self._response is None:
            return False
        try:
            return self._reader.ready()
        except (aiohttp.ClientError, OSError):
            return False  # the next read reports it

    def _deliver(self, chunk: JSON) -> JSON:
        if "error" in chunk:
            self._fail(
                StreamFailed(
                    f"error in the stream: {chunk['error']}",
                    failure=FailureClass.PROTOCOL,
                    resource=self.instance,
                    status=200,
                    body=chunk,
                )
            )
        if self._final(chunk):
            self._finished = True
            if self._on_final is not None:
                self._on_final(chunk)
            if self._lease is not None:
                self._lease.succeed()
        return chunk

    def _fail(self, error: OllamaError) -> NoReturn:
        """Record ``error`` on the lease, close the upstream answer, raise it."""
        self._close(error.failure)
        raise error

    def _close(self, failure: FailureClass) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.close()
        if self._lease is not None:
            self._lease.fail(failure)  # no-op when the final chunk already recorded success

    async def _drain(self) -> None:
        """After the final chunk: let the body end so the connection returns to the pool."""
        response, self._response = self._response, None
        if response is None:
            return
        try:
            async with asyncio.timeout(_DRAIN_SECONDS):
                while await response.content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError, OSError):
            response.close()
        except BaseException:  # cancelled while draining: never leave the answer to the GC
            response.close()
            raise
        else:
            response.release()

    # -- ending early ---------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Stop: close the upstream answer now; an unfinished call counts as CANCELLED."""
        if self._finished:
            await self._drain()
        self._close(FailureClass.CANCELLED)

    async def __aenter__(self) -> ChunkStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A caller that breaks out of ``async for`` and drops the stream: release at once.
        with contextlib.suppress(Exception):
            if getattr(self, "_response", None) is not None:
                self._close(FailureClass.CANCELLED)
