"""The ``window`` breaker: the core contract, a reference-model state machine, edge cases."""

from __future__ import annotations

import math
from typing import Any

import pytest
from gleitzeit_breaker_window import plugin
from gleitzeit_breaker_window.breaker import SlidingWindowBreaker
from gleitzeit_breaker_window.windows import CountWindow, TimeWindow
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize

from gleitzeit_core import BreakerState, CallOutcome, ConfigError, ManualClock, Permit
from gleitzeit_core._structuring import build_component
from gleitzeit_core.testing import BreakerContract

from .machine import BreakerMachine
from .packaging import check_entry_point, check_lazy_plugin_module, check_lazy_reference

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
FORCED_OPEN, DISABLED = BreakerState.FORCED_OPEN, BreakerState.DISABLED
SUCCESS, FAILURE, IGNORED = CallOutcome.SUCCESS, CallOutcome.FAILURE, CallOutcome.IGNORED


# -- the core contract ------------------------------------------------------------------------
class TestContractDefaults(BreakerContract):
    """The count-window breaker with its default options honours the core's BreakerContract."""

    max_trial_permits = 5

    def make_breaker(self, clock: ManualClock) -> SlidingWindowBreaker:
        return SlidingWindowBreaker(clock=clock)


class TestContractTimeWindow(BreakerContract):
    """A time-window breaker with a slow-call threshold honours the core's BreakerContract."""

    max_trial_permits = 3
    fast_duration = 0.5

    def make_breaker(self, clock: ManualClock) -> SlidingWindowBreaker:
        return SlidingWindowBreaker(
            clock=clock,
            window_type="time",
            window_size=10,
            minimum_calls=5,
            slow_call_duration=2.0,
            slow_call_rate_threshold=50.0,
            open_for=5.0,
            half_open_permits=3,
        )


# -- reference model --------------------------------------------------------------------------
class Model:
    """resilience4j's cycle written out plainly: the closed window is the full list of recorded
    calls, filtered on every read (the last N of them, or those of the last N whole seconds).

    A ticket is ``(episode, trial)``; the episode number grows with every state change and
    every operator action, and an outcome only counts if its ticket is of the current episode.
    """

    def __init__(self, **options: Any) -> None:
        self.o = options
        self.state = CLOSED
        self.admin: BreakerState | None = None
        self.episode = 0
        self.history: list[tuple[int, bool, bool]] = []  # (second, failed, slow) while closed
        self.open_until = 0.0
        self.trials_out = 0
        self.trial_results: list[tuple[bool, bool]] = []
        self.transitions: list[tuple[BreakerState, BreakerState]] = []

    def visible(self) -> BreakerState:
        return self.admin if self.admin is not None else self.state

    def move(self, new: BreakerState) -> None:
        self.transitions.append((self.state, new))
        self.state = new
        self.episode += 1

    def window(self, now: float) -> list[tuple[int, bool, bool]]:
        size = self.o["window_size"]
        if self.o["window_type"] == "count":
            return self.history[-size:]
        return [call for call in self.history if call[0] > math.floor(now) - size]

    def too_bad(self, results: list[tuple[bool, bool]]) -> bool:
        calls = len(results)
        failure_rate = 100.0 * sum(failed for failed, _ in results) / calls
        slow_rate = 100.0 * sum(slow for _, slow in results) / calls
        return (
            failure_rate >= self.o["failure_rate_threshold"]
            or slow_rate >= self.o["slow_call_rate_threshold"]
        )

    def tick(self, now: float) -> None:
        if self.admin is None and self.state is OPEN and now >= self.open_until:
            self.trials_out = 0
            self.trial_results = []
            self.move(HALF_OPEN)

    def available(self) -> bool:
        if self.admin is not None:
            return self.admin is DISABLED
        if self.state is HALF_OPEN:
            return self.trials_out + len(self.trial_results) < self.o["half_open_permits"]
        return self.state is CLOSED

    def acquire(self) -> tuple[int, bool] | None:
        if not self.available():
            return None
        trial = self.admin is None and self.state is HALF_OPEN
        if trial:
            self.trials_out += 1
        return (self.episode, trial)

    def open(self, now: float) -> None:
        self.history = []
        self.open_until = now + self.o["open_for"]
        self.move(OPEN)

    def record(self, ticket: tuple[int, bool], outcome: CallOutcome, duration: float, now: float):
        episode, trial = ticket
        if self.admin is not None or episode != self.episode:
            return
        failed, slow = outcome is FAILURE, duration > self.o["slow_call_duration"]
        if trial:
            self.trials_out -= 1
            if outcome is IGNORED:
                return
            self.trial_results.append((failed, slow))
            if len(self.trial_results) == self.o["half_open_permits"]:
                if self.too_bad(self.trial_results):
                    self.open(now)
                else:
                    self.history = []
                    self.move(CLOSED)
            return
        if outcome is IGNORED:
            return
        self.history.append((math.floor(now), failed, slow))
        window = self.window(now)
        if len(window) >= self.o["minimum_calls"] and self.too_bad([c[1:] for c in window]):
            self.open(now)

    def operator(self, action: str) -> None:
        old = self.visible()
        self.episode += 1
        if action == "reset":
            self.admin = None
            self.state = CLOSED
            self.history = []
            self.trials_out = 0
            self.trial_results = []
            new = CLOSED
        else:
            new = FORCED_OPEN if action == "force_open" else DISABLED
            self.admin = new
        if old is not new:
            self.transitions.append((old, new))


