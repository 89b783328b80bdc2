"""Model names, Ollama durations, and what each instance has: installed and loaded models.

Per resource the hub keeps, in ``resource.attributes``:

* ``installed``: ``frozenset`` of normalised names from ``/api/tags`` (``None`` until known);
* ``loaded``: ``{name: expires_at}`` from ``/api/ps`` (epoch seconds, ``inf`` = forever),
  updated optimistically from answers (a served request loads its model; ``keep_alive: 0``
  unloads it);
* ``model_details``: the ``/api/tags`` entry of each installed model (size, digest, details);
* ``tags_at``: when ``/api/tags`` last answered (``time.monotonic()``); ``version``.

Names are normalised everywhere: ``llama3.2`` is ``llama3.2:latest``; other tags stay.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gleitzeit_core import Resource

__all__ = [
    "DEFAULT_KEEP_ALIVE",
    "has_model",
    "installed_models",
    "is_hot",
    "loaded_models",
    "model_details",
    "normalize_model",
    "parse_expires_at",
    "parse_keep_alive",
    "record_absent",
    "record_installed",
    "record_ps",
    "record_tags",
    "record_used",
    "seed_installed",
]

INSTALLED = "installed"
LOADED = "loaded"
DETAILS = "model_details"
TAGS_AT = "tags_at"
VERSION = "version"
ABSENT = "absent"  # 404'd models of an instance whose installed set is not known yet

DEFAULT_KEEP_ALIVE = 300.0  # Ollama's OLLAMA_KEEP_ALIVE default, 5m
_FOREVER_AFTER = 200 * 365 * 86400.0  # Ollama reports "forever" as now + ~292 years


def normalize_model(name: str) -> str:
    """``llama3.2`` -> ``llama3.2:latest``; ``llama3.1:8b`` and ``host:5000/m:q4`` stay."""
    name = name.strip()
    last = name.rsplit("/", 1)[-1]
    return name if not name or ":" in last else f"{name}:latest"


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: Any) -> float | None:
    """Seconds of an Ollama ``keep_alive`` as Ollama reads it (``None``: the server default).

    Numbers are seconds, strings Go durations ("5m", "1h30m", "0"); negative means forever
    (``inf``). Raises ``ValueError``/``TypeError`` for what Ollama would reject.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("keep_alive cannot be true or false")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _go_duration(value)
    else:
        raise TypeError(f"keep_alive must be a duration or a number, got {value!r}")
    if math.isnan(seconds):
        raise ValueError("keep_alive is not a number")
    return math.inf if seconds < 0 else seconds


def _go_duration(text: str) -> float:
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION.match(body, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r} (units: ns, us, ms, s, m, h)")
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    return sign * total


def parse_expires_at(text: Any) -> float | None:
    """Epoch seconds of an ``/api/ps`` ``expires_at`` (``inf``: forever; None: unreadable)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        return None
    return math.inf if moment > _FOREVER_AFTER + 1e9 else moment


# -- per-resource state -------------------------------------------------------------------------
def installed_models(resource: Resource) -> frozenset[str] | None:
    found: frozenset[str] | None = resource.attributes.get(INSTALLED)
    return found


def loaded_models(resource: Resource) -> dict[str, float]:
    loaded: dict[str, float] | None = resource.attributes.get(LOADED)
    if loaded is None:
        loaded = resource.attributes[LOADED] = {}
    return loaded


def model_details(resource: Resource) -> dict[str, dict[str, Any]]:
    details: dict[str, dict[str, Any]] = resource.attributes.get(DETAILS) or {}
    return details


def has_model(resource: Resource, model: str) -> bool | None:
    """Whether ``resource`` can serve ``model`` (``None``: its models are not known yet)."""
    loaded: dict[str, float] | None = resource.attributes.get(LOADED)
    if loaded and model in loaded:
        return True
    installed = resource.attributes.get(INSTALLED)
    if installed is None:
        absent = resource.attributes.get(ABSENT)
        return False if absent and model in absent else None
    return model in installed


def is_hot(resource: Resource, model: str, now: float, margin: float) -> bool:
    """Loaded, and not about to be unloaded (``now`` in epoch seconds)."""
    loaded: dict[str, float] | None = resource.attributes.get(LOADED)
    if not loaded:
        return False
    expires = loaded.get(model)
    return expires is not None and expires - now > margin


def seed_installed(resource: Resource, models: Iterable[str]) -> None:
    """Statically configured models, until ``/api/tags`` says otherwise."""
    names = frozenset(normalize_model(m) for m in models if m)
    if names and resource.attributes.get(INSTALLED) is None:
        resource.attributes[INSTALLED] = names


def record_tags(resource: Resource, payload: Mapping[str, Any], at: float) -> None:
    """Apply an ``/api/tags`` answer: the installed set becomes exactly what it lists."""
    details: dict[str, dict[str, Any]] = {}
    for entry in _entries(payload):
        name = entry.get("model") or entry.get("name")
        if isinstance(name, str) and name:
            details[normalize_model(name)] = dict(entry)
    resource.attributes[INSTALLED] = frozenset(details)
    resource.attributes[DETAILS] = details
    resource.attributes.pop(ABSENT, None)
    resource.attributes[TAGS_AT] = at


def record_ps(resource: Resource, payload: Mapping[str, Any], now: float) -> None:
    """Apply an ``/api/ps`` answer: the loaded set becomes exactly what it lists."""
    loaded: dict[str, float] = {}
    for entry in _entries(payload):
        name = entry.get("model") or entry.get("name")
        if not isinstance(name, str) or not name:
            continue
        expires = parse_expires_at(entry.get("expires_at"))
        loaded[normalize_model(name)] = now + DEFAULT_KEEP_ALIVE if expires is None else expires
    resource.attributes[LOADED] = loaded
    installed = resource.attributes.get(INSTALLED)
    if installed is not None and not loaded.keys() <= installed:
        resource.attributes[INSTALLED] = installed | loaded.keys()


def record_used(
    resource: Resource, model: str, keep_alive: float | None, default: float, now: float
) -> None:
    """A call for ``model`` just succeeded: it is loaded until ``keep_alive`` after now
    (``0``: Ollama unloads it right after the answer)."""
    seconds = default if keep_alive is None else keep_alive
    loaded = loaded_models(resource)
    if seconds <= 0:
        loaded.pop(model, None)
    else:
        loaded[model] = now + seconds
    record_installed(resource, model)


def record_installed(resource: Resource, model: str) -> None:
    absent: set[str] | None = resource.attributes.get(ABSENT)
    if absent:
        absent.discard(model)
    installed = resource.attributes.get(INSTALLED)
    if installed is not None and model not in installed:
        resource.attributes[INSTALLED] = installed | {model}


def record_absent(resource: Resource, model: str) -> None:
    """The instance said it does not have ``model`` (a 404): route it elsewhere from now on."""
    loaded_models(resource).pop(model, None)
    installed = resource.attributes.get(INSTALLED)
    if installed is None:
        # what else it has is still unknown; remember just this miss until /api/tags answers
        resource.attributes.setdefault(ABSENT, set()).add(model)
        return
    resource.attributes[INSTALLED] = installed - {model}
    details = resource.attributes.get(DETAILS)
    if details:
        details.pop(model, None)


def _entries(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    models = payload.get("models")
    if not isinstance(models, list):
        return []
    return [entry for entry in models if isinstance(entry, Mapping)]
