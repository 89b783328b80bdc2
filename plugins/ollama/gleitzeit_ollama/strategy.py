"""``model_aware``: prefer candidates that have the requested model hot, then installed.

The requested model is ``request.attributes["model"]`` (else ``request.slot``). A candidate's
warmth for it is read from what the candidate offers:

* an Ollama resource's ``attributes`` (``loaded``/``installed``, kept by the hub and probe);
* otherwise its labels: ``loaded:<model>`` = hot, ``model:<model>`` = installed
  (so the strategy is meaningful over any candidate, ``FakeCandidate`` included).

The warmest class present wins (hot, then installed, then the rest); within it an ``inner``
built-in strategy chooses (``least_loaded`` by default). Without a model, ``inner`` chooses
among all. Inside an ``OllamaHub`` the hub's tiers already do the same split, so this adds
nothing there but costs nothing either; it is for hubs and tests that want the preference
as a strategy.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import attrs

from gleitzeit_core import (
    BUILTIN_STRATEGIES,
    Candidate,
    EmptyPool,
    LeastLoadedStrategy,
    Request,
    Strategy,
    one_of,
)
from gleitzeit_ollama.models import INSTALLED, LOADED, normalize_model

__all__ = ["ModelAwareStrategy"]

C = TypeVar("C", bound=Candidate)

_INNER = {getattr(cls, "name", ""): cls for cls in BUILTIN_STRATEGIES}
_INNER_CHOICES = tuple(sorted(_INNER))

HOT, INSTALLED_TIER, OTHER = 0, 1, 2


def warmth(candidate: Any, model: str, now: float) -> int:
    """0 = the model is loaded there, 1 = installed, 2 = neither or not known."""
    attributes = getattr(candidate, "attributes", None)
    if isinstance(attributes, dict):
        loaded = attributes.get(LOADED)
        if loaded and loaded.get(model, -1.0) > now:
            return HOT
        installed = attributes.get(INSTALLED)
        if installed is not None and model in installed:
            return INSTALLED_TIER
    labels: frozenset[str] = getattr(candidate, "labels", frozenset())
    if labels:
        if f"loaded:{model}" in labels:
            return HOT
        if f"model:{model}" in labels:
            return INSTALLED_TIER
    return OTHER


@attrs.define(kw_only=True, eq=False)
class ModelAwareStrategy:
    """Hot model first, then installed, then the rest; ``inner`` picks within the class."""

    name: ClassVar[str] = "model_aware"
    guarantees: ClassVar[frozenset[str]] = frozenset()
    sampling: ClassVar[int] = 0  # sees every candidate: its choice depends on all of them
    rng: random.Random = attrs.field(factory=random.Random, repr=False, eq=False)
    inner: str = attrs.field(default="least_loaded", validator=one_of(*_INNER_CHOICES))
    _within: Strategy = attrs.field(init=False, repr=False)

    @_within.default
    def _make_within(self) -> Strategy:
        # an unknown name is refused by the validator, which attrs runs after the defaults
        strategy: Strategy = _INNER.get(self.inner, LeastLoadedStrategy)(rng=self.rng)
        return strategy

    def select(self, candidates: Sequence[C], request: Request) -> C:
        if not candidates:
            raise EmptyPool(self.name)
        model = request.attributes.get("model") or request.slot
        if not model or len(candidates) == 1:
            return self._within.select(candidates, request)
        model = normalize_model(str(model))
        now = time.time()
        best = OTHER + 1
        chosen: list[C] = []
        for candidate in candidates:
            tier = warmth(candidate, model, now)
            if tier < best:
                best, chosen = tier, [candidate]
            elif tier == best:
                chosen.append(candidate)
        return self._within.select(chosen, request)
