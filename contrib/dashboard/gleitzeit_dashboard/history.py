"""What the dashboard remembers: one sample per resource per second for the last minutes, and
the hubs' events, so a page opened now can draw what happened before it was opened.

Memory is bounded by construction: each resource has a fixed-size ring (one float64 time and
six float32 values per slot) and the events live in a deque with a maximum length. Samples are
read from the hubs' own per-resource metrics once a second (the calls since the last sample),
so the dashboard adds nothing to a call's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from gleitzeit_core import HubEvent, MetricsSnapshot

__all__ = ["COLUMNS", "History", "SampleRing"]

# What one sample holds besides its time; NaN where there is nothing to say (no calls).
COLUMNS = ("rate", "error_rate", "p50_ms", "p95_ms", "p99_ms", "in_flight")


class SampleRing:
    """The last ``capacity`` samples of one resource; the oldest is overwritten."""

    __slots__ = ("_count", "_next", "capacity", "times", "values")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            msg = f"a sample ring holds at least one sample, got capacity {capacity}"
            raise ValueError(msg)
        self.capacity = capacity
        self.times = array("d", bytes(8 * capacity))
        self.values = array("f", bytes(4 * capacity * len(COLUMNS)))
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, at: float, row: Iterable[float]) -> None:
        slot = self._next
        self.times[slot] = at
        base = slot * len(COLUMNS)
        for offset, value in enumerate(row):
            self.values[base + offset] = value
        self._next = (slot + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def _slots(self) -> Iterator[int]:
        """Slot indices from the oldest sample to the newest."""
        start = (self._next - self._count) % self.capacity
        return ((start + i) % self.capacity for i in range(self._count))

    def since(self, after: float) -> dict[str, list[float | None]]:
        """The samples taken after ``after`` (wall-clock seconds), as columns; ``None`` for
        a value that was not measured."""
        width = len(COLUMNS)
        slots = [slot for slot in self._slots() if self.times[slot] > after]
        out: dict[str, list[float | None]] = {"t": [self.times[s] for s in slots]}
        for offset, name in enumerate(COLUMNS):
            column: list[float | None] = []
            for slot in slots:
                value = self.values[slot * width + offset]
                column.append(None if math.isnan(value) else round(value, 3))
            out[name] = column
        return out


class History:
    """Per-resource sample rings and the event timeline of every hub of a runtime."""

    def __init__(
        self,
        runtime: Any,
        *,
        seconds: int = 900,
        interval: float = 1.0,
        max_events: int = 1000,
    ) -> None:
        self.runtime = runtime
        self.interval = interval
        self.capacity = max(1, math.ceil(seconds / interval))
        self.rings: dict[tuple[str, str], SampleRing] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self._requests: dict[tuple[str, str], int] = {}  # calls counted at the last sample
        self._hub_ticks: dict[str, float] = {}  # each hub's clock at the last sample
        self._ejected: set[tuple[str, str]] = set()
        self._last_tick: float | None = None
        self._task: asyncio.Task[None] | None = None
        for hub in runtime.hubs.values():
            hub.listen(self.record_event)

    # -- input ----------------------------------------------------------------------------------
    def record_event(self, event: HubEvent) -> None:
        """A hub event (the hub's listener callback), stamped with the wall clock."""
        self._add_event(event.hub, event.resource, event.kind, event.detail)

    def _add_event(self, hub: str, resource: str, kind: str, detail: str) -> None:
        self.events.append(
            {"t": time.time(), "hub": hub, "resource": resource, "kind": kind, "detail": detail}
        )

    # -- sampling -------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """One sample per resource: the calls it finished since the last tick."""
        now = time.time() if now is None else now
        elapsed = self.interval if self._last_tick is None else max(now - self._last_tick, 1e-3)
        self._last_tick = now
        present: set[tuple[str, str]] = set()
        for hub in self.runtime.hubs.values():
            hub_now = hub.clock.now()
            since = self._hub_ticks.get(hub.name, hub_now - elapsed)
            self._hub_ticks[hub.name] = hub_now
            for resource in hub.members():
                key = (hub.name, resource.id)
                present.add(key)
                self._note_readmission(key, resource.is_ejected(hub_now))
                ring = self.rings.get(key)
                if ring is None:
                    ring = self.rings[key] = SampleRing(self.capacity)
                metrics = resource.metrics
                calls = metrics.requests - self._requests.get(key, metrics.requests)
                self._requests[key] = metrics.requests
                numbers = metrics.snapshot(hub_now, since=since)
                ring.append(now, _row(numbers, calls / elapsed, resource.in_flight))
        for key in set(self.rings) - present:  # left the hub: its event stays, its ring goes
            del self.rings[key]
        for key in set(self._requests) - present:
            del self._requests[key]
        self._ejected &= present

    def _note_readmission(self, key: tuple[str, str], ejected: bool) -> None:
        # an ejection ends by time or by a good probe, neither of which is an event of the hub
        if ejected:
            self._ejected.add(key)
        elif key in self._ejected:
            self._ejected.discard(key)
            self._add_event(key[0], key[1], "readmitted", "ejection over, back in rotation")

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self.tick()
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- output ---------------------------------------------------------------------------------
    def since(self, after: float) -> dict[str, Any]:
        """Samples and events newer than ``after`` (wall-clock seconds; 0 for everything)."""
        series: dict[str, dict[str, Any]] = {}
        for (hub, resource), ring in self.rings.items():
            series.setdefault(hub, {})[resource] = ring.since(after)
        return {
            "now": time.time(),
            "interval_s": self.interval,
            "window_s": self.capacity * self.interval,
            "series": series,
            "events": [event for event in self.events if event["t"] > after],
        }


def _row(numbers: MetricsSnapshot, rate: float, in_flight: int) -> tuple[float, ...]:
    measured = numbers.window_calls > 0
    return (
        rate,
        numbers.error_rate if measured else math.nan,
        _or_nan(numbers.p50_ms),
        _or_nan(numbers.p95_ms),
        _or_nan(numbers.p99_ms),
        float(in_flight),
    )


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
