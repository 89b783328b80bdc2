"""The OpenAI-compatible API in Ollama's terms: request bodies to ``/api`` bodies, answers and
stream chunks back, errors in OpenAI's shape.

Ollama serves ``/v1`` by translating each request to its own ``/api/chat``, ``/api/generate``
and ``/api/embed`` and each answer back; this module is that translation, written once and
used by both the gateway (``routes_openai``, which then routes the ``/api`` call through the
pool) and the simulator (which answers ``/v1`` the way Ollama does). Pure functions and small
stateful translators, no I/O.

Requests are checked before anything is sent: a field of the wrong type is a 400 naming it
(``messages[1].content: expected a string or an array of content parts, got a number``).
What Ollama does, this does too: ``temperature`` and ``top_p`` default to 1.0 (OpenAI's
defaults, not the model's), ``max_tokens`` (or ``max_completion_tokens``) becomes
``options.num_predict``, ``response_format`` becomes ``format`` (``json_object``: ``"json"``;
``json_schema``: its schema), ``reasoning_effort`` becomes ``think``, images are taken only as
base64 ``data:`` URIs (a URL is refused, never fetched), and a ``tool`` message's
``tool_call_id`` names the tool it answers.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import struct
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gleitzeit_core import json_bytes
from gleitzeit_ollama.routes_body import (
    BOOL,
    INT,
    MODEL_REQUIRED,
    NUMBER,
    OBJECT,
    OBJECTS,
    STRING,
    ApiError,
    Check,
    check_body,
    kind_of,
)

__all__ = [
    "DONE",
    "EVENT_STREAM",
    "ChatTranslator",
    "CompletionTranslator",
    "chat_request",
    "completion_request",
    "embedding_answer",
    "embedding_request",
    "error_body",
    "gateway_error",
    "model_entry",
    "param_of",
    "sse",
]

JSON = dict[str, Any]
DONE = b"data: [DONE]\n\n"
EVENT_STREAM = "text/event-stream"
FINGERPRINT = "fp_ollama"
_IMAGE_PREFIXES = (
    "data:image/jpeg;base64,",
    "data:image/jpg;base64,",
    "data:image/png;base64,",
    "data:image/webp;base64,",
    "data:;base64,",
)
# reasoning efforts as Ollama's /v1 takes them, and the ``think`` each becomes: OpenAI's
# "minimal" is Ollama's lowest level, "xhigh" and "ultra" its highest
_EFFORTS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}
_FRACTION = re.compile(r"\.\d+")
# a field path at the start of a message, after an llm/* method's name when there is one
_PARAM = re.compile(r"(?:llm/\w+: )?([a-z_]+(?:\.[a-z_]+|\[\d+\])*): ")


def sse(data: Any) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return b"data: " + json_bytes(data) + b"\n\n"


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> JSON:
    """OpenAI's error object; ``type`` as Ollama names it for the status."""
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def param_of(message: str) -> str | None:
    """The request field a 400's message names (``messages[1].content: expected ...``), for
    the error's ``param`` as OpenAI fills it; None when it names none."""
    if message == MODEL_REQUIRED:
        return "model"
    if message.endswith("- 'messages'"):  # Ollama's words for an empty list
        return "messages"
    found = _PARAM.match(message)
    return found.group(1) if found else None


def gateway_error(status: int, message: str, extra: Mapping[str, Any]) -> JSON:
    """An error the gateway answers itself on a ``/v1`` path (no key, over a limit, no such
    route) in OpenAI's shape; ``code`` as OpenAI names the two a client acts on, else the
    gateway's scope (``models``, ``admin``, ...)."""
    scope = extra.get("scope")
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    return error_body(status, message, code=code or (scope if isinstance(scope, str) else None))


