"""A sticky strategy: keep sending to the resource used last while it stays eligible.

Useful for backends with warm caches (a model already loaded, a KV cache for a conversation):
traffic stays on one resource until that resource becomes ineligible (unhealthy, saturated,
breaker open), then moves to the least loaded of two random others and sticks there.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar, TypeVar

import attrs

from gleitzeit_core import Candidate, EmptyPool, Request

__all__ = ["StickyStrategy"]

C = TypeVar("C", bound=Candidate)


@attrs.define(kw_only=True, eq=False)
class StickyStrategy:
    name: ClassVar[str] = "sticky"
    guarantees: ClassVar[frozenset[str]] = frozenset()
    sampling: ClassVar[int] = 0  # sees every candidate: its choice depends on all of them
    rng: random.Random = attrs.field(factory=random.Random, repr=False)
    #: move on anyway once the current resource has this many calls in flight
    max_in_flight: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    _current: str | None = attrs.field(init=False, default=None)

    def select(self, candidates: Sequence[C], request: Request) -> C:
        if not candidates:
            raise EmptyPool(self.name)
        for candidate in candidates:
            if candidate.id == self._current and candidate.in_flight < self.max_in_flight:
                return candidate
        if len(candidates) == 1:
            choice = candidates[0]
        else:
            first = self.rng.randrange(len(candidates))
            second = self.rng.randrange(len(candidates) - 1)
            second += second >= first
            a, b = candidates[first], candidates[second]
            choice = a if a.in_flight <= b.in_flight else b
        self._current = choice.id
        return choice
