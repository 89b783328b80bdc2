"""The llm/v1 provider: parameter placement, validation, streaming, vision, embeddings,
model listing and pulling."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest
from gleitzeit_ollama.params import ChatParams, GenerateParams, generate_body
from gleitzeit_ollama.provider import ImageFiles, LlmProvider, load_images
from gleitzeit_ollama.stream import ChunkStream

from gleitzeit_core import InvalidParams
from tests.ollama.conftest import SimFactory
from tests.ollama.hub.conftest import RuntimeFactory
from tests.ollama.hub.support import MODEL, MODEL_TAG, ps_names, sim_stats

CHAT = [{"role": "user", "content": "tell me"}]


def test_sampling_parameters_go_under_options() -> None:
    """temperature, max_tokens (as num_predict), top_p, top_k, seed and stop go under
    ``options``; format, keep_alive, system and think stay at the top level."""
    params = GenerateParams(
        model=MODEL,
        prompt="p",
        system="be brief",
        temperature=0.2,
        max_tokens=5,
        top_p=0.9,
        top_k=40,
        seed=3,
        stop="END",
        format="json",
        keep_alive="10m",
        think=True,
        options={"num_ctx": 2048, "temperature": 1.5, "max_tokens": 99},
    )
    body = generate_body(params, images=None)
    assert body["options"] == {
        "num_ctx": 2048,
        "temperature": 0.2,
        "num_predict": 5,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 3,
        "stop": ["END"],
    }
    for top in ("temperature", "max_tokens", "top_p", "top_k", "seed", "num_predict"):
        assert top not in body
    assert body["format"] == "json"
    assert body["keep_alive"] == "10m"
    assert body["system"] == "be brief"
    assert body["think"] is True
    assert body["stream"] is False


async def test_max_tokens_reaches_ollama_as_num_predict(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory
) -> None:
    """max_tokens limits the generated tokens (the simulator honours only options.num_predict),
    also when an old caller puts it inside options."""
    (sim,) = await sim_factory(1, models=[MODEL], max_tokens=20)
    runtime = await runtime_factory([sim])
    for method, params in (
        ("llm/generate", {"model": MODEL, "prompt": "count"}),
        ("llm/chat", {"model": MODEL, "messages": CHAT}),
    ):
        plain = await runtime.execute(method, params)
        assert plain["eval_count"] == 20
        capped = await runtime.execute(method, {**params, "max_tokens": 3})
        assert capped["eval_count"] == 3
        assert capped["done_reason"] == "length"
        legacy = await runtime.execute(method, {**params, "options": {"max_tokens": 4}})
        assert legacy["eval_count"] == 4


async def test_a_wrong_parameter_names_its_field(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """Unknown keys, wrong types, bad values and missing fields raise InvalidParams (a
    ValueError) naming each field, before any instance is asked."""
    (sim,) = await sim_factory(1, models=[MODEL])
    runtime = await runtime_factory([sim])
    cases = {
        "params.tempreature: unknown key": {"model": MODEL, "prompt": "x", "tempreature": 1},
        "params.temperature: expected": {"model": MODEL, "prompt": "x", "temperature": "hot"},
        "params.model: missing required key": {"prompt": "x"},
        "params.top_p: expected a fraction": {"model": MODEL, "top_p": 3},
        "params.keep_alive: expected a duration": {"model": MODEL, "keep_alive": "forever"},
        "params.format: expected": {"model": MODEL, "format": "xml"},
        "params.stop: expected": {"model": MODEL, "stop": [1, 2]},
    }
    for expected, params in cases.items():
        with pytest.raises(InvalidParams) as info:
            await runtime.execute("llm/generate", params)
        assert isinstance(info.value, ValueError)
        assert any(problem.startswith(expected) for problem in info.value.problems), (
            expected,
            info.value.problems,
        )
    with pytest.raises(InvalidParams, match=r"params\.messages\[1\]\.role"):
        await runtime.execute(
            "llm/chat",
            {"model": MODEL, "messages": [*CHAT, {"role": "robot", "content": "x"}]},
        )
    with pytest.raises(InvalidParams, match=r"params\.input"):
        await runtime.execute("llm/embed", {"model": MODEL, "input": []})
    assert (await sim_stats(http, sim))["requests"].get("/api/generate", 0) == 0


async def test_stream_yields_chunks_exactly_as_ollama_sends_them(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """stream=true returns an async iterator whose chunks are Ollama's own objects: same keys
    and the same tokens as a direct request, ending with the done chunk."""
    (sim,) = await sim_factory(1, models=[MODEL])
    runtime = await runtime_factory([sim])
    stream = await runtime.execute(
        "llm/chat", {"model": MODEL, "messages": CHAT, "stream": True, "max_tokens": 5}
    )
    assert isinstance(stream, ChunkStream)
    assert stream.instance == "s0"
    through_hub = [chunk async for chunk in stream]
    direct = []
    body = {"model": MODEL, "messages": CHAT, "options": {"num_predict": 5}}
    async with http.post(f"{sim.url}/api/chat", json=body) as response:
        async for line in response.content:
            if line.strip():
                direct.append(json.loads(line))
    assert [sorted(c) for c in through_hub] == [sorted(c) for c in direct]
    assert [c["message"] for c in through_hub] == [c["message"] for c in direct]
    assert through_hub[-1]["done"] is True
    assert "gleitzeit" not in through_hub[-1]


async def test_non_stream_result_is_ollamas_json_plus_a_small_gleitzeit_key(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory
) -> None:
    """A non-streamed answer is Ollama's JSON with one extra key naming the instance and the
    attempts it took."""
    (sim,) = await sim_factory(1, models=[MODEL])
    runtime = await runtime_factory([sim])
    reply = await runtime.execute("llm/generate", {"model": MODEL, "prompt": "hello"})
    assert reply["gleitzeit"] == {"instance": "s0", "attempts": 1}
    assert {"model", "response", "done", "eval_count", "context"} <= set(reply)


async def test_images_are_sent_as_base64_from_any_form(tmp_path: Path) -> None:
    """Images given as base64, a data: URI or (with allowed directories) a file path all
    become the same base64; anything else is an InvalidParams naming the image's index."""
    data = bytes(range(64))
    encoded = base64.b64encode(data).decode()
    path = tmp_path / "cat.png"
    path.write_bytes(data)
    files = ImageFiles([str(tmp_path)], 1024)
    forms = [encoded, f"data:image/png;base64,{encoded}", str(path)]
    assert await load_images("llm/vision", "params.images", forms, files) == [encoded] * 3
    with pytest.raises(InvalidParams, match=r"params\.images\[1\]"):
        await load_images("llm/vision", "params.images", [encoded, "/no/such/file.png"], files)


