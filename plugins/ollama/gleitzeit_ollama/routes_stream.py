"""Streaming answers of the gateway: chunks pass through as they arrive, one NDJSON line each.

Every chunk is written (and so flushed to the socket) the moment the instance sends it; nothing
is buffered. The response ends with the instance's final chunk, or with an ``{"error": ...}``
line when the stream fails after it started (the status has gone out already), as Ollama does.

A client that goes away cancels the handler: the upstream answer is closed at once, which ends
the request on the instance, and the stream's lease is recorded as cancelled.

**Resuming a broken generate/chat stream.** When the instance fails mid-stream (reset, crash,
stall, an ``{"error"}`` line: a fault of the instance, not of the request), the relay sends the
same request to an instance this stream has not tried yet and *replays* it: the new answer's
first chunks must repeat exactly what the client already has (``response``, ``thinking``,
``message``), and only then does the relay continue with the chunks after them. The client sees
one uninterrupted answer. That holds only for deterministic output (a fixed ``seed`` with
temperature 0, or the simulator): when the replay says anything else, the relay gives up and
sends the error line instead, so a client never gets a spliced answer. Each resume counts as a
failover of the hub (``counters["failovers"]``; successful ones also in ``stream_resumes``) and
draws on the hub's ``retries``, within the request's deadline.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from aiohttp import web

from gleitzeit_core import GleitzeitError, Request, json_bytes
from gleitzeit_ollama.calls import open_stream
from gleitzeit_ollama.client import JSON
from gleitzeit_ollama.errors import OllamaError
from gleitzeit_ollama.hub import OllamaHub
from gleitzeit_ollama.routes_body import error_message
from gleitzeit_ollama.stream import ChunkStream, is_done

__all__ = ["INSTANCE_HEADER", "NDJSON", "Framing", "StreamRelay", "encode"]

NDJSON = "application/x-ndjson"
_HOLD_BYTES = 64 * 1024  # most bytes of chunks held for one write
INSTANCE_HEADER = "X-Gleitzeit-Instance"
log = logging.getLogger("gleitzeit.ollama")


def encode(chunk: JSON) -> bytes:
    return json_bytes(chunk) + b"\n"


class Framing:
    """How chunks go on the wire: Ollama's NDJSON lines here; the OpenAI routes frame each
    chunk as server-sent events instead (one instance per response, so it may keep state)."""

    content_type = NDJSON
    # a chunk goes out as the line the instance sent (already checked to be one bounded JSON
    # object, so it cannot end the line early): no encoding per chunk
    passes_lines = True

    def chunk(self, chunk: JSON) -> bytes:
        """Any chunk, the final one included."""
        return encode(chunk)

    def error(self, message: str) -> bytes:
        """The end of a stream that failed after it started."""
        return encode({"error": message})


def _signature(chunk: JSON) -> bytes:
    """What a replayed chunk must repeat: the text, never timings or timestamps."""
    text = (chunk.get("response"), chunk.get("thinking"), chunk.get("message"))
    return json_bytes(text, sort_keys=True)


class Delivered:
    """What the client has, as a running digest and a count: constant memory however long
    the stream (an instance may send valid chunks forever to a client that reads them all;
    keeping each chunk's text for the replay grew the gateway by the whole answer)."""

    __slots__ = ("_digest", "count", "first")

    def __init__(self) -> None:
        self._digest = hashlib.blake2b(digest_size=32)
        self.count = 0
        self.first = b""  # the first chunk's digest: most replays that differ, differ there

    def add(self, signature: bytes) -> None:
        self._digest.update(len(signature).to_bytes(8, "big"))
        self._digest.update(signature)
        self.count += 1
        if self.count == 1:
            self.first = self._digest.digest()

    def digest(self) -> bytes:
        return self._digest.digest()


class StreamRelay:
    """Relays one streamed answer to one client; ``resumable`` for generate and chat;
    ``final`` tells the last chunk (``done: true``; a pull's ``status: success``)."""

    def __init__(
        self,
        hub: OllamaHub,
        *,
        path: str,
        body: JSON,
        request: Request,
        model: str | None,
        keep_alive: float | None,
        resumable: bool,
        final: Callable[[JSON], bool] = is_done,
        framing: Framing | None = None,
    ) -> None:
        self.hub = hub
        self._final = final
        self._framing = framing or Framing()
        self.path = path
        self.body = body
        self.request = request
        self.model = model
        self.keep_alive = keep_alive
        self._delivered: Delivered | None = Delivered() if resumable else None
        self._budget = hub.retries
        self._tried: list[str] = []
        self._ended = False  # the final chunk (and the end of the response) went out

    async def respond(self, client: web.Request, stream: ChunkStream) -> web.StreamResponse:
        """Send ``stream`` (opened, its first chunk in hand) and whatever resumes it."""
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": self._framing.content_type, INSTANCE_HEADER: stream.instance},
        )
        current: ChunkStream | None = stream
        self._tried.append(stream.instance)
        try:
            await response.prepare(client)
            failure = await self._pump(response, stream)
            while failure is not None and not self._ended:
                current = None
                current = await self._resume(failure)
                if current is None:
                    await response.write(self._framing.error(error_message(failure)))
                    break
                failure = await self._pump(response, current)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away while we wrote; aiohttp logs the disconnect
        finally:
            if current is not None:
                await current.aclose()  # no-op after the final chunk; else cancels upstream
        return response

    async def _pump(self, response: web.StreamResponse, stream: ChunkStream) -> Exception | None:
        """Write every chunk as it arrives; ``None`` when the stream ended with its final
        chunk, else why it failed (the client's own disconnects propagate)."""
        delivered, final, frame = self._delivered, self._final, self._framing.chunk
        as_sent = self._framing.passes_lines
        # chunks that arrived together go out in one write (one system call, the most costly
        # step per chunk); a chunk is held only while the next one is already here
        held = bytearray()
        failure: Exception | None = None
        try:
            async for chunk in stream:
                line = stream.line
                data = line + b"\n" if as_sent and line is not None else frame(chunk)
                if final(chunk):  # the end of the response goes out with the last chunk
                    self._ended = True
                    await response.write_eof(bytes(held + data) if held else data)
                    held.clear()
                    continue  # the stream still lets its upstream answer end cleanly
                if delivered is not None:
                    delivered.add(_signature(chunk))
                if len(held) < _HOLD_BYTES and stream.ready():
                    held += data
                    continue
                if held:
                    held += data
                    data = bytes(held)
                    held.clear()
                await response.write(data)
        except GleitzeitError as exc:  # before ConnectionError: OllamaError is one too
            failure = exc
        except ConnectionError:
            raise
        except Exception as exc:  # a bug must end this stream with an error line, not hang it
            log.error("gateway: %s stream: %r", self.path, exc)
            failure = exc
        if held:  # what the client is counted as having (the replay's reference) goes out
            await response.write(bytes(held))
        return failure

    def _can_resume(self, failure: Exception) -> bool:
        return (
            self._delivered is not None
            and isinstance(failure, OllamaError)
            and failure.failure.resource_fault
        )

    async def _resume(self, failure: Exception) -> ChunkStream | None:
        """A stream on another instance positioned right after what the client already has,
        or ``None`` (not resumable, nobody left, out of time, or the replay differed)."""
        if not self._can_resume(failure):
            return None
        hub = self.hub
        while self._budget > 0:
            self._budget -= 1
            try:
                # one instance at a time: each candidate's replay must be checked on its own
                stream = await open_stream(
                    hub,
                    self.path,
                    self.body,
                    self.request,
                    model=self.model,
                    keep_alive=self.keep_alive,
                    exclude=self._tried,
                    retries=0,
                )
            except OllamaError as exc:
                if exc.resource is not None:
                    self._tried.append(exc.resource)
                if exc.failure.retryable:
                    continue
                return None
            except GleitzeitError:
                return None  # nobody left, or out of time
            self._tried.append(stream.instance)
            hub.counters["failovers"] += 1
            try:
                matched = await self._replay(stream)
            except BaseException:
                await stream.aclose()
                raise
            if matched:
                hub.counters["stream_resumes"] = hub.counters.get("stream_resumes", 0) + 1
                return stream
            await stream.aclose()
            if matched is False:
                return None  # the output is not deterministic: no other instance will match
        return None

    async def _replay(self, stream: ChunkStream) -> bool | None:
        """Read as many chunks as were delivered and compare: True if they all repeat what
        the client has, False if one differs, None if the replay itself failed."""
        delivered = self._delivered or Delivered()
        replayed = Delivered()
        try:
            while replayed.count < delivered.count:
                chunk = await anext(stream)
                if chunk.get("done") is True:
                    return False
                replayed.add(_signature(chunk))
                if replayed.count == 1 and replayed.first != delivered.first:
                    return False
        except StopAsyncIteration:
            return False
        except GleitzeitError:
            return None
        return replayed.digest() == delivered.digest()
