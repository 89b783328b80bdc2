"""Exception types of the Docker layer.

Each error also subclasses the built-in a caller would naturally catch, so code that knows
nothing about Gleitzeit still handles it sensibly (``except ConnectionError`` and so on).
"""

from __future__ import annotations

__all__ = [
    "DockerLayerError",
    "EngineAPIError",
    "EngineTimeout",
    "EngineUnavailable",
    "ImageMissing",
    "JobError",
    "LimitError",
    "PoolClosed",
    "PoolTimeout",
    "ProfileError",
    "RunnerError",
]


class DockerLayerError(Exception):
    """Base of every error raised by ``gleitzeit_docker``."""


class EngineUnavailable(DockerLayerError, ConnectionError):
    """The Docker engine cannot be reached (socket gone, refused, or not answering)."""


class EngineTimeout(DockerLayerError, TimeoutError):
    """An engine call was accepted but did not finish within its time budget."""


class EngineAPIError(DockerLayerError, RuntimeError):
    """The engine answered with an error status (other than "no such image")."""

    def __init__(self, message: str, status: int = 0, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or message  # the engine's own words


class ImageMissing(DockerLayerError, LookupError):
    """The image is not present on the engine and could not be pulled."""

    def __init__(self, message: str, image: str = "") -> None:
        super().__init__(message)
        self.image = image


class ProfileError(DockerLayerError, ValueError):
    """A profile or its configuration is invalid (bad size, unknown name, forbidden option)."""


class LimitError(ProfileError):
    """A request asked for more than its profile allows (requests may only tighten limits)."""


class JobError(DockerLayerError, ValueError):
    """A job is malformed (no code, args not JSON-serialisable, unsafe file name...)."""


class RunnerError(DockerLayerError, RuntimeError):
    """The in-container runner broke the protocol, died or did not answer."""


class PoolTimeout(DockerLayerError, TimeoutError):
    """Waiting for a free container exceeded ``acquire_timeout``."""


class PoolClosed(DockerLayerError, RuntimeError):
    """The pool was closed; it hands out no more containers."""
