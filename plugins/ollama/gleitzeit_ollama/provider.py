"""The ``llm/v1`` provider: LLM methods over an ``OllamaHub``.

=================  ==================================================================
method             does
=================  ==================================================================
llm/generate       ``/api/generate`` (prompt, system, images, format, sampling, ...)
llm/chat           ``/api/chat`` (messages with role/content/images, tools)
llm/vision         ``/api/generate`` with images (base64 or data: URIs; in-process callers
                   also files under the hub's ``image_dirs``)
llm/embed          ``/api/embed`` (``input``: a string or a list of strings)
llm/list_models    every model once, with the instances that have it installed/loaded
llm/pull_model     ``/api/pull`` on one instance; ``stream=true`` returns the progress
=================  ==================================================================

Non-streamed results are Ollama's JSON plus ``"gleitzeit": {"instance", "attempts"}``;
``stream=true`` returns an async iterator (``ChunkStream``) of the chunks exactly as Ollama
sends them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gleitzeit_core import (
    InvalidParams,
    Method,
    ProtocolProvider,
    Request,
    current_caller,
    public_endpoint,
)
from gleitzeit_ollama.access import check_inputs, check_model, check_pull, visible
from gleitzeit_ollama.client import JSON
from gleitzeit_ollama.hub import OllamaHub
from gleitzeit_ollama.models import (
    installed_models,
    loaded_models,
    model_details,
    normalize_model,
    parse_keep_alive,
)
from gleitzeit_ollama.params import (
    ChatParams,
    EmbedParams,
    GenerateParams,
    ListModelsParams,
    PullModelParams,
    VisionParams,
    chat_body,
    embed_body,
    generate_body,
    message_dict,
)
from gleitzeit_ollama.prefix_affinity import prompt_attributes
from gleitzeit_ollama.stream import ChunkStream

__all__ = ["ImageFiles", "LlmProvider", "load_images", "read_image"]

_DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+(?:;[\w.+-]+=[\w.+-]+)*;base64,", re.IGNORECASE)
_MAX_PATH = 4096


class ImageFiles:
    """Image files an in-process caller may name: only under ``dirs`` (symlinks resolved),
    at most ``max_bytes`` each. Gateway clients never get one (see ``LlmProvider``)."""

    def __init__(self, dirs: Sequence[str], max_bytes: int) -> None:
        self.dirs = [Path(d).expanduser().resolve() for d in dirs]
        self.max_bytes = max_bytes

    def read(self, value: str) -> bytes | None:
        """The file's bytes, or None for anything else (missing, outside, too big alike)."""
        if not self.dirs or len(value) > _MAX_PATH or "\n" in value or "\0" in value:
            return None
        try:
            path = Path(value).expanduser().resolve(strict=True)
            if not any(path.is_relative_to(d) for d in self.dirs) or not path.is_file():
                return None
            with path.open("rb") as file:
                data = file.read(self.max_bytes + 1)
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop
            return None
        return data if len(data) <= self.max_bytes else None


def read_image(value: str, files: ImageFiles | None) -> str | None:
    """base64 of one image given as base64, a data: URI or (``files``) an allowed file path;
    None when it is none of them."""
    match = _DATA_URI.match(value)
    if match is not None:
        value = value[match.end() :]
    elif files is not None:
        data = files.read(value)
        if data is not None:
            return base64.b64encode(data).decode("ascii")
    compact = "".join(value.split())
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    return compact or None


async def load_images(
    method: str, field: str, values: Sequence[str] | None, files: ImageFiles | None = None
) -> list[str] | None:
    """Every image as base64, or ``InvalidParams`` naming each one that is not an image. A
    path is read only through ``files``; the error does not say whether a path exists."""
    if not values:
        return None
    if files is None:
        converted = [read_image(v, None) for v in values]
        expected = "expected base64 data or a data: URI"
    else:
        converted = await asyncio.to_thread(lambda: [read_image(v, files) for v in values])
        expected = (
            "expected base64 data, a data: URI or the path of a file under the hub's "
            f"image_dirs (at most {files.max_bytes} bytes)"
        )
    problems = [f"{field}[{i}]: {expected}" for i, image in enumerate(converted) if image is None]
    if problems:
        raise InvalidParams(method, problems)
    return [image for image in converted if image is not None]


