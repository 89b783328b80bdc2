"""The dashboard's history: a bounded ring per resource, samples that add up to the calls
made, events from the hubs and re-admissions it notices itself."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

from gleitzeit_dashboard.history import COLUMNS, History, SampleRing
from hypothesis import given
from hypothesis import strategies as st

from gleitzeit_core._plugins import PluginManager
from gleitzeit_core._runtime import Runtime
from gleitzeit_core.testing import echo

from .conftest import echo_config


@given(
    capacity=st.integers(min_value=1, max_value=50),
    count=st.integers(min_value=0, max_value=200),
)
def test_ring_keeps_the_newest_samples_in_order(capacity: int, count: int) -> None:
    """After any number of appends the ring holds the last ``capacity`` samples, oldest
    first, each row intact; ``since`` cuts by time; NaN reads back as None."""
    ring = SampleRing(capacity)
    for i in range(count):
        ring.append(float(i), [float(i)] * (len(COLUMNS) - 1) + [math.nan])
    kept = list(range(max(0, count - capacity), count))
    assert len(ring) == len(kept)
    everything = ring.since(-1.0)
    assert everything["t"] == [float(i) for i in kept]
    assert everything["rate"] == [float(i) for i in kept]
    assert everything[COLUMNS[-1]] == [None] * len(kept)
    middle = count // 2
    assert ring.since(middle - 0.5)["t"] == [float(i) for i in kept if i > middle - 0.5]


def echo_runtime(*ids: str) -> Runtime:
    manager = PluginManager(autoload=False)
    manager.load()
    manager.add(echo, "echo")
    return Runtime.from_config(echo_config(*ids), plugins=manager)


async def say(runtime: Runtime, **params: Any) -> None:
    try:
        await runtime.execute("echo/say", {"text": "x", **params})
    except Exception:  # a failing call is part of what the history must count
        return


async def test_samples_add_up_to_the_calls_made() -> None:
    """One tick after 4 successes and 2 server errors on ``a`` in a 2 s interval: ``a`` shows
    3 calls/s, a third of them errors, latencies of the successes; ``b`` shows 0 calls and no
    latency; in-flight is 0."""
    async with echo_runtime("a", "b") as runtime:
        history = History(runtime)
        history.tick(100.0)
        hub = runtime.hubs["e"]
        await hub.drain("b")
        for _ in range(4):
            await say(runtime)
        for _ in range(2):
            await say(runtime, fail="server_error")
        history.tick(102.0)
        data = history.since(101.0)
        a, b = data["series"]["e"]["a"], data["series"]["e"]["b"]
        assert a["t"] == [102.0]
        assert a["rate"] == [3.0]
        assert a["error_rate"] == [round(2 / 6, 3)]
        assert a["p50_ms"][0] is not None
        assert a["in_flight"] == [0.0]
        assert b["rate"] == [0.0]
        assert b["p95_ms"] == [None]
        assert b["error_rate"] == [None]


async def test_hub_events_and_readmission_reach_the_timeline() -> None:
    """Drain and undrain arrive as events from the hub; an ejection that ends is noticed by
    the sampler as a ``readmitted`` event; a removed resource loses its ring."""
    async with echo_runtime("a", "b") as runtime:
        history = History(runtime)
        hub = runtime.hubs["e"]
        await hub.drain("a")
        hub.undrain("a")
        resource = hub.get("b")
        resource.ejected_until = hub.clock.now() + 60
        history.tick(1.0)
        resource.ejected_until = None
        history.tick(2.0)
        await hub.remove("a")
        history.tick(3.0)
        kinds = [(e["resource"], e["kind"]) for e in history.events]
        assert kinds == [
            ("a", "draining"),
            ("a", "undrained"),
            ("b", "readmitted"),
            ("a", "draining"),
            ("a", "removed"),
        ]
        assert set(history.since(0)["series"]["e"]) == {"b"}


async def test_memory_stops_growing_once_the_ring_is_full() -> None:
    """Memory is bounded: ticking through the ring a second time allocates (almost) nothing
    more than filling it did."""
    async with echo_runtime("a", "b", "c") as runtime:
        history = History(runtime, seconds=300)
        tracemalloc.start()
        try:
            for t in range(300):
                history.tick(float(t))
            full, _ = tracemalloc.get_traced_memory()
            for t in range(300, 900):
                history.tick(float(t))
            later, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert later - full < 4096, (full, later)
        assert all(len(ring) == 300 for ring in history.rings.values())
