"""``gleitzeit_core._bounded``: the JSON shape check agrees with the real nesting and size of
any document, whatever its strings contain."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gleitzeit_core import LimitExceeded, loads_bounded
from gleitzeit_core import _bounded as bounded
from gleitzeit_core._bounded import check_json_shape

# strings full of what the check must not mistake for structure
_TRICKY = st.text(alphabet='[]{}"\\,:ab \n', max_size=12)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY, inner, max_size=4),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(_VALUES, st.integers(min_value=1, max_value=8))
def test_depth_check_matches_the_real_nesting(value: Any, limit: int) -> None:
    """A document passes exactly when it nests at most ``limit`` levels, brackets, quotes and
    backslashes inside strings notwithstanding."""
    raw = json.dumps(value).encode()
    if _depth(value) > limit:
        with pytest.raises(LimitExceeded) as caught:
            check_json_shape(raw, limit)
        assert caught.value.limit == "max_json_depth"
    else:
        check_json_shape(raw, limit)
        assert loads_bounded(raw, max_depth=limit) == value


def _separators(value: Any) -> int:
    """Commas a compact encoding of ``value`` has outside its strings."""
    if isinstance(value, list):
        return max(0, len(value) - 1) + sum(_separators(v) for v in value)
    if isinstance(value, dict):
        return max(0, len(value) - 1) + sum(_separators(v) for v in value.values())
    return 0


@given(_VALUES, st.integers(min_value=1, max_value=40))
def test_value_count_matches_the_real_separators(value: Any, limit: int) -> None:
    """``max_json_values`` counts the elements and members (commas outside strings, plus
    one): a document passes exactly when it has at most ``limit`` of them, commas inside
    strings notwithstanding."""
    raw = json.dumps(value).encode()
    if _separators(value) + 1 > limit:
        with pytest.raises(LimitExceeded) as caught:
            check_json_shape(raw, 100, limit)
        assert caught.value.limit == "max_json_values"
    else:
        check_json_shape(raw, 100, limit)


def test_many_tiny_values_are_refused_before_decoding() -> None:
    """Five million empty objects (15 MB of text, over a gigabyte once decoded) are refused
    at four million values; an embedding-like answer of three million numbers passes."""
    tiny = b"[" + b",".join([b"{}"] * 5_000_000) + b"]"
    with pytest.raises(LimitExceeded) as caught:
        loads_bounded(tiny, max_depth=64, max_values=4 * 1024 * 1024)
    assert caught.value.limit == "max_json_values"
    numbers = b'{"embeddings":[[' + b",".join([b"0.0123456789"] * 3_000_000) + b"]]}"
    check_json_shape(numbers, 64, 4 * 1024 * 1024)


def test_deep_documents_are_refused_before_decoding() -> None:
    """100 000 levels (which would be a RecursionError in the decoder) and a staircase that
    never runs 65 brackets in a row are both refused at 64, in linear passes."""
    straight = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    stairs = b"[[]," * 65 + b"1" + b"]" * 65
    for raw in (straight, stairs):
        with pytest.raises(LimitExceeded):
            loads_bounded(raw, max_depth=64)


def test_malformed_json_is_a_value_error() -> None:
    """Unbalanced or truncated input is left to the decoder, which refuses it."""
    for raw in (b'{"a": [1, 2', b"]]]]", b'"unterminated'):
        with pytest.raises(ValueError):
            loads_bounded(raw, max_depth=64)


@given(_VALUES, st.integers(min_value=1, max_value=8), st.integers(min_value=1, max_value=9))
def test_both_checks_hold_however_the_document_is_cut_into_windows(
    value: Any, limit: int, window: int
) -> None:
    """The check reads the document in windows (bounded memory); with windows of a few bytes,
    which cut every string, number and bracket run somewhere, it still measures the real
    nesting and value count."""
    raw = json.dumps(value).encode()
    with mock.patch.object(bounded, "_WINDOW", window):
        for depth, values in ((limit, None), (100, limit * 5)):
            broken = _depth(value) > depth or (
                values is not None and _separators(value) + 1 > values
            )
            if broken:
                with pytest.raises(LimitExceeded):
                    check_json_shape(raw, depth, values)
            else:
                check_json_shape(raw, depth, values)


def test_a_document_of_short_strings_is_checked_in_memory_near_its_size() -> None:
    """16 MiB of two-byte strings (4 million values, one over the bound; an answer within
    ``max_answer_bytes``) is refused while the check holds less than twice the document: a
    substitution over the whole text kept a list entry per string, 727 MiB for this one."""
    raw = bytearray(b"[" + b'"a",' * (4 * 1024 * 1024) + b'"a"]')
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded) as caught:
            check_json_shape(raw, 64, 4 * 1024 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.limit == "max_json_values"
    assert peak < 2 * len(raw), f"{peak / 2**20:.0f} MiB for a {len(raw) / 2**20:.0f} MiB document"
