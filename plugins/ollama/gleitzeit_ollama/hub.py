"""``OllamaHub``: a model-aware hub over many Ollama instances.

Routing uses the core's hooks with ``Request(slot=model, attributes={"model": model})``:

* ``serves``: the instance has the model installed or loaded (unknown inventory: maybe);
* ``tier``: 0 = loaded and not about to expire, 1 = installed, 2 = inventory not known yet;
  the strategy chooses within the best tier that has a free slot;
* ``capacity``: the instance's ``num_parallel`` per model (Ollama itself queues without
  bound, so the hub holds the line: when every instance with the model is saturated the core
  waits, bounded by ``queue_timeout``).

When nobody has the model, ``ensure_model`` pulls it onto one healthy instance (``auto_pull``)
or raises ``NoResourceAvailable`` listing which instance has which models.

One ``aiohttp.ClientSession`` per hub (opened in ``start``, closed in ``stop``); calls run under
the request deadline, connections under ``connect_timeout``, streams under ``stall_timeout``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Collection
from typing import Any, ClassVar

import aiohttp

from gleitzeit_core import (
    FailureClass,
    Health,
    NoResourceAvailable,
    Request,
    RequestTimeout,
    Resource,
)
from gleitzeit_core.hub import ResourceHub
from gleitzeit_core.lease import Lease
from gleitzeit_ollama.client import (
    JSON,
    NdjsonReader,
    error_from_response,
    make_session,
    parse_object,
    post,
    transport_error,
)
from gleitzeit_ollama.errors import ModelNotFound, OllamaError, StreamFailed
from gleitzeit_ollama.models import (
    DEFAULT_KEEP_ALIVE,
    TAGS_AT,
    VERSION,
    has_model,
    installed_models,
    is_hot,
    loaded_models,
    parse_keep_alive,
    record_absent,
    record_installed,
    record_used,
    seed_installed,
)
from gleitzeit_ollama.probe import check_instance
from gleitzeit_ollama.settings import OllamaSettings
from gleitzeit_ollama.stream import ChunkStream, is_pull_success

__all__ = ["OllamaHub"]

_SHOWN_MODELS = 8  # models listed per instance in a "nobody has it" message


class OllamaHub(ResourceHub):
    kind: ClassVar[str] = "ollama"
    settings: OllamaSettings

    def __init__(self, name: str, *, settings: OllamaSettings | None = None, **kwargs: Any):
        super().__init__(name, settings=settings or OllamaSettings(), **kwargs)
        self._session: aiohttp.ClientSession | None = None
        self._pulls: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._live = False  # started and done with the first inventory
        default = parse_keep_alive(self.settings.default_keep_alive)
        self._default_keep_alive = DEFAULT_KEEP_ALIVE if default is None else default

    # -- session and lifecycle ------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        """The hub's session (opened on first use if ``start`` has not run)."""
        if self._session is None or self._session.closed:
            self._session = make_session(self.settings)
        return self._session

    def open_session(self) -> aiohttp.ClientSession | None:
        """The session if it is open, for probes and discoverers that may borrow it."""
        session = self._session
        return session if session is not None and not session.closed else None

    async def start(self) -> None:
        if self._started:
            return
        _ = self.session
        await super().start()
        await self.refresh_models()
        self._live = True

    async def stop(self) -> None:
        self._live = False
        tasks = [*self._background, *self._pulls.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().stop()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def refresh_models(self, resources: Collection[Resource] | None = None) -> None:
        """Read ``/api/version``, ``/api/ps`` and ``/api/tags`` of each instance now (bounded
        by the health timeout); an instance that does not answer keeps what was known."""
        targets = list(self._members if resources is None else resources)
        if not targets:
            return
        timeout = self.health_settings.timeout
        session = self.session
        await asyncio.gather(
            *(check_instance(session, r, timeout=timeout, tags=True) for r in targets),
            return_exceptions=True,
        )

    def on_added(self, resource: Resource) -> None:
        seed_installed(resource, resource.spec.options.get("models") or ())
        if self._live:
            self._spawn(self.refresh_models([resource]))

    # -- routing hooks --------------------------------------------------------------------------
    def num_parallel(self, resource: Resource) -> int:
        configured = resource.spec.options.get("num_parallel")
        return int(configured) if configured else self.settings.default_num_parallel

    def serves(self, resource: Resource, request: Request) -> str | None:
        why = super().serves(resource, request)
        if why is not None:
            return why
        model = request.attributes.get("model")
        if model is None or has_model(resource, model) is not False:
            return None
        return f"does not have {model} ({_inventory(resource)})"

    def tier(self, resource: Resource, request: Request) -> int:
        model = request.attributes.get("model")
        if model is None:
            return 0
        if is_hot(resource, model, time.time(), self.settings.expiry_margin):
            return 0
        return 1 if installed_models(resource) is not None else 2

    def capacity(self, resource: Resource, slot: str) -> int | None:
        return self.num_parallel(resource)

    def classify(self, exc: BaseException) -> FailureClass:
        if isinstance(exc, aiohttp.ClientError) and not isinstance(exc, OllamaError):
            return FailureClass.CONNECTION
        return super().classify(exc)

    def describe(self, resource: Resource) -> dict[str, Any]:
        """Installed and loaded models and the in-flight calls per model, for the status."""
        now = time.time()
        installed = installed_models(resource)
        tags_at = resource.attributes.get(TAGS_AT)
        cap = self.num_parallel(resource)
        return {
            "version": resource.attributes.get(VERSION),
            "num_parallel": cap,
            "installed": None if installed is None else sorted(installed),
            "loaded": {
                model: {"expires_in_s": None if math.isinf(at) else round(at - now, 1)}
                for model, at in sorted(loaded_models(resource).items())
            },
            "slots": {
                model: {"in_flight": count, "cap": cap}
                for model, count in sorted(resource.slots.items())
            },
            "pulling": sorted(m for m, t in self._pulls.items() if not t.done()),
            "tags_age_s": None if tags_at is None else round(time.monotonic() - tags_at, 1),
        }

    # -- models nobody has ----------------------------------------------------------------------
    def has_anywhere(self, model: str) -> bool:
        """Whether some instance (not draining) has, or may have, ``model``."""
        return any(not r.draining and has_model(r, model) is not False for r in self._members)

    def missing_model(self, model: str) -> NoResourceAvailable:
        reasons = {r.id: _inventory(r) for r in self._members}
        return NoResourceAvailable(
            self.name,
            reasons,
            f"no instance has model {model!r}; pull it with llm/pull_model or set auto_pull = true",
        )

    async def ensure_model(self, model: str) -> None:
        """Make sure some instance has ``model``: pull it (``auto_pull``) or raise
        ``NoResourceAvailable`` listing the models of every instance."""
        if self.has_anywhere(model):
            return
        if not self.settings.auto_pull:
            raise self.missing_model(model)
        task = self._pulls.get(model)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._auto_pull(model))
            self._pulls[model] = task
            task.add_done_callback(lambda done: self._pull_done(model, done))
        # one caller giving up must not cancel a pull that others wait for
        await asyncio.shield(task)

    def _pull_done(self, model: str, task: asyncio.Task[None]) -> None:
        if self._pulls.get(model) is task:
            del self._pulls[model]
        if not task.cancelled():
            task.exception()  # retrieved here; the waiting callers get it through the shield

    async def _auto_pull(self, model: str) -> None:
        stream = await self.open_pull(model, self.pull_target(None))
        async with stream:
            async for _ in stream:
                pass

    def pull_target(self, instance: str | None) -> Resource:
        """The named instance, or one healthy instance chosen by the hub's strategy."""
        if instance is not None:
            return self.get(instance)
        now = self.clock.now()
        healthy = [
            r
            for r in self._members
            if not r.draining
            and r.health is not Health.UNHEALTHY
            and not r.is_ejected(now)
            and r.breaker.available()
        ]
        if not healthy:
            raise NoResourceAvailable(
                self.name, self._reasons(Request(), (), now), "no healthy instance to pull onto"
            )
        return self.strategy.select(healthy, Request())

    async def open_pull(
        self, model: str, resource: Resource, *, insecure: bool | None = None
    ) -> ChunkStream:
        """Start ``POST /api/pull`` on ``resource``; iterate the result for Ollama's progress
        lines. Bounded by ``pull_timeout`` as a whole."""
        body: JSON = {"model": model, "stream": True}
        if insecure is not None:
            body["insecure"] = insecure
        timeout = self.settings.pull_timeout
        deadline = self.clock.now() + timeout
        async with asyncio.timeout(timeout):
            response = await self._post(resource, "/api/pull", json.dumps(body).encode())
            try:
                if response.status != 200:
                    raise await error_from_response(
                        response, resource=resource.id, path="/api/pull", model=None
                    )
            except BaseException:
                response.close()
                raise
        name = model

        def installed(_: JSON) -> None:
            record_installed(resource, name)

        return ChunkStream(
            response=response,
            reader=NdjsonReader(response.content),
            first=None,
            resource=resource.id,
            clock=self.clock,
            deadline=deadline,
            stall_timeout=timeout,
            connect_timeout=self.settings.connect_timeout,
            final=is_pull_success,
            on_final=installed,
        )

    # -- calls ----------------------------------------------------------------------------------
    async def _post(self, resource: Resource, path: str, payload: bytes) -> aiohttp.ClientResponse:
        return await post(
            self.session,
            resource.endpoint.rstrip("/") + path,
            payload,
            resource=resource.id,
            connect_timeout=self.settings.connect_timeout,
        )

    async def _raise_for_status(
        self, resource: Resource, response: aiohttp.ClientResponse, path: str, model: str | None
    ) -> None:
        if response.status == 200:
            return
        error = await error_from_response(response, resource=resource.id, path=path, model=model)
        if isinstance(error, ModelNotFound):
            record_absent(resource, error.model)
        raise error

    def _used(self, resource: Resource, model: str | None, keep_alive: float | None) -> None:
        if model is not None:
            record_used(resource, model, keep_alive, self._default_keep_alive, time.time())

    async def call_json(
        self,
        path: str,
        body: JSON,
        request: Request,
        *,
        model: str | None = None,
        keep_alive: float | None = None,
    ) -> JSON:
        """POST ``body`` (not streamed) with failover; Ollama's JSON answer plus a
        ``gleitzeit`` key naming the instance that served it and the attempts it took."""
        payload = json.dumps(body).encode()
        attempts = 0

        async def attempt(lease: Lease) -> JSON:
            nonlocal attempts
            attempts += 1
            resource = lease.resource
            response = await self._post(resource, path, payload)
            try:
                await self._raise_for_status(resource, response, path, model)
                raw = await response.read()
            except OllamaError:
                raise
            except (aiohttp.ClientError, OSError) as exc:
                raise transport_error(exc, resource.id, self.settings.connect_timeout) from exc
            finally:
                response.release()
            answer = parse_object(raw, resource=resource.id, what=f"the answer of {path}")
            if "error" in answer:
                raise OllamaError(
                    f"error from {path}: {answer['error']}",
                    failure=FailureClass.PROTOCOL,
                    resource=resource.id,
                    status=200,
                    body=answer["error"],
                )
            self._used(resource, model, keep_alive)
            answer["gleitzeit"] = {"instance": resource.id, "attempts": attempts}
            return answer

        return await self.call(attempt, request)

    async def open_stream(
        self,
        path: str,
        body: JSON,
        request: Request,
        *,
        model: str | None = None,
        keep_alive: float | None = None,
    ) -> ChunkStream:
        """POST ``body`` as a stream: fail over (to untried instances, within the deadline)
        until one answers with a first chunk, then hand the stream to the caller.

        The same loop as the core's ``call``, except that the lease stays open while the
        caller iterates (``call`` would end it when the first chunk arrives).
        """
        payload = json.dumps(body).encode()
        deadline = self.deadline_for(request)
        tried: list[str] = []
        last_error: BaseException | None = None
        for attempt in range(self.retries + 1):
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                break
            try:
                lease = await self.acquire(request, exclude=tried, timeout=remaining)
            except NoResourceAvailable:
                if last_error is not None:
                    raise last_error from None
                raise
            tried.append(lease.resource.id)
            try:
                async with asyncio.timeout(remaining):
                    return await self._first_chunk(
                        lease, path, payload, deadline, attempt + 1, model, keep_alive
                    )
            except BaseException as exc:
                failure = self.classify(exc)
                lease.fail(failure)
                out_of_time = self.clock.now() >= deadline
                if isinstance(exc, TimeoutError) and out_of_time:
                    raise RequestTimeout(
                        f"hub {self.name!r}: no first chunk within the request deadline "
                        f"(tried {', '.join(tried)})"
                    ) from exc
                if not failure.retryable or attempt == self.retries or out_of_time:
                    raise
                last_error = exc
                self.counters["failovers"] += 1
        if last_error is not None:
            raise last_error
        raise RequestTimeout(f"hub {self.name!r}: the request deadline passed before any attempt")

    async def _first_chunk(
        self,
        lease: Lease,
        path: str,
        payload: bytes,
        deadline: float,
        attempts: int,
        model: str | None,
        keep_alive: float | None,
    ) -> ChunkStream:
        resource = lease.resource
        response = await self._post(resource, path, payload)
        try:
            await self._raise_for_status(resource, response, path, model)
            reader = NdjsonReader(response.content)
            line = await reader.line(None)  # bounded by the caller's deadline
            if line is None:
                raise StreamFailed(
                    f"{path} answered with an empty stream",
                    failure=FailureClass.PROTOCOL,
                    resource=resource.id,
                )
            first = parse_object(line, resource=resource.id, what=f"the first line of {path}")
            if "error" in first:
                raise StreamFailed(
                    f"error in the stream: {first['error']}",
                    failure=FailureClass.PROTOCOL,
                    resource=resource.id,
                    status=200,
                    body=first["error"],
                )
        except OllamaError:
            response.close()
            raise
        except (aiohttp.ClientError, OSError) as exc:
            response.close()
            raise transport_error(exc, resource.id, self.settings.connect_timeout) from exc
        except BaseException:
            response.close()
            raise
        return ChunkStream(
            response=response,
            reader=reader,
            first=first,
            resource=resource.id,
            clock=self.clock,
            deadline=deadline,
            stall_timeout=self.settings.stall_timeout,
            connect_timeout=self.settings.connect_timeout,
            lease=lease,
            attempts=attempts,
            on_final=_on_final(self, resource, model, keep_alive),
        )


def _on_final(
    hub: OllamaHub, resource: Resource, model: str | None, keep_alive: float | None
) -> Callable[[JSON], None]:
    def done(_: JSON) -> None:
        hub._used(resource, model, keep_alive)

    return done


def _inventory(resource: Resource) -> str:
    installed = installed_models(resource)
    if installed is None:
        return "its models are not known yet"
    if not installed:
        return "has no models"
    names = sorted(installed)
    shown = ", ".join(names[:_SHOWN_MODELS])
    more = len(names) - _SHOWN_MODELS
    return f"has {shown}" + (f" and {more} more" if more > 0 else "")
