"""Hostile answers: what a broken proxy, a wrong port or a compromised instance sends back.

Switched on with ``POST /_sim/faults {"hostile": MODE}`` for the targeted paths (the inference
paths unless ``paths`` says otherwise; ``huge_tags`` always answers ``/api/tags``). Every mode
answers 200, so only the reader's own bounds can tell the answer is bad:

==================== =========================================================================
``endless_body``     a body that never ends: an endless JSON document, or for a streamed
                     request endless valid chunks that never say ``done``
``endless_line``     a stream line (or a body) that never ends, sent as fast as it is read
``huge_tags``        ``/api/tags`` listing 40 000 models (a valid answer of about 10 MiB)
``garbage``          256 KiB of random bytes (newlines included) under a JSON content type
``slow_drip``        a valid beginning, then one byte every ``drip_ms``, never finished
``wrong_content_type`` a proxy's HTML error page, status 200, ``text/html``
``invalid_json``     a truncated JSON object and the end of the body
``deep_json``        a valid JSON object nested 100 000 levels deep
``many_values``      a valid answer carrying two million empty objects (6 MiB of text, over
                     100 MiB once decoded)
==================== =========================================================================

With ``hostile_after`` = N, a streamed answer first sends N valid chunks (so the trouble
starts after the client has part of the answer).

Writes wait for the reader (backpressure), so an endless answer costs the simulator nothing
while the reader does not read, and ends when the reader goes away.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random

from aiohttp import web

from gleitzeit_ollama.sim.wire import JSON_TYPE, NDJSON_TYPE, rfc3339

__all__ = ["HOSTILE_MODES", "hostile_answer"]

HOSTILE_MODES = (
    "endless_body",
    "endless_line",
    "huge_tags",
    "garbage",
    "slow_drip",
    "wrong_content_type",
    "invalid_json",
    "deep_json",
    "many_values",
)
_BLOCK = 64 * 1024
_HUGE_TAGS_MODELS = 40_000
_DEEP = 100_000
_PROXY_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    b"</h1></center><hr><center>nginx</center></body></html>\n"
)


@functools.cache
def _huge_tags() -> bytes:
    entry = {
        "size": 2019393189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
        "modified_at": "2024-09-25T12:00:00Z",
    }
    one = json.dumps({"name": "m0:latest", "model": "m0:latest", **entry}, separators=(",", ":"))
    parts = [one.replace("m0:latest", f"m{i}:latest") for i in range(_HUGE_TAGS_MODELS)]
    return ('{"models":[' + ",".join(parts) + "]}").encode()


def _many_values(path: str) -> bytes:
    head = _prefix(path, False)  # ends inside the text: close it, then the payload
    closing = b'"},' if path == "/api/chat" else b'",'
    return head + b"hi" + closing + b'"x":[' + b",".join([b"{}"] * 2_000_000) + b"]}\n"


def _prefix(path: str, streamed: bool) -> bytes:
    """The start of a plausible answer on ``path``."""
    if path == "/api/tags" or path == "/api/ps":
        return b'{"models":['
    if path == "/api/version":
        return b'{"version":"'
    key = "message" if path == "/api/chat" else "response"
    head = {"model": "llama3.2", "created_at": rfc3339()}
    text = json.dumps(head, separators=(",", ":"))[:-1]
    if key == "message":
        return (text + ',"message":{"role":"assistant","content":"').encode()
    return (text + ',"response":"').encode()


def _chunk(path: str, text: str) -> bytes:
    """One valid, unfinished stream chunk saying ``text``."""
    key = "message" if path == "/api/chat" else "response"
    word: object = {"role": "assistant", "content": text} if key == "message" else text
    return json.dumps({"model": "llama3.2", key: word, "done": False}).encode() + b"\n"


async def hostile_answer(
    request: web.Request,
    mode: str,
    *,
    streamed: bool,
    drip_ms: float,
    seed: int,
    after: int = 0,
) -> web.StreamResponse:
    """Answer ``request`` the ``mode`` way; returns when the body ends or the reader leaves."""
    path = request.path
    kind = NDJSON_TYPE if streamed else JSON_TYPE
    if after:
        response = web.StreamResponse(status=200, headers={"Content-Type": kind})
        try:
            await response.prepare(request)
            for i in range(after):
                await response.write(_chunk(path, f"w{i} "))
            if mode in ("endless_line", "endless_body", "slow_drip"):
                # an over-long line, cut at 64 MiB so the simulator's work is bounded too
                await response.write(b"\n" + _prefix(path, True))
                block = b"a" * _BLOCK
                for _ in range(1024):
                    await response.write(block)
            else:
                await response.write(b"\n" + _tail(path, mode, seed))
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return response
    if mode == "huge_tags":
        return web.Response(body=_huge_tags(), content_type=JSON_TYPE)
    if mode == "wrong_content_type":
        return web.Response(body=_PROXY_PAGE, content_type="text/html")
    if mode == "invalid_json":
        return web.Response(body=_prefix(path, streamed) + b"hel\n", content_type=kind)
    if mode == "deep_json":
        body = b'{"a":' * _DEEP + b"1" + b"}" * _DEEP + b"\n"
        return web.Response(body=body, content_type=kind)
    if mode == "many_values":
        return web.Response(body=_many_values(path), content_type=kind)
    response = web.StreamResponse(status=200, headers={"Content-Type": kind})
    try:
        await response.prepare(request)
        if mode == "garbage":
            noise = random.Random(seed).randbytes(4 * _BLOCK)
            await response.write(noise)
        elif mode == "slow_drip":
            await response.write(_prefix(path, streamed))
            while True:
                await asyncio.sleep(drip_ms / 1000.0)
                await response.write(b"a")
        elif mode == "endless_line":
            await response.write(_prefix(path, streamed))
            block = b"a" * _BLOCK
            while True:
                await response.write(block)
        elif streamed:  # endless_body of a stream: valid chunks, never the last one
            line = _chunk(path, "a" * 8192)  # long chunks: a reader that keeps them fills up
            block = line * max(1, _BLOCK // len(line))
            while True:
                await response.write(block)
        else:  # endless_body: a JSON document that never closes
            await response.write(_prefix(path, streamed))
            filler = b'{"name":"x"},' if path in ("/api/tags", "/api/ps") else b"a"
            block = filler * max(1, _BLOCK // len(filler))
            while True:
                await response.write(block)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the reader went away (RuntimeError: aiohttp's "closing transport")
    return response


def _tail(path: str, mode: str, seed: int) -> bytes:
    """After ``hostile_after`` valid chunks: the hostile rest of a stream."""
    if mode == "garbage":
        return random.Random(seed).randbytes(4 * _BLOCK)
    if mode == "deep_json":
        return b'{"a":' * _DEEP + b"1" + b"}" * _DEEP + b"\n"
    return _prefix(path, True) + b"hel\n"  # invalid_json, wrong_content_type, huge_tags
