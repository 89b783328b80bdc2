"""How a call to a resource ended, and whose fault a failure was."""

from __future__ import annotations

import enum

__all__ = ["CallOutcome", "FailureClass"]


class FailureClass(enum.Enum):
    """Why a call failed. Only some classes are the resource's fault (see ``resource_fault``)."""

    CONNECTION = "connection"  # refused, reset, DNS: the resource is unreachable
    TIMEOUT = "timeout"  # no answer (or a stalled stream) within the deadline
    SERVER_ERROR = "server_error"  # 5xx other than "busy"
    PROTOCOL = "protocol"  # malformed answer, or an error line inside a 200 stream
    OVERLOADED = "overloaded"  # 503 "server busy" / 429: try elsewhere, but the resource is fine
    MISROUTED = "misrouted"  # this resource cannot serve it (an Ollama 404 for a model it lacks)
    CLIENT_ERROR = "client_error"  # the caller's 4xx: goes back unchanged, nobody's fault here
    CANCELLED = "cancelled"  # the caller went away

    @property
    def resource_fault(self) -> bool:
        """Whether breakers and outlier ejection should count this against the resource."""
        return self in _RESOURCE_FAULTS

    @property
    def counts_as_error(self) -> bool:
        """Whether it makes the resource's error rate: anything but the caller's own 4xx, the
        caller hanging up, or a request sent where it could not be served."""
        return self not in _NOT_ERRORS

    @property
    def retryable(self) -> bool:
        """Whether another resource may succeed where this one failed."""
        return self in _RESOURCE_FAULTS or self in (FailureClass.OVERLOADED, FailureClass.MISROUTED)


_RESOURCE_FAULTS = frozenset(
    {
        FailureClass.CONNECTION,
        FailureClass.TIMEOUT,
        FailureClass.SERVER_ERROR,
        FailureClass.PROTOCOL,
    }
)
# a caller's 4xx, a caller hanging up and a misrouted request do not make a resource look bad
_NOT_ERRORS = frozenset({FailureClass.CLIENT_ERROR, FailureClass.CANCELLED, FailureClass.MISROUTED})


class CallOutcome(enum.Enum):
    """What a breaker is told about a finished call."""

    SUCCESS = "success"
    FAILURE = "failure"  # the resource's fault
    IGNORED = "ignored"  # ended, but says nothing about the resource's health
