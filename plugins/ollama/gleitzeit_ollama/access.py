"""What the caller behind a request may do with the Ollama pool (keys' scopes, pulls).

One place for the checks the Ollama routes and the ``llm/v1`` provider share: the core's
:class:`~gleitzeit_core.Caller` (``None``: in-process operator code, trusted) decides methods,
models and admin; the hub's settings decide which registries a pull may reach and whether
``insecure`` is passed on, for every caller.
"""

from __future__ import annotations

from typing import Any

from gleitzeit_core import Caller, InvalidParams, PermissionDenied, current_caller
from gleitzeit_ollama.client import JSON
from gleitzeit_ollama.models import normalize_model
from gleitzeit_ollama.settings import OllamaSettings

__all__ = [
    "DEFAULT_REGISTRY",
    "check_inputs",
    "check_method",
    "check_model",
    "check_pull",
    "check_registry",
    "may_auto_pull",
    "pull_insecure",
    "registry_of",
    "visible",
]

DEFAULT_REGISTRY = "registry.ollama.ai"


def check_method(method: str) -> None:
    caller = current_caller()
    if caller is not None:
        caller.check_method(method)


def _may_use(caller: Caller, model: str) -> bool:
    # a key's "llama3.2" also allows "llama3.2:latest", the name the pool uses for it
    return caller.may_use_model(model) or caller.may_use_model(model.removesuffix(":latest"))


def check_model(model: str) -> None:
    """Refuse a model outside the caller's ``models`` scope (``model`` as normalized)."""
    caller = current_caller()
    if caller is not None and not _may_use(caller, model):
        caller.check_model(model)


def visible(answer: JSON) -> JSON:
    """A merged ``/api/tags`` or ``/api/ps`` answer with only the models the caller may use:
    a key does not learn what else the pool holds."""
    caller = current_caller()
    models = answer.get("models")
    if caller is None or caller.models == ("*",) or not isinstance(models, list):
        return answer
    kept = [
        entry
        for entry in models
        if isinstance(entry, dict)
        and _may_use(caller, normalize_model(str(entry.get("model") or entry.get("name") or "")))
    ]
    return {**answer, "models": kept}


def check_inputs(method: str, given: Any, settings: OllamaSettings) -> None:
    """Refuse an embedding request of a gateway client with more texts than the hub's
    ``max_embed_inputs``: one such request would hold instances for its whole deadline, fail
    over to the next with the same load, and have its oversized answer counted against them."""
    limit = settings.max_embed_inputs
    if current_caller() is not None and isinstance(given, list) and len(given) > limit:
        raise InvalidParams(
            method,
            [
                f"input: {len(given)} texts, more than one request may carry here "
                f"({limit}, the hub's max_embed_inputs); send them in batches of at most {limit}"
            ],
        )


def may_auto_pull() -> bool:
    """``auto_pull`` changes what the pool holds: only admin keys and operator code start it."""
    caller = current_caller()
    return caller is None or caller.admin


def registry_of(model: str) -> str:
    """The registry host a model name is pulled from, as Ollama reads the name:
    ``host/namespace/model:tag``, the host omitted for ``registry.ollama.ai``."""
    name = model.strip().lower()
    for scheme in ("https://", "http://"):
        name = name.removeprefix(scheme)
    parts = name.split("/")
    return parts[0] if len(parts) >= 3 else DEFAULT_REGISTRY


def check_pull(model: str, *, what: str) -> None:
    """An explicit pull: admin keys only, with the model in scope (the registry allow-list is
    checked by every pull, in ``pulling.open_pull``)."""
    caller = current_caller()
    if caller is not None:
        caller.check_admin(what)
        check_model(model)


def check_registry(model: str, settings: OllamaSettings) -> None:
    registry = registry_of(model)
    allowed = settings.pull_registries
    if registry not in allowed:
        caller = current_caller()
        raise PermissionDenied(
            caller.name if caller is not None else "operator",
            "pull_registries",
            f"model {model!r} comes from registry {registry!r}, which is not in the hub's "
            f"pull_registries ({', '.join(allowed) or 'none'})",
        )


def pull_insecure(requested: bool | None, settings: OllamaSettings) -> bool | None:
    """``insecure`` (no TLS verification) reaches Ollama only where the operator allows it."""
    return requested if settings.pull_insecure else None
