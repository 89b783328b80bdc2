"""Dual mode: each call through the old API takes the hub path or the legacy path as the
feature flags decide, and the per-path figures compare both paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.legacy.conftest import Sims, instances

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def counts(provider: Any) -> dict[str, int]:
    """Requests per path so far (paths without any left out), from ``path_metrics()``."""
    paths = provider.path_metrics()
    return {path: figures["requests"] for path, figures in paths.items() if figures["requests"]}


async def _provider(sims: Sims, **features: Any) -> Any:
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    provider = OllamaPoolProvider("p", instances(await sims(2)), features=features or None)
    await provider.initialize()
    return provider


@pytest.mark.parametrize(("percent", "expected"), [(0.0, "legacy"), (100.0, "hub")])
async def test_rollout_all_or_nothing(sims: Sims, percent: float, expected: str) -> None:
    """``rollout_percent`` 0 sends every call down the legacy path, 100 down the hub path."""
    provider = await _provider(sims, rollout_percent=percent)
    try:
        for index in range(10):
            await provider.execute("llm/generate", {"prompt": "x", "rollout_key": f"u{index}"})
        assert counts(provider) == {expected: 10}
    finally:
        await provider.shutdown()


async def test_rollout_half_is_stable_per_key(sims: Sims) -> None:
    """At 50 %, a key always takes the same path (the one the feature flags name for it), and
    the keys split between both paths."""
    provider = await _provider(sims, rollout_percent=50.0)
    try:
        flags = provider.runtime.features
        chosen: dict[str, str] = {}
        for index in range(40):
            key = f"user-{index}"
            for _ in range(2):
                before = counts(provider)
                await provider.execute(
                    "llm/chat", {"messages": [{"role": "user", "content": "x"}], "rollout_key": key}
                )
                after = counts(provider)
                path = next(p for p in after if after[p] != before.get(p, 0))
                assert chosen.setdefault(key, path) == path  # same key, same path
                assert path == ("hub" if flags.hub_enabled_for("llm/v1", key) else "legacy")
        hub = sum(1 for p in chosen.values() if p == "hub")
        assert 10 <= hub <= 30
        assert counts(provider) == {"hub": 2 * hub, "legacy": 2 * (40 - hub)}
    finally:
        await provider.shutdown()


async def test_session_id_and_constructor_key(sims: Sims) -> None:
    """The key may come from ``session_id``/``user_id`` in the call or from the constructor's
    ``rollout_key``; a provider with a key keeps all its calls on one path."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    pair = await sims(2)
    provider = OllamaPoolProvider(
        "p", instances(pair), features={"rollout_percent": 50.0}, rollout_key="team-a"
    )
    try:
        for _ in range(6):
            await provider.execute("llm/generate", {"prompt": "x"})
        assert len(counts(provider)) == 1
        for _ in range(3):
            await provider.execute("llm/generate", {"prompt": "x", "session_id": "s-1"})
        expected = "hub" if provider.runtime.features.hub_enabled_for("llm/v1", "s-1") else "legacy"
        assert counts(provider).get(expected, 0) >= 3
    finally:
        await provider.shutdown()


async def test_flags_switch_the_hub_path_off(sims: Sims) -> None:
    """``use_hub_architecture = false``, or a ``hub_architecture_providers`` list without
    ``llm/v1``, keeps every call on the legacy path."""
    for features in (
        {"use_hub_architecture": False},
        {"hub_architecture_providers": ["python/v1"]},
    ):
        provider = await _provider(sims, **features)
        try:
            for _ in range(4):
                await provider.execute("llm/generate", {"prompt": "x"})
            assert counts(provider) == {"legacy": 4}
        finally:
            await provider.shutdown()


