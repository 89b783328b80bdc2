"""Old import path: ``from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider``
(served by the gleitzeit-legacy shim over an Ollama hub and the llm/v1 provider); the plan's
Phase 2 shape ``OllamaPoolProvider(provider_id, hub=OllamaHub(...))`` too."""

from gleitzeit_legacy.ollama_common import LoadBalancingStrategy
from gleitzeit_legacy.ollama_hub import OllamaHub
from gleitzeit_legacy.ollama_pool import OllamaPoolManager
from gleitzeit_legacy.ollama_providers import OllamaPoolProvider

__all__ = ["LoadBalancingStrategy", "OllamaHub", "OllamaPoolManager", "OllamaPoolProvider"]
