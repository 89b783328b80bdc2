"""Command line: ``python -m gleitzeit_ollama.sim`` and the ``sim ollama`` click command."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import click

from gleitzeit_core import GleitzeitError, guarded
from gleitzeit_ollama.sim.config import SimConfig
from gleitzeit_ollama.sim.faults import FaultSpec
from gleitzeit_ollama.sim.server import OllamaSimulator
from gleitzeit_ollama.sim.wire import parse_go_duration

F = TypeVar("F", bound=Callable[..., Any])

# CLI option -> SimConfig field (None means "keep the SimConfig default").
_CONFIG_OPTIONS: list[tuple[str, str, type, str]] = [
    ("--models", "models", str, "Comma-separated installed models."),
    ("--latency-ms", "latency_ms", float, "Time to first token in ms."),
    ("--tokens-per-s", "tokens_per_s", float, "Streaming speed (0 = unpaced)."),
    (
        "--prefill-ms-per-token",
        "prefill_ms_per_token",
        float,
        "Prompt evaluation per uncached token in ms (default 0.42: llama.cpp, 7B Q4_0 on a GPU).",
    ),
    ("--load-ms", "load_ms", float, "Cold model load cost in ms."),
    ("--num-parallel", "num_parallel", int, "Running requests per model."),
    ("--max-queue", "max_queue", int, "Waiting requests per model before 503."),
    ("--max-tokens", "max_tokens", int, "Output tokens unless num_predict is set."),
    ("--embed-dim", "embed_dim", int, "Embedding dimension."),
    ("--pullable", "pullable", str, "Comma-separated models /api/pull can fetch (default any)."),
    ("--pull-ms", "pull_ms", float, "Duration of a simulated pull in ms."),
    ("--context-length", "context_length", int, "context_length reported by /api/ps."),
    ("--queue-timeout-s", "queue_timeout_s", float, "Queued requests give up (503) after this."),
    ("--hang-max-s", "hang_max_s", float, "Hung requests are reset after this."),
    ("--ollama-version", "version", str, "Version reported by /api/version."),
    ("--name", "name", str, "Instance name shown in /_sim/stats."),
    ("--seed", "seed", int, "Output seed (equal seeds give equal output)."),
]
_FAULT_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--fault-error-rate", "error_rate", float, "Probability an inference request fails."),
    ("--fault-error-status", "error_status", int, "HTTP status of injected errors."),
    ("--fault-error-message", "error_message", str, "Text of injected errors."),
    ("--fault-seed", "seed", int, "Seed of the error RNG."),
    ("--fault-hang", "hang", bool, "Inference requests never answer."),
    ("--fault-hang-probes", "hang_probes", bool, "Probes never answer either."),
    ("--fault-slow-ms", "slow_ms", float, "Extra latency in ms."),
    ("--fault-error-line-after", "error_line_after", int, "Error line after N chunks."),
    ("--fault-reset-after", "reset_after", int, "Reset the connection after N chunks."),
    ("--fault-busy", "busy", bool, "Inference requests get 503 busy."),
    ("--fault-probes-down", "probes_down", bool, "Probes reset the connection."),
    ("--fault-paths", "paths", str, "Comma-separated paths the faults apply to."),
]


def _keep_alive(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return parse_go_duration(value)


def sim_options(func: F) -> F:
    """Attach every simulator option to a click command."""
    opts: list[Callable[[F], F]] = [
        click.option("--host", default="127.0.0.1", show_default=True, help="Bind address."),
        click.option("--port", type=int, default=0, help="Port (0 = pick a free one)."),
        click.option("--keep-alive", default=None, help="Seconds or duration like 5m; <0 forever."),
        # Set by SimProcess: exit when this pid is no longer our parent (no orphans).
        click.option("--parent-pid", type=int, default=None, hidden=True),
    ]
    for flag, _field, typ, help_text in _CONFIG_OPTIONS:
        opts.append(click.option(flag, type=typ, default=None, help=help_text))
    for flag, _field, typ, help_text in _FAULT_OPTIONS:
        if typ is bool:
            opts.append(click.option(flag, is_flag=True, default=None, help=help_text))
        else:
            opts.append(click.option(flag, type=typ, default=None, help=help_text))
    for opt in reversed(opts):
        func = opt(func)
    return func


def _param(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def config_from_options(options: dict[str, Any]) -> SimConfig:
    kwargs: dict[str, Any] = {
        field: options[_param(flag)]
        for flag, field, _t, _h in _CONFIG_OPTIONS
        if options.get(_param(flag)) is not None
    }
    if options.get("keep_alive") is not None:
        kwargs["keep_alive"] = _keep_alive(str(options["keep_alive"]))
    faults = {
        field: options[_param(flag)]
        for flag, field, _t, _h in _FAULT_OPTIONS
        if options.get(_param(flag)) is not None
    }
    kwargs["faults"] = FaultSpec.from_json(faults)
    return SimConfig(**kwargs)


def config_to_args(config: SimConfig) -> list[str]:
    """The CLI arguments that reproduce ``config`` in a child process."""
    args: list[str] = []
    for flag, field, _t, _h in _CONFIG_OPTIONS:
        value = getattr(config, field)
        if value is None:
            continue
        args += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    keep = config.keep_alive
    args += ["--keep-alive", "-1" if math.isinf(keep) else repr(keep)]
    default = FaultSpec()
    for flag, field, typ, _h in _FAULT_OPTIONS:
        value = getattr(config.faults, field)
        if value == getattr(default, field) or value is None:
            continue
        if typ is bool:
            args.append(flag)
        else:
            args += [flag, ",".join(value) if isinstance(value, tuple) else str(value)]
    return args


async def serve(config: SimConfig, host: str, port: int, *, parent_pid: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT or until ``parent_pid`` is gone; prints the ready line."""
    sim = OllamaSimulator(config)
    await sim.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {sim.url}", flush=True)
    try:
        while not stop.is_set():
            # Wake up now and then so an orphaned child notices and exits.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await stop.wait()
            if parent_pid is not None and os.getppid() != parent_pid:
                break
    finally:
        await sim.stop()


@guarded
def run(options: dict[str, Any]) -> None:
    try:
        config = config_from_options(options)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        asyncio.run(
            serve(
                config,
                options["host"],
                options["port"],
                parent_pid=options.get("parent_pid"),
            )
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise GleitzeitError(
            f"sim ollama: port {options['port']} on {options['host']} is already in "
            "use (a real Ollama, perhaps); choose another with --port, or --port 0 for a free "
            "one (the ready line names it)"
        ) from exc


@click.command(name="ollama-sim")
@sim_options
def main(**options: Any) -> None:
    """Run a simulated Ollama server (python -m gleitzeit_ollama.sim)."""
    run(options)


@click.group(name="sim")
def sim_command() -> None:
    """Simulated servers for tests, benchmarks and demos."""


@sim_command.command(name="ollama")
@sim_options
def ollama_command(**options: Any) -> None:
    """Run a simulated Ollama server."""
    run(options)
