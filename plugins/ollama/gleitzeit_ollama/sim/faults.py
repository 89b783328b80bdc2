"""Run-time switchable faults: what to break, where, and the waiting/drawing that needs.

JSON accepted by ``POST /_sim/faults`` (fields merge into the current faults;
``DELETE`` resets all; ``GET`` reads them)::

    {
      "error_rate": 0.0,         # 0..1: share of targeted requests that fail ...
      "error_status": 500,       # ... with this HTTP status
      "error_message": "...",    # ... and {"error": error_message}
      "seed": 0,                 # RNG seed; every POST restarts the RNG from it
      "hang": false,             # targeted requests are held open (released on change/stop)
      "hang_probes": false,      # also hold /, /api/version, /api/tags, /api/ps
      "slow_ms": 0,              # extra delay before a targeted request is handled
      "error_line_after": null,  # N: stream sends N chunks, then an {"error"} line (200)
      "reset_after": null,       # N: TCP reset after N chunks; 0 = before any response
      "busy": false,             # targeted requests get 503 "server busy ..."
      "probes_down": false,      # probes get their connection reset (fail fast, no reply)
      "hostile": null,           # a hostile answer (status 200): "endless_body",
                                 # "endless_line", "huge_tags", "garbage", "slow_drip",
                                 # "wrong_content_type", "invalid_json", "deep_json",
                                 # "many_values" (sim.hostile)
      "drip_ms": 50,             # slow_drip: one byte this often
      "hostile_after": 0,        # streamed requests: this many valid chunks first
      "paths": null              # targets; null = generate, chat, embed, embeddings and
                                 # their /v1 twins
    }

Numbers are bounded (``slow_ms`` and ``drip_ms`` at most ten minutes) so a bad control request
is a 400, not a simulator that waits forever.

Non-streamed requests hit by ``error_line_after`` answer HTTP 500 instead (as Ollama
does when a runner fails before a non-streamed answer is complete).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

import attrs

from gleitzeit_ollama.sim.hostile import HOSTILE_MODES

PROBE_PATHS = frozenset({"/", "/api/version", "/api/tags", "/api/ps"})
INFERENCE_PATHS = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/embeddings",
    }
)

# Realistic default: what Ollama streams when a runner dies mid-generation.
DEFAULT_ERROR_MESSAGE = "an error was encountered while running the model: unexpected EOF"
_MAX_MS = 600_000.0  # ten minutes: longer than any test waits


def _optional_count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a non-negative integer or null")
    return value


def _count(value: Any) -> int:
    counted = _optional_count(value)
    if counted is None or counted > 1_000_000:
        raise ValueError("must be an integer between 0 and 1000000")
    return counted


def _paths(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [p for p in value.split(",") if p]
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
        raise ValueError("must be a list of paths or null")
    return tuple(value)


def _hostile(value: Any) -> str | None:
    if value is None:
        return None
    if value not in HOSTILE_MODES:
        raise ValueError(f"hostile must be null or one of {', '.join(HOSTILE_MODES)}")
    return str(value)


def _milliseconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number of milliseconds")
    ms = float(value)
    if not 0.0 <= ms <= _MAX_MS:
        raise ValueError(f"must be between 0 and {_MAX_MS:g} milliseconds")
    return ms


def _rate(value: Any) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError("must be between 0 and 1")
    return rate


def _status(value: Any) -> int:
    status = int(value)
    if not 100 <= status <= 599:
        raise ValueError("must be an HTTP status code")
    return status


@attrs.frozen(kw_only=True)
class FaultSpec:
    """Which faults are on. JSON form is the field names (see ``to_json``/``from_json``).

    Scope: with ``paths`` unset, request-level faults hit the inference endpoints
    (generate, chat, embed, embeddings); with ``paths`` set, exactly those paths.
    ``probes_down`` and ``hang_probes`` always target ``/``, version, tags and ps.
    """

    error_rate: float = attrs.field(default=0.0, converter=_rate)
    error_status: int = attrs.field(default=500, converter=_status)
    error_message: str = attrs.field(default=DEFAULT_ERROR_MESSAGE, converter=str)
    seed: int = attrs.field(default=0, converter=int)
    hang: bool = attrs.field(default=False, converter=bool)
    hang_probes: bool = attrs.field(default=False, converter=bool)
    slow_ms: float = attrs.field(default=0.0, converter=_milliseconds)
    error_line_after: int | None = attrs.field(default=None, converter=_optional_count)
    reset_after: int | None = attrs.field(default=None, converter=_optional_count)
    busy: bool = attrs.field(default=False, converter=bool)
    probes_down: bool = attrs.field(default=False, converter=bool)
    hostile: str | None = attrs.field(default=None, converter=_hostile)
    drip_ms: float = attrs.field(default=50.0, converter=_milliseconds)
    hostile_after: int = attrs.field(default=0, converter=_count)
    paths: tuple[str, ...] | None = attrs.field(default=None, converter=_paths)

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["paths"] = list(self.paths) if self.paths is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: FaultSpec | None = None) -> FaultSpec:
        """Build from JSON, overlaying ``data`` on ``base``; ValueError on bad input."""
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        merged = (base or cls()).to_json() | dict(data)
        try:
            return cls(**merged)
        except (TypeError, ValueError) as exc:
            for name, value in data.items():  # say which field it was
                try:
                    cls(**{name: value})
                except (TypeError, ValueError) as one:
                    raise ValueError(f"invalid fault spec: {name}: {one}") from None
            raise ValueError(f"invalid fault spec: {exc}") from None

    def targets(self, path: str) -> bool:
        """Whether request-level faults (error, hang, slow, busy, reset) hit ``path``."""
        if self.paths is not None:
            return path in self.paths
        return path in INFERENCE_PATHS

    def hostile_on(self, path: str) -> str | None:
        """The hostile mode that answers ``path``, if any."""
        mode = self.hostile
        if mode is None:
            return None
        if mode == "huge_tags":
            return mode if path == "/api/tags" else None
        return mode if self.targets(path) else None

    def hangs(self, path: str) -> bool:
        if self.hang_probes and path in PROBE_PATHS:
            return True
        return self.hang and self.targets(path)


@attrs.frozen
class StreamFaults:
    """The per-line faults a streaming handler applies (snapshot at request start)."""

    error_line_after: int | None = None
    reset_after: int | None = None
    message: str = DEFAULT_ERROR_MESSAGE


class SimStopping(Exception):
    """Raised in held requests when the simulator shuts down."""


class FaultState:
    """Current faults plus the seeded RNG and a change signal for held requests."""

    def __init__(self, spec: FaultSpec | None = None) -> None:
        self._spec = spec or FaultSpec()
        self._rng = random.Random(self._spec.seed)
        self._changed = asyncio.Event()
        self._stopping = False

    @property
    def spec(self) -> FaultSpec:
        return self._spec

    def set(self, spec: FaultSpec) -> FaultSpec:
        """Replace the faults; the RNG restarts from ``spec.seed`` so runs are reproducible."""
        self._rng = random.Random(spec.seed)
        self._spec = spec
        self._notify()
        return spec

    def update(self, changes: Mapping[str, Any]) -> FaultSpec:
        return self.set(FaultSpec.from_json(changes, base=self._spec))

    def clear(self) -> FaultSpec:
        return self.set(FaultSpec())

    def reopen(self) -> None:
        self._stopping = False

    def shutdown(self) -> None:
        """Release every held request; they end with ``SimStopping``."""
        self._stopping = True
        self._notify()

    def _notify(self) -> None:
        # Wake all current waiters and give later waiters a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    def draw_error(self, path: str) -> bool:
        spec = self._spec
        if spec.error_rate <= 0.0 or not spec.targets(path):
            return False
        return self._rng.random() < spec.error_rate

    def stream_faults(self, path: str) -> StreamFaults:
        spec = self._spec
        if not spec.targets(path):
            return StreamFaults(message=spec.error_message)
        return StreamFaults(spec.error_line_after, spec.reset_after, spec.error_message)

    async def hold(self, path: str, max_s: float) -> bool:
        """Hold while a hang fault covers ``path``; True if held past ``max_s`` (give up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_s
        while self._spec.hangs(path):
            if self._stopping:
                raise SimStopping
            remaining = deadline - loop.time()
            if remaining <= 0:
                return True
            event = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                return True
        return False
