"""Request counters for the /_sim/stats endpoint."""

from __future__ import annotations

import collections

from gleitzeit_ollama.sim.wire import rfc3339


class RequestStats:
    """Counts per path and 503 rejections; the rest of the stats is read live elsewhere."""

    def __init__(self) -> None:
        self.started_at = rfc3339()
        self.requests: collections.Counter[str] = collections.Counter()
        self.rejected_503 = 0
        self.insecure_pulls = 0  # pulls asked to skip TLS verification (a gateway must not)

    def count(self, path: str) -> None:
        self.requests[path] += 1

    def reset(self) -> None:
        self.requests.clear()
        self.rejected_503 = 0
        self.insecure_pulls = 0
