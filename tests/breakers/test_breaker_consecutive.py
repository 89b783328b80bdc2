"""The ``consecutive`` breaker: the core contract, a reference-model state machine, edge cases."""

from __future__ import annotations

from typing import Any

import pytest
from gleitzeit_breaker_consecutive import plugin
from gleitzeit_breaker_consecutive.breaker import ConsecutiveFailuresBreaker
from hypothesis import settings
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
    """The breaker with its default options honours the core's BreakerContract."""

    max_trial_permits = 1

    def make_breaker(self, clock: ManualClock) -> ConsecutiveFailuresBreaker:
        return ConsecutiveFailuresBreaker(clock=clock)


class TestContractWideHalfOpen(BreakerContract):
    """With three concurrent trials and two successes to close it still honours the contract."""

    max_trial_permits = 3

    def make_breaker(self, clock: ManualClock) -> ConsecutiveFailuresBreaker:
        return ConsecutiveFailuresBreaker(
            clock=clock, failures=2, open_for=1.0, half_open_permits=3, successes_to_close=2
        )


# -- reference model --------------------------------------------------------------------------
class Model:
    """The consecutive-failures cycle written out plainly, with no shared state or shortcuts.

    A ticket is ``(episode, trial)``; the episode number grows with every state change and
    every operator action, and an outcome only counts if its ticket is of the current episode.
    """

    def __init__(self, **options: Any) -> None:
        self.o = options
        self.state = CLOSED
        self.admin: BreakerState | None = None
        self.episode = 0
        self.in_a_row = 0
        self.open_duration = 0.0
        self.open_until = 0.0
        self.trials = 0
        self.trial_successes = 0
        self.transitions: list[tuple[BreakerState, BreakerState]] = []

    def visible(self) -> BreakerState:
        return self.admin if self.admin is not None else self.state

    def move(self, new: BreakerState) -> None:
        self.transitions.append((self.state, new))
        self.state = new
        self.episode += 1

    def tick(self, now: float) -> None:
        if self.admin is None and self.state is OPEN and now >= self.open_until:
            self.move(HALF_OPEN)
            self.trials = 0
            self.trial_successes = 0

    def available(self) -> bool:
        if self.admin is not None:
            return self.admin is DISABLED
        if self.state is HALF_OPEN:
            return self.trials < self.o["half_open_permits"]
        return self.state is CLOSED

    def acquire(self) -> tuple[int, bool] | None:
        if not self.available():
            return None
        trial = self.admin is None and self.state is HALF_OPEN
        if trial:
            self.trials += 1
        return (self.episode, trial)

    def open(self, now: float, duration: float) -> None:
        self.open_duration = duration
        self.open_until = now + duration
        self.in_a_row = 0
        self.move(OPEN)

    def record(self, ticket: tuple[int, bool], outcome: CallOutcome, now: float) -> None:
        episode, trial = ticket
        if self.admin is not None or episode != self.episode:
            return
        if not trial:
            if outcome is SUCCESS:
                self.in_a_row = 0
            elif outcome is FAILURE:
                self.in_a_row += 1
                if self.in_a_row >= self.o["failures"]:
                    self.open(now, self.o["open_for"])
            return
        self.trials -= 1
        if outcome is SUCCESS:
            self.trial_successes += 1
            if self.trial_successes >= self.o["successes_to_close"]:
                self.in_a_row = 0
                self.move(CLOSED)
        elif outcome is FAILURE:
            grown = min(self.open_duration * self.o["backoff"], self.o["max_open_for"])
            self.open(now, grown)

    def operator(self, action: str) -> None:
        old = self.visible()
        self.episode += 1
        if action == "reset":
            self.admin = None
            self.state = CLOSED
            self.in_a_row = self.trials = self.trial_successes = 0
            self.open_duration = self.open_until = 0.0
            new = CLOSED
        else:
            new = FORCED_OPEN if action == "force_open" else DISABLED
            self.admin = new
        if old is not new:
            self.transitions.append((old, new))


