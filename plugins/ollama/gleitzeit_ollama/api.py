"""What other distributions may use of this plugin: Ollama's wire rules, owned here once.

The legacy shim imports these through its declared ``[ollama]`` extra (the import-linter
contract in the project's pyproject.toml allows exactly this module); everything else in
``gleitzeit_ollama`` is the plugin's own business.
"""

from __future__ import annotations

from gleitzeit_ollama.client import failure_for_status
from gleitzeit_ollama.models import normalize_model
from gleitzeit_ollama.provider import ImageFiles, load_images, read_image

__all__ = ["ImageFiles", "failure_for_status", "load_images", "normalize_model", "read_image"]
