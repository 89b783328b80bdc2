"""The core gateway over real loopback sockets: execute, status, health, auth, body limits and
malformed input (never a 5xx, never a crash)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gleitzeit_core import RouteRegistrar, hookimpl
from gleitzeit_core._cli import show_info_of, show_logs
from gleitzeit_core._runtime import Runtime
from gleitzeit_core.testing import echo
from gleitzeit_core.testing.serve import InProcessGateways

Gateway = Callable[..., Any]


def echo_config(**gateway: Any) -> dict[str, Any]:
    return {
        "hubs": {
            "e": {
                "kind": "echo",
                "health": {"interval": 0.05},
                "resources": [{"url": "echo://a"}, {"url": "echo://b"}],
            }
        },
        "gateway": gateway,
    }


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """Start gateways on 127.0.0.1:<free port>; yields a factory returning (url, runtime)."""
    async with InProcessGateways() as gateways:

        async def start(
            plugins: dict[str, object] | None = None, **options: Any
        ) -> tuple[str, Runtime]:
            named = [(echo, "echo"), *((plugin, name) for name, plugin in (plugins or {}).items())]
            served = await gateways.start(echo_config(**options), plugins=named)
            return served.url, served.runtime

        yield start


async def test_execute_runs_a_provider_method(gateway: Gateway) -> None:
    """POST /gleitzeit/execute runs any provider method and returns its JSON result."""
    url, _ = await gateway()
    async with aiohttp.ClientSession() as http:
        reply = await http.post(
            f"{url}/gleitzeit/execute", json={"method": "echo/say", "params": {"text": "hi"}}
        )
        assert reply.status == 200
        body = await reply.json()
    assert body["result"]["text"] == "hi"
    assert body["result"]["resource"] in {"a", "b"}


async def test_execute_streams_ndjson(gateway: Gateway) -> None:
    """A streaming method answers with one JSON line per chunk."""
    url, _ = await gateway()
    async with aiohttp.ClientSession() as http:
        reply = await http.post(
            f"{url}/gleitzeit/execute",
            json={"method": "echo/stream", "params": {"text": "one two three"}},
        )
        assert reply.headers["Content-Type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in (await reply.text()).splitlines()]
    assert [line["word"] for line in lines] == ["one", "two", "three"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"", 400, "empty"),
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "expected a JSON object"),
        (b'{"params": {}}', 400, "method"),
        (b'{"method": "echo/say", "params": []}', 400, "params"),
        (b'{"method": "echo/say", "params": {"text": 3}}', 400, "params.text"),
        (b'{"method": "echo/say", "params": {}}', 400, "params.text: missing required key"),
        (b'{"method": "echo/say", "extra": 1}', 400, "extra"),
        (b'{"method": "nope/none"}', 404, "unknown method"),
    ],
)
async def test_bad_requests_get_4xx_json_errors(
    gateway: Gateway, body: bytes, status: int, fragment: str
) -> None:
    """Malformed or wrong requests get a 4xx with a JSON error that names the problem."""
    url, _ = await gateway()
    async with aiohttp.ClientSession() as http:
        reply = await http.post(
            f"{url}/gleitzeit/execute", data=body, headers={"Content-Type": "application/json"}
        )
        assert reply.status == status
        error = (await reply.json())["error"]
    assert fragment in error


async def test_status_reports_hubs_resources_and_counts(gateway: Gateway) -> None:
    """GET /gleitzeit/status shows each hub's resources with health, breaker and counts."""
    url, _ = await gateway()
    async with aiohttp.ClientSession() as http:
        for _ in range(4):
            await http.post(
                f"{url}/gleitzeit/execute", json={"method": "echo/say", "params": {"text": "x"}}
            )
        status = await (await http.get(f"{url}/gleitzeit/status")).json()
    hub = status["hubs"][0]
    assert hub["name"] == "e"
    assert hub["kind"] == "echo"
    assert {r["id"] for r in hub["resources"]} == {"a", "b"}
    assert sum(r["metrics"]["requests"] for r in hub["resources"]) == 4
    for resource in hub["resources"]:
        assert resource["breaker"] == "closed"
        assert set(resource["metrics"]) >= {"p50_ms", "p95_ms", "p99_ms", "error_rate", "in_flight"}
    assert status["providers"] == {"echo/v1": "e"}


