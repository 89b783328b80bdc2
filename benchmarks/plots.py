"""PNG plots of ``benchmarks/results/latest.json`` (matplotlib, Agg backend).

    python benchmarks/plots.py [RESULTS_JSON] [OUT_DIR]

``benchmarks/run.py`` calls :func:`make_all` after each run. Every plot is drawn from what the
results hold; one whose data is missing is skipped (and said so), never an error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HUB_COLOR = "#1f77b4"
PEER_COLOR = "#d62728"
BASE_COLOR = "#7f7f7f"


def value(results: dict[str, Any], key: str) -> Any:
    figure = results.get("figures", {}).get(key)
    if not isinstance(figure, dict):
        return None
    return figure.get("value")


def save(fig: Any, path: Path) -> str:
    """Lay out, write and close ``fig``; its file name."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def color_for(name: str) -> str:
    if name.startswith("litellm"):
        return PEER_COLOR
    if name in ("bare", "raw", "random.choice"):
        return BASE_COLOR
    return HUB_COLOR


def latency_distributions(results: dict[str, Any], out: Path) -> str | None:
    """CDFs per strategy on the 10/30/90 ms pool (peer benchmark) and p50/p99 of every
    built-in strategy (Ollama hub benchmark)."""
    peer = value(results, "litellm_peer_details")
    overhead = results.get("figures", {})
    strategies = None
    for key in ("strategies", "ollama_overhead.strategies"):
        if isinstance(overhead.get(key, {}).get("value"), dict):
            strategies = overhead[key]["value"]
            break
    panels = [p for p in (peer, strategies) if p]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6), squeeze=False)
    col = 0
    if peer:
        ax = axes[0][col]
        col += 1
        styles = ["-", "--", ":", "-.", (0, (5, 1))]
        for i, (name, row) in enumerate(peer["pool"]["contenders"].items()):
            cdf = row.get("cdf_ms")
            if not cdf:
                continue
            ax.plot(
                cdf,
                [q / 100 for q in range(len(cdf))],
                label=name,
                color=color_for(name),
                linestyle=styles[i % len(styles)],
                linewidth=1.6,
            )
        ax.set_xscale("log")
        ticks = [10, 20, 30, 50, 90, 150, 300]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("latency (ms, log)")
        ax.set_ylabel("fraction of requests")
        ax.set_title("10/30/90 ms pool, concurrency 12: hub vs LiteLLM")
        ax.axhline(0.99, color="#bbbbbb", linewidth=0.8)
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(True, which="both", alpha=0.3)
    if strategies:
        ax = axes[0][col]
        names = list(strategies)
        p50 = [strategies[n]["p50_ms"] for n in names]
        p99 = [strategies[n]["p99_ms"] for n in names]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50", color=HUB_COLOR)
        ax.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99", color="#aec7e8")
        ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("ms")
        ax.set_title("Ollama hub, every strategy (10/30/90 ms pool)")
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "latency_strategies.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


RATIOS = (
    # key, label, target (None: none stated), better ("lower"/"higher")
    ("hub_vs_raw_latency_ratio", "hub / bare client, p50 latency (lower is better)", 1.05, "lower"),
    (
        "hub_vs_raw_throughput_ratio",
        "hub / bare client, throughput (higher is better)",
        None,
        "higher",
    ),
    ("gateway_throughput_ratio", "gateway / direct, throughput (higher is better)", None, "higher"),
    (
        "legacy_vs_hub_latency_ratio",
        "hub / legacy path, p50 latency (lower is better)",
        1.05,
        "lower",
    ),
    ("litellm_vs_hub_overhead_ratio", "LiteLLM / hub, added latency", None, "higher"),
    ("litellm_vs_hub_cpu_ratio", "LiteLLM / hub, CPU per request", None, "higher"),
    ("litellm_vs_hub_p99_ratio", "LiteLLM / hub, p99 on the pool", None, "higher"),
    ("breaker_vs_pybreaker_ratio_consecutive", "consecutive / pybreaker", 1.0, "lower"),
    ("breaker_vs_pybreaker_ratio_window", "window / pybreaker", 1.0, "lower"),
    ("breaker_vs_pybreaker_ratio_adaptive", "adaptive / pybreaker", 1.0, "lower"),
    ("p2c_pick_vs_random_choice_ratio_1000", "p2c / random.choice, 1,000", 4.0, "lower"),
)


