"""HTTP to Ollama instances: the hub's session, JSON bodies, status mapping, NDJSON lines.

Every failure becomes an ``OllamaError`` (a ``ResourceError``) whose ``failure`` tells the hub
whose fault it was:

=====================================  ===================  ==================================
what happened                          FailureClass         hub does
=====================================  ===================  ==================================
refused / reset / DNS / connect timeout CONNECTION          count it, fail over
no answer within the deadline, stall   TIMEOUT              count it, fail over (before chunk 1)
5xx (not 503)                          SERVER_ERROR         count it, fail over
``{"error"}`` line in a 200 stream,    PROTOCOL             count it, fail over (before chunk 1)
bad JSON, stream ended early
503 "server busy", 429                 OVERLOADED           fail over, no breaker/ejection
404 model not found                    MISROUTED            mark the model absent, fail over
other 4xx                              CLIENT_ERROR         back to the caller unchanged
499                                    CANCELLED            nobody's fault
=====================================  ===================  ==================================
"""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

import aiohttp

from gleitzeit_core import FailureClass
from gleitzeit_ollama.errors import ModelNotFound, OllamaError
from gleitzeit_ollama.settings import OllamaSettings

__all__ = [
    "JSON",
    "NdjsonReader",
    "error_from_response",
    "failure_for_status",
    "make_session",
    "parse_object",
    "post",
    "transport_error",
]

JSON = dict[str, Any]
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_MAX_ERROR_BODY = 64 * 1024  # error bodies are one short JSON object; never buffer more


def make_session(settings: OllamaSettings) -> aiohttp.ClientSession:
    """The hub's one session: pooled keep-alive connections, a connect timeout on each.

    The total per call comes from the request deadline (the hub wraps each attempt in it), so
    the session itself sets none; ``sock_connect`` bounds opening a connection.
    """
    connector = aiohttp.TCPConnector(
        limit=settings.max_connections, limit_per_host=0, ttl_dns_cache=300
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, raise_for_status=False)


def transport_error(exc: BaseException, resource: str, connect_timeout: float) -> OllamaError:
    """An aiohttp/OS error while talking to ``resource``, as an ``OllamaError``."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return OllamaError(
            f"no connection within {connect_timeout:g} s (connect_timeout)",
            failure=FailureClass.CONNECTION,
            resource=resource,
        )
    if isinstance(exc, TimeoutError):
        return OllamaError("no answer in time", failure=FailureClass.TIMEOUT, resource=resource)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ContentTypeError):
        return OllamaError(text, failure=FailureClass.PROTOCOL, resource=resource)
    return OllamaError(
        f"{type(exc).__name__}: {text}", failure=FailureClass.CONNECTION, resource=resource
    )


async def post(
    session: aiohttp.ClientSession,
    url: str,
    payload: bytes,
    *,
    resource: str,
    connect_timeout: float,
) -> aiohttp.ClientResponse:
    """POST a JSON body; the caller owns (and must close) the response."""
    try:
        return await session.post(url, data=payload, headers=_HEADERS)
    except (aiohttp.ClientError, OSError) as exc:
        raise transport_error(exc, resource, connect_timeout) from exc


def failure_for_status(status: int) -> FailureClass:
    if status in (429, 503):
        return FailureClass.OVERLOADED
    if status == 404:
        return FailureClass.MISROUTED
    if status == 499:
        return FailureClass.CANCELLED
    if status >= 500:
        return FailureClass.SERVER_ERROR
    if status >= 400:
        return FailureClass.CLIENT_ERROR
    return FailureClass.PROTOCOL  # 1xx/2xx-other/3xx: not an answer we can use


async def error_from_response(
    response: aiohttp.ClientResponse, *, resource: str, path: str, model: str | None
) -> OllamaError:
    """Read a non-200 answer and describe it; ``body`` is Ollama's answer unchanged (the
    ``{"error": ...}`` object, or the text when it was not JSON)."""
    status = response.status
    try:
        raw = await response.content.read(_MAX_ERROR_BODY)
    except (aiohttp.ClientError, OSError):
        raw = b""
    body: Any = raw.decode("utf-8", "replace").strip()
    message: Any = body
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        body = decoded  # Ollama's answer as it came: {"error": "..."}
        message = decoded.get("error", body)
    failure = failure_for_status(status)
    lowered = str(message).lower()
    if status == 404 and model is not None and "not found" in lowered and "model" in lowered:
        return ModelNotFound(model, resource=resource, body=body)
    text = f"HTTP {status} from {path}" + (f": {message}" if message else "")
    return OllamaError(text, failure=failure, resource=resource, status=status, body=body)


def parse_object(raw: bytes | str, *, resource: str, what: str) -> JSON:
    """One JSON object, or a PROTOCOL error naming what was expected."""
    try:
        value = json.loads(raw)
    except ValueError:
        shown = raw[:200] if isinstance(raw, str) else raw[:200].decode("utf-8", "replace")
        raise OllamaError(
            f"{what} is not JSON: {shown!r}", failure=FailureClass.PROTOCOL, resource=resource
        ) from None
    if not isinstance(value, dict):
        raise OllamaError(
            f"{what} is not a JSON object", failure=FailureClass.PROTOCOL, resource=resource
        )
    return value


class NdjsonReader:
    """Splits a response body into NDJSON lines of any length.

    Reads whatever arrived (``readany``) and splits it, so a long final line (``context``
    arrays) needs no line-length limit and lines already buffered cost no wait.
    """

    __slots__ = ("_buffer", "_content", "_lines")

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content
        self._buffer = b""
        self._lines: collections.deque[bytes] = collections.deque()

    async def line(self, timeout: float | None) -> bytes | None:
        """The next non-empty line; ``None`` at the end of the body. ``TimeoutError`` when no
        byte arrives within ``timeout`` seconds."""
        lines = self._lines
        while not lines:
            if timeout is None:
                chunk = await self._content.readany()
            else:
                async with asyncio.timeout(timeout):
                    chunk = await self._content.readany()
            if not chunk:
                rest, self._buffer = self._buffer.strip(), b""
                return rest or None
            parts = (self._buffer + chunk).split(b"\n")
            self._buffer = parts.pop()
            lines.extend(part for part in parts if part.strip())
        return lines.popleft()
