"""Chaos through the gateway (a short run; `python tests/chaos/run_chaos.py` runs a long one)."""

from __future__ import annotations

import pytest

from .harness import PROBE_INTERVAL, run_chaos


@pytest.mark.slow
async def test_gateway_survives_kill_hang_busy_and_drain() -> None:
    """Under steady load, with one simulator killed hard and restarted, one hanging and then
    drained, and one answering 503 for a while: client-visible error rate below 0.1 %, no
    request left without an answer past its deadline, the dead instance ejected within a few
    probe intervals and re-admitted after it returns, and the drain fails no request."""
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
