"""The hub's lean HTTP/1.1 client for its POSTs to instances: keep-alive, bounded, hostile-proof.

Every ``generate``/``chat``/``embed``/... call (streamed or not, ``client.post``) goes through
``UpstreamPool``: one request written with one ``write``, the answer parsed by ``httptools``
(llhttp) in a plain ``asyncio.Protocol``. aiohttp's client spent ~300 µs of CPU and four
event-loop iterations per request against ~70 µs and two for this (docs/performance.md).
Everything else stays on the hub's aiohttp session: probes and discovery (``probe.py``,
``discovery.py``), the merged listings and model routes (``routes_merge.py``,
``routes_models.py``), and every POST to an ``https://`` endpoint or one with credentials
in its URL (handed to the session as it is: TLS and Basic auth are aiohttp's).

An instance's address can be anything that answers, so everything it sends is bounded here:

* the header block (``MAX_HEADER_BYTES``) and the header count (``MAX_HEADERS``), trailers
  included; bytes that carry no body (a header, a chunk's size line and extensions, a
  trailer) run at most ``MAX_HEADER_BYTES`` past the last body byte, since httptools holds a
  header that has not ended in memory, growing; malformed framing (bad status line, bad
  chunk size, Content-Length beside chunked) is refused by llhttp; a switch of protocols
  (101) is refused; each is an ``UpstreamProtocolError`` (PROTOCOL in
  ``client.transport_error``); interim answers (100-199 but 101) are skipped, as RFC 9110
  says a client must, and the final answer is the caller's;
* the body is buffered only up to ``HIGH_WATER`` bytes: past it the socket stops being read
  (``pause_reading``) until the caller has taken it below ``LOW_WATER``, so an instance
  faster than its reader cannot fill memory; the callers bound the total (``read_capped``,
  ``BoundedLines``);
* a connection returns to the pool only when its answer was read to the end (Content-Length
  or chunked framing; an answer that ends with the connection never does) and keep-alive
  holds; a cancelled, failed or abandoned answer closes it; bytes arriving on an idle pooled
  connection (an answer nobody asked for) close it, so they can never pass for the next
  request's answer; a connection the instance closed while idle leaves the pool at once;
* idle connections close after ``KEEP_ALIVE_SECONDS``, below the idle timeouts of common
  servers (uvicorn and Apache 5 s, aiohttp 75 s, nginx 75 s); one reused connection that
  the instance closed before sending a byte (the race with its idle timeout) is retried once
  on a new connection, as nothing of the request was answered;
* redirects are never followed (the caller sees the 3xx); ``connect_timeout`` bounds opening
  a connection; ``max_connections`` caps the open connections over all instances (a caller
  waits for one within its request's deadline); ``close`` ends every connection.

Errors subclass ``ConnectionError`` (an ``OSError``), so every ``except OSError`` in the
callers keeps working, and their text never names the instance's address: these messages
reach gateway clients, who know instances by id only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

import aiohttp
import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = [
    "HIGH_WATER",
    "KEEP_ALIVE_SECONDS",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "Answer",
    "AnswerBody",
    "LeanResponse",
    "UpstreamClosed",
    "UpstreamConnectError",
    "UpstreamConnectTimeout",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamProtocolError",
]

MAX_HEADER_BYTES = 64 * 1024  # status line and headers; Ollama sends ~150 bytes
MAX_HEADERS = 100  # Ollama sends 3-4
HIGH_WATER = 256 * 1024  # body bytes buffered before the socket stops being read
LOW_WATER = 64 * 1024  # ... and resumes
KEEP_ALIVE_SECONDS = 4.0
_USER_AGENT = "gleitzeit"


class AnswerBody(Protocol):
    """What callers read an answer's body with (``aiohttp.StreamReader`` has this shape)."""

    async def readany(self) -> bytes: ...

    async def read(self, n: int = -1) -> bytes: ...

    def read_nowait(self, n: int = -1) -> bytes: ...

    def at_eof(self) -> bool: ...


class Answer(Protocol):
    """An instance's answer: a ``LeanResponse``, or an aiohttp response where the session
    handles the call (``https://``, credentials in the URL)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content_type(self) -> str: ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def content(self) -> AnswerBody: ...

    def close(self) -> None: ...

    def release(self) -> Any: ...


class UpstreamError(ConnectionError):
    """Talking to an instance failed; the text never names its address."""


class UpstreamConnectError(UpstreamError):
    """No connection could be opened (refused, unreachable, name not resolved)."""


class UpstreamConnectTimeout(UpstreamError):
    """No connection within ``connect_timeout``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no connection within {seconds:g} s (connect_timeout)")
        self.seconds = seconds


