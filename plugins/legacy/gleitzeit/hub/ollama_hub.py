"""Hub-era import path: ``from gleitzeit.hub.ollama_hub import OllamaHub, OllamaConfig``
(an adapter over the Ollama plugin's model-aware hub)."""

from gleitzeit_legacy.ollama_hub import OllamaConfig, OllamaHub

__all__ = ["OllamaConfig", "OllamaHub"]
