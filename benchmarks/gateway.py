#!/usr/bin/env python
"""What the gateway adds: the official ``ollama`` client through ``gleitzeit serve`` vs directly
against the same simulator, in one run, interleaved.

Three processes: one simulator (``python -m gleitzeit_ollama.sim``), the gateway
(``python -m gleitzeit_core serve --config ...`` over that simulator) and this script, which
drives the official ``ollama.AsyncClient`` - so client, gateway and simulator do not share an
event loop. Every process started here is stopped at the end, also on errors and Ctrl-C.

* sequential: non-streamed ``generate``, alternating direct/gateway request by request
  (p50, p99 of each; the headline is the added p50 in ms, goal 0.4 ms or less);
* concurrency 16: batches of non-streamed ``generate`` from 16 workers, alternating
  direct/gateway batch by batch (throughput of each; the headline is gateway / direct);
* also sequential streamed ``generate`` (time to the last chunk), for reference;
* the security checks (``checks``): what the guard middleware (Host, Origin, body type, key
  lookup, limits, ``acting_as`` and the request's deadline) costs per request, once without
  keys (the anonymous local caller) and once with keys (bearer token, Origin header, a
  rate-limited key), against the bare handler - in-process, so the microseconds are the
  checks' and not the network's (headline ``gateway_checks_added_us``, target under 20);
  and for reference the same three gateways in this process over loopback HTTP, interleaved
  request by request (``checks.http``: p50 of each and what the checks add);
* the OpenAI-compatible route measured as ``/api/chat`` is: sequential non-streamed chat,
  ``/api/chat`` with the ``ollama`` client and ``/v1/chat/completions`` with the official
  ``openai`` client, each direct vs through the gateway, all four interleaved. The gateway
  translates ``/v1`` to ``/api`` (``gleitzeit_ollama.routes_openai``), so the simulator answers
  ``/api/chat`` behind it while the direct ``/v1`` call has the simulator translate: the
  difference of the two added p50s is what translating in the gateway costs over passing
  ``/api/chat`` through; ``v1_translate_us_per_chunk`` is that cost per chunk in-process.

    python benchmarks/gateway.py [--quick] [--json PATH]

The sequential and concurrency-16 parts run in 7 interleaved rounds (15 full) against two
gateways, one with ``[gateway] speedups`` (uvloop, orjson when installed) and one without;
each figure is the median over the rounds with a 90 % interval (``_ci90``), and the
gateway process's CPU time per request comes from ``/proc``. Then ``gateway_stream.py``'s
1,000-token streams (``--no-streams`` leaves them out). ``--profile DIR`` instead samples the
gateway with py-spy under the concurrency-16 load and prints where its time goes.

Two more contenders in the same rounds give the cost of a hop through aiohttp's server and
client: ``bare_relay.py``, a minimal pass-through relay in plain aiohttp (one keep-alive
``ClientSession``, body read and sent on, the answer streamed back), on uvloop and on the
standard loop like the two gateways:
``bare_relay_added_p50_ms``, ``bare_relay_throughput_ratio`` (relay / direct),
``gateway_vs_bare_relay_added_ratio`` (what the gateway adds over what the relay adds, per
round), ``gateway_vs_bare_relay_throughput_ratio`` and ``gateway_vs_bare_relay_cpu_ratio``
(the processes' CPU time per request at concurrency 16; each also ``_no_speedups``: the
gateway without speedups over the relay on the standard loop).

JSON keys: ``gateway_added_p50_ms``, ``gateway_throughput_ratio``,
``gateway_cpu_us_per_request`` (and each ``_no_speedups``), ``gateway_checks_added_us``,
``gateway_chat_added_p50_ms``, ``gateway_v1_added_p50_ms``, ``v1_translate_us_per_chunk``,
``gateway_stream_chunk_ratio``, ``gateway_ttft_added_ms``, ``gateway_stream_cpu_us_per_chunk``,
and every figure under ``sequential``, ``streamed``, ``concurrent``, ``rounds``, ``checks``,
``chat``, ``v1`` and ``streams``.
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
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import _stats
import ollama
import openai
from bare_relay import RelayProcess
from gleitzeit_ollama.openai_wire import ChatTranslator
from gleitzeit_ollama.sim import SimConfig, SimProcess

from gleitzeit_core.testing.serve import GatewayProcess

SPEEDUPS = [name for name in ("uvloop", "orjson") if importlib.util.find_spec(name)]
MODEL = "llama3.2"
TOKENS = 8
SIM_LATENCY_MS = 1.0  # a fast model: the gateway's share shows, not the model's
CONCURRENCY = 16
OPTIONS = {"num_predict": TOKENS}

Call = Callable[[], Awaitable[Any]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def relay_variants() -> dict[str, bool]:
    """The bare relays to run (name: on uvloop), one per event loop the gateways use."""
    if "uvloop" in SPEEDUPS:
        return {"bare relay": True, "bare relay without uvloop": False}
    return {"bare relay": False}


def start_sim() -> SimProcess:
    config = SimConfig(
        models=[MODEL],
        latency_ms=SIM_LATENCY_MS,
        tokens_per_s=0.0,  # unpaced: the answer follows the latency at once
        load_ms=0.0,
        max_tokens=1000,  # requests ask for TOKENS; the streaming benchmark for 1,000
        num_parallel=64,
        max_queue=4096,
        keep_alive=-1.0,
        name="bench",
    )
    return SimProcess(config, host="127.0.0.1", port=0).start()


def bench_gateway(sim_url: str, workdir: Path, speedups: bool = True) -> GatewayProcess:
    """``gleitzeit serve`` in a child process, over one simulator; ``speedups``: ``[gateway]
    speedups`` (uvloop and orjson, when installed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = (
        f"[gateway]\nspeedups = {'true' if speedups else 'false'}\n"
        "[hubs.llm]\n"
        'kind = "ollama"\n'
        'discovery = ["static"]\n'
        "request_timeout = 120.0\n"
        "queue_timeout = 120.0\n"
        "[hubs.llm.health]\n"
        "interval = 5.0\n"
        "[[hubs.llm.resources]]\n"
        'id = "bench"\n'
        f'url = "{sim_url}"\n'
        "num_parallel = 64\n"
    )
    return GatewayProcess(config, workdir, plugins="ollama")


async def batch(call: Call, total: int, concurrency: int) -> float:
    """Run ``total`` calls with ``concurrency`` workers; the elapsed seconds."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def sequential(calls: dict[str, Call], rounds: int) -> dict[str, list[float]]:
    """Each call ``rounds`` times, alternating which goes first."""
    names = list(calls)
    seen: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            await calls[name]()
            seen[name].append(time.perf_counter() - started)
    return seen


def latency_summary(values: list[float]) -> dict[str, float]:
    return {
        "requests": len(values),
        "p50_ms": ms(percentile(values, 0.50)),
        "p99_ms": ms(percentile(values, 0.99)),
        "mean_ms": ms(sum(values) / len(values)),
    }


def translate_cost_us(rounds: int = 20_000) -> float:
    """Microseconds to frame one streamed ``/api/chat`` chunk as an OpenAI event, over what
    the ``/api`` relay spends on it (it passes the instance's line on as it came)."""
    chunk = {
        "model": MODEL,
        "created_at": "2025-01-01T00:00:00.000000Z",
        "message": {"role": "assistant", "content": " token"},
        "done": False,
    }
    line = json.dumps(chunk, separators=(",", ":")).encode()
    translator = ChatTranslator(MODEL)
    started = time.perf_counter()
    for _ in range(rounds):
        translator.chunk(chunk)
    translated = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(rounds):
        line + b"\n"  # what the /api relay does per chunk
    passed = time.perf_counter() - started
    return round((translated - passed) / rounds * 1e6, 2)


async def measure_chat(sim_url: str, gateway_url: str, quick: bool) -> dict[str, Any]:
    """Non-streamed chat: ``/api/chat`` and ``/v1/chat/completions``, direct and through."""
    messages = [{"role": "user", "content": "benchmark me"}]
    api = {
        name: ollama.AsyncClient(host=url, timeout=120)
        for name, url in (("direct", sim_url), ("gateway", gateway_url))
    }
    v1 = {
        name: openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for name, url in (("direct", sim_url), ("gateway", gateway_url))
    }
    try:

        def chat(client: ollama.AsyncClient) -> Call:
            async def call() -> Any:
                answer = await client.chat(MODEL, messages=messages, options=OPTIONS)
                assert answer.done
                return answer

            return call

        def completion(client: openai.AsyncOpenAI) -> Call:
            async def call() -> Any:
                answer = await client.chat.completions.create(
                    model=MODEL,
                    messages=messages,
                    max_tokens=TOKENS,  # type: ignore[arg-type]
                )
                assert answer.choices[0].finish_reason
                return answer

            return call

        calls = {f"api {n}": chat(c) for n, c in api.items()}
        calls |= {f"v1 {n}": completion(c) for n, c in v1.items()}
        for call in calls.values():
            await batch(call, 100, 4)
        seen = await sequential(calls, 300 if quick else 2000)
    finally:
        for client in api.values():
            await client.close()
        for other in v1.values():
            await other.close()
    s = {name: latency_summary(values) for name, values in seen.items()}
    chat_added = round(s["api gateway"]["p50_ms"] - s["api direct"]["p50_ms"], 3)
    v1_added = round(s["v1 gateway"]["p50_ms"] - s["v1 direct"]["p50_ms"], 3)
    return {
        "gateway_chat_added_p50_ms": chat_added,
        "gateway_v1_added_p50_ms": v1_added,
        "v1_translate_us_per_chunk": translate_cost_us(),
        "chat": {"direct": s["api direct"], "gateway": s["api gateway"]},
        "v1": {"direct": s["v1 direct"], "gateway": s["v1 gateway"]},
    }


def cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` has used so far, all its threads, in nanoseconds' resolution
    (``/proc/<pid>/task/*/schedstat``; ``/proc/<pid>/stat`` counts 10 ms ticks)."""
    total = 0
    for task in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        with contextlib.suppress(OSError), open(task, encoding="ascii") as handle:
            total += int(handle.read().split()[0])
    return total / 1e9


def spread(values: list[float], digits: int = 3) -> dict[str, Any]:
    """Median of per-round figures with its 90 % bootstrap interval (``_stats.spread``)."""
    summary = _stats.spread(values)
    return {
        "median": round(summary.median, digits),
        "interval_90": [round(summary.low, digits), round(summary.high, digits)],
        "rounds": summary.rounds,
    }


async def measure(urls: dict[str, str], pids: dict[str, int], quick: bool) -> dict[str, Any]:
    """Interleaved rounds: in each, a sequential block (alternating the contenders request by
    request) and a concurrency-16 block per contender, in a rotating order; the CPU time each
    gateway process (``pids``) spends per request in its concurrency-16 blocks."""
    clients = {name: ollama.AsyncClient(host=url, timeout=120) for name, url in urls.items()}
    rounds = 7 if quick else 15
    per_round = 60 if quick else 200
    stream_per_round = 20 if quick else 60
    size = 320 if quick else 1200
    try:

        def generate(client: ollama.AsyncClient) -> Call:
            async def call() -> Any:
                answer = await client.generate(MODEL, "benchmark me", options=OPTIONS)
                assert answer.done
                return answer

            return call

        def streamed(client: ollama.AsyncClient) -> Call:
            async def call() -> Any:
                parts = [
                    p
                    async for p in await client.generate(
                        MODEL, "benchmark me", options=OPTIONS, stream=True
                    )
                ]
                assert parts[-1].done
                return parts

            return call

        plain = {name: generate(c) for name, c in clients.items()}
        streams = {name: streamed(c) for name, c in clients.items()}
        for call in [*plain.values(), *streams.values()]:  # connections, caches, model loaded
            await batch(call, 100, 4)

        seq: dict[str, list[float]] = {name: [] for name in plain}
        stream_seq: dict[str, list[float]] = {name: [] for name in plain}
        p50s: dict[str, list[float]] = {name: [] for name in plain}
        rps: dict[str, list[float]] = {name: [] for name in plain}
        cpu: dict[str, list[float]] = {name: [] for name in pids}
        names = list(plain)
        for i in range(rounds):
            seen = await sequential(plain, per_round)
            for name, values in seen.items():
                seq[name] += values
                p50s[name].append(percentile(values, 0.5))
            for name, values in (await sequential(streams, stream_per_round)).items():
                stream_seq[name] += values
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                used = cpu_seconds(pids[name]) if name in pids else 0.0
                rps[name].append(size / await batch(plain[name], size, CONCURRENCY))
                if name in pids:
                    cpu[name].append((cpu_seconds(pids[name]) - used) / size * 1e6)
    finally:
        for client in clients.values():
            await client.close()

    s = {name: latency_summary(values) for name, values in seq.items()}
    st = {name: latency_summary(values) for name, values in stream_seq.items()}
    gateways = [name for name in names if name != "direct"]
    added = {
        name: spread([(g - d) * 1000 for g, d in zip(p50s[name], p50s["direct"], strict=True)])
        for name in gateways
    }
    ratio = {
        name: spread([g / d for g, d in zip(rps[name], rps["direct"], strict=True)], 4)
        for name in gateways
    }
    figures = {
        "gateway_added_p50_ms": added["gateway"]["median"],
        "gateway_added_p50_ms_ci90": added["gateway"]["interval_90"],
        "gateway_added_p99_ms": round(s["gateway"]["p99_ms"] - s["direct"]["p99_ms"], 3),
        "gateway_throughput_ratio": ratio["gateway"]["median"],
        "gateway_throughput_ratio_ci90": ratio["gateway"]["interval_90"],
        "sequential": s,
        "streamed": st
        | {"added_p50_ms": round(st["gateway"]["p50_ms"] - st["direct"]["p50_ms"], 3)},
        "concurrent": {
            "concurrency": CONCURRENCY,
            "requests_per_round": size,
            "throughput_rps": {name: round(statistics.median(v), 1) for name, v in rps.items()},
        },
        "rounds": {"added_p50_ms": added, "throughput_ratio": ratio},
        "gateway_cpu_us_per_request": spread(cpu["gateway"], 1)["median"],
        "cpu_us_per_request": {name: spread(values, 1) for name, values in cpu.items()},
        "speedups": SPEEDUPS,
    }
    return figures | against_bare_relay(p50s, rps, cpu)


def against_bare_relay(
    p50s: dict[str, list[float]], rps: dict[str, list[float]], cpu: dict[str, list[float]]
) -> dict[str, Any]:
    """The gateway over the bare aiohttp relay (``bare_relay.py``) on the same event loop,
    round by round: what each adds to the direct p50, their ratio, the throughput ratios
    at concurrency 16 and the ratio of their processes' CPU time per request."""
    out: dict[str, Any] = {}
    pairs = {"": ("gateway", "bare relay")} | {
        "_no_speedups": ("gateway without speedups", "bare relay without uvloop")
    }
    for suffix, (ours, relay) in pairs.items():
        if ours not in p50s or relay not in p50s:
            continue
        direct = p50s["direct"]
        ours_added = [(g - d) * 1000 for g, d in zip(p50s[ours], direct, strict=True)]
        relay_added = [(r - d) * 1000 for r, d in zip(p50s[relay], direct, strict=True)]
        summaries = {
            ("bare_relay_added_p50_ms", 3): _stats.spread(relay_added),
            ("gateway_vs_bare_relay_added_ratio", 3): _stats.ratio(ours_added, relay_added),
            ("bare_relay_throughput_ratio", 4): _stats.ratio(rps[relay], rps["direct"]),
            ("gateway_vs_bare_relay_throughput_ratio", 4): _stats.ratio(rps[ours], rps[relay]),
            ("gateway_vs_bare_relay_cpu_ratio", 3): _stats.ratio(cpu[ours], cpu[relay]),
        }
        for (key, digits), summary in summaries.items():
            out[key + suffix] = round(summary.median, digits)
            out[f"{key}{suffix}_ci90"] = [round(summary.low, digits), round(summary.high, digits)]
    return out


def show(report: dict[str, Any]) -> None:
    print(
        f"Official ollama client: direct vs through the gateway, one simulator "
        f"({SIM_LATENCY_MS:g} ms, {TOKENS} tokens), non-streamed generate"
    )
    names = list(report["sequential"])
    print(f"{'':36}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for name in names:
        row = report["sequential"][name]
        rps = report["concurrent"]["throughput_rps"][name]
        print(f"{'sequential ' + name:36}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}{'':>10}")
        print(f"{f'concurrency {CONCURRENCY} ' + name:36}{'':>10}{'':>10}{rps:>10.1f}")
    for name in names:
        row = report["streamed"][name]
        print(f"{'streamed ' + name:36}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}")
    for name, added in report["rounds"]["added_p50_ms"].items():
        ratio = report["rounds"]["throughput_ratio"][name]
        print(
            f"{name}: added p50 {added['median']:.3f} ms (90 % {added['interval_90']}), "
            f"throughput ratio at concurrency {CONCURRENCY} {ratio['median']:.3f} "
            f"(90 % {ratio['interval_90']}), {added['rounds']} rounds"
        )
    for name, used in report["cpu_us_per_request"].items():
        print(
            f"{name}: CPU per request at concurrency {CONCURRENCY}: {used['median']:.0f} us "
            f"(90 % {used['interval_90']})"
        )
    for suffix, label in (("", "gateway"), ("_no_speedups", "gateway without speedups")):
        key = f"gateway_vs_bare_relay_added_ratio{suffix}"
        if key in report:
            print(
                f"{label} over the bare aiohttp relay on the same loop: added p50 "
                f"{report[key]:.2f}x (90 % {report[key + '_ci90']}), throughput "
                f"{report[f'gateway_vs_bare_relay_throughput_ratio{suffix}']:.3f} (90 % "
                f"{report[f'gateway_vs_bare_relay_throughput_ratio{suffix}_ci90']}), CPU per "
                f"request {report[f'gateway_vs_bare_relay_cpu_ratio{suffix}']:.2f}x (90 % "
                f"{report[f'gateway_vs_bare_relay_cpu_ratio{suffix}_ci90']}); the relay "
                f"adds {report[f'bare_relay_added_p50_ms{suffix}']:.3f} ms, throughput ratio "
                f"{report[f'bare_relay_throughput_ratio{suffix}']:.3f}"
            )
    print(
        f"speedups installed: {', '.join(report['speedups']) or 'none'}; gateway added p99: "
        f"{report['gateway_added_p99_ms']:.3f} ms; streamed added p50: "
        f"{report['streamed']['added_p50_ms']:.3f} ms"
    )
    print("\nNon-streamed chat, sequential: /api/chat (ollama client), /v1 (openai client)")
    for route in ("chat", "v1"):
        for name in ("direct", "gateway"):
            row = report[route][name]
            label = f"{'/api/chat' if route == 'chat' else '/v1/chat/completions'} {name}"
            print(f"{label:28}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}")
    print(
        f"gateway added p50: /api/chat {report['gateway_chat_added_p50_ms']:.3f} ms, "
        f"/v1/chat/completions {report['gateway_v1_added_p50_ms']:.3f} ms; "
        f"translating one chunk: {report['v1_translate_us_per_chunk']:.2f} us"
    )
    inner, http = report["checks"]["in_process"], report["checks"]["http"]
    print("\nSecurity checks per request (p50, us)      bare    no keys   keys")
    print(
        f"{'guard middleware, in-process':40}{inner['bare_us']:>8.2f}{inner['open_us']:>10.2f}"
        f"{inner['keys_us']:>8.2f}"
    )
    print(
        f"{'GET /api/version over loopback HTTP':40}{http['bare_p50_us']:>8.1f}"
        f"{http['open_p50_us']:>10.1f}{http['keys_p50_us']:>8.1f}"
    )
    print(
        f"checks added: {report['gateway_checks_added_us']:.2f} us (target < 20 us; "
        f"no keys {inner['open_added_us']:.2f}, keys {inner['keys_added_us']:.2f}); over HTTP "
        f"(guarded connections included) CPU no keys {http['open_added_cpu_us']:+.1f}, keys "
        f"{http['keys_added_cpu_us']:+.1f} us; wall p50 no keys "
        f"{http['open_added_p50_us']:+.1f}, keys {http['keys_added_p50_us']:+.1f} us"
    )


# -- the security checks ------------------------------------------------------------------------
CHECK_KEYS = {
    "ops": {"token": "bench-admin-token", "admin": True},
    "team": {"token": "bench-team-token", "methods": ["llm/*"], "requests_per_minute": 10**9},
}
KEYED_HEADERS = {
    "Host": "127.0.0.1:11500",
    "Origin": "http://localhost:3000",
    "Authorization": "Bearer bench-team-token",
}


def _checks_runtime(keys: bool) -> Any:
    from gleitzeit_ollama import plugin as ollama_plugin

    from gleitzeit_core._plugins import PluginManager
    from gleitzeit_core._runtime import Runtime

    manager = PluginManager(autoload=False)
    manager.load()
    manager.add(ollama_plugin, "ollama")
    config: dict[str, Any] = {"hubs": {"llm": {"kind": "ollama", "discovery": []}}}
    if keys:
        config["gateway"] = {"keys": CHECK_KEYS}
    return Runtime.from_config(config, plugins=manager)


async def _in_process(rounds: int) -> dict[str, float]:
    """Microseconds of CPU per request of the guard middleware around a handler that answers
    at once, minus the handler alone, for an open and a keyed gateway (interleaved)."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from gleitzeit_core._gateway import build_app

    answer = web.Response(text="ok")

    async def handler(request: web.Request) -> web.StreamResponse:
        return answer

    apps = {"open": build_app(_checks_runtime(False)), "keys": build_app(_checks_runtime(True))}
    guards = {name: app.middlewares[-1] for name, app in apps.items()}
    local = {"Host": "127.0.0.1"}
    requests = {
        "bare": make_mocked_request("GET", "/api/version", headers=local, app=apps["open"]),
        "open": make_mocked_request("GET", "/api/version", headers=local, app=apps["open"]),
        "keys": make_mocked_request("POST", "/api/chat", headers=KEYED_HEADERS, app=apps["keys"]),
    }
    samples: dict[str, list[float]] = {name: [] for name in requests}
    batch = 200
    order = list(requests)
    for round_ in range(rounds // batch):
        # alternate the order, and count this thread's CPU time: on a shared machine the
        # wall clock also counts other processes' time slices
        for name in order if round_ % 2 else reversed(order):
            request, guard = requests[name], guards.get(name)
            began = time.thread_time()
            # a loop cycle per request, as in a server: it also runs the deadline sweeps
            if guard is None:
                for _ in range(batch):
                    await handler(request)
                    await asyncio.sleep(0)
            else:
                for _ in range(batch):
                    await guard(request, handler)
                    await asyncio.sleep(0)
            samples[name].append((time.thread_time() - began) / batch * 1e6)
    p50 = {name: percentile(values, 0.5) for name, values in samples.items()}
    return {
        "bare_us": round(p50["bare"], 2),
        "open_us": round(p50["open"], 2),
        "keys_us": round(p50["keys"], 2),
        "open_added_us": round(p50["open"] - p50["bare"], 2),
        "keys_added_us": round(p50["keys"] - p50["bare"], 2),
    }


async def _http_checks(rounds: int) -> dict[str, float]:
    """p50 of ``GET /api/version`` over loopback keep-alive connections to a gateway without
    the guard, one without keys and one with keys (this process serves all three)."""
    from aiohttp import web

    from gleitzeit_core._gateway import (
        _ERROR_SHAPES_KEY,
        _PUBLIC_KEY,
        ROUTE_TIMEOUTS_KEY,
        RouteRegistrar,
        _error_middleware,
        start_gateway,
    )

    # "bare": the gateway as it was before the checks: the error middleware, the token
    # middleware (with no token it only passed the request on), handler cancellation and a
    # plain TCP site
    @web.middleware
    async def no_token(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        return response

    bare_runtime = _checks_runtime(False)
    bare = web.Application(middlewares=[_error_middleware, no_token])
    bare[ROUTE_TIMEOUTS_KEY] = {}
    # what RouteRegistrar writes to (without them the Ollama plugin's routes, /api/version
    # included, failed to register and "bare" measured a 404)
    bare[_PUBLIC_KEY] = set()
    bare[_ERROR_SHAPES_KEY] = []
    bare_runtime.plugins.call_each(
        "gleitzeit_register_routes", router=RouteRegistrar(bare, bare_runtime)
    )
    bare_runner = web.AppRunner(bare, access_log=None, handler_cancellation=True)
    await bare_runner.setup()
    await web.TCPSite(bare_runner, "127.0.0.1", 0).start()
    runners = {"bare": bare_runner}
    runners["open"] = await start_gateway(_checks_runtime(False), "127.0.0.1", 0)
    runners["keys"] = await start_gateway(_checks_runtime(True), "127.0.0.1", 0)
    headers = {
        "bare": b"",
        "open": b"",
        "keys": b"Origin: http://localhost:3000\r\nAuthorization: Bearer bench-team-token\r\n",
    }
    streams = {}
    try:
        for name, runner in runners.items():
            port = runner.addresses[0][1]
            streams[name] = await asyncio.open_connection("127.0.0.1", port)
        samples: dict[str, list[float]] = {name: [] for name in runners}
        cpu: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(rounds):
            for name, (reader, writer) in streams.items():
                request = b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers[name]
                began, began_cpu = time.perf_counter(), time.thread_time()
                writer.write(request + b"\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                samples[name].append((time.perf_counter() - began) * 1e6)
                cpu[name].append((time.thread_time() - began_cpu) * 1e6)
                if b" 200 " not in head.split(b"\r\n", 1)[0]:
                    raise RuntimeError(f"{name}: {head!r}")
    finally:
        for _, writer in streams.values():
            writer.close()
        for runner in runners.values():
            await runner.cleanup()
    p50 = {name: percentile(values, 0.5) for name, values in samples.items()}
    # client and server share this thread: the difference in its CPU time is the server's
    cpu_p50 = {name: percentile(values, 0.5) for name, values in cpu.items()}
    return {
        "open_added_cpu_us": round(cpu_p50["open"] - cpu_p50["bare"], 1),
        "keys_added_cpu_us": round(cpu_p50["keys"] - cpu_p50["bare"], 1),
        "bare_p50_us": round(p50["bare"], 1),
        "open_p50_us": round(p50["open"], 1),
        "keys_p50_us": round(p50["keys"], 1),
        "open_added_p50_us": round(p50["open"] - p50["bare"], 1),
        "keys_added_p50_us": round(p50["keys"] - p50["bare"], 1),
    }


async def measure_checks(quick: bool) -> dict[str, Any]:
    in_process = await _in_process(20_000 if quick else 200_000)
    http = await _http_checks(2000 if quick else 10000)
    return {
        "gateway_checks_added_us": max(in_process["open_added_us"], in_process["keys_added_us"]),
        "checks": {"in_process": in_process, "http": http},
    }


async def main(quick: bool, streams: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    sim: SimProcess | None = None
    gateways: dict[str, GatewayProcess] = {}
    relays: dict[str, RelayProcess] = {}
    with tempfile.TemporaryDirectory(prefix="gleitzeit-bench-") as workdir:
        try:
            sim = await asyncio.to_thread(start_sim)
            # the gateway as configured by default and, when uvloop/orjson are installed, once
            # more with [gateway] speedups = false: both measured in the same rounds
            variants = {"gateway": True} | ({"gateway without speedups": False} if SPEEDUPS else {})
            for name, fast in variants.items():
                process = bench_gateway(sim.url, Path(workdir) / str(len(gateways)), fast)
                gateways[name] = await asyncio.to_thread(process.start)
            # a hop through aiohttp's server and client: the bare relay on each of the same loops
            for name, fast in relay_variants().items():
                relay = RelayProcess(sim.url, uvloop=fast)
                relays[name] = await asyncio.to_thread(relay.start)
            urls = {"direct": sim.url} | {name: g.url for name, g in gateways.items()}
            urls |= {name: r.url for name, r in relays.items()}
            pids = {name: g.proc.pid for name, g in gateways.items() if g.proc is not None}
            pids |= {name: r.proc.pid for name, r in relays.items() if r.proc is not None}
            figures = await measure(urls, pids, quick)
            if "gateway without speedups" in gateways:
                rounds = figures["rounds"]
                plain = "gateway without speedups"
                figures["gateway_added_p50_ms_no_speedups"] = rounds["added_p50_ms"][plain][
                    "median"
                ]
                figures["gateway_throughput_ratio_no_speedups"] = rounds["throughput_ratio"][plain][
                    "median"
                ]
                figures["gateway_cpu_us_per_request_no_speedups"] = figures["cpu_us_per_request"][
                    plain
                ]["median"]
            gateway_url = gateways["gateway"].url
            figures |= await measure_chat(sim.url, gateway_url, quick)
            figures |= await measure_checks(quick)
            if streams:
                from gateway_stream import measure_streams

                pid = gateways["gateway"].proc
                figures |= await measure_streams(
                    sim.url, gateway_url, quick, pid.pid if pid is not None else None
                )
        finally:
            for gateway in gateways.values():
                await asyncio.to_thread(gateway.stop)
            for relay in relays.values():
                await asyncio.to_thread(relay.stop)
            if sim is not None:
                await asyncio.to_thread(sim.terminate)
    return (
        figures
        | run_metadata(quick, started)
        | {
            "ollama_client": metadata.version("ollama"),
            "openai_client": metadata.version("openai"),
        }
    )


def run_metadata(quick: bool, started: float) -> dict[str, Any]:
    """What run.py keeps apart from the figures: quick or not, seconds, Python, CPUs."""
    return {
        "quick": quick,
        "seconds": round(time.perf_counter() - started, 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


# -- profiling ----------------------------------------------------------------------------------
_IDLE = "select (selectors.py:468)"


def summarize_profile(collapsed: Path, top: int = 40) -> str:
    """The frames the gateway spent its samples in: self share (the frame was on top) and
    total share (anywhere on the stack), from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in collapsed.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        if stack.endswith(_IDLE):
            continue  # waiting in the event loop's select: not time the gateway spends
        samples += count
        frames = [
            frame.split(" (")[0] + " " + frame.rsplit("/", 1)[-1].split(":")[0].rstrip(")")
            for frame in stack.split(";")
        ]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    rows = [f"{samples} busy samples (event loop idle left out); self % | total % | frame"]
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        rows.append(f"{count / samples:6.1%} {total[frame] / samples:7.1%}  {frame}")
    rows.append("-- by total share --")
    for frame, count in sorted(total.items(), key=lambda item: -item[1])[:top]:
        rows.append(f"{own.get(frame, 0) / samples:6.1%} {count / samples:7.1%}  {frame}")
    return "\n".join(rows)


async def profile(out: Path, seconds: float, streamed: bool, speedups: bool) -> None:
    """Load the gateway with the concurrency-16 workload while py-spy samples it."""
    import subprocess

    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    sim: SimProcess | None = None
    gateway: GatewayProcess | None = None
    with tempfile.TemporaryDirectory(prefix="gleitzeit-bench-") as workdir:
        try:
            sim = await asyncio.to_thread(start_sim)
            process = bench_gateway(sim.url, Path(workdir), speedups)
            gateway = await asyncio.to_thread(process.start)
            assert gateway.proc is not None
            client = ollama.AsyncClient(host=gateway.url, timeout=120)

            async def call() -> Any:
                if streamed:
                    return [
                        p
                        async for p in await client.generate(
                            MODEL, "benchmark me", options=OPTIONS, stream=True
                        )
                    ]
                return await client.generate(MODEL, "benchmark me", options=OPTIONS)

            await batch(call, 200, 4)
            collapsed = out / "gateway.collapsed"
            spy = await asyncio.to_thread(
                subprocess.Popen,
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(gateway.proc.pid),
                    "--rate",
                    "250",
                    "--duration",
                    str(int(seconds)),
                    "--format",
                    "raw",
                    "-o",
                    str(collapsed),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            began = time.perf_counter()
            done = 0
            while spy.poll() is None and time.perf_counter() - began < seconds + 30:
                await batch(call, 160, CONCURRENCY)
                done += 160
            await asyncio.to_thread(spy.wait)
            await client.close()
            print(f"{done} requests; profile in {collapsed}")
            print(summarize_profile(collapsed))
        finally:
            if gateway is not None:
                await asyncio.to_thread(gateway.stop)
            if sim is not None:
                await asyncio.to_thread(sim.terminate)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer requests and rounds (about two minutes on 2 cores, streams included)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="instead: sample the gateway with py-spy under the concurrency-16 load "
        "(pip install py-spy) and print where its time goes",
    )
    parser.add_argument(
        "--no-streams",
        action="store_true",
        help="leave out the 1,000-token streams (benchmarks/gateway_stream.py)",
    )
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--profile-streamed", action="store_true")
    parser.add_argument("--profile-no-speedups", action="store_true")
    args = parser.parse_args()
    if args.profile:
        asyncio.run(
            profile(
                Path(args.profile),
                args.profile_seconds,
                args.profile_streamed,
                not args.profile_no_speedups,
            )
        )
        sys.exit(0)
    with contextlib.suppress(KeyboardInterrupt):
        report = asyncio.run(main(args.quick, not args.no_streams))
        show(report)
        if "streams" in report:
            from gateway_stream import show as show_streams

            print()
            show_streams(report)
        print(f"\n({report['seconds']} s)", file=sys.stderr)
        if args.json:
            _stats.write_json(args.json, report)
