"""The circuit-breaker protocol every breaker plugin implements, its states, and a pass-through.

A hub keeps one breaker per resource. For each call it asks ``available()`` while choosing
candidates (no side effects), then ``acquire()`` on the chosen one (which may refuse, and in
half-open hands out one of a bounded number of trial permits), and finally ``record()`` with the
permit, the outcome and the call's duration. Outcomes the hub does not blame on the resource
(a caller's 4xx, a cancellation) arrive as ``CallOutcome.IGNORED`` so the permit is returned.

Concrete breakers subclass :class:`BaseBreaker`, which owns the admin states (forced-open,
disabled), listeners and the permit bookkeeping, and implement the ``_``-prefixed methods.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs

from .clock import Clock, SystemClock
from .outcomes import CallOutcome

__all__ = [
    "BaseBreaker",
    "Breaker",
    "BreakerListener",
    "BreakerState",
    "BreakerTransition",
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

    Subclasses keep their automatic state in ``self._state`` (CLOSED, OPEN or HALF_OPEN), change
    it only through ``_transition`` and implement ``_available``, ``_acquire``, ``_record`` and
    ``_clear``.

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
        self._tick()
        return self._state

    # The three methods below run on every call: the admin check is one attribute read in the
    # common case, and module constants spare the enum attribute lookups.
    def available(self) -> bool:
        admin = self._admin
        if admin is None:
            return self._available()
        return admin is _DISABLED

    def acquire(self) -> Permit | None:
        admin = self._admin
        if admin is None:
            return self._acquire()
        return self._permit(trial=False) if admin is _DISABLED else None

    def record(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        if self._admin is None:
            self._record(permit, outcome, duration if duration > 0.0 else 0.0)

    def force_open(self) -> None:
        self._set_admin(BreakerState.FORCED_OPEN, "forced open by an operator")

    def disable(self) -> None:
        self._set_admin(BreakerState.DISABLED, "disabled by an operator")

    def reset(self) -> None:
        old = self.state
        self._admin = None
        self._clear()
        self._state = BreakerState.CLOSED
        self._generation += 1
        self._closed_permit = None
        if old is not BreakerState.CLOSED:
            self._notify(old, BreakerState.CLOSED, "reset by an operator")

    def subscribe(self, listener: BreakerListener) -> None:
        self._listeners.append(listener)

    # -- for subclasses -----------------------------------------------------------------------
    def _tick(self) -> None:
        """Apply time-driven transitions (open -> half-open); called before reading the state."""

    def _available(self) -> bool:
        raise NotImplementedError

    def _acquire(self) -> Permit | None:
        raise NotImplementedError

    def _record(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        raise NotImplementedError

    def _clear(self) -> None:
        """Forget all counters (called by reset)."""

    def _permit(self, *, trial: bool) -> Permit:
        if trial:
            return Permit(trial=True, generation=self._generation, issued_at=self.clock.now())
        # Closed-state permits are shared per generation: admitting a call allocates nothing.
        cached = self._closed_permit
        if cached is None or cached.generation != self._generation:
            cached = Permit(trial=False, generation=self._generation, issued_at=0.0)
            self._closed_permit = cached
        return cached

    def _transition(self, new: BreakerState, reason: str) -> None:
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


@attrs.define(kw_only=True, eq=False)
class PassThroughBreaker(BaseBreaker):
    """Admits every call and never opens; the default when a hub configures no breaker."""

    def _available(self) -> bool:
        return True

    def _acquire(self) -> Permit | None:
        return self._permit(trial=False)

    def _record(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        return None
