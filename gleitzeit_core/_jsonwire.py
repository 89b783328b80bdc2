"""JSON on the gateway's hot path: orjson when it is installed (``gleitzeit-core[speed]``) and
switched on (``[gateway] speedups``, the default), else the standard library.

The two agree on every document: what orjson refuses or might read differently goes to the
standard library, which decides as it always did (when reading: a run of 19 digits or more,
which may be an integer beyond 64 bits, lone surrogates, ``NaN``, numbers too large for a
float such as ``1e400``; when writing: integers beyond 64 bits, keys that are not strings).
One difference is left: orjson writes a float ``NaN`` or infinity as ``null`` where the
standard library writes ``NaN``, which is not JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "fast", "json_bytes", "loads", "use_orjson"]

_SEPARATORS = (",", ":")
_LONG_NUMBER = re.compile(rb"\d{19}")  # 19 digits or more: maybe beyond 64 bits

try:
    import orjson as _orjson
except ImportError:  # the [speed] extra is optional
    _orjson = None  # type: ignore[assignment]

_enabled = _orjson is not None


def use_orjson(enabled: bool) -> bool:
    """Use orjson (when installed) or not; whether it is in use now."""
    global _enabled
    _enabled = enabled and _orjson is not None
    return _enabled


def fast() -> bool:
    """Whether orjson is in use."""
    return _enabled


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """``value`` as compact JSON bytes (UTF-8)."""
    if _enabled:
        try:
            return _orjson.dumps(value, option=_orjson.OPT_SORT_KEYS if sort_keys else None)
        except TypeError:  # orjson.JSONEncodeError: big integers, non-string keys, depth
            pass
    return json.dumps(value, separators=_SEPARATORS, sort_keys=sort_keys).encode()


def loads(
    raw: bytes | bytearray | str,
    *,
    parse_constant: Callable[[str], Any] | None = None,
    parse_float: Callable[[str], Any] | None = None,
) -> Any:
    """Decode ``raw``; ``ValueError`` (``UnicodeDecodeError``, ``RecursionError``) as the
    standard library raises them for a document that is not JSON."""
    # orjson reads some integers just past 64 bits as floats instead of refusing them
    if _enabled and _LONG_NUMBER.search(raw.encode() if isinstance(raw, str) else raw) is None:
        try:
            return _orjson.loads(raw)
        except ValueError:  # orjson.JSONDecodeError: the standard library has the last word
            pass
    return json.loads(raw, parse_constant=parse_constant, parse_float=parse_float)


# the name plugins know it by (gleitzeit_core.json_bytes): JSON as the bytes a response sends
json_bytes = dumps
