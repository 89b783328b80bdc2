"""The OpenAI <-> Ollama translation (``openai_wire``) on its own: what each OpenAI field
becomes in Ollama's request, what Ollama's answers and chunks become, and - for any JSON a
client may send - either an ``/api`` body or a 400 naming the problem, never anything else."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from gleitzeit_ollama.openai_wire import (
    DONE,
    ChatTranslator,
    chat_request,
    completion_request,
    embedding_answer,
    embedding_request,
)
from gleitzeit_ollama.routes_body import ApiError
from hypothesis import example, given
from hypothesis import strategies as st

PNG = base64.b64encode(b"\x89PNG fake").decode()


def test_chat_fields_land_where_ollama_reads_them() -> None:
    """Sampling fields go under ``options`` (OpenAI's defaults of 1.0 for temperature and
    top_p, ``max_completion_tokens`` over ``max_tokens``, a single stop as a list); the
    response format, tools and reasoning effort become ``format``, ``tools`` and ``think``."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    body, stream, usage = chat_request(
        {
            "model": "llama3.2",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 9,
            "max_completion_tokens": 4,
            "stop": "END",
            "seed": 7,
            "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
            "tools": [tool],
            "reasoning_effort": "none",
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert (stream, usage) == (True, True)
    assert body["options"] == {
        "num_predict": 4,
        "stop": ["END"],
        "seed": 7,
        "temperature": 1.0,
        "top_p": 1.0,
    }
    assert body["format"] == schema
    assert body["tools"] == [tool]
    assert body["think"] is False
    assert body["stream"] is True
    plain, stream, usage = chat_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
            "tools": [tool],
            "tool_choice": "none",
            "temperature": 0,
        }
    )
    assert (stream, usage) == (False, False)
    assert plain["format"] == "json"
    assert "tools" not in plain
    assert plain["options"]["temperature"] == 0


def test_messages_parts_images_tool_calls_and_tool_results() -> None:
    """Content parts become one message each (images as base64), an assistant's tool calls
    get their arguments as objects, and a tool result names its tool through the call id."""
    body, _, _ = chat_request(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "look", "arguments": '{"x": 1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_9", "content": "a cat"},
            ],
        }
    )
    assert body["messages"] == [
        {"role": "user", "content": "what is this?"},
        {"role": "user", "content": "", "images": [PNG]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "look", "arguments": {"x": 1}}}],
        },
        {"role": "tool", "content": "a cat", "tool_name": "look"},
    ]


def test_answers_and_chunks_become_openai_objects() -> None:
    """A whole answer becomes a ``chat.completion`` with usage; chunks become events of one
    id, the final one with the finish reason (``tool_calls`` once a call went out), then the
    usage event when asked for, then ``[DONE]``."""
    translator = ChatTranslator("m", include_usage=True)
    call = {"function": {"index": 0, "name": "f", "arguments": {"a": 1}}}
    whole = translator.answer(
        {
            "model": "m",
            "message": {"role": "assistant", "content": "", "tool_calls": [call]},
            "done_reason": "stop",
            "prompt_eval_count": 3,
            "eval_count": 5,
        }
    )
    choice = whole["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"a": 1}
    assert whole["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    first = translator.chunk({"model": "m", "message": {"content": "", "tool_calls": [call]}})
    last = translator.chunk(
        {"model": "m", "message": {"content": ""}, "done": True, "done_reason": "stop",
         "prompt_eval_count": 1, "eval_count": 2}
    )  # fmt: skip
    assert first.startswith(b"data: ")
    assert first.endswith(b"\n\n")
    events = [e for e in last.split(b"\n\n") if e]
    assert events[-1] + b"\n\n" == DONE
    final, usage = (json.loads(e.removeprefix(b"data: ")) for e in events[:2])
    assert final["choices"][0]["finish_reason"] == "tool_calls"
    assert usage["choices"] == []
    assert usage["usage"]["total_tokens"] == 3
    assert final["id"] == json.loads(first.removeprefix(b"data: "))["id"]


@pytest.mark.parametrize(
    ("effort", "think"),
    [
        ("none", False),
        ("minimal", "low"),
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("max", "max"),
        ("xhigh", "max"),
        ("ultra", "max"),
    ],
)
def test_every_reasoning_effort_ollama_takes_becomes_its_think(effort: str, think: Any) -> None:
    """Each ``reasoning_effort`` (and ``reasoning.effort``) Ollama's ``/v1`` accepts,
    OpenAI's ``minimal`` included, becomes the ``think`` Ollama would send; an unknown one is
    a 400 that lists them."""
    for body in ({"reasoning_effort": effort}, {"reasoning": {"effort": effort}}):
        translated, _, _ = chat_request(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], **body}
        )
        assert translated["think"] == think
    with pytest.raises(ApiError) as refused:
        chat_request(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "x"}
        )
    assert refused.value.status == 400
    assert "minimal" in refused.value.message


