"""LiteLLM's Router and our hub, side by side, on the same simulators and the same workload.

    python benchmarks/litellm_peer.py [--quick] [--json PATH]

LiteLLM (a benchmark-only dependency, ``benchmarks/requirements.txt``) routes ``llm/chat``-like
requests to ``ollama_chat/llama3.2`` deployments with ``api_base`` set to each simulator, with
its ``simple-shuffle`` and ``least-busy`` strategies; our hub (``Runtime`` + the Ollama plugin's
``llm/chat``) routes the same requests with ``p2c``, ``peak_ewma`` and ``model_aware``. Every
simulator runs in its own process (``SimProcess``), so this process holds the clients alone.

Part 1, overhead: one simulator (10 ms), sequential requests. A bare ``aiohttp`` POST to
``/api/chat`` is the reference; each round sends one request per contender in a rotating
order. The overhead of a contender is the median, over the rounds, of its latency minus the
bare client's in the same round (drift in the machine's load cancels out; the plain difference
of the p50s is reported too), with a 90 % bootstrap interval for the ratio. The CPU time this
process spends per request (background threads included) is measured too, in separate
interleaved blocks: ``litellm_vs_hub_cpu_ratio``, the steadier figure on a busy machine.

Part 2, pool: three simulators answering in 10, 30 and 90 ms, concurrency 12, ``num_parallel``
8 on each (told to both routers: ``num_parallel`` for ours, ``max_parallel_requests`` for
LiteLLM). Each round runs one batch per contender, in a rotating order.

Part 3, servers: LiteLLM's proxy server (``litellm --config``, one worker, ``litellm[proxy]``
in its own venv, ``.venv/litellm-proxy``, created from ``requirements-proxy.txt`` on first
use) and ``gleitzeit serve``, each in its own process over one 1 ms simulator, serving
``/v1/chat/completions`` to the same aiohttp client, interleaved request by request with a
direct request in each round (5 quick, 12 full), then a CPU block per server with its
process's CPU time from ``/proc``: ``litellm_proxy_vs_gateway_overhead_ratio`` (added p50,
theirs over ours) and ``litellm_proxy_vs_gateway_cpu_ratio``, medians of the per-round ratios
with 90 % intervals. The proxy runs behind ``netguard.py`` as a program (the guard below, in
its process); ``--no-proxy`` leaves this part out.

Keys: ``litellm_vs_hub_overhead_ratio`` (LiteLLM's added latency over ours, both against the
bare client; LiteLLM's better strategy against our ``p2c``, the default) and
``litellm_vs_hub_p99_ratio`` (LiteLLM's better p99 on the pool over our best strategy's p99).
Both are > 1 when LiteLLM costs more.

No traffic leaves the machine: LiteLLM reads its bundled model-cost map
(``LITELLM_LOCAL_MODEL_COST_MAP=True``) instead of fetching it, asks the first simulator, not a
default ``localhost:11434``, for model info (``OLLAMA_API_BASE``), reads no ``.env`` file
(``LITELLM_MODE=PRODUCTION``) and ignores proxy variables; and an audit hook refuses any
connection or name lookup outside the loopback range and counts it (``blocked_outbound``;
``benchmarks/netguard.py``, shared with the proxy server's process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import importlib.util
import json
import math
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

# -- network guard: set before anything that could open a socket is imported -----------------
import netguard

netguard.install()
os.environ.setdefault("GLEITZEIT_LOAD_PLUGINS", "ollama")  # the hub needs this plugin alone
BLOCKED = netguard.BLOCKED

import aiohttp  # noqa: E402
from _stats import write_json  # noqa: E402 - benchmarks/_stats.py
from gateway import cpu_seconds, spread  # noqa: E402 - benchmarks/gateway.py
from gleitzeit_ollama.sim import SimConfig, SimProcess  # noqa: E402

from gleitzeit_core._runtime import Runtime  # noqa: E402

MODEL = "llama3.2"
TOKENS = 8
NUM_PARALLEL = 8
CONCURRENCY = 12
POOL_LATENCIES_MS = (10.0, 30.0, 90.0)
OVERHEAD_LATENCY_MS = 10.0
REQUEST_TIMEOUT_S = 30.0
MESSAGES = [{"role": "user", "content": "Route this benchmark request, please."}]
HUB_PARAMS = {"model": MODEL, "messages": MESSAGES, "max_tokens": TOKENS}
RAW_BODY = {
    "model": MODEL,
    "messages": MESSAGES,
    "stream": False,
    "options": {"num_predict": TOKENS},
}
HUB_STRATEGIES = ("p2c", "peak_ewma", "model_aware")
LITELLM_STRATEGIES = ("simple-shuffle", "least-busy")
CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "_async_success_callback",
    "failure_callback",
    "_async_failure_callback",
    "input_callback",
    "service_callback",
)

Call = Callable[[], Awaitable[str]]  # one request; returns the instance that served it


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def distribution(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    n = len(ordered)
    return {
        "requests": n,
        "p50_ms": ms(percentile(ordered, 0.50)),
        "p90_ms": ms(percentile(ordered, 0.90)),
        "p99_ms": ms(percentile(ordered, 0.99)),
        "mean_ms": ms(statistics.fmean(ordered)),
        "max_ms": ms(ordered[-1]),
        # 101 points of the CDF (percentiles 0..100), for plots
        "cdf_ms": [ms(ordered[min(n - 1, round(i / 100 * (n - 1)))]) for i in range(101)],
    }


def start_sims(latencies_ms: tuple[float, ...]) -> list[SimProcess]:
    sims = []
    for i, latency in enumerate(latencies_ms):
        config = SimConfig(
            models=[MODEL],
            latency_ms=latency,
            tokens_per_s=0.0,  # the answer comes right after the latency
            load_ms=0.0,
            max_tokens=TOKENS,
            num_parallel=NUM_PARALLEL,
            max_queue=4096,
            keep_alive=-1.0,
            name=f"peer-{i}-{int(latency)}ms",
        )
        sims.append(SimProcess(config, host="127.0.0.1", port=0).start())
    return sims


# -- contenders --------------------------------------------------------------------------------
class Bare:
    """A plain aiohttp POST to one simulator: the reference."""

    name = "bare"

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, f"{url}/api/chat"
        self.payload = json.dumps(RAW_BODY).encode()
        self.headers = {"Content-Type": "application/json"}

    async def call(self) -> str:
        async with self.session.post(self.url, data=self.payload, headers=self.headers) as resp:
            reply = json.loads(await resp.read())
        if resp.status != 200 or not reply["message"]["content"]:
            raise RuntimeError(f"bare: HTTP {resp.status} {reply!r:.200}")
        return "s0"


class Hub:
    """Our runtime: ``llm/chat`` through an Ollama hub with one strategy."""

    def __init__(self, strategy: str, urls: list[str]) -> None:
        self.name = f"hub {strategy}"
        self.runtime = Runtime.from_config(
            {
                "hubs": {
                    "llm": {
                        "kind": "ollama",
                        "discovery": ["static"],
                        "strategy": strategy,
                        "seed": 1,
                        "request_timeout": REQUEST_TIMEOUT_S,
                        "queue_timeout": REQUEST_TIMEOUT_S,
                        "health": {"interval": 5.0, "timeout": 2.0},
                        "resources": [
                            {"id": f"s{i}", "url": url, "num_parallel": NUM_PARALLEL}
                            for i, url in enumerate(urls)
                        ],
                    }
                }
            }
        )

    async def start(self) -> None:
        await self.runtime.start()

    async def close(self) -> None:
        await self.runtime.stop()

    async def call(self) -> str:
        reply = await self.runtime.execute("llm/chat", HUB_PARAMS)
        if not reply["message"]["content"]:
            raise RuntimeError(f"hub: empty reply {reply!r:.200}")
        return str(reply["gleitzeit"]["instance"])


class LiteLLM:
    """LiteLLM's ``Router`` with one strategy over ``ollama_chat/`` deployments.

    Each instance takes LiteLLM's process-wide callback lists as it found them and puts them
    back on ``close()``, so that only one Router's callbacks are ever registered: a second
    Router alive in the same process would run its callbacks on the first one's calls too.
    """

    def __init__(self, strategy: str, urls: list[str]) -> None:
        import litellm

        self.litellm = litellm
        self.name = f"litellm {strategy}"
        self.saved = {name: list(getattr(litellm, name)) for name in CALLBACK_LISTS}
        self.by_base = {url: f"s{i}" for i, url in enumerate(urls)}
        self.router = litellm.Router(
            model_list=[
                {
                    "model_name": "bench",
                    "litellm_params": {
                        "model": f"ollama_chat/{MODEL}",
                        "api_base": url,
                        "max_parallel_requests": NUM_PARALLEL,
                    },
                }
                for url in urls
            ],
            routing_strategy=strategy,
            timeout=REQUEST_TIMEOUT_S,
        )

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.router.discard()
        for name, saved in self.saved.items():
            current = getattr(self.litellm, name)
            if isinstance(current, list):
                current[:] = saved
            else:
                setattr(self.litellm, name, saved)

    async def call(self) -> str:
        resp = await self.router.acompletion(model="bench", messages=MESSAGES, max_tokens=TOKENS)
        if not resp.choices[0].message.content:
            raise RuntimeError(f"{self.name}: empty reply")
        return self.by_base.get(resp._hidden_params.get("api_base", ""), "?")


def configure_litellm(model_info_base: str) -> dict[str, Any]:
    """Import LiteLLM with every switch that keeps it off the network; returns its timing."""
    os.environ["OLLAMA_API_BASE"] = model_info_base  # Router init asks /api/show here
    started = time.perf_counter()
    import litellm

    imported = time.perf_counter() - started
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.disable_aiohttp_trust_env = True  # no HTTP(S)_PROXY for LLM calls
    return {"import_s": round(imported, 3), "version": version("litellm")}


# -- part 3: the proxy servers -------------------------------------------------------------------
REPO = Path(__file__).resolve().parent.parent
PROXY_REQUIREMENTS = REPO / "benchmarks" / "requirements-proxy.txt"
DEFAULT_PROXY_VENV = REPO / ".venv" / "litellm-proxy"
SERVER_LATENCY_MS = 1.0  # a fast model: what the servers add shows, not the model
SERVER_CONCURRENCY = 4  # the CPU blocks: a few requests in flight, as a server sees them


def ensure_proxy_venv(venv: Path) -> Path:
    """The venv's ``python`` with ``litellm[proxy]`` (``requirements-proxy.txt``), created
    and installed on first use."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import litellm.proxy.proxy_cli"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    print(f"[litellm_peer] installing the LiteLLM proxy into {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            str(PROXY_REQUIREMENTS),
        ],
        check=True,
        timeout=900,
    )
    return python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not come up:\n{log.read_text(errors='replace')[-3000:]}")


