"""Settings of an Ollama hub (the kind-specific keys of ``[hubs.NAME]``) and of one instance.

Both are strict attrs classes: the core structures the config into them and reports every
unknown key or wrong value with its key path (``hubs.llm.stall_timeout: expected ...``).
"""

from __future__ import annotations

from typing import Any

import attrs

from gleitzeit_core import InvalidValue, at_least, in_range, seconds
from gleitzeit_ollama.models import parse_keep_alive

__all__ = ["OllamaResourceOptions", "OllamaSettings", "keep_alive_value"]

MIB = 1024 * 1024


def keep_alive_value(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An Ollama ``keep_alive``: a duration string ("5m", "1h30m", "-1s") or seconds (< 0:
    keep the model loaded forever, 0: unload it after the answer)."""
    if value is None:
        return
    try:
        parse_keep_alive(value)
    except (TypeError, ValueError):
        raise InvalidValue(
            attribute.name, 'a duration such as "5m" or a number of seconds', value
        ) from None


def _ports(_: Any, attribute: attrs.Attribute[Any], value: list[int]) -> None:
    if not value or any(not 1 <= port <= 65535 for port in value):
        raise InvalidValue(attribute.name, "a non-empty list of ports (1-65535)", value)


@attrs.frozen(kw_only=True)
class OllamaSettings:
    """``[hubs.NAME]`` keys of an ``ollama`` hub, besides the ones every hub has."""

    # Pull a model nobody has onto one healthy instance instead of failing the request.
    auto_pull: bool = False
    # No byte for this long between two stream chunks = a stalled instance (BigBlueWhale: 30 s).
    stall_timeout: float = attrs.field(default=30.0, validator=seconds())
    # Opening a TCP connection to an instance; refused/unroutable hosts fail within it.
    connect_timeout: float = attrs.field(default=5.0, validator=seconds())
    # How often the probe refreshes /api/tags (installed models); /api/ps is read on every probe.
    tags_interval: float = attrs.field(default=60.0, validator=seconds())
    # A whole model pull (auto_pull or llm/pull_model), from the first byte to "success".
    pull_timeout: float = attrs.field(default=3600.0, validator=seconds())
    # keep_alive sent when a call gives none (None: the instance's own OLLAMA_KEEP_ALIVE).
    default_keep_alive: Any = attrs.field(default=None, validator=keep_alive_value)
    # num_parallel of instances that do not configure one (discovered ones, say).
    default_num_parallel: int = attrs.field(default=1, validator=at_least(1))
    # A loaded model that leaves within this many seconds no longer counts as "hot".
    expiry_margin: float = attrs.field(default=5.0, validator=seconds(allow_zero=True))
    # Connections kept open at most, over all instances: by the calls' pool (transport.py) and
    # by the aiohttp session (probes, listings, model routes, https://) each.
    max_connections: int = attrs.field(default=512, validator=at_least(1))
    # The opt-in ``scan`` discoverer: loopback ports that may run an Ollama server.
    scan_host: str = "127.0.0.1"
    scan_ports: list[int] = attrs.field(factory=lambda: list(range(11434, 11440)), validator=_ports)
    scan_timeout: float = attrs.field(default=0.5, validator=seconds())
    # Registries a pull (auto_pull, /api/pull, llm/pull_model) may fetch from; a model name's
    # host part, registry.ollama.ai when it has none.
    pull_registries: list[str] = attrs.field(
        factory=lambda: ["registry.ollama.ai", "hf.co", "huggingface.co"]
    )
    # Pass a pull's "insecure" (no TLS verification) on to Ollama; dropped otherwise.
    pull_insecure: bool = False
    # Directories whose image files in-process (library) callers may name in "images"; gateway
    # clients may never name a file. Empty: no file paths at all.
    image_dirs: list[str] = attrs.field(factory=list)
    image_max_bytes: int = attrs.field(default=20 * 1024 * 1024, validator=at_least(1))
    # Texts one embedding request of a gateway client may carry (OpenAI's own cap): each costs
    # the instance work and answer bytes, while a key's rate limit counts the request once.
    max_embed_inputs: int = attrs.field(default=2048, validator=at_least(1))
    # Bounds on what an instance may send (docs/configuration.md, "Limits on upstream answers").
    # A non-streamed answer (chat, generate, embed, show): big embedding batches fit.
    max_answer_bytes: int = attrs.field(default=64 * MIB, validator=at_least(1024))
    # One line of a stream; the longest real ones carry a generated image or a long context.
    max_line_bytes: int = attrs.field(default=16 * MIB, validator=at_least(1024))
    # /api/version, /api/ps and /api/tags, read by probes, scans and the merged listings.
    max_probe_bytes: int = attrs.field(default=4 * MIB, validator=at_least(1024))
    # Nesting of any JSON answer; Ollama's deepest (tool-call arguments) start at level 5.
    max_json_depth: int = attrs.field(default=64, validator=in_range(2, 500, "an integer"))
    # Elements and members of any JSON answer: tiny values decode to ~20x their bytes.
    max_json_values: int = attrs.field(default=4 * MIB, validator=at_least(1024))


@attrs.frozen(kw_only=True)
class OllamaResourceOptions:
    """Per-instance keys of ``[[hubs.NAME.resources]]``."""

    # Requests one model runs at once on this instance (its OLLAMA_NUM_PARALLEL, default 1);
    # the hub caps in-flight calls per (instance, model) at it, as Ollama queues without bound.
    # None: the hub's ``default_num_parallel``.
    num_parallel: int | None = attrs.field(default=None, validator=in_range(1, 1024, "an integer"))
    # Models known to be installed before the first /api/tags answer.
    models: list[str] = attrs.field(factory=list)
