"""Model management across the pool: ``/api/delete``, ``/api/copy``, ``/api/create``,
``/api/push`` and ``/api/blobs/:digest``, for admin keys only.

===========================  ======================================================================
``DELETE /api/delete``        on every instance that has (or may have) the model
``POST /api/copy``            on every instance that has (or may have) the source model, so the
                              new name is wherever the old one is
``POST /api/create``          on one instance: the one named by the extra field ``instance``
                              (its id, or ``hub/id``), else, with ``from`` and no ``files``, the
                              first fit instance (config order) that has the ``from`` model, else
                              the first fit instance (which pulls the ``from`` model); progress
                              streamed by default as in Ollama
``POST /api/push``            from one instance: the named one, else the first fit one that has
                              the model
``HEAD|POST /api/blobs/:d``   on the instance a create without ``instance`` goes to (the first fit
                              one), or the one named by ``?instance=``; the upload is streamed
                              through, never held in memory
===========================  ======================================================================

"Fit" is healthy, not ejected, not draining, its breaker closed. The fixed order makes a blob
upload and the create that uses it land on the same instance, as the ``ollama`` clients send
them one after the other.

Answers keep Ollama's shapes and add what happened on each instance: for delete and copy
``"gleitzeit": {"instances": {"s0": {"status": 200}, "s1": {"error": "..."}}}``, for create and
push (as for pull) ``"gleitzeit": {"instance": "s0"}`` and the ``X-Gleitzeit-Instance``
header. Delete and copy
answer 200 when every instance that was asked did it (instances that answer 404 do not count);
404 when none had the model; otherwise the status of the first failure, its message naming the
instances where it worked and where it did not, so the client can retry. Routing follows at
once: a deleted model counts as absent on those instances, a copy as installed.

With API keys, each of these needs an admin key (a 403 otherwise) that may use the model. A
push, and a create ``from`` a model, may reach only the registries in the hub's
``pull_registries`` (a push sends the weights to the registry its name names).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from gleitzeit_core import Resource, current_caller, read_json_object
from gleitzeit_ollama.access import check_model, check_registry
from gleitzeit_ollama.client import JSON, error_from_response, transport_error
from gleitzeit_ollama.hub import OllamaHub
from gleitzeit_ollama.models import has_model, normalize_model, record_absent, record_installed
from gleitzeit_ollama.pulling import open_progress, unfit
from gleitzeit_ollama.routes import OllamaApi, json_answer, ollama_errors
from gleitzeit_ollama.routes_body import (
    BOOL,
    OBJECT,
    STRING,
    ApiError,
    Check,
    check_body,
    error_message,
    model_of,
)
from gleitzeit_ollama.routes_merge import Member, members
from gleitzeit_ollama.routes_stream import INSTANCE_HEADER

__all__ = ["ModelAdmin"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Outcome = dict[str, Any]  # {"status": 200} or {"status": 404, "error": "..."}
_CHUNK = 256 * 1024
_DIGEST = re.compile(r"sha256[:-][0-9a-f]{64}")

DELETE: dict[str, Check] = {"model": STRING, "name": STRING}
COPY: dict[str, Check] = {"source": STRING, "destination": STRING}
CREATE: dict[str, Check] = {
    "model": STRING,
    "name": STRING,
    "from": STRING,
    "files": OBJECT,
    "adapters": OBJECT,
    "template": STRING,
    "license": lambda v, p: None if isinstance(v, str | list) else f"{p}: expected a string",
    "system": STRING,
    "parameters": OBJECT,
    "quantize": STRING,
    "stream": BOOL,
    "instance": STRING,
}
PUSH: dict[str, Check] = {
    "model": STRING,
    "name": STRING,
    "insecure": BOOL,
    "stream": BOOL,
    "instance": STRING,
}


def _admin(what: str, *models: str) -> None:
    """A 403 unless the caller's key is an admin key that may use ``models``."""
    caller = current_caller()
    if caller is None:
        return
    caller.check_admin(what)
    for model in models:
        check_model(model)


async def _body(request: web.Request, spec: Mapping[str, Check]) -> JSON:
    body = await read_json_object(request)
    check_body(body, spec)
    return body