async def test_health_turns_503_when_a_hub_has_nothing_healthy(gateway: Gateway) -> None:
    """GET /gleitzeit/health is 200 while a hub has a healthy resource, 503 when none."""
    url, runtime = await gateway()
    hub = runtime.hubs["e"]
    async with aiohttp.ClientSession() as http:
        assert (await http.get(f"{url}/gleitzeit/health")).status == 200
        hub.down.update({"a", "b"})
        for _ in range(100):
            reply = await http.get(f"{url}/gleitzeit/health")
            if reply.status == 503:
                break
            await asyncio.sleep(0.05)
        assert reply.status == 503
        assert (await reply.json())["status"] == "degraded"


async def test_token_is_required_when_configured(gateway: Gateway) -> None:
    """With a token configured, requests without the right bearer token get 401."""
    url, _ = await gateway(token="s3cret")
    request = {"method": "echo/say", "params": {"text": "hi"}}
    async with aiohttp.ClientSession() as http:
        assert (await http.post(f"{url}/gleitzeit/execute", json=request)).status == 401
        wrong = {"Authorization": "Bearer nope"}
        reply = await http.post(f"{url}/gleitzeit/execute", json=request, headers=wrong)
        assert reply.status == 401
        assert "token" in (await reply.json())["error"]
        right = {"Authorization": "Bearer s3cret"}
        assert (
            await http.post(f"{url}/gleitzeit/execute", json=request, headers=right)
        ).status == 200
        assert (await http.get(f"{url}/gleitzeit/health")).status == 200


async def test_body_size_is_limited(gateway: Gateway) -> None:
    """A body over the limit gets 413 with a JSON error, and the server keeps serving."""
    url, _ = await gateway(max_body_bytes=1024)
    big = {"method": "echo/say", "params": {"text": "x" * 5000}}
    async with aiohttp.ClientSession() as http:
        reply = await http.post(f"{url}/gleitzeit/execute", json=big)
        assert reply.status == 413
        assert "error" in await reply.json()
        small = {"method": "echo/say", "params": {"text": "ok"}}
        assert (await http.post(f"{url}/gleitzeit/execute", json=small)).status == 200


async def test_no_resource_is_503_and_failures_are_not_5xx_crashes(gateway: Gateway) -> None:
    """Provider failures map to meaningful statuses (502/503/504), never a crash."""
    url, _ = await gateway()
    async with aiohttp.ClientSession() as http:
        reply = await http.post(
            f"{url}/gleitzeit/execute",
            json={"method": "echo/say", "params": {"text": "x", "fail": "connection"}},
        )
        assert reply.status == 502
        assert "told to fail" in (await reply.json())["error"]
        ok = {"method": "echo/say", "params": {"text": "still here"}}
        assert (await http.post(f"{url}/gleitzeit/execute", json=ok)).status == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"method": st.sampled_from(["echo/say", "echo/stream", "x/y", ""]) | json_values},
        optional={"params": json_values, "id": json_values},
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(bodies, min_size=5, max_size=5))
async def test_malformed_bodies_never_get_a_5xx(gateway: Gateway, batch: list[bytes]) -> None:
    """Whatever bytes a client posts, the gateway answers with a status below 500 and JSON,
    and stays up."""
    url, _ = await gateway()
    async with aiohttp.ClientSession() as http:
        for body in batch:
            reply = await http.post(f"{url}/gleitzeit/execute", data=body)
            text = await reply.text()
            assert reply.status < 500, text
            if reply.status != 200:
                assert "error" in json.loads(text)
        assert (await http.get(f"{url}/gleitzeit/health")).status == 200


