"""Installed models (tags) and loaded models (ps): load cost, keep-alive and eviction."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from typing import Any

import attrs

from gleitzeit_ollama.sim.wire import rfc3339

_THINKING_HINTS = ("qwen3", "deepseek-r1", "gpt-oss", "think", "magistral")
_EMBEDDING_HINTS = ("embed", "minilm", "bge")
# Sizes of well-known models so tags/show look familiar; others are derived from the name.
_KNOWN_SIZES = {
    "llama3.2": "3.2B",
    "llama3.1": "8.0B",
    "llama3": "8.0B",
    "nomic-embed-text": "137M",
    "mxbai-embed-large": "334M",
    "all-minilm": "23M",
    "qwen3": "8.2B",
    "qwen2.5": "7.6B",
    "mistral": "7.2B",
    "gemma3": "4.3B",
    "phi3": "3.8B",
    "llava": "7B",
}
_FAMILIES = (
    ("nomic", "nomic-bert"),
    ("mxbai", "bert"),
    ("embed", "bert"),
    ("llava", "llama"),
    ("qwen3", "qwen3"),
    ("qwen", "qwen2"),
    ("gemma", "gemma3"),
    ("mistral", "llama"),
    ("phi", "phi3"),
    ("deepseek", "qwen2"),
    ("gpt-oss", "gptoss"),
)


def normalize_name(name: str) -> str:
    """Ollama's implicit tag: ``llama3.2`` means ``llama3.2:latest``."""
    name = name.strip()
    last = name.rsplit("/", 1)[-1]
    return name if (not name or ":" in last) else f"{name}:latest"


def is_embedding_model(name: str) -> bool:
    return any(h in name.lower() for h in _EMBEDDING_HINTS)


def capabilities_for(name: str) -> list[str]:
    lowered = name.lower()
    if is_embedding_model(name):
        return ["embedding"]
    caps = ["completion"]
    if "llava" in lowered or "vision" in lowered:
        caps.append("vision")
    if any(h in lowered for h in _THINKING_HINTS):
        caps.append("thinking")
    return caps


def _parameter_size(name: str, digest: bytes) -> str:
    tag = name.rsplit(":", 1)[-1].lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([bm])(?:-.*)?", tag)
    if m:
        return f"{m.group(1)}{m.group(2).upper()}"
    base = name.rsplit(":", 1)[0].rsplit("/", 1)[-1].lower()
    if base in _KNOWN_SIZES:
        return _KNOWN_SIZES[base]
    if is_embedding_model(name):
        return "137M"
    return f"{1 + digest[0] % 8}.{digest[1] % 10}B"


def parameter_count(size: str) -> int:
    scale = 1e9 if size.endswith("B") else 1e6
    return int(float(size[:-1]) * scale)


@attrs.frozen
class ModelInfo:
    """One installed model, described deterministically from its name."""

    name: str
    digest: str
    size: int
    modified_at: str
    family: str
    parameter_size: str
    quantization_level: str
    capabilities: tuple[str, ...]

    @classmethod
    def describe(cls, name: str, modified_at: str) -> ModelInfo:
        name = normalize_name(name)
        raw = hashlib.sha256(name.encode()).digest()
        family = next((f for key, f in _FAMILIES if key in name.lower()), "llama")
        psize = _parameter_size(name, raw)
        embedding_only = is_embedding_model(name)
        quant = "F16" if embedding_only else "Q4_K_M"
        # ~0.6 bytes per parameter for Q4, 2 for F16.
        size = int(parameter_count(psize) * (2.0 if embedding_only else 0.6))
        return cls(
            name=name,
            digest=raw.hex(),
            size=size,
            modified_at=modified_at,
            family=family,
            parameter_size=psize,
            quantization_level=quant,
            capabilities=tuple(capabilities_for(name)),
        )

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def tag_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
        }


@attrs.define
class _Loaded:
    info: ModelInfo
    keep_alive: float
    refs: int = 0
    # monotonic deadline once idle; None while in use
    idle_deadline: float | None = None
    idle_since_wall: float = attrs.field(factory=time.time)


