"""Host files through ``images``: a gateway client naming a file on the gateway's host gets
the same 400 whether the file exists or not, and the file is never read or sent upstream;
in-process callers may name files only under the hub's ``image_dirs``, within a size cap."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import aiohttp
import pytest
from gleitzeit_legacy.ollama_common import encode_images
from gleitzeit_ollama import plugin as ollama_plugin
from gleitzeit_ollama.sim import OllamaSimulator

from gleitzeit_core import Caller, InvalidParams, acting_as
from gleitzeit_core._plugins import PluginManager
from gleitzeit_core._runtime import Runtime
from tests.security.conftest import ServeFactory, SimFactory

SECRET = b"AWS_SECRET=hunter2-do-not-leak\n"


def _vision(images: list[str]) -> dict[str, object]:
    params = {"model": "llava", "prompt": "what is it?", "images": images}
    return {"method": "llm/vision", "params": params}


async def test_a_gateway_client_cannot_send_a_host_file_upstream(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """``images: ["/path/of/a/secret"]`` through /gleitzeit/execute is a 400, with the very
    same message for a missing path, even when the hub allows ``image_dirs`` holding the
    file (those are for in-process callers); the instance never gets a request."""
    secret = tmp_path / "secret.env"
    secret.write_bytes(SECRET)
    served = await serve_gateway(hub={"image_dirs": [str(tmp_path)]})
    answers = []
    for path in [str(secret), str(tmp_path / "missing.env"), "~/.bashrc"]:
        async with http.post(f"{served.url}/gleitzeit/execute", json=_vision([path])) as r:
            assert r.status == 400, path
            answers.append((await r.json())["error"])
    assert answers[0] == answers[1] == answers[2]
    assert "base64" in answers[0]
    assert "path" not in answers[0]
    assert "/api/generate" not in (await served.sim_stats())["requests"]
    # base64 and data: URIs are what a client sends, and they work
    encoded = base64.b64encode(b"\x89PNG fake image").decode()
    for image in [encoded, f"data:image/png;base64,{encoded}"]:
        async with http.post(f"{served.url}/gleitzeit/execute", json=_vision([image])) as r:
            assert r.status == 200


async def test_chat_images_on_the_ollama_route_are_never_paths(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Through /gleitzeit/execute ``llm/chat`` message images obey the same rule."""
    secret = tmp_path / "secret.env"
    secret.write_bytes(SECRET)
    served = await serve_gateway(hub={"image_dirs": [str(tmp_path)]})
    message = {"role": "user", "content": "x", "images": [str(secret)]}
    params = {"model": "llava", "messages": [message]}
    async with http.post(
        f"{served.url}/gleitzeit/execute", json={"method": "llm/chat", "params": params}
    ) as reply:
        assert reply.status == 400
    assert "/api/chat" not in (await served.sim_stats())["requests"]


@pytest.fixture
async def library_runtime(sim_factory: SimFactory, tmp_path: Path, isolated: None) -> Runtime:
    (sim,) = await sim_factory(1, models=["llava"], name="s0")
    assert isinstance(sim, OllamaSimulator)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    manager = PluginManager(autoload=False)
    manager.load()
    manager.add(ollama_plugin, "ollama")
    hub = {
        "kind": "ollama",
        "discovery": ["static"],
        "resources": [{"id": "s0", "url": sim.url}],
        "image_dirs": [str(allowed)],
        "image_max_bytes": 64,
    }
    return Runtime.from_config({"hubs": {"llm": hub}}, plugins=manager)


async def test_library_callers_read_files_only_under_image_dirs(
    library_runtime: Runtime, tmp_path: Path
) -> None:
    """In-process code may name a file under ``image_dirs``; a file outside (directly, by
    ``..`` or through a symlink), a missing one and one over ``image_max_bytes`` are refused
    with one message."""
    allowed = tmp_path / "allowed"
    (allowed / "cat.png").write_bytes(b"\x89PNG small")
    (allowed / "big.png").write_bytes(b"x" * 65)
    outside = tmp_path / "secret.env"
    outside.write_bytes(SECRET)
    os.symlink(outside, allowed / "link.png")
    async with library_runtime as runtime:
        reply = await runtime.execute(
            "llm/vision",
            _vision([str(allowed / "cat.png")])["params"],  # type: ignore[arg-type]
        )
        assert reply["done"] is True
        messages = set()
        for path in [
            outside,
            allowed / ".." / "secret.env",
            allowed / "link.png",
            allowed / "missing.png",
            allowed / "big.png",
        ]:
            with pytest.raises(InvalidParams) as refused:
                await runtime.execute(
                    "llm/vision",
                    _vision([str(path)])["params"],  # type: ignore[arg-type]
                )
            messages.add(str(refused.value))
        assert len(messages) == 1


def test_the_legacy_shim_reads_no_file_for_a_gateway_caller(tmp_path: Path) -> None:
    """The pre-hub API's image paths are read for in-process code only: under a gateway
    caller a path is refused as not an image, and the error carries nothing of the file."""
    secret = tmp_path / "secret.env"
    secret.write_bytes(SECRET)
    leaked = base64.b64encode(SECRET).decode()
    assert encode_images("llm/vision", [str(secret)]) == [leaked]  # in-process: as before
    with acting_as(Caller(name="client")), pytest.raises(InvalidParams) as refused:
        encode_images("llm/vision", [str(secret)])
    assert leaked not in str(refused.value)
    assert SECRET.decode(errors="replace") not in str(refused.value)
