"""Parameters of the ``llm/v1`` methods, and the Ollama request bodies built from them.

Each method's parameters are a strict attrs class: the core structures the raw parameters
into it and reports every problem naming its field (``params.tempreature: unknown key``,
``params.messages[0].role: expected one of ...``). Sampling parameters go where Ollama reads
them - under ``options`` (``max_tokens`` becomes ``options.num_predict``) - while ``format``
(``"json"`` or a JSON schema), ``keep_alive``, ``system``, ``think`` and a chat's ``tools`` stay
at the top level, passed through as Ollama takes them.
"""

# No ``from __future__ import annotations`` here on purpose: the core resolves the field types
# with ``typing.get_type_hints`` on every call it validates, and real annotations make that
# about 3x cheaper than string ones (it is on the path of every request).
from collections.abc import Mapping
from typing import Any

import attrs

from gleitzeit_core import at_least, fraction, in_range, one_of, satisfies, seconds
from gleitzeit_ollama.settings import keep_alive_value

__all__ = [
    "ChatParams",
    "EmbedParams",
    "GenerateParams",
    "ListModelsParams",
    "Message",
    "PullModelParams",
    "VisionParams",
    "chat_body",
    "embed_body",
    "generate_body",
    "sampling_options",
]

_THINK_LEVELS = ("low", "medium", "high", "max")
# where each sampling field goes inside ``options``
_OPTION_FIELDS = (
    ("temperature", "temperature"),
    ("max_tokens", "num_predict"),
    ("top_p", "top_p"),
    ("top_k", "top_k"),
    ("seed", "seed"),
)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


_model = satisfies('a model name such as "llama3.2"', lambda v: isinstance(v, str) and v.strip())
_stop = satisfies("a string or a list of strings", lambda v: isinstance(v, str) or _is_str_list(v))
_format = satisfies(
    '"json" or a JSON schema (a table)', lambda v: v in ("", "json") or isinstance(v, Mapping)
)
_think = satisfies(
    "true, false or one of " + ", ".join(_THINK_LEVELS),
    lambda v: isinstance(v, bool) or v in _THINK_LEVELS,
)
_input = satisfies(
    "a string or a non-empty list of strings",
    lambda v: isinstance(v, str) or (_is_str_list(v) and len(v) > 0),
)
_images = satisfies("a non-empty list of images", lambda v: _is_str_list(v) and len(v) > 0)


def _is_tool(value: Any) -> bool:
    function = value.get("function") if isinstance(value, Mapping) else None
    return (
        isinstance(function, Mapping)
        and value.get("type", "function") == "function"
        and isinstance(function.get("name"), str)
        and bool(function["name"].strip())
        and isinstance(function.get("parameters", {}), Mapping)
    )


_tools = satisfies(
    'a list of tools such as {"type": "function", "function": {"name": ..., "parameters": {...}}}',
    lambda v: isinstance(v, list) and all(_is_tool(t) for t in v),
)


@attrs.frozen(kw_only=True)
class _Call:
    """What every inference call may say."""

    keep_alive: Any = attrs.field(default=None, validator=keep_alive_value)
    options: dict[str, Any] | None = None
    # seconds for the whole call, failover included (default: the hub's request_timeout)
    timeout: float | None = attrs.field(default=None, validator=seconds())


@attrs.frozen(kw_only=True)
class _Sampling(_Call):
    temperature: float | None = attrs.field(default=None, validator=in_range(0, 100))
    max_tokens: int | None = attrs.field(default=None, validator=at_least(-2))
    top_p: float | None = attrs.field(default=None, validator=fraction())
    top_k: int | None = attrs.field(default=None, validator=at_least(0))
    seed: int | None = None
    stop: Any = attrs.field(default=None, validator=_stop)
    format: Any = attrs.field(default=None, validator=_format)
    think: Any = attrs.field(default=None, validator=_think)
    stream: bool = False


@attrs.frozen(kw_only=True)
class GenerateParams(_Sampling):
    model: str = attrs.field(validator=_model)
    prompt: str = ""
    system: str | None = None
    images: list[str] | None = None  # base64, data: URIs or file paths
    raw: bool | None = None
    suffix: str | None = None


