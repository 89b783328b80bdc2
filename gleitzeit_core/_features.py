"""Feature flags and percentage rollout, used to move callers to the hub architecture gradually.

``hub_enabled_for(provider, key)`` answers "should this call take the hub path?": only when
``use_hub_architecture`` is on, the provider is in ``hub_architecture_providers`` (or that list
is unset), and the call falls inside ``rollout_percent``. With a key (a user or session id) the
answer is stable for that key, so one caller does not flip between paths; without one it is
drawn at random.
"""

from __future__ import annotations

import hashlib
import random

from ._config import FeaturesConfig

__all__ = ["FeatureFlags"]


class FeatureFlags:
    def __init__(self, config: FeaturesConfig | None = None, rng: random.Random | None = None):
        self.config = config or FeaturesConfig()
        self.rng = rng or random.Random()

    def hub_enabled_for(self, provider: str, key: str | None = None) -> bool:
        config = self.config
        if not config.use_hub_architecture:
            return False
        listed = config.hub_architecture_providers
        if listed is not None and provider not in listed:
            return False
        percent = config.rollout_percent
        if percent >= 100.0:
            return True
        if percent <= 0.0:
            return False
        if key is None:
            return self.rng.random() * 100.0 < percent
        digest = hashlib.blake2b(f"{provider}\0{key}".encode(), digest_size=8).digest()
        return (int.from_bytes(digest, "big") % 10_000) / 100.0 < percent

    def enabled(self, flag: str, default: bool = False) -> bool:
        """A named boolean flag from ``[features.flags]``."""
        return self.config.flags.get(flag, default)
