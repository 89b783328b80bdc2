"""Where gateway replicas share what they learn: the state-backend protocol and the in-process
default.

One process needs nothing shared: the built-in ``local`` backend keeps everything in memory.
Replicas of one gateway use a shared backend (the ``gleitzeit-redis`` plugin's ``redis``), chosen
with ``[state] backend = "..."`` and registered through ``gleitzeit_register_state_backends``
like any other plugin part. A shared backend

* attaches to every hub when the runtime starts (``start``) and shares breaker openings and
  outlier ejections (``hub.listen``), the calls in flight per resource and slot (written into
  ``Resource.remote_in_flight`` / ``remote_slots``, so least-loaded and p2c see the fleet's
  load), and a registry of replicas;
* guards hard caps (``reserve``/``release``): a resource's ``max_concurrency`` or a slot's
  capacity holds across replicas, checked atomically;
* counts per-key request rates and concurrency (``take``, ``enter``/``leave``) for the
  gateway's API keys;
* carries facts a hub shares with its namesakes on the other replicas (``share``; a plugin
  calls ``ResourceHub.share`` and registers ``ResourceHub.on_shared``): the backend delivers
  each peer's fact to ``hub.receive_shared`` and knows nothing of what it means (the Ollama
  plugin shares its ``prefix_affinity`` placements and which instance has which model loaded).

A shared backend must never fail a request because the store is down or slow: it then answers
from local state (``degraded`` in its status) and resynchronises when the store is back.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["LocalState", "ReplicaInfo", "StateBackend", "StateStatus"]


@attrs.frozen(kw_only=True)
class ReplicaInfo:
    """One gateway replica as the others see it."""

    id: str
    address: str | None
    started_at: float  # wall-clock seconds
    heartbeat_age_s: float


@attrs.frozen(kw_only=True)
class StateStatus:
    """What ``/gleitzeit/status`` shows under ``state``."""

    backend: str
    shared: bool
    connected: bool
    degraded: str | None = None  # why it serves from local state only, while it does
    replica: str | None = None  # this replica's id
    replicas: list[ReplicaInfo] = attrs.field(factory=list)
    staleness_s: float = 0.0  # the most a shared view may lag behind
    # "fleet" while per-key limits and caps count across the replicas, else "per-process"
    # (the local backend, or a shared one serving from local state while its store is down)
    limits: str = "per-process"
    degraded_s: float = 0.0  # how long the current outage has lasted (0 while connected)
    degraded_total_s: float = 0.0  # seconds spent degraded since start, the current one too
    counters: dict[str, int] = attrs.field(factory=dict)


@runtime_checkable
class StateBackend(Protocol):
    """What the runtime and the gateway need from a state backend."""

    name: str

    @property
    def shared(self) -> bool:
        """Whether other replicas see this state (False: the in-process default)."""
        ...

    async def start(self, runtime: Runtime) -> None:
        """Attach to the runtime's hubs; must not raise because the store is unreachable."""
        ...

    async def stop(self) -> None: ...

    async def reserve(self, hub: str, resource: str, slot: str | None, cap: int) -> bool:
        """Take one of ``cap`` places on a resource (or one of its slots) fleet-wide; False
        when all are taken on some replica. Only asked for resources with a cap."""
        ...

    def release(self, hub: str, resource: str, slot: str | None) -> None:
        """Give back a place ``reserve`` took (must not block)."""
        ...

    async def take(self, bucket: str, per_minute: int) -> float:
        """Count one request against ``per_minute`` in the last 60 s: 0.0 if it may run, else
        how many seconds until it may."""
        ...

    async def enter(self, bucket: str, limit: int) -> bool:
        """Start one of at most ``limit`` concurrent requests of ``bucket``."""
        ...

    def leave(self, bucket: str) -> None:
        """End a request ``enter`` admitted (must not block)."""
        ...

    def share(self, hub: str, topic: str, fact: Any) -> None:
        """Send ``fact`` (JSON-able) to hub ``hub``'s ``topic`` handler on every other
        replica, in the background (must not block; lost while the store is down). Raises
        ``TypeError``/``ValueError`` for a fact JSON cannot carry; may drop (and count) one
        over a size limit of its own, so what clients make hubs share cannot flood the store."""
        ...

    def status(self) -> StateStatus: ...


class LocalState:
    """The in-process backend: nothing is shared, nothing can fail."""

    name = "local"

    def __init__(self, *, clock: Any = None) -> None:
        self._now = clock.now if clock is not None else time.monotonic
        self._windows: dict[str, collections.deque[float]] = {}
        self._concurrent: collections.Counter[str] = collections.Counter()

    @property
    def shared(self) -> bool:
        return False

    async def start(self, runtime: Runtime) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def reserve(self, hub: str, resource: str, slot: str | None, cap: int) -> bool:
        return True  # the hub's own counts already hold the cap in one process

    def release(self, hub: str, resource: str, slot: str | None) -> None:
        return None

    async def take(self, bucket: str, per_minute: int) -> float:
        return sliding_window_take(self._windows, bucket, per_minute, self._now())

    async def enter(self, bucket: str, limit: int) -> bool:
        if self._concurrent[bucket] >= limit:
            return False
        self._concurrent[bucket] += 1
        return True

    def leave(self, bucket: str) -> None:
        left = self._concurrent[bucket] - 1
        if left > 0:
            self._concurrent[bucket] = left
        else:
            del self._concurrent[bucket]

    def share(self, hub: str, topic: str, fact: Any) -> None:
        return None  # no other replica to tell

    def status(self) -> StateStatus:
        return StateStatus(backend=self.name, shared=False, connected=True)


def sliding_window_take(
    windows: dict[str, collections.deque[float]], bucket: str, per_minute: int, now: float
) -> float:
    """The sliding-window-log rule every backend applies: at most ``per_minute`` admitted
    requests in any 60 s; returns 0.0 (admitted, and counted) or the seconds to wait."""
    window = windows.get(bucket)
    if window is None:
        window = windows[bucket] = collections.deque()
    while window and window[0] <= now - 60.0:
        window.popleft()
    if len(window) >= per_minute:
        return max(0.001, window[0] + 60.0 - now)
    window.append(now)
    return 0.0
