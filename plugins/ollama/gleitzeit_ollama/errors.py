"""Errors of Ollama calls. All are ``ResourceError``s (so ``ConnectionError``s) carrying the
``FailureClass`` the hub acts on, the upstream ``status`` and Ollama's answer as ``body``
(its ``{"error": ...}`` object); each also subclasses the built-in a caller would catch."""

from __future__ import annotations

from gleitzeit_core import FailureClass, ResourceError

__all__ = ["BadAnswer", "ModelNotFound", "OllamaError", "StreamFailed", "StreamStalled"]


class OllamaError(ResourceError):
    """An Ollama instance answered with an error, or not at all."""


class ModelNotFound(OllamaError, LookupError):
    """An instance does not have the model (Ollama's 404): the hub tries one that has it."""

    def __init__(self, model: str, *, resource: str | None, body: object = None) -> None:
        self.model = model
        super().__init__(
            f"model {model!r} not found, try pulling it first (or set auto_pull = true)",
            failure=FailureClass.MISROUTED,
            resource=resource,
            status=404,
            body=body,
        )


class BadAnswer(OllamaError):
    """An answer broke a bound (``limit`` names the setting) or is not what Ollama sends
    (``limit`` is None): the instance's fault (PROTOCOL), never the gateway's."""

    def __init__(self, message: str, *, resource: str | None, limit: str | None = None) -> None:
        self.limit = limit
        super().__init__(message, failure=FailureClass.PROTOCOL, resource=resource)


class StreamFailed(OllamaError):
    """A stream broke after it started: an ``{"error": ...}`` line, a reset, or a bad line."""


class StreamStalled(OllamaError, TimeoutError):
    """No byte arrived for ``stall_timeout`` seconds in the middle of a stream."""

    def __init__(self, seconds: float, *, resource: str | None) -> None:
        self.seconds = seconds
        super().__init__(
            f"stream stalled: nothing arrived for {seconds:g} s (stall_timeout)",
            failure=FailureClass.TIMEOUT,
            resource=resource,
        )