class UpstreamClosed(UpstreamError):
    """The instance closed the connection before its answer ended."""


class UpstreamProtocolError(UpstreamError):
    """The instance's bytes are not an HTTP answer within the bounds."""


class _Stale(Exception):
    """A reused connection closed before a byte of the answer: safe to retry once."""


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> tuple[str, int, bytes] | None:
    """``(host, port, request head)`` of a plain ``http://`` URL (a path prefix and IPv6
    literals allowed); None for the session to handle: ``https://``, credentials in the URL
    (aiohttp sends them as Basic auth), anything unparsable (aiohttp names what is wrong).
    Cached: the endpoints and paths are a handful."""
    try:
        parsed = URL(url)
        host = parsed.raw_host
        port = parsed.port or 80
    except ValueError:
        return None
    if parsed.scheme != "http" or not host or parsed.raw_user or parsed.raw_password:
        return None
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == 80 else f"{shown}:{port}"
    path = parsed.raw_path_qs or "/"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {_USER_AGENT}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\n"
    )
    return host, port, head.encode("ascii")


class LeanBody:
    """An answer's body as it arrives: bounded buffering with backpressure on the socket."""

    __slots__ = ("_buffer", "_connection", "_eof", "_error", "_size", "_waiter")

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self._buffer: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- fed by the connection ------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._buffer.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER:
            self._connection.pause()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._eof and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the caller ---------------------------------------------------------------------
    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    @property
    def buffered(self) -> int:
        """Bytes arrived and not read yet (at most ``HIGH_WATER`` plus one socket read)."""
        return self._size

    def _take(self, n: int) -> bytes:
        buffer = self._buffer
        if n < 0 or n >= self._size:
            data = buffer.popleft() if len(buffer) == 1 else b"".join(buffer)
            buffer.clear()
        else:
            data = buffer.popleft()
            if len(data) > n:
                buffer.appendleft(data[n:])
                data = data[:n]
        self._size -= len(data)
        if self._size <= LOW_WATER:
            self._connection.resume()
        return data

    def read_nowait(self, n: int = -1) -> bytes:
        """What has arrived (at most ``n`` bytes), without waiting; ``b""`` when nothing."""
        if self._error is not None:
            raise self._error
        return self._take(n) if self._buffer else b""

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``n`` < 0: all that has arrived) as soon as some have;
        ``b""`` at the end of the body. Unlike aiohttp's, never waits for the end: callers
        bound what they hold (``read_capped``, ``BoundedLines``)."""
        while True:
            if self._error is not None:
                raise self._error
            if self._buffer:
                return self._take(n)
            if self._eof:
                return b""
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter

    async def readany(self) -> bytes:
        return await self.read(-1)


class LeanResponse:
    """One answer on one pooled connection; ``release`` or ``close`` ends it (idempotent)."""

    __slots__ = ("_connection", "_content_type", "content", "headers", "status")

    def __init__(
        self, connection: _Connection, status: int, headers: CIMultiDictProxy[str]
    ) -> None:
        self._connection: _Connection | None = connection
        self.status = status
        self.headers = headers
        self.content = connection.body
        self._content_type: str | None = None

    @property
    def content_type(self) -> str:
        """The media type without parameters, as aiohttp gives it (its default when none)."""
        if self._content_type is None:
            raw = self.headers.get("Content-Type")
            kind = raw.split(";", 1)[0].strip().lower() if raw else ""
            self._content_type = kind or "application/octet-stream"
        return self._content_type

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        return None if raw is None else int(raw)  # llhttp accepted only digits

    def release(self) -> None:
        """Back to the pool if the whole answer was read and keep-alive holds; else close."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finish(reusable=self.content.at_eof())

    def close(self) -> None:
        """Drop the connection, whatever is left unread."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finish(reusable=False)

    def __del__(self) -> None:
        # an answer dropped unreleased must not hold its connection (and pool slot) forever;
        # at interpreter exit the loop may be gone already: nothing left to free then
        if getattr(self, "_connection", None) is not None:
            with contextlib.suppress(Exception):
                self.close()


class _Connection(asyncio.Protocol):
    """One keep-alive connection to one instance; one answer at a time."""

    def __init__(self, pool: UpstreamPool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._paused = False
        self._busy = False  # an answer is in flight
        self._head: asyncio.Future[LeanResponse] | None = None
        self._new_answer()

    def _new_answer(self) -> None:
        """The state of one answer, fresh for each request on this connection."""
        self.body: LeanBody = LeanBody(self)
        self._headers: list[tuple[bytes, bytes]] = []  # decoded once, when all are in
        self._header_bytes = 0
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: its end is known
        self._complete = False
        self._keep_alive = False
        self._interim = False  # the message being parsed is a 1xx answer: skipped
        self._received = 0
        self._body_received = 0
        self._unframed_run = 0  # bytes since the last body byte (or the request) that were none

    # -- the caller's side ----------------------------------------------------------------------
    def send(self, request: bytes) -> asyncio.Future[LeanResponse]:
        """Write ``request``; the future is the answer once its headers are in."""
        self._new_answer()
        self._busy = True
        self._head = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return self._head

    def finish(self, *, reusable: bool) -> None:
        """The answer is over for the caller: pool the connection or close it."""
        self._busy = False
        if reusable and self._complete and self._keep_alive and not self.closed:
            self.pool._idle_again(self)
        else:
            self.close()

    def complete(self) -> bool:
        """Whether the answer in flight has arrived to its end."""
        return self._complete

    def usable(self, now: float) -> bool:
        transport = self.transport
        return (
            not self.closed
            and transport is not None
            and not transport.is_closing()
            and now - self.idle_since < KEEP_ALIVE_SECONDS
        )

    def close(self) -> None:
        """Close now; an answer still coming fails with ``UpstreamClosed``."""
        if self.closed:
            return
        self.closed = True
        if self._busy and not self._complete:
            self._fail(UpstreamClosed("the connection closed before the answer ended"))
        if self.transport is not None:
            self.transport.close()
        self.pool._gone(self)

    def _fail(self, error: UpstreamError) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        else:
            self.body.fail(error)

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a socket transport (uvloop's is not an ``asyncio.Transport`` subclass, same methods)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._busy or self._complete:
            # nobody asked (an idle connection), or past the end of the answer: never parsed
            # as the next request's answer; the connection cannot be trusted any more
            self.close()
            return
        self._received += len(data)
        body_before = self._body_received
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._protocol_error("the instance switched protocols (101): not an HTTP answer")
            return
        except httptools.HttpParserError as exc:
            if self.complete():  # bytes after the answer's end (a second answer): drop them
                self.close()
                return
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
            self._protocol_error(f"not a valid HTTP answer: {cause}")
            return
        if self.complete():  # the answer's end was in this read
            return
        # A header, trailer or chunk extension still growing: httptools keeps the header in
        # memory until it ends, so bytes without a body byte among them are bounded here.
        self._unframed_run = (
            0 if self._body_received != body_before else self._unframed_run + len(data)
        )
        if self._unframed_run > MAX_HEADER_BYTES:
            where = "header block" if not self._headers_done else "framing after the body"
            self._protocol_error(f"the {where} is larger than {MAX_HEADER_BYTES} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return  # closed here: the answer in flight, if any, was failed then
        self.closed = True
        self.pool._gone(self)
        if not self._busy or self._complete:
            return  # idle: it has left the pool, so it is never handed out
        head = self._head
        if head is not None and not head.done():
            if self.reused and self._received == 0:
                head.set_exception(_Stale())
            else:
                head.set_exception(
                    UpstreamClosed("the instance closed the connection before its answer")
                )
        elif not self._framed:
            self._complete = True  # its body ends with the connection: nothing more to come
            self.body.feed_eof()
        else:
            self.body.fail(UpstreamClosed("the instance closed the connection mid-answer"))

    def _protocol_error(self, text: str) -> None:
        self._fail(UpstreamProtocolError(text))
        self.close()

    # -- httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:
            raise UpstreamProtocolError("a second answer after the first")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._headers) >= MAX_HEADERS:
            raise UpstreamProtocolError(f"more than {MAX_HEADERS} headers")
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES:
            raise UpstreamProtocolError(f"the header block is larger than {MAX_HEADER_BYTES} bytes")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # an interim answer (100 Continue, 102, 103 Early Hints): the final one follows
            self._interim = True
            self._headers = []
            self._header_bytes = 0
            return
        self._headers_done = True
        self._keep_alive = parser.should_keep_alive()
        headers = CIMultiDict(
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._headers]
        )
        self._framed = (
            "Content-Length" in headers
            or "chunked" in headers.get("Transfer-Encoding", "").lower()
            or status in (204, 304)
        )
        head = self._head
        if head is not None and not head.done():
            head.set_result(LeanResponse(self, status, CIMultiDictProxy(headers)))

    def on_body(self, body: bytes) -> None:
        self._body_received += len(body)
        self.body.feed(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False  # the final answer's head comes next, on this connection
            return
        self._complete = True
        self.body.feed_eof()


class UpstreamPool:
    """Keep-alive connections to every instance of one hub, at most ``max_connections``.

    ``fallback`` gives the aiohttp session for what it handles (``https://``, credentials).
    """

    def __init__(
        self,
        *,
        max_connections: int,
        connect_timeout: float,
        fallback: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._fallback = fallback
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    @property
    def open_connections(self) -> int:
        return len(self._all) + self._opening

    @property
    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    async def post(self, url: str, payload: bytes, headers: Mapping[str, str]) -> Answer:
        """POST ``payload`` to ``url``; the answer once its headers are in. The caller must
        ``release`` or ``close`` it. ``headers`` go only to what the session handles
        (``_target``); the lean path always sends JSON with ``Accept: application/json``."""
        target = _target(url)
        if target is None:
            return await self._fallback().post(
                url, data=payload, headers=headers, allow_redirects=False
            )
        host, port, head = target
        request = head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload
        for _ in range(2):
            connection = await self._acquire((host, port))
            try:
                return await connection.send(request)
            except _Stale:
                # closed by the instance as it was handed out: once more on a new connection
                # (its other idle ones are as old: likely closing too)
                for idle in self._idle.pop((host, port), []):
                    idle.close()
                continue
            except BaseException:
                connection.close()  # cancelled or failed before the headers: never reused
                raise
        raise UpstreamClosed("the instance closed the connection before its answer")

    async def _acquire(self, key: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            if self.closed:
                raise UpstreamError("the hub's connections are closed (the hub stopped)")
            idle = self._idle.get(key)
            now = loop.time()
            while idle:
                connection = idle.pop()
                if connection.usable(now):
                    connection.reused = True
                    return connection
                connection.close()
            if self.open_connections < self.max_connections:
                return await self._connect(key)
            if not self._close_oldest_idle():
                waiter = loop.create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled():
                        self._wake()  # it was our turn: pass it on
                    raise
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        self._opening += 1
        connection = _Connection(self, key)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: connection, *key)
        except TimeoutError:
            raise UpstreamConnectTimeout(self.connect_timeout) from None
        except OSError as exc:
            code = errno.errorcode.get(exc.errno or 0) or type(exc).__name__
            raise UpstreamConnectError(f"cannot connect ({code})") from None
        finally:
            self._opening -= 1
            if connection.transport is None:
                self._wake()
        if self.closed:
            connection.close()
            raise UpstreamError("the hub's connections are closed (the hub stopped)")
        self._all.add(connection)
        return connection

    def _close_oldest_idle(self) -> bool:
        """Make room for a connection elsewhere: close the longest-idle one, if any."""
        oldest: _Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        oldest.close()
        return True

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- called by connections ------------------------------------------------------------------
    def _idle_again(self, connection: _Connection) -> None:
        if self.closed:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.setdefault(connection.key, []).append(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(KEEP_ALIVE_SECONDS, self._sweep)
        self._wake()

    def _gone(self, connection: _Connection) -> None:
        self._all.discard(connection)
        idle = self._idle.get(connection.key)
        if idle is not None and connection in idle:
            idle.remove(connection)
        self._wake()

    def _sweep(self) -> None:
        """Close connections idle for ``KEEP_ALIVE_SECONDS``; again while some are idle."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for idle in list(self._idle.values()):
            for connection in [c for c in idle if not c.usable(now)]:
                connection.close()
        self._idle = {key: idle for key, idle in self._idle.items() if idle}
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(
                KEEP_ALIVE_SECONDS / 2, self._sweep
            )

    async def close(self) -> None:
        """Close every connection (answers in flight end with ``UpstreamClosed``)."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # they see ``closed`` and raise
        await asyncio.sleep(0)  # let the transports deliver connection_lost
