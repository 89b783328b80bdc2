"""A faithful, deterministic Ollama simulator for tests, benchmarks and demos.

In-process::

    async with OllamaSimulator(SimConfig(models=["llama3.2"])) as sim:
        ...  # point clients at sim.url

As a process: ``python -m gleitzeit_ollama.sim --port 11434 --models llama3.2``
or :class:`SimProcess` from tests.
"""

from gleitzeit_ollama.sim.config import SimConfig
from gleitzeit_ollama.sim.faults import FaultSpec, FaultState
from gleitzeit_ollama.sim.models import ModelInfo, ModelRegistry, normalize_name
from gleitzeit_ollama.sim.process import SimProcess
from gleitzeit_ollama.sim.server import OllamaSimulator
from gleitzeit_ollama.sim.text import embedding, generate_text, text_tokens
from gleitzeit_ollama.sim.wire import BUSY_MESSAGE

__all__ = [
    "BUSY_MESSAGE",
    "FaultSpec",
    "FaultState",
    "ModelInfo",
    "ModelRegistry",
    "OllamaSimulator",
    "SimConfig",
    "SimProcess",
    "embedding",
    "generate_text",
    "normalize_name",
    "text_tokens",
]