THRESHOLDS = st.sampled_from([1.0, 25.0, 50.0, 60.0, 100.0])
OUTCOMES = st.sampled_from([SUCCESS, FAILURE, FAILURE, IGNORED])
DURATIONS = st.sampled_from([0.0, 0.5, 1.0, 3.0])  # 1.0 is not slow: slower than 1.0 is
ADVANCES = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5, 6.0]) | st.floats(0.0, 20.0)


class WindowMachine(BreakerMachine):
    """Drives the breaker and the model with the same random calls, outcomes, durations and
    waits; several trial calls may be outstanding at once and finish in any order."""

    OUTCOMES = OUTCOMES
    DURATIONS = DURATIONS
    ADVANCES = ADVANCES

    @initialize(
        window_type=st.sampled_from(["count", "time"]),
        window_size=st.integers(1, 6),
        minimum_calls=st.integers(1, 6),
        failure_rate_threshold=THRESHOLDS,
        slow_call_rate_threshold=THRESHOLDS,
        open_for=st.sampled_from([1.0, 2.5, 5.0]),
        half_open_permits=st.integers(1, 4),
    )
    def build(self, **options: Any) -> None:
        if options["window_type"] == "count":
            options["minimum_calls"] = min(options["minimum_calls"], options["window_size"])
        options["slow_call_duration"] = 1.0
        self.breaker = SlidingWindowBreaker(clock=self.clock, **options)
        self.watch()
        self.model = Model(**options)

    def model_acquire(self) -> Any:
        self.model.tick(self.clock.now())
        return self.model.acquire()

    def model_record(self, ticket: Any, outcome: CallOutcome, duration: float) -> None:
        self.model.tick(self.clock.now())
        self.model.record(ticket, outcome, duration, self.clock.now())

    def model_operator(self, action: str) -> None:
        self.model.tick(self.clock.now())
        self.model.operator(action)

    def check_permit(self, permit: Permit, ticket: Any) -> None:
        assert permit.trial == ticket[1]

    def check(self) -> None:
        self.model.tick(self.clock.now())
        assert self.breaker.state is self.model.visible()
        assert self.breaker.available() == self.model.available()
        assert self.seen == self.model.transitions
        assert self.breaker.calls_in_window == len(self.model.window(self.clock.now()))


class TestAgainstModel(WindowMachine.TestCase):
    """State, window contents, every admission decision and every transition match the
    reference model for any sequence of concurrent calls, out-of-order outcomes, call
    durations, waits and operator actions, for count and time windows alike."""

    settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


# -- the windows on their own ----------------------------------------------------------------
WINDOW_OPS = st.lists(
    st.tuples(st.booleans(), st.booleans())  # record a call: (failed, slow)
    | st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0])
    | st.floats(0.0, 12.0),  # or wait
    max_size=80,
)


@given(size=st.integers(1, 6), ops=WINDOW_OPS)
def test_windows_match_a_naive_list(size: int, ops: list[Any]) -> None:
    """After any mix of records and waits, both windows' running totals equal a recount of a
    plain list of every call (the last `size` of them; those of the last `size` seconds)."""
    clock = ManualClock()
    count, timed = CountWindow(size), TimeWindow(size, clock)
    calls: list[tuple[int, bool, bool]] = []
    for op in ops:
        if isinstance(op, tuple):
            failed, slow = op
            count.add(failed, slow)
            timed.add(failed, slow)
            calls.append((math.floor(clock.now()), failed, slow))
        else:
            clock.advance(op)
            timed.expire()
        recent = calls[-size:]
        live = [c for c in calls if c[0] > math.floor(clock.now()) - size]
        for window, expected in ((count, recent), (timed, live)):
            assert window.calls == len(expected)
            assert window.failures == sum(c[1] for c in expected)
            assert window.slow == sum(c[2] for c in expected)


