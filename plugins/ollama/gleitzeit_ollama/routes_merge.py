"""``/api/tags``, ``/api/ps`` and ``/api/version`` of the whole pool.

Tags and ps ask every instance of every Ollama hub at once (each bounded by its hub's health
timeout), record what they say for routing (as a probe would), and merge: each model appears
once, with Ollama's fields from the first instance that listed it (for ps: the one that keeps it
loaded longest) and an extra ``"gleitzeit": {"instances": [...]}`` naming every instance that
has it (ps adds ``expires_at`` per instance). Official clients ignore the extra field.
Instances that do not answer are named under a top-level ``"gleitzeit": {"unreachable": ...}``.

Instance labels are the resource ids; with more than one Ollama hub, ``hub/id``.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from gleitzeit_core import Resource
from gleitzeit_ollama.client import JSON, transport_text
from gleitzeit_ollama.hub import OllamaHub
from gleitzeit_ollama.models import (
    VERSION,
    normalize_model,
    parse_expires_at,
    record_ps,
    record_tags,
)
from gleitzeit_ollama.probe import get_small_json

__all__ = ["Member", "members", "merged_ps", "merged_tags", "pool_version"]

Member = tuple[str, OllamaHub, Resource]  # (label, hub, resource)


def members(hubs: Sequence[tuple[str, OllamaHub]]) -> list[Member]:
    several = len(hubs) > 1
    return [
        (f"{name}/{r.id}" if several else r.id, hub, r) for name, hub in hubs for r in hub.resources
    ]


async def _get(hub: OllamaHub, resource: Resource, path: str) -> JSON:
    _, data = await get_small_json(
        hub.session,
        resource.endpoint,
        path,
        timeout=hub.health_settings.timeout,
        settings=hub.settings,
        resource=resource,
    )
    return data


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return transport_text(exc)


async def _ask_all(pool: Sequence[Member], path: str) -> list[tuple[Member, JSON | str]]:
    answers = await asyncio.gather(
        *(_get(hub, resource, path) for _, hub, resource in pool), return_exceptions=True
    )
    out: list[tuple[Member, JSON | str]] = []
    for member, answer in zip(pool, answers, strict=True):
        if isinstance(answer, asyncio.CancelledError):
            raise answer
        out.append((member, _why(answer) if isinstance(answer, BaseException) else answer))
    return out


def _entries(payload: JSON) -> list[JSON]:
    models = payload.get("models")
    return [e for e in models if isinstance(e, dict)] if isinstance(models, list) else []


def _name(entry: JSON) -> str | None:
    name = entry.get("model") or entry.get("name")
    return normalize_model(name) if isinstance(name, str) and name.strip() else None


def _when(text: Any) -> float:
    moment = parse_expires_at(text)
    return -math.inf if moment is None else moment


def _envelope(models: list[JSON], unreachable: dict[str, str]) -> JSON:
    answer: JSON = {"models": models}
    if unreachable:
        answer["gleitzeit"] = {"unreachable": unreachable}
    return answer


async def merged_tags(pool: Sequence[Member]) -> JSON:
    """Every installed model once, newest first like Ollama, with the instances that have it."""
    merged: dict[str, JSON] = {}
    holders: dict[str, list[str]] = {}
    unreachable: dict[str, str] = {}
    for (label, _, resource), answer in await _ask_all(pool, "/api/tags"):
        if isinstance(answer, str):
            unreachable[label] = answer
            continue
        record_tags(resource, answer, time.monotonic())
        for entry in _entries(answer):
            name = _name(entry)
            if name is None:
                continue
            if name not in merged:
                merged[name] = dict(entry)
                holders[name] = []
            if label not in holders[name]:
                holders[name].append(label)
    models = sorted(merged, key=lambda n: (-_when(merged[n].get("modified_at")), n))
    out = []
    for name in models:
        entry = merged[name]
        entry["gleitzeit"] = {"instances": holders[name]}
        out.append(entry)
    return _envelope(out, unreachable)


async def merged_ps(pool: Sequence[Member]) -> JSON:
    """Every loaded model once, with where it is loaded and until when."""
    merged: dict[str, JSON] = {}
    where: dict[str, dict[str, Any]] = {}
    unreachable: dict[str, str] = {}
    for (label, _, resource), answer in await _ask_all(pool, "/api/ps"):
        if isinstance(answer, str):
            unreachable[label] = answer
            continue
        record_ps(resource, answer, time.time())
        for entry in _entries(answer):
            name = _name(entry)
            if name is None:
                continue
            expires = entry.get("expires_at")
            seen = merged.get(name)
            if seen is None or _when(expires) > _when(seen.get("expires_at")):
                merged[name] = dict(entry)
            where.setdefault(name, {})[label] = expires
    out = []
    for name in sorted(merged):
        entry = merged[name]
        entry["gleitzeit"] = {"instances": list(where[name]), "expires_at": where[name]}
        out.append(entry)
    return _envelope(out, unreachable)


_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def _version_key(text: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def pool_version(pool: Sequence[Member], gleitzeit: str) -> JSON:
    """The lowest Ollama version the probes saw (what every instance supports), the version of
    each instance, and gleitzeit's own version."""
    versions: dict[str, str | None] = {}
    lowest: tuple[tuple[int, int, int], str] | None = None
    for label, _, resource in pool:
        seen = resource.attributes.get(VERSION)
        text = seen if isinstance(seen, str) else None
        versions[label] = text
        key = None if text is None else _version_key(text)
        if key is not None and text is not None and (lowest is None or key < lowest[0]):
            lowest = (key, text)
    return {
        "version": "0.0.0" if lowest is None else lowest[1],
        "gleitzeit": {"version": gleitzeit, "instances": versions},
    }
