"""The ``engines`` discoverer: which Docker engines a hub uses.

In order: the hub's ``engines = [...]`` setting and any ``[[hubs.NAME.resources]]`` entries;
if there are none, ``DOCKER_HOST``; else the first default socket that exists
(``/run/docker.sock``, ``/var/run/docker.sock``, ``~/.docker/run/docker.sock``), falling back
to ``unix:///var/run/docker.sock``. An engine's id is its URL without the scheme (the socket
path, or ``host:port``), the same id the core gives a configured resource.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gleitzeit_core import ResourceSpec
from gleitzeit_docker.settings import DockerSettings, engine_url_problem

__all__ = ["DEFAULT_SOCKETS", "EngineDiscoverer", "default_engine_url", "engine_id", "make_engines"]

DEFAULT_SOCKETS = ("/run/docker.sock", "/var/run/docker.sock", "~/.docker/run/docker.sock")
DEFAULT_URL = "unix:///var/run/docker.sock"


def default_engine_url(environ: Mapping[str, str] | None = None) -> str:
    """``DOCKER_HOST``, else the first default socket that exists, else the usual path."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "").strip()
    if host:
        return host
    for candidate in DEFAULT_SOCKETS:
        path = Path(candidate).expanduser()
        if path.is_socket():
            return f"unix://{path}"
    return DEFAULT_URL


def engine_id(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/") or url


class EngineDiscoverer:
    """Engines from the settings, the configured resources, or the environment."""

    name = "engines"

    def __init__(
        self,
        settings: DockerSettings,
        specs: Sequence[ResourceSpec] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.specs = list(specs)
        self.environ = environ

    async def discover(self, hub: Any) -> list[ResourceSpec]:
        found = {spec.id: spec for spec in self.specs}
        for url in self.settings.engines:
            found.setdefault(engine_id(url), ResourceSpec(id=engine_id(url), endpoint=url))
        if not found:
            url = default_engine_url(self.environ)
            problem = engine_url_problem(url)
            if problem is not None:  # a typo in DOCKER_HOST must be visible
                raise ValueError(f"DOCKER_HOST={url!r}: expected {problem}")
            found[engine_id(url)] = ResourceSpec(id=engine_id(url), endpoint=url)
        return list(found.values())


def make_engines(
    *, settings: Any = None, specs: Sequence[ResourceSpec] = (), **_: Any
) -> EngineDiscoverer:
    if not isinstance(settings, DockerSettings):
        settings = DockerSettings()
    return EngineDiscoverer(settings, specs)
