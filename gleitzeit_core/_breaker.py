"""The circuit-breaker protocol every breaker plugin implements, its states, and a pass-through.

A hub keeps one breaker per resource. For each call it asks ``available()`` while choosing
candidates (no side effects), then ``acquire()`` on the chosen one (which may refuse, and in
half-open hands out one of a bounded number of trial permits), and finally ``record()`` with the
permit, the outcome and the call's duration. Outcomes the hub does not blame on the resource
(a caller's 4xx, a cancellation) arrive as ``CallOutcome.IGNORED`` so the permit is returned.

Concrete breakers subclass :class:`BaseBreaker`, which owns the admin states (forced-open,
disabled), listeners and the permit bookkeeping, and override its template methods
(``admits``, ``admit``, ``judge``, ``forget``, ``tick``). Breakers that open for a while and then
let a bounded number of trial calls through subclass :class:`GatedBreaker`, which owns that
half-open gate, and only say how to judge calls and trials. :class:`BucketRing` counts events
over a sliding time window for breakers that need one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol, runtime_checkable

import attrs

from ._clock import Clock, SystemClock
from ._outcomes import CallOutcome

__all__ = [
    "BaseBreaker",
    "Breaker",
    "BreakerListener",
    "BreakerState",
    "BreakerTransition",
    "BucketRing",
    "GatedBreaker",
    "PassThroughBreaker",
    "Permit",
]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"  # an operator isolated the resource; only reset() leaves it
    DISABLED = "disabled"  # an operator switched the breaker off; admits everything


@attrs.frozen
class BreakerTransition:
    """A state change, as delivered to listeners."""

    old: BreakerState
    new: BreakerState
    at: float
    reason: str


@attrs.frozen
class Permit:
    """Proof that a call was admitted; hand it back to ``record``.

    ``generation`` is the breaker's state epoch when the permit was issued: an outcome that
    arrives after the breaker moved on (say, a slow success after it opened) can be told apart.
    Closed-state permits are shared within a generation and carry ``issued_at=0.0``; only
    half-open trial permits record when they were issued.
    """

    trial: bool
    generation: int
    issued_at: float


BreakerListener = Callable[[BreakerTransition], None]

_DISABLED = BreakerState.DISABLED
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_IGNORED = CallOutcome.IGNORED


@runtime_checkable
class Breaker(Protocol):
    """What a hub needs from a circuit breaker."""

    @property
    def state(self) -> BreakerState: ...

    def available(self) -> bool:
        """Could a call be admitted now? Must not change any state."""
        ...

    def acquire(self) -> Permit | None:
        """Admit one call (returning its permit) or refuse it (``None``)."""
        ...

    def record(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        """Report how an admitted call ended and how long it took, in seconds."""
        ...

    def force_open(self) -> None: ...

    def disable(self) -> None: ...

    def reset(self) -> None:
        """Back to closed with clean counters; also leaves the admin states."""
        ...

    def subscribe(self, listener: BreakerListener) -> None: ...


@attrs.define(kw_only=True, eq=False)
class BaseBreaker:
    """Shared machinery: admin states, listeners, permits, an injectable clock.

    A subclass keeps its automatic state (CLOSED, OPEN or HALF_OPEN, read as
    ``automatic_state``), changes it only through ``transition`` and overrides the template
    methods ``admits``, ``admit``, ``judge`` and ``forget`` (and ``tick`` for time-driven
    changes). Permits come from ``issue_permit``; ``is_current`` tells whether an outcome still
    belongs to the episode its permit was issued in.

    Two attrs details matter for a breaker's speed and its config: declare the subclass with
    ``@attrs.define(kw_only=True, eq=False, on_setattr=attrs.setters.NO_OP)`` (otherwise a
    validated field gives every counter write a generated ``__setattr__``), and note that the
    config loader runs each field's validator on its own with ``instance=None`` before building
    the object, so a validator comparing two fields must return early when ``instance`` is None
    (it runs again, with the instance, when the class is built).
    """

    clock: Clock = attrs.field(factory=SystemClock, repr=False)
    _state: BreakerState = attrs.field(init=False, default=BreakerState.CLOSED)
    _admin: BreakerState | None = attrs.field(init=False, default=None)
    _generation: int = attrs.field(init=False, default=0)
    _listeners: list[BreakerListener] = attrs.field(init=False, factory=list, repr=False)
    _closed_permit: Permit | None = attrs.field(init=False, default=None, repr=False)

    # -- the protocol -------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        if self._admin is not None:
            return self._admin
        self.tick()
        return self._state

    # The three methods below run on every call: the admin check is one attribute read in the
    # common case, and module constants spare the enum attribute lookups.
    def available(self) -> bool:
        admin = self._admin
        if admin is None:
            return self.admits()
        return admin is _DISABLED

    def acquire(self) -> Permit | None:
        admin = self._admin
        if admin is None:
            return self.admit()
        return self.issue_permit(trial=False) if admin is _DISABLED else None

    def record(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        if self._admin is None:
            self.judge(permit, outcome, duration if duration > 0.0 else 0.0)

    def force_open(self) -> None:
        self._set_admin(BreakerState.FORCED_OPEN, "forced open by an operator")

    def disable(self) -> None:
        self._set_admin(BreakerState.DISABLED, "disabled by an operator")

    def reset(self) -> None:
        old = self.state
        self._admin = None
        self.forget()
        self._state = BreakerState.CLOSED
        self._generation += 1
        self._closed_permit = None
        if old is not BreakerState.CLOSED:
            self._notify(old, BreakerState.CLOSED, "reset by an operator")

    def subscribe(self, listener: BreakerListener) -> None:
        self._listeners.append(listener)

    # -- template methods: override these -----------------------------------------------------
    def tick(self) -> None:
        """Apply time-driven transitions (open -> half-open); called before reading the state."""

    def admits(self) -> bool:
        """Could a call be admitted now? (``available`` without the admin states.)"""
        raise NotImplementedError

    def admit(self) -> Permit | None:
        """Admit a call with ``issue_permit`` or refuse it (``acquire`` without admin states)."""
        raise NotImplementedError

    def judge(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        """Learn from an admitted call's outcome (``record`` without the admin states)."""
        raise NotImplementedError

    def forget(self) -> None:
        """Drop all counters (called by ``reset``)."""

    # -- helpers for subclasses ---------------------------------------------------------------
    @property
    def automatic_state(self) -> BreakerState:
        """The state the breaker's own logic is in, ignoring operator overrides and time."""
        return self._state

    def is_current(self, permit: Permit) -> bool:
        """Whether ``permit`` was issued in the current episode (no state change since)."""
        return permit.generation == self._generation

    def issue_permit(self, *, trial: bool) -> Permit:
        if trial:
            return Permit(trial=True, generation=self._generation, issued_at=self.clock.now())
        # Closed-state permits are shared per generation: admitting a call allocates nothing.
        cached = self._closed_permit
        if cached is None or cached.generation != self._generation:
            cached = Permit(trial=False, generation=self._generation, issued_at=0.0)
            self._closed_permit = cached
        return cached

    def transition(self, new: BreakerState, reason: str) -> None:
        """Move the automatic state to ``new`` (a new episode) and tell the listeners why."""
        old = self._state
        if old is new:
            return
        self._state = new
        self._generation += 1
        self._notify(old, new, reason)

    # -- internals ------------------------------------------------------------------------------
    def _set_admin(self, state: BreakerState, reason: str) -> None:
        old = self.state
        self._admin = state
        self._generation += 1
        if old is not state:
            self._notify(old, state, reason)

    def _notify(self, old: BreakerState, new: BreakerState, reason: str) -> None:
        event = BreakerTransition(old=old, new=new, at=self.clock.now(), reason=reason)
        for listener in list(self._listeners):
            listener(event)