def overhead_ratios(results: dict[str, Any], out: Path) -> str | None:
    rows = []
    for key, label, target, _ in RATIOS:
        v = value(results, key)
        if isinstance(v, int | float) and v > 0:
            rows.append((label, float(v), target, key))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(rows) + 1.4))
    ys = list(range(len(rows)))[::-1]
    # red: the peer over us (above 1: we cost less); blue: ours over a reference or target
    colors = [PEER_COLOR if "litellm" in key else HUB_COLOR for _, _, _, key in rows]
    ax.barh(ys, [r[1] for r in rows], color=colors, alpha=0.85)
    for y, (_, v, target, key) in zip(ys, rows, strict=True):
        ci = value(results, f"{key}_ci90")
        ends = [v, ci[1] if isinstance(ci, list) and len(ci) == 2 else 0]
        ax.text(max(ends) * 1.03, y, f"{v:.3g}", va="center", fontsize=8)
        if target is not None:
            ax.plot([target, target], [y - 0.4, y + 0.4], color="black", linewidth=2)
        if isinstance(ci, list) and len(ci) == 2:
            ax.errorbar(
                [v],
                [y],
                xerr=[[max(v - ci[0], 0)], [max(ci[1] - v, 0)]],
                color="black",
                capsize=3,
                linewidth=1,
            )
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color=BASE_COLOR, linewidth=0.8)
    ax.set_xlabel("ratio, measured side by side in one run (log; black tick = target)")
    ax.set_title("Overhead ratios (blue: ours / reference; red: LiteLLM / ours)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    path = out / "overhead_ratios.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def peer_overhead(results: dict[str, Any], out: Path) -> str | None:
    peer = value(results, "litellm_peer_details")
    if not peer:
        return None
    over = peer["overhead"]
    names = list(over["contenders"])
    added = [
        over["contenders"][n].get("overhead_paired_ms", over["contenders"][n]["overhead_p50_ms"])
        for n in names
    ]
    cpu = [over["cpu_ms_per_request"].get(n, 0.0) for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colors = [color_for(n) for n in names]
    left.bar(names, added, color=colors)
    left.set_title(f"added latency over a bare client ({over['sim_latency_ms']:g} ms sim)")
    left.set_ylabel("ms per request")
    right.bar(names, cpu, color=colors)
    right.set_title("client CPU time per request")
    right.set_ylabel("ms per request")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "litellm_overhead.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def docker_paths(results: dict[str, Any], out: Path) -> str | None:
    paths = [
        ("fresh", "docker_fresh_p50_ms", "docker_fresh_p95_ms"),
        ("fresh + delete", "docker_fresh_with_delete_p50_ms", None),
        ("exec", "docker_exec_p50_ms", "docker_exec_p95_ms"),
        ("runner", "docker_runner_p50_ms", "docker_runner_p95_ms"),
    ]
    rows = [
        (label, value(results, p50), value(results, p95) if p95 else None)
        for label, p50, p95 in paths
    ]
    rows = [r for r in rows if isinstance(r[1], int | float)]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r[1] for r in rows], width=0.4, label="p50", color=HUB_COLOR)
    ax.bar(
        [x + 0.2 for x in xs], [r[2] or 0 for r in rows], width=0.4, label="p95", color="#aec7e8"
    )
    for x, r in zip(xs, rows, strict=True):
        ax.text(x - 0.2, r[1], f"{r[1]:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [r[0] for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("ms per job (log)")
    ratio = value(results, "docker_runner_vs_fresh_p50_ratio")
    extra = f": runner {ratio:g}x faster than fresh at p50" if ratio else ""
    ax.set_title(f"Docker execution paths{extra}")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path = out / "docker_paths.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def scale_curves(results: dict[str, Any], out: Path) -> str | None:
    picks = value(results, "strategy_pick_ns")
    lease = value(results, "hub_lease_ns")
    if not isinstance(picks, dict):
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    palette = plt.get_cmap("tab20").colors
    for i, (name, by_size) in enumerate(picks.items()):
        sizes = sorted(int(s) for s in by_size)
        ys = [by_size[str(s)] if str(s) in by_size else by_size[s] for s in sizes]
        if name == "random.choice":
            style: dict[str, Any] = {"color": "black", "linewidth": 2.5, "linestyle": ":"}
        else:
            style = {"color": palette[(2 * i) % len(palette)]}
        ax.plot(sizes, ys, marker="o", label=name, **style)
    if isinstance(lease, dict):
        sizes = sorted(int(s) for s in lease)
        ax.plot(
            sizes,
            [lease[str(s)] for s in sizes],
            marker="s",
            linestyle="--",
            color="black",
            label="hub lease (full path)",
        )
    pick_1000 = value(results, "scale_1000_pick_us")
    if isinstance(pick_1000, int | float):
        ax.scatter(
            [1000],
            [pick_1000 * 1000],
            marker="*",
            s=160,
            color=PEER_COLOR,
            zorder=5,
            label="hub lease, 1,000 resources (scale.py)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("candidates")
    ax.set_ylabel("ns per pick (log)")
    ax.set_title("Cost per pick by pool size")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = out / "scale_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def breakers(results: dict[str, Any], out: Path) -> str | None:
    per_call = value(results, "breakers.ns_per_call") or value(results, "ns_per_call")
    if not isinstance(per_call, dict):
        return None
    fig, ax = plt.subplots(figsize=(8.5, 4))
    paths = list(per_call)
    names = list(per_call[paths[0]])
    width = 0.8 / len(paths)
    for i, p in enumerate(paths):
        xs = [x + (i - (len(paths) - 1) / 2) * width for x in range(len(names))]
        ax.bar(
            xs,
            [per_call[p][n] for n in names],
            width=width,
            label=p,
            color=["#1f77b4", "#ff7f0e"][i % 2],
        )
    ax.set_xticks(list(range(len(names))), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("ns per call")
    ax.set_title("Breakers: admit + record per call (ours vs pybreaker)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "breakers.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def startup(results: dict[str, Any], out: Path) -> str | None:
    rows = [
        ("import gleitzeit_core", value(results, "startup_ms_import_core")),
        ("discovery, all plugins", value(results, "startup_ms_all_plugins")),
        ("gleitzeit --help", value(results, "startup_ms_cli_help")),
        ("all plugins, no .pyc", value(results, "startup_ms_all_plugins_no_pyc")),
    ]
    rows = [r for r in rows if isinstance(r[1], int | float)]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh([r[0] for r in rows][::-1], [r[1] for r in rows][::-1], color=HUB_COLOR)
    ax.axvline(150, color="black", linewidth=1.5, label="target 150 ms (discovery)")
    ax.set_xlabel("ms over a bare `python -c pass` (median)")
    ax.set_title("Startup")
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path = out / "startup.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def prefix_routing(results: dict[str, Any], out: Path) -> str | None:
    """Time to first token (p50, p99) and prompt-cache hit rate per strategy on the multi-turn
    workload, and p99 on the hot spot with and without the load guard."""
    data = value(results, "prefix_routing")
    if not isinstance(data, dict) or not data.get("uniform"):
        return None
    fig, (left, middle, right) = plt.subplots(
        1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [3, 2, 3]}
    )
    uniform = data["uniform"]
    names = list(uniform)
    xs = list(range(len(names)))
    for offset, (key, label, shade) in enumerate(
        [("ttft_p50_ms", "p50", HUB_COLOR), ("ttft_p99_ms", "p99", "#aec7e8")]
    ):
        left.bar(
            [x + (offset - 0.5) * 0.4 for x in xs],
            [uniform[n][key] for n in names],
            width=0.4,
            label=label,
            color=shade,
        )
    left.set_xticks(xs, names, rotation=15, ha="right", fontsize=8)
    left.set_ylabel("time to first token, ms")
    left.set_title("Multi-turn chats, 4 instances")
    left.legend(fontsize=8)
    left.grid(True, axis="y", alpha=0.3)
    middle.bar(xs, [uniform[n]["token_hit_rate"] for n in names], color=HUB_COLOR)
    for x, n in zip(xs, names, strict=True):
        share = uniform[n]["max_share_vs_fair"]
        middle.text(x, 0.02, f"max share\n{share:.2f}x", ha="center", fontsize=7)
    middle.set_xticks(xs, names, rotation=15, ha="right", fontsize=8)
    middle.set_ylim(0, 1)
    middle.set_ylabel("prompt tokens served from cache")
    middle.set_title("Cache hits (and busiest instance / fair)")
    middle.grid(True, axis="y", alpha=0.3)
    hot = data.get("hotspot") or {}
    hot_names = list(hot)
    right.bar(
        range(len(hot_names)),
        [hot[n]["ttft_p99_ms"] for n in hot_names],
        color=[BASE_COLOR if n == "p2c" else HUB_COLOR for n in hot_names],
    )
    right.set_xticks(
        range(len(hot_names)),
        [n.replace("prefix_affinity", "prefix").replace("_", " ") for n in hot_names],
        rotation=15,
        ha="right",
        fontsize=8,
    )
    right.set_ylabel("time to first token p99, ms")
    right.set_title("Hot spot: one prefix in 3 of 4 requests")
    right.grid(True, axis="y", alpha=0.3)
    return save(fig, out / "prefix_routing.png")


PLOTS: dict[str, tuple[str, Callable[[dict[str, Any], Path], str | None]]] = {
    "latency": ("Latency distributions per strategy", latency_distributions),
    "ratios": ("Overhead ratios", overhead_ratios),
    "peer": ("LiteLLM vs hub: overhead per request", peer_overhead),
    "docker": ("Docker paths", docker_paths),
    "scale": ("Scale curves", scale_curves),
    "breakers": ("Breakers vs pybreaker", breakers),
    "startup": ("Startup", startup),
    "prefix": ("Prefix-cache-aware routing", prefix_routing),
}


def make_all(results: dict[str, Any], out: Path) -> list[tuple[str, str | None, str | None]]:
    """Every plot: (title, file name or None, error or None)."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for title, draw in PLOTS.values():
        try:
            name = draw(results, out)
        except Exception as exc:  # one broken plot must not cost the others
            plt.close("all")
            made.append((title, None, f"{type(exc).__name__}: {exc}"))
            continue
        made.append((title, name, None if name else "no data in this run"))
    return made


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    source = Path(argv[0]) if argv else here / "results" / "latest.json"
    out = Path(argv[1]) if len(argv) > 1 else source.parent
    results = json.loads(source.read_text(encoding="utf-8"))
    for title, name, error in make_all(results, out):
        print(f"{title}: {name or '-'}{f' ({error})' if error else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
