"""The OpenAI-compatible half of the Ollama API on the gateway, through the pool.

=============================  ===================================================================
``POST /v1/chat/completions``  as ``/api/chat``: streamed as server-sent events ending
                               ``data: [DONE]`` (``stream_options.include_usage`` adds a usage
                               chunk before it), tools and tool calls, ``response_format``
``POST /v1/completions``       as ``/api/generate``
``POST /v1/embeddings``        as ``/api/embed`` (a string or a list; float or base64)
``GET /v1/models``             the merged ``/api/tags`` of the pool (only models the caller's
                               key may use)
``GET /v1/models/{model}``     from ``/api/show`` on an instance that has it
=============================  ===================================================================

**Translated, not forwarded.** Each request becomes the ``/api`` call Ollama's own ``/v1`` would
make (``openai_wire``) and goes through exactly the path of ``/api/*``: the same hub choice,
model-aware routing, slots, breakers and failover before the first chunk, and the same
replayed resumption of a stream an instance broke mid-way; each chunk is translated as it is
written. Forwarding to each instance's ``/v1`` instead would need a second streaming reader
(SSE) with its own failure detection, would lose the done chunk's timings the hub records, and
could not resume a stream; it would save only the translation, which
``benchmarks/gateway.py`` measures as the difference between ``gateway_v1_added_p50_ms`` and
``gateway_chat_added_p50_ms`` (see ``docs/performance.md``).

Errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with the status Ollama
answers (unknown model: 404 ``not_found_error``; a key without the model or the route's
``llm/*`` method: 403, as on ``/api``; ``/v1/models`` lists only the key's models), also for a
stream that fails after it started (its last event, then the stream ends without ``[DONE]``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from gleitzeit_core import GleitzeitError, read_json_object
from gleitzeit_ollama.access import check_method, check_model, visible
from gleitzeit_ollama.client import JSON
from gleitzeit_ollama.models import normalize_model
from gleitzeit_ollama.openai_wire import (
    EVENT_STREAM,
    ChatTranslator,
    CompletionTranslator,
    chat_request,
    completion_request,
    embedding_answer,
    embedding_request,
    error_body,
    model_entry,
    param_of,
)
from gleitzeit_ollama.routes import OllamaApi, json_answer, served_by
from gleitzeit_ollama.routes_body import ApiError, error_parts
from gleitzeit_ollama.routes_merge import members, merged_tags
from gleitzeit_ollama.routes_stream import Framing

__all__ = ["OpenAiApi"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Translator = ChatTranslator | CompletionTranslator


def _error(status: int, message: str) -> web.Response:
    param = param_of(message) if status == 400 else None
    return json_answer(error_body(status, message, param), status=status)


def _answers(handler: Handler, method: str) -> Handler:
    """Every failure of a ``/v1`` request as OpenAI's error object, with Ollama's status; the
    caller's key must allow ``method`` (the ``llm/*`` method the route stands for, as on the
    ``/api`` routes)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            check_method(method)
            return await handler(request)
        except web.HTTPException as exc:  # the body could not be read (empty, not JSON, too big)
            if exc.status < 400:
                raise
            text = exc.text or ""
            return _error(exc.status, text if not text.startswith(str(exc.status)) else exc.reason)
        except (ApiError, GleitzeitError) as exc:
            return _error(*error_parts(exc))
        except RecursionError:
            return _error(400, "request body is nested too deeply")

    return wrapped


class _Events(Framing):
    """Each ``/api`` chunk as the server-sent event(s) of one OpenAI stream."""

    content_type = EVENT_STREAM
    passes_lines = False

    def __init__(self, translator: Translator) -> None:
        self.translator = translator

    def chunk(self, chunk: JSON) -> bytes:
        return self.translator.chunk(chunk)

    def error(self, message: str) -> bytes:
        return self.translator.error(message)


class OpenAiApi:
    """The ``/v1`` handlers, routing through an ``OllamaApi`` (its hubs, its choices)."""

    def __init__(self, api: OllamaApi) -> None:
        self.api = api

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/v1/chat/completions", _answers(self.chat, "llm/chat")),
            ("POST", "/v1/completions", _answers(self.completions, "llm/generate")),
            ("POST", "/v1/embeddings", _answers(self.embeddings, "llm/embed")),
            ("GET", "/v1/models", _answers(self.models, "llm/list_models")),
            ("GET", "/v1/models/{model:.+}", _answers(self.model, "llm/list_models")),
        ]

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, stream, usage = chat_request(await read_json_object(request))
        translator = ChatTranslator(body["model"], usage)
        return await self._infer(request, "/api/chat", body, stream, translator)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body, stream, usage = completion_request(await read_json_object(request))
        translator = CompletionTranslator(body["model"], usage)
        return await self._infer(request, "/api/generate", body, stream, translator)

    async def _infer(
        self, request: web.Request, path: str, body: JSON, stream: bool, translator: Translator
    ) -> web.StreamResponse:
        call = await self.api.route(body)  # checks the caller may use the model
        if stream:
            return await call.relay(request, path, _Events(translator))
        answer = await call.answer(path)
        out = translator.answer(answer)
        out["gleitzeit"] = answer.get("gleitzeit")
        return json_answer(out, served_by(answer))

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body, encoding = embedding_request(await read_json_object(request))
        call = await self.api.route(body)
        answer = await call.answer("/api/embed")
        return json_answer(embedding_answer(body["model"], answer, encoding), served_by(answer))

    async def models(self, request: web.Request) -> web.StreamResponse:
        tags = visible(await merged_tags(members(self.api.hubs)))  # only the key's models
        data = [
            model_entry(name, entry.get("modified_at"))
            for entry in tags.get("models") or ()
            if isinstance(name := entry.get("name") or entry.get("model"), str)
        ]
        return json_answer({"object": "list", "data": data})

    async def model(self, request: web.Request) -> web.StreamResponse:
        shown = request.match_info["model"]
        model = normalize_model(shown)
        check_model(model)
        hub = self.api.choose(model)
        if hub is None:
            raise ApiError(404, f"model '{shown}' not found")
        call = self.api.request_for(hub, model, slot=False)
        answer = await hub.call_json("/api/show", {"model": shown}, call)
        return json_answer(model_entry(shown, answer.get("modified_at")))
