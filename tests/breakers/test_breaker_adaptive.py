"""The ``adaptive`` breaker: the core contract, a reference-model state machine, edge cases."""

from __future__ import annotations

import random
from typing import Any

import pytest
from gleitzeit_breaker_adaptive import plugin
from gleitzeit_breaker_adaptive.breaker import AdaptiveThrottlingBreaker
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize

from gleitzeit_core import BreakerState, CallOutcome, ConfigError, ManualClock, Permit
from gleitzeit_core._structuring import build_component
from gleitzeit_core.testing import BreakerContract

from .machine import BreakerMachine
from .packaging import check_entry_point, check_lazy_plugin_module, check_lazy_reference

CLOSED, FORCED_OPEN, DISABLED = BreakerState.CLOSED, BreakerState.FORCED_OPEN, BreakerState.DISABLED
SUCCESS, FAILURE, IGNORED = CallOutcome.SUCCESS, CallOutcome.FAILURE, CallOutcome.IGNORED


class ConstantRandom(random.Random):
    """An rng whose every draw is the same number, to pin admission decisions down."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return self.value


NEVER_REFUSE = 0.999_999_999  # below any probability the tests reach only when p ~ 1
ALWAYS_REFUSE = 0.0  # refuses whenever p > 0


# -- the core contract ------------------------------------------------------------------------
class TestContract(BreakerContract):
    """With its default options it honours the core's BreakerContract as a breaker that trips
    (refuses calls after sustained failure) without a deterministic OPEN state or trials."""

    deterministic = False
    max_trial_permits = None
    trips = True

    def make_breaker(self, clock: ManualClock) -> AdaptiveThrottlingBreaker:
        return AdaptiveThrottlingBreaker(clock=clock, rng=random.Random(7))


class TestContractShortWindow(BreakerContract):
    """A short, coarse window and a strict k still honour the contract."""

    deterministic = False
    max_trial_permits = None
    trips = True

    def make_breaker(self, clock: ManualClock) -> AdaptiveThrottlingBreaker:
        return AdaptiveThrottlingBreaker(
            clock=clock, window=10.0, buckets=5, k=1.0, rng=random.Random(11)
        )


# -- reference model --------------------------------------------------------------------------
class Model:
    """The SRE formula over a plain event list: every request and accept is kept with its
    bucket number and the window is recounted on every read. A refused attempt is a request
    when refused; an admitted call becomes a request (and an accept unless it failed) when it
    finishes.

    A ticket is the episode it was issued in; the episode grows with every operator action,
    and an outcome only counts if its ticket is of the current episode.
    """

    def __init__(self, seed: int, **options: Any) -> None:
        self.o = options
        self.width = options["window"] / options["buckets"]
        self.rng = random.Random(seed)
        self.events: list[tuple[int, str]] = []
        self.admin: BreakerState | None = None
        self.episode = 0
        self.transitions: list[tuple[BreakerState, BreakerState]] = []

    def visible(self) -> BreakerState:
        return self.admin if self.admin is not None else CLOSED

    def bucket(self, now: float) -> int:
        return int(now // self.width)

    def counts(self, now: float) -> tuple[int, int]:
        oldest = self.bucket(now) - self.o["buckets"] + 1
        live = [kind for bucket, kind in self.events if bucket >= oldest]
        return live.count("request"), live.count("accept")

    def probability(self, now: float) -> float:
        requests, accepts = self.counts(now)
        return max(0.0, (requests - self.o["k"] * accepts) / (requests + 1))

    def available(self, now: float) -> bool:
        if self.admin is not None:
            return self.admin is DISABLED
        return self.probability(now) < 1.0

    def acquire(self, now: float) -> int | None:
        if self.admin is not None:
            return self.episode if self.admin is DISABLED else None
        p = self.probability(now)
        if p > 0 and self.rng.random() < p:
            self.events.append((self.bucket(now), "request"))
            return None
        return self.episode

    def record(self, ticket: int, outcome: CallOutcome, now: float) -> None:
        if self.admin is None and ticket == self.episode:
            self.events.append((self.bucket(now), "request"))
            if outcome is not FAILURE:
                self.events.append((self.bucket(now), "accept"))

    def operator(self, action: str) -> None:
        old = self.visible()
        self.episode += 1
        if action == "reset":
            self.admin = None
            self.events = []
            new = CLOSED
        else:
            new = FORCED_OPEN if action == "force_open" else DISABLED
            self.admin = new
        if old is not new:
            self.transitions.append((old, new))


OUTCOMES = st.sampled_from([SUCCESS, FAILURE, FAILURE, IGNORED])
DURATIONS = st.sampled_from([0.0, 0.5, 30.0])
ADVANCES = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 5.0]) | st.floats(0.0, 15.0)


class AdaptiveMachine(BreakerMachine):
    """Drives the breaker and the model with the same random calls, outcomes and waits, each
    with its own rng seeded alike, so every admission decision can be compared."""

    OUTCOMES = OUTCOMES
    DURATIONS = DURATIONS
    ADVANCES = ADVANCES

    @initialize(
        width=st.sampled_from([0.5, 1.0, 2.0]),
        buckets=st.integers(1, 6),
        k=st.sampled_from([1.0, 1.5, 2.0, 3.0]),
        seed=st.integers(0, 2**32 - 1),
    )
    def build(self, width: float, buckets: int, k: float, seed: int) -> None:
        options = {"window": width * buckets, "buckets": buckets, "k": k}
        self.breaker = AdaptiveThrottlingBreaker(
            clock=self.clock, rng=random.Random(seed), **options
        )
        self.watch()
        self.model = Model(seed, **options)

    def model_acquire(self) -> Any:
        return self.model.acquire(self.clock.now())

    def model_record(self, ticket: Any, outcome: CallOutcome, duration: float) -> None:
        self.model.record(ticket, outcome, self.clock.now())

    def model_operator(self, action: str) -> None:
        self.model.operator(action)

    def check_permit(self, permit: Permit, ticket: Any) -> None:
        assert not permit.trial

    def check(self) -> None:
        now = self.clock.now()
        assert self.breaker.state is self.model.visible()
        assert (self.breaker.requests, self.breaker.accepts) == self.model.counts(now)
        assert self.breaker.rejection_probability == self.model.probability(now)
        assert self.breaker.available() == self.model.available(now)
        assert self.seen == self.model.transitions


class TestAgainstModel(AdaptiveMachine.TestCase):
    """Windowed counts, the rejection probability (exactly), every admission decision (with
    identically seeded rngs) and the transitions match the reference model for any sequence of
    concurrent calls, out-of-order outcomes, waits and operator actions."""

    settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


# -- edge cases -------------------------------------------------------------------------------
def _call(breaker: AdaptiveThrottlingBreaker, outcome: CallOutcome, times: int = 1) -> int:
    """Attempt ``times`` calls ending with ``outcome``; returns how many were refused."""
    refused = 0
    for _ in range(times):
        permit = breaker.acquire()
        if permit is None:
            refused += 1
        else:
            breaker.record(permit, outcome, 0.01)
    return refused


def test_rejection_probability_formula(clock: ManualClock) -> None:
    """p = max(0, (requests - k * accepts) / (requests + 1)) on exact numbers."""
    breaker = AdaptiveThrottlingBreaker(clock=clock, rng=ConstantRandom(NEVER_REFUSE))
    assert breaker.rejection_probability == 0.0
    assert _call(breaker, SUCCESS, 3) == 0
    assert _call(breaker, FAILURE, 7) == 0
    assert (breaker.requests, breaker.accepts) == (10, 3)
    assert breaker.rejection_probability == (10 - 2.0 * 3) / 11
    strict = AdaptiveThrottlingBreaker(clock=clock, k=1.5, rng=ConstantRandom(NEVER_REFUSE))
    _call(strict, SUCCESS, 3)
    _call(strict, FAILURE, 7)
    assert strict.rejection_probability == 0.5  # (10 - 4.5) / 11


def test_healthy_backend_is_never_throttled(clock: ManualClock) -> None:
    """While accepts * k >= requests the probability is 0 and no randomness is drawn."""
    rng = ConstantRandom(ALWAYS_REFUSE)
    breaker = AdaptiveThrottlingBreaker(clock=clock, rng=rng)
    assert _call(breaker, SUCCESS, 500) == 0
    assert _call(breaker, FAILURE, 500) == 0  # 1000 requests, 500 accepts: 1000 - 2*500 = 0
    assert rng.draws == 0
    assert breaker.rejection_probability == 0.0


def test_ignored_counts_as_accepted(clock: ManualClock) -> None:
    """An IGNORED outcome (the caller's 4xx, say) means the backend answered: it is an accept."""
    breaker = AdaptiveThrottlingBreaker(clock=clock, rng=ConstantRandom(ALWAYS_REFUSE))
    assert _call(breaker, IGNORED, 200) == 0
    assert (breaker.requests, breaker.accepts) == (200, 200)
    assert breaker.rejection_probability == 0.0


def test_refused_attempts_count_as_requests(clock: ManualClock) -> None:
    """Attempts the breaker refuses itself still count as requests, so p keeps rising."""
    breaker = AdaptiveThrottlingBreaker(clock=clock, rng=ConstantRandom(ALWAYS_REFUSE))
    assert _call(breaker, FAILURE) == 0  # p was 0 for the very first attempt
    assert _call(breaker, FAILURE, 9) == 9
    assert (breaker.requests, breaker.accepts) == (10, 0)
    assert breaker.rejection_probability == 10 / 11


def test_sustained_failure_refuses_most_calls(clock: ManualClock, log: Any) -> None:
    """A backend that fails everything gets only a small share of 1000 attempts, and the
    state never leaves CLOSED (no events)."""
    breaker = AdaptiveThrottlingBreaker(clock=clock, rng=random.Random(3))
    breaker.subscribe(log)
    refused = _call(breaker, FAILURE, 1000)
    assert refused > 950
    assert breaker.state is CLOSED
    assert breaker.available()  # never certain: a probe can always get through
    assert log.events == []


def test_partially_failing_backend_keeps_traffic(clock: ManualClock) -> None:
    """A backend answering 60 % of calls (above 1/k) keeps receiving every call."""
    breaker = AdaptiveThrottlingBreaker(clock=clock, rng=random.Random(5))
    refused = 0
    for i in range(1000):
        refused += _call(breaker, SUCCESS if i % 5 < 3 else FAILURE)
    assert refused == 0


def test_recovers_once_the_window_forgets(clock: ManualClock) -> None:
    """After a failure run, waiting one window empties the counts and every call is admitted
    again (the contract's recovery test cannot see this: the state never leaves CLOSED)."""
    breaker = AdaptiveThrottlingBreaker(clock=clock, window=60.0, buckets=6, rng=random.Random(9))
    _call(breaker, FAILURE, 200)
    assert breaker.rejection_probability > 0.9
    clock.advance(59.0)
    assert breaker.rejection_probability > 0.9  # still inside the window
    clock.advance(1.0)
    assert (breaker.requests, breaker.accepts) == (0, 0)
    assert breaker.rejection_probability == 0.0
    assert _call(breaker, SUCCESS, 100) == 0


def test_buckets_expire_one_at_a_time(clock: ManualClock) -> None:
    """With 2-second buckets, counts leave the window bucket by bucket, oldest first."""
    breaker = AdaptiveThrottlingBreaker(
        clock=clock, window=10.0, buckets=5, rng=ConstantRandom(NEVER_REFUSE)
    )
    _call(breaker, FAILURE, 3)  # bucket 500 (clock at 1000 s)
    clock.advance(2.0)
    _call(breaker, FAILURE, 4)  # bucket 501
    clock.advance(7.5)  # 1009.5: bucket 504, window = buckets 500..504
    assert breaker.requests == 7
    clock.advance(0.5)  # 1010.0: bucket 505, bucket 500 leaves
    assert breaker.requests == 4
    clock.advance(2.0)
    assert breaker.requests == 0


def test_available_consumes_no_randomness(clock: ManualClock) -> None:
    """available() and the read-only views never draw from the rng."""
    rng = ConstantRandom(NEVER_REFUSE)
    breaker = AdaptiveThrottlingBreaker(clock=clock, rng=rng)
    _call(breaker, FAILURE, 20)
    draws = rng.draws
    for _ in range(50):
        assert breaker.available()
        assert breaker.rejection_probability > 0
    assert rng.draws == draws


def test_stale_permit_after_reset_is_ignored(clock: ManualClock) -> None:
    """A call admitted before an operator reset does not count as an accept afterwards."""
    breaker = AdaptiveThrottlingBreaker(clock=clock)
    before = breaker.acquire()
    assert before is not None
    breaker.reset()
    breaker.record(before, SUCCESS, 0.01)
    assert (breaker.requests, breaker.accepts) == (0, 0)


def test_admin_states(clock: ManualClock, log: Any) -> None:
    """force_open refuses and disable admits without counting; reset returns to throttling."""
    breaker = AdaptiveThrottlingBreaker(clock=clock)
    breaker.subscribe(log)
    breaker.force_open()
    assert breaker.acquire() is None
    assert not breaker.available()
    breaker.disable()
    assert _call(breaker, FAILURE, 100) == 0
    assert breaker.requests == 0
    breaker.reset()
    assert log.states == [FORCED_OPEN, DISABLED, CLOSED]


def test_closed_permits_are_shared(clock: ManualClock) -> None:
    """Admitting calls allocates nothing: the same permit object is reused."""
    breaker = AdaptiveThrottlingBreaker(clock=clock)
    assert breaker.acquire() is breaker.acquire()


def test_calls_in_flight_are_not_rejections(clock: ManualClock) -> None:
    """Many concurrent long calls to a healthy backend are all admitted: an admitted call is
    counted when it finishes, not while it is in flight."""
    breaker = AdaptiveThrottlingBreaker(clock=clock, rng=ConstantRandom(ALWAYS_REFUSE))
    in_flight = [breaker.acquire() for _ in range(50)]
    assert None not in in_flight
    clock.advance(60.0)
    for permit in in_flight:
        breaker.record(permit, SUCCESS, 60.0)
    assert (breaker.requests, breaker.accepts) == (50, 50)
    assert breaker.rejection_probability == 0.0


@pytest.mark.parametrize(
    "options", [{"window": 0}, {"buckets": 0}, {"k": 0.5}, {"k": "2"}, {"window": -1.0}]
)
def test_invalid_options_are_rejected(options: dict[str, Any]) -> None:
    """Each out-of-range option raises ValueError naming what was expected."""
    with pytest.raises(ValueError, match="expected"):
        AdaptiveThrottlingBreaker(**options)


def test_config_table_structures_through_the_core(clock: ManualClock) -> None:
    """A config table becomes a breaker with the hub's clock and rng injected; the rng cannot
    be set from the config and a bad value is reported with its key path."""
    rng = random.Random(1)
    breaker = build_component(
        AdaptiveThrottlingBreaker,
        {"window": 60, "k": 1.5},
        path="hubs.llm.breaker",
        inject={"clock": clock, "rng": rng},
    )
    assert (breaker.window, breaker.buckets, breaker.k) == (60.0, 120, 1.5)
    assert breaker.clock is clock
    assert breaker.rng is rng
    with pytest.raises(ConfigError, match=r"hubs\.llm\.breaker\.k: expected"):
        build_component(
            AdaptiveThrottlingBreaker,
            {"k": 0.5},
            path="hubs.llm.breaker",
            inject={"clock": clock, "rng": rng},
        )


def test_plugin_registers_a_lazy_reference() -> None:
    """The hook registers ``adaptive`` as a "module:attribute" string naming the class."""
    check_lazy_reference(plugin, "adaptive", AdaptiveThrottlingBreaker)


def test_loading_the_plugin_imports_no_breaker_code() -> None:
    """Importing the plugin module (what startup does) leaves the breaker module unimported."""
    check_lazy_plugin_module("gleitzeit_breaker_adaptive")


def test_entry_point_is_installed() -> None:
    """The distribution declares entry point ``breaker-adaptive`` in group ``gleitzeit``."""
    check_entry_point("breaker-adaptive", "gleitzeit_breaker_adaptive")
