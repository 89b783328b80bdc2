"""Which resources of a hub may take a request: the full scan, the sampled fast path, and
the reasons given when none may.

A resource is eligible when it is not draining, not already tried by the request, able to
serve it (the hub's ``serves``), under its concurrency caps (``max_concurrency`` and the hub's
per-slot ``capacity``), admitted by its breaker, and healthy (not probed unhealthy, not
ejected). When no resource of the hub is healthy, the unhealthy ones are eligible anyway
(panic routing), so a hub never fails everything at once for want of a probe.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from .breaker import BreakerState
from .request import Request
from .resources import Health, Resource

if TYPE_CHECKING:
    from .hub import ResourceHub

__all__ = ["eligible", "reasons", "sample"]


def eligible(
    hub: ResourceHub, request: Request, exclude: Collection[str], now: float
) -> tuple[list[Resource], bool, bool]:
    """Resources that may take the request now, whether waiting could help, and panic."""
    eligible: list[Resource] = []
    fallback: list[Resource] = []
    any_healthy = False
    saturated = False
    slot = request.slot
    for resource in hub._members:
        if resource.draining:
            continue
        healthy = resource.health is not Health.UNHEALTHY and not resource.is_ejected(now)
        any_healthy = any_healthy or healthy
        if resource.spec.id in exclude or hub.serves(resource, request) is not None:
            continue
        cap = resource.spec.max_concurrency
        if cap is not None and resource.metrics.in_flight >= cap:
            saturated = True
            continue
        if slot is not None:
            slot_cap = hub.capacity(resource, slot)
            if slot_cap is not None and resource.slots.get(slot, 0) >= slot_cap:
                saturated = True
                continue
        if not resource.breaker.available():
            if resource.breaker.state is BreakerState.HALF_OPEN:
                saturated = True  # its trial permits are busy; one will come back
            continue
        (eligible if healthy else fallback).append(resource)
    panic = not any_healthy and bool(fallback)
    if panic:
        eligible = fallback
    return eligible, saturated, panic


def sample(
    hub: ResourceHub, size: int, request: Request, exclude: Collection[str], now: float
) -> list[Resource] | None:
    """``size`` distinct healthy eligible resources drawn uniformly, or None if a few
    draws do not find them (then the caller scans everything)."""
    members = hub._members
    count = len(members)
    random_ = hub.rng.random
    slot = request.slot
    found: list[Resource] = []
    for _ in range(4 * size):
        resource = members[int(random_() * count)]
        if (
            resource in found
            or resource.draining
            or resource.health is Health.UNHEALTHY
            or (resource.ejected_until is not None and now < resource.ejected_until)
            or resource.spec.id in exclude
        ):
            continue
        cap = resource.spec.max_concurrency
        if cap is not None and resource.metrics.in_flight >= cap:
            continue
        if slot is not None:
            slot_cap = hub.capacity(resource, slot)
            if slot_cap is not None and resource.slots.get(slot, 0) >= slot_cap:
                continue
        if hub.serves(resource, request) is not None or not resource.breaker.available():
            continue
        found.append(resource)
        if len(found) == size:
            return found
    return None


def reasons(
    hub: ResourceHub, request: Request, exclude: Collection[str], now: float
) -> dict[str, str]:
    """Why each resource is not eligible; computed only when a request is refused."""
    found: dict[str, str] = {}
    for resource in hub._members:
        rid = resource.spec.id
        why = None
        if resource.draining:
            why = "draining"
        elif rid in exclude:
            why = "already tried by this request"
        elif (served := hub.serves(resource, request)) is not None:
            why = served
        elif (
            resource.spec.max_concurrency is not None
            and resource.in_flight >= resource.spec.max_concurrency
        ):
            why = f"at max_concurrency ({resource.spec.max_concurrency})"
        elif (
            request.slot is not None
            and (cap := hub.capacity(resource, request.slot)) is not None
            and resource.slots.get(request.slot, 0) >= cap
        ):
            why = f"{request.slot}: all {cap} slots busy"
        elif not resource.breaker.available():
            why = f"breaker {resource.breaker.state.value}"
        elif resource.is_ejected(now):
            assert resource.ejected_until is not None
            why = f"ejected for {resource.ejected_until - now:.1f} s more"
        elif resource.health is Health.UNHEALTHY:
            why = "unhealthy" + (f": {resource.health_detail}" if resource.health_detail else "")
        if why is not None:
            found[rid] = why
    return found