OUTCOMES = st.sampled_from([SUCCESS, FAILURE, FAILURE, IGNORED])
DURATIONS = st.sampled_from([0.0, 0.5, 30.0])
ADVANCES = st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0, 10.0]) | st.floats(0.0, 60.0)


class ConsecutiveMachine(BreakerMachine):
    """Drives the breaker and the model with the same random calls, outcomes and waits."""

    OUTCOMES = OUTCOMES
    DURATIONS = DURATIONS
    ADVANCES = ADVANCES

    @initialize(
        failures=st.integers(1, 4),
        open_for=st.sampled_from([1.0, 2.0, 5.0]),
        backoff=st.sampled_from([1.0, 1.5, 2.0, 3.0]),
        cap=st.sampled_from([1, 2, 4, 10]),
        half_open_permits=st.integers(1, 3),
        successes_to_close=st.integers(1, 3),
    )
    def build(self, cap: int, **options: Any) -> None:
        options["max_open_for"] = options["open_for"] * cap
        self.breaker = ConsecutiveFailuresBreaker(clock=self.clock, **options)
        self.watch()
        self.model = Model(**options)

    def model_acquire(self) -> Any:
        self.model.tick(self.clock.now())
        return self.model.acquire()

    def model_record(self, ticket: Any, outcome: CallOutcome, duration: float) -> None:
        self.model.tick(self.clock.now())
        self.model.record(ticket, outcome, self.clock.now())

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


class TestAgainstModel(ConsecutiveMachine.TestCase):
    """State, every admission decision and every transition match the reference model for any
    sequence of concurrent calls, out-of-order outcomes, waits and operator actions."""

    settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


# -- edge cases -------------------------------------------------------------------------------
def _fail(breaker: ConsecutiveFailuresBreaker, times: int) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, FAILURE, 0.01)


def _trip(breaker: ConsecutiveFailuresBreaker, clock: ManualClock) -> None:
    """Open the breaker and wait until it is half-open."""
    _fail(breaker, breaker.failures)
    assert breaker.state is OPEN
    clock.advance(breaker.open_for)
    assert breaker.state is HALF_OPEN


def test_opens_on_the_nth_consecutive_failure(clock: ManualClock, log: Any) -> None:
    """failures-1 failures keep it closed; the failures-th opens it, with one event."""
    breaker = ConsecutiveFailuresBreaker(clock=clock, failures=3)
    breaker.subscribe(log)
    _fail(breaker, 2)
    assert breaker.state is CLOSED
    _fail(breaker, 1)
    assert breaker.state is OPEN
    assert log.states == [OPEN]
    assert "3 consecutive failures" in log.events[0].reason
    assert breaker.acquire() is None
    assert not breaker.available()


def test_success_resets_the_count(clock: ManualClock) -> None:
    """A success in closed state starts the failure count again from zero."""
    breaker = ConsecutiveFailuresBreaker(clock=clock, failures=3)
    for _ in range(10):
        _fail(breaker, 2)
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, SUCCESS, 0.01)
    assert breaker.state is CLOSED


def test_ignored_neither_counts_nor_resets(clock: ManualClock) -> None:
    """IGNORED outcomes leave the failure count alone: not a failure, not a success."""
    breaker = ConsecutiveFailuresBreaker(clock=clock, failures=3)
    _fail(breaker, 2)
    for _ in range(50):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, IGNORED, 0.01)
    assert breaker.state is CLOSED
    _fail(breaker, 1)
    assert breaker.state is OPEN


def test_ignored_trial_returns_its_permit(clock: ManualClock) -> None:
    """An IGNORED trial frees its half-open slot without counting toward closing or opening."""
    breaker = ConsecutiveFailuresBreaker(clock=clock, failures=1, successes_to_close=1)
    _trip(breaker, clock)
    for _ in range(20):
        permit = breaker.acquire()
        assert permit is not None
        assert permit.trial
        assert breaker.acquire() is None
        breaker.record(permit, IGNORED, 0.01)
        assert breaker.state is HALF_OPEN
    permit = breaker.acquire()
    assert permit is not None
    breaker.record(permit, SUCCESS, 0.01)
    assert breaker.state is CLOSED