async def test_deeply_nested_body_is_a_400(gateway: Gateway) -> None:
    """A body nested deeper than the JSON parser's recursion limit gets 400, not 500."""
    url, _ = await gateway()
    body = b"[" * 100_000 + b"]" * 100_000
    async with aiohttp.ClientSession() as http:
        reply = await http.post(f"{url}/gleitzeit/execute", data=body)
        assert reply.status == 400
        assert "nested too deeply" in (await reply.json())["error"]


async def test_drain_removes_a_resource_without_failing_calls(gateway: Gateway) -> None:
    """POST /gleitzeit/drain waits for the calls in flight on a resource, removes it, and no
    call fails; traffic then goes to the rest."""
    url, runtime = await gateway()
    slow = {"method": "echo/say", "params": {"text": "slow", "delay": 0.3}}
    async with aiohttp.ClientSession() as http:
        calls = [
            asyncio.create_task(http.post(f"{url}/gleitzeit/execute", json=slow)) for _ in range(6)
        ]
        await asyncio.sleep(0.1)
        reply = await http.post(f"{url}/gleitzeit/drain", json={"hub": "e", "resource": "a"})
        assert reply.status == 200
        assert all(r.status == 200 for r in await asyncio.gather(*calls))
        assert "a" not in runtime.hubs["e"]
        for _ in range(5):
            ok = await http.post(
                f"{url}/gleitzeit/execute", json={"method": "echo/say", "params": {"text": "x"}}
            )
            assert (await ok.json())["result"]["resource"] == "b"
        bad = await http.post(f"{url}/gleitzeit/drain", json={"hub": "e", "resource": "zz"})
        assert bad.status == 404


async def test_a_drain_timeout_of_nan_is_a_400_and_drains_nothing(gateway: Gateway) -> None:
    """``"timeout": NaN`` passed the ``timeout <= 0`` check and left the resource draining;
    it is a 400 and the resource keeps serving."""
    url, runtime = await gateway()
    body = b'{"hub": "e", "resource": "a", "remove": false, "timeout": NaN}'
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        reply = await http.post(f"{url}/gleitzeit/drain", data=body, headers=headers)
        assert reply.status == 400
        assert "NaN" in (await reply.json())["error"]
    assert not runtime.hubs["e"].get("a").draining


async def test_nan_and_infinity_in_a_body_are_400_never_passed_on(gateway: Gateway) -> None:
    """Python's JSON reader takes ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON:
    a body holding one anywhere (a param no check looks at, say, which would reach an
    upstream as it is) is a 400 naming the constant, for every route."""
    url, _ = await gateway()
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        for constant in ["NaN", "Infinity", "-Infinity"]:
            body = '{"method": "echo/say", "params": {"text": "x", "extra": [C]}}'.replace(
                "C", constant
            )
            reply = await http.post(f"{url}/gleitzeit/execute", data=body, headers=headers)
            assert reply.status == 400, constant
            assert constant.lstrip("-") in (await reply.json())["error"]


async def run_cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gleitzeit_core",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_status_command_shows_a_running_gateway(gateway: Gateway) -> None:
    """`gleitzeit status --url URL` prints a table of hubs and resources (and `--json` the
    raw status); with a token set, it sends it; an unreachable gateway is a clear error."""
    url, _ = await gateway(token="t0k")
    code, out, err = await run_cli("status", "--url", url, "--json", "--token", "t0k")
    assert code == 0, err
    status = json.loads(out)
    assert [r["id"] for r in status["hubs"][0]["resources"]] == ["a", "b"]
    code, out, err = await run_cli("status", "--url", url, "--token", "t0k")
    assert code == 0, err
    assert "hub e (echo, p2c)" in out
    assert "healthy" in out or "unknown" in out
    code, _, err = await run_cli("status", "--url", url)
    assert code == 1
    assert "401" in err
    code, _, err = await run_cli("status", "--url", "http://127.0.0.1:9")
    assert code == 1
    assert "cannot reach a gateway" in err