def test_the_finish_chunk_carries_an_empty_delta() -> None:
    """The streamed chunk that ends a chat carries ``"delta": {}`` and its finish reason, as
    OpenAI's and Ollama's streams do; a final chunk that still holds text keeps it."""
    translator = ChatTranslator("m")
    events = translator.chunk(
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "length"}
    )  # fmt: skip
    final = json.loads(events.split(b"\n\n")[0].removeprefix(b"data: "))
    assert final["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    events = translator.chunk(
        {"model": "m", "message": {"content": "end."}, "done": True, "done_reason": "stop"}
    )
    final = json.loads(events.split(b"\n\n")[0].removeprefix(b"data: "))
    assert final["choices"][0]["delta"] == {"role": "assistant", "content": "end."}


def test_embeddings_and_completions() -> None:
    """Embedding input is a string or a non-empty list; base64 answers are little-endian
    float32; a completion's prompt and suffix go to ``/api/generate``."""
    body, encoding = embedding_request({"model": "e", "input": ["a", "b"], "dimensions": 4})
    assert body == {"model": "e", "input": ["a", "b"], "dimensions": 4}
    assert encoding == "float"
    with pytest.raises(ApiError, match="input"):
        embedding_request({"model": "e", "input": [1, 2]})
    with pytest.raises(ApiError, match="encoding_format"):
        embedding_request({"model": "e", "input": "a", "encoding_format": "int8"})
    answer = embedding_answer("e", {"embeddings": [[0.5, -1.0]], "prompt_eval_count": 2}, "base64")
    packed = base64.b64decode(answer["data"][0]["embedding"])
    assert struct.unpack("<2f", packed) == (0.5, -1.0)
    generate, _, _ = completion_request({"model": "m", "prompt": "p", "suffix": "s"})
    assert (generate["prompt"], generate["suffix"]) == ("p", "s")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    ["model", "messages", "content", "role", "tool_calls", "function", "arguments", "name",
     "tool_call_id", "type", "text", "image_url", "url", "stop", "response_format",
     "json_schema", "schema", "reasoning", "effort", "stream_options", "include_usage", "input"]
)  # fmt: skip
_shaped = st.recursive(
    _json, lambda inner: st.dictionaries(_keys, inner, max_size=4) | st.lists(inner, max_size=3)
)


_CALL = {"id": "c", "function": {"name": "f", "arguments": "{}"}}
_PARTLESS = {"role": "assistant", "content": [], "tool_calls": [_CALL]}


@given(body=st.dictionaries(_keys, _shaped, max_size=5))
# an assistant message of tool calls whose content is an empty array of parts (once an
# IndexError, a 500)
@example(
    body={"model": "m", "messages": [{"role": "assistant", "content": [], "tool_calls": [_CALL]}]}
)
def test_any_body_is_translated_or_refused_with_a_400(body: dict[str, Any]) -> None:
    """For any JSON object made of OpenAI's field names, each translation either returns a
    body or raises a 400 ``ApiError`` - no other exception, whatever the nesting."""
    refusals = []
    for translate in (chat_request, completion_request, embedding_request):
        try:
            translate(body)
        except ApiError as exc:
            refusals.append(exc)
    assert all(exc.status == 400 and exc.message for exc in refusals)
