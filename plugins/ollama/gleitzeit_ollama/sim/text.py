"""Deterministic fake model output: text tokens, JSON documents and embeddings.

Everything is a pure function of (seed, input) so two simulators, or a test,
compute identical output for the same request.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import zlib
from collections.abc import Mapping
from typing import Any

VOCAB: tuple[str, ...] = (
    "the", "quick", "model", "answers", "with", "a", "steady", "stream", "of", "tokens",
    "while", "every", "server", "keeps", "its", "queue", "short", "and", "requests", "flow",
    "through", "pools", "to", "warm", "instances", "that", "hold", "weights", "in", "memory",
    "so", "latency", "stays", "low", "when", "load", "rises", "then", "balancer", "picks",
    "one", "free", "slot", "for", "each", "prompt", "before", "timeouts", "trip", "breakers",
    "over", "time", "as", "probes", "report", "health", "back", "hub", "routes", "work",
    "across", "many", "hosts", "quietly",
)  # fmt: skip

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def _rng(*parts: object) -> random.Random:
    # sha256 rather than hash(): stable across processes and PYTHONHASHSEED.
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def tokenize(text: str) -> list[str]:
    """Rough tokens (words and punctuation), for prompt counts and the prompt cache."""
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    """Rough token count (words and punctuation), used for prompt_eval_count."""
    return len(_TOKEN_RE.findall(text))


def text_tokens(prompt: str, n: int, seed: int | str = 0) -> list[str]:
    """``n`` tokens of prose derived from ``prompt``; joined they read as one sentence."""
    rng = _rng("text", seed, prompt)
    tokens: list[str] = []
    for i in range(n):
        word = rng.choice(VOCAB)
        token = word.capitalize() if i == 0 else " " + word
        tokens.append(token + "." if i == n - 1 else token)
    return tokens


def thinking_tokens(prompt: str, n: int, seed: int | str = 0) -> list[str]:
    """Tokens for the ``thinking`` field of thinking-capable models."""
    return text_tokens("think\x1f" + prompt, n, seed)


def generate_text(prompt: str, n: int, seed: int | str = 0) -> str:
    return "".join(text_tokens(prompt, n, seed))


def split_text(text: str, n: int) -> list[str]:
    """Split ``text`` into ``n`` non-empty pieces of near-equal size (fewer if too short)."""
    n = max(1, min(n, len(text)))
    base, extra = divmod(len(text), n)
    pieces, pos = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        pieces.append(text[pos : pos + size])
        pos += size
    return pieces


def json_tokens(
    prompt: str, n: int, seed: int | str = 0, schema: Mapping[str, Any] | None = None
) -> list[str]:
    """A valid JSON document (matching ``schema`` if given) split into ~``n`` chunks."""
    rng = _rng("json", seed, prompt)
    words = [rng.choice(VOCAB) for _ in range(max(n, 3))]
    if schema:
        doc: Any = _value_for(schema, schema, rng, words, depth=0)
    else:
        doc = {"response": " ".join(words[: max(n, 1)])}
    return split_text(json.dumps(doc), max(n, 1))


def schema_value(schema: Mapping[str, Any], key: str, seed: int | str = 0) -> Any:
    """A value matching ``schema`` derived from ``key`` (a tool call's arguments)."""
    rng = _rng("value", seed, key)
    words = [rng.choice(VOCAB) for _ in range(8)]
    return _value_for(schema, schema, rng, words, depth=0)


def _count(node: Mapping[str, Any], low: str, high: str, default: int, cap: int) -> int:
    """A size within the schema's ``low``..``high`` bounds (e.g. minItems/maxItems)."""
    lowest, highest = node.get(low), node.get(high)
    lowest = lowest if isinstance(lowest, int) and not isinstance(lowest, bool) else 0
    highest = highest if isinstance(highest, int) and not isinstance(highest, bool) else cap
    return max(lowest, min(default, highest, cap))


def _bounded(node: Mapping[str, Any], rng: random.Random, integer: bool) -> int | float:
    low, high = node.get("minimum", 0), node.get("maximum", 100)
    low = low if isinstance(low, int | float) and not isinstance(low, bool) else 0
    high = high if isinstance(high, int | float) and not isinstance(high, bool) else low + 100
    if "exclusiveMinimum" in node or "exclusiveMaximum" in node:
        low, high = low + 1, high - 1
    if high < low:
        high = low
    if integer:
        return rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))
    return round(rng.uniform(low, high), 2)


_STRING_FORMATS = {
    "date-time": "2024-01-02T03:04:05Z",
    "date": "2024-01-02",
    "time": "03:04:05",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uuid": "12345678-1234-5678-1234-567812345678",
}


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return target if isinstance(target, Mapping) else {}
    for key in ("anyOf", "oneOf", "allOf"):
        options = node.get(key)
        if isinstance(options, list) and options:
            # Prefer a non-null option so the value is informative.
            for opt in options:
                if isinstance(opt, Mapping) and opt.get("type") != "null":
                    return _resolve(opt, root)
    return node


def _value_for(
    node: Any,
    root: Mapping[str, Any],
    rng: random.Random,
    words: list[str],
    depth: int,
) -> Any:
    """A value satisfying the common subset of JSON Schema (types, properties, enum, $ref);
    anything that is not a schema object (``{"a": 5}`` as a property) reads as "any string"."""
    if not isinstance(node, Mapping):
        node = {}
    node = _resolve(node, root)
    if not isinstance(node, Mapping):
        node = {}
    if "const" in node:
        return node["const"]
    if isinstance(node.get("enum"), list) and node["enum"]:
        return rng.choice(node["enum"])
    kind = node.get("type", "object" if "properties" in node else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if depth > 8:  # guard against recursive schemas
        kind = "null" if kind in ("object", "array") else kind
    if kind == "object":
        props = node.get("properties")
        if not isinstance(props, Mapping):
            return {}
        return {k: _value_for(v, root, rng, words, depth + 1) for k, v in props.items()}
    if kind == "array":
        items = node.get("items") if isinstance(node.get("items"), Mapping) else {}
        count = _count(node, "minItems", "maxItems", 2, 16)
        return [_value_for(items or {}, root, rng, words, depth + 1) for _ in range(count)]
    if kind == "integer":
        return _bounded(node, rng, integer=True)
    if kind == "number":
        return _bounded(node, rng, integer=False)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _STRING_FORMATS:
        return _STRING_FORMATS[fmt]
    start = rng.randrange(len(words))
    text = " ".join((words[start:] + words[:start])[:3])
    size = _count(node, "minLength", "maxLength", len(text), 10_000)
    return (text * (size // max(len(text), 1) + 1))[:size] if size != len(text) else text


def embedding(text: str, dim: int, seed: int | str = 0) -> list[float]:
    """A unit-length (L2) vector derived from ``text``; equal texts give equal vectors."""
    rng = _rng("embed", seed, text)
    vec = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    return normalize(vec)


def normalize(vec: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


def context_ids(*texts: str) -> list[int]:
    """Fake token ids for the deprecated ``context`` field (stable, small ints)."""
    return [zlib.crc32(tok.encode()) % 32000 for t in texts for tok in _TOKEN_RE.findall(t)]
