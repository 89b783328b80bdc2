"""Chaos through the gateway (short runs; `python tests/chaos/run_chaos.py` runs a long one
with the outages and the hostile instance at once)."""

from __future__ import annotations

import pytest

from .harness import PROBE_INTERVAL, run_chaos

# Default limits: each of the 8 workers' requests may hold one answer of max_answer_bytes
# (64 MiB) while it is read; ~50 MiB idle.
PEAK_MIB = 50 + 8 * 64 * 1.25


@pytest.mark.slow
async def test_gateway_survives_kill_hang_busy_and_drain() -> None:
    """Under steady load, with one simulator killed hard and restarted, one hanging and then
    drained, and one answering 503 for a while: client-visible error rate below 0.1 %, no
    request left without an answer past its deadline, the dead instance ejected within a few
    probe intervals and re-admitted after it returns, and the drain fails no request."""
    report = await run_chaos(seconds=16.0, workers=8, hostile=False)
    detail = "\n".join(report.events + report.error_samples)
    assert report.requests > 300, detail
    assert report.unanswered == 0, detail
    assert report.error_rate < 0.001, detail
    assert report.ejected_after_s is not None, detail
    assert report.ejected_after_s <= 6 * PROBE_INTERVAL + 1.0, detail
    assert report.readmitted_after_s is not None, detail
    assert report.drain_ok, detail
    assert report.failovers > 0, detail


@pytest.mark.slow
async def test_gateway_survives_a_hostile_instance_under_load() -> None:
    """Under steady load, one of four simulators answers every request with a hostile answer
    (an endless line, garbage, endless bodies and tags, a slow drip, invalid JSON, JSON too
    deep, an HTML page, huge tags; probes answer normally): no client sees an error, the
    hostile instance is taken out of rotation, and the gateway's peak memory stays under the
    bound the default limits give."""
    report = await run_chaos(seconds=10.0, workers=8, hostile=True, outages=False)
    detail = "\n".join(report.events + report.error_samples)
    assert report.requests > 100, detail
    assert report.unanswered == 0, detail
    assert report.errors == 0, detail
    assert report.hostile_shunned, detail
    assert report.hostile_limits, detail
    assert report.rss_peak_mib < PEAK_MIB, detail
