"""A small TOML writer for the configs ``migrate-config`` produces (no extra dependency).

Tables become ``[a.b]`` sections, lists of tables ``[[a.b]]``, everything else ``key = value``
with TOML's own string escapes. Small tables inside lists of scalars are not needed here and
not supported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["dumps"]

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _key(name: str) -> str:
    return name if _BARE.match(name) else _string(name)


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML: {value!r}")


def _is_table_list(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _inline(value: Mapping[str, Any]) -> bool:
    """Small flat tables (a breaker, a strategy) read best inline."""
    return (
        bool(value)
        and "kind" in value
        and all(not isinstance(v, Mapping) and not _is_table_list(v) for v in value.values())
    )


def _table(lines: list[str], path: list[str], table: Mapping[str, Any], header: str | None) -> None:
    scalars = [
        (k, v)
        for k, v in table.items()
        if not (isinstance(v, Mapping) and not _inline(v)) and not _is_table_list(v)
    ]
    nested = [(k, v) for k, v in table.items() if isinstance(v, Mapping) and not _inline(v)]
    arrays = [(k, v) for k, v in table.items() if _is_table_list(v)]
    if header is not None and (scalars or not (nested or arrays)):
        lines.append("")
        lines.append(header)
    for key, value in scalars:
        lines.append(f"{_key(str(key))} = {_value(value)}")
    for key, value in nested:
        sub = [*path, str(key)]
        _table(lines, sub, value, "[" + ".".join(_key(p) for p in sub) + "]")
    for key, items in arrays:
        sub = [*path, str(key)]
        for item in items:
            lines.append("")
            lines.append("[[" + ".".join(_key(p) for p in sub) + "]]")
            for item_key, item_value in item.items():
                if isinstance(item_value, Mapping) and not _inline(item_value):
                    raise TypeError(f"{'.'.join(sub)}.{item_key}: nested tables in [[...]]")
                lines.append(f"{_key(str(item_key))} = {_value(item_value)}")


def dumps(data: Mapping[str, Any], *, header: str = "") -> str:
    """``data`` as a TOML document (``header``: comment lines put first)."""
    lines: list[str] = [f"# {line}" if line else "#" for line in header.splitlines()]
    _table(lines, [], data, None)
    text = "\n".join(lines).lstrip("\n")
    return text + "\n"
