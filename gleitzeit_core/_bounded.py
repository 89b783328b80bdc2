"""Bounded reads of upstream answers: every byte a plugin reads from a resource goes through here.

An upstream (an Ollama server, a Docker engine, a proxy in front of one) is untrusted: it may
send a body that never ends, a line that never ends, a trickle of bytes that never completes,
or JSON nested deeper than the decoder's stack. These helpers hold at most a stated number of
bytes per answer and raise ``LimitExceeded`` (naming the setting that was hit) or
``ValueError`` (not JSON) instead of growing; the plugin turns either into a failure of that
resource. Envoy and nginx bound every buffer the same way (``max_response_headers_kb``,
``proxy_buffers``, per-stream buffer limits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Protocol

from . import _jsonwire as jsonwire

__all__ = ["BoundedLines", "LimitExceeded", "check_json_shape", "loads_bounded", "read_capped"]

# Delete everything but brackets (after the strings are gone) to see the nesting of a document.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")


class ByteSource(Protocol):
    """What is read: ``aiohttp.StreamReader`` (``response.content``) has this shape."""

    async def readany(self) -> bytes: ...


class LimitExceeded(ValueError):
    """An upstream answer broke a bound; ``limit`` names the setting, ``bound`` its value."""

    def __init__(self, limit: str, bound: float, what: str) -> None:
        self.limit = limit
        self.bound = bound
        self.what = what
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        super().__init__(f"{what} ({limit} = {shown})")


async def read_capped(
    source: ByteSource,
    *,
    limit: int,
    what: str,
    limit_name: str,
    finish_within: float | None = None,
    finish_name: str = "stall_timeout",
) -> bytearray:
    """The whole body, at most ``limit`` bytes; ``LimitExceeded`` as soon as it grows past.

    ``finish_within``: once the first byte has arrived, the rest must follow within this many
    seconds (an answer dripped a byte at a time never stalls, but never finishes either). The
    wait for the first byte is the caller's to bound (an upstream may think for long).
    """
    body = bytearray()
    chunk = await source.readany()
    if not chunk:
        return body
    # aiohttp's StreamReader knows when the body has ended with what was just read: then no
    # second, timed read to hear it (a timer and an await per answer on the request path)
    ended = getattr(source, "at_eof", None)
    loop = asyncio.get_running_loop()
    until = None if finish_within is None else loop.time() + finish_within
    while chunk:
        if len(body) + len(chunk) > limit:
            raise LimitExceeded(limit_name, limit, f"{what} is larger than {limit} bytes")
        body += chunk
        if ended is not None and ended():
            break
        if until is None:
            chunk = await source.readany()
            continue
        try:
            async with asyncio.timeout_at(until):
                chunk = await source.readany()
        except TimeoutError:
            raise LimitExceeded(
                finish_name, finish_within or 0.0, f"{what} did not finish in time"
            ) from None
    return body


class BoundedLines:
    """Splits a streamed body into non-empty lines of at most ``max_line`` bytes.

    ``line(wait, finish)``: ``wait`` bounds the time until the next line's first byte,
    ``finish`` the time from there to its newline, so a line dripped slowly or never ended
    costs ``finish`` seconds, not the whole deadline. Holds one partial line plus one read
    (at most ``_NOWAIT`` bytes when what already arrived is taken at once).
    """

    __slots__ = ("_buffer", "_done", "_limit_name", "_max_line", "_scanned", "_source", "what")

    def __init__(
        self, source: ByteSource, *, max_line: int, limit_name: str, what: str = "a line"
    ) -> None:
        self._source = source
        self._max_line = max_line
        self._limit_name = limit_name
        self.what = what
        self._buffer = bytearray()
        self._scanned = 0  # no newline before this offset of the buffer
        self._done = False

    def _take(self) -> bytes | None:
        """A complete non-empty line from the buffer, if one is there."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(buffer)
                if len(buffer) > self._max_line:
                    raise self._too_long()
                return None
            if end > self._max_line:
                raise self._too_long()
            line = bytes(buffer[:end]).strip()
            del buffer[: end + 1]
            self._scanned = 0
            if line:
                return line

    def ready(self) -> bool:
        """Whether the next line has arrived already, so ``line`` returns it without waiting
        (takes what the source holds, up to ``_NOWAIT`` bytes, if it can be read at once: an
        aiohttp ``StreamReader``'s ``read_nowait``)."""
        buffer = self._buffer
        if buffer.find(b"\n", self._scanned) >= 0:
            return True
        take = getattr(self._source, "read_nowait", None)
        if take is None or self._done:
            return False
        more = take(_NOWAIT)
        if not more:
            return False
        buffer += more
        return buffer.find(b"\n", self._scanned) >= 0

    def _too_long(self) -> LimitExceeded:
        return LimitExceeded(
            self._limit_name, self._max_line, f"{self.what} is longer than {self._max_line} bytes"
        )

    async def _read(self, timeout: float | None) -> bool:
        if timeout is None:
            chunk = await self._source.readany()
        else:
            async with asyncio.timeout(timeout):
                chunk = await self._source.readany()
        if not chunk:
            self._done = True
            return False
        self._buffer += chunk
        return True

    async def line(self, wait: float | None, finish: float | None = None) -> bytes | None:
        """The next non-empty line; ``None`` at the end of the body. ``TimeoutError`` when
        no byte came within ``wait`` or the line did not end within ``finish`` (default:
        ``wait``) seconds after its first byte; ``LimitExceeded`` for a line too long."""
        line = self._take()
        if line is not None:
            return line
        if self.ready():  # arrived already: no timer, no wait
            line = self._take()
            if line is not None:
                return line
        if finish is None:
            finish = wait
        loop = asyncio.get_running_loop()
        until: float | None = None
        while not self._done:
            if self._buffer:  # a line has begun: it must end within ``finish``
                if until is None and finish is not None:
                    until = loop.time() + finish
                timeout = None if until is None else max(0.0, until - loop.time())
            else:
                timeout = wait
            if not await self._read(timeout):
                break
            line = self._take()
            if line is not None:
                return line
        rest = bytes(self._buffer).strip()
        self._buffer.clear()
        self._scanned = 0
        return rest or None