@attrs.frozen(kw_only=True)
class VisionParams(_Sampling):
    model: str = attrs.field(validator=_model)
    prompt: str = ""
    images: list[str] = attrs.field(validator=_images)  # base64, data: URIs or file paths
    system: str | None = None


@attrs.frozen(kw_only=True)
class Message:
    role: str = attrs.field(validator=one_of("system", "user", "assistant", "tool"))
    content: str = ""
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None


@attrs.frozen(kw_only=True)
class ChatParams(_Sampling):
    model: str = attrs.field(validator=_model)
    messages: list[Message] = attrs.field(factory=list)
    # functions the model may call (its answer's ``message.tool_calls``), as Ollama takes them
    tools: list[dict[str, Any]] | None = attrs.field(default=None, validator=_tools)


@attrs.frozen(kw_only=True)
class EmbedParams(_Call):
    model: str = attrs.field(validator=_model)
    input: Any = attrs.field(validator=_input)
    truncate: bool | None = None
    dimensions: int | None = attrs.field(default=None, validator=at_least(1))


@attrs.frozen(kw_only=True)
class ListModelsParams:
    refresh: bool = False  # ask every instance now instead of using what the probes saw


@attrs.frozen(kw_only=True)
class PullModelParams:
    model: str = attrs.field(validator=_model)
    instance: str | None = None  # None: one healthy instance chosen by the hub's strategy
    insecure: bool | None = None
    stream: bool = False  # True: return the progress lines as an async iterator


# -- Ollama request bodies ----------------------------------------------------------------------
def sampling_options(params: _Call) -> dict[str, Any] | None:
    """``options`` as Ollama reads them: explicit fields win over the same key in ``options``;
    an ``options.max_tokens`` (not an Ollama option) is moved to ``num_predict``."""
    options = dict(params.options) if params.options else {}
    legacy = options.pop("max_tokens", None)
    if legacy is not None:
        options.setdefault("num_predict", legacy)
    if isinstance(params, _Sampling):
        for field, key in _OPTION_FIELDS:
            value = getattr(params, field)
            if value is not None:
                options[key] = value
        if params.stop is not None:
            options["stop"] = [params.stop] if isinstance(params.stop, str) else params.stop
    return options or None


def _common(params: _Call, body: dict[str, Any], keep_alive: Any) -> dict[str, Any]:
    options = sampling_options(params)
    if options is not None:
        body["options"] = options
    chosen = params.keep_alive if params.keep_alive is not None else keep_alive
    if chosen is not None:
        body["keep_alive"] = chosen
    if isinstance(params, _Sampling):
        if params.format is not None:
            body["format"] = params.format
        if params.think is not None:
            body["think"] = params.think
    return body


def generate_body(
    params: GenerateParams | VisionParams,
    *,
    images: list[str] | None,
    keep_alive: Any = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": params.model, "prompt": params.prompt}
    body["stream"] = params.stream
    if params.system is not None:
        body["system"] = params.system
    if images:
        body["images"] = images
    if isinstance(params, GenerateParams):
        if params.raw is not None:
            body["raw"] = params.raw
        if params.suffix is not None:
            body["suffix"] = params.suffix
    return _common(params, body, keep_alive)


def chat_body(
    params: ChatParams, *, messages: list[dict[str, Any]], keep_alive: Any = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": params.model, "messages": messages, "stream": params.stream}
    if params.tools is not None:
        body["tools"] = params.tools
    return _common(params, body, keep_alive)


def message_dict(message: Message, images: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if images:
        out["images"] = images
    for field in ("thinking", "tool_calls", "tool_name"):
        value = getattr(message, field)
        if value is not None:
            out[field] = value
    return out


def embed_body(params: EmbedParams, *, keep_alive: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": params.model, "input": params.input}
    if params.truncate is not None:
        body["truncate"] = params.truncate
    if params.dimensions is not None:
        body["dimensions"] = params.dimensions
    return _common(params, body, keep_alive)
