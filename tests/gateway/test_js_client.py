"""The official ``ollama`` JavaScript client (from npm, under Node) against the gateway over
three simulators: chat, streamed generate, embed and list answer what the pool has, and an
unknown model is the 404 the client reports as an error.

``scripts/test.sh`` installs the client into ``tests/js/node_modules`` (``npm ci`` from the
committed lock file); without it this test fails and says how to install it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ollama

from tests.gateway.conftest import Pool, run_child

JS = Path(__file__).resolve().parent.parent / "js"


async def test_official_js_client_chat_stream_embed_list(pool: Pool) -> None:
    """Each call of the JS client through the gateway gives what the Python client gets from
    a simulator directly: the same chat text, a stream of chunks with exactly one ``done`` and
    the same text, one 384-dimensional vector per input, every model of the pool once."""
    node = shutil.which("node")
    assert node is not None, "node is not installed (apt-get install nodejs npm)"
    assert (JS / "node_modules" / "ollama").is_dir(), (
        "the JS client is not installed: npm ci --prefix tests/js (scripts/test.sh does it)"
    )
    out = await run_child(node, str(JS / "client.mjs"), pool.url, timeout=60, cwd=JS)
    result = json.loads(out)

    async with ollama.AsyncClient(host=pool.sims[0].url, timeout=20) as direct:
        question = [{"role": "user", "content": "why is the sky blue?"}]
        expected_chat = (await direct.chat("llama3.2", messages=question)).message.content
        expected_text = (await direct.generate("llama3.2", "why is the sky blue?")).response
    assert result["chat"]["content"] == expected_chat
    assert result["chat"]["done"] is True
    assert result["chat"]["eval_count"] == 8
    stream = result["stream"]
    assert len(stream) > 2
    assert [p["done"] for p in stream].count(True) == 1
    assert stream[-1]["done"] is True
    assert "".join(p["response"] for p in stream) == expected_text
    assert result["embed"] == [384, 384]
    assert sorted(result["list"]) == [
        "llama3.2:latest",
        "nomic-embed-text:latest",
        "qwen2.5:latest",
    ]
    assert result["missing"]["status"] == 404
    assert "not found" in result["missing"]["message"]