class ServerProcess:
    """A server in a child process, its CPU time read from ``/proc``."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], workdir: Path, port: int
    ) -> None:
        self.name, self.argv, self.env, self.port = name, argv, env, port
        self.log = workdir / f"{name.replace(' ', '-')}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, ready_path: str, timeout: float) -> ServerProcess:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_ready(self.url + ready_path, self.proc, self.log, timeout)
        return self

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its children (a proxy may fork workers)."""
        assert self.proc is not None
        pids = [self.proc.pid, *children(self.proc.pid)]
        return sum(cpu_seconds(pid) for pid in pids if os.path.exists(f"/proc/{pid}"))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in glob.glob(f"/proc/{parent}/task/*/children"):
            with contextlib.suppress(OSError), open(task, encoding="ascii") as handle:
                kids = [int(k) for k in handle.read().split()]
                found += kids
                todo += kids
    return found


def proxy_server(python: Path, sim_url: str, workdir: Path, blocked_log: Path) -> ServerProcess:
    """``litellm --config`` (one worker) over the simulator, behind ``netguard``."""
    config = workdir / "litellm-proxy.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: ollama_chat/{MODEL}\n"
        f"      api_base: {sim_url}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  suppress_debug_info: true\n"
        "  turn_off_message_logging: true\n",
        encoding="utf-8",
    )
    port = free_port()
    argv = [str(python), str(REPO / "benchmarks" / "netguard.py"), "--log", str(blocked_log)]
    argv += ["--", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--num_workers", "1", "--telemetry", "False"]
    env = netguard.quiet_environment(dict(os.environ)) | {"LITELLM_LOG": "ERROR"}
    env.pop("DATABASE_URL", None)  # no Prisma, no database
    return ServerProcess("litellm proxy", argv, env, workdir, port)


def our_gateway(sim_url: str, workdir: Path) -> ServerProcess:
    """``gleitzeit serve`` over the simulator, as the gateway benchmark runs it."""
    port = free_port()
    config = workdir / "gleitzeit.toml"
    config.write_text(
        "[hubs.llm]\n"
        'kind = "ollama"\n'
        'discovery = ["static"]\n'
        "request_timeout = 60.0\n"
        "queue_timeout = 60.0\n"
        "[hubs.llm.health]\n"
        "interval = 5.0\n"
        "[[hubs.llm.resources]]\n"
        'id = "s0"\n'
        f'url = "{sim_url}"\n'
        "num_parallel = 64\n",
        encoding="utf-8",
    )
    argv = [sys.executable, "-m", "gleitzeit_core", "serve", "--config", str(config)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    env = dict(os.environ, GLEITZEIT_LOAD_PLUGINS="ollama", PYTHONUNBUFFERED="1")
    for name in ("GLEITZEIT_CONFIG", "GLEITZEIT_GATEWAY_TOKEN", "OLLAMA_HOST", "OLLAMA_HOSTS"):
        env.pop(name, None)
    return ServerProcess("gateway", argv, env, workdir, port)


async def servers(python: Path, quick: bool) -> dict[str, Any]:
    """Part 3: ``/v1/chat/completions`` straight to the simulator, through our gateway and
    through LiteLLM's proxy server, interleaved request by request in each round; then a CPU
    block per server (``SERVER_CONCURRENCY`` in flight) with its process's CPU time."""
    rounds = 5 if quick else 12
    per_round = 40 if quick else 150
    cpu_block = 60 if quick else 200
    body = json.dumps(
        {"model": MODEL, "messages": MESSAGES, "max_tokens": TOKENS, "stream": False}
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer unused"}
    sim = await asyncio.to_thread(start_sims, (SERVER_LATENCY_MS,))
    with tempfile.TemporaryDirectory(prefix="gleitzeit-peer-") as tmp:
        workdir = Path(tmp)
        blocked_log = workdir / "proxy-blocked.jsonl"
        running: list[ServerProcess] = []
        peers: list[str] = []
        try:
            # start the proxy first, alone: its start-up is slow and CPU-bound
            started = time.perf_counter()
            proxy = proxy_server(python, sim[0].url, workdir, blocked_log)
            running.append(proxy)
            await asyncio.to_thread(proxy.start, "/health/liveliness", 240.0)
            proxy_start_s = time.perf_counter() - started
            gateway = our_gateway(sim[0].url, workdir)
            running.append(gateway)
            await asyncio.to_thread(gateway.start, "/api/version", 60.0)
            urls = {
                "direct": sim[0].url,
                "gateway": gateway.url,
                "litellm proxy": proxy.url,
            }
            latencies: dict[str, list[list[float]]] = {name: [] for name in urls}
            cpu: dict[str, list[float]] = {"gateway": [], "litellm proxy": []}
            errors: Counter[str] = Counter()
            connector = aiohttp.TCPConnector(limit=64)
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

                def caller(url: str) -> Call:
                    async def call() -> str:
                        async with session.post(
                            f"{url}/v1/chat/completions", data=body, headers=headers
                        ) as resp:
                            reply = json.loads(await resp.read())
                        if resp.status != 200 or not reply["choices"][0]["message"]["content"]:
                            raise RuntimeError(f"{url}: HTTP {resp.status} {reply!r:.300}")
                        return "s0"

                    return call

                calls = {name: caller(url) for name, url in urls.items()}
                for call in calls.values():  # warm: connections, caches, the model loaded
                    await batch(call, 40, SERVER_CONCURRENCY, [], Counter())
                names = list(calls)
                by_server = {"gateway": gateway, "litellm proxy": proxy}
                for r in range(rounds):
                    this: dict[str, list[float]] = {name: [] for name in names}
                    for i in range(per_round):
                        for name in rotate(names, r + i):
                            began = time.perf_counter()
                            try:
                                await guarded(calls[name])
                            except Exception:
                                errors[name] += 1
                                continue
                            this[name].append(time.perf_counter() - began)
                    for name, values in this.items():
                        latencies[name].append(values)
                    for name in rotate(list(by_server), r):
                        server = by_server[name]
                        used = server.cpu_seconds()
                        failed = (
                            await batch(calls[name], cpu_block, SERVER_CONCURRENCY, [], Counter())
                        )[1]
                        errors[name] += failed
                        cpu[name].append((server.cpu_seconds() - used) / cpu_block)
                for server in running:
                    assert server.proc is not None
                    for pid in [server.proc.pid, *children(server.proc.pid)]:
                        peers += [
                            f"{server.name}: {peer}"
                            for peer in netguard.remote_peers(pid)
                            if not netguard.is_local(peer.rsplit(":", 1)[0])
                        ]
        finally:
            for server in running:
                await asyncio.to_thread(server.stop)
            await asyncio.to_thread(sim[0].terminate)
        blocked = []
        if blocked_log.exists():
            blocked = [json.loads(line) for line in blocked_log.read_text().splitlines()]
    return {
        "latencies": latencies,
        "cpu": cpu,
        "errors": dict(errors),
        "proxy_start_s": round(proxy_start_s, 1),
        "proxy_blocked_outbound": blocked,
        "foreign_peers": peers,
        "rounds": rounds,
        "requests_per_round": per_round,
        "cpu_block": cpu_block,
        "sim_latency_ms": SERVER_LATENCY_MS,
    }


def server_figures(part: dict[str, Any]) -> dict[str, Any]:
    """Per round: what each server adds to the direct p50 and p99, and its CPU per request;
    the ratios LiteLLM's proxy over our gateway, as medians with 90 % intervals."""
    lat = part["latencies"]
    added: dict[str, dict[str, list[float]]] = {}
    for name in ("gateway", "litellm proxy"):
        for q in (0.5, 0.99):
            added.setdefault(name, {})[f"p{round(q * 100)}"] = [
                (percentile(mine, q) - percentile(direct, q)) * 1000
                for mine, direct in zip(lat[name], lat["direct"], strict=True)
            ]
    floor = 0.01  # ms: a gateway at the clock's resolution would make the ratio meaningless
    overhead = [
        p / max(g, floor)
        for p, g in zip(added["litellm proxy"]["p50"], added["gateway"]["p50"], strict=True)
    ]
    overhead_p99 = [
        p / max(g, floor)
        for p, g in zip(added["litellm proxy"]["p99"], added["gateway"]["p99"], strict=True)
    ]
    cpu = part["cpu"]
    cpu_ratio = [p / g for p, g in zip(cpu["litellm proxy"], cpu["gateway"], strict=True)]
    return {
        "litellm_proxy_vs_gateway_overhead_ratio": spread(overhead, 2)["median"],
        "litellm_proxy_vs_gateway_overhead_ratio_ci90": spread(overhead, 2)["interval_90"],
        "litellm_proxy_vs_gateway_p99_overhead_ratio": spread(overhead_p99, 2)["median"],
        "litellm_proxy_vs_gateway_cpu_ratio": spread(cpu_ratio, 2)["median"],
        "litellm_proxy_vs_gateway_cpu_ratio_ci90": spread(cpu_ratio, 2)["interval_90"],
        "litellm_proxy_added_p50_ms": spread(added["litellm proxy"]["p50"], 3)["median"],
        "litellm_proxy_added_p99_ms": spread(added["litellm proxy"]["p99"], 3)["median"],
        "gateway_v1_server_added_p50_ms": spread(added["gateway"]["p50"], 3)["median"],
        "gateway_v1_server_added_p99_ms": spread(added["gateway"]["p99"], 3)["median"],
        "litellm_proxy_cpu_ms_per_request": spread([c * 1000 for c in cpu["litellm proxy"]], 3)[
            "median"
        ],
        "gateway_cpu_ms_per_request": spread([c * 1000 for c in cpu["gateway"]], 3)["median"],
        "litellm_proxy_blocked_outbound": len(part["proxy_blocked_outbound"]),
        "servers_detail": {
            "added_ms": {
                name: {q: spread(v, 3) for q, v in qs.items()} for name, qs in added.items()
            },
            "direct_p50_ms": spread([percentile(v, 0.5) * 1000 for v in lat["direct"]], 3),
            "cpu_ms_per_request": {
                name: spread([c * 1000 for c in v], 3) for name, v in cpu.items()
            },
            "errors": part["errors"],
            "proxy_start_s": part["proxy_start_s"],
            "proxy_blocked": part["proxy_blocked_outbound"][:20],
            "foreign_peers": part["foreign_peers"],
            "rounds": part["rounds"],
            "requests_per_round": part["requests_per_round"],
            "cpu_requests_per_round": part["cpu_block"],
            "cpu_concurrency": SERVER_CONCURRENCY,
            "sim_latency_ms": part["sim_latency_ms"],
        },
    }


# -- measurement -------------------------------------------------------------------------------
async def guarded(call: Call) -> str:
    return await asyncio.wait_for(call(), REQUEST_TIMEOUT_S)


async def batch(
    call: Call, total: int, concurrency: int, latencies: list[float], served: Counter[str]
) -> tuple[float, int]:
    """``total`` calls over ``concurrency`` workers; (elapsed seconds, errors)."""
    remaining = total
    errors = 0

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                instance = await guarded(call)
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
            served[instance] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, errors


def rotate(items: list[Any], r: int) -> list[Any]:
    k = r % len(items)
    return items[k:] + items[:k]


async def overhead(url: str, quick: bool) -> dict[str, Any]:
    """Part 1: sequential requests to one simulator, bare vs hub vs LiteLLM, interleaved.

    LiteLLM's two strategies take turns (one Router alive at a time); the bare client and the
    hub run in both turns."""
    rounds = 200 if quick else 1000
    cpu_rounds, cpu_block = (3, 40) if quick else (8, 100)
    latencies: dict[str, list[float]] = {}
    paired: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        bare, hub = Bare(session, url), Hub("p2c", [url])
        await hub.start()
        try:
            for strategy in LITELLM_STRATEGIES:
                peer = LiteLLM(strategy, [url])
                contenders: list[Any] = [bare, hub, peer]
                try:
                    for c in contenders:  # warm connections and caches; not counted
                        for _ in range(20):
                            await guarded(c.call)
                    for r in range(rounds):
                        this_round: dict[str, float] = {}
                        for c in rotate(contenders, r):
                            started = time.perf_counter()
                            try:
                                await guarded(c.call)
                            except Exception:
                                errors[c.name] += 1
                                continue
                            this_round[c.name] = time.perf_counter() - started
                            latencies.setdefault(c.name, []).append(this_round[c.name])
                        if "bare" in this_round:  # same round, same moment: drift cancels
                            for name, elapsed in this_round.items():
                                paired.setdefault(name, []).append(elapsed - this_round["bare"])
                    # CPU time of this process per request, in blocks (LiteLLM logs in the
                    # background: a short settle inside each block counts that work too)
                    for r in range(cpu_rounds):
                        for c in rotate(contenders, r):
                            cpu0 = time.process_time()
                            for _ in range(cpu_block):
                                try:
                                    await guarded(c.call)
                                except Exception:
                                    errors[c.name] += 1
                            await asyncio.sleep(0.05)
                            cpu.setdefault(c.name, []).append(
                                (time.process_time() - cpu0) / cpu_block
                            )
                finally:
                    await peer.close()
        finally:
            await hub.close()
    figures = {name: distribution(values) for name, values in latencies.items()}
    base = figures["bare"]["p50_ms"]
    for name, row in figures.items():
        row["overhead_p50_ms"] = round(row["p50_ms"] - base, 3)
        # the median of the per-round differences with the bare request next to it
        row["overhead_paired_ms"] = ms(statistics.median(paired[name])) if name in paired else None
    cpu_ms = {name: round(statistics.median(v) * 1000, 4) for name, v in cpu.items()}
    return {
        "sim_latency_ms": OVERHEAD_LATENCY_MS,
        "rounds_per_litellm_strategy": rounds,
        "contenders": figures,
        "cpu_ms_per_request": cpu_ms,
        "errors": dict(errors),
        "_paired": paired,  # raw differences for the interval; not written out
    }


async def pool(urls: list[str], quick: bool) -> dict[str, Any]:
    """Part 2: the 10/30/90 ms pool at concurrency 12, one batch per contender per round."""
    per_contender = 600 if quick else 3000
    rounds = 3 if quick else 6
    per_batch = per_contender // rounds
    hubs = [Hub(strategy, urls) for strategy in HUB_STRATEGIES]
    names = [h.name for h in hubs] + [f"litellm {s}" for s in LITELLM_STRATEGIES]
    latencies: dict[str, list[float]] = {name: [] for name in names}
    served: dict[str, Counter[str]] = {name: Counter() for name in names}
    spent: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for hub in hubs:
        await hub.start()
    try:
        for hub in hubs:  # let latency-aware strategies see every instance; not counted
            await batch(hub.call, 48, CONCURRENCY, [], Counter())
        slots: list[Any] = [*hubs, *LITELLM_STRATEGIES]
        for r in range(rounds):
            for slot in rotate(slots, r):
                if isinstance(slot, str):  # LiteLLM: one Router alive at a time
                    contender: Any = LiteLLM(slot, urls)
                    await batch(contender.call, 48, CONCURRENCY, [], Counter())  # warm-up
                else:
                    contender = slot
                try:
                    elapsed, failed = await batch(
                        contender.call,
                        per_batch,
                        CONCURRENCY,
                        latencies[contender.name],
                        served[contender.name],
                    )
                finally:
                    if isinstance(slot, str):
                        await contender.close()
                spent[contender.name] += elapsed
                errors[contender.name] += failed
    finally:
        for hub in hubs:
            await hub.close()
    figures: dict[str, Any] = {}
    for name in names:
        row = distribution(latencies[name])
        row["throughput_rps"] = round(len(latencies[name]) / spent[name], 1)
        row["errors"] = errors[name]
        total = sum(served[name].values()) or 1
        row["share"] = {
            f"s{i} ({int(lat)} ms)": round(served[name][f"s{i}"] / total, 3)
            for i, lat in enumerate(POOL_LATENCIES_MS)
        }
        figures[name] = row
    return {
        "sim_latencies_ms": list(POOL_LATENCIES_MS),
        "concurrency": CONCURRENCY,
        "num_parallel": NUM_PARALLEL,
        "requests_per_contender": per_batch * rounds,
        "rounds": rounds,
        "contenders": figures,
    }


async def run(quick: bool, proxy_python: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    part3 = await servers(proxy_python, quick) if proxy_python is not None else None
    sims = await asyncio.to_thread(start_sims, (OVERHEAD_LATENCY_MS, *POOL_LATENCIES_MS))
    try:
        peer = configure_litellm(sims[0].url)
        part1 = await overhead(sims[0].url, quick)
        part2 = await pool([sim.url for sim in sims[1:]], quick)
    finally:
        for sim in sims:
            await asyncio.to_thread(sim.terminate)
    seconds = time.perf_counter() - started
    report = {"litellm": peer, "overhead": part1, "pool": part2, "seconds": round(seconds, 1)}
    if part3 is not None:
        report["servers"] = part3
    return report


def ratio_ci(peer: list[float], hub: list[float], floor: float) -> tuple[float, float]:
    """90 % bootstrap interval of median(peer) / median(hub) (paired differences, seconds)."""
    rng = random.Random(0)
    ratios = sorted(
        statistics.median(rng.choices(peer, k=len(peer)))
        / max(statistics.median(rng.choices(hub, k=len(hub))), floor)
        for _ in range(400)
    )
    return round(ratios[20], 2), round(ratios[379], 2)


def headline(report: dict[str, Any]) -> dict[str, Any]:
    over = report["overhead"]["contenders"]
    paired = report["overhead"].pop("_paired")
    peers = {name: row for name, row in over.items() if name.startswith("litellm")}
    best_peer = min(peers, key=lambda name: peers[name]["overhead_paired_ms"])
    hub_over = over["hub p2c"]["overhead_paired_ms"]
    peer_over = peers[best_peer]["overhead_paired_ms"]
    cpu = report["overhead"]["cpu_ms_per_request"]
    hub_cpu = cpu["hub p2c"] - cpu["bare"]
    peer_cpu = min(cpu[name] for name in peers) - cpu["bare"]
    pool_rows = report["pool"]["contenders"]
    hub_rows = {name: row for name, row in pool_rows.items() if name.startswith("hub")}
    peer_rows = {name: row for name, row in pool_rows.items() if name.startswith("litellm")}
    best_hub = min(hub_rows, key=lambda name: hub_rows[name]["p99_ms"])
    best_pool_peer = min(peer_rows, key=lambda name: peer_rows[name]["p99_ms"])
    # a hub overhead at or below the clock's resolution would make the ratio meaningless
    floor_ms = 0.01
    low, high = ratio_ci(paired[best_peer], paired["hub p2c"], floor_ms / 1000)
    return {
        "litellm_vs_hub_overhead_ratio": round(peer_over / max(hub_over, floor_ms), 2),
        "litellm_vs_hub_overhead_ratio_ci90": [low, high],
        "litellm_vs_hub_p99_ratio": round(
            peer_rows[best_pool_peer]["p99_ms"] / hub_rows[best_hub]["p99_ms"], 3
        ),
        "litellm_vs_hub_p50_ratio": round(
            peer_rows[best_pool_peer]["p50_ms"] / hub_rows[best_hub]["p50_ms"], 3
        ),
        "litellm_vs_hub_cpu_ratio": round(peer_cpu / max(hub_cpu, 1e-4), 2),
        "litellm_overhead_ms": peer_over,
        "hub_overhead_ms": hub_over,
        "litellm_cpu_ms_per_request": round(peer_cpu, 4),
        "hub_cpu_ms_per_request": round(hub_cpu, 4),
        "litellm_pool_p99_ms": peer_rows[best_pool_peer]["p99_ms"],
        "hub_pool_p99_ms": hub_rows[best_hub]["p99_ms"],
        "litellm_best_overhead_strategy": best_peer,
        "litellm_best_pool_strategy": best_pool_peer,
        "hub_best_pool_strategy": best_hub,
    }


def show(report: dict[str, Any], heads: dict[str, Any]) -> None:
    peer = report["litellm"]
    print(
        f"LiteLLM {peer['version']} (import {peer['import_s']:.2f} s), Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs"
    )
    over = report["overhead"]
    print(f"\nPart 1: one simulator at {over['sim_latency_ms']:g} ms, sequential requests")
    print(
        f"{'contender':24}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+paired':>9}{'CPU ms/req':>12}"
    )
    for name, row in over["contenders"].items():
        cpu = over["cpu_ms_per_request"].get(name, float("nan"))
        print(
            f"{name:24}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['overhead_p50_ms']:>9.3f}"
            f"{row['overhead_paired_ms']:>9.3f}{cpu:>12.3f}"
        )
    pool_ = report["pool"]
    print(
        f"\nPart 2: pool of 10/30/90 ms, concurrency {pool_['concurrency']}, "
        f"{pool_['requests_per_contender']} requests each in {pool_['rounds']} rounds"
    )
    print(f"{'contender':24}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'errors':>8}   share 10/30/90")
    for name, row in pool_["contenders"].items():
        shares = " / ".join(f"{v:.2f}" for v in row["share"].values())
        print(
            f"{name:24}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['throughput_rps']:>9.1f}"
            f"{row['errors']:>8}   {shares}"
        )
    print()
    for key in (
        "litellm_vs_hub_overhead_ratio",
        "litellm_vs_hub_overhead_ratio_ci90",
        "litellm_vs_hub_p99_ratio",
        "litellm_vs_hub_cpu_ratio",
    ):
        print(f"{key} = {heads[key]}")
    if "litellm_proxy_vs_gateway_overhead_ratio" in heads:
        detail = heads["servers_detail"]
        print(
            f"\nPart 3: /v1/chat/completions, servers in their own processes over one "
            f"{detail['sim_latency_ms']:g} ms simulator ({detail['rounds']} rounds of "
            f"{detail['requests_per_round']} requests each, interleaved; CPU blocks of "
            f"{detail['cpu_requests_per_round']} at concurrency {detail['cpu_concurrency']}); "
            f"the proxy took {detail['proxy_start_s']} s to start"
        )
        print(f"{'server':16}{'+p50 ms':>10}{'+p99 ms':>10}{'CPU ms/req':>12}")
        for name in ("gateway", "litellm proxy"):
            added, used = detail["added_ms"][name], detail["cpu_ms_per_request"][name]
            print(
                f"{name:16}{added['p50']['median']:>10.3f}{added['p99']['median']:>10.3f}"
                f"{used['median']:>12.3f}"
            )
        print(f"direct p50: {detail['direct_p50_ms']['median']} ms; errors: {detail['errors']}")
        for key in (
            "litellm_proxy_vs_gateway_overhead_ratio",
            "litellm_proxy_vs_gateway_cpu_ratio",
            "litellm_proxy_vs_gateway_p99_overhead_ratio",
        ):
            print(f"{key} = {heads[key]} (90 % {heads.get(key + '_ci90', '')})")
        print(
            f"proxy: outbound attempts blocked {heads['litellm_proxy_blocked_outbound']}, "
            f"non-loopback peers at the end {len(detail['foreign_peers'])}"
        )
    print(f"outbound connections blocked: {len(BLOCKED)}")
    for attempt in BLOCKED[:5]:
        print(f"  {attempt['event']} {attempt['host']} from {attempt['stack'][-3:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (about a minute)")
    parser.add_argument("--json", dest="json_path", help="write the figures to this JSON file")
    parser.add_argument(
        "--proxy-venv",
        type=Path,
        default=DEFAULT_PROXY_VENV,
        help="the venv of LiteLLM's proxy server (created with requirements-proxy.txt if "
        "missing; default .venv/litellm-proxy)",
    )
    parser.add_argument(
        "--no-proxy", action="store_true", help="leave out part 3 (LiteLLM's proxy server)"
    )
    args = parser.parse_args()
    if importlib.util.find_spec("litellm") is None:
        print(
            "litellm is not installed: pip install -r benchmarks/requirements.txt", file=sys.stderr
        )
        return 2
    proxy_python = None if args.no_proxy else ensure_proxy_venv(args.proxy_venv)
    report = asyncio.run(run(args.quick, proxy_python))
    heads = headline(report)
    if "servers" in report:
        heads |= server_figures(report.pop("servers"))
    show(report, heads)
    if args.json_path:
        command = "python benchmarks/litellm_peer.py" + (" --quick" if args.quick else "")
        out: dict[str, Any] = {
            key: {"value": value, "command": command} for key, value in heads.items()
        }
        out["litellm_blocked_outbound"] = {"value": len(BLOCKED), "command": command}
        out["litellm_peer_details"] = {
            "value": {
                **report,
                "blocked_outbound": BLOCKED,
                "quick": args.quick,
                "python": platform.python_version(),
            },
            "command": command,
        }
        write_json(args.json_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