async def test_a_plugin_route_that_raises_is_reported_naming_the_plugin(gateway: Gateway) -> None:
    """A third-party route whose handler raises answers 500 with an error naming the plugin
    and the route (the operator knows which plugin to fix or disable); the log line names it
    too, and the gateway's own routes keep working."""

    async def broken(request: web.Request) -> web.StreamResponse:
        raise KeyError("bug in route")

    @hookimpl
    def gleitzeit_register_routes(router: RouteRegistrar) -> None:
        router.add("GET", "/broken", broken)

    plugin = SimpleNamespace(gleitzeit_register_routes=gleitzeit_register_routes)
    url, _ = await gateway({"badroute": plugin})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        reply = await http.get(f"{url}/broken")
        assert reply.status == 500
        error = (await reply.json())["error"]
        assert "plugin 'badroute'" in error
        assert "GET /broken" in error
        assert "KeyError" in error
        health = await http.get(f"{url}/gleitzeit/health")
        assert health.status == 200


async def test_a_raising_plugin_route_shows_its_exception_only_to_admins(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """What a plugin route's exception says (here a secret it held) never reaches a key that
    is not admin: its 500 names the plugin, the route and a request id; the log line with
    that id has the exception, and an admin key's 500 shows it too."""
    secret = "upstream-password-hunter2"

    async def broken(request: web.Request) -> web.StreamResponse:
        raise RuntimeError(f"could not log in with {secret}")

    @hookimpl
    def gleitzeit_register_routes(router: RouteRegistrar) -> None:
        router.add("GET", "/broken", broken)

    plugin = SimpleNamespace(gleitzeit_register_routes=gleitzeit_register_routes)
    admin, user = "admin-token-0123456789", "alice-token-0123456789"
    url, _ = await gateway({"badroute": plugin}, token=admin, keys={"alice": {"token": user}})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        reply = await http.get(f"{url}/broken", headers={"Authorization": f"Bearer {user}"})
        assert reply.status == 500
        body = await reply.json()
        assert secret not in json.dumps(body)
        assert "RuntimeError" not in body["error"]
        assert "plugin 'badroute'" in body["error"]
        assert "GET /broken" in body["error"]
        request_id = body["request_id"]
        assert request_id in body["error"]
        logged = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
        assert len(logged) == 1
        assert secret in logged[0]
        reply = await http.get(f"{url}/broken", headers={"Authorization": f"Bearer {admin}"})
        assert reply.status == 500
        body = await reply.json()
        assert f"RuntimeError: could not log in with {secret}" in body["error"]
        assert body["request_id"] != request_id


async def test_the_gateway_reports_reloads_as_log_records(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """What the gateway says about its own life (here a reload that cannot read a config
    file) is a log record of ``gleitzeit.gateway``, not a line printed past the logging
    setup: an embedding program chooses where it goes."""
    url, _ = await gateway()
    caplog.set_level(logging.INFO, logger="gleitzeit.gateway")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        reply = await http.post(f"{url}/gleitzeit/reload")
        assert reply.status == 400
    said = [
        r
        for r in caplog.records
        if r.name == "gleitzeit.gateway" and "config NOT reloaded" in r.getMessage()
    ]
    assert [r.levelno for r in said] == [logging.WARNING]


def test_serve_shows_the_gateways_information_at_the_default_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On the command line ``gleitzeit serve`` shows the gateway's informational records
    (draining, config reloaded) without ``-v``; other loggers' information stays hidden."""
    root, gateway_log = logging.getLogger(), logging.getLogger("gleitzeit.gateway")
    handlers, levels = list(root.handlers), (root.level, gateway_log.level)
    try:
        show_logs()
        show_info_of("gleitzeit.gateway")
        gateway_log.info("gateway: SIGTERM: draining (0 request(s))")
        logging.getLogger("gleitzeit.plugins").info("loaded the built-ins")
        err = capsys.readouterr().err
    finally:  # the command line's logging setup, undone for the other tests
        root.handlers[:] = handlers
        root.setLevel(levels[0])
        gateway_log.setLevel(levels[1])
    assert "gleitzeit: gateway: SIGTERM: draining (0 request(s))" in err
    assert "loaded the built-ins" not in err
