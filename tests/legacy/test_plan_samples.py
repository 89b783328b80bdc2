"""The migration plan's own code samples (Phases 2-7) run against Ollama simulators and the real
Docker engine, with only host, port and image filled in - plus the plan's three Phase 5 tests
by their names (``test_ollama_provider_with_hub``, ``test_backward_compatibility``,
``test_config_migration``), and ``FEATURES`` flipped under load with the gateway's status and
``/metrics`` following.

Each sample is pasted as the plan writes it (as a method of a subclass where the plan shows a
method); the comment ``# filled in`` marks the host/port/image values, ``# added`` the one
``return`` a sample that ends in an assignment needs so the test can look at its result.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, Dict  # noqa: UP035 - the plan's samples use Dict

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.docker_engine import IMAGE
from tests.legacy.conftest import MODEL, PLUGINS, Sims, docker_config, preload, requests_to

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _features() -> Iterator[None]:
    """Every test starts from the plan's defaults ("start disabled") and leaves them so."""
    from gleitzeit_legacy.features import FEATURES

    FEATURES.reset()
    yield
    FEATURES.reset()


@pytest.fixture
def on_sim(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``on_sim(sim)``: point auto-discovery at a simulator (``OLLAMA_HOST``: the filled-in
    host and port) instead of the machine's 11434-11439."""

    def point(*sims: Any) -> None:
        monkeypatch.setenv("OLLAMA_HOSTS", ",".join(s.url for s in sims))

    return point


# -- Phase 2 ------------------------------------------------------------------------------------
async def test_phase2_provider_uses_the_given_hub_or_makes_and_owns_one(
    sims: Sims, on_sim: Any
) -> None:
    """2.1: ``OllamaPoolProvider(provider_id, hub=hub)`` uses that hub and leaves it running at
    shutdown; without a hub it makes ``OllamaHub(hub_id=f"{provider_id}-hub",
    auto_discover=True)``, owns it and stops it. Both serve calls from the discovered
    instance."""
    from gleitzeit.hub.ollama_hub import OllamaHub
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    (sim,) = await sims(1)
    on_sim(sim)  # filled in: where auto-discovery finds the server
    hub = OllamaHub(hub_id="shared-hub", auto_discover=True)
    provider_id = "test-provider"
    shared = OllamaPoolProvider(provider_id, hub=hub)
    owning = OllamaPoolProvider("owner")
    try:
        assert shared.hub is hub
        assert shared.owns_hub is False
        assert isinstance(owning.hub, OllamaHub)
        assert owning.owns_hub is True
        assert owning.hub.hub_id == "owner-hub"
        assert owning.hub.auto_discover is True
        for provider in (shared, owning):
            answer = await provider.execute("llm/generate", {"prompt": "hi", "model": MODEL})
            assert answer["response"]
            assert answer["model"] == MODEL
        assert requests_to(sim) == 2
        assert [i.endpoint for i in hub.list_instances()] == [sim.url]
    finally:
        await shared.shutdown()
        await owning.shutdown()
    assert hub.running is True  # a hub passed in keeps running for its other users
    assert owning.hub.running is False
    await hub.stop()


async def test_phase2_execute_gets_the_instance_from_the_hub(sims: Sims, on_sim: Any) -> None:
    """2.2: the plan's ``execute`` asks ``hub.get_instance_for_model`` and runs the generation
    there: the instance with the model loaded wins over one that only has it installed, and a
    model nobody has is pulled onto a healthy instance first."""
    from gleitzeit.hub.ollama_hub import OllamaHub
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    # fmt: off
    class Phase22Provider(OllamaPoolProvider):
        async def execute(self, method: str, params: Dict[str, Any]):  # type: ignore[no-untyped-def]  # noqa: UP006, RET503
            # Get instance from hub
            instance = await self.hub.get_instance_for_model(
                model_name=params.get('model'),
                strategy=params.get('strategy', 'least_loaded')
            )

            # Execute protocol-specific logic
            if method == "llm/generate":
                return await self._execute_generation(instance, params)
            # ... other methods
    # fmt: on

    cold, warm = await sims(2)
    await preload(warm)
    on_sim(cold, warm)
    hub = OllamaHub("test-hub")
    provider = Phase22Provider("test-provider", hub=hub)
    try:
        answer = await provider.execute("llm/generate", {"model": MODEL, "prompt": "hi"})
        assert answer["response"]
        assert requests_to(warm) == 1
        assert requests_to(cold) == 0
        answer = await provider.execute("llm/generate", {"model": "tinyllama", "prompt": "hi"})
        assert answer["model"] == "tinyllama"
        assert answer["response"]
        assert sum(requests_to(s, "/api/pull") for s in (cold, warm)) == 1  # pulled once
        assert set(hub.get_model_distribution()["tinyllama:latest"]) <= {
            i.id for i in hub.list_instances()
        }
    finally:
        await provider.shutdown()
        await hub.stop()


async def test_phase2_hub_status_events_and_degraded_state(sims: Sims) -> None:
    """The hub-era ``OllamaHub``: ``register_instance``/``list_instances``/
    ``unregister_instance``, ``discover_instances(port_range)``, ``start_instance`` (a server
    that answers; never a spawned one), the upstream ``get_status`` and
    ``get_metrics_summary`` shapes, ``on_event`` with the upstream names, and DEGRADED on the
    second failed probe in a row before UNHEALTHY on the third."""
    from gleitzeit.hub.base import ResourceStatus
    from gleitzeit.hub.ollama_hub import OllamaConfig, OllamaHub

    (sim,) = await sims(1)
    hub = OllamaHub(hub_id="status-hub", auto_discover=False, max_health_failures=3)
    events: list[tuple[str, dict[str, Any]]] = []
    for name in ("hub_started", "instance_registered", "status_changed", "instance_recovered"):
        hub.on_event(name, lambda data, name=name: events.append((name, data)))
    with pytest.raises(ValueError, match="unknown hub event 'started'"):
        hub.on_event("started", print)
    await hub.start()
    try:
        instance = await hub.register_instance(
            "sim-1", "Ollama@sim", sim.url, metadata={"rack": "a"}, tags=["local"]
        )
        assert instance.status is ResourceStatus.HEALTHY
        assert [i.id for i in hub.list_instances(status="healthy", tags=["local"])] == ["sim-1"]
        await hub.execute_on_instance("sim-1", "generate", {"model": MODEL, "prompt": "x"})
        status = hub.get_status()
        assert set(status) == {
            "hub_id",
            "resource_type",
            "running",
            "started_at",
            "uptime_seconds",
            "instances",
            "stats",
            "config",
        }
        assert status["instances"]["healthy"] == 1
        assert status["resource_type"] == "ollama"
        summary = hub.get_metrics_summary()
        assert summary["aggregate"]["total_requests"] == 1
        assert summary["by_instance"]["sim-1"]["request_count"] == 1
        sim.set_faults(probes_down=True)
        seen = []
        for _ in range(3):
            await hub.restart_instance("sim-1")  # one probe each
            seen.append(instance.status)
        assert seen == [ResourceStatus.HEALTHY, ResourceStatus.DEGRADED, ResourceStatus.UNHEALTHY]
        sim.set_faults(probes_down=False)
        assert await hub.restart_instance("sim-1")
        assert instance.status is ResourceStatus.HEALTHY
        changes = [(d["old_status"], d["new_status"]) for n, d in events if n == "status_changed"]
        assert changes[-3:] == [
            ("healthy", "degraded"),
            ("degraded", "unhealthy"),
            ("unhealthy", "healthy"),
        ]
        assert (
            "instance_recovered",
            {"instance_id": "sim-1", "recovery_method": "probe"},
        ) in events
        assert [n for n, _ in events][:2] == ["hub_started", "instance_registered"]
        assert await hub.unregister_instance("sim-1")
        assert hub.list_instances() == []
        port = int(sim.url.rsplit(":", 1)[1])  # filled in: the simulator's port
        (found,) = await hub.discover_instances(port_range=range(port, port + 1))
        assert found.endpoint == sim.url
        assert found.status is ResourceStatus.HEALTHY
        again = await hub.start_instance(OllamaConfig(host="127.0.0.1", port=port))
        assert again is found  # the same server, not a second instance
        with pytest.raises(RuntimeError, match="does not spawn"):
            await hub.start_instance(OllamaConfig(host="127.0.0.1", port=9))  # nothing there
        assert [i.id for i in hub.list_instances()] == [found.id]
        assert await hub.ensure_model(found.id, "phi3")  # pulled onto that instance
        assert hub.get_model_distribution()["phi3:latest"] == [found.id]
        assert requests_to(sim, "/api/pull") == 1
    finally:
        await hub.stop()


# -- Phase 3 ------------------------------------------------------------------------------------
@pytest.mark.docker
async def test_phase3_python_provider_runs_code_through_the_docker_hub(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """3.1 and 3.2: ``PythonDockerProvider(provider_id, hub=None)`` makes and owns
    ``DockerHub(hub_id=f"{provider_id}-hub")``; the plan's ``_execute_docker`` gets an instance
    with ``get_or_create_instance(DockerConfig(...))`` and runs the code with
    ``execute_in_container`` in the real engine."""
    from gleitzeit.hub.docker_hub import DockerConfig, DockerHub
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider

    monkeypatch.setenv("GLEITZEIT_DOCKER_IMAGE", IMAGE)  # filled in: the operator's image

    # fmt: off
    class Phase32Provider(PythonDockerProvider):
        async def _execute_docker(self, code: str, params: Dict):  # type: ignore[no-untyped-def,override,type-arg]  # noqa: UP006
            # Get container from hub
            config = DockerConfig(
                image=params.get('image', IMAGE),  # filled in
                memory_limit=params.get('memory_limit', '512m'),
                security_level=params.get('security_level', 'sandboxed')
            )

            instance = await self.hub.get_or_create_instance(config)

            # Execute Python-specific logic
            result = await self.hub.execute_in_container(
                instance_id=instance.id,
                command=self._prepare_python_command(code)
            )
            return result  # added  # noqa: RET504
    # fmt: on

    provider_id = f"{docker_config('p3')['hub_id']}"
    provider = Phase32Provider(provider_id)
    try:
        assert isinstance(provider.hub, DockerHub)
        assert provider.owns_hub is True
        assert provider.hub.hub_id == f"{provider_id}-hub"
        code = "import sys\nprint('from the sandbox', sys.version_info[0])\nsys.exit(3)"
        result = await provider._execute_docker(code, {})
        assert result["stdout"] == "from the sandbox 3\n"
        assert result["exit_code"] == 3
        assert result["success"] is False
        again = await provider._execute_docker("print(6 * 7)", {"security_level": "restricted"})
        assert again["stdout"] == "42\n"
        assert again["success"] is True
        assert len(provider.hub.list_instances()) == 1  # same config -> same instance
        summary = provider.hub.get_metrics_summary()["aggregate"]
        assert summary["total_requests"] == 3  # the check of the new instance, two runs
    finally:
        await provider.shutdown()
    assert provider.hub.running is False


@pytest.mark.docker
async def test_phase3_timeouts_always_hold_and_the_sandbox_is_not_optional(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``execute_in_container`` always has a timeout (the call's, else the config's) enforced
    from the host - an endless loop or ``sleep`` ends within it; an image that is not the
    hub's and not on the operator's allow-list, ``privileged``, host volumes and a network are
    refused before any container exists."""
    from gleitzeit.hub.docker_hub import DockerConfig, DockerHub

    from gleitzeit_core import InvalidParams

    hub = DockerHub(hub_id=docker_config("p3-limits")["hub_id"], default_image=IMAGE)
    try:
        instance = await hub.get_or_create_instance(DockerConfig(image=IMAGE, timeout=2.0))
        loop = asyncio.get_running_loop()
        started = loop.time()
        spun = await hub.execute_in_container(instance.id, ["python3", "-c", "while True: pass"])
        assert spun["success"] is False
        assert "timeout after 2" in spun["error"]
        slept = await hub.execute_in_container(instance.id, ["sleep", "60"], timeout=1)
        assert slept["success"] is False
        assert "timeout after 1" in slept["error"]
        assert loop.time() - started < 30  # both bounded, far below the 60 s asked for
        assert hub.get_available_instance(tags=["docker"]) is instance
        echoed = await hub.execute_in_container(instance.id, "echo hub era", workdir="/tmp")
        assert echoed["stdout"] == "hub era\n"
        assert echoed["exit_code"] == 0
        with pytest.raises(InvalidParams, match="GLEITZEIT_DOCKER_ALLOWED_IMAGES"):
            await hub.get_or_create_instance(DockerConfig(image="attacker/miner:latest"))
        for bad, word in (
            (DockerConfig(image=IMAGE, privileged=True), "privileged"),
            (DockerConfig(image=IMAGE, volumes={"/": {"bind": "/host"}}), "volumes"),
            (DockerConfig(image=IMAGE, network_mode="bridge"), "allow_network"),
            (DockerConfig(image=IMAGE, security_level="root"), "security_level"),
        ):
            with pytest.raises(InvalidParams, match=word):
                await hub.get_or_create_instance(bad)
        with pytest.raises(InvalidParams, match="user"):
            await hub.execute_in_container(instance.id, ["id"], user="root")
        monkeypatch.setenv("GLEITZEIT_DOCKER_ALLOWED_IMAGES", "gleitzeit-test/absent:1")
        with pytest.raises(RuntimeError, match="cannot run a container"):  # allowed, not there
            await hub.get_or_create_instance(DockerConfig(image="gleitzeit-test/absent:1"))
        assert len(hub.list_instances()) == 1
    finally:
        await hub.stop()


@pytest.mark.docker
async def test_phase3_request_images_come_only_from_the_allow_list() -> None:
    """Through ``python/execute`` of a ``PythonDockerProvider`` on a shared ``DockerHub``, a
    request naming another image is refused (the attack: run any image from a registry)."""
    from gleitzeit.hub.docker_hub import DockerHub
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider

    from gleitzeit_core import InvalidParams

    hub = DockerHub(hub_id=docker_config("p3-images")["hub_id"], default_image=IMAGE)
    provider = PythonDockerProvider("py", hub=hub)
    try:
        ok = await provider.execute("python/execute", {"code": "result = 2 + 2"})
        assert ok["result"] == 4
        assert ok["success"] is True
        with pytest.raises(InvalidParams, match="allow-list"):
            await provider.execute(
                "python/execute", {"code": "result = 1", "image": "attacker/miner:latest"}
            )
    finally:
        await provider.shutdown()
        assert hub.running is True  # shared: the provider leaves it to its owner
        await hub.stop()


# -- Phase 4 ------------------------------------------------------------------------------------
async def test_phase4_adapter_and_migration_helpers(sims: Sims, on_sim: Any) -> None:
    """4.1: ``HubProviderAdapter(provider, hub).execute_legacy(request)`` answers old JSON-RPC
    envelopes (a result, or an error with a code - never a raise); 4.2:
    ``migrate_provider_config`` and ``create_provider_with_hub`` at the plan's path build a
    working provider from an old config."""
    from gleitzeit.hub.ollama_hub import OllamaHub
    from gleitzeit.migration.helpers import create_provider_with_hub, migrate_provider_config
    from gleitzeit.providers.adapters import HubProviderAdapter
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    from gleitzeit_core import Runtime

    (sim,) = await sims(1)
    on_sim(sim)
    hub = OllamaHub("adapter-hub")
    provider = OllamaPoolProvider("adapted", hub=hub)
    adapter = HubProviderAdapter(provider, hub)
    try:
        request = {"jsonrpc": "2.0", "method": "llm/generate", "params": {"prompt": "x"}, "id": 7}
        reply = await adapter.execute_legacy(request)
        assert reply["id"] == 7
        assert reply["result"]["response"]
        broken = await adapter.execute_legacy({"jsonrpc": "2.0", "method": "llm/chat", "id": 8})
        assert broken["error"]["code"] == -32602
        assert "messages" in broken["error"]["message"]
        assert adapter.runtime is hub.runtime
        assert adapter.hub is hub
    finally:
        await adapter.shutdown()
        await hub.stop()

    old_config = {"type": "ollama_pool", "instances": [{"id": "gpu-1", "url": sim.url}]}
    new_config = migrate_provider_config(old_config)
    assert new_config["hubs"]["llm"]["resources"][0]["url"] == sim.url
    async with Runtime.from_config(new_config) as runtime:
        answer = await runtime.execute("llm/generate", {"model": MODEL, "prompt": "x"})
        assert answer["gleitzeit"]["instance"] == "gpu-1"
    made = create_provider_with_hub("ollama_pool", old_config)
    try:
        answer = await made.execute("llm/generate", {"prompt": "x"})
        assert answer["response"]
    finally:
        await made.shutdown()


# -- Phase 5: the plan's tests, by their names ---------------------------------------------------
async def test_ollama_provider_with_hub(sims: Sims, on_sim: Any) -> None:
    """5.1 as the plan writes it (``OllamaHub("test-hub")``, ``OllamaPoolProvider(
    "test-provider", hub=hub)``): the provider correctly uses the hub - its calls land on the
    hub's instances and show in the hub's metrics, on the legacy path by default and on the
    hub path once ``FEATURES`` says so."""
    from gleitzeit.config.features import FEATURES
    from gleitzeit.hub.ollama_hub import OllamaHub
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    (sim,) = await sims(1)
    on_sim(sim)
    hub = OllamaHub("test-hub")
    provider = OllamaPoolProvider("test-provider", hub=hub)
    # Test that provider correctly uses hub
    try:
        assert provider.hub is hub
        assert provider.runtime is hub.runtime
        await provider.execute("llm/generate", {"prompt": "a"})
        FEATURES["use_hub_architecture"] = True
        await provider.execute("llm/chat", {"messages": [{"role": "user", "content": "b"}]})
        assert provider.path_metrics()["legacy"]["requests"] == 1
        assert provider.path_metrics()["hub"]["requests"] == 1
        (instance,) = hub.list_instances()
        assert instance.metrics.request_count == 2  # both paths used the hub's instance
        assert requests_to(sim) + requests_to(sim, "/api/chat") == 2
    finally:
        await provider.shutdown()
        await hub.stop()


async def test_backward_compatibility(sims: Sims) -> None:
    """5.1: the old API still works - the pre-hub ``OllamaPoolProvider(id, instances, ...)``
    and ``OllamaPoolManager`` with old result shapes, and the positional ``ollama_url`` of the
    single-instance ``OllamaProvider`` stays a URL."""
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider
    from gleitzeit.providers.ollama_provider import OllamaProvider

    a, b = await sims(2)
    instances = [{"id": "a", "url": a.url, "models": [MODEL]}, {"id": "b", "url": b.url}]
    old = OllamaPoolProvider("old", instances, {"strategy": "round_robin"})
    single = OllamaProvider("single", b.url)
    pool = OllamaPoolManager(instances)
    try:
        generated = await old.execute("llm/generate", {"prompt": "x", "model": MODEL})
        assert {"response", "model", "done", "eval_count"} <= set(generated)
        embedded = await old.execute("llm/embed", {"input": "x", "model": "nomic-embed-text"})
        assert embedded["embeddings"]
        chat = await single.execute("llm/chat", {"prompt": "hi", "model": MODEL})
        assert chat["role"] == "assistant"
        assert chat["provider_id"] == "single"
        assert requests_to(b, "/api/chat") == 1  # the positional URL was used as the URL
        await pool.initialize()
        url = await pool.get_instance(model=MODEL, strategy="least_loaded")
        assert url in (a.url, b.url)
        await pool.record_success(url, response_time=0.5)
        status = await pool.get_pool_status()
        assert status["total_instances"] == 2
        assert status["healthy_instances"] == 2
        assert sum(i["total_requests"] for i in status["instances"].values()) == 1
        envelope = await old.handle_request(
            {"jsonrpc": "2.0", "method": "llm/generate", "params": {"prompt": "y"}, "id": 1}
        )
        assert envelope["result"]["response"]
    finally:
        await old.shutdown()
        await single.shutdown()
        await pool.shutdown()


async def test_config_migration(sims: Sims) -> None:
    """5.3: an old provider config, migrated, gives equivalent functionality - the same
    instances, strategy, breaker and timeout - and serves the same calls as the old object."""
    from gleitzeit.migration.helpers import create_provider_with_hub, migrate_provider_config

    from gleitzeit_core import Runtime

    a, b = await sims(2)
    old_config = {
        "type": "ollama_pool",
        "instances": [
            {"id": "a", "url": a.url, "models": [MODEL], "max_concurrent": 2, "tags": ["gpu"]},
            {"id": "b", "url": b.url, "max_concurrent": 3},
        ],
        "load_balancing": {
            "strategy": "round_robin",
            "failover": True,
            "retry_attempts": 3,
            "circuit_breaker": {"failure_threshold": 4, "recovery_timeout": 30},
        },
        "timeout": 45,
    }
    new_config = migrate_provider_config(old_config)
    hub = new_config["hubs"]["llm"]
    assert hub["strategy"] == "round_robin"
    assert hub["retries"] == 2
    assert hub["breaker"]["failures"] == 4
    assert hub["breaker"]["open_for"] == 30.0
    assert hub["request_timeout"] == 45.0
    assert [(r["id"], r["url"], r["max_concurrency"]) for r in hub["resources"]] == [
        ("a", a.url, 2),
        ("b", b.url, 3),
    ]
    assert hub["resources"][0]["labels"] == ["gpu"]
    # Verify equivalent functionality
    old = create_provider_with_hub("ollama_pool", old_config)
    try:
        async with Runtime.from_config(new_config) as runtime:
            served = set()
            for _ in range(4):
                answer = await runtime.execute("llm/generate", {"model": MODEL, "prompt": "x"})
                served.add(answer["gleitzeit"]["instance"])
            assert served <= {"a", "b"}  # the same instances (the hub keeps to a warm one)
        a.reset_stats()
        b.reset_stats()
        for _ in range(4):
            assert (await old.execute("llm/generate", {"prompt": "x"}))["response"]
        assert requests_to(a) == requests_to(b) == 2  # the old object: round robin, as before
    finally:
        await old.shutdown()


# -- Phase 6 ------------------------------------------------------------------------------------
async def test_phase6_feature_flags_as_written_switch_paths_on_the_next_call(
    sims: Sims, on_sim: Any
) -> None:
    """6.1 and 6.2: ``FEATURES`` starts as the plan writes it (disabled, no providers); the
    plan's dual-mode ``execute`` takes the legacy path until ``use_hub_architecture`` is
    flipped, and the very next call takes the hub path; listing a provider id turns on just
    that provider; wrong values are refused naming the key and what it takes."""
    from gleitzeit.config.features import FEATURES
    from gleitzeit.hub.ollama_hub import OllamaHub
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    assert dict(FEATURES) == {
        "use_hub_architecture": False,  # Start disabled
        "hub_architecture_providers": [],  # Gradual enable
        "rollout_percent": 100.0,
    }

    # fmt: off
    class Phase62Provider(OllamaPoolProvider):
        async def execute(self, method, params):  # type: ignore[no-untyped-def]
            if FEATURES['use_hub_architecture']:
                return await self._execute_with_hub(method, params)
            else:  # noqa: RET505
                return await self._execute_legacy(method, params)
    # fmt: on

    (sim,) = await sims(1)
    on_sim(sim)
    hub = OllamaHub("flags-hub")
    sample = Phase62Provider("sample", hub=hub)
    listed = OllamaPoolProvider("listed", hub=hub)
    other = OllamaPoolProvider("other", hub=hub)
    params = {"prompt": "x"}
    try:
        for provider in (sample, listed, other):
            await provider.execute("llm/generate", params)
        FEATURES["hub_architecture_providers"].append("listed")
        for provider in (sample, listed, other):
            await provider.execute("llm/generate", params)
        FEATURES["use_hub_architecture"] = True
        for provider in (sample, listed, other):
            await provider.execute("llm/generate", params)
        FEATURES["use_hub_architecture"] = False  # rollback: the next call is legacy again
        await sample.execute("llm/generate", params)
        await other.execute("llm/generate", params)

        def paths(p: Any) -> tuple[int, int]:
            figures = p.path_metrics()
            return figures["legacy"]["requests"], figures["hub"]["requests"]

        assert paths(sample) == (3, 1)
        assert paths(listed) == (1, 2)
        assert paths(other) == (3, 1)
        with pytest.raises(TypeError, match=r"FEATURES\['use_hub_architecture'\]: expected true"):
            FEATURES["use_hub_architecture"] = "yes"
        with pytest.raises(KeyError, match="known flags"):
            FEATURES["use_hub"] = True
        with pytest.raises(TypeError, match="provider ids or protocols"):
            FEATURES["hub_architecture_providers"].append(OllamaPoolProvider)  # type: ignore[arg-type]
    finally:
        for provider in (sample, listed, other):
            await provider.shutdown()
        await hub.stop()


@pytest.fixture
async def gateway(sims: Sims, on_sim: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """A hub-era ``OllamaHub`` over two simulators, and a gateway (with the Prometheus
    plugin) serving that hub's runtime on a loopback port."""
    from gleitzeit.hub.ollama_hub import OllamaHub

    from gleitzeit_core._gateway import build_app

    monkeypatch.setenv("GLEITZEIT_LOAD_PLUGINS", PLUGINS + ",prometheus")
    pair = await sims(2, num_parallel=4)
    on_sim(*pair)
    hub = OllamaHub("gateway-hub")
    await hub.start()
    runner = web.AppRunner(build_app(hub.runtime), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hub.url = f"http://127.0.0.1:{runner.addresses[0][1]}"  # type: ignore[attr-defined]
    try:
        yield hub
    finally:
        await runner.cleanup()
        await hub.stop()


async def _figures(http: aiohttp.ClientSession, url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Requests per path from ``/gleitzeit/status`` and from ``/metrics``."""
    async with http.get(f"{url}/gleitzeit/status", timeout=aiohttp.ClientTimeout(10)) as reply:
        status = await reply.json()
    async with http.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(10)) as reply:
        text = await reply.text()
    from_status = {p: status["paths"][p]["requests"] for p in ("hub", "legacy")}
    from_metrics = {
        s.labels["path"]: int(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gleitzeit_path_requests_total"
    }
    return from_status, from_metrics


async def test_features_flip_under_load(gateway: Any) -> None:
    """``FEATURES`` flipped while eight workers keep calling: after each flip the calls move to
    the other path (only calls already in flight finish on the old one), no call fails, and the
    per-path counts in ``/gleitzeit/status`` and ``/metrics`` follow; with the load stopped
    both equal what the providers counted."""
    from gleitzeit.config.features import FEATURES
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    workers = 8
    providers = [OllamaPoolProvider(f"load-{i % 2}", hub=gateway) for i in range(workers)]
    errors: list[BaseException] = []
    done = [0]
    per_worker = [0] * workers
    stop = asyncio.Event()
    progress = asyncio.Event()  # set after every finished call

    async def work(index: int, provider: Any) -> None:
        while not stop.is_set():
            try:
                await provider.execute("llm/generate", {"prompt": "load", "model": MODEL})
            except Exception as exc:
                errors.append(exc)
            done[0] += 1
            per_worker[index] += 1
            progress.set()

    async def until(reached: Any) -> None:
        async with asyncio.timeout(120):
            while not reached():
                progress.clear()
                await progress.wait()

    async def settled() -> None:
        """Every worker finished a call begun after now (so none is still on the old path)."""
        marks = list(per_worker)
        await until(
            lambda: all(now > mark + 1 for now, mark in zip(per_worker, marks, strict=True))
        )

    async def after(calls: int) -> None:
        target = done[0] + calls
        await until(lambda: done[0] >= target)

    flips: list[tuple[str, Any]] = [
        ("legacy", None),  # nothing configured: the old path
        ("hub", lambda: FEATURES.__setitem__("use_hub_architecture", True)),
        ("legacy", lambda: FEATURES.__setitem__("use_hub_architecture", False)),
        ("mixed", lambda: FEATURES["hub_architecture_providers"].append("load-0")),
        ("legacy", lambda: FEATURES["hub_architecture_providers"].clear()),
    ]
    async with aiohttp.ClientSession() as http:
        base_status, base_metrics = await _figures(http, gateway.url)
        assert base_status == {p: base_metrics.get(p, 0) for p in ("hub", "legacy")}
        tasks = [asyncio.create_task(work(i, p)) for i, p in enumerate(providers)]
        try:
            for expected, flip in flips:
                if flip is not None:
                    flip()
                await settled()  # the calls in flight at the flip finish
                before, before_metrics = await _figures(http, gateway.url)
                await after(40)
                now, now_metrics = await _figures(http, gateway.url)
                moved = {p: now[p] - before[p] for p in now}
                moved_metrics = {p: now_metrics[p] - before_metrics[p] for p in now}
                if expected == "mixed":  # load-0 on the hub, load-1 still legacy
                    assert moved["hub"] > 0, moved
                    assert moved["legacy"] > 0, moved
                else:
                    other = "legacy" if expected == "hub" else "hub"
                    assert moved[expected] >= 40 - workers, moved
                    assert moved[other] == 0, moved
                    assert moved_metrics[expected] > 0
                    assert moved_metrics[other] == 0
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        assert errors == []
        final_status, final_metrics = await _figures(http, gateway.url)
    counted = {"hub": 0, "legacy": 0}
    for provider in providers:
        for path, figures in provider.path_metrics().items():
            counted[path] += figures["requests"]
    assert sum(counted.values()) == done[0]
    for path in ("hub", "legacy"):
        assert final_status[path] - base_status[path] == counted[path]
        assert final_metrics[path] - base_metrics.get(path, 0) == counted[path]
    for provider in providers:
        await provider.shutdown()


async def _gleitzeit_status(url: str, *options: str) -> str:
    """What ``gleitzeit status --url URL [options]`` prints (it must succeed)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gleitzeit_core",
        "status",
        "--url",
        url,
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_status_section_and_cli_show_the_paths(gateway: Any) -> None:
    """``/gleitzeit/status`` carries the top-level ``paths`` object in the shape dashboards
    build on (hub, legacy: requests, errors, error_rate, p50/p95/p99 ms; rollout: the live
    settings), and ``gleitzeit status`` shows it as a table."""
    from gleitzeit.config.features import FEATURES
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    provider = OllamaPoolProvider("cli-provider", hub=gateway)
    try:
        await provider.execute("llm/generate", {"prompt": "x"})
        FEATURES["rollout_percent"] = 50
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{gateway.url}/gleitzeit/status") as reply,
        ):
            paths = (await reply.json())["paths"]
        figures = {"requests", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms"}
        assert set(paths) == {"hub", "legacy", "rollout"}
        assert set(paths["hub"]) == set(paths["legacy"]) == figures
        assert paths["legacy"]["requests"] >= 1
        assert paths["legacy"]["p50_ms"] > 0
        assert paths["rollout"]["use_hub_architecture"] is False
        assert paths["rollout"]["rollout_percent"] == 50.0
        assert paths["rollout"]["configured_at_run_time"] == ["rollout_percent"]
        table = await _gleitzeit_status(gateway.url)
        assert "paths" in table
        assert "p95 ms" in table
        assert "rollout_percent = 50" in table
        legacy_row = next(line for line in table.splitlines() if "legacy" in line)
        assert str(paths["legacy"]["requests"]) in legacy_row
        raw = await _gleitzeit_status(gateway.url, "--json")
        assert set(json.loads(raw)["paths"]) == {"hub", "legacy", "rollout"}
    finally:
        await provider.shutdown()


# -- Phase 7 ------------------------------------------------------------------------------------
def test_phase7_deprecated_as_the_plan_writes_it() -> None:
    """7.1: ``OllamaPoolManager`` carries PEP 702's ``__deprecated__`` and its warning says
    "OllamaPoolManager is deprecated. Use OllamaHub instead", as the plan's sample does."""
    from gleitzeit.execution.docker_executor import ContainerPool, DockerExecutor
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager
    from gleitzeit_legacy.deprecation import message

    assert "Use OllamaHub instead" in OllamaPoolManager.__deprecated__
    assert message("OllamaPoolManager").startswith(
        "OllamaPoolManager is deprecated. Use OllamaHub instead"
    )
    for cls in (ContainerPool, DockerExecutor):
        assert "Use DockerHub instead" in cls.__deprecated__
        assert message(cls.__name__).startswith(f"{cls.__name__} is deprecated. Use DockerHub")


async def test_rollback_plan_as_documented(gateway: Any) -> None:
    """docs/migration.md's rollback plan, step by step after the plan's rollout (a provider
    listed, then everyone): each step's "Verify" holds in ``/gleitzeit/status`` and
    ``/metrics`` - step 1 (the switch off) moves every unlisted provider back to the legacy
    path at once, step 2 (the list emptied) the listed one too."""
    from gleitzeit.config.features import FEATURES
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    listed = OllamaPoolProvider("early", hub=gateway)
    others = OllamaPoolProvider("late", hub=gateway)

    async def moved(http: aiohttp.ClientSession) -> dict[str, dict[str, int]]:
        """Per provider, the calls each path got for three calls of it."""
        out = {}
        for provider in (listed, others):
            before, before_metrics = await _figures(http, gateway.url)
            for _ in range(3):
                await provider.execute("llm/generate", {"prompt": "r", "model": MODEL})
            after, after_metrics = await _figures(http, gateway.url)
            delta = {p: after[p] - before[p] for p in after}
            assert delta == {p: after_metrics[p] - before_metrics[p] for p in after}
            out[provider.provider_id] = delta
        return out

    hub_only = {"hub": 3, "legacy": 0}
    legacy_only = {"hub": 0, "legacy": 3}
    try:
        async with aiohttp.ClientSession() as http:
            FEATURES["hub_architecture_providers"].append("early")  # the rollout
            FEATURES["use_hub_architecture"] = True
            assert await moved(http) == {"early": hub_only, "late": hub_only}
            FEATURES["use_hub_architecture"] = False  # step 1: everyone
            assert await moved(http) == {"early": hub_only, "late": legacy_only}
            async with http.get(f"{gateway.url}/gleitzeit/status") as reply:
                rollout = (await reply.json())["paths"]["rollout"]
            assert rollout["use_hub_architecture"] is False
            FEATURES["hub_architecture_providers"].remove("early")  # step 2: the listed ones
            assert await moved(http) == {"early": legacy_only, "late": legacy_only}
    finally:
        await listed.shutdown()
        await others.shutdown()
