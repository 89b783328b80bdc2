"""The ``Strategy`` protocol and the built-in balancing strategies.

A strategy picks one candidate among those a hub found eligible. It never sees ineligible
resources, so it cannot return one. Randomness comes from a ``random.Random`` the caller can
seed, so every choice is reproducible in tests.

A strategy whose choice only ever compares a few uniformly drawn candidates (``p2c`` compares
two) says so in ``sampling``; a large hub then hands it that many eligible resources drawn at
random instead of scanning all of them, which is the same distribution at a fraction of the
cost.

Each class states the distribution property it promises in ``guarantees`` (checked by
``gleitzeit_core.testing.StrategyContract``): ``"cycle"`` (N stable candidates are all chosen
in N picks), ``"weights"`` (shares converge to the weights), ``"sticky"`` (a key keeps its
resource; a membership change moves about 1/N of the keys).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol, TypeVar, runtime_checkable

import attrs

from ._errors import EmptyPool
from ._request import Request
from ._resources import Candidate

__all__ = [
    "BUILTIN_STRATEGIES",
    "ConsistentHashStrategy",
    "LeastLatencyStrategy",
    "LeastLoadedStrategy",
    "PeakEwmaStrategy",
    "PowerOfTwoChoicesStrategy",
    "PriorityStrategy",
    "RandomStrategy",
    "RoundRobinStrategy",
    "Strategy",
    "WeightedRandomStrategy",
    "WeightedRoundRobinStrategy",
]

C = TypeVar("C", bound=Candidate)


@runtime_checkable
class Strategy(Protocol):
    """Chooses one of the candidates; raises ``EmptyPool`` when there are none.

    ``name`` is the name it is registered and shown under; ``guarantees`` what
    ``StrategyContract`` checks beyond the basics (``"cycle"``, ``"weights"``, ``"sticky"``);
    ``sampling`` how many uniformly drawn eligible candidates are enough for it to choose well
    (p2c needs 2, random 1), so a large hub can skip the full scan; 0 means it must see every
    eligible candidate.
    """

    @property
    def name(self) -> str: ...

    @property
    def guarantees(self) -> frozenset[str]: ...

    @property
    def sampling(self) -> int: ...

    def select(self, candidates: Sequence[C], request: Request) -> C: ...


def _rng_field() -> random.Random:
    return attrs.field(factory=random.Random, repr=False, eq=False)


def _empty(strategy: Strategy) -> EmptyPool:
    return EmptyPool(strategy.name)


@attrs.define(kw_only=True, eq=False)
class RandomStrategy:
    """Uniformly random."""

    name: ClassVar[str] = "random"
    guarantees: ClassVar[frozenset[str]] = frozenset()
    sampling: ClassVar[int] = 1
    rng: random.Random = _rng_field()

    def select(self, candidates: Sequence[C], request: Request) -> C:
        if not candidates:
            raise _empty(self)
        return candidates[int(self.rng.random() * len(candidates))]


@attrs.define(kw_only=True, eq=False)
class WeightedRandomStrategy:
    """Random, with probability proportional to weight."""

    name: ClassVar[str] = "weighted_random"
    guarantees: ClassVar[frozenset[str]] = frozenset({"weights"})
    sampling: ClassVar[int] = 0
    rng: random.Random = _rng_field()

    def select(self, candidates: Sequence[C], request: Request) -> C:
        if not candidates:
            raise _empty(self)
        total = 0.0
        cumulative = []
        for candidate in candidates:
            total += candidate.weight
            cumulative.append(total)
        index = bisect.bisect_right(cumulative, self.rng.random() * total)
        return candidates[min(index, len(candidates) - 1)]


@attrs.define(kw_only=True, eq=False)
class RoundRobinStrategy:
    """Each candidate in turn, in id order.

    The position is remembered as the last id chosen, not as an index, so a resource joining or
    leaving does not make others skip or repeat their turn.
    """

    name: ClassVar[str] = "round_robin"
    guarantees: ClassVar[frozenset[str]] = frozenset({"cycle"})
    sampling: ClassVar[int] = 0
    rng: random.Random = _rng_field()
    _last: str | None = attrs.field(init=False, default=None)

    def select(self, candidates: Sequence[C], request: Request) -> C:
        if not candidates:
            raise _empty(self)
        last = self._last
        first: C | None = None
        after: C | None = None
        for candidate in candidates:
            cid = candidate.id
            if first is None or cid < first.id:
                first = candidate
            if last is not None and cid > last and (after is None or cid < after.id):
                after = candidate
        choice = after if after is not None else first
        assert choice is not None
        self._last = choice.id
        return choice


@attrs.define(kw_only=True, eq=False)
class WeightedRoundRobinStrategy:
    """Smooth weighted round robin: heavier candidates more often, interleaved, never in bursts."""

    name: ClassVar[str] = "weighted_round_robin"
    guarantees: ClassVar[frozenset[str]] = frozenset({"weights"})
    sampling: ClassVar[int] = 0
    rng: random.Random = _rng_field()
    _current: dict[str, float] = attrs.field(init=False, factory=dict)

    def select(self, candidates: Sequence[C], request: Request) -> C:
        if not candidates:
            raise _empty(self)
        current = self._current
        if len(current) > 2 * len(candidates):
            # forget members that left, so the table stays as large as the pool
            present = {c.id for c in candidates}
            for stale in [cid for cid in current if cid not in present]:
                del current[stale]
        total = 0.0
        best: C | None = None
        best_weight = 0.0
        for candidate in candidates:
            weight = candidate.weight
            total += weight
            value = current.get(candidate.id, 0.0) + weight
            current[candidate.id] = value
            if best is None or value > best_weight:
                best, best_weight = candidate, value
        assert best is not None
        current[best.id] = best_weight - total
        return best


@attrs.define(kw_only=True, eq=False)
class LeastLoadedStrategy:
    """The candidate with the fewest calls in flight; ties broken at random, not by position."""

    name: ClassVar[str] = "least_loaded"
    guarantees: ClassVar[frozenset[str]] = frozenset()
    sampling: ClassVar[int] = 0
    rng: random.Random = _rng_field()

    def select(self, candidates: Sequence[C], request: Request) -> C:
        return _lowest(self, self.rng, candidates, _in_flight)


def _in_flight(candidate: Candidate) -> float:
    return candidate.in_flight


def _lowest(
    strategy: Strategy, rng: random.Random, candidates: Sequence[C], key: Callable[[C], float]
) -> C:
    """The candidate with the lowest ``key``; ties broken by reservoir sampling, so each tied
    candidate is equally likely whatever its position."""
    if not candidates:
        raise _empty(strategy)
    best = candidates[0]
    lowest = key(best)
    ties = 1
    for candidate in candidates[1:]:
        value = key(candidate)
        if value < lowest:
            best, lowest, ties = candidate, value, 1
        elif value == lowest:
            ties += 1
            if rng.random() * ties < 1.0:
                best = candidate
    return best


def _pair(strategy: Strategy, rng: random.Random, candidates: Sequence[C]) -> tuple[C, C | None]:
    """Two distinct random candidates (both, when there are exactly two; one and ``None``
    when there is one), for the two-choices strategies."""
    n = len(candidates)
    if n > 2:
        first = int(rng.random() * n)
        second = int(rng.random() * (n - 1))
        return candidates[first], candidates[second + 1 if second >= first else second]
    if n == 2:
        return candidates[0], candidates[1]
    if n == 1:
        return candidates[0], None
    raise _empty(strategy)


def _cheaper(rng: random.Random, a: C, cost_a: float, b: C, cost_b: float) -> C:
    if cost_a == cost_b:
        return a if rng.random() < 0.5 else b  # a tie is broken at random, not by position
    return a if cost_a < cost_b else b


@attrs.define(kw_only=True, eq=False)
class PowerOfTwoChoicesStrategy:
    """Two distinct random candidates; the one with fewer calls in flight per weight wins.

    With two or fewer candidates it compares all of them, so the loaded one is never picked
    just because the draw happened to hit it twice.
    """

    name: ClassVar[str] = "p2c"
    guarantees: ClassVar[frozenset[str]] = frozenset()
    sampling: ClassVar[int] = 2
    rng: random.Random = _rng_field()

    def select(self, candidates: Sequence[C], request: Request) -> C:
        a, b = _pair(self, self.rng, candidates)
        if b is None:
            return a
        return _cheaper(self.rng, a, a.in_flight / a.weight, b, b.in_flight / b.weight)


@attrs.define(kw_only=True, eq=False)
class LeastLatencyStrategy:
    """The lowest latency EWMA; candidates never measured go first so they get measured."""

    name: ClassVar[str] = "least_latency"
    guarantees: ClassVar[frozenset[str]] = frozenset()
    sampling: ClassVar[int] = 0
    rng: random.Random = _rng_field()

    def select(self, candidates: Sequence[C], request: Request) -> C:
        return _lowest(self, self.rng, candidates, _latency_key)


def _latency_key(candidate: Candidate) -> float:
    latency = candidate.latency_ewma
    return -1.0 if latency is None else latency


def _peak_cost(candidate: Candidate) -> float:
    peak = candidate.peak_ewma
    if peak is None:
        return -1.0  # never measured: try it
    return peak * (candidate.in_flight + 1) / candidate.weight


@attrs.define(kw_only=True, eq=False)
class PeakEwmaStrategy:
    """Two choices scored by peak-sensitive latency x (in flight + 1), as in Finagle's balancer.

    A resource that turned slow is shunned at once (the peak EWMA jumps to a slow sample) and
    forgiven gradually as its latency decays back.
    """

    name: ClassVar[str] = "peak_ewma"
    guarantees: ClassVar[frozenset[str]] = frozenset()
    sampling: ClassVar[int] = 2
    rng: random.Random = _rng_field()

    def select(self, candidates: Sequence[C], request: Request) -> C:
        a, b = _pair(self, self.rng, candidates)
        if b is None:
            return a
        return _cheaper(self.rng, a, _peak_cost(a), b, _peak_cost(b))


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@attrs.define(kw_only=True, eq=False)
class ConsistentHashStrategy:
    """The same ``request.key`` goes to the same resource while that resource stays eligible.

    Every resource ever seen owns ``replicas`` x weight points on a hash ring; a key goes to the
    first point clockwise whose owner is among the candidates. A resource that becomes
    ineligible hands only its own keys to its ring neighbours, and a new one takes about 1/N of
    the keys. Requests without a key are spread at random.
    """

    name: ClassVar[str] = "consistent_hash"
    guarantees: ClassVar[frozenset[str]] = frozenset({"sticky"})
    sampling: ClassVar[int] = 0
    rng: random.Random = _rng_field()
    replicas: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    _points: list[int] = attrs.field(init=False, factory=list)
    _owners: list[str] = attrs.field(init=False, factory=list)
    _members: dict[str, float] = attrs.field(init=False, factory=dict)

    def select(self, candidates: Sequence[C], request: Request) -> C:
        if not candidates:
            raise _empty(self)
        if request.key is None or len(candidates) == 1:
            return candidates[int(self.rng.random() * len(candidates))]
        by_id = {}
        for candidate in candidates:
            by_id[candidate.id] = candidate
            if self._members.get(candidate.id) != candidate.weight:
                self._place(candidate.id, candidate.weight)
        points, owners = self._points, self._owners
        start = bisect.bisect_left(points, _point(request.key))
        size = len(points)
        for step in range(size):
            owner = by_id.get(owners[(start + step) % size])
            if owner is not None:
                return owner
        raise AssertionError("every candidate owns ring points")  # pragma: no cover

    def _place(self, member: str, weight: float) -> None:
        if member in self._members:
            keep = [i for i, owner in enumerate(self._owners) if owner != member]
            self._points = [self._points[i] for i in keep]
            self._owners = [self._owners[i] for i in keep]
        self._members[member] = weight
        for replica in range(max(1, round(self.replicas * weight))):
            point = _point(f"{member}#{replica}")
            index = bisect.bisect_left(self._points, point)
            self._points.insert(index, point)
            self._owners.insert(index, member)


@attrs.define(kw_only=True, eq=False)
class PriorityStrategy:
    """Tiers by ``priority`` (0 is the first tier): a later tier serves only when no candidate
    of an earlier one is eligible. Within a tier, two random choices by load."""

    name: ClassVar[str] = "priority"
    guarantees: ClassVar[frozenset[str]] = frozenset()
    sampling: ClassVar[int] = 0
    rng: random.Random = _rng_field()
    _within: PowerOfTwoChoicesStrategy = attrs.field(init=False)

    @_within.default
    def _make_within(self) -> PowerOfTwoChoicesStrategy:
        return PowerOfTwoChoicesStrategy(rng=self.rng)

    def select(self, candidates: Sequence[C], request: Request) -> C:
        if not candidates:
            raise _empty(self)
        top = min(candidate.priority for candidate in candidates)
        tier = [candidate for candidate in candidates if candidate.priority == top]
        return self._within.select(tier, request)


BUILTIN_STRATEGIES: tuple[type, ...] = (
    RoundRobinStrategy,
    WeightedRoundRobinStrategy,
    RandomStrategy,
    WeightedRandomStrategy,
    LeastLoadedStrategy,
    PowerOfTwoChoicesStrategy,
    LeastLatencyStrategy,
    PeakEwmaStrategy,
    ConsistentHashStrategy,
    PriorityStrategy,
)