async def test_features_from_the_config_file(
    sims: Sims, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[features]`` of ``$GLEITZEIT_CONFIG`` applies to old code that knows nothing of it."""
    config = tmp_path / "gleitzeit.toml"
    config.write_text("[features]\nrollout_percent = 0\n", encoding="utf-8")
    monkeypatch.setenv("GLEITZEIT_CONFIG", str(config))
    provider = await _provider(sims)
    try:
        await provider.execute("llm/generate", {"prompt": "x"})
        assert counts(provider) == {"legacy": 1}
    finally:
        await provider.shutdown()


async def test_path_metrics_compare_errors_and_latency(sims: Sims) -> None:
    """Both paths report into ``path_metrics()``: requests, errors, error rate and latency
    percentiles, side by side; under a failing instance the legacy path
    without failover shows the errors the hub path absorbs."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    from gleitzeit_core import ResourceError

    bad, good = await sims(2)
    bad.set_faults(error_rate=1.0)
    provider = OllamaPoolProvider(
        "p",
        instances([bad, good]),
        {"strategy": "round_robin", "failover": True, "retry_attempts": 2},
        {"failure_threshold": 1000, "recovery_timeout": 60, "half_open_requests": 1},
    )
    try:
        for _ in range(6):
            await provider.execute_path("hub", "llm/generate", {"prompt": "x"})
        provider.shim.failover = False  # the legacy path as configured without failover
        errors = 0
        for _ in range(6):
            try:
                await provider.execute_path("legacy", "llm/generate", {"prompt": "x"})
            except ResourceError:
                errors += 1
        paths = provider.path_metrics()
        assert paths["hub"]["requests"] == 6
        assert paths["hub"]["error_rate"] == 0.0
        assert paths["legacy"]["requests"] == 6
        assert paths["legacy"]["errors"] == errors
        assert errors >= 2
        assert paths["legacy"]["error_rate"] == round(errors / 6, 6)
        for path in ("hub", "legacy"):
            assert paths[path]["p50_ms"] > 0
            assert paths[path]["p99_ms"] >= paths[path]["p50_ms"]
    finally:
        await provider.shutdown()


async def test_pool_manager_records_its_path(sims: Sims) -> None:
    """``OllamaPoolManager.get_instance`` is dual-mode too: the outcome recorded later is
    counted on the path that chose the instance."""
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager

    pair = await sims(2)
    for percent, path in ((0.0, "legacy"), (100.0, "hub")):
        pool = OllamaPoolManager(instances(pair), features={"rollout_percent": percent})
        await pool.initialize()
        try:
            url = await pool.get_instance()
            assert url is not None
            await pool.record_success(url, response_time=0.25)
            figures = pool.path_metrics()[path]
            assert figures["requests"] == 1
            assert figures["p50_ms"] == 250.0
        finally:
            await pool.shutdown()


async def test_old_objects_on_a_shared_runtime(sims: Sims) -> None:
    """Given ``runtime=``, an old object runs on that runtime's hub (no runtime of its own),
    and the runtime's status - the gateway's, say - shows both paths of its calls in ``paths``
    (the figures of the whole process)."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider
    from gleitzeit_legacy import migrate_provider_config

    from gleitzeit_core import Runtime
    from gleitzeit_core._status import to_json

    pair = await sims(2)
    runtime = Runtime.from_config(migrate_provider_config({"instances": instances(pair)}))
    await runtime.start()
    provider = OllamaPoolProvider("p", [], runtime=runtime, hub="llm")
    try:
        before = to_json(runtime.status())["paths"]
        for path in ("hub", "legacy"):
            await provider.execute_path(path, "llm/generate", {"prompt": "x"})
        assert provider.runtime is runtime
        assert counts(provider) == {"hub": 1, "legacy": 1}
        after = to_json(runtime.status())["paths"]
        for path in ("hub", "legacy"):
            assert after[path]["requests"] == before[path]["requests"] + 1
    finally:
        await provider.shutdown()
        assert runtime.hubs["llm"].resources  # the shared runtime is left running
        await runtime.stop()
