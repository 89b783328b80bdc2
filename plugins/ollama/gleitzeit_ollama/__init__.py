"""Gleitzeit plugin for Ollama: model-aware hub, llm/v1 provider and an Ollama simulator.

The names below are this plugin's public API for other distributions that declare it as a
dependency (the legacy shim, through its ``[ollama]`` extra): Ollama's wire rules, owned here
once. They load on first use, so importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import failure_for_status
    from .models import normalize_model
    from .provider import ImageFiles, load_images, read_image

__all__ = ["ImageFiles", "failure_for_status", "load_images", "normalize_model", "read_image"]

_EXPORTS = {
    "ImageFiles": "provider",
    "failure_for_status": "client",
    "load_images": "provider",
    "normalize_model": "models",
    "read_image": "provider",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gleitzeit_ollama' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
