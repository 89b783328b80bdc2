"""A raw HTTP/1.1 server on loopback for hostile-upstream tests: the test writes the bytes.

Each request is read (head and ``Content-Length`` body) and handed to the test's ``answer``
coroutine with the connection's writer, which writes whatever bytes the test wants (a valid
answer, a broken one, nothing); ``answer`` returning False closes the connection. ``GET``
requests (the hub's own model refresh over its aiohttp session) get small Ollama-like JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

MODEL = "llama3.2"
GENERATED = {"model": MODEL, "response": "ok", "done": True}


@attrs.define
class Exchange:
    """One request as the server read it, and where to write its answer."""

    connection: int  # which connection carried it (1, 2, ... in accept order)
    method: str
    target: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    writer: asyncio.StreamWriter


Answer = Callable[[Exchange], Awaitable[bool | None]]


def head(status: int = 200, **headers: Any) -> bytes:
    """A status line and headers (``content_length=5`` -> ``Content-Length: 5``)."""
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{k.replace('_', '-').title()}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_answer(value: Any = None, status: int = 200) -> bytes:
    body = json.dumps(GENERATED if value is None else value).encode()
    return head(status, content_type="application/json", content_length=len(body)) + body


def chunked(*pieces: bytes) -> bytes:
    """``pieces`` in chunked framing, with the terminating zero chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def answer_json(exchange: Exchange) -> None:
    exchange.writer.write(json_answer())


class RawServer:
    """``async with RawServer(answer) as server``: ``server.url``, ``server.exchanges`` (every
    POST), ``server.connections`` (accepted so far), ``server.open`` (open now), ``peak``."""

    def __init__(self, answer: Answer = answer_json, host: str = "127.0.0.1") -> None:
        self.answer = answer
        self.host = host
        self.exchanges: list[Exchange] = []
        self.connections = 0
        self.open = 0
        self.peak = 0
        self.closed_by_client = 0  # connections the client closed (EOF seen)
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    async def wait_for_exchanges(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` POSTs have arrived (``TimeoutError`` after ``timeout`` s)."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.exchanges) >= count)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        number = self.connections
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_client += 1
                    return
                lines = raw.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                exchange = Exchange(number, method, target, headers, body, writer)
                if method == "GET":
                    writer.write(json_answer(_get_answer(target)))
                    continue
                self.exchanges.append(exchange)
                async with self._arrived:
                    self._arrived.notify_all()
                if await self.answer(exchange) is False:
                    await writer.drain()
                    return
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return  # the client went, or the test ended: the server is done with it
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)


def _get_answer(target: str) -> dict[str, Any]:
    if target.endswith("/api/version"):
        return {"version": "0.9.0"}
    if target.endswith("/api/tags"):
        return {"models": [{"name": f"{MODEL}:latest", "model": f"{MODEL}:latest"}]}
    return {"models": []}
