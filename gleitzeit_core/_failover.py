"""Failover: run an operation on a leased resource and, on a retryable failure, on resources
the request has not tried yet, within one deadline.

Each try is bounded by the hub's ``attempt_timeout`` (except the last, which may use whatever
time is left), so a hung resource costs a try and not the whole deadline. A failure that is
not retryable (a caller's 4xx) goes back at once; when nobody is left, the caller sees the last
real error rather than a generic "no resource".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, TypeVar

from ._errors import NoResourceAvailable, RequestTimeout
from ._lease import Lease
from ._request import Request

if TYPE_CHECKING:
    from ._balancing import Strategy
    from ._hub import ResourceHub

__all__ = ["open_with_failover"]

T = TypeVar("T")


async def open_with_failover(
    hub: ResourceHub,
    operation: Callable[[Lease], Awaitable[T]],
    request: Request | None = None,
    *,
    retries: int | None = None,
    strategy: Strategy | None = None,
    exclude: Collection[str] = (),
) -> tuple[T, Lease]:
    """The body of ``ResourceHub.open`` (its docstring says what it promises), kept here so
    the failover loop has one home apart from the hub's bookkeeping."""
    request = request or Request()
    deadline = hub.deadline_for(request)
    budget = hub.retries if retries is None else retries
    tried: list[str] = list(exclude)
    last_error: BaseException | None = None
    for attempt in range(budget + 1):
        remaining = deadline - hub.clock.now()
        if remaining <= 0:
            break
        try:
            lease = await hub.acquire(
                request,
                exclude=tried,
                strategy=strategy,
                timeout=remaining,
                count_refusal=last_error is None,
            )
        except NoResourceAvailable:
            if last_error is not None:
                raise last_error from None
            raise
        if last_error is not None:
            hub.counters["failovers"] += 1  # another resource really took over
        tried.append(lease.resource.spec.id)
        budget_s = remaining
        if hub.attempt_timeout is not None and attempt < budget:
            # a hung resource costs one try, not the whole deadline (Envoy's per_try_timeout);
            # the last try may use whatever time is left
            budget_s = min(remaining, hub.attempt_timeout)
        timer = asyncio.timeout(budget_s)
        try:
            async with timer:
                result = await operation(lease)
        except BaseException as exc:
            failure = hub.classify(exc)
            lease.fail(failure)
            # uvloop's timers run on a millisecond clock and may fire a little before the
            # deadline by hub.clock: the deadline's own timer expiring is out of time too
            out_of_time = hub.clock.now() >= deadline or (timer.expired() and budget_s >= remaining)
            if isinstance(exc, TimeoutError) and out_of_time:
                raise RequestTimeout(
                    f"hub {hub.name!r}: no answer within the request deadline "
                    f"(tried {', '.join(tried)})"
                ) from exc
            if not failure.retryable or attempt == budget or out_of_time:
                raise
            last_error = exc
            continue
        return result, lease
    if last_error is not None:
        raise last_error
    raise RequestTimeout(f"hub {hub.name!r}: the request deadline passed before any attempt")
