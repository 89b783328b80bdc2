"""The plan's Phase 4.2 path: ``from gleitzeit.migration.helpers import
migrate_provider_config, create_provider_with_hub``."""

from gleitzeit_legacy.factory import create_provider_with_hub
from gleitzeit_legacy.migration import migrate_provider_config

__all__ = ["create_provider_with_hub", "migrate_provider_config"]
