"""The Ollama HTTP API on the gateway, in front of every Ollama hub of the runtime.

Any Ollama client (the official ``ollama`` package, Open WebUI, LangChain) uses the whole pool
by pointing at the gateway instead of one server:

=========================  =================================================================
``GET|HEAD /``              ``Ollama is running``
``GET|HEAD /api/version``   the lowest Ollama version in the pool, plus ``gleitzeit``: its own
                            version and each instance's
``GET|HEAD /api/tags``      installed models of every instance, each once (``routes_merge``)
``GET /api/ps``             loaded models of every instance, each once, with where and until
``POST /api/show``          from an instance that has the model
``POST /api/generate``,     model-aware, with failover; streamed by default as in Ollama, each
``/api/chat``               chunk passed on as it arrives (``routes_stream``)
``POST /api/embed``,        model-aware, with failover
``/api/embeddings``
``POST /api/pull``          onto one healthy instance, or the one named by the extra field
                            ``instance`` (its id, or ``hub/id``); progress streamed by default;
                            admin keys only, registries on ``pull_registries`` only
=========================  =================================================================

Bodies are forwarded as they came, unknown fields included, after a type check of the fields
Ollama declares (``routes_body``); only a hub's configured ``default_keep_alive`` is added when
a call gives none, as the ``llm/v1`` provider does. Non-streamed answers are Ollama's JSON plus
``"gleitzeit": {"instance", "attempts"}``; every answer from an instance names it in the
``X-Gleitzeit-Instance`` header.

**Which hub serves a model** (when several Ollama hubs are configured): the hub with the best
instance for it, ranked 0) healthy with the model loaded, 1) healthy with it installed,
2) known to have it but unhealthy or ejected, 3) models not known yet (maybe); draining
instances and those known to lack it do not count. Ties go to the hub configured first. If no
hub may have the model, the first hub with ``auto_pull = true`` pulls it; otherwise 404
``model "x" not found, try pulling it first``. Within the hub, its own routing (model-aware
tiers, per-model slots, the strategy, failover) chooses the instance.

With gateway keys, each route needs its ``llm/*`` method in the key's ``methods`` (chat and
generate their own, embed for both embedding routes, list_models for tags, ps and show) and
the model in its ``models``; ``auto_pull`` runs only for admin keys (``access``).

Also served, by their own modules: model management across the pool (``/api/delete``,
``/api/copy``, ``/api/create``, ``/api/push``, ``/api/blobs/:digest``; admin keys only:
``routes_models``) and the OpenAI-compatible ``/v1`` routes (``routes_openai``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
from aiohttp import web

from gleitzeit_core import (
    GleitzeitError,
    Health,
    Request,
    Resource,
    json_bytes,
    json_error,
    read_json_object,
)
from gleitzeit_core import __version__ as gleitzeit_version
from gleitzeit_ollama.access import (
    check_inputs,
    check_method,
    check_model,
    check_pull,
    may_auto_pull,
    visible,
)
from gleitzeit_ollama.client import JSON
from gleitzeit_ollama.hub import OllamaHub
from gleitzeit_ollama.models import has_model, is_hot
from gleitzeit_ollama.openai_wire import gateway_error
from gleitzeit_ollama.prefix_affinity import prompt_attributes
from gleitzeit_ollama.routes_body import (
    CHAT,
    EMBED,
    EMBEDDINGS,
    GENERATE,
    PULL,
    SHOW,
    ApiError,
    Check,
    check_body,
    error_response,
    keep_alive_of,
    model_of,
    not_found,
)
from gleitzeit_ollama.routes_merge import members, merged_ps, merged_tags, pool_version
from gleitzeit_ollama.routes_stream import INSTANCE_HEADER, Framing, StreamRelay
from gleitzeit_ollama.stream import ChunkStream, is_pull_success

__all__ = [
    "OllamaApi",
    "RoutedCall",
    "json_answer",
    "ollama_errors",
    "register_routes",
    "served_by",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NOBODY = 4  # rank of a hub on which no instance may have the model
LONG_RUNNING = frozenset({"/api/pull", "/api/create", "/api/push", "/api/blobs/{digest}"})


def ollama_errors(handler: Handler, method: str | None = None) -> Handler:
    """Errors of the request and of the pool become Ollama's ``{"error"}`` with its status;
    anything else is left to the core's middleware (400/413 bodies, 500 for bugs). The
    caller's key must allow ``method`` (the ``llm/*`` method the route stands for), if any.

    The core answers a body too deeply nested to decode; one that decodes but is too deep to
    encode again when forwarded raises ``RecursionError`` here, and is a 400 too."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            if method is not None:
                check_method(method)
            return await handler(request)
        except (ApiError, GleitzeitError) as exc:
            return error_response(exc)
        except RecursionError:
            return json_error(400, "request body is nested too deeply")

    return wrapped


def json_answer(data: Any, instance: str | None = None, *, status: int = 200) -> web.Response:
    """``data`` as compact JSON; ``instance`` (who answered) in the ``X-Gleitzeit-Instance``
    header."""
    response = web.Response(
        body=json_bytes(data),
        status=status,
        content_type="application/json",
        charset="utf-8",
    )
    if instance is not None:
        response.headers[INSTANCE_HEADER] = instance
    return response


