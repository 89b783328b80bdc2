"""Attacks on the hub-era API and the behaviour its docs promise, found in review: the
operator's network switch both ways, per-request settings that must not multiply the sandboxes
an operator sized, host files and host execution, a stopped hub, and request deadlines.

No test sends network traffic: a sandbox's network is judged by the engine's account of its
containers (``HostConfig.NetworkMode``; the CI engine runs with ``--bridge=none``, so even a
bridge container has only loopback inside), never by connecting anywhere.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.docker_engine import IMAGE
from tests.legacy.conftest import MODEL, Sims, docker_config, our_containers

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

INTERFACES = "import os; print(sorted(os.listdir('/sys/class/net')))"


async def networks_of(hub_id: str) -> set[str]:
    """The network modes of the containers the engine holds for ``hub_id``."""
    return {
        str(c["HostConfig"]["NetworkMode"])
        for c in await our_containers()
        if str(c["Labels"].get("gleitzeit.hub", "")).startswith(hub_id)
    }


@pytest.mark.docker
async def test_allow_network_gives_a_bridge_sandbox() -> None:
    """``DockerHub(allow_network=True)`` with ``network_mode="bridge"`` (documented in
    docs/migration.md) runs a container with a network interface besides loopback; without
    ``allow_network`` the same config is refused."""
    from gleitzeit.hub.docker_hub import DockerConfig, DockerHub

    from gleitzeit_core import InvalidParams

    closed = DockerHub(hub_id=docker_config("rv-closed")["hub_id"], default_image=IMAGE)
    with pytest.raises(InvalidParams, match="allow_network"):
        await closed.get_or_create_instance(DockerConfig(image=IMAGE, network_mode="bridge"))
    hub = DockerHub(
        hub_id=docker_config("rv-open")["hub_id"], default_image=IMAGE, allow_network=True
    )
    try:
        instance = await hub.get_or_create_instance(
            DockerConfig(image=IMAGE, network_mode="bridge")
        )
        ran = await hub.execute_in_container(instance.id, ["python3", "-c", INTERFACES])
        assert ran["success"] is True, ran
        assert await networks_of(hub.hub_id) == {"bridge"}
        plain = await hub.get_or_create_instance(DockerConfig(image=IMAGE))
        alone = await hub.execute_in_container(plain.id, ["python3", "-c", INTERFACES])
        assert alone["success"] is True, alone
        assert await networks_of(hub.hub_id) == {"bridge", "none"}  # the default stays offline
    finally:
        await hub.stop()
        await closed.stop()


@pytest.mark.docker
async def test_a_request_cannot_open_the_network_the_operator_kept_closed() -> None:
    """The attack: a JSON-RPC envelope through ``HubProviderAdapter.execute_legacy`` asks
    ``python/execute`` for ``network: "bridge"`` on a hub without ``allow_network``. It gets an
    invalid-params error naming ``allow_network`` and no code runs; on a hub with
    ``allow_network=True`` the same request runs networked."""
    from gleitzeit.hub.docker_hub import DockerHub
    from gleitzeit.providers.adapters import HubProviderAdapter
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider

    request: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "python/execute",
        "params": {"code": INTERFACES, "network": "bridge"},
    }
    hub = DockerHub(hub_id=docker_config("rv-req")["hub_id"], default_image=IMAGE)
    provider = PythonDockerProvider("py", hub=hub)
    adapter = HubProviderAdapter(provider, hub)
    try:
        refused = await adapter.execute_legacy(request)
        assert "result" not in refused, refused
        assert refused["error"]["code"] == -32602
        assert "allow_network" in refused["error"]["message"]
        offline = await adapter.execute_legacy({**request, "params": {"code": INTERFACES}})
        assert offline["result"]["success"] is True, offline
        assert await networks_of(hub.hub_id) == {"none"}
    finally:
        await provider.shutdown()
        await hub.stop()
    open_hub = DockerHub(
        hub_id=docker_config("rv-req-open")["hub_id"], default_image=IMAGE, allow_network=True
    )
    open_provider = PythonDockerProvider("py", hub=open_hub)
    try:
        allowed = await HubProviderAdapter(open_provider, open_hub).execute_legacy(request)
        assert allowed["result"]["success"] is True, allowed
        assert await networks_of(open_hub.hub_id) == {"bridge"}
    finally:
        await open_provider.shutdown()
        await open_hub.stop()


@pytest.mark.docker
async def test_request_environments_do_not_multiply_the_pool() -> None:
    """The attack: requests that each send a different ``environment``. Each still sees its
    own variables, but they all run on the one sandbox hub the operator sized
    (``max_containers``): no new runtime, pool or container set per distinct environment."""
    from gleitzeit.hub.docker_hub import DockerHub
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider

    hub = DockerHub(
        hub_id=docker_config("rv-env")["hub_id"],
        default_image=IMAGE,
        max_containers_per_image=2,
    )
    provider = PythonDockerProvider("py", hub=hub)
    try:
        for n in range(6):
            ran = await provider.execute(
                "python/execute",
                {
                    "code": "import os; print(os.environ['GZ_N'])",
                    "environment": {"GZ_N": str(n)},
                },
            )
            assert ran["stdout"] == f"{n}\n", ran
        assert len(hub.executor.shim._backends) <= 2  # at most one per path, hub and legacy
        status = await hub.executor.get_pool_status()
        assert status["total_containers"] <= 2, status
    finally:
        await provider.shutdown()
        await hub.stop()


@pytest.mark.docker
async def test_a_client_envelope_never_reads_host_files_or_runs_on_the_host(
    tmp_path: Path,
) -> None:
    """The attack: a gateway client's JSON-RPC envelope (run inside ``acting_as``) names a host
    file as ``python/execute``'s ``file`` - the shim would read it and run it, and the
    sandbox's NameError would echo its first line back - or asks for the host ``local`` mode.
    Both are refused and the secret is nowhere in the envelope; the operator's own in-process
    call keeps the old ``file`` behaviour (as ``llm/vision`` image paths already do)."""
    from gleitzeit.hub.docker_hub import DockerHub
    from gleitzeit.providers.adapters import HubProviderAdapter
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider

    from gleitzeit_core import Caller, acting_as

    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2_operator_secret\n", encoding="utf-8")
    hub = DockerHub(hub_id=docker_config("rv-file")["hub_id"], default_image=IMAGE)
    provider = PythonDockerProvider("py", hub=hub, enable_local=True)
    adapter = HubProviderAdapter(provider, hub)

    def envelope(params: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 1, "method": "python/execute", "params": params}

    try:
        with acting_as(Caller(name="client")):
            read = await adapter.execute_legacy(envelope({"file": str(secret)}))
            local = await adapter.execute_legacy(
                envelope({"code": "print(open('/etc/hostname').read())", "execution_mode": "local"})
            )
        assert "result" not in read, read
        assert "host file" in read["error"]["message"]
        assert "hunter2" not in json.dumps(read)
        assert "result" not in local, local
        assert "local" in local["error"]["message"]
        assert local["error"]["code"] == -32004  # permission denied, not an internal error
        assert local["error"]["data"] == {"type": "PermissionDenied", "scope": "profiles"}
        own = await adapter.execute_legacy(envelope({"file": str(secret)}))
        assert "hunter2_operator_secret" in own["result"]["stderr"]  # the old API, in-process
    finally:
        await provider.shutdown()
        await hub.stop()


@pytest.mark.docker
async def test_a_stopped_hub_runs_nothing_and_leaves_nothing() -> None:
    """After ``DockerHub.stop()``, ``execute_in_container`` on one of its instances and a
    ``PythonDockerProvider`` sharing it raise a ``RuntimeError`` that says to start the hub
    again - instead of quietly starting runtimes and containers that no one stops (they
    outlived the hub on the engine). Started again, the hub runs the instance."""
    from gleitzeit.hub.docker_hub import DockerConfig, DockerHub
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider

    hub = DockerHub(hub_id=docker_config("rv-stopped")["hub_id"], default_image=IMAGE)
    provider = PythonDockerProvider("py", hub=hub)
    try:
        instance = await hub.get_or_create_instance(DockerConfig(image=IMAGE))
        ran = await provider.execute("python/execute", {"code": "result = 1"})
        assert ran["success"] is True, ran
        await hub.stop()
        assert await networks_of(hub.hub_id) == set()  # stop removed its containers
        with pytest.raises(RuntimeError, match="start it again"):
            await hub.execute_in_container(instance.id, ["python3", "-c", "print(1)"])
        with pytest.raises(RuntimeError, match="start it again"):
            await provider.execute("python/execute", {"code": "result = 1"})
        assert hub.running is False
        assert await networks_of(hub.hub_id) == set()
        await hub.start()
        again = await hub.execute_in_container(instance.id, ["python3", "-c", "print(2)"])
        assert again["stdout"] == "2\n"
    finally:
        await provider.shutdown()
        await hub.stop()


async def test_a_client_request_cannot_stretch_the_deadline(
    sims: Sims, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: a gateway client's envelope asks ``timeout: 1e9`` of an upstream that never
    answers - on both paths it ends at the operator's timeout with a timeout error (a request
    for a client may shorten the operator's limit, never extend it, as ``llm/v1`` rules).
    A timeout that is no number of seconds (NaN, infinite, negative) is invalid params on both
    paths, also for in-process code."""
    from gleitzeit.config.features import FEATURES
    from gleitzeit.hub.ollama_hub import OllamaHub
    from gleitzeit.providers.adapters import HubProviderAdapter
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    from gleitzeit_core import Caller, acting_as

    (stalled,) = await sims(1, latency_ms=600_000.0)
    monkeypatch.setenv("OLLAMA_HOSTS", stalled.url)
    hub = OllamaHub("deadline-hub")
    provider = OllamaPoolProvider("deadline", hub=hub)
    provider.timeout = 1.0  # the operator's limit
    adapter = HubProviderAdapter(provider, hub)

    def envelope(timeout: float) -> dict[str, Any]:
        params = {"model": MODEL, "prompt": "x", "timeout": timeout}
        return {"jsonrpc": "2.0", "id": 1, "method": "llm/generate", "params": params}

    try:
        await hub.start()
        for on_hub in (False, True):
            FEATURES["use_hub_architecture"] = on_hub
            with acting_as(Caller(name="client")):
                async with asyncio.timeout(60):  # far above the 1 s it must take
                    stretched = await adapter.execute_legacy(envelope(1e9))
            assert stretched["error"]["code"] == -32002, (on_hub, stretched)
            for bad in (float("nan"), float("inf"), -1.0):
                refused = await adapter.execute_legacy(envelope(bad))
                assert refused["error"]["code"] == -32602, (on_hub, bad, refused)
                assert "params.timeout" in refused["error"]["message"]
    finally:
        FEATURES.reset()
        await provider.shutdown()
        await hub.stop()


