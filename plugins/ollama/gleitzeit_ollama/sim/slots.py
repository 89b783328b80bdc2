"""Per-model concurrency and prompt caching like Ollama: NUM_PARALLEL running, FIFO waiters,
MAX_QUEUE bound, and one KV cache per parallel slot.

Ollama's runner (``runner/ollamarunner/cache.go``, ``LoadCacheSlot``) keeps, per parallel slot,
the inputs it last processed; a new request takes the free slot whose inputs share the longest
prefix with its prompt, evaluates only the rest (always at least one token, to have logits to
sample from) and reports only that in ``prompt_eval_count``. Ties go to the least recently used
slot here (Ollama's single-user mode takes the first one). A model that is loaded again starts
with empty caches.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs


class QueueFull(Exception):
    """More than ``max_queue`` requests are already waiting for this model."""


def common_prefix(cached: Sequence[str], prompt: Sequence[str]) -> int:
    """How many leading tokens the two sequences share."""
    count = 0
    for mine, theirs in zip(cached, prompt, strict=False):
        if mine != theirs:
            break
        count += 1
    return count


@attrs.define(eq=False)
class CacheSlot:
    """One parallel slot's KV cache: the tokens it holds and how often it was reused."""

    id: int
    tokens: tuple[str, ...] = ()
    generation: int = 0  # the model load these tokens belong to
    in_use: bool = False
    last_used: int = 0  # position in the order of use (larger = more recent)
    requests: int = 0
    hits: int = 0  # requests that reused at least one cached token
    cached_tokens: int = 0
    evaluated_tokens: int = 0

    def reset_counts(self) -> None:
        self.requests = self.hits = self.cached_tokens = self.evaluated_tokens = 0

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tokens": len(self.tokens),
            "requests": self.requests,
            "hits": self.hits,
            "cached_tokens": self.cached_tokens,
            "evaluated_tokens": self.evaluated_tokens,
        }


@attrs.frozen
class CacheUse:
    """What one request got from the cache: its slot, its prompt, how much was reused."""

    slot: CacheSlot
    prompt: tuple[str, ...]
    cached: int

    @property
    def evaluated(self) -> int:
        """Tokens the model evaluates: the uncached rest, at least one."""
        return max(1, len(self.prompt) - self.cached)


class ModelSlots:
    """A FIFO semaphore whose waiting line is bounded, plus one prompt cache per slot.

    A released slot is handed straight to the oldest waiter, so later arrivals
    cannot overtake queued requests.
    """

    def __init__(self, limit: int, max_queue: int) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.caches = [CacheSlot(i) for i in range(limit)]
        self._uses = 0

    def take_cache(self, prompt: Sequence[str], generation: int) -> CacheUse:
        """The free cache slot sharing the longest prefix with ``prompt`` (least recently
        used among ties), marked in use. Call only while holding a running slot."""
        tokens = tuple(prompt)
        best: CacheSlot | None = None
        best_common = -1
        for cache in self.caches:
            if cache.in_use:
                continue
            if cache.generation != generation:
                cache.tokens, cache.generation = (), generation  # the model was loaded again
            common = common_prefix(cache.tokens, tokens)
            if common > best_common or (
                common == best_common and best is not None and cache.last_used < best.last_used
            ):
                best, best_common = cache, common
        assert best is not None, "more requests running than slots"
        self._uses += 1
        best.in_use, best.last_used = True, self._uses
        # at least one prompt token is evaluated again, to have logits to sample from
        cached = min(best_common, max(len(tokens) - 1, 0))
        use = CacheUse(best, tokens, cached)
        best.requests += 1
        best.hits += cached > 0
        best.cached_tokens += cached
        best.evaluated_tokens += use.evaluated
        best.tokens = tokens[:cached]  # what the cache holds until the prompt is evaluated
        return use

    @staticmethod
    def give_back(use: CacheUse, tokens: Sequence[str] | None) -> None:
        """Free the cache slot; ``tokens`` is what it now holds (None: only the reused part)."""
        if tokens is not None:
            use.slot.tokens = tuple(tokens)
        use.slot.in_use = False

    def cache_stats(self) -> dict[str, Any]:
        slots = [cache.stats() for cache in self.caches]
        return {
            "requests": sum(s["requests"] for s in slots),
            "hits": sum(s["hits"] for s in slots),
            "cached_tokens": sum(s["cached_tokens"] for s in slots),
            "evaluated_tokens": sum(s["evaluated_tokens"] for s in slots),
            "slots": slots,
        }

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
    async def slot(self, model: str) -> AsyncIterator[ModelSlots]:
        """Hold one of ``model``'s running slots; yields its slots, whose prompt caches the
        holder may take one of."""
        slots = self._get(model)
        try:
            await slots.acquire(self._timeout_s)
        except TimeoutError:
            # Waited too long: answer like a full queue rather than hanging forever.
            raise QueueFull from None
        self._record_peak(model)
        try:
            yield slots
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

    def cache_stats(self) -> dict[str, Any]:
        """Per model: prompt-cache reuse in total and per slot."""
        return {m: s.cache_stats() for m, s in sorted(self._slots.items())}

    def reset_peaks(self) -> None:
        # Restart from what is running now, so a reset mid-load stays truthful.
        self.peak = {m: s.running for m, s in self._slots.items() if s.running}
        self.peak_overall = self.running_overall()
        for slots in self._slots.values():
            for cache in slots.caches:
                cache.reset_counts()
