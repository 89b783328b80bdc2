"""Turn a generate/chat request body into the exact tokens the simulator will produce."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from gleitzeit_ollama.sim.config import SimConfig
from gleitzeit_ollama.sim.models import ModelInfo
from gleitzeit_ollama.sim.text import (
    count_tokens,
    json_tokens,
    schema_value,
    text_tokens,
    thinking_tokens,
    tokenize,
)
from gleitzeit_ollama.sim.wire import JsonObj, SimHTTPError

_THINKING_TOKENS = 8


@attrs.frozen
class Plan:
    """What a completion will say: optional thinking tokens, then answer tokens; ``prompt`` is
    the prompt as tokens, which the prompt cache compares."""

    key: str
    prompt: tuple[str, ...]
    thinking: tuple[str, ...]
    tokens: tuple[str, ...]
    done_reason: str
    # Ollama's tool calls (``{"id", "function": {"index", "name", "arguments"}}``), said
    # instead of text when the request offers tools
    tool_calls: tuple[JsonObj, ...] = ()

    @property
    def prompt_tokens(self) -> int:
        return max(len(self.prompt), 1)

    @property
    def generated(self) -> list[str]:
        """What the slot's cache holds after the prompt once the answer is done."""
        return tokenize(self.thinking_text) + tokenize(self.text)

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def thinking_text(self) -> str:
        return "".join(self.thinking)

    @property
    def eval_count(self) -> int:
        calls = count_tokens(json.dumps(list(self.tool_calls))) if self.tool_calls else 0
        return len(self.thinking) + len(self.tokens) + calls


MAX_PREDICT = 100_000  # output tokens at most, whatever num_predict asks


def options_of(body: JsonObj) -> Mapping[str, Any]:
    options = body.get("options")
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise SimHTTPError(400, "options must be a JSON object")
    return options


def _length(options: Mapping[str, Any], config: SimConfig) -> tuple[int, str]:
    """Output length and done_reason: num_predict >= 0 caps output ("length")."""
    num_predict = options.get("num_predict")
    if isinstance(num_predict, int) and not isinstance(num_predict, bool) and num_predict >= 0:
        # bounded: the simulator builds a non-streamed answer in memory
        return min(num_predict, MAX_PREDICT), "length"
    # Unset or negative (-1 = unlimited, -2 = fill context): the model "stops" on its own.
    return config.max_tokens, "stop"


def _wants_thinking(body: JsonObj, info: ModelInfo) -> bool:
    think = body.get("think")
    enabled = think is True or (isinstance(think, str) and think not in ("", "false", "none"))
    # Non-thinking models ignore the flag instead of failing (lenient on purpose).
    return enabled and "thinking" in info.capabilities


def _validate_format(fmt: Any) -> None:
    if fmt in (None, "", "json") or isinstance(fmt, Mapping):
        return
    raise SimHTTPError(400, 'invalid format: expected "json" or a valid JSON schema')


def _tools(body: JsonObj) -> list[Mapping[str, Any]]:
    """The functions offered to the model, each ``{"name", "parameters"}``."""
    tools = body.get("tools")
    functions = []
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            functions.append(function)
    return functions


def _answers_tool(body: JsonObj) -> bool:
    """The conversation ends with a tool's result: the model answers in words now."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    return isinstance(last, Mapping) and last.get("role") == "tool"


def tool_calls_for(key: str, body: JsonObj, seed: int | str) -> tuple[JsonObj, ...]:
    """One call of the tool whose name the prompt mentions (else one chosen from the prompt),
    with arguments that match its ``parameters`` schema; none when the last message is a
    tool's result or no tools are offered (nor, see ``plan_output``, with a ``format``)."""
    functions = _tools(body)
    if not functions or _answers_tool(body):
        return ()
    words = set(re.findall(r"[\w.-]+", key.lower()))
    named = [f for f in functions if str(f["name"]).lower() in words]
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).hexdigest()
    function = named[0] if named else functions[int(digest[:8], 16) % len(functions)]
    parameters = function.get("parameters")
    schema = parameters if isinstance(parameters, Mapping) else {"type": "object"}
    arguments = schema_value(schema, key, seed)
    call = {
        "id": f"call_{digest[:12]}",  # from the prompt, so a replay repeats it
        "function": {
            "index": 0,
            "name": function["name"],
            "arguments": arguments if isinstance(arguments, dict) else {},
        },
    }
    return (call,)


def plan_output(
    key: str, prompt: tuple[str, ...], body: JsonObj, info: ModelInfo, config: SimConfig
) -> Plan:
    options = options_of(body)
    fmt = body.get("format")
    _validate_format(fmt)
    n, reason = _length(options, config)
    # options.seed varies the output like a sampler seed would; temperature is ignored.
    option_seed = options.get("seed")
    seed: int | str = config.seed if option_seed is None else f"{config.seed}/{option_seed}"
    if fmt == "json":
        tokens = json_tokens(key, n, seed)
    elif isinstance(fmt, Mapping):
        tokens = json_tokens(key, n, seed, schema=fmt)
    else:
        tokens = text_tokens(key, n, seed)
    thinking = thinking_tokens(key, _THINKING_TOKENS, seed) if _wants_thinking(body, info) else []
    # a format constrains the output to JSON, which leaves the model no way to call a tool
    calls = tool_calls_for(key, body, seed) if fmt in (None, "") else ()
    if calls:
        tokens, reason = [], "stop"
    return Plan(key, prompt, tuple(thinking), tuple(tokens), reason, calls)


def generate_key(body: JsonObj) -> tuple[str, tuple[str, ...]]:
    """The prompt drives the output; the tokens the model sees are the system prompt's, the
    prompt's and the suffix's, in that order (images add nothing)."""
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise SimHTTPError(400, "prompt must be a string")
    system, suffix = (str(body.get(k) or "") for k in ("system", "suffix"))
    return prompt, tuple(tokenize(system) + tokenize(prompt) + tokenize(suffix))


def chat_messages(body: JsonObj) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        return []
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
        raise SimHTTPError(400, "messages must be a list of objects")
    for m in messages:
        if not isinstance(m.get("role"), str):
            raise SimHTTPError(400, "each message needs a role")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise SimHTTPError(400, "tools must be a list")
    return messages


def chat_key(messages: list[Mapping[str, Any]]) -> tuple[str, tuple[str, ...]]:
    """The last user message drives the output, so chat(user: X) == generate(prompt: X); the
    tokens the model sees are every message's content, in order."""
    contents = [str(m.get("content") or "") for m in messages]
    users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    key = users[-1] if users else (contents[-1] if contents else "")
    return key, tuple(token for content in contents for token in tokenize(content))
