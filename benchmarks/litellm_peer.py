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

Keys: ``litellm_vs_hub_overhead_ratio`` (LiteLLM's added latency over ours, both against the
bare client; LiteLLM's better strategy against our ``p2c``, the default) and
``litellm_vs_hub_p99_ratio`` (LiteLLM's better p99 on the pool over our best strategy's p99).
Both are > 1 when LiteLLM costs more.

No traffic leaves the machine: LiteLLM reads its bundled model-cost map
(``LITELLM_LOCAL_MODEL_COST_MAP=True``) instead of fetching it, asks the first simulator, not a
default ``localhost:11434``, for model info (``OLLAMA_API_BASE``), reads no ``.env`` file
(``LITELLM_MODE=PRODUCTION``) and ignores proxy variables; and an audit hook refuses any
connection or name lookup outside the loopback range and counts it (``blocked_outbound``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import ipaddress
import json
import math
import os
import platform
import random
import statistics
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

# -- network guard: set before anything that could open a socket is imported -----------------
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # bundled cost map, no fetch at import
os.environ["LITELLM_MODE"] = "PRODUCTION"  # no load_dotenv() of a stray .env at import
os.environ.setdefault("GLEITZEIT_LOAD_PLUGINS", "ollama")  # the hub needs this plugin alone
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_proxy, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost,::1"

BLOCKED: list[dict[str, Any]] = []
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_local(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]")
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    host: Any = None
    if event == "socket.getaddrinfo" or event in ("socket.gethostbyname", "socket.gethostbyaddr"):
        host = args[0]
    elif event in ("socket.connect", "socket.sendto"):
        address = args[1]
        if not isinstance(address, tuple):
            return  # a Unix socket
        host = address[0]
    else:
        return
    if _is_local(host):
        return
    where = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack(limit=12)[:-1]]
    BLOCKED.append(
        {
            "event": event,
            "host": str(host),
            "thread": threading.current_thread().name,
            "stack": where[-6:],
        }
    )
    raise PermissionError(f"benchmark guard: no traffic outside loopback ({event} {host})")


sys.addaudithook(_audit)

import aiohttp  # noqa: E402
from gleitzeit_ollama.sim import SimConfig, SimProcess  # noqa: E402

from gleitzeit_core.runtime import Runtime  # noqa: E402

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
    rounds = 300 if quick else 1000
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
    per_contender = 900 if quick else 3000
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


async def run(quick: bool) -> dict[str, Any]:
    sims = await asyncio.to_thread(start_sims, (OVERHEAD_LATENCY_MS, *POOL_LATENCIES_MS))
    try:
        peer = configure_litellm(sims[0].url)
        started = time.perf_counter()
        part1 = await overhead(sims[0].url, quick)
        part2 = await pool([sim.url for sim in sims[1:]], quick)
        seconds = time.perf_counter() - started
    finally:
        for sim in sims:
            await asyncio.to_thread(sim.terminate)
    return {"litellm": peer, "overhead": part1, "pool": part2, "seconds": round(seconds, 1)}


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
    print(f"outbound connections blocked: {len(BLOCKED)}")
    for attempt in BLOCKED[:5]:
        print(f"  {attempt['event']} {attempt['host']} from {attempt['stack'][-3:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (about a minute)")
    parser.add_argument("--json", dest="json_path", help="write the figures to this JSON file")
    args = parser.parse_args()
    if importlib.util.find_spec("litellm") is None:
        print(
            "litellm is not installed: pip install -r benchmarks/requirements.txt", file=sys.stderr
        )
        return 2
    report = asyncio.run(run(args.quick))
    heads = headline(report)
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
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(out, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