# -- edge cases -------------------------------------------------------------------------------
def _call(
    breaker: SlidingWindowBreaker, outcome: CallOutcome, times: int = 1, duration: float = 0.01
):
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, outcome, duration)


def _trip(breaker: SlidingWindowBreaker, clock: ManualClock) -> None:
    """Open the breaker and wait until it is half-open."""
    _call(breaker, FAILURE, breaker.minimum_calls)
    assert breaker.state is OPEN
    clock.advance(breaker.open_for)
    assert breaker.state is HALF_OPEN


def test_minimum_calls_gate(clock: ManualClock, log: Any) -> None:
    """Below minimum_calls no rate is judged (9 of 9 failing stays closed); the 10th opens it."""
    breaker = SlidingWindowBreaker(clock=clock, window_size=20, minimum_calls=10)
    breaker.subscribe(log)
    _call(breaker, FAILURE, 9)
    assert breaker.state is CLOSED
    _call(breaker, FAILURE)
    assert breaker.state is OPEN
    assert log.states == [OPEN]
    assert "failure rate 100.0%" in log.events[0].reason


def test_failure_rate_threshold_is_inclusive(clock: ManualClock) -> None:
    """A failure rate exactly at the threshold opens; just below it does not."""
    below = SlidingWindowBreaker(clock=clock, window_size=10, minimum_calls=10)
    _call(below, SUCCESS, 6)
    _call(below, FAILURE, 4)
    assert below.state is CLOSED
    at = SlidingWindowBreaker(clock=clock, window_size=10, minimum_calls=10)
    _call(at, SUCCESS, 5)
    _call(at, FAILURE, 5)
    assert at.state is OPEN


def test_count_window_forgets_the_oldest_calls(clock: ManualClock) -> None:
    """Only the last window_size calls count: old failures leave as new calls arrive."""
    breaker = SlidingWindowBreaker(clock=clock, window_size=10, minimum_calls=10)
    _call(breaker, FAILURE, 4)
    _call(breaker, SUCCESS, 16)  # a cumulative count would now be 4 of 20
    assert breaker.failure_rate == 0.0
    _call(breaker, FAILURE, 4)
    assert breaker.state is CLOSED
    _call(breaker, FAILURE)  # 5 of the last 10; cumulatively only 9 of 29
    assert breaker.state is OPEN


def test_count_window_ignores_time(clock: ManualClock) -> None:
    """In a count window a failure from an hour ago still counts."""
    breaker = SlidingWindowBreaker(clock=clock, window_size=5, minimum_calls=5)
    _call(breaker, FAILURE, 4)
    clock.advance(3_600.0)
    _call(breaker, FAILURE)
    assert breaker.state is OPEN


def test_time_window_expires_by_whole_seconds(clock: ManualClock) -> None:
    """A time window holds the current second and the window_size - 1 before it: calls from
    9 s ago (of a 10 s window) count, calls from 10 s ago do not."""
    clock.advance(0.5)  # mid-second, so "9 s later" stays in bucket 9
    breaker = SlidingWindowBreaker(clock=clock, window_type="time", window_size=10, minimum_calls=5)
    _call(breaker, FAILURE, 4)
    clock.advance(9.0)
    assert breaker.calls_in_window == 4
    clock.advance(1.0)
    assert breaker.calls_in_window == 0
    _call(breaker, FAILURE)
    assert breaker.state is CLOSED  # 1 call < minimum_calls
    clock.advance(9.0)
    _call(breaker, FAILURE, 4)
    assert breaker.state is OPEN  # 5 calls spread over 10 s


def test_time_window_forgets_after_a_long_pause(clock: ManualClock) -> None:
    """After a pause longer than the window every bucket is empty, whatever the pause length."""
    breaker = SlidingWindowBreaker(clock=clock, window_type="time", window_size=5, minimum_calls=3)
    _call(breaker, FAILURE, 2)
    clock.advance(1e6)
    _call(breaker, FAILURE)
    assert breaker.calls_in_window == 1
    assert breaker.state is CLOSED


def test_memory_is_bounded_by_the_window(clock: ManualClock) -> None:
    """A count window holds at most window_size calls; a time window only the last seconds'."""
    count = SlidingWindowBreaker(clock=clock, window_size=50, minimum_calls=10)
    _call(count, SUCCESS, 10_000)
    assert count.calls_in_window == 50
    timed = SlidingWindowBreaker(clock=clock, window_type="time", window_size=10)
    for _ in range(100):
        _call(timed, SUCCESS, 5)
        clock.advance(1.0)
    assert timed.calls_in_window == 45  # 9 full past seconds; the current one is still empty


