"""Response outputs: NDJSON streams and single JSON bodies, with per-line faults applied.

Handlers emit chunks one by one and do not care which output they talk to;
``stream: false`` collects silently and answers once at the end.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from aiohttp import web

from gleitzeit_ollama.sim.faults import StreamFaults
from gleitzeit_ollama.sim.wire import (
    NDJSON_TYPE,
    JsonObj,
    SimHTTPError,
    abort_connection,
    json_response,
    ndjson_line,
)


class OpenAiFrames(Protocol):
    """How ``/v1`` frames an answer (``openai_wire``'s translators): each chunk as server-sent
    events, the whole answer as an OpenAI object."""

    content_type: str

    def chunk(self, chunk: JsonObj) -> bytes: ...

    def error(self, message: str) -> bytes: ...

    def answer(self, answer: JsonObj) -> JsonObj: ...


class EndStream(Exception):
    """Unwinds a handler whose stream ended early (error line); carries the response."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("stream ended early")
        self.response = response


class Output:
    """Common fault bookkeeping: ``lines`` counts chunks emitted so far; ``frames`` (for
    ``/v1``) translates what goes out."""

    def __init__(
        self, request: web.Request, faults: StreamFaults, frames: OpenAiFrames | None = None
    ) -> None:
        self.request = request
        self.faults = faults
        self.frames = frames
        self.lines = 0

    async def _check_faults(self) -> None:
        f = self.faults
        if f.reset_after is not None and self.lines >= f.reset_after:
            abort_connection(self.request)
        if f.error_line_after is not None and self.lines >= f.error_line_after:
            raise EndStream(await self.fail(f.message))

    async def emit(self, obj: JsonObj) -> None:
        await self._check_faults()
        await self._write(obj)
        self.lines += 1

    async def finish(self, final_chunk: JsonObj, full: JsonObj) -> web.StreamResponse:
        """Send the last chunk (stream) or the whole answer (no stream)."""
        raise NotImplementedError

    async def fail(self, message: str, status: int = 500) -> web.StreamResponse:
        """Report an error the way Ollama does for this kind of output."""
        raise NotImplementedError

    async def _write(self, obj: JsonObj) -> None:
        raise NotImplementedError


class StreamOutput(Output):
    """``application/x-ndjson``: headers go out with the first chunk, each line is flushed."""

    def __init__(
        self, request: web.Request, faults: StreamFaults, frames: OpenAiFrames | None = None
    ) -> None:
        super().__init__(request, faults, frames)
        self._resp: web.StreamResponse | None = None

    async def _open(self) -> web.StreamResponse:
        if self._resp is None:
            kind = NDJSON_TYPE if self.frames is None else self.frames.content_type
            resp = web.StreamResponse(status=200, headers={"Content-Type": kind})
            await resp.prepare(self.request)
            self._resp = resp
        return self._resp

    async def _write(self, obj: JsonObj) -> None:
        await self._send(ndjson_line(obj) if self.frames is None else self.frames.chunk(obj))

    async def _send(self, data: bytes) -> None:
        resp = await self._open()
        try:
            await resp.write(data)
        except ConnectionError:
            # Client went away: stop generating, exactly like a cancellation.
            raise asyncio.CancelledError from None

    async def finish(self, final_chunk: JsonObj, full: JsonObj) -> web.StreamResponse:
        await self.emit(final_chunk)
        resp = await self._open()
        try:
            await resp.write_eof()
        except ConnectionError:
            raise asyncio.CancelledError from None
        return resp

    async def fail(self, message: str, status: int = 500) -> web.StreamResponse:
        # After headers went out the status stays 200; the error travels as a line.
        if self.frames is None:
            await self._write({"error": message})
        else:
            await self._send(self.frames.error(message))
        resp = await self._open()
        try:
            await resp.write_eof()
        except ConnectionError:
            raise asyncio.CancelledError from None
        return resp


class CollectOutput(Output):
    """``stream: false``: nothing is sent until the end; mid-way errors become HTTP 500."""

    async def _write(self, obj: JsonObj) -> None:
        return None

    async def finish(self, final_chunk: JsonObj, full: JsonObj) -> web.StreamResponse:
        await self._check_faults()
        return json_response(full if self.frames is None else self.frames.answer(full))

    async def fail(self, message: str, status: int = 500) -> web.StreamResponse:
        raise SimHTTPError(status, message)


def make_output(
    request: web.Request,
    stream: bool,
    faults: StreamFaults,
    frames: OpenAiFrames | None = None,
) -> Output:
    kind = StreamOutput if stream else CollectOutput
    return kind(request, faults, frames)


class Pacer:
    """Sleeps to absolute deadlines so token pacing does not drift with event-loop lag."""

    def __init__(self, first_token_s: float, tokens_per_s: float) -> None:
        self._start = time.monotonic() + first_token_s
        self._step = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0

    async def wait_token(self, index: int) -> None:
        delay = self._start + index * self._step - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