class LlmProvider(ProtocolProvider):
    protocol = "llm/v1"

    def __init__(
        self, hub: OllamaHub, runtime: Any = None, options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(hub, runtime, options)
        self.hub: OllamaHub = hub
        self._files: ImageFiles | None = None  # from the hub's settings, on first use
        self._methods = {
            m.name: m
            for m in (
                Method("llm/generate", self.generate, GenerateParams),
                Method("llm/chat", self.chat, ChatParams),
                Method("llm/vision", self.vision, VisionParams),
                Method("llm/embed", self.embed, EmbedParams),
                Method("llm/list_models", self.list_models, ListModelsParams),
                Method("llm/pull_model", self.pull_model, PullModelParams),
            )
        }

    def methods(self) -> Mapping[str, Method]:
        return self._methods

    # -- shared path ----------------------------------------------------------------------------
    def _image_files(self) -> ImageFiles | None:
        """Files are for in-process callers; a gateway client never names a host file."""
        if current_caller() is not None or not self.hub.settings.image_dirs:
            return None
        if self._files is None:
            settings = self.hub.settings
            self._files = ImageFiles(settings.image_dirs, settings.image_max_bytes)
        return self._files

    async def _images(self, method: str, field: str, values: Sequence[str] | None) -> Any:
        return await load_images(method, field, values, self._image_files())

    async def _run(
        self, path: str, body: JSON, model_name: str, stream: bool, timeout: float | None
    ) -> JSON | ChunkStream:
        hub = self.hub
        model = normalize_model(model_name)
        check_model(model)
        await hub.ensure_model(model)
        seconds = hub.request_timeout if timeout is None else timeout
        if current_caller() is not None:  # a client may shorten the hub's limit, not extend it
            seconds = min(seconds, hub.request_timeout)
        request = Request(
            slot=model,
            attributes={"model": model, **prompt_attributes(hub.strategy, body)},
            deadline=hub.clock.now() + seconds,
        )
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        if stream:
            return await hub.open_stream(path, body, request, model=model, keep_alive=keep_alive)
        return await hub.call_json(path, body, request, model=model, keep_alive=keep_alive)

    @property
    def _keep_alive(self) -> Any:
        return self.hub.settings.default_keep_alive

    # -- methods --------------------------------------------------------------------------------
    async def generate(self, params: GenerateParams) -> JSON | ChunkStream:
        images = await self._images("llm/generate", "params.images", params.images)
        body = generate_body(params, images=images, keep_alive=self._keep_alive)
        return await self._run("/api/generate", body, params.model, params.stream, params.timeout)

    async def vision(self, params: VisionParams) -> JSON | ChunkStream:
        images = await self._images("llm/vision", "params.images", params.images)
        body = generate_body(params, images=images, keep_alive=self._keep_alive)
        return await self._run("/api/generate", body, params.model, params.stream, params.timeout)

    async def chat(self, params: ChatParams) -> JSON | ChunkStream:
        messages = []
        for index, message in enumerate(params.messages):
            images = await self._images(
                "llm/chat", f"params.messages[{index}].images", message.images
            )
            messages.append(message_dict(message, images))
        body = chat_body(params, messages=messages, keep_alive=self._keep_alive)
        return await self._run("/api/chat", body, params.model, params.stream, params.timeout)

    async def embed(self, params: EmbedParams) -> JSON:
        check_inputs("llm/embed", params.input, self.hub.settings)
        body = embed_body(params, keep_alive=self._keep_alive)
        result = await self._run("/api/embed", body, params.model, False, params.timeout)
        assert isinstance(result, dict)  # not streamed
        return result

    async def list_models(self, params: ListModelsParams) -> JSON:
        """Each model once, with the instances that have it installed and loaded."""
        if params.refresh:
            await self.hub.refresh_models()
        merged: dict[str, JSON] = {}
        instances: dict[str, JSON] = {}
        for resource in self.hub.resources:
            installed = installed_models(resource)
            loaded = loaded_models(resource)
            details = model_details(resource)
            instances[resource.id] = {
                "endpoint": public_endpoint(resource.endpoint),
                "health": resource.health.value,
                "models_known": installed is not None,
            }
            for name in sorted((installed or frozenset()) | loaded.keys()):
                entry = merged.get(name)
                if entry is None:
                    entry = merged[name] = {"name": name, "model": name}
                    entry.update({k: v for k, v in details.get(name, {}).items() if k not in entry})
                    entry["installed_on"], entry["loaded_on"] = [], []
                if installed is not None and name in installed:
                    entry["installed_on"].append(resource.id)
                if name in loaded:
                    entry["loaded_on"].append(resource.id)
        listed = {"models": [merged[name] for name in sorted(merged)], "instances": instances}
        return visible(listed)

    async def pull_model(self, params: PullModelParams) -> JSON | ChunkStream:
        hub = self.hub
        model = normalize_model(params.model)
        check_pull(model, what="llm/pull_model")  # before the instance lookup says anything
        if params.instance is not None and params.instance not in hub:
            known = ", ".join(r.id for r in hub.resources) or "none"
            raise InvalidParams(
                "llm/pull_model",
                [f"params.instance: no instance {params.instance!r}; instances: {known}"],
            )
        resource = hub.pull_target(params.instance)
        stream = await hub.open_pull(model, resource, insecure=params.insecure)
        if params.stream:
            return stream
        last: JSON = {}
        events = 0
        async with stream:
            async for chunk in stream:
                last = chunk
                events += 1
        return {**last, "gleitzeit": {"instance": resource.id, "attempts": 1, "events": events}}