def test_slow_call_rate_opens(clock: ManualClock, log: Any) -> None:
    """Successful but slow calls open the breaker once their share reaches the threshold; a
    call exactly at slow_call_duration is not slow."""
    breaker = SlidingWindowBreaker(
        clock=clock,
        window_size=4,
        minimum_calls=4,
        slow_call_duration=2.0,
        slow_call_rate_threshold=50.0,
    )
    breaker.subscribe(log)
    _call(breaker, SUCCESS, 2, duration=0.1)
    _call(breaker, SUCCESS, 2, duration=2.0)
    assert breaker.state is CLOSED
    _call(breaker, SUCCESS, 1, duration=2.001)
    assert breaker.state is CLOSED  # 1 slow of the last 4
    _call(breaker, SUCCESS, 1, duration=30.0)
    assert breaker.state is OPEN
    assert "slow-call rate 50.0%" in log.events[-1].reason


def test_default_slow_call_threshold_needs_every_call_slow(clock: ManualClock) -> None:
    """With the default slow-call threshold (100 %) one fast call among slow ones keeps it
    closed."""
    breaker = SlidingWindowBreaker(clock=clock, window_size=10, minimum_calls=10)
    _call(breaker, SUCCESS, 9, duration=61.0)
    _call(breaker, SUCCESS, 1, duration=1.0)
    assert breaker.state is CLOSED
    _call(breaker, SUCCESS, 9, duration=61.0)
    assert breaker.state is CLOSED  # the fast one is still in the window
    _call(breaker, SUCCESS, 1, duration=61.0)
    assert breaker.state is OPEN


def test_ignored_never_counts(clock: ManualClock) -> None:
    """IGNORED outcomes are not calls: they neither fill the window nor dilute its rates."""
    breaker = SlidingWindowBreaker(clock=clock, window_size=10, minimum_calls=10)
    _call(breaker, FAILURE, 9)
    _call(breaker, IGNORED, 100)
    assert breaker.calls_in_window == 9
    _call(breaker, FAILURE)
    assert breaker.state is OPEN


def test_half_open_permits_a_fixed_budget_of_trials(clock: ManualClock) -> None:
    """Half-open hands out exactly half_open_permits trials however many callers ask at once,
    and does not refill the budget as trials succeed."""
    breaker = SlidingWindowBreaker(
        clock=clock, window_size=10, minimum_calls=10, half_open_permits=3
    )
    _trip(breaker, clock)
    permits = [breaker.acquire() for _ in range(10)]
    admitted = [p for p in permits if p is not None]
    assert len(admitted) == 3
    assert all(p.trial for p in admitted)
    breaker.record(admitted[0], SUCCESS, 0.01)
    assert breaker.state is HALF_OPEN
    assert not breaker.available()
    assert breaker.acquire() is None


def test_half_open_decides_only_when_all_trials_returned(clock: ManualClock) -> None:
    """Two failures of four trials are not judged until the other two return; 2/4 = 50 % then
    reopens, while 1/4 closes with an empty window."""
    breaker = SlidingWindowBreaker(
        clock=clock, window_size=10, minimum_calls=10, half_open_permits=4
    )
    _trip(breaker, clock)
    trials = [breaker.acquire() for _ in range(4)]
    assert None not in trials
    breaker.record(trials[0], FAILURE, 0.01)
    breaker.record(trials[1], FAILURE, 0.01)
    assert breaker.state is HALF_OPEN
    breaker.record(trials[2], SUCCESS, 0.01)
    assert breaker.state is HALF_OPEN
    breaker.record(trials[3], SUCCESS, 0.01)
    assert breaker.state is OPEN
    clock.advance(breaker.open_for)
    trials = [breaker.acquire() for _ in range(4)]
    for permit, outcome in zip(trials, [FAILURE, SUCCESS, SUCCESS, SUCCESS], strict=True):
        assert permit is not None
        breaker.record(permit, outcome, 0.01)
    assert breaker.state is CLOSED
    assert breaker.calls_in_window == 0


def test_slow_trials_reopen(clock: ManualClock) -> None:
    """Trials are judged on the slow-call rate too: all-successful but slow trials reopen."""
    breaker = SlidingWindowBreaker(
        clock=clock, window_size=4, minimum_calls=4, half_open_permits=2, slow_call_duration=1.0
    )
    _trip(breaker, clock)
    _call(breaker, SUCCESS, 2, duration=5.0)
    assert breaker.state is OPEN


