"""Strict cattrs structuring with one readable error per problem, each naming its key path.

TOML already gives exact types, so the converter accepts only those: no ``"1.5"`` for a float, no
``true`` for an integer, no string for a list. Every problem becomes one line such as
``hubs.llm.health.interval: expected a number of seconds > 0, got "fast"``.
"""

from __future__ import annotations

import copy
import enum
import functools
import inspect
import random
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from ._clock import Clock
from ._errors import ConfigError
from ._validators import FieldError, MissingKey, did_you_mean, shown

__all__ = [
    "build_component",
    "converter",
    "describe_type",
    "did_you_mean",
    "structure",
    "structure_lenient",
    "unknown_keys",
]

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)


def describe_type(tp: Any) -> str:
    """``float`` -> "a number", ``list[str]`` -> "a list of strings", and so on."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(inner)
    if origin in (list, tuple, Sequence, frozenset, set):
        item = describe_type(args[0]) if args else "values"
        return f"a list of {_plural(item)}"
    if origin in (dict, Mapping):
        return "a table"
    return {
        float: "a number",
        int: "an integer",
        str: "a string",
        bool: "true or false",
    }.get(tp, "a table" if attrs.has(tp) else getattr(tp, "__name__", str(tp)))


def _plural(description: str) -> str:
    for article in ("a ", "an "):
        if description.startswith(article):
            noun = description[len(article) :]
            return noun + ("" if noun.endswith("s") else "s")
    return description


def _strict(kind: type, expected: str) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {expected}, got {shown(value)}")
        if kind is float and isinstance(value, int):
            return float(value)
        if not isinstance(value, kind):
            raise TypeError(f"expected {expected}, got {shown(value)}")
        return value

    return hook


converter.register_structure_hook(float, _strict(float, "a number"))
converter.register_structure_hook(int, _strict(int, "an integer"))
converter.register_structure_hook(str, _strict(str, "a string"))
converter.register_structure_hook(bool, _strict(bool, "true or false"))
converter.register_structure_hook(Any, lambda value, _: value)
# injected collaborators pass through untouched
converter.register_structure_hook(random.Random, lambda value, _: value)
converter.register_structure_hook(Clock, lambda value, _: value)


def _is_collaborator(tp: Any) -> bool:
    """A plain class (a hub, a session) that only ever arrives by injection, never from TOML."""
    return (
        inspect.isclass(tp)
        and not attrs.has(tp)
        and not issubclass(tp, enum.Enum)
        and tp.__module__ != "builtins"
        and typing.get_origin(tp) is None
    )


converter.register_structure_hook_factory(_is_collaborator, lambda _: lambda value, __: value)


def _is_sequence_type(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, tuple, Sequence, frozenset, set)


def _sequence_hook(tp: Any) -> Callable[[Any, Any], Any]:
    item = typing.get_args(tp)[0] if typing.get_args(tp) else Any
    origin = typing.get_origin(tp)
    make = {list: list, tuple: tuple, frozenset: frozenset, set: set}.get(origin, list)

    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence | set):
            raise TypeError(f"expected {describe_type(tp)}, got {shown(value)}")
        errors: list[Exception] = []
        out = []
        for index, element in enumerate(value):
            try:
                out.append(converter.structure(element, item))
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), _index_note(index, item)]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return make(out)

    return hook


def _index_note(index: int, item: Any) -> IterableValidationNote:
    return IterableValidationNote(f"Structuring @ index {index}", index, item)


def _mapping_check(tp: Any) -> Callable[[Any, Any], Any]:
    key_t, value_t = ((*typing.get_args(tp), Any, Any))[:2]

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a table, got {shown(value)}")
        errors: list[Exception] = []
        out = {}
        for key, element in value.items():
            try:
                out[converter.structure(key, key_t)] = converter.structure(element, value_t)
            except Exception as exc:
                exc.__notes__ = [
                    *getattr(exc, "__notes__", []),
                    IterableValidationNote(f"Structuring @ key {key!r}", key, value_t),
                ]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return out

    return hook


converter.register_structure_hook_factory(_is_sequence_type, _sequence_hook)


def _is_mapping_type(tp: Any) -> bool:
    origin: Any = typing.get_origin(tp)
    return origin is dict or origin is Mapping


converter.register_structure_hook_factory(_is_mapping_type, _mapping_check)


@functools.cache
def _layout(cls: Any) -> tuple[dict[str, Any], dict[str, attrs.Attribute[Any]]]:
    """Resolved type hints and init fields by their keyword, computed once per class
    (resolving string annotations costs far more than structuring a small request)."""
    hints = typing.get_type_hints(cls)
    return hints, {a.alias: a for a in attrs.fields(cls) if a.init}


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin not in (typing.Union, types.UnionType):
        return False
    members = [a for a in typing.get_args(tp) if a is not type(None)]
    # Optional[X] stays with cattrs' own handling; real unions of several types come here
    return len(members) > 1


def _union_hook(tp: Any) -> Callable[[Any, Any], Any]:
    members = typing.get_args(tp)
    expected = describe_type(tp)

    def hook(value: Any, _: Any) -> Any:
        if value is None and type(None) in members:
            return None
        for member in members:
            if member is type(None):
                continue
            try:
                return converter.structure(value, member)
            except Exception:
                continue
        raise TypeError(f"expected {expected}, got {shown(value)}")

    return hook


converter.register_structure_hook_factory(_is_union, _union_hook)


def structure_attrs(value: Any, cls: Any) -> Any:
    """Structure an attrs class field by field, running each field's validator right away, so
    that a range error is reported even when another field has a type error."""
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a table, got {shown(value)}")
    hints, keys = _layout(cls)
    errors: list[Exception] = []
    extra = set(value) - set(keys)
    if extra:
        errors.append(ForbiddenExtraKeysError("", cls, extra))
    kwargs: dict[str, Any] = {}
    for key, field in keys.items():
        if key not in value:
            if field.default is attrs.NOTHING:
                missing = KeyError(key)
                missing.__notes__ = [AttributeValidationNote(f"missing {key}", key, field.type)]
                errors.append(missing)
            continue
        try:
            converted = converter.structure(value[key], hints.get(field.name, Any))
            if field.validator is not None:
                field.validator(None, field, converted)
        except Exception as exc:
            exc.__notes__ = [
                *getattr(exc, "__notes__", []),
                AttributeValidationNote(f"Structuring {cls.__name__} @ {key}", key, field.type),
            ]
            errors.append(exc)
            continue
        kwargs[key] = converted
    if errors:
        raise ClassValidationError(f"While structuring {cls.__name__}", errors, cls)
    return cls(**kwargs)


converter.register_structure_hook_factory(attrs.has, lambda _: structure_attrs)


def structure(raw: Any, cls: type[T], *, path: str = "", source: str | None = None) -> T:
    """Structure ``raw`` into ``cls`` or raise one ``ConfigError`` listing every problem."""
    try:
        return converter.structure(raw, cls)
    except Exception as exc:
        problems = [_line(where, what) for where, what in _problems(exc, _split(path), raw, cls)]
        raise ConfigError(problems, source=source) from None


def structure_lenient(
    raw: Mapping[str, Any], cls: type[T], *, path: str = ""
) -> tuple[T | None, list[str]]:
    """Structure ``raw`` into ``cls`` and return every problem, plus the object built from
    what is left once the keys with problems are dropped (``None`` if even that fails).

    The object lets later checks (names, cross-references) run over the rest of a config in
    the same pass, so one run reports everything."""
    prefix = _split(path)
    try:
        return converter.structure(raw, cls), []
    except Exception as exc:
        found = _problems(exc, prefix, raw, cls)
    problems = [_line(where, what) for where, what in found]
    rest: Any = copy.deepcopy(dict(raw))
    for _ in range(8):  # each round drops what the last one objected to
        for where, _what in found:
            _drop(rest, list(where[len(prefix) :]))
        try:
            return converter.structure(rest, cls), problems
        except Exception as exc:
            found = _problems(exc, prefix, rest, cls)
    return None, problems


def _drop(value: Any, parts: list[str | int]) -> None:
    """Remove the key a problem names; a missing key takes its whole table with it."""
    if not parts:
        return
    parents: list[tuple[Any, str | int]] = []
    node = value
    for part in parts:
        try:
            child = node[part]
        except (KeyError, IndexError, TypeError):
            break
        parents.append((node, part))
        node = child
    else:
        owner, key = parents[-1]
        _delete(owner, key)
        return
    if parents:  # the named key is absent (a required one): drop the table that lacks it
        owner, key = parents[-1]
        _delete(owner, key)


def _delete(owner: Any, key: str | int) -> None:
    if isinstance(owner, list) and isinstance(key, int):
        owner[key] = {}  # keep later indexes stable; an empty table is reported no more
    elif isinstance(owner, dict):
        owner.pop(key, None)


def unknown_keys(
    prefix: Sequence[str | int], keys: Sequence[str], allowed: Sequence[str]
) -> list[str]:
    """``path.key: unknown key; did you mean "x"?`` (or the keys it may be) for each key."""
    lines = []
    for key in sorted(keys):
        guess = did_you_mean(key, allowed)
        hint = f'did you mean "{guess}"?' if guess else "expected one of: " + ", ".join(allowed)
        lines.append(f"{_join([*prefix, key])}: unknown key; {hint}")
    return lines


def _split(path: str) -> list[str | int]:
    return [part for part in path.split(".") if part] if path else []


# Keys whose value is a secret (or, mistyped, may be one: a raw token in token_sha256): a
# problem with them never quotes the value, so it cannot end up in a terminal or CI log.
SECRET_KEYS = frozenset({"token", "token_sha256"})


def _line(where: Sequence[str | int], what: str) -> str:
    """One problem line, ``KEY.PATH: what is wrong``, without the value of a secret key."""
    if where and where[-1] in SECRET_KEYS and ", got " in what:
        head, _, value = what.rpartition(", got ")
        kinds = {'"': "a string", "[": "a list", "{": "a table", "t": "a boolean", "f": "a boolean"}
        if value == '""':
            what = f"{head}, got an empty string"
        else:
            kind = kinds.get(value[:1], "a number")
            what = f"{head}, got {kind} (not shown: it may be a secret)"
    return f"{_join(where)}: {what}"


def _join(parts: Sequence[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _lookup(raw: Any, parts: Sequence[str | int]) -> Any:
    value = raw
    for part in parts:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


_MISSING = object()

Problem = tuple[list[str | int], str]


def _problems(
    exc: BaseException,
    prefix: list[str | int],
    raw: Any,
    cls: Any,
    rel: list[str | int] | None = None,
) -> list[Problem]:
    rel = rel or []
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = _settable(exc.cl) if attrs.has(exc.cl) else []
        found: list[Problem] = []
        for key in sorted(exc.extra_fields):
            guess = did_you_mean(key, allowed)
            if guess:
                hint = f'; did you mean "{guess}"?'
            else:
                hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
            found.append(([*prefix, *rel, key], "unknown key" + hint))
        return found
    if isinstance(exc, ClassValidationError | IterableValidationError):
        lines: list[Problem] = []
        for sub in exc.exceptions:
            step: list[str | int] = []
            for note in getattr(sub, "__notes__", []):
                if isinstance(note, AttributeValidationNote):
                    step = [note.name]
                elif isinstance(note, IterableValidationNote):
                    step = [note.index]
            owner = exc.cl if isinstance(exc, ClassValidationError) else None
            lines.extend(_problems(sub, prefix, raw, owner, [*rel, *step]))
        return lines
    if isinstance(exc, FieldError):  # one of our validators: it says what was wrong
        if not rel or rel[-1] != exc.field:
            rel = [*rel, exc.field]
        index = getattr(exc, "index", None)
        if index is not None:
            rel = [*rel, index]
        return [([*prefix, *rel], str(exc))]
    if isinstance(exc, MissingKey):
        return [([*prefix, *rel, exc.field], "missing required key")]
    where = [*prefix, *rel]
    value = _lookup(raw, rel)
    if isinstance(exc, KeyError):
        return [(where, "missing required key")]
    if isinstance(exc, ValueError) and not isinstance(exc, TypeError):
        # a validator other than ours (attrs' ge, say): the value has the right type, so
        # describe the bound, else let its own words say what is wrong
        bound = _bound_of(cls, rel)
        if bound and value is not _MISSING:
            return [(where, f"expected {bound}, got {shown(value)}")]
        return [(where, str(exc))]
    expected = _expected_of(cls, rel)
    if expected and value is not _MISSING:
        return [(where, f"expected {expected}, got {shown(value)}")]
    return [(where, str(exc))]


def _bound_of(owner: Any, rel: Sequence[str | int]) -> str | None:
    """``a value >= 1`` for attrs' own number validators (``attrs.validators.ge(1)``)."""
    if not rel or not isinstance(rel[-1], str) or owner is None or not attrs.has(owner):
        return None
    field = attrs.fields_dict(owner).get(rel[-1])
    validator = getattr(field, "validator", None)
    checks = getattr(validator, "_validators", None) or [validator]
    for check in checks:
        described = getattr(check, "expected", None)
        if described:
            return str(described)
        operator, bound = getattr(check, "compare_op", None), getattr(check, "bound", None)
        if operator and bound is not None:
            return f"a number {operator} {bound}"
    return None