async def test_vision_and_chat_images_reach_the_instance(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, tmp_path: Path
) -> None:
    """llm/vision answers for an image file under the hub's image_dirs; chat messages carry
    images too; a vision call without images is refused."""
    (sim,) = await sim_factory(1, models=["llava"])
    runtime = await runtime_factory([sim], image_dirs=[str(tmp_path)])
    path = tmp_path / "img.png"
    path.write_bytes(b"\x89PNG fake image")
    reply = await runtime.execute(
        "llm/vision", {"model": "llava", "prompt": "what is it?", "images": [str(path)]}
    )
    assert reply["done"] is True
    assert reply["response"]
    chat = [{"role": "user", "content": "and this?", "images": [str(path)]}]
    reply = await runtime.execute("llm/chat", {"model": "llava", "messages": chat})
    assert reply["message"]["content"]
    with pytest.raises(InvalidParams, match=r"params\.images"):
        await runtime.execute("llm/vision", {"model": "llava", "prompt": "x"})


async def test_embed_takes_a_string_or_a_list(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory
) -> None:
    """llm/embed posts to /api/embed and returns one vector per input."""
    (sim,) = await sim_factory(1, models=["nomic-embed-text"], embed_dim=16)
    runtime = await runtime_factory([sim])
    one = await runtime.execute("llm/embed", {"model": "nomic-embed-text", "input": "a"})
    many = await runtime.execute("llm/embed", {"model": "nomic-embed-text", "input": ["a", "b"]})
    assert len(one["embeddings"]) == 1
    assert len(one["embeddings"][0]) == 16
    assert len(many["embeddings"]) == 2
    assert many["embeddings"][0] == one["embeddings"][0]