@given(
    comment=st.sampled_from(["", "# a comment\n", "\n"]),
    docstring=st.sampled_from(["", '"""One line."""\n', "'''Two\nlines.'''\n"]),
    future=st.sampled_from(
        [
            "",
            "from __future__ import annotations\n",
            "from __future__ import annotations  # why\nfrom __future__ import division\n",
            "from __future__ import (\n    annotations,\n)\n",
            "from __future__ import annotations",  # no newline at the end
        ]
    ),
    body=st.sampled_from(["", "\nseen = PRELUDE\n", "def f(x: Later) -> None: ...\nseen = 1\n"]),
)
def test_lines_in_front_of_code_keep_future_imports_first(
    comment: str, docstring: str, future: str, body: str
) -> None:
    """What the shim puts in front of a request's code (``args`` and ``environment``) goes
    after its leading docstring and ``from __future__`` imports: the result compiles whenever
    the code did, and the prelude has run before the code's first other statement."""
    from gleitzeit_legacy.docker_executor import with_prelude

    code = comment + docstring + future + ("\n" if future and body else "") + body
    compile(code, "<code>", "exec")  # the code itself is valid
    joined = with_prelude("PRELUDE = 5\n", code)
    namespace: dict[str, Any] = {}
    exec(compile(joined, "<code>", "exec"), namespace)
    assert namespace["PRELUDE"] == 5
    if "seen = PRELUDE" in body:
        assert namespace["seen"] == 5


@pytest.mark.docker
async def test_environment_and_args_with_future_imports() -> None:
    """A request with ``environment`` and ``args`` whose code starts with ``from __future__
    import annotations`` runs and sees both (lines put in front of it broke it with a
    SyntaxError)."""
    from gleitzeit.hub.docker_hub import DockerHub
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider

    hub = DockerHub(hub_id=docker_config("rv-future")["hub_id"], default_image=IMAGE)
    provider = PythonDockerProvider("py", hub=hub)
    code = (
        '"""Doc."""\nfrom __future__ import annotations\nimport os\nresult = [os.environ["A"], n]'
    )
    try:
        ran = await provider.execute(
            "python/execute", {"code": code, "environment": {"A": "1"}, "args": {"n": 2}}
        )
        assert ran["success"] is True, ran
        assert ran["result"] == ["1", 2]
    finally:
        await provider.shutdown()
        await hub.stop()
