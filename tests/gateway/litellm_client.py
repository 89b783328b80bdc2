"""LiteLLM as a client of the gateway: its ``ollama_chat/`` provider (one chat, one streamed
chat) and its ``openai/`` provider on ``/v1`` (one chat); prints what they returned as JSON.
Run as a child process by ``test_litellm_client.py``.

It imports ``benchmarks/litellm_peer.py`` first for its network guard (an audit hook that
refuses any connection or name lookup outside loopback, and the switches that keep LiteLLM off
the network: bundled cost map, no telemetry, no ``.env``, no proxies)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import litellm_peer


def main(gateway: str) -> None:
    litellm_peer.configure_litellm(gateway)
    import litellm

    messages = [{"role": "user", "content": "why is the sky blue?"}]
    model = "ollama_chat/llama3.2"
    answer = litellm.completion(model=model, api_base=gateway, messages=messages, timeout=30)
    parts = [
        chunk.choices[0].delta.content or ""
        for chunk in litellm.completion(
            model=model, api_base=gateway, messages=messages, stream=True, timeout=30
        )
    ]
    through_v1 = litellm.completion(
        model="openai/llama3.2",
        api_base=f"{gateway}/v1",
        api_key="unused",
        messages=messages,
        timeout=30,
    )
    print(
        json.dumps(
            {
                "chat": answer.choices[0].message.content,
                "stream": parts,
                "openai": through_v1.choices[0].message.content,
                "blocked": litellm_peer.BLOCKED,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
