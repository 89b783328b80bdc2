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
        PythonDockerProvider("py", {"base_url": "unix:///nonexistent.sock"})
    # the plan's hub-era shapes are the current API: no warning
    from gleitzeit.hub.ollama_hub import OllamaHub
    from gleitzeit.hub.docker_hub import DockerHub
    OllamaPoolProvider("q", hub=OllamaHub("h", auto_discover=False))
    PythonDockerProvider("py2")
    PythonDockerProvider("py3", hub=DockerHub("d"))
    for warning in seen:
        caught.append({
            "category": warning.category.__name__,
            "message": str(warning.message),
            "filename": warning.filename,
        })
print(json.dumps(caught))
"""

# old class -> (the replacement the migration plan names, how to reach it underneath)
CLASSES = {
    "OllamaPoolManager": ("Use OllamaHub instead", "runtime.hubs"),
    "OllamaPoolProvider": (
        "Use OllamaPoolProvider(provider_id, hub=OllamaHub(...)) instead",
        'runtime.execute("llm/chat"',
    ),
    "OllamaProvider": (
        "Use OllamaPoolProvider(provider_id, hub=OllamaHub(...)) instead",
        'runtime.execute("llm/generate"',
    ),
    "DockerExecutor": ("Use DockerHub instead", 'runtime.execute("python/execute"'),
    "ContainerPool": ("Use DockerHub instead", "pool = { max_size"),
    "PythonDockerProvider": (
        "Use PythonDockerProvider(provider_id, hub=DockerHub(...)) instead",
        'runtime.execute("python/execute"',
    ),
}


def test_each_class_warns_once_naming_its_replacement(tmp_path: Path) -> None:
    """Constructing every old class three times gives exactly one ``DeprecationWarning`` per
    class, pointing at the caller's line and naming the plan's replacement ("Use OllamaHub
    instead"), the way to it underneath and docs/migration.md; the hub-era shapes
    (``hub=``) do not warn."""
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
    for name, (plan, underneath) in CLASSES.items():
        (message,) = [w["message"] for w in deprecations if w["message"].startswith(name + " ")]
        assert message.startswith(f"{name} is deprecated. {plan}")
        assert underneath in message
        assert "docs/migration.md" in message
    assert all(w["filename"] == str(script) for w in deprecations)


OLD_AND_NEW = """
from gleitzeit.orchestration.ollama_pool import OllamaPoolManager  # line 2: the class
from gleitzeit.execution.docker_executor import DockerExecutor  # line 3: the class
from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider
from gleitzeit.providers.python_docker_provider import PythonDockerProvider
from gleitzeit.hub.ollama_hub import OllamaHub
from gleitzeit.hub.docker_hub import DockerHub

old_pool = OllamaPoolManager([{"id": "a", "url": "http://127.0.0.1:9"}])
old_exec = DockerExecutor()
old_provider = OllamaPoolProvider("p", [{"id": "a", "url": "http://127.0.0.1:9"}])  # line 11
old_python = PythonDockerProvider("py", {"image": "python:3.11-slim"})  # line 12
new_provider = OllamaPoolProvider("p", hub=OllamaHub("h"))  # line 13
new_python = PythonDockerProvider("py", hub=DockerHub("d"))  # line 14
"""


def test_type_checkers_flag_old_usage(tmp_path: Path) -> None:
    """PEP 702: mypy (with its ``deprecated`` check on) flags each old class and each pre-hub
    constructor shape in user code, naming the plan's replacement - and not the hub-era
    shapes."""
    script = tmp_path / "user_code.py"
    script.write_text(OLD_AND_NEW, encoding="utf-8")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--enable-error-code",
            "deprecated",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            "--follow-imports",
            "silent",
            str(script),
        ],
        env={**os.environ, "MYPYPATH": str(root / "plugins" / "legacy")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    flagged = {
        int(line.split(":")[1]): line
        for line in done.stdout.splitlines()
        if line.startswith(str(script)) and "[deprecated]" in line
    }
    # a deprecated class is flagged where user code imports it, an old shape where it is used
    assert {2, 3, 11, 12} <= set(flagged), done.stdout
    assert 13 not in flagged, done.stdout
    assert 14 not in flagged, done.stdout
    assert "Use OllamaHub instead" in flagged[2]
    assert "Use DockerHub instead" in flagged[3]
    assert "hub=OllamaHub(...)) instead" in flagged[11]
    assert "hub=DockerHub(...)) instead" in flagged[12]
