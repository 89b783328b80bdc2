"""Everything one simulator instance shares between its routes."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gleitzeit_ollama.sim.config import SimConfig
from gleitzeit_ollama.sim.faults import FaultState
from gleitzeit_ollama.sim.models import ModelInfo, ModelRegistry
from gleitzeit_ollama.sim.slots import SlotTable
from gleitzeit_ollama.sim.stats import RequestStats
from gleitzeit_ollama.sim.wire import not_found


class SimState:
    """Config, model registry, slots, faults, counters and in-flight requests."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.registry = ModelRegistry(
            config.models, load_ms=config.load_ms, keep_alive=config.keep_alive
        )
        self.slots = SlotTable(config.num_parallel, config.max_queue, config.queue_timeout_s)
        self.faults = FaultState(config.faults)
        self.stats = RequestStats()
        # uploaded blobs (digest -> size), kept across restarts like the installed models
        self.blobs: dict[str, int] = {}
        # Requests being handled, so stop() can cut them off like a crash would.
        # Keyed by id(): aiohttp requests are mappings and so not hashable.
        self.active: dict[int, web.Request] = {}
        self.idle = asyncio.Event()
        self.idle.set()

    def begin(self, request: web.Request) -> None:
        self.active[id(request)] = request
        self.idle.clear()

    def end(self, request: web.Request) -> None:
        self.active.pop(id(request), None)
        if not self.active:
            self.idle.set()

    def require(self, model: str) -> ModelInfo:
        info = self.registry.get(model)
        if info is None:
            raise not_found(model)
        return info

    def snapshot(self) -> dict[str, Any]:
        running = self.slots.running()
        queued = self.slots.queued()
        return {
            "name": self.config.name,
            "version": self.config.version,
            "started_at": self.stats.started_at,
            "requests": dict(sorted(self.stats.requests.items())),
            "max_concurrency": {
                "overall": self.slots.peak_overall,
                "models": dict(sorted(self.slots.peak.items())),
            },
            "current": {"overall": sum(running.values()), "models": running},
            "queued": {"overall": sum(queued.values()), "models": queued},
            "loaded": self.registry.loaded_names(),
            "installed": [m.name for m in self.registry.installed()],
            "rejected_503": self.stats.rejected_503,
            "insecure_pulls": self.stats.insecure_pulls,
            "prompt_cache": self.slots.cache_stats(),
            "faults": self.faults.spec.to_json(),
        }

    def reset_stats(self) -> None:
        self.stats.reset()
        self.slots.reset_peaks()
