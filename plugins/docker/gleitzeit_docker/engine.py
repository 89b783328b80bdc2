"""``Engine``: one Docker Engine API endpoint, every call bounded by a timeout.

aiodocker leaves long-running calls (wait, attach, exec, pull) without any timeout, and a
missing socket surfaces as a generic ``DockerError(900)``. ``Engine`` wraps each call in
``asyncio.timeout`` and translates failures into the errors of ``gleitzeit_docker.errors``:
``EngineUnavailable`` (fast: the socket connect has its own short timeout), ``ImageMissing``
(with the command that gets the image), ``EngineTimeout`` and ``EngineAPIError``.

Every answer is read with a bound (the core's ``read_capped``, ``BoundedLines``): a whole
answer (version,
inspect, list, an error body) at most ``max_answer_bytes``, a line of a progress stream (pull)
at most ``2 * STREAM_BUFFER`` bytes (aiohttp's own line limit); a bigger, endless or undecodable
answer is an ``EngineAPIError`` (status 0: the engine's fault, counted against it), never
memory the gateway keeps growing.

Every container created for Gleitzeit carries the labels ``gleitzeit.hub`` and
``gleitzeit.run`` (this process's instance id), and is tied to its owner: its main process
reads the stdin the owner keeps attached and exits when that closes, so a container whose
owner died stops by itself. ``remove_orphans`` therefore deletes only *stopped* containers of
other instances: a live gateway sharing the hub name (on this host or any other) keeps its
running containers.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from gleitzeit_core import LimitExceeded, read_capped

from .errors import EngineAPIError, EngineTimeout, EngineUnavailable, ImageMissing

__all__ = [
    "LABEL_HUB",
    "LABEL_MODE",
    "LABEL_POOL",
    "LABEL_POOL_KEY",
    "LABEL_PROFILE",
    "LABEL_RUN",
    "ORPHAN_GRACE",
    "RUN_ID",
    "Engine",
    "ProgressCallback",
    "resolve_url",
]

# One id per process instance: containers of a crashed earlier run carry a different one.
RUN_ID = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
# A container of another instance that was created but never started is taken for an orphan
# only after this long (its owner may be between create and start).
ORPHAN_GRACE = 600.0
_STOPPED = ("exited", "dead")
LABEL_HUB = "gleitzeit.hub"
LABEL_RUN = "gleitzeit.run"
LABEL_POOL_KEY = "gleitzeit.pool_key"
LABEL_POOL = "gleitzeit.pool"
LABEL_PROFILE = "gleitzeit.profile"
LABEL_MODE = "gleitzeit.mode"
_DEFAULT_SOCKETS = ("/run/docker.sock", "/var/run/docker.sock", "~/.docker/run/docker.sock")
_IMAGE_HELP = (
    "get it with `docker pull {image}` on the engine host (needs a registry), or build it "
    "there (`docker build`) or load a saved copy (`docker load -i FILE.tar`)"
)

T = TypeVar("T")
ProgressCallback = Callable[[Mapping[str, Any]], None]
# A whole engine answer: a container inspect is ~10 KiB, listing a thousand containers ~2 MiB.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# aiohttp's read buffer; a line of a JSON stream (pull progress) may be twice this at most.
STREAM_BUFFER = 512 * 1024


class _CappedResponse(aiohttp.ClientResponse):
    """``read()`` (and so ``json()``/``text()``, which aiodocker uses) holds at most
    ``max_body`` bytes; more is ``LimitExceeded`` and the connection is closed."""

    max_body = MAX_ANSWER_BYTES

    async def read(self) -> bytes:
        if self._body is None:
            cap = self.max_body
            try:
                declared = self.content_length
                if declared is not None and declared > cap:
                    raise LimitExceeded(
                        "max_answer_bytes", cap, f"an engine answer of {declared} bytes"
                    )
                body = await read_capped(
                    self.content,
                    limit=cap,
                    what="an engine answer",
                    limit_name="max_answer_bytes",
                )
            except BaseException:
                self.close()
                raise
            self._body = bytes(body)
        return await super().read()


def _capped(limit: int) -> type[aiohttp.ClientResponse]:
    if limit == MAX_ANSWER_BYTES:
        return _CappedResponse
    return type("_CappedResponse", (_CappedResponse,), {"max_body": limit})


def resolve_url(url: str | None = None) -> str:
    """Explicit URL, else ``DOCKER_HOST``, else the first default socket that exists."""
    if url:
        return url
    env = os.environ.get("DOCKER_HOST")
    if env:
        return env
    for candidate in _DEFAULT_SOCKETS:
        path = Path(candidate).expanduser()
        if path.is_socket():
            return f"unix://{path}"
    return "unix:///var/run/docker.sock"


class Engine:
    """One Docker engine; cheap to construct, connects lazily on the first call."""

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str | None = None,
        run_id: str = RUN_ID,
        call_timeout: float = 30.0,
        connect_timeout: float = 1.5,
        ping_timeout: float = 2.0,
        max_connections: int = 512,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.url = resolve_url(url)
        self.name = name or self.url
        self.run_id = run_id
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self.ping_timeout = ping_timeout
        self.max_connections = max_connections
        self.max_answer_bytes = max_answer_bytes
        self.version_info: dict[str, Any] = {}
        self._docker: aiodocker.Docker | None = None
        self._connector: aiohttp.BaseConnector | None = None
        self._session: aiohttp.ClientSession | None = None
        self._replaced: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Engine({self.url!r})"

    @property
    def docker(self) -> aiodocker.Docker:
        """The underlying aiodocker client (created on first use, inside the event loop)."""
        if self._closed:
            raise EngineUnavailable(f"engine {self.url}: this Engine object was closed")
        if self._docker is None:
            # sock_connect bounds only the connect; streams (attach/exec) stay open-ended.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout)
            if self.url.startswith("unix://"):
                # Our own connector: every attached runner holds one connection, and
                # aiohttp's default limit (100) would otherwise cap the pool silently.
                self._connector = aiohttp.UnixConnector(
                    self.url[len("unix://") :], limit=self.max_connections
                )
                self._docker = aiodocker.Docker(
                    url="unix://localhost", connector=self._connector, timeout=timeout
                )
            elif self.url.startswith("tcp://") and os.environ.get("DOCKER_TLS_VERIFY") != "1":
                self._connector = aiohttp.TCPConnector(limit=self.max_connections)
                self._docker = aiodocker.Docker(
                    url="http://" + self.url[len("tcp://") :],
                    connector=self._connector,
                    timeout=timeout,
                )
            else:  # https, ssh, npipe, TLS: let aiodocker build its own transport
                self._docker = aiodocker.Docker(url=self.url, timeout=timeout)
            # every call goes through a session whose answers are read with a bound; the
            # one aiodocker made is kept to be closed (it may own the connector)
            self._replaced = self._docker.session
            self._session = aiohttp.ClientSession(
                connector=self._docker.connector,
                connector_owner=False,
                timeout=timeout,
                response_class=_capped(self.max_answer_bytes),
                read_bufsize=STREAM_BUFFER,
            )
            self._docker.session = self._session
        return self._docker

    def container(self, container_id: str) -> DockerContainer:
        """A handle for attach/exec (no API call)."""
        return self.docker.containers.container(container_id)

    async def close(self) -> None:
        """Close the client; the Engine cannot be used afterwards."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._docker is not None:
            await self._docker.close()
            self._docker = None
        if self._replaced is not None:
            await self._replaced.close()
            self._replaced = None
        if self._connector is not None:
            await self._connector.close()
            self._connector = None

    # -- error translation ---------------------------------------------------------------

    def unavailable(self, detail: str) -> EngineUnavailable:
        return EngineUnavailable(
            f"engine unavailable: {self.url}: {detail}; start Docker there, or point DOCKER_HOST "
            "(or the hub's engines) at a running engine; `gleitzeit doctor` checks them all"
        )

    def _translate(self, what: str, exc: DockerError, image: str = "") -> Exception:
        if exc.status == 900:
            return self.unavailable(f"cannot connect ({exc.message})")
        message = str(exc.message)
        if image and exc.status == 404 and "image" in message.lower():
            return ImageMissing(
                f"image {image!r} is not present on engine {self.url}; "
                + _IMAGE_HELP.format(image=image),
                image,
            )
        return EngineAPIError(
            f"{what} failed on {self.url}: [{exc.status}] {message}", exc.status, message
        )

    async def call(
        self,
        what: str,
        factory: Callable[[], Awaitable[T]],
        *,
        timeout: float | None = None,
        image: str = "",
    ) -> T:
        """Run one API interaction under a timeout, translating every failure."""
        budget = self.call_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(budget) as scope:
                return await factory()
        except DockerError as exc:
            raise self._translate(what, exc, image) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise self.unavailable(f"connect timed out after {self.connect_timeout:g} s") from exc
        except TimeoutError as exc:
            if scope.expired():
                raise EngineTimeout(
                    f"{what} on engine {self.url} did not finish within {budget:g} s"
                ) from exc
            raise
        except (ValueError, RecursionError, aiohttp.ContentTypeError) as exc:
            # LimitExceeded, not JSON, nested too deep, aiohttp's "Chunk too big" for a line
            raise EngineAPIError(
                f"{what} on {self.url}: the engine's answer was refused: {exc}", 0, str(exc)
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self.unavailable(f"{type(exc).__name__}: {exc}") from exc

    # -- basic calls ---------------------------------------------------------------------

    async def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """Ask the engine for its version; ``EngineUnavailable`` if it does not answer."""
        budget = self.ping_timeout if timeout is None else timeout
        try:
            self.version_info = await self.call("ping", self.docker.version, timeout=budget)
        except EngineTimeout as exc:
            raise self.unavailable(f"no answer to a ping within {budget:g} s") from exc
        return self.version_info

    async def image_exists(self, image: str) -> bool:
        try:
            await self.call("image inspect", lambda: self.docker.images.inspect(image))
        except EngineAPIError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def require_image(self, image: str) -> None:
        """Raise ``ImageMissing`` (naming the image and how to get it) if it is absent."""
        if not await self.image_exists(image):
            raise ImageMissing(
                f"image {image!r} is not present on engine {self.url}; "
                + _IMAGE_HELP.format(image=image),
                image,
            )

    async def pull(
        self,
        image: str,
        progress_callback: ProgressCallback | None = None,
        *,
        timeout: float = 900.0,
    ) -> None:
        """Pull ``image``, streaming each progress event (dict) to ``progress_callback``."""

        async def consume() -> None:
            events: AsyncIterator[dict[str, Any]] = self.docker.images.pull(image, stream=True)
            async for event in events:
                if progress_callback is not None:
                    progress_callback(event)

        try:
            await self.call("pull", consume, timeout=timeout)
        except EngineAPIError as exc:
            raise ImageMissing(
                f"could not pull image {image!r} on engine {self.url} ({exc.detail}); if no "
                "registry is reachable, build it on the engine host (`docker build`) or load a "
                "saved copy (`docker load -i FILE.tar`)",
                image,
            ) from exc

    async def create(self, config: Mapping[str, Any], *, name: str | None = None) -> str:
        """Create (not start) a container; returns its id."""
        image = str(config.get("Image", ""))
        created = await self.call(
            "container create",
            lambda: self.docker.containers.create(dict(config), name=name),
            image=image,
        )
        return created.id

    async def start(self, container_id: str) -> None:
        await self.call("container start", lambda: self.container(container_id).start())

    async def inspect(self, container_id: str) -> dict[str, Any]:
        return await self.call("container inspect", lambda: self.container(container_id).show())

    async def delete(self, container_id: str) -> bool:
        """Force-remove a container; False if it was already gone."""
        try:
            await self.call(
                "container delete", lambda: self.container(container_id).delete(force=True)
            )
        except EngineAPIError as exc:
            if exc.status == 404:
                return False
            if exc.status == 409 and "in progress" in str(exc):
                return True  # another delete of the same container is already running
            raise
        return True

    async def list_containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """All containers (running or not) carrying every one of ``labels``."""
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        found = await self.call(
            "container list",
            lambda: self.docker.containers.list(all=True, filters=filters),
        )
        return [dict(c._container) for c in found]

    # -- labels and cleanup ----------------------------------------------------------------

    def labels(self, hub_id: str, **extra: str) -> dict[str, str]:
        """The labels every Gleitzeit container carries (+ ``extra``)."""
        out = {LABEL_HUB: hub_id, LABEL_RUN: self.run_id}
        out.update({f"gleitzeit.{k}": v for k, v in extra.items()})
        return out

    async def _remove(self, containers: list[dict[str, Any]]) -> list[str]:
        ids = [str(c["Id"]) for c in containers]
        await asyncio.gather(*(self.delete(i) for i in ids))
        return ids

    async def remove_orphans(self, hub_id: str) -> list[str]:
        """Remove containers of ``hub_id`` that no live instance owns: stopped ones of other
        instances (their owner is gone, see the module docstring), and never-started ones
        older than ``ORPHAN_GRACE``. Returns their ids."""
        found = await self.list_containers({LABEL_HUB: hub_id})
        now = time.time()
        return await self._remove(
            [
                c
                for c in found
                if (c.get("Labels") or {}).get(LABEL_RUN) != self.run_id
                and (
                    c.get("State") in _STOPPED
                    or (c.get("State") == "created" and now - c.get("Created", now) > ORPHAN_GRACE)
                )
            ]
        )

    async def remove_all(self, hub_id: str, **labels: str) -> list[str]:
        """Remove every container of ``hub_id`` (optionally narrowed by more labels)."""
        wanted = {LABEL_HUB: hub_id, **{f"gleitzeit.{k}": v for k, v in labels.items()}}
        return await self._remove(await self.list_containers(wanted))
