"""Request/response plumbing shared by all routes: JSON bodies, errors, durations, timestamps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import socket
import struct
import time
from datetime import UTC, datetime
from typing import Any, NoReturn

from aiohttp import web

JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"

# Exact Ollama texts: hubs and clients match on them.
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
MODEL_REQUIRED = "model is required"

JsonObj = dict[str, Any]


class SimHTTPError(Exception):
    """An error the middleware turns into an Ollama-style ``{"error": ...}`` reply."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(model: str) -> SimHTTPError:
    return SimHTTPError(404, f'model "{model}" not found, try pulling it first')


def json_response(obj: Any, status: int = 200) -> web.Response:
    # Compact separators like Go's encoding/json, one object per body.
    body = json.dumps(obj, separators=(",", ":"))
    return web.Response(text=body, status=status, content_type=JSON_TYPE)


def error_response(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)


def ndjson_line(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


async def read_json(request: web.Request) -> JsonObj:
    """Parse the request body as a JSON object or raise a 400 like Ollama does."""
    raw = await request.read()
    if not raw.strip():
        raise SimHTTPError(400, "missing request body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SimHTTPError(400, f"invalid JSON in request body: {exc}") from None
    except RecursionError:
        raise SimHTTPError(400, "request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise SimHTTPError(400, "request body must be a JSON object")
    return body


def require_model(body: JsonObj, *, legacy_name: bool = False) -> str:
    """The request's model field (``name`` too for endpoints that still accept it)."""
    value = body.get("model")
    if not value and legacy_name:
        value = body.get("name")
    if value is None or value == "":
        raise SimHTTPError(400, MODEL_REQUIRED)
    if not isinstance(value, str):
        raise SimHTTPError(400, "model must be a string")
    return value


def want_stream(body: JsonObj) -> bool:
    # Ollama streams unless the client says "stream": false explicitly.
    return body.get("stream") is not False


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """Parse a Go ``time.ParseDuration`` string ("5m", "1h30m", "-1s", "0") into seconds."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    body = s.lstrip("+-")
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            if re.fullmatch(r"[\d.]+", body[pos:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return sign * total


def parse_keep_alive(value: Any) -> float | None:
    """Ollama's ``keep_alive``: None = server default, <0 = forever (inf), else seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise SimHTTPError(400, "Unsupported type: 'bool'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError as exc:
            raise SimHTTPError(400, str(exc)) from None
    else:
        raise SimHTTPError(400, f"Unsupported type: '{type(value).__name__}'")
    return math.inf if seconds < 0 else seconds


def rfc3339(ts: float | None = None) -> str:
    """Wall-clock time as RFC3339 with microseconds and a Z suffix (parses everywhere)."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reset_transport(request: web.Request) -> None:
    """Drop the TCP connection without a proper HTTP ending (RST)."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0 turns close() into an RST so the client sees a reset, not an EOF.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


def abort_connection(request: web.Request) -> NoReturn:
    """Reset the connection, then unwind the handler."""
    reset_transport(request)
    # Same unwinding as a client disconnect: handlers release their slots in finally blocks.
    raise asyncio.CancelledError
