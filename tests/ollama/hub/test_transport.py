"""The hub's lean HTTP/1.1 transport against real and hostile servers on loopback.

The calls to instances (``generate``, ``chat``, ...) go through ``transport.UpstreamPool``; these
tests give it ``RawServer``s that write exactly the bytes each case needs (valid answers, broken
framing, unsolicited answers, closes at the worst moment) and check what a user of the hub would
notice: the answer, the failure class counted against the instance, the text of the error, the
connections the server saw.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvloop
from gleitzeit_ollama import transport
from gleitzeit_ollama.client import make_session, post, transport_error
from gleitzeit_ollama.errors import OllamaError
from gleitzeit_ollama.hub import OllamaHub
from gleitzeit_ollama.settings import OllamaSettings
from gleitzeit_ollama.transport import (
    HIGH_WATER,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    Answer,
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamPool,
    UpstreamProtocolError,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gleitzeit_core import FailureClass, ResourceError
from gleitzeit_core._runtime import Runtime
from gleitzeit_core.testing.probe_contract import unused_endpoint
from tests.ollama.hub.conftest import RuntimeFactory
from tests.ollama.hub.rawhttp import (
    MODEL,
    Exchange,
    RawServer,
    chunked,
    head,
    json_answer,
)

GEN = {"model": MODEL, "prompt": "hello"}
Eventually = Callable[..., Awaitable[None]]


def _config(*urls: str, **overrides: Any) -> dict[str, Any]:
    """One ``ollama`` hub over ``urls`` (ids r0, r1, ...), no probes, one attempt each."""
    table: dict[str, Any] = {
        "kind": "ollama",
        "discovery": ["static"],
        "strategy": "round_robin",
        "health": {"enabled": False},
        "request_timeout": 10.0,
        "resources": [{"id": f"r{i}", "url": url, "models": [MODEL]} for i, url in enumerate(urls)],
    }
    return {"hubs": {"llm": table | overrides}}


def _failures(runtime: Runtime, instance: str = "r0") -> dict[str, int]:
    failures: dict[str, int] = runtime.hubs["llm"].get(instance).metrics.snapshot(0.0).failures
    return failures


def _pool(runtime: Runtime) -> UpstreamPool:
    pool: UpstreamPool = runtime.hubs["llm"].upstream  # type: ignore[attr-defined]
    return pool


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    """A pool of at most 4 connections, 1 s to connect; closed at teardown."""
    session = make_session(OllamaSettings())
    upstream = UpstreamPool(max_connections=4, connect_timeout=1.0, fallback=lambda: session)
    try:
        yield upstream
    finally:
        await upstream.close()
        await session.close()


async def _read_all(answer: Answer) -> bytes:
    out = b""
    while not answer.content.at_eof():
        out += await answer.content.readany()
    return out


# -- keep-alive and framing --------------------------------------------------------------------


async def test_sequential_calls_share_one_connection(runtime_factory: RuntimeFactory) -> None:
    """N sequential calls to one instance travel over one kept-alive connection, each with
    its whole answer."""
    async with RawServer() as server:
        runtime = await runtime_factory(raw=_config(server.url))
        for _ in range(5):
            reply = await runtime.execute("llm/generate", GEN)
            assert reply["response"] == "ok"
        assert len(server.exchanges) == 5
        assert {e.connection for e in server.exchanges} == {server.exchanges[0].connection}
        assert _failures(runtime) == {}


async def test_chunked_answers_are_read_whole_and_the_connection_reused(
    runtime_factory: RuntimeFactory,
) -> None:
    """An answer in chunked framing, dribbled in pieces, is read to its zero chunk: the
    caller gets the whole JSON and the next call reuses the connection."""

    async def answer(exchange: Exchange) -> None:
        body = json_answer({"model": MODEL, "response": "chunked", "done": True})
        payload = body[body.index(b"\r\n\r\n") + 4 :]
        raw = head(200, content_type="application/json", transfer_encoding="chunked")
        raw += chunked(payload[:7], payload[7:20], payload[20:])
        for i in range(0, len(raw), 11):
            exchange.writer.write(raw[i : i + 11])
            await exchange.writer.drain()
            await asyncio.sleep(0.001)

    async with RawServer(answer) as server:
        runtime = await runtime_factory(raw=_config(server.url))
        for _ in range(3):
            reply = await runtime.execute("llm/generate", GEN)
            assert reply["response"] == "chunked"
        assert len({e.connection for e in server.exchanges}) == 1


async def test_ipv6_endpoint_with_a_path_prefix(runtime_factory: RuntimeFactory) -> None:
    """An instance at ``http://[::1]:port/prefix`` is asked for ``/prefix/api/generate``
    with ``Host: [::1]:port``."""
    async with RawServer(host="::1") as server:
        runtime = await runtime_factory(raw=_config(server.url + "/ollama/"))
        reply = await runtime.execute("llm/generate", GEN)
        assert reply["response"] == "ok"
        (exchange,) = server.exchanges
        assert exchange.target == "/ollama/api/generate"
        assert exchange.headers["host"] == server.url.removeprefix("http://")
        assert exchange.headers["content-type"] == "application/json"


_BODY = st.binary(max_size=3000)


@st.composite
def _answers(draw: st.DrawFn) -> tuple[bytes, bytes, list[int]]:
    """(body, the whole answer's bytes in Content-Length or chunked framing, split points)."""
    body = draw(_BODY)
    if draw(st.booleans()):
        raw = head(200, content_length=len(body), x_test="yes") + body
    else:
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        raw = head(200, transfer_encoding="chunked", x_test="yes") + chunked(
            *[p for p in pieces if p]
        )
    splits = sorted(set(draw(st.lists(st.integers(1, len(raw) - 1), max_size=24))))
    return body, raw, splits


async def _parse_in_reads(raw: bytes, splits: list[int]) -> tuple[int, str, bytes, int]:
    """Feed ``raw`` to a pooled connection in reads cut at ``splits``; what the caller sees:
    status, the ``X-Test`` header, the body, and the idle connections after ``release``."""
    held = asyncio.Event()

    async def hold(exchange: Exchange) -> None:
        await held.wait()

    async with RawServer(hold) as server:
        upstream = UpstreamPool(max_connections=1, connect_timeout=1.0, fallback=_no_session)
        try:
            call = asyncio.ensure_future(upstream.post(server.url + "/api/generate", b"{}", {}))
            await server.wait_for_exchanges(1)
            (connection,) = upstream._all
            for a, b in zip([0, *splits], [*splits, len(raw)], strict=True):
                connection.data_received(raw[a:b])  # one read of the socket each
                await asyncio.sleep(0)
            answer = await call
            body = await _read_all(answer)
            answer.release()
            result = (answer.status, answer.headers["x-test"], body, upstream.idle_connections)
        finally:
            held.set()
            await upstream.close()
    return result


def _no_session() -> Any:
    raise AssertionError("only https:// endpoints use the session")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_answers())