def test_half_open_limit_under_concurrent_acquires(clock: ManualClock) -> None:
    """However many callers arrive at once, at most half_open_permits trials are in flight."""
    breaker = ConsecutiveFailuresBreaker(clock=clock, failures=1, half_open_permits=2)
    _trip(breaker, clock)
    permits = [breaker.acquire() for _ in range(10)]
    admitted = [p for p in permits if p is not None]
    assert len(admitted) == 2
    assert all(p.trial for p in admitted)
    assert not breaker.available()
    breaker.record(admitted[0], IGNORED, 0.01)
    assert breaker.available()
    third = breaker.acquire()
    assert third is not None
    assert breaker.acquire() is None


def test_default_admits_exactly_one_probe(clock: ManualClock) -> None:
    """With the defaults the first caller after the open period is the only probe (Polly-style)."""
    breaker = ConsecutiveFailuresBreaker(clock=clock)
    _trip(breaker, clock)
    assert breaker.acquire() is not None
    assert [breaker.acquire() for _ in range(100)] == [None] * 100


def test_backoff_grows_and_is_capped(clock: ManualClock) -> None:
    """Each reopen without a close multiplies the open period by backoff, up to max_open_for;
    a close forgets the backoff."""
    breaker = ConsecutiveFailuresBreaker(
        clock=clock, failures=1, open_for=10.0, backoff=2.0, max_open_for=35.0
    )
    _fail(breaker, 1)
    periods = []
    for _ in range(5):
        half_open_at = breaker.half_open_at
        assert half_open_at is not None
        periods.append(half_open_at - clock.now())
        clock.advance(half_open_at - clock.now() - 0.5)
        assert breaker.acquire() is None  # not a moment early
        clock.advance(0.5)
        trial = breaker.acquire()
        assert trial is not None
        breaker.record(trial, FAILURE, 0.01)
    assert periods == pytest.approx([10.0, 20.0, 35.0, 35.0, 35.0])
    clock.advance(35.0)
    trial = breaker.acquire()
    assert trial is not None
    breaker.record(trial, SUCCESS, 0.01)
    assert breaker.state is CLOSED
    assert breaker.half_open_at is None
    _fail(breaker, 1)
    assert breaker.half_open_at == pytest.approx(clock.now() + 10.0)


def test_successes_to_close(clock: ManualClock) -> None:
    """It closes only after successes_to_close successful trials; a failure among them reopens."""
    breaker = ConsecutiveFailuresBreaker(clock=clock, failures=1, successes_to_close=3)
    _trip(breaker, clock)
    for _ in range(2):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, SUCCESS, 0.01)
        assert breaker.state is HALF_OPEN
    permit = breaker.acquire()
    assert permit is not None
    breaker.record(permit, FAILURE, 0.01)
    assert breaker.state is OPEN
    clock.advance(breaker.max_open_for)
    for _ in range(3):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, SUCCESS, 0.01)
    assert breaker.state is CLOSED


def test_stale_success_after_opening_is_ignored(clock: ManualClock) -> None:
    """A success from a call admitted before the breaker opened neither closes it nor spends
    a trial; a stale failure arriving after it closed again does not count either."""
    breaker = ConsecutiveFailuresBreaker(clock=clock, failures=2)
    slow_ok = breaker.acquire()
    slow_bad = breaker.acquire()
    assert slow_ok is not None
    assert slow_bad is not None
    _fail(breaker, 2)
    breaker.record(slow_ok, SUCCESS, 50.0)
    assert breaker.state is OPEN
    clock.advance(breaker.open_for)
    trial = breaker.acquire()
    assert trial is not None
    breaker.record(slow_ok, SUCCESS, 50.0)
    assert breaker.state is HALF_OPEN
    assert breaker.acquire() is None  # the stale success did not free the trial slot
    breaker.record(trial, SUCCESS, 0.01)
    assert breaker.state is CLOSED
    _fail(breaker, 1)
    breaker.record(slow_bad, FAILURE, 50.0)  # would be the second failure in a row
    assert breaker.state is CLOSED