_WINDOW = 64 * 1024
_NOWAIT = 64 * 1024  # most bytes ``BoundedLines.ready`` takes at once


def _outside_strings(text: bytes) -> Iterator[bytes]:
    """``text`` (escapes already dropped) without its strings, in pieces of about ``_WINDOW``
    bytes: ``re.sub`` over the whole text keeps a list entry per string, ~45 times the input
    for a document of short strings (727 MiB for a 16 MiB answer); per window it is bounded.
    A window never ends inside a string (it is extended to the closing quote; an unclosed
    string runs to the end and is dropped, and the decoder refuses the document)."""
    start, size = 0, len(text)
    while start < size:
        end = min(start + _WINDOW, size)
        window = text[start:end]
        if window.count(b'"') % 2:
            close = text.find(b'"', end)
            end = size if close < 0 else close + 1
            window = text[start:end]
        # quotes alternate (escapes are gone), so every other piece is outside a string
        yield b"".join(window.split(b'"')[::2]) if b'"' in window else window
        start = end


def check_json_shape(raw: bytes | bytearray, max_depth: int, max_values: int | None = None) -> None:
    """``LimitExceeded`` when the JSON document ``raw`` nests more than ``max_depth`` levels
    (``max_json_depth``) or has more than ``max_values`` elements and members
    (``max_json_values``).

    Runs on the bytes before decoding, with linear C-speed passes only: Python's decoder raises
    ``RecursionError`` near 1000 levels (and re-encoding fails earlier still), and a document
    of many tiny values (``[{},{},...]``) decodes to twenty times its size in objects. Drop
    escaped backslashes and quotes, then strings; count the commas; keep the brackets and peel
    the innermost pairs at most ``max_depth`` times. Answers with few brackets and commas skip
    all that. Unbalanced brackets are left to the decoder to refuse.
    """
    brackets = raw.count(b"[") + raw.count(b"{")
    rough_values = raw.count(b",") + 1  # strings' commas too: never fewer than the real count
    if brackets <= max_depth and (max_values is None or rough_values <= max_values):
        return
    text = bytes(raw)
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    commas = 0
    shapes = []
    for window in _outside_strings(text):
        commas += window.count(b",")
        if brackets > max_depth:
            shapes.append(window.translate(_SQUARE, _NOT_BRACKETS))
    del text
    if max_values is not None and commas + 1 > max_values:
        raise LimitExceeded(
            "max_json_values", max_values, f"JSON with more than {max_values} values"
        )
    if brackets <= max_depth:
        return
    shape = b"".join(shapes)
    del shapes
    too_deep = b"[" * (max_depth + 1)
    for _ in range(max_depth):
        if too_deep in shape:
            break
        peeled = shape.replace(b"[]", b"")
        if peeled == shape:
            return  # empty, or unbalanced
        shape = peeled
    else:
        if b"[]" not in shape:
            return
    raise LimitExceeded("max_json_depth", max_depth, f"JSON nested deeper than {max_depth}")


def loads_bounded(raw: bytes | bytearray, *, max_depth: int, max_values: int | None = None) -> Any:
    """Decode JSON after ``check_json_shape``; ``ValueError`` (or ``LimitExceeded``, one) when
    it is not JSON, too deep or has too many values."""
    check_json_shape(raw, max_depth, max_values)
    try:
        return jsonwire.loads(raw)
    except RecursionError:  # unbalanced brackets the depth check could not measure
        raise LimitExceeded(
            "max_json_depth", max_depth, f"JSON nested deeper than {max_depth}"
        ) from None
