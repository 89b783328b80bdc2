"""A lease: one call's hold on one resource, from selection until its outcome is recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._outcomes import FailureClass

if TYPE_CHECKING:
    from ._hub import ResourceHub
    from ._request import Request
    from ._resources import Resource

__all__ = ["Lease"]


class Lease:
    """Counts the call in flight until ``succeed()`` or ``fail()`` records how it ended.

    Both are idempotent: the first outcome wins, so a provider may record a precise failure
    class itself and still let the hub's context manager run its fallback.
    """

    __slots__ = ("_done", "breaker", "hub", "permit", "request", "reserved", "resource", "started")

    def __init__(
        self, hub: ResourceHub, resource: Resource, permit: Any, request: Request, started: float
    ) -> None:
        self.hub = hub
        self.resource = resource
        self.permit = permit
        # the breaker that issued the permit: a reload may give the resource a new one
        self.breaker = resource.breaker
        self.request = request
        self.started = started
        self._done = False
        # the slot ("" for the resource itself) a shared state backend reserved, if any
        self.reserved: str | None = None

    @property
    def done(self) -> bool:
        return self._done

    def succeed(self) -> None:
        if not self._done:
            self._done = True
            self.hub.finish(self, None)

    def fail(self, failure: FailureClass) -> None:
        if not self._done:
            self._done = True
            self.hub.finish(self, failure)

    def release(self) -> None:
        """End the lease without an outcome (the call never happened or its result is
        unknown): frees the slot and the breaker permit, records nothing in the metrics."""
        if not self._done:
            self._done = True
            self.hub.finish(self, None, record=False)

    def __repr__(self) -> str:
        state = "done" if self._done else "active"
        return f"<Lease {self.resource.spec.id} {state}>"