@attrs.define(kw_only=True, eq=False, on_setattr=attrs.setters.NO_OP)
class GatedBreaker(BaseBreaker):
    """A breaker that opens for a while, then lets a bounded number of trial calls through.

    OPEN refuses every call until ``open_until``; then HALF_OPEN hands out at most
    ``half_open_permits`` trial permits: at the same time (the default), or in the whole episode
    when ``TRIALS_PER_EPISODE`` is set (a breaker that judges a fixed batch of trials). An
    ignored trial gives its permit back. Permits are counted when handed out, so concurrent
    callers cannot slip past the limit. Subclasses say how to judge calls (``judge_call``) and
    returned trials (``judge_trial``), open with ``trip`` and close with ``transition``.
    """

    TRIALS_PER_EPISODE: ClassVar[bool] = False

    half_open_permits: int = 1
    _open_until: float = attrs.field(init=False, default=0.0)
    _open_duration: float = attrs.field(init=False, default=0.0)
    _trials_out: int = attrs.field(init=False, default=0)  # trial permits not yet returned
    _trials_done: int = attrs.field(init=False, default=0)  # trials returned this episode

    @property
    def half_open_at(self) -> float | None:
        """Clock time at which an OPEN breaker starts admitting trial calls (else ``None``)."""
        return self._open_until if self.state is _OPEN else None

    @property
    def open_duration(self) -> float:
        """How long the current (or last) open period is."""
        return self._open_duration

    @property
    def trials_done(self) -> int:
        """Trial calls returned (not ignored) in the current half-open episode."""
        return self._trials_done

    def trip(self, duration: float, reason: str) -> None:
        """Open now for ``duration`` seconds (a subclass's judgement, or a peer's: a replica
        that saw the resource fail)."""
        self._open_duration = duration
        self._open_until = self.clock.now() + duration
        self.on_open()
        self.transition(_OPEN, f"{reason}; open for {duration:g} s")

    # -- hooks for subclasses ---------------------------------------------------------------
    def judge_call(self, outcome: CallOutcome, duration: float) -> None:
        """A closed-state call ended (ignored outcomes included)."""
        raise NotImplementedError

    def judge_trial(self, outcome: CallOutcome, duration: float) -> None:
        """A half-open trial call ended with a success or a failure (``trials_done`` counts
        it already)."""
        raise NotImplementedError

    def on_open(self) -> None:
        """Forget what the closed state counted (called by ``trip``)."""

    def half_open_reason(self) -> str:
        return (
            f"open for {self._open_duration:g} s; admitting up to "
            f"{self.half_open_permits} trial call(s)"
        )

    # -- BaseBreaker template methods ---------------------------------------------------------
    def tick(self) -> None:
        if self._state is _OPEN and self.clock.now() >= self._open_until:
            self._trials_out = self._trials_done = 0
            self.transition(_HALF_OPEN, self.half_open_reason())

    def _trial_budget_left(self) -> bool:
        used = self._trials_out
        if self.TRIALS_PER_EPISODE:
            used += self._trials_done
        return used < self.half_open_permits

    def admits(self) -> bool:
        if self._state is _OPEN:
            self.tick()
        state = self._state
        if state is _CLOSED:
            return True
        return state is _HALF_OPEN and self._trial_budget_left()

    def admit(self) -> Permit | None:
        state = self._state
        if state is _CLOSED:
            return self.issue_permit(trial=False)
        if state is _OPEN:
            self.tick()
            if self._state is not _HALF_OPEN:
                return None
        if not self._trial_budget_left():
            return None
        self._trials_out += 1
        return self.issue_permit(trial=True)

    def judge(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        if permit.generation != self._generation:
            return  # issued before the last state change: says nothing about this episode
        if not permit.trial:
            self.judge_call(outcome, duration)
            return
        self._trials_out -= 1
        if outcome is _IGNORED:
            return  # the permit goes back to the budget; nothing was learnt
        self._trials_done += 1
        self.judge_trial(outcome, duration)

    def forget(self) -> None:
        self._open_duration = 0.0
        self._open_until = 0.0
        self._trials_out = self._trials_done = 0


class BucketRing:
    """Running totals of a few counters over the last ``buckets`` buckets of ``width`` seconds.

    An event counts in bucket ``floor(now / width)``. Totals sit next to the buckets and shrink
    as buckets leave the window, so counting and reading are O(1) (a roll empties each bucket at
    most once per window of time). Callers bring the window up to ``now`` before counting or
    reading: ``if now >= ring.edge: ring.roll(now)`` (the comparison is the whole cost while the
    current bucket lasts). ``totals[i]`` is counter ``i``'s total; ``add(i)`` counts one.
    """

    __slots__ = ("_buckets", "_head", "_rows", "_width", "edge", "index", "totals")

    def __init__(self, width: float, buckets: int, counters: int, now: float) -> None:
        self._width = width
        self._buckets = buckets
        self._rows: list[list[int]] = []
        self.totals: list[int] = []
        self.index = 0
        self.clear(now, counters)

    @property
    def rows(self) -> Sequence[list[int]]:
        """One list of per-bucket counts per counter (index with ``ring.index`` to add)."""
        return self._rows

    def add(self, counter: int, n: int = 1) -> None:
        self._rows[counter][self.index] += n
        self.totals[counter] += n

    def roll(self, now: float) -> None:
        """Drop the buckets that ``now`` pushed out of the window."""
        bucket = int(now // self._width)
        head = self._head
        if bucket <= head:
            return
        size = self._buckets
        if bucket - head >= size:
            self.clear(now)
            return
        totals = self.totals
        for counter, row in enumerate(self._rows):
            dropped = 0
            for b in range(head + 1, bucket + 1):
                i = b % size
                dropped += row[i]
                row[i] = 0
            totals[counter] -= dropped
        self._move_head(bucket)

    def clear(self, now: float, counters: int | None = None) -> None:
        n = len(self._rows) if counters is None else counters
        self._rows = [[0] * self._buckets for _ in range(n)]
        self.totals = [0] * n
        self._move_head(int(now // self._width))

    def _move_head(self, bucket: int) -> None:
        self._head = bucket  # number of the newest bucket
        self.index = bucket % self._buckets
        self.edge = (bucket + 1) * self._width  # where the next bucket starts


@attrs.define(kw_only=True, eq=False)
class PassThroughBreaker(BaseBreaker):
    """Admits every call and never opens; the default when a hub configures no breaker."""

    def admits(self) -> bool:
        return True

    def admit(self) -> Permit | None:
        return self.issue_permit(trial=False)

    def judge(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        return None
