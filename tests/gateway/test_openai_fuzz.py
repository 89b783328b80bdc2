"""Whatever a client posts to the gateway's ``/v1`` routes - bytes, any JSON, well-typed
OpenAI requests with one field replaced by anything - the answer is below 500, every error is
OpenAI's error object, and the gateway keeps serving with nothing left in flight."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.conftest import Pool, json_values

_text = st.text(max_size=16)
_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _text}),
    st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.sampled_from(
                ["data:image/png;base64,aGVsbG8=", "data:image/png;base64,!!", "http://x/y.png"]
            ).map(lambda url: {"url": url}),
        }
    ),
    json_values,
)
_call = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["call_1", "call_2"]),
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {
                "name": st.sampled_from(["f", "g"]),
                "arguments": st.sampled_from(['{"a": 1}', "{", "[1]", ""]),
            }
        ),
    }
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool"])},
    optional={
        "content": _text | st.lists(_part, max_size=2) | st.none(),
        "tool_calls": st.lists(_call, max_size=2),
        "tool_call_id": st.sampled_from(["call_1", "call_3"]),
        "name": _text,
    },
)
_tool = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": st.sampled_from(["f", "g"])},
            optional={"parameters": st.sampled_from([{"type": "object"}, {"type": "string"}])},
        ),
    }
)
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["llama3.2", "qwen2.5", "nomic-embed-text", "nope", ""]),
    "messages": st.lists(_message, max_size=3),
    "prompt": _text,
    "input": _text | st.lists(_text, max_size=3),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "max_tokens": st.integers(-2, 6),
    "max_completion_tokens": st.integers(-2, 6),
    "seed": st.integers(-5, 5),
    "stop": _text | st.lists(_text, max_size=2),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "n": st.integers(0, 3),
    "tools": st.lists(_tool, max_size=2),
    "tool_choice": st.sampled_from(["auto", "none", "required"]),
    "response_format": st.sampled_from(
        [
            {"type": "text"},
            {"type": "json_object"},
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            {"type": "json_schema", "json_schema": {}},
            {"type": "yaml"},
        ]
    ),
    "reasoning_effort": st.sampled_from(["low", "high", "none", "max"]),
    "encoding_format": st.sampled_from(["float", "base64", "int8"]),
    "dimensions": st.integers(-1, 8),
}
_objects = st.fixed_dictionaries(
    {"model": _FIELDS["model"]},
    optional={field: values for field, values in _FIELDS.items() if field != "model"},
)
_one_wrong = st.tuples(_objects, st.sampled_from(sorted(_FIELDS)), json_values).map(
    lambda drawn: {**drawn[0], drawn[1]: drawn[2]}
)
_bodies = st.one_of(
    st.binary(max_size=80),
    json_values.map(lambda v: json.dumps(v).encode()),
    _one_wrong.map(lambda v: json.dumps(v).encode()),
    _objects.map(lambda v: json.dumps(v).encode()),
    _objects.map(lambda v: json.dumps(v).encode()),
)
_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(st.tuples(st.sampled_from(_ROUTES), _bodies), min_size=6, max_size=6))
async def test_fuzzed_v1_bodies_never_get_a_5xx(
    fuzz_pool: Pool, http: aiohttp.ClientSession, batch: list[tuple[str, bytes]]
) -> None:
    """Any body to any ``/v1`` route: status below 500; a 4xx is OpenAI's error object with a
    message and a type; a 200 stream ends with ``[DONE]``; the gateway then still answers and
    has nothing in flight."""
    url = fuzz_pool.url
    for path, body in batch:
        async with http.post(f"{url}{path}", data=body) as reply:
            text = await reply.text()
            assert reply.status < 500, (path, body, text)
            if reply.status >= 400:
                error = json.loads(text)["error"]
                assert isinstance(error["message"], str), text
                assert isinstance(error["type"], str), text
            elif reply.headers["Content-Type"].startswith("text/event-stream"):
                assert text.endswith("data: [DONE]\n\n"), text
    async with http.get(f"{url}/v1/models") as reply:
        assert reply.status == 200
    assert fuzz_pool.gateway.in_flight() == 0
