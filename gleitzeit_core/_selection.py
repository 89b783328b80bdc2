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

from ._breaker import BreakerState
from ._request import Request
from ._resources import Health, Resource

if TYPE_CHECKING:
    from ._hub import ResourceHub

__all__ = ["eligible", "reasons", "sample"]


# Why a resource cannot take a request (health and ejection aside), cheapest checks first.
# Codes, not messages, so the hot paths build no strings; ``reasons`` words them.
_OK, _DRAINING, _TRIED, _NOT_SERVED, _AT_CAP, _SLOT_FULL, _BREAKER = range(7)


def _blocker(
    hub: ResourceHub, resource: Resource, request: Request, exclude: Collection[str]
) -> int:
    if resource.draining:
        return _DRAINING
    if resource.spec.id in exclude:
        return _TRIED
    if hub.serves(resource, request) is not None:
        return _NOT_SERVED
    cap = resource.spec.max_concurrency
    if cap is not None and resource.in_flight >= cap:
        return _AT_CAP
    slot = request.slot
    if slot is not None:
        slot_cap = hub.capacity(resource, slot)
        if slot_cap is not None and resource.slot_in_flight(slot) >= slot_cap:
            return _SLOT_FULL
    if not resource.breaker.available():
        return _BREAKER
    return _OK


def _healthy(resource: Resource, now: float) -> bool:
    return resource.health is not Health.UNHEALTHY and not resource.is_ejected(now)


def eligible(
    hub: ResourceHub, request: Request, exclude: Collection[str], now: float
) -> tuple[list[Resource], bool, bool]:
    """Resources that may take the request now, whether waiting could help, and panic."""
    eligible: list[Resource] = []
    fallback: list[Resource] = []
    any_healthy = False
    saturated = False
    for resource in hub.members():
        if resource.draining:
            continue
        healthy = _healthy(resource, now)
        any_healthy = any_healthy or healthy
        blocked = _blocker(hub, resource, request, exclude)
        if blocked:
            if blocked in (_AT_CAP, _SLOT_FULL):
                saturated = True
            elif blocked == _BREAKER and resource.breaker.state is BreakerState.HALF_OPEN:
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
    members = hub.members()
    count = len(members)
    random_ = hub.rng.random
    found: list[Resource] = []
    for _ in range(4 * size):
        resource = members[int(random_() * count)]
        if resource in found or not _healthy(resource, now):
            continue
        if _blocker(hub, resource, request, exclude):
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
    for resource in hub.members():
        why = _describe(hub, resource, request, _blocker(hub, resource, request, exclude), now)
        if why is not None:
            found[resource.spec.id] = why
    return found


def _describe(
    hub: ResourceHub, resource: Resource, request: Request, blocked: int, now: float
) -> str | None:
    if blocked == _DRAINING:
        return "draining"
    if blocked == _TRIED:
        return "already tried by this request"
    if blocked == _NOT_SERVED:
        return hub.serves(resource, request)
    if blocked == _AT_CAP:
        return f"at max_concurrency ({resource.spec.max_concurrency})"
    if blocked == _SLOT_FULL:
        assert request.slot is not None
        return f"{request.slot}: all {hub.capacity(resource, request.slot)} slots busy"
    if blocked == _BREAKER:
        return f"breaker {resource.breaker.state.value}"
    if resource.is_ejected(now):
        assert resource.ejected_until is not None
        return f"ejected for {resource.ejected_until - now:.1f} s more"
    if resource.health is Health.UNHEALTHY:
        return "unhealthy" + (f": {resource.health_detail}" if resource.health_detail else "")
    return None
