"""Inference endpoints: /api/generate, /api/chat, /api/embed, /api/embeddings, and their
OpenAI-compatible twins /v1/completions, /v1/chat/completions, /v1/embeddings, which Ollama
(and so the simulator) serves by translating to the former (``openai_wire``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from aiohttp import web

from gleitzeit_ollama.openai_wire import (
    ChatTranslator,
    CompletionTranslator,
    chat_request,
    completion_request,
    embedding_answer,
    embedding_request,
)
from gleitzeit_ollama.routes_body import ApiError
from gleitzeit_ollama.sim.generation import (
    Plan,
    chat_key,
    chat_messages,
    generate_key,
    options_of,
    plan_output,
)
from gleitzeit_ollama.sim.models import ModelInfo
from gleitzeit_ollama.sim.state import SimState
from gleitzeit_ollama.sim.streaming import EndStream, Pacer, make_output
from gleitzeit_ollama.sim.text import context_ids, count_tokens, embedding, normalize
from gleitzeit_ollama.sim.wire import (
    JsonObj,
    SimHTTPError,
    json_response,
    parse_keep_alive,
    read_json,
    require_model,
    rfc3339,
    want_stream,
)

_Frames = ChatTranslator | CompletionTranslator
_Request = TypeVar("_Request")


def _translated(translate: Callable[[JsonObj], _Request], body: JsonObj) -> _Request:
    """A ``/v1`` body as its ``/api`` body; a bad one is the 400 Ollama answers."""
    try:
        return translate(body)
    except ApiError as exc:
        raise SimHTTPError(exc.status, exc.message) from None


# Builds one streamed chunk from (answer token, thinking token).
ChunkFn = Callable[[str, str], JsonObj]


@attrs.frozen
class Job:
    """One generate/chat completion: what to say and how to shape its chunks."""

    t0: int  # request arrival (monotonic ns), for total_duration
    model: str  # as the client spelled it, echoed back like Ollama does
    info: ModelInfo
    keep_alive: float | None
    stream: bool
    plan: Plan
    chunk: ChunkFn
    full: JsonObj  # body fields of the non-streamed answer
    tail: JsonObj = attrs.field(factory=dict)  # extra final-chunk fields (context)


class InferenceRoutes:
    def __init__(self, state: SimState) -> None:
        self._state = state

    def register(self, app: web.Application) -> None:
        app.router.add_post("/api/generate", self.generate)
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/embed", self.embed)
        app.router.add_post("/api/embeddings", self.embeddings)
        app.router.add_post("/v1/completions", self.v1_completions)
        app.router.add_post("/v1/chat/completions", self.v1_chat)
        app.router.add_post("/v1/embeddings", self.v1_embeddings)

    def _model(self, body: JsonObj, verb: str | None) -> tuple[str, ModelInfo, float | None]:
        model = require_model(body)
        info = self._state.require(model)
        if verb and "completion" not in info.capabilities:
            raise SimHTTPError(400, f'"{model}" does not support {verb}')
        return model, info, parse_keep_alive(body.get("keep_alive"))

    async def generate(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic_ns()
        return await self._generate(request, await read_json(request), t0)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic_ns()
        return await self._chat(request, await read_json(request), t0)

    async def v1_completions(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic_ns()
        body, _, usage = _translated(completion_request, await read_json(request))
        frames = CompletionTranslator(body["model"], usage)
        return await self._generate(request, body, t0, frames)

    async def v1_chat(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic_ns()
        body, _, usage = _translated(chat_request, await read_json(request))
        return await self._chat(request, body, t0, ChatTranslator(body["model"], usage))

    async def _generate(
        self, request: web.Request, body: JsonObj, t0: int, frames: _Frames | None = None
    ) -> web.StreamResponse:
        model, info, keep_alive = self._model(body, "generate")
        key, prompt = generate_key(body)
        if not key and not body.get("images"):
            return await self._load_or_unload(model, info, keep_alive, {"response": ""})
        plan = plan_output(key, prompt, body, info, self._state.config)

        def chunk(token: str, thought: str) -> JsonObj:
            out: JsonObj = {"model": model, "created_at": rfc3339(), "response": token}
            if thought:
                out["thinking"] = thought
            return out | {"done": False}

        full: JsonObj = {"response": plan.text}
        if plan.thinking:
            full["thinking"] = plan.thinking_text
        tail = {"context": context_ids(key, plan.text)}
        job = Job(t0, model, info, keep_alive, want_stream(body), plan, chunk, full, tail)
        return await self._complete(request, job, frames)

    async def _chat(
        self, request: web.Request, body: JsonObj, t0: int, frames: _Frames | None = None
    ) -> web.StreamResponse:
        model, info, keep_alive = self._model(body, "chat")
        messages = chat_messages(body)
        empty = {"message": {"role": "assistant", "content": ""}}
        if not messages:
            return await self._load_or_unload(model, info, keep_alive, empty)
        key, prompt = chat_key(messages)
        plan = plan_output(key, prompt, body, info, self._state.config)

        def chunk(token: str, thought: str) -> JsonObj:
            message = {"role": "assistant", "content": token}
            if thought:
                message["thinking"] = thought
            return {"model": model, "created_at": rfc3339(), "message": message, "done": False}

        message: JsonObj = {"role": "assistant", "content": plan.text}
        if plan.thinking:
            message["thinking"] = plan.thinking_text
        if plan.tool_calls:
            message["tool_calls"] = list(plan.tool_calls)
        full: JsonObj = {"message": message}
        job = Job(t0, model, info, keep_alive, want_stream(body), plan, chunk, full)
        return await self._complete(request, job, frames)

    async def _load_or_unload(
        self, model: str, info: ModelInfo, keep_alive: float | None, empty: JsonObj
    ) -> web.StreamResponse:
        """Empty prompt/messages: pre-load the model, or evict it when keep_alive is 0."""
        registry = self._state.registry
        if keep_alive == 0:
            registry.unload(info)
            reason = "unload"
        else:
            await registry.acquire(info, keep_alive)
            registry.release(info)
            reason = "load"
        head = {"model": model, "created_at": rfc3339()}
        return json_response(head | empty | {"done": True, "done_reason": reason})

    async def _complete(
        self, request: web.Request, job: Job, frames: _Frames | None = None
    ) -> web.StreamResponse:
        """Run one completion inside a model slot with realistic pacing and timings: the
        time to first token is the base latency plus the prompt tokens the slot's cache
        did not hold, at ``prefill_ms_per_token`` each."""
        state, plan = self._state, job.plan
        config = state.config
        faults = state.faults.stream_faults(request.path)
        out = make_output(request, job.stream, faults, frames)
        async with state.slots.slot(job.info.name) as slots:
            load_ns = await state.registry.acquire(job.info, job.keep_alive)
            cache = slots.take_cache(plan.prompt, state.registry.generation(job.info))
            holds: list[str] | None = None  # what the cache keeps if this ends early
            try:
                t_prompt = time.monotonic_ns()
                prefill_s = cache.evaluated * config.prefill_ms_per_token / 1000.0
                pacer = Pacer(config.latency_ms / 1000.0 + prefill_s, config.tokens_per_s)
                await pacer.wait_token(0)
                holds = list(plan.prompt)
                t_eval = time.monotonic_ns()
                steps = [("", t) for t in plan.thinking] + [(t, "") for t in plan.tokens]
                for i, (token, thought) in enumerate(steps):
                    await pacer.wait_token(i + 1)
                    await out.emit(job.chunk(token, thought))
                if plan.tool_calls:  # Ollama sends a model's tool calls whole, in one chunk
                    await pacer.wait_token(len(steps) + 1)
                    calls = {"tool_calls": list(plan.tool_calls)}
                    await out.emit(job.chunk("", "") | {"message": job.full["message"] | calls})
                now = time.monotonic_ns()
                timings = {
                    "done": True,
                    "done_reason": plan.done_reason,
                    **job.tail,
                    "total_duration": now - job.t0,
                    "load_duration": load_ns,
                    "prompt_eval_count": cache.evaluated,
                    "prompt_eval_duration": t_eval - t_prompt,
                    "eval_count": plan.eval_count,
                    "eval_duration": now - t_eval,
                }
                final = job.chunk("", "") | timings
                answer = {"model": job.model, "created_at": rfc3339()} | job.full | timings
                holds = [*plan.prompt, *plan.generated]
                return await out.finish(final, answer)
            except EndStream as ended:
                return ended.response
            finally:
                slots.give_back(cache, holds)
                state.registry.release(job.info)

    async def embed(self, request: web.Request) -> web.StreamResponse:
        return json_response(await self._embed_answer(await read_json(request)))

    async def v1_embeddings(self, request: web.Request) -> web.StreamResponse:
        body, encoding = _translated(embedding_request, await read_json(request))
        answer = await self._embed_answer(body)
        return json_response(embedding_answer(body["model"], answer, encoding))

    async def _embed_answer(self, body: JsonObj) -> JsonObj:
        t0 = time.monotonic_ns()
        model, info, keep_alive = self._model(body, None)
        raw = body.get("input")
        if raw is None:
            inputs: list[str] = []
        elif isinstance(raw, str):
            inputs = [raw]
        elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            inputs = list(raw)
        else:
            raise SimHTTPError(400, "invalid input type")
        options_of(body)
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or dims <= 0):
            raise SimHTTPError(400, "dimensions must be a positive integer")
        vectors, load_ns, prompt_tokens = await self._embed(info, keep_alive, inputs, dims)
        return {
            "model": model,
            "embeddings": vectors,
            "total_duration": time.monotonic_ns() - t0,
            "load_duration": load_ns,
            "prompt_eval_count": prompt_tokens,
        }

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """Legacy single-prompt endpoint: ``{"embedding": [...]}``."""
        body = await read_json(request)
        _model, info, keep_alive = self._model(body, None)
        prompt = body.get("prompt") or ""
        if not isinstance(prompt, str):
            raise SimHTTPError(400, "prompt must be a string")
        options_of(body)
        vectors, _, _ = await self._embed(info, keep_alive, [prompt] if prompt else [], None)
        return json_response({"embedding": vectors[0] if vectors else []})

    async def _embed(
        self, info: ModelInfo, keep_alive: float | None, inputs: list[str], dims: int | None
    ) -> tuple[list[list[float]], int, int]:
        state = self._state
        async with state.slots.slot(info.name):
            load_ns = await state.registry.acquire(info, keep_alive)
            try:
                if inputs:
                    await asyncio.sleep(state.config.latency_ms / 1000.0)
                vectors: list[list[Any]] = []
                for text in inputs:
                    vec = embedding(text, state.config.embed_dim, state.config.seed)
                    vectors.append(normalize(vec[:dims]) if dims else vec)
            finally:
                state.registry.release(info)
        return vectors, load_ns, sum(count_tokens(t) for t in inputs)
