"""``BreakerContract``: what every circuit breaker must hold, checked with hypothesis.

Subclass it in a plugin's tests and implement ``make_breaker(clock)``::

    class TestMyBreaker(BreakerContract):
        max_trial_permits = 1

        def make_breaker(self, clock):
            return MyBreaker(clock=clock, failures=3)

Class attributes describe the breaker so the contract knows what to expect:

* ``max_trial_permits``: the most concurrent half-open trial calls (``None``: no half-open state);
* ``fast_duration``: a call duration the breaker never counts as slow;
* ``deterministic``: ``available()`` predicts exactly whether ``acquire()`` admits;
* ``trips``: enough failures eventually refuse calls;
* ``max_calls_to_trip`` / ``max_wait_to_recover``: generous bounds for the two above.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .._breaker import Breaker, BreakerState, BreakerTransition, Permit
from .._clock import ManualClock
from .._outcomes import CallOutcome
from .strategies import breaker_operations

# The same test functions run once per subclass: that is the point of a contract.
_CONTRACT = settings(suppress_health_check=[HealthCheck.differing_executors])

__all__ = ["BreakerContract"]

_AUTOMATIC = {BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN}


class BreakerContract:
    max_trial_permits: int | None = 1
    fast_duration: float = 0.001
    deterministic: bool = True
    trips: bool = True
    max_calls_to_trip: int = 2_000
    max_wait_to_recover: float = 3_600.0

    def make_breaker(self, clock: ManualClock) -> Breaker:
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------
    def _fresh(self) -> tuple[Breaker, ManualClock, list[BreakerTransition]]:
        clock = ManualClock()
        breaker = self.make_breaker(clock)
        events: list[BreakerTransition] = []
        breaker.subscribe(events.append)
        return breaker, clock, events

    def _trip(self, breaker: Breaker) -> int:
        """Fail calls until one is refused; returns how many calls it took."""
        for calls in range(1, self.max_calls_to_trip + 1):
            permit = breaker.acquire()
            if permit is None:
                return calls
            breaker.record(permit, CallOutcome.FAILURE, self.fast_duration)
        raise AssertionError(f"breaker still admits calls after {self.max_calls_to_trip} failures")

    # -- properties ---------------------------------------------------------------------------
    def test_starts_closed_and_admits(self) -> None:
        """A new breaker is closed, says it is available, and admits a call."""
        breaker, _, events = self._fresh()
        assert breaker.state is BreakerState.CLOSED
        assert breaker.available()
        assert isinstance(breaker.acquire(), Permit)
        assert events == []

    @settings(_CONTRACT)
    @given(st.lists(st.floats(min_value=0.0, max_value=0.001), max_size=300))
    def test_fast_successes_never_refuse(self, durations: list[float]) -> None:
        """Any number of fast successful calls keeps the breaker closed and admitting."""
        breaker, _, _ = self._fresh()
        for duration in durations:
            permit = breaker.acquire()
            assert permit is not None
            breaker.record(permit, CallOutcome.SUCCESS, min(duration, self.fast_duration))
        assert breaker.state is BreakerState.CLOSED

    @settings(_CONTRACT)
    @given(st.integers(min_value=0, max_value=300))
    def test_ignored_outcomes_change_nothing(self, count: int) -> None:
        """Calls that end IGNORED (a caller's 4xx, a cancellation) never open the breaker."""
        breaker, _, events = self._fresh()
        for _ in range(count):
            permit = breaker.acquire()
            assert permit is not None
            breaker.record(permit, CallOutcome.IGNORED, self.fast_duration)
        assert breaker.state is BreakerState.CLOSED
        assert events == []

    def test_sustained_failure_refuses_calls(self) -> None:
        """Enough consecutive failures make the breaker refuse calls (if it trips at all)."""
        if not self.trips:
            return
        breaker, _, events = self._fresh()
        self._trip(breaker)
        if self.deterministic:
            assert not breaker.available()
            assert breaker.state is BreakerState.OPEN
            assert events
            assert events[-1].new is BreakerState.OPEN

    def test_recovers_after_the_backend_heals(self) -> None:
        """After tripping, waiting and then succeeding trial calls brings the breaker back."""
        if not self.trips:
            return
        breaker, clock, _ = self._fresh()
        self._trip(breaker)
        waited = 0.0
        step = 1.0
        successes = 0
        while breaker.state is not BreakerState.CLOSED:
            permit = breaker.acquire()
            if permit is None:
                assert waited < self.max_wait_to_recover, "breaker never admitted a trial call"
                clock.advance(step)
                waited += step
                continue
            breaker.record(permit, CallOutcome.SUCCESS, self.fast_duration)
            successes += 1
            assert successes < self.max_calls_to_trip, "successes never closed the breaker"
        assert breaker.available()

    def _trip_and_wait(self, breaker: Breaker, clock: ManualClock) -> None:
        """Trip the breaker, then move time on until it would admit a trial call."""
        self._trip(breaker)
        waited = 0.0
        while not breaker.available():
            assert waited < self.max_wait_to_recover, "breaker never admitted a trial call"
            clock.advance(1.0)
            waited += 1.0

    def test_half_open_admits_at_most_the_trial_permits(self) -> None:
        """However many callers arrive at once after the open period, no more than
        ``max_trial_permits`` trial calls are admitted until some of them return."""
        if not self.trips or not self.deterministic or self.max_trial_permits is None:
            return
        breaker, clock, _ = self._fresh()
        self._trip_and_wait(breaker, clock)
        admitted = [p for p in (breaker.acquire() for _ in range(50)) if p is not None]
        assert 1 <= len(admitted) <= self.max_trial_permits
        assert all(p.trial for p in admitted)
        assert not breaker.available()

    def test_ignored_trial_gives_its_permit_back(self) -> None:
        """A trial call that ends IGNORED (a caller's 4xx) frees its slot for another trial."""
        if not self.trips or not self.deterministic or self.max_trial_permits is None:
            return
        breaker, clock, _ = self._fresh()
        self._trip_and_wait(breaker, clock)
        admitted = [p for p in (breaker.acquire() for _ in range(50)) if p is not None]
        breaker.record(admitted[0], CallOutcome.IGNORED, self.fast_duration)
        again = breaker.acquire()
        assert again is not None
        assert again.trial

    def test_late_success_from_before_the_trip_does_not_close(self) -> None:
        """A success admitted while closed but reported after the breaker opened is stale:
        it must not close (or half-close) the breaker."""
        if not self.trips or not self.deterministic:
            return
        breaker, _, _ = self._fresh()
        early = breaker.acquire()
        assert early is not None
        self._trip(breaker)
        assert breaker.state is BreakerState.OPEN
        breaker.record(early, CallOutcome.SUCCESS, self.fast_duration)
        assert _state_of(breaker) is BreakerState.OPEN
        assert not breaker.available()

    def test_everything_is_admitted_again_after_waiting(self) -> None:
        """After a failure storm and ``max_wait_to_recover`` seconds, calls are admitted."""
        if not self.trips:
            return
        breaker, clock, _ = self._fresh()
        self._trip(breaker)
        clock.advance(self.max_wait_to_recover)
        permit = breaker.acquire()
        assert permit is not None
        if not self.deterministic:
            # no hard open state: once the window forgot the storm, nothing is refused
            assert all(breaker.acquire() is not None for _ in range(50))

    def test_forced_open_refuses_until_reset(self) -> None:
        """force_open() refuses every call whatever happens, and reset() admits again."""
        breaker, clock, events = self._fresh()
        breaker.force_open()
        assert breaker.state is BreakerState.FORCED_OPEN
        clock.advance(10 * self.max_wait_to_recover)
        assert not breaker.available()
        assert breaker.acquire() is None
        assert breaker.state is BreakerState.FORCED_OPEN
        breaker.reset()
        assert _state_of(breaker) is BreakerState.CLOSED
        assert breaker.acquire() is not None
        assert [e.new for e in events] == [BreakerState.FORCED_OPEN, BreakerState.CLOSED]

    def test_disabled_admits_despite_failures(self) -> None:
        """A disabled breaker admits every call and records nothing, even a long failure run."""
        breaker, _, _ = self._fresh()
        breaker.disable()
        for _ in range(self.max_calls_to_trip):
            permit = breaker.acquire()
            assert permit is not None
            breaker.record(permit, CallOutcome.FAILURE, self.fast_duration)
        assert breaker.state is BreakerState.DISABLED
        assert breaker.available()

    @settings(_CONTRACT, max_examples=150)
    @given(breaker_operations())
    def test_random_operations_keep_invariants(self, operations: list[tuple[str, float]]) -> None:
        """Under any sequence of calls, outcomes, waits and peeks the breaker stays consistent:

        ``available()`` predicts ``acquire()`` (for deterministic breakers) without side
        effects, concurrent half-open trials never exceed ``max_trial_permits``, and listeners
        see a gap-free chain of real state changes.
        """
        breaker, clock, events = self._fresh()
        # Each outstanding permit remembers how many transitions had happened when it was issued,
        # so trials of the current half-open episode can be counted without private state.
        outstanding: list[tuple[Permit, int]] = []
        for op, value in operations:
            if op == "acquire":
                before = breaker.available()
                if self.deterministic:
                    assert breaker.available() == before, "available() changed state"
                permit = breaker.acquire()
                if self.deterministic:
                    assert (permit is not None) == before, "available() mispredicted acquire()"
                if permit is not None:
                    outstanding.append((permit, len(events)))
            elif op == "advance":
                clock.advance(value)
            elif outstanding:
                permit, _ = outstanding.pop(int(value * 1000) % len(outstanding))
                outcome = {
                    "success": CallOutcome.SUCCESS,
                    "failure": CallOutcome.FAILURE,
                    "ignored": CallOutcome.IGNORED,
                }[op]
                breaker.record(permit, outcome, value)
            state = breaker.state
            assert state in _AUTOMATIC
            if self.max_trial_permits is not None and state is BreakerState.HALF_OPEN:
                current = sum(1 for p, epoch in outstanding if p.trial and epoch == len(events))
                assert current <= self.max_trial_permits
        for earlier, later in itertools.pairwise(events):
            assert earlier.new is later.old
        for event in events:
            assert event.old is not event.new


def _state_of(breaker: Breaker) -> BreakerState:
    """Read the state afresh (keeps type checkers from narrowing it across calls)."""
    return breaker.state
