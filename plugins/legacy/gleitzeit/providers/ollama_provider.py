"""Old import path: ``from gleitzeit.providers.ollama_provider import OllamaProvider``
(the pre-hub single-instance provider, served by the gleitzeit-legacy shim; the URL passed
positionally stays the URL)."""

from gleitzeit_legacy.ollama_providers import OllamaProvider

__all__ = ["OllamaProvider"]