class ModelRegistry:
    """Installed models plus load state; eviction is lazy (checked on every access)."""

    def __init__(self, models: list[str], *, load_ms: float, keep_alive: float) -> None:
        self._load_s = load_ms / 1000.0
        self._default_keep_alive = math.inf if keep_alive < 0 else keep_alive
        now = rfc3339()
        self._installed: dict[str, ModelInfo] = {}
        for name in models:
            self.install(name, modified_at=now)
        self._loaded: dict[str, _Loaded] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._loads: dict[str, int] = {}  # times each model was loaded (prompt caches die)

    # -- installed ---------------------------------------------------------
    def get(self, name: str) -> ModelInfo | None:
        return self._installed.get(normalize_name(name))

    def installed(self) -> list[ModelInfo]:
        return sorted(self._installed.values(), key=lambda m: m.name)

    def install(self, name: str, *, modified_at: str | None = None) -> ModelInfo:
        info = ModelInfo.describe(name, modified_at or rfc3339())
        self._installed[info.name] = info
        return info

    def remove(self, name: str) -> bool:
        key = normalize_name(name)
        self._loaded.pop(key, None)
        return self._installed.pop(key, None) is not None

    # -- loaded ------------------------------------------------------------
    def _expire(self) -> None:
        now = time.monotonic()
        for key, entry in list(self._loaded.items()):
            if entry.refs == 0 and entry.idle_deadline is not None and now >= entry.idle_deadline:
                del self._loaded[key]

    def _effective(self, keep_alive: float | None) -> float:
        return self._default_keep_alive if keep_alive is None else keep_alive

    async def acquire(self, info: ModelInfo, keep_alive: float | None) -> int:
        """Mark the model in use, loading it first if cold; returns load time in ns."""
        start = time.monotonic_ns()
        self._expire()
        entry = self._loaded.get(info.name)
        if entry is None:
            lock = self._load_locks.setdefault(info.name, asyncio.Lock())
            async with lock:
                entry = self._loaded.get(info.name)
                if entry is None:
                    await asyncio.sleep(self._load_s)
                    entry = _Loaded(info, self._effective(keep_alive))
                    self._loaded[info.name] = entry
                    self._loads[info.name] = self._loads.get(info.name, 0) + 1
            waited = time.monotonic_ns() - start
        else:
            waited = 0
        # Like Ollama, the latest request's keep_alive sets the session duration.
        if keep_alive is not None:
            entry.keep_alive = keep_alive
        entry.refs += 1
        entry.idle_deadline = None
        return waited

    def generation(self, info: ModelInfo) -> int:
        """Which load of the model is in memory (each load starts with empty KV caches)."""
        return self._loads.get(info.name, 0)

    def release(self, info: ModelInfo) -> None:
        entry = self._loaded.get(info.name)
        if entry is None:
            return
        entry.refs = max(0, entry.refs - 1)
        if entry.refs == 0:
            entry.idle_since_wall = time.time()
            entry.idle_deadline = time.monotonic() + entry.keep_alive
            self._expire()

    def unload(self, info: ModelInfo) -> None:
        """keep_alive 0: evict now if idle, else as soon as the last user finishes."""
        entry = self._loaded.get(info.name)
        if entry is None:
            return
        entry.keep_alive = 0.0
        if entry.refs == 0:
            del self._loaded[info.name]

    def unload_all(self) -> None:
        """Forget every loaded model (a restarted server starts cold)."""
        self._loaded.clear()

    def loaded_names(self) -> list[str]:
        self._expire()
        return sorted(self._loaded)

    def ps_entries(self, context_length: int) -> list[dict[str, Any]]:
        self._expire()
        out = []
        for entry in sorted(self._loaded.values(), key=lambda e: e.info.name):
            base = time.time() if entry.refs else entry.idle_since_wall
            out.append(
                {
                    "name": entry.info.name,
                    "model": entry.info.name,
                    "size": entry.info.size,
                    "digest": entry.info.digest,
                    "details": entry.info.details(),
                    "expires_at": _expires_at(base, entry.keep_alive),
                    "size_vram": entry.info.size,
                    "context_length": context_length,
                }
            )
        return out


def _expires_at(base: float, keep_alive: float) -> str:
    # Ollama reports "forever" as now + max int64 ns (~292 years).
    seconds = 292 * 365 * 86400 if math.isinf(keep_alive) else keep_alive
    return rfc3339(base + seconds)
