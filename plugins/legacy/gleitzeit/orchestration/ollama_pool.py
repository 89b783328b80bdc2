"""Old import path: ``from gleitzeit.orchestration.ollama_pool import OllamaPoolManager``.

Served by the gleitzeit-legacy shim over an Ollama hub; ``OllamaPoolManager`` warns once that
it is deprecated and names its replacement.
"""

from gleitzeit_legacy.ollama_pool import (
    CircuitBreakerView,
    InstanceMetrics,
    InstanceState,
    LoadBalancingStrategy,
    OllamaInstance,
    OllamaPoolManager,
)

__all__ = [
    "CircuitBreakerView",
    "InstanceMetrics",
    "InstanceState",
    "LoadBalancingStrategy",
    "OllamaInstance",
    "OllamaPoolManager",
]
