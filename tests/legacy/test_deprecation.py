"""Each old class warns once per process with a ``DeprecationWarning`` that names what to
use instead (checked in a fresh interpreter, so other tests cannot have warned already)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, warnings
warnings.simplefilter("always")
caught = []
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider
    from gleitzeit.providers.ollama_provider import OllamaProvider
    from gleitzeit.execution.docker_executor import ContainerPool, DockerExecutor
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider
    instances = [{"id": "a", "url": "http://127.0.0.1:9"}]
    for _ in range(3):
        OllamaPoolManager(instances)
        OllamaPoolProvider("p", instances)
        OllamaProvider("o", "http://127.0.0.1:9")
        DockerExecutor({"base_url": "unix:///nonexistent.sock"})
        ContainerPool()
        PythonDockerProvider("py")
    for warning in seen:
        caught.append({
            "category": warning.category.__name__,
            "message": str(warning.message),
            "filename": warning.filename,
        })
print(json.dumps(caught))
"""

CLASSES = {
    "OllamaPoolManager": "runtime.hubs",
    "OllamaPoolProvider": 'runtime.execute("llm/chat"',
    "OllamaProvider": 'runtime.execute("llm/generate"',
    "DockerExecutor": 'runtime.execute("python/execute"',
    "ContainerPool": "pool = { max_size",
    "PythonDockerProvider": 'runtime.execute("python/execute"',
}


def test_each_class_warns_once_naming_its_replacement(tmp_path: Path) -> None:
    """Constructing every old class three times gives exactly one ``DeprecationWarning`` per
    class, pointing at the caller's line and naming the replacement and docs/migration.md."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    env |= {
        "GLEITZEIT_LOAD_PLUGINS": "ollama,docker,breaker-consecutive,legacy",
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    script = tmp_path / "old_code.py"
    script.write_text(SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    warnings = json.loads(done.stdout)
    deprecations = [w for w in warnings if w["category"] == "DeprecationWarning"]
    assert len(deprecations) == len(CLASSES), deprecations
    for name, replacement in CLASSES.items():
        (message,) = [w["message"] for w in deprecations if w["message"].startswith(name + " ")]
        assert "deprecated" in message
        assert replacement in message
        assert "docs/migration.md" in message
    assert all(w["filename"] == str(script) for w in deprecations)
