"""The plan's Phase 6.1 path: ``from gleitzeit.config.features import FEATURES``.

A live mapping: setting ``FEATURES["use_hub_architecture"]`` or adding a provider id to
``FEATURES["hub_architecture_providers"]`` moves the next call to the hub path; nothing set
means the old path (the plan's "start disabled"). ``rollout_percent`` is an extra.
"""

from gleitzeit_legacy.features import DEFAULTS, FEATURES

__all__ = ["DEFAULTS", "FEATURES"]
