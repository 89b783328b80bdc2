"""The plan's Phase 4.1 path: ``from gleitzeit.providers.adapters import HubProviderAdapter``
(``HubProviderAdapter(provider, hub).execute_legacy(request)`` for the old envelopes)."""

from gleitzeit_legacy.adapter import HubProviderAdapter

__all__ = ["HubProviderAdapter"]
