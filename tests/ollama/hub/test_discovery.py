"""Discovery: OLLAMA_HOST(S) syntax, the ``env`` and ``scan`` discoverers, the default hub."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from gleitzeit_ollama.discovery import EnvDiscoverer, endpoint_of
from gleitzeit_ollama.plugin import default_hub_config
from gleitzeit_ollama.settings import OllamaSettings

from gleitzeit_core.testing.probe_contract import free_loopback_port
from tests.loopback import serving
from tests.ollama.conftest import SimFactory
from tests.ollama.hub.conftest import RuntimeFactory
from tests.ollama.hub.support import MODEL


@pytest.mark.parametrize(
    ("value", "endpoint"),
    [
        ("gpu-1", "http://gpu-1:11434"),
        ("gpu-1:8080", "http://gpu-1:8080"),
        ("http://gpu-1:8080", "http://gpu-1:8080"),
        ("http://gpu-1", "http://gpu-1:80"),
        ("https://gpu-1", "https://gpu-1:443"),
        ("HTTPS://gpu-1:9443/ollama/", "https://gpu-1:9443/ollama"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        (":11500", "http://127.0.0.1:11500"),
        ("[::1]:11435", "http://[::1]:11435"),
        ("  10.0.0.5  ", "http://10.0.0.5:11434"),
    ],
)
def test_ollama_host_syntax(value: str, endpoint: str) -> None:
    """Every form the official clients accept for OLLAMA_HOST maps to one URL."""
    assert endpoint_of(value) == endpoint


@pytest.mark.parametrize("value", ["", "ftp://x", "host:port", "host:70000", "[::1"])
def test_bad_ollama_host_is_rejected(value: str) -> None:
    """Unusable values raise ValueError instead of becoming a resource."""
    with pytest.raises(ValueError):
        endpoint_of(value)


async def test_env_discovers_ollama_hosts(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no hub configured, the default hub discovers every OLLAMA_HOSTS entry (any of the
    accepted forms) and serves calls on them."""
    sims = await sim_factory(2, models=[MODEL])
    hosts = f"127.0.0.1:{sims[0].port}, http://127.0.0.1:{sims[1].port}"
    monkeypatch.setenv("OLLAMA_HOSTS", hosts)
    monkeypatch.setenv("OLLAMA_HOST", "ignored-when-hosts-is-set:1")
    runtime = await runtime_factory(raw={})
    hub = runtime.hubs["ollama"]
    assert sorted(r.id for r in hub.resources) == sorted(f"127.0.0.1:{sim.port}" for sim in sims)
    reply = await runtime.execute("llm/generate", {"model": MODEL, "prompt": "found you"})
    assert reply["done"] is True


async def test_env_single_host_and_bad_entries(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OLLAMA_HOST alone is used when OLLAMA_HOSTS is unset; a bad entry is reported in the
    hub's discovery errors instead of being ignored."""
    (sim,) = await sim_factory(1)
    env = EnvDiscoverer(OllamaSettings(), environ={"OLLAMA_HOST": f"127.0.0.1:{sim.port}"})
    (spec,) = await env.discover(None)
    assert spec.endpoint == sim.url
    monkeypatch.setenv("OLLAMA_HOSTS", "127.0.0.1:notaport")
    runtime = await runtime_factory(raw={})
    hub = runtime.hubs["ollama"]
    assert "notaport" in hub.discovery_errors["env"]
    assert hub.resources == []


def test_default_hub_without_env_is_the_local_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OLLAMA_HOST(S): the default hub lists 127.0.0.1:11434; with one, it discovers."""
    assert default_hub_config() == {
        "kind": "ollama",
        "discovery": ["static"],
        "resources": [{"url": "http://127.0.0.1:11434"}],
    }
    monkeypatch.setenv("OLLAMA_HOST", "gpu-1")
    assert default_hub_config() == {"kind": "ollama", "discovery": ["env"]}


@pytest.fixture
async def not_ollama() -> AsyncIterator[int]:
    """An HTTP server on loopback that is not Ollama (its /api/version is plain text)."""

    async def version(request: web.Request) -> web.Response:
        return web.Response(text="nginx")

    app = web.Application()
    app.router.add_get("/api/version", version)
    async with serving(app) as port:
        yield port


async def test_scan_keeps_only_ports_that_answer_like_ollama(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, not_ollama: int
) -> None:
    """The scan discoverer probes the configured loopback ports and adds exactly those whose
    /api/version answers like Ollama (not a closed port, not another HTTP server)."""
    sims = await sim_factory(2, models=[MODEL])
    closed = free_loopback_port()
    ports = [sims[0].port, closed, not_ollama, sims[1].port]
    runtime = await runtime_factory(
        raw={
            "hubs": {
                "local": {
                    "kind": "ollama",
                    "discovery": ["scan"],
                    "scan_ports": ports,
                    # generous: a simulator that answers late on a loaded machine would be
                    # dropped as "not Ollama" (nothing here waits for the deadline)
                    "scan_timeout": 20.0,
                }
            }
        }
    )
    hub = runtime.hubs["local"]
    assert sorted(r.id for r in hub.resources) == sorted(f"127.0.0.1:{s.port}" for s in sims)
    assert all("scan" in r.labels for r in hub.resources)
    reply = await runtime.execute("llm/generate", {"model": MODEL, "prompt": "scanned"})
    assert reply["gleitzeit"]["instance"] in {r.id for r in hub.resources}


def test_scan_ports_default_to_ollamas_range() -> None:
    """By default the scan covers 11434-11439 on 127.0.0.1 (the ports local Ollamas use)."""
    settings = OllamaSettings()
    assert settings.scan_ports == list(range(11434, 11440))
    assert settings.scan_host == "127.0.0.1"