# collaborators the runtime injects; a config can never set them
_INJECTED = frozenset({"clock", "rng", "hub", "runtime"})


def _settable(cls: Any) -> list[str]:
    """The keys a config may give for ``cls``: init fields that are not injected."""
    return [name for name in _layout(cls)[1] if name not in _INJECTED]


def _expected_of(owner: Any, rel: Sequence[str | int]) -> str | None:
    """The friendliest description of what a field takes: its validator's, else its type's."""
    if not rel or not isinstance(rel[-1], str) or owner is None or not attrs.has(owner):
        return None
    field = attrs.fields_dict(owner).get(rel[-1])
    if field is None:
        return None
    described = getattr(field.validator, "expected", None)
    if described:
        return str(described)
    hint = _layout(owner)[0].get(field.name)
    return describe_type(hint) if hint is not None else None


def build_component(
    factory: Any,
    options: Mapping[str, Any],
    *,
    path: str,
    inject: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> Any:
    """Create a strategy, breaker or probe from its config options.

    An attrs class is structured from ``options`` (unknown keys and wrong types are reported
    with ``path``); any other callable is called with the options as keyword arguments. Values
    in ``inject`` (the hub's clock, a seeded rng) are passed to parameters of the same name and
    cannot be set from the config.
    """
    inject = dict(inject or {})
    forbidden = sorted(set(options) & set(inject))
    if forbidden:
        raise ConfigError(
            [f"{path}.{key}: cannot be set from the config" for key in forbidden], source=source
        )
    if attrs.has(factory):
        names = {a.name: a for a in attrs.fields(factory) if a.init}
        raw = dict(options)
        raw.update({key: value for key, value in inject.items() if key in names})
        return structure(raw, factory, path=path, source=source)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    kwargs = dict(options)
    for key, value in inject.items():
        if key in parameters or accepts_any:
            kwargs[key] = value
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}", source=source) from None
