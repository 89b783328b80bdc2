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
bad JSON, stream ended early, an
answer past a limit (``BadAnswer``)
503 "server busy", 429                 OVERLOADED           fail over, no breaker/ejection
404 model not found                    MISROUTED            mark the model absent, fail over
other 4xx                              CLIENT_ERROR         back to the caller unchanged
499                                    CANCELLED            nobody's fault
=====================================  ===================  ==================================

Everything read from an instance is bounded (the core's ``read_capped``, ``BoundedLines``):
``read_object`` for
whole answers, ``lines`` for streams, each with the hub's limits (``max_answer_bytes``,
``max_probe_bytes``, ``max_line_bytes``, ``max_json_depth``, ``stall_timeout``). A broken bound
is a ``BadAnswer`` of that instance, and the instance remembers it for the status
(``limit_hit``).
"""

from __future__ import annotations

import errno
import time
from typing import Any

import aiohttp

from gleitzeit_core import (
    BoundedLines,
    FailureClass,
    LimitExceeded,
    Resource,
    loads_bounded,
    read_capped,
)
from gleitzeit_ollama.errors import BadAnswer, ModelNotFound, OllamaError
from gleitzeit_ollama.settings import OllamaSettings
from gleitzeit_ollama.transport import (
    Answer,
    UpstreamConnectTimeout,
    UpstreamPool,
    UpstreamProtocolError,
)

__all__ = [
    "JSON",
    "LIMIT_HIT",
    "error_from_response",
    "failure_for_status",
    "lines",
    "make_session",
    "parse_object",
    "post",
    "read_object",
    "refused",
    "transport_error",
    "transport_text",
]

JSON = dict[str, Any]
_DEFAULTS = OllamaSettings()
LIMIT_HIT = "limit_hit"  # resource attribute: the last bound an answer of it broke
# What Ollama answers with; a proxy's HTML error page or a file server's octet-stream is not it.
_JSON_TYPES = ("application/json", "application/x-ndjson", "")
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_MAX_ERROR_BODY = 64 * 1024  # error bodies are one short JSON object; never buffer more


def make_session(settings: OllamaSettings) -> aiohttp.ClientSession:
    """The hub's aiohttp session (probes, discovery, model routes, ``https://`` calls; the
    calls to ``http://`` instances go through ``transport.UpstreamPool``): pooled keep-alive
    connections, a connect timeout on each.

    The total per call comes from the request deadline (the hub wraps each attempt in it), so
    the session itself sets none; ``sock_connect`` bounds opening a connection.
    """
    connector = aiohttp.TCPConnector(
        limit=settings.max_connections, limit_per_host=0, ttl_dns_cache=300
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout)
    # no cookie jar: Ollama sets no cookies, and one an instance (or whatever answers at its
    # address) did set must not follow other requests; it also saves a jar lookup per call
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def transport_error(exc: BaseException, resource: str, connect_timeout: float) -> OllamaError:
    """An aiohttp/OS/transport error while talking to ``resource``, as an ``OllamaError``."""
    if isinstance(exc, (aiohttp.ConnectionTimeoutError, UpstreamConnectTimeout)):
        return OllamaError(
            f"no connection within {connect_timeout:g} s (connect_timeout)",
            failure=FailureClass.CONNECTION,
            resource=resource,
        )
    if isinstance(exc, TimeoutError):
        return OllamaError("no answer in time", failure=FailureClass.TIMEOUT, resource=resource)
    failure = (
        FailureClass.PROTOCOL
        if isinstance(exc, (aiohttp.ClientResponseError, UpstreamProtocolError))
        else FailureClass.CONNECTION
    )
    return OllamaError(transport_text(exc), failure=failure, resource=resource)


def transport_text(exc: BaseException) -> str:
    """What went wrong talking to an instance, without its address: aiohttp's own text names
    the host and port (or ends with the URL), and these messages reach gateway clients, who
    know instances by id only (``transport``'s errors never name it)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        code = errno.errorcode.get(exc.errno or 0) or type(exc.os_error).__name__
        return f"{type(exc).__name__}: cannot connect ({code})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: {exc.status}, {exc.message}"
    if isinstance(exc, aiohttp.InvalidURL):  # its text is the URL, credentials and all
        return f"{type(exc).__name__}: the instance's URL is not valid (see its configuration)"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def post(
    pool: UpstreamPool,
    url: str,
    payload: bytes,
    *,
    resource: str,
    connect_timeout: float,
) -> Answer:
    """POST a JSON body; the caller owns (and must close or release) the answer.

    A redirect is not followed: it would send the client's request (its prompt) wherever the
    instance points, another host or an internal service; a 3xx is the instance's failure."""
    try:
        return await pool.post(url, payload, _HEADERS)
    except (aiohttp.ClientError, OSError) as exc:
        raise transport_error(exc, resource, connect_timeout) from exc


def failure_for_status(status: int) -> FailureClass:
    """Whose fault an Ollama answer with ``status`` is (499: the client went away)."""
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
    response: Answer, *, resource: str, path: str, model: str | None
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
        decoded = loads_bounded(raw, max_depth=8) if raw else None
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


def refused(resource: Resource | str | None, exc: LimitExceeded) -> BadAnswer:
    """A broken bound as the instance's failure; remembered on it for the status."""
    if isinstance(resource, Resource):
        resource.attributes[LIMIT_HIT] = {"limit": exc.limit, "what": str(exc), "at": time.time()}
        resource = resource.id
    return BadAnswer(str(exc), resource=resource, limit=exc.limit)


def _rid(resource: Resource | str | None) -> str | None:
    return resource.id if isinstance(resource, Resource) else resource


def parse_object(
    raw: bytes | bytearray,
    *,
    resource: Resource | str | None,
    what: str,
    settings: OllamaSettings = _DEFAULTS,
    max_values: int | None = None,
) -> JSON:
    """One JSON object of bounded depth and size (``max_json_depth``; ``max_values``, by
    default ``max_json_values``), or a ``BadAnswer`` naming what was expected."""
    values = settings.max_json_values if max_values is None else max_values
    try:
        value = loads_bounded(raw, max_depth=settings.max_json_depth, max_values=values)
    except LimitExceeded as exc:
        shown_limit = LimitExceeded(exc.limit, exc.bound, f"{what}: {exc.what}")
        raise refused(resource, shown_limit) from None
    except ValueError:
        shown = bytes(raw[:200]).decode("utf-8", "replace")
        raise BadAnswer(f"{what} is not JSON: {shown!r}", resource=_rid(resource)) from None
    if not isinstance(value, dict):
        raise BadAnswer(f"{what} is not a JSON object", resource=_rid(resource))
    return value


def _check_type(response: Answer, resource: Resource | str | None, what: str) -> None:
    kind = response.content_type if "Content-Type" in response.headers else ""
    if kind not in _JSON_TYPES:
        raise BadAnswer(f"{what} came as {kind!r}, not JSON", resource=_rid(resource))


async def read_object(
    response: Answer,
    settings: OllamaSettings,
    *,
    resource: Resource | str | None,
    what: str,
    limit: int | None = None,
    limit_name: str = "max_answer_bytes",
    max_values: int | None = None,
) -> JSON:
    """A whole answer as a JSON object: its type checked, at most ``limit`` bytes (default
    ``max_answer_bytes``), finished within ``stall_timeout`` of its first byte, of bounded
    depth. Anything else is a ``BadAnswer`` of ``resource``."""
    _check_type(response, resource, what)
    cap = settings.max_answer_bytes if limit is None else limit
    declared = response.content_length
    try:
        if declared is not None and declared > cap:
            raise LimitExceeded(limit_name, cap, f"{what} is {declared} bytes, more than {cap}")
        raw = await read_capped(
            response.content,
            limit=cap,
            what=what,
            limit_name=limit_name,
            finish_within=settings.stall_timeout,
        )
    except LimitExceeded as exc:
        raise refused(resource, exc) from None
    return parse_object(raw, resource=resource, what=what, settings=settings, max_values=max_values)


def lines(
    response: Answer,
    settings: OllamaSettings,
    *,
    resource: Resource | str | None,
    what: str,
) -> BoundedLines:
    """The NDJSON lines of a streamed answer, each at most ``max_line_bytes``."""
    _check_type(response, resource, what)
    return BoundedLines(
        response.content, max_line=settings.max_line_bytes, limit_name="max_line_bytes", what=what
    )
