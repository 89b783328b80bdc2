"""Request bodies of the Ollama API routes, and errors in Ollama's shape.

The gateway forwards bodies as they came (fields it does not know included), but first checks
the type of every field Ollama itself declares, the way Ollama's JSON decoding would refuse
them: a wrong type is a 400 that names the field (``messages[0].content: expected a string,
got a number``) and never reaches an instance, so a malformed request can neither be counted
against a healthy instance nor fail over across the pool. ``null`` means "not given", as in Go.

Errors answer ``{"error": "..."}`` with Ollama's status codes; see ``error_response``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from gleitzeit_core import (
    FailureClass,
    GleitzeitError,
    InvalidParams,
    NoResourceAvailable,
    PermissionDenied,
    json_error,
    status_for,
)
from gleitzeit_ollama.errors import ModelNotFound, OllamaError
from gleitzeit_ollama.models import normalize_model, parse_keep_alive

__all__ = [
    "CHAT",
    "EMBED",
    "EMBEDDINGS",
    "GENERATE",
    "PULL",
    "SHOW",
    "ApiError",
    "check_body",
    "error_parts",
    "error_response",
    "keep_alive_of",
    "kind_of",
    "model_of",
    "not_found",
]

MODEL_REQUIRED = "model is required"  # Ollama's exact words


class ApiError(Exception):
    """A request the gateway answers itself with ``{"error": message}`` and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(model: str) -> ApiError:
    """Ollama's 404 for a model no instance has."""
    return ApiError(404, f'model "{model}" not found, try pulling it first')


# -- field types ---------------------------------------------------------------------------------
Check = Callable[[Any, str], str | None]  # (value, field path) -> problem or None


def kind_of(value: Any) -> str:
    """What a JSON value is, for messages: ``a string``, ``an array``, ``a number``, ..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _type(expected: str, test: Callable[[Any], bool]) -> Check:
    def check(value: Any, path: str) -> str | None:
        return None if test(value) else f"{path}: expected {expected}, got {kind_of(value)}"

    return check


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


STRING = _type("a string", lambda v: isinstance(v, str))
BOOL = _type("true or false", lambda v: isinstance(v, bool))
INT = _type("an integer", _is_int)
OBJECT = _type("an object", lambda v: isinstance(v, dict))
STRINGS = _type(
    "an array of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)
)
INTS = _type("an array of integers", lambda v: isinstance(v, list) and all(map(_is_int, v)))
OBJECTS = _type(
    "an array of objects", lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v)
)
NUMBER = _type("a number", _is_number)
FORMAT = _type('"json" or a JSON schema object', lambda v: isinstance(v, str | dict))
THINK = _type('true, false or a level such as "high"', lambda v: isinstance(v, bool | str))
INPUT = _type(
    "a string or an array of strings",
    lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
)


def _keep_alive(value: Any, path: str) -> str | None:
    if not isinstance(value, str) and not _is_number(value):
        expected = 'a duration such as "5m" or a number of seconds'
        return f"{path}: expected {expected}, got {kind_of(value)}"
    try:
        parse_keep_alive(value)
    except (TypeError, ValueError, OverflowError) as exc:
        return f"{path}: {exc}"
    return None


_MESSAGE: dict[str, Check] = {
    "role": STRING,
    "content": STRING,
    "thinking": STRING,
    "images": STRINGS,
    "tool_calls": OBJECTS,
    "tool_name": STRING,
}


def _messages(value: Any, path: str) -> str | None:
    if not isinstance(value, list):
        return f"{path}: expected an array of messages, got {kind_of(value)}"
    for index, message in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(message, dict):
            return f"{where}: expected a message object, got {kind_of(message)}"
        problem = _fields(message, _MESSAGE, f"{where}.")
        if problem is not None:
            return problem
    return None


def _fields(body: Mapping[str, Any], spec: Mapping[str, Check], prefix: str = "") -> str | None:
    for name, check in spec.items():
        value = body.get(name)
        if value is not None:
            problem = check(value, prefix + name)
            if problem is not None:
                return problem
    return None


_CALL: dict[str, Check] = {
    "model": STRING,
    "options": OBJECT,
    "keep_alive": _keep_alive,
    "stream": BOOL,
}
GENERATE: dict[str, Check] = _CALL | {
    "prompt": STRING,
    "suffix": STRING,
    "system": STRING,
    "template": STRING,
    "context": INTS,
    "raw": BOOL,
    "format": FORMAT,
    "images": STRINGS,
    "think": THINK,
    "logprobs": BOOL,
    "top_logprobs": INT,
    "width": INT,
    "height": INT,
    "steps": INT,
}
CHAT: dict[str, Check] = _CALL | {
    "messages": _messages,
    "tools": OBJECTS,
    "format": FORMAT,
    "think": THINK,
    "logprobs": BOOL,
    "top_logprobs": INT,
}
EMBED: dict[str, Check] = _CALL | {"input": INPUT, "truncate": BOOL, "dimensions": INT}
EMBEDDINGS: dict[str, Check] = _CALL | {"prompt": STRING}
SHOW: dict[str, Check] = {
    "model": STRING,
    "name": STRING,
    "verbose": BOOL,
    "system": STRING,
    "template": STRING,
    "options": OBJECT,
}
PULL: dict[str, Check] = {
    "model": STRING,
    "name": STRING,
    "insecure": BOOL,
    "stream": BOOL,
    "username": STRING,
    "password": STRING,
    "instance": STRING,  # gleitzeit's own: which instance to pull onto
}


def check_body(body: Mapping[str, Any], spec: Mapping[str, Check]) -> None:
    """A 400 naming the first field whose type Ollama would refuse."""
    problem = _fields(body, spec)
    if problem is not None:
        raise ApiError(400, problem)


def model_of(body: Mapping[str, Any], *, legacy_name: bool = False) -> tuple[str, str]:
    """(the model as the client wrote it, its normalised name); 400 when there is none."""
    value = body.get("model")
    if not value and legacy_name:
        value = body.get("name")
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, MODEL_REQUIRED)
    return value, normalize_model(value)


def keep_alive_of(body: Mapping[str, Any]) -> float | None:
    """Seconds of the body's ``keep_alive`` (checked by ``check_body`` already)."""
    try:
        return parse_keep_alive(body.get("keep_alive"))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ApiError(400, f"keep_alive: {exc}") from None