def test_ignored_trial_returns_its_permit(clock: ManualClock) -> None:
    """An IGNORED trial gives its permit back to the budget and is not part of the verdict."""
    breaker = SlidingWindowBreaker(
        clock=clock, window_size=10, minimum_calls=10, half_open_permits=2
    )
    _trip(breaker, clock)
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None
    assert second is not None
    assert breaker.acquire() is None
    breaker.record(first, IGNORED, 0.01)
    third = breaker.acquire()
    assert third is not None
    breaker.record(second, SUCCESS, 0.01)
    breaker.record(third, SUCCESS, 0.01)
    assert breaker.state is CLOSED


def test_stale_permits_are_ignored(clock: ManualClock) -> None:
    """Outcomes of calls admitted before the breaker opened count neither as trials nor in the
    next closed window."""
    breaker = SlidingWindowBreaker(
        clock=clock, window_size=10, minimum_calls=10, half_open_permits=1
    )
    early = [breaker.acquire() for _ in range(3)]
    _trip(breaker, clock)
    trial = breaker.acquire()
    assert trial is not None
    breaker.record(early[0], SUCCESS, 0.01)
    assert breaker.state is HALF_OPEN
    assert breaker.acquire() is None
    breaker.record(trial, SUCCESS, 0.01)
    assert breaker.state is CLOSED
    breaker.record(early[1], FAILURE, 0.01)
    breaker.record(early[2], SUCCESS, 0.01)
    assert breaker.calls_in_window == 0


def test_closed_permits_are_shared(clock: ManualClock) -> None:
    """Admitting calls in closed state allocates nothing: the same permit object is reused."""
    breaker = SlidingWindowBreaker(clock=clock)
    assert breaker.acquire() is breaker.acquire()


@pytest.mark.parametrize(
    "options",
    [
        {"window_type": "sliding"},
        {"window_size": 0},
        {"window_size": 5},  # minimum_calls (10) could never be reached in a 5-call window
        {"minimum_calls": 0},
        {"failure_rate_threshold": 0},
        {"failure_rate_threshold": 100.5},
        {"slow_call_rate_threshold": -1},
        {"slow_call_duration": 0},
        {"open_for": 0},
        {"half_open_permits": 0},
    ],
)
def test_invalid_options_are_rejected(options: dict[str, Any]) -> None:
    """Each out-of-range option raises ValueError naming what was expected."""
    with pytest.raises(ValueError, match="expected"):
        SlidingWindowBreaker(**options)


def test_time_window_may_need_more_calls_than_seconds() -> None:
    """minimum_calls above window_size is fine for a time window (many calls per second)."""
    breaker = SlidingWindowBreaker(window_type="time", window_size=5, minimum_calls=50)
    assert breaker.minimum_calls == 50


def test_config_table_structures_through_the_core(clock: ManualClock) -> None:
    """A config table becomes a breaker with the hub's clock injected; a bad value is reported
    with its key path and what was expected."""
    breaker = build_component(
        SlidingWindowBreaker,
        {"window_type": "time", "window_size": 30, "minimum_calls": 20},
        path="hubs.llm.breaker",
        inject={"clock": clock},
    )
    assert (breaker.window_type, breaker.window_size, breaker.minimum_calls) == ("time", 30, 20)
    assert breaker.clock is clock
    with pytest.raises(ConfigError, match=r"hubs\.llm\.breaker\.minimum_calls: expected"):
        build_component(
            SlidingWindowBreaker,
            {"window_size": 5},
            path="hubs.llm.breaker",
            inject={"clock": clock},
        )
    with pytest.raises(ConfigError, match=r"failure_rate_threshold: expected a percentage"):
        build_component(
            SlidingWindowBreaker,
            {"failure_rate_threshold": 0},
            path="hubs.llm.breaker",
            inject={"clock": clock},
        )


def test_plugin_registers_a_lazy_reference() -> None:
    """The hook registers ``window`` as a "module:attribute" string naming the class."""
    check_lazy_reference(plugin, "window", SlidingWindowBreaker)


def test_loading_the_plugin_imports_no_breaker_code() -> None:
    """Importing the plugin module (what startup does) leaves the breaker module unimported."""
    check_lazy_plugin_module("gleitzeit_breaker_window")


def test_entry_point_is_installed() -> None:
    """The distribution declares entry point ``breaker-window`` in group ``gleitzeit``."""
    check_entry_point("breaker-window", "gleitzeit_breaker_window")