def test_trial_of_an_earlier_episode_is_ignored(clock: ManualClock) -> None:
    """A trial permit from a previous half-open episode neither frees a slot nor closes the
    breaker in the current one."""
    breaker = ConsecutiveFailuresBreaker(clock=clock, failures=1, half_open_permits=2)
    _trip(breaker, clock)
    old_trial, failing_trial = breaker.acquire(), breaker.acquire()
    assert old_trial is not None
    assert failing_trial is not None
    breaker.record(failing_trial, FAILURE, 0.01)
    assert breaker.state is OPEN
    clock.advance(breaker.max_open_for)
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None
    assert second is not None
    breaker.record(old_trial, SUCCESS, 0.01)
    assert breaker.state is HALF_OPEN
    assert breaker.acquire() is None


def test_stale_permit_after_reset_is_ignored(clock: ManualClock) -> None:
    """Outcomes of calls admitted before an operator reset do not count afterwards."""
    breaker = ConsecutiveFailuresBreaker(clock=clock, failures=1)
    before = breaker.acquire()
    assert before is not None
    breaker.reset()
    breaker.record(before, FAILURE, 0.01)
    assert breaker.state is CLOSED


def test_closed_permits_are_shared(clock: ManualClock) -> None:
    """Admitting calls in closed state allocates nothing: the same permit object is reused."""
    breaker = ConsecutiveFailuresBreaker(clock=clock)
    assert breaker.acquire() is breaker.acquire()


@pytest.mark.parametrize(
    "options",
    [
        {"failures": 0},
        {"open_for": 0},
        {"backoff": 0.5},
        {"open_for": 60.0, "max_open_for": 30.0},
        {"half_open_permits": 0},
        {"successes_to_close": 0},
    ],
)
def test_invalid_options_are_rejected(options: dict[str, Any]) -> None:
    """Each out-of-range option raises ValueError naming what was expected."""
    with pytest.raises(ValueError, match="expected"):
        ConsecutiveFailuresBreaker(**options)


def test_config_table_structures_through_the_core(clock: ManualClock) -> None:
    """A config table becomes a breaker with the hub's clock injected; a bad value is reported
    with its key path and what was expected."""
    breaker = build_component(
        ConsecutiveFailuresBreaker,
        {"failures": 3, "open_for": 10, "max_open_for": 60},
        path="hubs.llm.breaker",
        inject={"clock": clock},
    )
    assert (breaker.failures, breaker.open_for, breaker.max_open_for) == (3, 10.0, 60.0)
    assert (breaker.backoff, breaker.half_open_permits, breaker.successes_to_close) == (2.0, 1, 1)
    assert breaker.clock is clock
    with pytest.raises(ConfigError, match=r"hubs\.llm\.breaker\.max_open_for: expected"):
        build_component(
            ConsecutiveFailuresBreaker,
            {"open_for": 60.0, "max_open_for": 30.0},
            path="hubs.llm.breaker",
            inject={"clock": clock},
        )


def test_plugin_registers_a_lazy_reference() -> None:
    """The hook registers ``consecutive`` as a "module:attribute" string naming the class."""
    check_lazy_reference(plugin, "consecutive", ConsecutiveFailuresBreaker)


def test_loading_the_plugin_imports_no_breaker_code() -> None:
    """Importing the plugin module (what startup does) leaves the breaker module unimported."""
    check_lazy_plugin_module("gleitzeit_breaker_consecutive")


def test_entry_point_is_installed() -> None:
    """The distribution declares entry point ``breaker-consecutive`` in group ``gleitzeit``."""
    check_entry_point("breaker-consecutive", "gleitzeit_breaker_consecutive")
