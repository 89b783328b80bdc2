"""Helpers for the Ollama hub tests: configs over simulators, sim control, a recording breaker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import attrs
from gleitzeit_ollama.sim import OllamaSimulator

from gleitzeit_core import BaseBreaker, BreakerState, CallOutcome, Permit

MODEL = "llama3.2"
MODEL_TAG = "llama3.2:latest"


def hub_table(
    sims: Sequence[OllamaSimulator],
    *,
    resource_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A ``[hubs.llm]`` table over ``sims`` (ids ``s0``, ``s1``, ...), fast health probes."""
    table: dict[str, Any] = {
        "kind": "ollama",
        "discovery": ["static"],
        "seed": 7,
        "health": {"interval": 0.2, "timeout": 1.0},
        "resources": [
            {"id": f"s{i}", "url": sim.url, **(resource_options or {})}
            for i, sim in enumerate(sims)
        ],
    }
    table.update(overrides)
    return table


def config(sims: Sequence[OllamaSimulator], **overrides: Any) -> dict[str, Any]:
    return {"hubs": {"llm": hub_table(sims, **overrides)}}


async def sim_stats(http: aiohttp.ClientSession, sim: OllamaSimulator) -> dict[str, Any]:
    async with http.get(f"{sim.url}/_sim/stats") as response:
        assert response.status == 200
        data: dict[str, Any] = await response.json()
        return data


async def generate_count(http: aiohttp.ClientSession, sim: OllamaSimulator) -> int:
    stats = await sim_stats(http, sim)
    return int(stats["requests"].get("/api/generate", 0))


async def set_faults(http: aiohttp.ClientSession, sim: OllamaSimulator, **spec: Any) -> None:
    async with http.post(f"{sim.url}/_sim/faults", json=spec) as response:
        assert response.status == 200, await response.text()


async def ps_names(http: aiohttp.ClientSession, sim: OllamaSimulator) -> list[str]:
    async with http.get(f"{sim.url}/api/ps") as response:
        data = await response.json()
    return [entry["name"] for entry in data["models"]]


async def preload(
    http: aiohttp.ClientSession,
    sim: OllamaSimulator,
    model: str = MODEL,
    keep_alive: str | int = "1h",
) -> None:
    """Load ``model`` on ``sim`` directly (an empty generate), as a warm server would have it."""
    body = {"model": model, "keep_alive": keep_alive}
    async with http.post(f"{sim.url}/api/generate", json=body) as response:
        assert response.status == 200, await response.text()
    async with http.post(f"{sim.url}/_sim/stats/reset") as response:
        assert response.status == 200


@attrs.define(kw_only=True, eq=False)
class RecordingBreaker(BaseBreaker):
    """Opens after ``failures`` resource-fault outcomes in a row and remembers every outcome."""

    failures: int = 3
    outcomes: list[CallOutcome] = attrs.field(factory=list)
    _streak: int = 0

    def admits(self) -> bool:
        return self.automatic_state is not BreakerState.OPEN

    def admit(self) -> Permit | None:
        return self.issue_permit(trial=False) if self.admits() else None

    def judge(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        self.outcomes.append(outcome)
        if outcome is CallOutcome.FAILURE:
            self._streak += 1
            if self._streak >= self.failures:
                self.transition(BreakerState.OPEN, f"{self._streak} failures in a row")
        elif outcome is CallOutcome.SUCCESS:
            self._streak = 0