def served_by(answer: JSON) -> str | None:
    info = answer.get("gleitzeit")
    instance = info.get("instance") if isinstance(info, dict) else None
    return instance if isinstance(instance, str) else None


def rank(hub: OllamaHub, model: str) -> int:
    """How well ``hub`` can serve ``model`` (lower is better; ``_NOBODY``: not at all)."""
    now, wall, margin = hub.clock.now(), time.time(), hub.settings.expiry_margin
    best = _NOBODY
    for resource in hub.members():
        if resource.draining:
            continue
        has = has_model(resource, model)
        if has is False:
            continue
        if has is None:
            best = min(best, 3)
        elif resource.health is Health.UNHEALTHY or resource.is_ejected(now):
            best = min(best, 2)
        elif is_hot(resource, model, wall, margin):
            return 0
        else:
            best = min(best, 1)
    return best


@attrs.frozen
class RoutedCall:
    """One inference call, its hub chosen: answered whole, or streamed with failover before
    the first chunk and resumption after it (``routes_stream``)."""

    hub: OllamaHub
    body: JSON
    model: str
    keep_alive: float | None
    request: Request

    async def answer(self, path: str) -> JSON:
        return await self.hub.call_json(
            path, self.body, self.request, model=self.model, keep_alive=self.keep_alive
        )

    async def relay(
        self, client: web.Request, path: str, framing: Framing | None = None
    ) -> web.StreamResponse:
        hub = self.hub
        stream = await hub.open_stream(
            path, self.body, self.request, model=self.model, keep_alive=self.keep_alive
        )
        relay = StreamRelay(
            hub,
            path=path,
            body=self.body,
            request=self.request,
            model=self.model,
            keep_alive=self.keep_alive,
            resumable=True,
            framing=framing,
        )
        return await relay.respond(client, stream)


