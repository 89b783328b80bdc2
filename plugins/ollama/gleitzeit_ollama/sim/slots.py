"""Per-model concurrency like Ollama: NUM_PARALLEL running, FIFO waiters, MAX_QUEUE bound."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class QueueFull(Exception):
    """More than ``max_queue`` requests are already waiting for this model."""


class ModelSlots:
    """A FIFO semaphore whose waiting line is bounded.

    A released slot is handed straight to the oldest waiter, so later arrivals
    cannot overtake queued requests.
    """

    def __init__(self, limit: int, max_queue: int) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    async def acquire(self, timeout_s: float) -> None:
        """Take a slot, waiting in line; QueueFull if the line is full, TimeoutError."""
        if self.running < self.limit and not self.queued:
            self.running += 1
            return
        if self.queued >= self.max_queue:
            raise QueueFull
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            async with asyncio.timeout(timeout_s):
                await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                # The slot was handed over just as we gave up: pass it on.
                self.release()
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):  # release() may have dropped it
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the running count moves to the waiter
                return
        self.running -= 1


class SlotTable:
    """All models' slots plus the peak-concurrency bookkeeping the stats expose."""

    def __init__(self, limit: int, max_queue: int, timeout_s: float) -> None:
        self._limit = limit
        self._max_queue = max_queue
        self._timeout_s = timeout_s
        self._slots: dict[str, ModelSlots] = {}
        self.peak: dict[str, int] = {}
        self.peak_overall = 0

    def _get(self, model: str) -> ModelSlots:
        slots = self._slots.get(model)
        if slots is None:
            slots = self._slots[model] = ModelSlots(self._limit, self._max_queue)
        return slots

    @asynccontextmanager
    async def slot(self, model: str) -> AsyncIterator[None]:
        slots = self._get(model)
        try:
            await slots.acquire(self._timeout_s)
        except TimeoutError:
            # Waited too long: answer like a full queue rather than hanging forever.
            raise QueueFull from None
        self._record_peak(model)
        try:
            yield
        finally:
            slots.release()

    def _record_peak(self, model: str) -> None:
        self.peak[model] = max(self.peak.get(model, 0), self._slots[model].running)
        self.peak_overall = max(self.peak_overall, self.running_overall())

    def running(self) -> dict[str, int]:
        return {m: s.running for m, s in sorted(self._slots.items())}

    def queued(self) -> dict[str, int]:
        return {m: s.queued for m, s in sorted(self._slots.items())}

    def running_overall(self) -> int:
        return sum(s.running for s in self._slots.values())

    def reset_peaks(self) -> None:
        # Restart from what is running now, so a reset mid-load stays truthful.
        self.peak = {m: s.running for m, s in self._slots.items() if s.running}
        self.peak_overall = self.running_overall()
