"""``OllamaHub``: a model-aware hub over many Ollama instances.

Routing uses the core's hooks with ``Request(slot=model, attributes={"model": model})``:

* ``serves``: the instance has the model installed or loaded (unknown inventory: maybe);
* ``tier``: 0 = loaded and not about to expire, 1 = installed, 2 = inventory not known yet;
  the strategy chooses within the best tier that has a free slot;
* ``capacity``: the instance's ``num_parallel`` per model (Ollama itself queues without
  bound, so the hub holds the line: when every instance with the model is saturated the core
  waits, bounded by ``queue_timeout``).

A strategy with ``reads_prompt`` also finds the rendered prompt in ``attributes["prompt"]``,
is shown every final answer (``observe_answer``) and adds its own numbers to the status
(``status_counters``, ``resource_details``); ``prefix_affinity`` uses all three.

With a shared state backend (several gateway replicas), what one replica learns about which
instance has which model loaded (an answer, a connection failure, a probe's ``/api/ps``) is
shared with the others (``ResourceHub.share``, topic ``loaded``: the instance's loaded models
with their expiry, when that set changed or an expiry moved by more than
``_SHARE_EXPIRY_STEP``), so they route by it before their own next probe.

When nobody has the model, ``ensure_model`` pulls it onto one healthy instance (``auto_pull``)
or raises ``NoResourceAvailable`` listing which instance has which models.

Per hub, one ``transport.UpstreamPool`` for the calls to ``http://`` instances (the hot path:
every generate, chat, embed, ..., streamed or not) and one ``aiohttp.ClientSession`` for the rest
(probes, discovery, model routes, ``https://`` instances); both share ``max_connections`` and
``connect_timeout`` and are closed in ``stop``. Calls run under the request deadline,
connections under ``connect_timeout``, streams under ``stall_timeout``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Collection
from typing import Any, ClassVar

import aiohttp
import attrs

from gleitzeit_core import (
    FailureClass,
    HubStatus,
    NoResourceAvailable,
    Request,
    Resource,
    ResourceHub,
)
from gleitzeit_ollama import calls, pulling
from gleitzeit_ollama.access import may_auto_pull
from gleitzeit_ollama.client import JSON, LIMIT_HIT, make_session
from gleitzeit_ollama.errors import OllamaError
from gleitzeit_ollama.models import (
    DEFAULT_KEEP_ALIVE,
    INSTALLED,
    LOADED,
    TAGS_AT,
    VERSION,
    has_model,
    installed_models,
    is_hot,
    loaded_models,
    normalize_model,
    parse_keep_alive,
    record_installed,
    seed_installed,
)
from gleitzeit_ollama.probe import check_instance
from gleitzeit_ollama.settings import OllamaSettings
from gleitzeit_ollama.stream import ChunkStream
from gleitzeit_ollama.transport import UpstreamPool, UpstreamProtocolError

__all__ = ["OllamaHub"]

_SHOWN_MODELS = 8  # models listed per instance in a "nobody has it" message
LOADED_TOPIC = "loaded"  # the facts shared with the other replicas: [instance, {model: until}]
# an expiry that moved by less than this is not shared again (every answer moves it)
_SHARE_EXPIRY_STEP = 10.0
_MAX_SHARED_MODELS = 256  # loaded models per instance in a peer's fact (Ollama: a handful)
_MAX_MODEL_NAME = 512
# a peer's loaded models join an instance's installed set (it pulled one since our last
# /api/tags) only while the set is smaller than this: forged facts naming ever new models
# grew it by 256 names each, a copy of the whole set per name, until the next /api/tags
MAX_PEER_INSTALLED = 1024


class OllamaHub(ResourceHub):
    kind: ClassVar[str] = "ollama"
    settings: OllamaSettings

    def __init__(self, name: str, *, settings: OllamaSettings | None = None, **kwargs: Any):
        super().__init__(name, settings=settings or OllamaSettings(), **kwargs)
        self._session: aiohttp.ClientSession | None = None
        self._upstream: UpstreamPool | None = None
        self._pulls: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._live = False  # started and done with the first inventory
        default = parse_keep_alive(self.settings.default_keep_alive)
        # what a call without keep_alive leaves its model loaded for (Ollama's default: 5m)
        self.default_keep_alive = DEFAULT_KEEP_ALIVE if default is None else default
        # per instance, the loaded models as last shared with (or learnt from) the replicas
        self._shared_loaded: dict[str, dict[str, float]] = {}
        self.on_shared(LOADED_TOPIC, self._apply_peer_loaded)

    # -- session and lifecycle ------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        """The hub's session (opened on first use if ``start`` has not run)."""
        if self._session is None or self._session.closed:
            self._session = make_session(self.settings)
        return self._session

    @property
    def upstream(self) -> UpstreamPool:
        """The pool the hub's calls go through (opened on first use, closed in ``stop``)."""
        if self._upstream is None or self._upstream.closed:
            self._upstream = UpstreamPool(
                max_connections=self.settings.max_connections,
                connect_timeout=self.settings.connect_timeout,
                fallback=lambda: self.session,
            )
        return self._upstream

    def open_session(self) -> aiohttp.ClientSession | None:
        """The session if it is open, for probes and discoverers that may borrow it."""
        session = self._session
        return session if session is not None and not session.closed else None

    async def on_start(self) -> None:
        """Read every instance's models before probing starts, so the two do not fetch the
        same ``/api/tags`` twice and routing knows the models from the first call on."""
        await self.refresh_models()
        self._live = True

    async def on_stop(self) -> None:
        self._live = False
        tasks = [*self._background, *self._pulls.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            await upstream.close()
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
        targets = list(self.members() if resources is None else resources)
        if not targets:
            return
        timeout = self.health_settings.timeout
        session = self.session
        await asyncio.gather(
            *(
                check_instance(session, r, timeout=timeout, tags=True, settings=self.settings)
                for r in targets
            ),
            return_exceptions=True,
        )
        for resource in targets:
            self.loaded_changed(resource)

    # -- which instance has which model loaded, shared between gateway replicas ----------------
    def loaded_changed(self, resource: Resource) -> None:
        """Tell the other replicas what ``resource`` has loaded now, if that differs from what
        they last heard (another model set, or an expiry moved by over ``_SHARE_EXPIRY_STEP``)."""
        if not self.sharing:
            return
        loaded = dict(loaded_models(resource))
        before = self._shared_loaded.get(resource.id)
        if before is not None and not _differs(before, loaded):
            return
        self._shared_loaded[resource.id] = loaded
        fact = {m: None if math.isinf(at) else round(at, 1) for m, at in loaded.items()}
        self.share(LOADED_TOPIC, [resource.id, fact])

    def _apply_peer_loaded(self, fact: Any, replica: str) -> None:
        """A peer's ``[instance, {model: expires_at or None (forever)}]``: that instance's
        loaded models as the peer last saw them replace ours (the newest news wins; our own
        next probe or answer corrects it)."""
        if not isinstance(fact, list) or len(fact) != 2:
            raise TypeError(f"shared loaded models are not [instance, models]: {fact!r:.80}")
        instance, models = fact
        if not isinstance(instance, str) or instance not in self:
            raise ValueError(f"shared loaded models name no instance here: {instance!r:.80}")
        if not isinstance(models, dict) or len(models) > _MAX_SHARED_MODELS:
            raise ValueError(f"shared loaded models: not a table of <= {_MAX_SHARED_MODELS}")
        loaded: dict[str, float] = {}
        for model, until in models.items():
            if not isinstance(model, str) or not 0 < len(model) <= _MAX_MODEL_NAME:
                raise ValueError(f"a shared model name is not 1-{_MAX_MODEL_NAME} characters")
            if until is None:
                loaded[normalize_model(model)] = math.inf
            elif type(until) in (int, float) and 0 <= until < math.inf:
                loaded[normalize_model(model)] = float(until)
            else:
                raise ValueError(f"a shared model's expiry is not a time: {until!r:.40}")
        resource = self.get(instance)
        resource.attributes[LOADED] = loaded
        installed = installed_models(resource)
        if installed is None:
            for model in loaded:  # inventory not known yet: only forget earlier 404s
                record_installed(resource, model)
        elif not loaded.keys() <= installed:
            grown = installed | loaded.keys()
            if len(grown) <= MAX_PEER_INSTALLED:  # else our next /api/tags tells
                resource.attributes[INSTALLED] = grown
        self._shared_loaded[instance] = dict(loaded)
        self.wake()  # a waiting caller may prefer the instance now

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
        if isinstance(exc, UpstreamProtocolError):  # the calls convert it; never CONNECTION
            return FailureClass.PROTOCOL
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
            # the last answer that broke a bound (max_answer_bytes, max_line_bytes, ...)
            "limit_hit": resource.attributes.get(LIMIT_HIT),
            **_strategy_details(self.strategy, resource.id),
        }

    def status(self) -> HubStatus:
        """The core's status, plus the strategy's own numbers among the counters (the
        ``prefix_affinity`` index size, bound and memory, say)."""
        status = super().status()
        extra = getattr(self.strategy, "status_counters", None)
        if extra is None:
            return status
        return attrs.evolve(status, counters={**status.counters, **extra()})

    # -- models nobody has ----------------------------------------------------------------------
    def has_anywhere(self, model: str) -> bool:
        """Whether some instance (not draining) has, or may have, ``model``."""
        return any(not r.draining and has_model(r, model) is not False for r in self.members())

    def missing_model(self, model: str) -> NoResourceAvailable:
        reasons = {r.id: _inventory(r) for r in self.members()}
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
        if not self.settings.auto_pull or not may_auto_pull():
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
        await pulling.auto_pull(self, model)

    def pull_target(self, instance: str | None) -> Resource:
        """The named instance, or one healthy instance chosen by the hub's strategy."""
        return pulling.pull_target(self, instance)

    async def open_pull(
        self, model: str, resource: Resource, *, insecure: bool | None = None
    ) -> ChunkStream:
        """``POST /api/pull`` on ``resource``; iterate the result for Ollama's progress."""
        return await pulling.open_pull(self, model, resource, insecure=insecure)

    # -- calls ----------------------------------------------------------------------------------
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
        return await calls.call_json(self, path, body, request, model=model, keep_alive=keep_alive)

    async def open_stream(
        self,
        path: str,
        body: JSON,
        request: Request,
        *,
        model: str | None = None,
        keep_alive: float | None = None,
    ) -> ChunkStream:
        """POST ``body`` as a stream with failover until a first chunk; the caller iterates
        the returned ``ChunkStream``, which holds the lease until the answer ends."""
        return await calls.open_stream(
            self, path, body, request, model=model, keep_alive=keep_alive
        )


def _differs(before: dict[str, float], now: dict[str, float]) -> bool:
    if before.keys() != now.keys():
        return True
    for model, at in now.items():
        old = before[model]
        if math.isinf(at) != math.isinf(old):
            return True
        if not math.isinf(at) and abs(at - old) > _SHARE_EXPIRY_STEP:
            return True
    return False


def _strategy_details(strategy: object, instance: str) -> dict[str, Any]:
    details = getattr(strategy, "resource_details", None)
    return {"strategy": details(instance)} if details is not None else {}


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
