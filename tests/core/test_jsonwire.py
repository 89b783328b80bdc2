"""``gleitzeit_core._jsonwire``: orjson when installed and switched on, the standard library
otherwise, with the same results; and ``[gateway] speedups``, which switches both speedups."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop
from hypothesis import given
from hypothesis import strategies as st

from gleitzeit_core import _jsonwire as jsonwire
from gleitzeit_core._config import load_config
from gleitzeit_core._errors import ConfigError
from gleitzeit_core._gateway import speedups

finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers() | finite | st.text()
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@pytest.fixture(params=[True, False], ids=["orjson", "stdlib"])
def mode(request: pytest.FixtureRequest) -> Iterator[bool]:
    before = jsonwire.fast()
    assert jsonwire.use_orjson(request.param) is request.param  # [speed] is installed here
    try:
        yield request.param
    finally:
        jsonwire.use_orjson(before)


@given(document=documents)
def test_what_is_written_reads_back_the_same_in_either_mode(document: Any) -> None:
    """Any JSON value (integers of any size, any text, lone surrogates included) written by
    ``dumps`` reads back equal with ``loads`` and with the standard library, orjson on or off."""
    for enabled in (True, False):
        jsonwire.use_orjson(enabled)
        try:
            raw = jsonwire.dumps(document)
            assert jsonwire.loads(raw) == document
            assert json.loads(raw) == document
        finally:
            jsonwire.use_orjson(True)


@given(document=documents)
def test_sorted_keys_give_the_same_bytes_in_either_mode_for_plain_text(document: Any) -> None:
    """``sort_keys`` output decodes to the same value either way, so a digest over it (the
    stream relay's replay check) compares like with like within a process."""
    jsonwire.use_orjson(True)
    fast = jsonwire.dumps(document, sort_keys=True)
    jsonwire.use_orjson(False)
    try:
        slow = jsonwire.dumps(document, sort_keys=True)
    finally:
        jsonwire.use_orjson(True)
    assert json.loads(fast) == json.loads(slow) == document


@pytest.mark.parametrize(
    "raw",
    [b'{"n": 1267650600228229401496703205376}', b'{"s": "\\ud800"}', b'{"a": 1, "a": 2}'],
)
def test_documents_orjson_refuses_are_read_as_the_standard_library_reads_them(
    mode: bool, raw: bytes
) -> None:
    """Big integers, lone surrogates and repeated keys decode exactly as ``json.loads`` does."""
    assert jsonwire.loads(raw) == json.loads(raw)


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


@pytest.mark.parametrize("raw", [b"[NaN]", b'{"x": Infinity}', b"{", b"\xff", b""])
def test_what_is_not_json_is_still_refused(mode: bool, raw: bytes) -> None:
    """NaN and Infinity (with the gateway's ``parse_constant``), broken documents and bytes
    that are not UTF-8 raise ``ValueError`` with orjson as without."""
    with pytest.raises(ValueError):
        jsonwire.loads(raw, parse_constant=_refuse)


def test_nan_is_written_as_null_by_orjson_and_as_nan_without() -> None:
    """The one documented difference: orjson writes a float NaN as ``null``."""
    jsonwire.use_orjson(True)
    assert jsonwire.dumps([math.nan]) == b"[null]"
    jsonwire.use_orjson(False)
    try:
        assert jsonwire.dumps([math.nan]) == b"[NaN]"
    finally:
        jsonwire.use_orjson(True)


def test_speedups_switch_the_event_loop_and_json_together() -> None:
    """``[gateway] speedups`` on: uvloop's loop factory and orjson; off: the standard loop
    (no factory) and the standard library's JSON."""
    try:
        factory, used = speedups(True)
        assert factory is uvloop.new_event_loop
        assert used == ["orjson", "uvloop"]
        assert jsonwire.fast()
        loop = factory()
        try:
            assert isinstance(loop, uvloop.Loop)
        finally:
            loop.close()
        assert speedups(False) == (None, [])
        assert not jsonwire.fast()
        with asyncio.Runner(loop_factory=None) as runner:
            assert not isinstance(runner.get_loop(), uvloop.Loop)
    finally:
        jsonwire.use_orjson(True)


def test_speedups_must_be_true_or_false() -> None:
    """A wrong type for ``[gateway] speedups`` is a config error that names the key."""
    with pytest.raises(ConfigError) as info:
        load_config({"gateway": {"speedups": "fast"}})
    assert any(p.startswith("gateway.speedups: expected") for p in info.value.problems)
    assert load_config({"gateway": {"speedups": False}}).gateway.speedups is False
