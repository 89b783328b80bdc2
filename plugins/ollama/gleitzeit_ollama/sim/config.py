"""Simulator settings: which models exist and how fast/slow/queued the fake server behaves."""

from __future__ import annotations

from typing import Any

import attrs

from gleitzeit_ollama.sim.faults import FaultSpec


def _names(value: Any) -> list[str]:
    # Accept "a,b" from CLIs as well as lists.
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _optional_names(value: Any) -> list[str] | None:
    return None if value is None else _names(value)


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@attrs.define
class SimConfig:
    """How one simulated Ollama server behaves.

    Times are milliseconds except ``keep_alive`` (seconds, like OLLAMA_KEEP_ALIVE;
    negative = keep loaded forever).
    """

    # Installed models; "llama3.2" and "llama3.2:latest" are the same model.
    models: list[str] = attrs.field(
        factory=lambda: ["llama3.2", "nomic-embed-text"], converter=_names
    )
    # Base latency: time to first token / to an embedding.
    latency_ms: float = attrs.field(default=20.0, validator=_non_negative)
    # Prompt evaluation per uncached prompt token, added to the time to first token. Default:
    # llama.cpp's llama-bench README, llama 7B Q4_0 fully on a CUDA GPU, "pp 512" at
    # 2368.80 t/s = 0.42 ms per token (the same README shows about 30 ms per token on 8 CPU
    # threads). Cached prompt prefixes (see sim/slots.py) cost nothing.
    prefill_ms_per_token: float = attrs.field(default=0.42, validator=_non_negative)
    # Streaming speed, one token per chunk; 0 means "as fast as possible".
    tokens_per_s: float = attrs.field(default=100.0, validator=_non_negative)
    # Cost of loading a cold model, reported as load_duration.
    load_ms: float = attrs.field(default=100.0, validator=_non_negative)
    # OLLAMA_NUM_PARALLEL: running requests per model.
    num_parallel: int = attrs.field(default=1, converter=int, validator=_positive)
    # OLLAMA_MAX_QUEUE: waiting requests per model before 503.
    max_queue: int = attrs.field(default=512, converter=int, validator=_non_negative)
    # OLLAMA_KEEP_ALIVE in seconds.
    keep_alive: float = attrs.field(default=300.0, converter=float)
    # Models /api/pull can fetch; None means any name pulls.
    pullable: list[str] | None = attrs.field(default=None, converter=_optional_names)
    version: str = "0.12.0"
    # Instance name for stats and logs; does not change generated output.
    name: str = "ollama-sim"
    # Output seed: equal seeds give equal text/embeddings on every instance.
    seed: int = attrs.field(default=0, converter=int)
    # Output length when options.num_predict is not given.
    max_tokens: int = attrs.field(default=24, converter=int, validator=_non_negative)
    embed_dim: int = attrs.field(default=384, converter=int, validator=_positive)
    context_length: int = attrs.field(default=4096, converter=int, validator=_positive)
    # Total time a simulated pull takes.
    pull_ms: float = attrs.field(default=50.0, validator=_non_negative)
    # Safety nets so nothing waits forever: queued requests give up with a 503,
    # hung requests are dropped (connection reset).
    queue_timeout_s: float = attrs.field(default=600.0, validator=_positive)
    hang_max_s: float = attrs.field(default=600.0, validator=_positive)
    # Faults active from the start (normally switched at run time via /_sim/faults).
    faults: FaultSpec = attrs.field(factory=FaultSpec)