def test_an_answer_parses_the_same_however_its_bytes_are_split(
    case: tuple[bytes, bytes, list[int]],
) -> None:
    """The same answer (Content-Length or chunked) gives the same status, headers and body,
    and leaves its connection reusable, whether it arrives in one read or cut anywhere (on
    asyncio's loop and on uvloop)."""
    body, raw, splits = case
    for loop in (asyncio.new_event_loop, uvloop.new_event_loop):
        with asyncio.Runner(loop_factory=loop) as runner:
            whole = runner.run(asyncio.wait_for(_parse_in_reads(raw, []), 10.0))
            split = runner.run(asyncio.wait_for(_parse_in_reads(raw, splits), 10.0))
        assert whole == split == (200, "yes", body, 1)


# -- hostile answers ---------------------------------------------------------------------------


async def _big_header(exchange: Exchange) -> bool:
    exchange.writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 10))
    exchange.writer.write(b"\r\nContent-Length: 2\r\n\r\n{}")
    return False


async def _endless_header(exchange: Exchange) -> None:
    exchange.writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 10))
    await exchange.writer.drain()
    await asyncio.sleep(3600)  # the header never ends


async def _many_headers(exchange: Exchange) -> bool:
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    exchange.writer.write(b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\n{}")
    return False


async def _bad_chunk(exchange: Exchange) -> bool:
    raw = head(200, content_type="application/json", transfer_encoding="chunked")
    exchange.writer.write(raw + b'5\r\n{"a":\r\nzz\r\n1}\r\n0\r\n\r\n')
    return False


async def _both_lengths(exchange: Exchange) -> bool:
    raw = head(200, content_length=2, transfer_encoding="chunked")
    exchange.writer.write(raw + b"2\r\n{}\r\n0\r\n\r\n")
    return False


async def _garbage(exchange: Exchange) -> bool:
    exchange.writer.write(b"SSH-2.0-OpenSSH_9.6\r\n" * 3)
    return False


@pytest.mark.parametrize(
    "answer",
    [_big_header, _endless_header, _many_headers, _bad_chunk, _both_lengths, _garbage],
    ids=lambda f: f.__name__,
)
async def test_a_malformed_answer_is_a_protocol_failure_of_the_instance(
    runtime_factory: RuntimeFactory, answer: Any
) -> None:
    """A header block past ``MAX_HEADER_BYTES`` (ended or still growing), more than
    ``MAX_HEADERS`` headers, a bad
    chunk size, Content-Length beside chunked, or no HTTP at all: the call fails with a
    PROTOCOL failure counted against the instance (not a crash, not a hang), and the error
    names neither its address nor its port."""
    async with RawServer(answer) as server:
        runtime = await runtime_factory(raw=_config(server.url))
        with pytest.raises(ResourceError) as info:
            await runtime.execute("llm/generate", GEN)
        assert _failures(runtime) == {"protocol": 1}
        _assert_no_address(info.value, server.url)


async def test_a_close_mid_body_is_a_connection_failure(runtime_factory: RuntimeFactory) -> None:
    """An instance that closes after part of its answer: a CONNECTION failure of it, no
    partial answer reaches the caller, and the connection is not pooled."""

    async def half(exchange: Exchange) -> bool:
        exchange.writer.write(head(200, content_type="application/json", content_length=100))
        exchange.writer.write(b'{"model": "llama3.2", ')
        return False

    async with RawServer(half) as server:
        await _one_call_fails_as(runtime_factory, server, "connection")


async def _one_call_fails_as(
    runtime_factory: RuntimeFactory, server: RawServer, failure: str
) -> None:
    """One call to ``server`` fails, counted as ``failure`` of the instance, its connection
    not kept, its error naming neither the address nor the port."""
    runtime = await runtime_factory(raw=_config(server.url))
    with pytest.raises(ResourceError) as info:
        await runtime.execute("llm/generate", GEN)
    assert _failures(runtime) == {failure: 1}
    assert _pool(runtime).open_connections == 0
    _assert_no_address(info.value, server.url)


async def test_a_redirect_is_never_followed(runtime_factory: RuntimeFactory) -> None:
    """A 3xx pointing elsewhere is the instance's PROTOCOL failure; the request (the
    client's prompt) never reaches the place it points to."""
    async with RawServer() as elsewhere:

        async def redirect(exchange: Exchange) -> None:
            target = elsewhere.url + "/api/generate"
            exchange.writer.write(head(307, location=target, content_length=0))

        async with RawServer(redirect) as server:
            runtime = await runtime_factory(raw=_config(server.url))
            with pytest.raises(ResourceError) as info:
                await runtime.execute("llm/generate", GEN)
            assert info.value.status == 307
            assert _failures(runtime) == {"protocol": 1}
        assert elsewhere.exchanges == []


async def _endless_trailer(exchange: Exchange) -> None:
    raw = head(200, content_type="application/json", transfer_encoding="chunked")
    exchange.writer.write(raw + b"2\r\n{}\r\n0\r\nX-Trailer: ")
    await _flood(exchange)


async def _endless_chunk_extension(exchange: Exchange) -> None:
    raw = head(200, content_type="application/json", transfer_encoding="chunked")
    exchange.writer.write(raw + b"2;x=")
    await _flood(exchange)


async def _endless_interim_answers(exchange: Exchange) -> None:
    while True:
        exchange.writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
        await exchange.writer.drain()


_FLOODED: list[int] = []


async def _flood(exchange: Exchange) -> None:
    """Write 1 MiB blocks until the client stops reading; the bytes written go to _FLOODED."""
    block = b"a" * (1024 * 1024)
    sent = 0
    try:
        while sent < 1024 * len(block):  # 1 GiB: far past any bound
            exchange.writer.write(block)
            await exchange.writer.drain()
            sent += len(block)
    finally:
        _FLOODED.append(sent)


@pytest.mark.parametrize(
    "answer",
    [_endless_trailer, _endless_chunk_extension, _endless_interim_answers],
    ids=lambda f: f.__name__,
)
async def test_framing_that_never_ends_is_refused_before_it_fills_memory(
    runtime_factory: RuntimeFactory, answer: Any
) -> None:
    """A trailer after the last chunk, a chunk extension or a run of interim (1xx) answers
    that never ends: httptools would hold an unfinished header in memory, growing at the
    rate of the socket, until the call's deadline (hundreds of MB in 20 s, and the event
    loop stalled on its copies). Instead the call fails at once as the instance's PROTOCOL
    failure, after at most ``MAX_HEADER_BYTES`` plus socket buffers were read, and the
    connection is not pooled."""
    _FLOODED.clear()
    async with RawServer(answer) as server:
        await _one_call_fails_as(runtime_factory, server, "protocol")
    assert all(sent < 64 * 1024 * 1024 for sent in _FLOODED), _FLOODED


@pytest.mark.parametrize("interim", [b"100 Continue", b"102 Processing", b"103 Early Hints"])
async def test_interim_answers_are_skipped_for_the_final_one(
    runtime_factory: RuntimeFactory, interim: bytes
) -> None:
    """A 1xx answer before the final one (a proxy in front of Ollama may send 103 Early
    Hints or 102 Processing; RFC 9110 says a client must parse them even unasked) is
    skipped: the caller gets the final answer, no failure is counted, and the next call
    reuses the connection."""

    async def answer(exchange: Exchange) -> None:
        exchange.writer.write(b"HTTP/1.1 " + interim + b"\r\nLink: </x>\r\n\r\n")
        await exchange.writer.drain()
        await asyncio.sleep(0.05)  # the final answer in a later read
        exchange.writer.write(b"HTTP/1.1 " + interim + b"\r\n\r\n" + json_answer())

    async with RawServer(answer) as server:
        runtime = await runtime_factory(raw=_config(server.url))
        for _ in range(2):
            reply = await runtime.execute("llm/generate", GEN)
            assert reply["response"] == "ok"
        assert _failures(runtime) == {}
        assert len({e.connection for e in server.exchanges}) == 1


async def test_a_switch_of_protocols_is_a_protocol_failure_without_a_crash_report(
    runtime_factory: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An instance answering 101 Switching Protocols (and then anything at all): the
    instance's PROTOCOL failure, its connection closed, and nothing escapes the transport
    (asyncio logged a 'Fatal error: protocol.data_received() call failed' traceback for
    every such answer, a log flood a hostile instance could drive)."""

    async def upgrade(exchange: Exchange) -> None:
        exchange.writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n" + json_answer()
        )
        await exchange.writer.drain()
        await asyncio.sleep(3600)

    async with RawServer(upgrade) as server:
        with caplog.at_level("ERROR"):
            await _one_call_fails_as(runtime_factory, server, "protocol")
            await asyncio.sleep(0.1)  # a late report would come now
        assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


# -- connections the instance closes or abuses -----------------------------------------------


async def _call_after_the_first_connection_went(
    runtime_factory: RuntimeFactory, eventually: Eventually, answer: Any
) -> Runtime:
    """Two calls to an instance answering with ``answer``, the second once the pool has let
    go of the first connection; both served, each on a connection of its own."""
    async with RawServer(answer) as server:
        runtime = await runtime_factory(raw=_config(server.url))
        await runtime.execute("llm/generate", GEN)
        await eventually(lambda: _pool(runtime).open_connections == 0, timeout=10.0)
        reply = await runtime.execute("llm/generate", GEN)
        assert reply["response"] == "ok"
        first, second = (e.connection for e in server.exchanges)
        assert first != second
    return runtime


async def test_an_idle_connection_the_instance_closed_costs_no_failure(
    runtime_factory: RuntimeFactory, eventually: Eventually
) -> None:
    """The instance closes a kept-alive connection while it is idle (its idle timeout): the
    connection leaves the pool at once, and the next call succeeds on a new one with no
    failure counted against the instance."""

    async def answer_then_close(exchange: Exchange) -> bool:
        exchange.writer.write(json_answer())
        return False

    runtime = await _call_after_the_first_connection_went(
        runtime_factory, eventually, answer_then_close
    )
    assert _failures(runtime) == {}


async def test_idle_connections_close_after_the_keep_alive_time(
    pool: UpstreamPool, monkeypatch: pytest.MonkeyPatch, eventually: Eventually
) -> None:
    """A pooled connection idle for ``KEEP_ALIVE_SECONDS`` is closed by the hub (the
    instance sees it go) before the instance's own idle timeout could race a request; the
    next call opens a new one."""
    monkeypatch.setattr(transport, "KEEP_ALIVE_SECONDS", 0.3)
    async with RawServer() as server:
        for _ in range(2):
            answer = await post(
                pool, server.url + "/api/generate", b"{}", resource="r0", connect_timeout=1.0
            )
            await _read_all(answer)
            answer.release()
            assert pool.idle_connections == 1
            await eventually(lambda: server.closed_by_client == len(server.exchanges), 10.0)
            assert pool.open_connections == 0
        assert [e.connection for e in server.exchanges] == [1, 2]


async def test_a_kept_alive_connection_closed_instead_of_answered_is_retried_once(
    runtime_factory: RuntimeFactory,
) -> None:
    """The race with an instance's idle timeout: it closes a reused connection as the
    request arrives, before a byte of answer. The request goes once more, on a new
    connection, and succeeds with no failure counted."""

    async def second_request_closes(exchange: Exchange) -> bool:
        first = server.exchanges[0].connection
        if exchange.connection == first and len(server.exchanges) == 2:
            return False  # closed, nothing written
        exchange.writer.write(json_answer())
        return True

    async with RawServer(second_request_closes) as server:
        runtime = await runtime_factory(raw=_config(server.url))
        await runtime.execute("llm/generate", GEN)
        reply = await runtime.execute("llm/generate", GEN)
        assert reply["response"] == "ok"
        first, again, retried = (e.connection for e in server.exchanges)
        assert first == again != retried
        assert _failures(runtime) == {}


@pytest.mark.parametrize("later", [True, False], ids=["on-the-idle-connection", "in-one-write"])
async def test_an_unsolicited_second_answer_is_never_the_next_call_s_answer(
    runtime_factory: RuntimeFactory, eventually: Eventually, later: bool
) -> None:
    """An instance that sends a second, unasked-for answer after the first (later, onto the
    idle pooled connection, or in the same write): the connection is dropped, and the next
    call gets its own answer from a new connection, never the forged one."""
    forged = json_answer({"model": MODEL, "response": "forged", "done": True})

    async def answer_twice(exchange: Exchange) -> None:
        exchange.writer.write(json_answer())
        if later:
            await exchange.writer.drain()
            await asyncio.sleep(0.05)
        exchange.writer.write(forged)

    await _call_after_the_first_connection_went(runtime_factory, eventually, answer_twice)


async def test_a_stream_cancelled_midway_closes_its_connection_and_the_next_call_is_clean(
    pool: UpstreamPool,
) -> None:
    """A caller cancelled in the middle of a streamed answer: the connection is closed (the
    instance sees it go), and the next call gets a whole answer on a new connection."""

    async def stream_then_hang(exchange: Exchange) -> bool | None:
        if exchange.connection > 1:
            exchange.writer.write(json_answer())
            return None
        exchange.writer.write(head(200, transfer_encoding="chunked") + b'6\r\n{"a":1\r\n')
        await exchange.writer.drain()
        await asyncio.sleep(3600)
        return None

    async with RawServer(stream_then_hang) as server:
        answer = await post(
            pool, server.url + "/api/generate", b"{}", resource="r0", connect_timeout=1.0
        )
        assert await answer.content.readany() == b'{"a":1'
        reading = asyncio.ensure_future(answer.content.readany())
        await asyncio.sleep(0.05)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        answer.close()  # what ChunkStream does when its caller is cancelled
        assert pool.open_connections == 0
        second = await post(
            pool, server.url + "/api/generate", b"{}", resource="r0", connect_timeout=1.0
        )
        assert b'"response": "ok"' in await _read_all(second)
        second.release()
        assert [e.connection for e in server.exchanges] == [1, 2]
        assert pool.idle_connections == 1


async def test_release_before_the_end_closes_instead_of_pooling(pool: UpstreamPool) -> None:
    """An answer released before it was read to its end is not pooled: the rest of it could
    otherwise pass for the next request's answer."""
    async with RawServer() as server:
        answer = await post(
            pool, server.url + "/api/generate", b"{}", resource="r0", connect_timeout=1.0
        )
        assert answer.status == 200
        answer.release()  # nothing read
        assert pool.idle_connections == 0
        assert pool.open_connections == 0


# -- bounds: connections and buffered bytes ----------------------------------------------------


async def test_the_pool_never_opens_more_than_max_connections(pool: UpstreamPool) -> None:
    """With ``max_connections`` = 4 and 9 calls at once, the instance never sees more than
    4 connections open; the others wait for one and all 9 are answered. A caller waiting
    for a connection gives up at its own deadline."""
    go = asyncio.Event()

    async def held(exchange: Exchange) -> None:
        await go.wait()
        exchange.writer.write(json_answer())

    async def call() -> bytes:
        answer = await post(
            pool, server.url + "/api/generate", b"{}", resource="r0", connect_timeout=1.0
        )
        body = await _read_all(answer)
        answer.release()
        return body

    async with RawServer(held) as server:
        calls = [asyncio.ensure_future(call()) for _ in range(9)]
        await server.wait_for_exchanges(4)
        await asyncio.sleep(0.2)
        assert len(server.exchanges) == 4
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await call()
        go.set()
        bodies = await asyncio.gather(*calls)
        assert all(b'"ok"' in body for body in bodies)
        assert server.peak <= 4
        assert pool.open_connections <= 4


async def test_a_fast_instance_cannot_fill_memory_while_the_caller_reads_slowly(
    pool: UpstreamPool,
) -> None:
    """An instance pushing 32 MiB at a caller that does not read: at most ``HIGH_WATER``
    plus one socket read is buffered (the socket stops being read), the instance cannot
    send it all, and reading later still gets every byte."""
    size = 32 * 1024 * 1024
    sent = 0

    async def flood(exchange: Exchange) -> None:
        nonlocal sent
        exchange.writer.write(head(200, content_length=size))
        block = b"x" * (1024 * 1024)
        for _ in range(size // len(block)):
            exchange.writer.write(block)
            await exchange.writer.drain()
            sent += len(block)

    async with RawServer(flood) as server:
        answer = await post(
            pool, server.url + "/api/generate", b"{}", resource="r0", connect_timeout=1.0
        )
        await asyncio.sleep(0.5)
        buffered = answer.content.buffered  # type: ignore[attr-defined]
        assert buffered <= HIGH_WATER + 256 * 1024
        assert sent < size
        total = 0
        while not answer.content.at_eof():
            total += len(await answer.content.readany())
        assert total == size
        answer.release()


# -- errors ------------------------------------------------------------------------------------


def _assert_no_address(error: BaseException, url: str) -> None:
    port = url.rsplit(":", 1)[1]
    text = f"{error} {getattr(error, 'body', '')}"
    assert "127.0.0.1" not in text, text
    assert "::1" not in text, text
    assert port not in text, text


async def test_refused_connection_is_a_connection_failure_without_the_address(
    pool: UpstreamPool,
) -> None:
    """Nobody listening: a CONNECTION failure whose text names neither address nor port."""
    url = unused_endpoint()
    with pytest.raises(OllamaError) as info:
        await post(pool, url + "/api/generate", b"{}", resource="r0", connect_timeout=1.0)
    assert info.value.failure is FailureClass.CONNECTION
    assert "ECONNREFUSED" in str(info.value)
    _assert_no_address(info.value, url)
    assert pool.open_connections == 0


async def test_connect_timeout_is_a_connection_failure_without_the_address() -> None:
    """A listener whose accept queue is full never completes the handshake: the call fails
    within ``connect_timeout`` as CONNECTION, the text naming the setting, not the address."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = await asyncio.open_connection("127.0.0.1", port)  # fills the accept queue
    upstream = UpstreamPool(max_connections=2, connect_timeout=0.3, fallback=_no_session)
    url = f"http://127.0.0.1:{port}"
    try:
        with pytest.raises(OllamaError) as info:
            async with asyncio.timeout(10.0):
                await post(upstream, url + "/api/x", b"{}", resource="r0", connect_timeout=0.3)
        assert info.value.failure is FailureClass.CONNECTION
        assert "connect_timeout" in str(info.value)
        _assert_no_address(info.value, url)
        assert upstream.open_connections == 0
    finally:
        filler[1].close()
        listener.close()
        await upstream.close()


async def test_stopping_the_hub_ends_its_connections(runtime_factory: RuntimeFactory) -> None:
    """``stop`` closes every pooled connection: the instance sees them all go."""
    async with RawServer() as server:
        runtime = await runtime_factory(raw=_config(server.url))
        await runtime.execute("llm/generate", GEN)
        pool = _pool(runtime)
        assert pool.idle_connections == 1
        await runtime.stop()
        assert pool.open_connections == 0
        for _ in range(200):
            if server.closed_by_client >= 1:
                break
            await asyncio.sleep(0.01)
        assert server.open == 0


async def test_credentials_in_the_url_go_through_the_session_as_basic_auth(
    pool: UpstreamPool,
) -> None:
    """An instance behind a proxy with ``http://user:secret@host`` still gets its Basic
    credentials (the session sends them; the lean path would drop them)."""
    async with RawServer() as server:
        url = server.url.replace("http://", "http://user:secret@") + "/api/generate"
        answer = await post(pool, url, b"{}", resource="r0", connect_timeout=1.0)
        assert answer.status == 200
        await _read_all(answer)
        answer.release()
        (exchange,) = server.exchanges
        assert exchange.headers["authorization"] == "Basic dXNlcjpzZWNyZXQ="


async def test_https_goes_through_the_session_and_its_errors_name_no_address(
    pool: UpstreamPool,
) -> None:
    """An ``https://`` instance is called through the aiohttp session (TLS is its job): a
    refused one is a CONNECTION failure named by aiohttp's error type, without address."""
    url = unused_endpoint("https")
    with pytest.raises(OllamaError) as info:
        await post(pool, url + "/api/generate", b"{}", resource="r0", connect_timeout=1.0)
    assert info.value.failure is FailureClass.CONNECTION
    assert "ClientConnectorError" in str(info.value)
    _assert_no_address(info.value, url)
    assert pool.open_connections == 0  # nothing of it in the lean pool


async def test_an_invalid_url_s_error_names_neither_it_nor_its_credentials(
    runtime_factory: RuntimeFactory,
) -> None:
    """A configured URL the config check lets through but aiohttp cannot use (an IPv6
    literal with a stray character) goes to the session, whose ``InvalidURL`` text is the
    whole URL, credentials included: the gateway client's error names neither the address
    nor the password (nothing is sent anywhere: aiohttp refuses it before connecting)."""
    url = "http://user:s3cret@[::1]x:1"
    runtime = await runtime_factory(raw=_config(url))
    with pytest.raises(ResourceError) as info:
        await runtime.execute("llm/generate", GEN)
    text = f"{info.value} {getattr(info.value, 'body', '')}"
    assert "s3cret" not in text, text
    assert "::1" not in text, text
    assert "InvalidUrlClientError" in text


def test_transport_errors_map_to_the_failure_table() -> None:
    """The transport's own errors land in ``client.transport_error``'s table (and the hub's
    ``classify``) like aiohttp's:
    a connect timeout and a refusal are CONNECTION, a malformed answer PROTOCOL, a close
    mid-answer CONNECTION."""
    cases = {
        UpstreamConnectTimeout(0.5): FailureClass.CONNECTION,
        UpstreamConnectError("cannot connect (ECONNREFUSED)"): FailureClass.CONNECTION,
        UpstreamProtocolError("bad"): FailureClass.PROTOCOL,
        UpstreamClosed("closed"): FailureClass.CONNECTION,
    }
    hub = OllamaHub("llm")
    for exc, failure in cases.items():
        assert isinstance(exc, OSError)
        assert transport_error(exc, "r0", 0.5).failure is failure
        assert hub.classify(exc) is failure  # the same where one escaped unconverted