# -- field checks ----------------------------------------------------------------------------------
def _stop(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return None
    return f"{path}: expected a string or an array of strings, got {kind_of(value)}"


def _string_or_object(value: Any, path: str) -> str | None:
    if isinstance(value, str | dict):
        return None
    return f"{path}: expected a string or an object, got {kind_of(value)}"


_SAMPLING: dict[str, Check] = {
    "model": STRING,
    "stream": BOOL,
    "stream_options": OBJECT,
    "max_tokens": INT,
    "seed": INT,
    "stop": _stop,
    "temperature": NUMBER,
    "top_p": NUMBER,
    "frequency_penalty": NUMBER,
    "presence_penalty": NUMBER,
    "n": INT,
    "user": STRING,
}
_CHAT: dict[str, Check] = _SAMPLING | {
    "max_completion_tokens": INT,
    "response_format": OBJECT,
    "tools": OBJECTS,
    "tool_choice": _string_or_object,
    "reasoning_effort": STRING,
    "reasoning": OBJECT,
}
_COMPLETION: dict[str, Check] = _SAMPLING | {"prompt": STRING, "suffix": STRING}
_EMBEDDING: dict[str, Check] = {
    "model": STRING,
    "encoding_format": STRING,
    "dimensions": INT,
    "user": STRING,
}


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad(MODEL_REQUIRED)
    return model


def _stream_flags(body: Mapping[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage); OpenAI's ``stream`` defaults to false."""
    stream = body.get("stream") is True
    options = body.get("stream_options") or {}
    usage = options.get("include_usage")
    if usage is not None and not isinstance(usage, bool):
        raise _bad(f"stream_options.include_usage: expected true or false, got {kind_of(usage)}")
    return stream, usage is True


def _options(body: Mapping[str, Any], *, max_tokens: Any) -> JSON:
    options: JSON = {}
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    temperature = body.get("temperature")
    options["temperature"] = 1.0 if temperature is None else temperature
    if body.get("seed") is not None:
        options["seed"] = body["seed"]
    for penalty in ("frequency_penalty", "presence_penalty"):
        if body.get(penalty) is not None:
            options[penalty] = body[penalty]
    top_p = body.get("top_p")
    options["top_p"] = 1.0 if top_p is None else top_p
    return options


def _only_one_choice(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise _bad(f"n: only 1 choice is supported, got {n}")


# -- chat ------------------------------------------------------------------------------------------
def _format(value: Any) -> Any:
    if value is None:
        return None
    kind = value.get("type")
    kind = kind.strip().lower() if isinstance(kind, str) else kind
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("response_format.json_schema.schema: expected a JSON schema object")
        return schema
    raise _bad(
        "response_format.type: expected text, json_object or json_schema, "
        f"got {value.get('type')!r}"
    )


def _think(body: Mapping[str, Any]) -> Any:
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if effort is None:
        effort = body.get("reasoning_effort")
    if effort is None or effort == "":
        return None
    if not isinstance(effort, str) or effort not in _EFFORTS:
        raise _bad(f"reasoning_effort: expected one of {', '.join(_EFFORTS)}, got {effort!r}")
    return _EFFORTS[effort]


def _arguments(call: Any, path: str) -> JSON:
    if not isinstance(call, dict):
        raise _bad(f"{path}: expected a tool call object, got {kind_of(call)}")
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _bad(f"{path}.function.name: expected a string")
    raw = function.get("arguments")
    if isinstance(raw, dict):
        arguments = raw
    else:
        try:
            arguments = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
        except ValueError:
            raise _bad(f"{path}.function.arguments: invalid tool call arguments") from None
        if not isinstance(arguments, dict):
            raise _bad(f"{path}.function.arguments: expected a JSON object")
    return {"function": {"name": function["name"], "arguments": arguments}}


def _tool_calls_in(value: Any, path: str) -> list[JSON]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"{path}: expected an array of tool calls, got {kind_of(value)}")
    return [_arguments(call, f"{path}[{i}]") for i, call in enumerate(value)]


def _tool_name(messages: list[Any], call_id: Any) -> str | None:
    """The name of the tool an assistant message called with ``call_id`` (the last wins)."""
    for message in reversed(messages):
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict) and call.get("id") == call_id:
                function = call.get("function")
                name = function.get("name") if isinstance(function, dict) else None
                return name if isinstance(name, str) else None
    return None


def _image(part: Mapping[str, Any], path: str) -> str:
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise _bad(f"{path}.image_url: expected a data: URI")
    for prefix in _IMAGE_PREFIXES:
        if url.startswith(prefix):
            data = url[len(prefix) :]
            try:
                base64.b64decode(data, validate=True)
            except ValueError:
                raise _bad(f"{path}.image_url: the image is not valid base64") from None
            return data
    # a URL would make the server fetch whatever the client names: never
    raise _bad(f"{path}.image_url: expected a base64 data: URI (jpeg, png or webp)")


def _messages(messages: Any) -> list[JSON]:
    if not isinstance(messages, list):
        raise _bad(f"messages: expected an array of messages, got {kind_of(messages)}")
    if not messages:
        raise _bad("[] is too short - 'messages'")
    out: list[JSON] = []
    for index, message in enumerate(messages):
        path = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(f"{path}: expected a message object, got {kind_of(message)}")
        role = message.get("role")
        if not isinstance(role, str):
            raise _bad(f"{path}.role: expected a string, got {kind_of(role)}")
        calls = _tool_calls_in(message.get("tool_calls"), f"{path}.tool_calls")
        reasoning = message.get("reasoning")
        extra: JSON = {}
        if isinstance(reasoning, str) and reasoning:
            extra["thinking"] = reasoning
        if role.lower() == "tool":
            name = message.get("name")
            if not isinstance(name, str) or not name:
                name = _tool_name(messages, message.get("tool_call_id"))
            if name:
                extra["tool_name"] = name
        content = message.get("content")
        if isinstance(content, str) or (content in (None, []) and calls):
            out.append({"role": role, "content": content or ""} | extra)
        elif isinstance(content, list) and content:
            for number, part in enumerate(content):
                where = f"{path}.content[{number}]"
                piece: Mapping[str, Any] = part if isinstance(part, dict) else {}
                kind = piece.get("type")
                if kind == "text" and isinstance(piece.get("text"), str):
                    out.append({"role": role, "content": piece["text"]})
                elif kind == "image_url":
                    out.append({"role": role, "content": "", "images": [_image(piece, where)]})
                else:
                    raise _bad(f"{where}: expected a text or image_url content part")
            out[-1].update(extra)
        elif content == []:
            raise _bad(f"{path}.content: expected at least one content part")
        else:
            raise _bad(
                f"{path}.content: expected a string or an array of content parts, "
                f"got {kind_of(content)}"
            )
        if calls:  # on the last message this one became (Ollama splits content parts)
            out[-1]["tool_calls"] = calls
    return out


def chat_request(body: Mapping[str, Any]) -> tuple[JSON, bool, bool]:
    """A ``/v1/chat/completions`` body as an ``/api/chat`` body, plus (stream, include_usage)."""
    check_body(body, _CHAT)
    model = _model(body)
    _only_one_choice(body)
    stream, usage = _stream_flags(body)
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    out: JSON = {
        "model": model,
        "messages": _messages(body.get("messages")),
        "stream": stream,
        "options": _options(body, max_tokens=max_tokens),
    }
    fmt = _format(body.get("response_format"))
    if fmt is not None:
        out["format"] = fmt
    tools = body.get("tools")
    if tools and body.get("tool_choice") != "none":
        out["tools"] = tools
    think = _think(body)
    if think is not None:
        out["think"] = think
    return out, stream, usage


def _tool_calls_out(calls: Any) -> list[JSON]:
    out: list[JSON] = []
    for position, call in enumerate(calls if isinstance(calls, list) else ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = call.get("id")
        index = function.get("index")
        out.append(
            {
                "id": call_id if isinstance(call_id, str) and call_id else _call_id(),
                "index": index if isinstance(index, int) else position,
                "type": "function",
                "function": {
                    "name": function.get("name") or "",
                    "arguments": json.dumps(function.get("arguments") or {}),
                },
            }
        )
    return out


def _call_id() -> str:
    return "call_" + secrets.token_hex(6)


def _usage(answer: Mapping[str, Any]) -> JSON:
    prompt = answer.get("prompt_eval_count")
    completion = answer.get("eval_count")
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish(answer: Mapping[str, Any], tool_calls: bool) -> str | None:
    reason = answer.get("done_reason")
    if not isinstance(reason, str) or not reason:
        return "tool_calls" if tool_calls else None
    return "tool_calls" if tool_calls else reason


class _Translator:
    """What every answer of one request shares: its id, creation time and model."""

    prefix = ""
    content_type = EVENT_STREAM  # of a streamed answer

    def __init__(self, model: str, include_usage: bool = False) -> None:
        self.id = f"{self.prefix}-{secrets.token_hex(6)}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage

    def _head(self, answer: Mapping[str, Any], kind: str) -> JSON:
        model = answer.get("model")
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": model if isinstance(model, str) else self.model,
            "system_fingerprint": FINGERPRINT,
        }

    def error(self, message: str) -> bytes:
        """The last event of a stream that failed after it started (no ``[DONE]`` follows)."""
        return sse(error_body(500, message))

    def _events(self, chunk: Mapping[str, Any], kind: str, choice: JSON) -> bytes:
        """The event of one chunk; after the final one the usage (if asked for) and ``[DONE]``."""
        head = self._head(chunk, kind)
        out = sse(head | {"choices": [choice]})
        if chunk.get("done") is True:
            if self.include_usage:
                out += sse(head | {"choices": [], "usage": _usage(chunk)})
            out += DONE
        return out


class ChatTranslator(_Translator):
    """``/api/chat`` answers and chunks as ``chat.completion`` and ``chat.completion.chunk``."""

    prefix = "chatcmpl"

    def __init__(self, model: str, include_usage: bool = False) -> None:
        super().__init__(model, include_usage)
        self._called_tools = False  # a streamed chunk carried tool calls

    @staticmethod
    def _message(answer: Mapping[str, Any]) -> tuple[JSON, list[JSON]]:
        message = answer.get("message")
        message = message if isinstance(message, dict) else {}
        content = message.get("content")
        out: JSON = {"role": "assistant", "content": content if isinstance(content, str) else ""}
        thinking = message.get("thinking")
        if isinstance(thinking, str) and thinking:
            out["reasoning"] = thinking
        calls = _tool_calls_out(message.get("tool_calls"))
        if calls:
            out["tool_calls"] = calls
        return out, calls

    def answer(self, answer: Mapping[str, Any]) -> JSON:
        message, calls = self._message(answer)
        if calls:
            for call in calls:
                del call["index"]  # a message's tool calls carry no index, only a delta's
        choice = {"index": 0, "message": message, "finish_reason": _finish(answer, bool(calls))}
        return self._head(answer, "chat.completion") | {
            "choices": [choice],
            "usage": _usage(answer),
        }

    def chunk(self, chunk: Mapping[str, Any]) -> bytes:
        """The event(s) for one ``/api/chat`` chunk; the final one adds usage and ``[DONE]``."""
        delta, calls = self._message(chunk)
        self._called_tools = self._called_tools or bool(calls)
        done = chunk.get("done") is True
        finish = _finish(chunk, self._called_tools) if done else None
        if done and delta == {"role": "assistant", "content": ""}:
            delta = {}  # the finish chunk carries nothing but its reason, as in OpenAI's streams
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return self._events(chunk, "chat.completion.chunk", choice)


# -- completions -----------------------------------------------------------------------------------
def completion_request(body: Mapping[str, Any]) -> tuple[JSON, bool, bool]:
    """A ``/v1/completions`` body as an ``/api/generate`` body, plus (stream, include_usage)."""
    check_body(body, _COMPLETION)
    model = _model(body)
    _only_one_choice(body)
    stream, usage = _stream_flags(body)
    out: JSON = {
        "model": model,
        "prompt": body.get("prompt") or "",
        "stream": stream,
        "options": _options(body, max_tokens=body.get("max_tokens")),
    }
    if body.get("suffix"):
        out["suffix"] = body["suffix"]
    return out, stream, usage


class CompletionTranslator(_Translator):
    """``/api/generate`` answers and chunks as ``text_completion`` objects."""

    prefix = "cmpl"

    def _choice(self, answer: Mapping[str, Any], done: bool) -> JSON:
        text = answer.get("response")
        return {
            "text": text if isinstance(text, str) else "",
            "index": 0,
            "finish_reason": _finish(answer, False) if done else None,
        }

    def answer(self, answer: Mapping[str, Any]) -> JSON:
        return self._head(answer, "text_completion") | {
            "choices": [self._choice(answer, True)],
            "usage": _usage(answer),
        }

    def chunk(self, chunk: Mapping[str, Any]) -> bytes:
        choice = self._choice(chunk, chunk.get("done") is True)
        return self._events(chunk, "text_completion", choice)


# -- embeddings ------------------------------------------------------------------------------------
def embedding_request(body: Mapping[str, Any]) -> tuple[JSON, str]:
    """A ``/v1/embeddings`` body as an ``/api/embed`` body, plus the encoding to answer in."""
    check_body(body, _EMBEDDING)
    model = _model(body)
    encoding = (body.get("encoding_format") or "float").lower()
    if encoding not in ("float", "base64"):
        raise _bad(
            f"Invalid value for 'encoding_format' = {body.get('encoding_format')}. "
            "Supported values: ['float', 'base64']."
        )
    given = body.get("input")
    if given == "":
        given = [""]
    valid = isinstance(given, str) or (
        isinstance(given, list) and given and all(isinstance(x, str) for x in given)
    )
    if not valid:
        raise _bad("input: expected a string or a non-empty array of strings")
    out: JSON = {"model": model, "input": given}
    if body.get("dimensions") is not None:
        out["dimensions"] = body["dimensions"]
    return out, encoding


def _base64_floats(vector: list[Any]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_answer(model: str, answer: Mapping[str, Any], encoding: str) -> JSON:
    """An ``/api/embed`` answer as OpenAI's embedding list."""
    vectors = answer.get("embeddings")
    vectors = vectors if isinstance(vectors, list) else []
    tokens = answer.get("prompt_eval_count")
    tokens = tokens if isinstance(tokens, int) else 0
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "embedding": _base64_floats(v) if encoding == "base64" else v,
                "index": i,
            }
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# -- models ----------------------------------------------------------------------------------------
def _owner(name: str) -> str:
    """The namespace of a model name, as Ollama reports it (``library`` for official ones)."""
    path = name.split(":", 1)[0].split("/")
    return path[-2] if len(path) >= 2 else "library"


def _epoch(text: Any) -> int:
    """Unix seconds of an RFC 3339 time as Ollama writes it (nanoseconds and all); 0 if none."""
    if not isinstance(text, str) or not text:
        return 0
    text = _FRACTION.sub("", text).replace("Z", "+00:00")
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


def model_entry(name: str, modified_at: Any) -> JSON:
    """One model of ``/v1/models``."""
    return {"id": name, "object": "model", "created": _epoch(modified_at), "owned_by": _owner(name)}