async def test_list_models_merges_instances(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """Each model appears once, with the instances that have it installed and loaded."""
    (a,) = await sim_factory(1, models=[MODEL, "qwen3:8b"])
    (b,) = await sim_factory(1, models=[MODEL])
    runtime = await runtime_factory([a, b])
    await runtime.execute("llm/generate", {"model": "qwen3:8b", "prompt": "warm"})
    listing = await runtime.execute("llm/list_models", {"refresh": True})
    by_name = {entry["name"]: entry for entry in listing["models"]}
    assert set(by_name) == {MODEL_TAG, "qwen3:8b"}
    assert by_name[MODEL_TAG]["installed_on"] == ["s0", "s1"]
    assert by_name[MODEL_TAG]["loaded_on"] == []
    assert by_name["qwen3:8b"]["installed_on"] == ["s0"]
    assert by_name["qwen3:8b"]["loaded_on"] == ["s0"]
    assert by_name["qwen3:8b"]["details"]["parameter_size"]
    assert await ps_names(http, a) == ["qwen3:8b"]


async def test_pull_model_streams_progress_and_installs(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory
) -> None:
    """llm/pull_model with stream=true yields Ollama's progress lines up to "success"; the
    model is then installed on that instance and routable."""
    sims = await sim_factory(2, models=[MODEL])
    runtime = await runtime_factory(sims)
    stream = await runtime.execute(
        "llm/pull_model", {"model": "mistral", "instance": "s1", "stream": True}
    )
    events = [event async for event in stream]
    assert events[0] == {"status": "pulling manifest"}
    assert any("completed" in event for event in events)
    assert events[-1] == {"status": "success"}
    reply = await runtime.execute("llm/generate", {"model": "mistral", "prompt": "hi"})
    assert reply["gleitzeit"]["instance"] == "s1"
    done = await runtime.execute("llm/pull_model", {"model": "phi3"})
    assert done["status"] == "success"
    assert done["gleitzeit"]["events"] > 2
    with pytest.raises(InvalidParams, match=r"params\.instance"):
        await runtime.execute("llm/pull_model", {"model": "phi3", "instance": "nope"})


async def test_keep_alive_zero_unloads_in_the_hubs_view(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """A served request marks its model loaded until its keep_alive; keep_alive 0 unloads it
    (optimistic updates, before any probe)."""
    (sim,) = await sim_factory(1, models=[MODEL])
    runtime = await runtime_factory([sim], health={"enabled": False})
    hub = runtime.hubs["llm"]
    await runtime.execute("llm/generate", {"model": MODEL, "prompt": "x", "keep_alive": "10m"})
    loaded = hub.describe(hub.get("s0"))["loaded"]
    assert 590 < loaded[MODEL_TAG]["expires_in_s"] <= 600
    await runtime.execute("llm/generate", {"model": MODEL, "prompt": "x", "keep_alive": 0})
    assert hub.describe(hub.get("s0"))["loaded"] == {}
    assert await ps_names(http, sim) == []


def test_chat_params_are_strict() -> None:
    """Message fields are checked too: a message with an unknown key is refused, a good one
    becomes a ChatParams."""
    provider = LlmProvider(hub=None)  # type: ignore[arg-type]  # validation needs no hub
    with pytest.raises(InvalidParams, match=r"params\.messages\[0\]\.colour: unknown key"):
        provider.validate("llm/chat", {"model": MODEL, "messages": [{"role": "user", "colour": 1}]})
    good = provider.validate("llm/chat", {"model": MODEL, "messages": CHAT})
    assert isinstance(good, ChatParams)
    assert good.messages[0].content == "tell me"