class OllamaApi:
    """The handlers, over the runtime's Ollama hubs (``(name, hub)`` in config order)."""

    def __init__(self, hubs: Sequence[tuple[str, OllamaHub]]) -> None:
        self.hubs = list(hubs)
        self._only = self.hubs[0][1] if len(self.hubs) == 1 else None

    def routes(self) -> list[tuple[str, str, Handler]]:
        """Each route with the ``llm/*`` method a key's ``methods`` must allow for it."""
        head = self.head
        listing = "llm/list_models"
        return [
            ("GET", "/", self.root),
            ("HEAD", "/", head),
            ("GET", "/api/version", self.version),
            ("HEAD", "/api/version", head),
            ("GET", "/api/tags", ollama_errors(self.tags, listing)),
            ("HEAD", "/api/tags", head),
            ("GET", "/api/ps", ollama_errors(self.ps, listing)),
            ("POST", "/api/show", ollama_errors(self.show, listing)),
            ("POST", "/api/generate", ollama_errors(self.generate, "llm/generate")),
            ("POST", "/api/chat", ollama_errors(self.chat, "llm/chat")),
            ("POST", "/api/embed", ollama_errors(self.embed, "llm/embed")),
            ("POST", "/api/embeddings", ollama_errors(self.embeddings, "llm/embed")),
            ("POST", "/api/pull", ollama_errors(self.pull, "llm/pull_model")),
        ]

    # -- routing --------------------------------------------------------------------------------
    def choose(self, model: str) -> OllamaHub | None:
        """The hub to serve ``model`` (see the module docstring), or None."""
        if self._only is not None:
            return self._only if self._only.has_anywhere(model) else None
        best, chosen = _NOBODY, None
        for _, hub in self.hubs:
            score = rank(hub, model)
            if score < best:
                best, chosen = score, hub
                if score == 0:
                    break
        return chosen

    async def hub_for(self, model: str, shown: str) -> OllamaHub:
        hub = self.choose(model)
        if hub is not None:
            return hub
        for _, candidate in self.hubs:
            if candidate.settings.auto_pull and may_auto_pull():
                await candidate.ensure_model(model)
                return candidate
        if any(has_model(r, model) for _, h in self.hubs for r in h.members()):
            raise ApiError(503, f"every instance with model {shown!r} is draining")
        raise not_found(shown)

    @staticmethod
    def request_for(
        hub: OllamaHub, model: str, *, slot: bool = True, body: JSON | None = None
    ) -> Request:
        prompt = prompt_attributes(hub.strategy, body) if body is not None else {}
        return Request(
            slot=model if slot else None,
            attributes={"model": model, **prompt},
            deadline=hub.clock.now() + hub.request_timeout,
        )

    # -- information ----------------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="Ollama is running")

    async def head(self, request: web.Request) -> web.StreamResponse:
        return web.Response()

    async def version(self, request: web.Request) -> web.StreamResponse:
        return json_answer(pool_version(members(self.hubs), gleitzeit_version))

    async def tags(self, request: web.Request) -> web.StreamResponse:
        return json_answer(visible(await merged_tags(members(self.hubs))))

    async def ps(self, request: web.Request) -> web.StreamResponse:
        return json_answer(visible(await merged_ps(members(self.hubs))))

    async def show(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request, SHOW)
        shown, model = model_of(body, legacy_name=True)
        check_model(model)
        hub = self.choose(model)
        if hub is None:
            raise ApiError(404, f"model '{shown}' not found")
        # metadata, not inference: no model slot, and the model is not marked as loaded
        answer = await hub.call_json("/api/show", body, self.request_for(hub, model, slot=False))
        return json_answer(answer, served_by(answer))

    # -- inference ------------------------------------------------------------------------------
    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._infer(request, "/api/generate", GENERATE, streams=True)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._infer(request, "/api/chat", CHAT, streams=True)

    async def embed(self, request: web.Request) -> web.StreamResponse:
        return await self._infer(request, "/api/embed", EMBED, streams=False)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._infer(request, "/api/embeddings", EMBEDDINGS, streams=False)

    async def _infer(
        self, request: web.Request, path: str, spec: Mapping[str, Check], *, streams: bool
    ) -> web.StreamResponse:
        body = await _body(request, spec)
        call = await self.route(body)
        if streams and body.get("stream") is not False:  # Ollama streams unless told not to
            return await call.relay(request, path)
        answer = await call.answer(path)
        return json_answer(answer, served_by(answer))

    async def route(self, body: JSON) -> RoutedCall:
        """The call of ``body`` on the hub that serves its model, with the hub's
        ``default_keep_alive`` added when the body gives none."""
        shown, model = model_of(body)
        check_model(model)
        hub = await self.hub_for(model, shown)
        check_inputs("llm/embed", body.get("input"), hub.settings)
        default = hub.settings.default_keep_alive
        if default is not None and body.get("keep_alive") is None:
            body = {**body, "keep_alive": default}
        call = self.request_for(hub, model, body=body)
        return RoutedCall(hub, body, model, keep_alive_of(body), call)

    # -- provisioning ---------------------------------------------------------------------------
    def pull_target(self, model: str, instance: str | None) -> tuple[OllamaHub, Resource]:
        if instance is not None:
            for name, hub in self.hubs:
                rid = instance.removeprefix(f"{name}/")
                if rid in hub:
                    return hub, hub.get(rid)
            known = ", ".join(label for label, _, _ in members(self.hubs)) or "none"
            raise ApiError(400, f'instance: no instance "{instance}"; instances: {known}')
        hub = self.choose(model) or self.hubs[0][1]
        return hub, hub.pull_target(None)

    def label(self, hub: OllamaHub, resource: Resource) -> str:
        return f"{hub.name}/{resource.id}" if len(self.hubs) > 1 else resource.id

    async def pull(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request, PULL)
        _, model = model_of(body, legacy_name=True)
        check_pull(model, what="POST /api/pull")  # before the instance lookup says anything
        instance = body.get("instance")
        hub, resource = self.pull_target(model, instance if isinstance(instance, str) else None)
        check_pull(model, what="POST /api/pull")
        insecure = body.get("insecure")
        stream = await hub.open_pull(
            model, resource, insecure=insecure if isinstance(insecure, bool) else None
        )
        return await self.progress(request, hub, resource, stream, "/api/pull", body)

    async def progress(
        self,
        client: web.Request,
        hub: OllamaHub,
        resource: Resource,
        stream: ChunkStream,
        path: str,
        body: JSON,
    ) -> web.StreamResponse:
        """Answer a provisioning call (pull, create, push) on one instance: its progress lines
        as they come, or (``stream: false``) its last line naming the instance."""
        if body.get("stream") is not False:
            relay = StreamRelay(
                hub,
                path=path,
                body=body,
                request=Request(),
                model=None,
                keep_alive=None,
                resumable=False,
                final=is_pull_success,
            )
            return await relay.respond(client, stream)
        last: JSON = {}
        async with stream:
            async for chunk in stream:
                last = chunk
        label = self.label(hub, resource)
        return json_answer({**last, "gleitzeit": {"instance": label}}, label)


async def _body(request: web.Request, spec: Mapping[str, Check]) -> JSON:
    body = await read_json_object(request)
    check_body(body, spec)
    return body


def register_routes(router: Any) -> None:
    """Add the Ollama API to the gateway when the runtime has at least one Ollama hub."""
    # here: both import this module
    from gleitzeit_ollama.routes_models import ModelAdmin
    from gleitzeit_ollama.routes_openai import OpenAiApi

    hubs = [(n, h) for n, h in router.runtime.hubs.items() if isinstance(h, OllamaHub)]
    if not hubs:
        return
    api = OllamaApi(hubs)
    # a pull (a create, a push, a blob upload) may run for the longest pull_timeout, past the
    # gateway's request_timeout
    pull_time = max(hub.settings.pull_timeout for _, hub in hubs)
    admin = ModelAdmin(api)
    for method, path, handler in [*api.routes(), *admin.routes(), *OpenAiApi(api).routes()]:
        if path in LONG_RUNNING:
            router.add(method, path, handler, timeout=pull_time)
        else:
            router.add(method, path, handler)
    router.error_shape("/v1/", gateway_error)  # the key check, limits, unknown /v1 paths