class ModelAdmin:
    """The management handlers, over an ``OllamaApi``'s hubs."""

    def __init__(self, api: OllamaApi) -> None:
        self.api = api

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("DELETE", "/api/delete", ollama_errors(self.delete)),
            ("POST", "/api/copy", ollama_errors(self.copy)),
            ("POST", "/api/create", ollama_errors(self.create)),
            ("POST", "/api/push", ollama_errors(self.push)),
            ("HEAD", "/api/blobs/{digest}", ollama_errors(self.has_blob)),
            ("POST", "/api/blobs/{digest}", ollama_errors(self.put_blob)),
        ]

    # -- on every holder ------------------------------------------------------------------------
    def _holders(self, model: str) -> list[Member]:
        return [m for m in members(self.api.hubs) if has_model(m[2], model) is not False]

    async def delete(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request, DELETE)
        shown, model = model_of(body, legacy_name=True)
        _admin("DELETE /api/delete", model)
        outcomes = await self._on_each(self._holders(model), "DELETE", "/api/delete", body)
        for _, resource in self._succeeded(outcomes):
            record_absent(resource, model)
        return self._report(outcomes, f"model '{shown}' not found", "deleted")

    async def copy(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request, COPY)
        source, destination = body.get("source"), body.get("destination")
        if not isinstance(source, str) or not isinstance(destination, str):
            raise ApiError(400, "source and destination are required")
        if not source or not destination:
            raise ApiError(400, "source and destination are required")
        model, copied = normalize_model(source), normalize_model(destination)
        _admin("POST /api/copy", model, copied)
        outcomes = await self._on_each(self._holders(model), "POST", "/api/copy", body)
        for _, resource in self._succeeded(outcomes):
            record_installed(resource, copied)
        return self._report(outcomes, f"model '{source}' not found", "copied")

    async def _on_each(
        self, targets: list[Member], method: str, path: str, body: JSON
    ) -> dict[str, tuple[OllamaHub, Resource, Outcome]]:
        results = await asyncio.gather(
            *(_send(hub, resource, method, path, body) for _, hub, resource in targets)
        )
        return {
            label: (hub, resource, outcome)
            for (label, hub, resource), outcome in zip(targets, results, strict=True)
        }

    @staticmethod
    def _succeeded(
        outcomes: dict[str, tuple[OllamaHub, Resource, Outcome]],
    ) -> list[tuple[OllamaHub, Resource]]:
        return [(h, r) for h, r, o in outcomes.values() if o.get("status") == 200]

    @staticmethod
    def _report(
        outcomes: dict[str, tuple[OllamaHub, Resource, Outcome]], missing: str, done: str
    ) -> web.Response:
        report = {label: outcome for label, (_, _, outcome) in outcomes.items()}
        envelope = {"gleitzeit": {"instances": report}}
        worked = [label for label, o in report.items() if o.get("status") == 200]
        failed = {label: o for label, o in report.items() if o.get("status") not in (200, 404)}
        if failed:
            first = next(iter(failed.values()))
            status = first.get("status") or 503
            reasons = "; ".join(f"{label}: {o.get('error')}" for label, o in failed.items())
            where = ", ".join(worked) or "no instance"
            message = f"{done} on {where}; failed on {reasons}"
            return json_answer({"error": message} | envelope, status=status)
        if not worked:
            return json_answer({"error": missing} | envelope, status=404)
        return json_answer(envelope)

    # -- on one instance ------------------------------------------------------------------------
    def _first_fit(self, having: str | None = None) -> tuple[OllamaHub, Resource]:
        """The first fit instance in config order (that has ``having``, if given)."""
        for _, hub, resource in members(self.api.hubs):
            if unfit(resource, hub.clock.now()) is not None:
                continue
            if having is None or has_model(resource, having):
                return hub, resource
        wanted = f" with model {having!r}" if having else ""
        raise ApiError(503, f"no healthy instance{wanted} to send this to")

    def _target(self, instance: Any, having: str | None = None) -> tuple[OllamaHub, Resource]:
        if isinstance(instance, str) and instance:
            return self.api.pull_target("", instance)
        return self._first_fit(having)

    async def create(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request, CREATE)
        _, model = model_of(body, legacy_name=True)
        source = body.get("from")
        base = normalize_model(source) if isinstance(source, str) and source else None
        _admin("POST /api/create", model, *([base] if base else []))
        having = base if base is not None and not body.get("files") else None
        try:
            hub, resource = self._target(body.get("instance"), having)
        except ApiError:  # nobody has the "from" model: the instance will pull it
            hub, resource = self._target(body.get("instance"))
        if base is not None:  # a "from" the instance lacks is pulled from its registry
            check_registry(base, hub.settings)

        def created() -> None:
            record_installed(resource, model)

        return await self._progress(request, hub, resource, "/api/create", body, created)

    async def push(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request, PUSH)
        _, model = model_of(body, legacy_name=True)
        _admin("POST /api/push", model)
        hub, resource = self._target(body.get("instance"), model)
        # a push sends the model's weights to the registry its name names: only allowed ones
        check_registry(model, hub.settings)
        return await self._progress(request, hub, resource, "/api/push", body, None)

    async def _progress(
        self,
        request: web.Request,
        hub: OllamaHub,
        resource: Resource,
        path: str,
        body: JSON,
        succeeded: Callable[[], None] | None,
    ) -> web.StreamResponse:
        upstream = {k: v for k, v in body.items() if k != "instance"} | {"stream": True}
        stream = await open_progress(hub, resource, path, upstream, succeeded)
        answer = upstream | {"stream": body.get("stream") is not False}
        return await self.api.progress(request, hub, resource, stream, path, answer)

    async def has_blob(self, request: web.Request) -> web.StreamResponse:
        _admin("HEAD /api/blobs")
        hub, resource = self._target(request.query.get("instance"))
        url = _url(resource, _blob_path(request))
        timeout = aiohttp.ClientTimeout(total=hub.request_timeout)
        try:
            async with hub.session.head(url, timeout=timeout) as response:
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise transport_error(exc, resource.id, hub.settings.connect_timeout) from exc
        answer = web.Response(status=status)
        answer.headers[INSTANCE_HEADER] = self.api.label(hub, resource)
        return answer

    async def put_blob(self, request: web.Request) -> web.StreamResponse:
        """Stream the upload through to the instance (a GGUF file may be many gigabytes)."""
        _admin("POST /api/blobs")
        hub, resource = self._target(request.query.get("instance"))
        path = _blob_path(request)
        timeout = aiohttp.ClientTimeout(
            total=hub.settings.pull_timeout, sock_connect=hub.settings.connect_timeout
        )
        label = self.api.label(hub, resource)
        try:
            async with hub.session.post(
                _url(resource, path), data=request.content.iter_chunked(_CHUNK), timeout=timeout
            ) as response:
                if response.status in (200, 201):
                    answer = web.Response(status=response.status)
                    answer.headers[INSTANCE_HEADER] = label
                    return answer
                error = await error_from_response(
                    response, resource=resource.id, path=path, model=None
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise transport_error(exc, resource.id, hub.settings.connect_timeout) from exc
        return json_answer({"error": error_message(error)}, label, status=response.status)


def _blob_path(request: web.Request) -> str:
    """``/api/blobs/<digest>``, the digest checked: it goes into an upstream URL."""
    digest = request.match_info["digest"]
    if not _DIGEST.fullmatch(digest):
        raise ApiError(400, f"invalid digest {digest[:80]!r}: expected sha256:<64 hex digits>")
    return f"/api/blobs/{digest}"


def _url(resource: Resource, path: str) -> str:
    return resource.endpoint.rstrip("/") + path


async def _send(hub: OllamaHub, resource: Resource, method: str, path: str, body: JSON) -> Outcome:
    """One call on one instance, as an outcome for the report (never raises for it)."""
    timeout = aiohttp.ClientTimeout(
        total=hub.request_timeout, sock_connect=hub.settings.connect_timeout
    )
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    try:
        async with hub.session.request(
            method, _url(resource, path), data=payload, headers=headers, timeout=timeout
        ) as response:
            if response.status == 200:
                return {"status": 200}
            error = await error_from_response(response, resource=resource.id, path=path, model=None)
            return {"status": response.status, "error": error_message(error)}
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        failure = transport_error(exc, resource.id, hub.settings.connect_timeout)
        return {"error": str(failure)}