# -- errors --------------------------------------------------------------------------------------
def _upstream_message(exc: OllamaError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    if isinstance(body, str) and body:
        return body
    return str(exc)


def error_message(exc: BaseException) -> str:
    """What to tell the client: Ollama's own words when an instance said something."""
    if isinstance(exc, OllamaError):
        return _upstream_message(exc)
    return str(exc) or type(exc).__name__


def error_status(exc: BaseException) -> int:
    """The status of a failed call, as Ollama (or a gateway in front of it) would answer.

    * an instance's own HTTP error (400 bad option, 404 model not found, 429, 500, 503 busy):
      that status, with Ollama's ``{"error"}`` text, after failover found no better answer;
    * an ``{"error"}`` line as the first line of a 200 stream: 500, as Ollama answers the
      same failure without streaming;
    * no instance could be reached (refused, reset) or none may take the call (all draining,
      ejected, saturated past ``queue_timeout``): 503;
    * no answer within the deadline, or a stalled stream: 504; a broken answer: 502;
    * a gleitzeit error of the request itself (``InvalidParams``): 400.
    """
    if isinstance(exc, ModelNotFound):
        return 404
    if isinstance(exc, OllamaError):
        status = exc.status
        if status is not None and 400 <= status < 600:
            return status
        if status is not None:  # 200 with an {"error"} line first
            return 500
        if exc.failure is FailureClass.CONNECTION:
            return 503
        if exc.failure is FailureClass.TIMEOUT:
            return 504
        return 502
    if isinstance(exc, NoResourceAvailable):
        return 503
    if isinstance(exc, InvalidParams):
        return 400
    if isinstance(exc, TimeoutError):
        return 504
    if isinstance(exc, GleitzeitError):
        return status_for(exc)
    return 500


def error_parts(exc: BaseException) -> tuple[int, str]:
    """(status, message) of a failed request, whichever shape the answer then takes."""
    if isinstance(exc, ApiError):
        return exc.status, exc.message
    if isinstance(exc, ModelNotFound):
        body = exc.body
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return 404, str(body["error"])
        return 404, f'model "{exc.model}" not found, try pulling it first'
    return error_status(exc), error_message(exc)


def error_response(exc: BaseException) -> web.Response:
    if isinstance(exc, PermissionDenied):  # name the missing scope, as the core's routes do
        return json_error(403, str(exc), scope=exc.scope, key=exc.caller)
    return json_error(*error_parts(exc))
