"""Chaos through the gateway (a short run; `python tests/chaos/run_chaos.py` runs a long one)."""

from __future__ import annotations

import pytest

from .harness import PROBE_INTERVAL, run_chaos

# Default limits: each of the 8 workers' requests may hold one answer of max_answer_bytes
# (64 MiB) while it is read; ~50 MiB idle.
PEAK_MIB = 50 + 8 * 64 * 1.25


@pytest.mark.slow
async def test_gateway_survives_kill_hang_busy_and_drain() -> None:
    """Under steady load, with one simulator killed hard and restarted, one hanging and then
    drained, one answering 503 for a while and one answering every request with a hostile
    answer (endless, garbage, dripped, too deep, ...): client-visible error rate below 0.1 %,
    no request left without an answer past its deadline, the dead instance ejected within a
    few probe intervals and re-admitted after it returns, the drain fails no request, the
    hostile instance is taken out of rotation and the gateway's peak memory stays bounded."""
    report = await run_chaos(seconds=16.0, workers=8)
    detail = "\n".join(report.events + report.error_samples)
    assert report.requests > 300, detail
    assert report.unanswered == 0, detail
    assert report.error_rate < 0.001, detail
    assert report.ejected_after_s is not None, detail
    assert report.ejected_after_s <= 6 * PROBE_INTERVAL + 1.0, detail
    assert report.readmitted_after_s is not None, detail
    assert report.drain_ok, detail
    assert report.failovers > 0, detail
    assert report.hostile_shunned, detail
    assert report.rss_peak_mib < PEAK_MIB, detail
