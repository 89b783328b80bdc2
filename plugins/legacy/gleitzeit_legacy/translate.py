"""Old arguments and config keys -> tables of the new TOML config.

One translation serves both the shim's classes (which build a ``Runtime`` from the old
constructor arguments) and ``gleitzeit migrate-config`` (which writes the same tables to a
file), so an old config and its migrated form describe exactly the same hubs.

Every old key ends up in a ``Report``: carried over (old path -> new path), changed (carried
with a different name, unit or meaning) or dropped (no equivalent; the reason says why).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "DEFAULT_BREAKER",
    "STRATEGIES",
    "Report",
    "breaker_table",
    "ollama_hub_table",
    "ollama_resource",
    "strategy_name",
]

# old strategy name -> (hub strategy, what changes); the LoadBalancingStrategy names first,
# then the names of the generic load balancer of the hub-era branch.
STRATEGIES: dict[str, tuple[str, str | None]] = {
    "round_robin": ("round_robin", None),
    "least_loaded": ("least_loaded", None),
    "random": ("random", None),
    "model_affinity": (
        "least_loaded",
        "the Ollama hub always prefers instances with the model loaded, then installed, so "
        "model affinity is built in; least_loaded picks within that tier",
    ),
    "latency_based": (
        "least_latency",
        "latency is an EWMA instead of the mean of the last 100 calls, and instances never "
        "measured go first (they went last)",
    ),
    "weighted": ("weighted_random", None),
    "weighted_random": ("weighted_random", None),
    "least_response_time": ("least_latency", None),
    "hash_based": (
        "consistent_hash",
        "a consistent-hash ring instead of md5 modulo the instance count",
    ),
    "priority_based": (
        "priority",
        "tiers are chosen lowest priority number first (the old code took the highest)",
    ),
    "adaptive": ("peak_ewma", "the adaptive score became peak-EWMA latency x load"),
    "first_available": ("least_loaded", None),
}

# The old pool's circuit breaker: 5 failures, 60 s open, 3 half-open requests, closed by one
# success, no backoff.
DEFAULT_BREAKER = {"failure_threshold": 5, "recovery_timeout": 60.0, "half_open_requests": 3}
_INSTANCE_KEYS = ("id", "url", "host", "port", "models", "max_concurrent", "tags", "priority")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@attrs.define
class Report:
    """What a translation did with each old key (dotted paths, ``[i]`` for list items)."""

    carried: list[tuple[str, str]] = attrs.field(factory=list)
    changed: list[tuple[str, str]] = attrs.field(factory=list)
    dropped: list[tuple[str, str]] = attrs.field(factory=list)
    notes: list[tuple[str, str]] = attrs.field(factory=list)  # about a table, not one key

    def note(self, where: str, message: str) -> None:
        self.notes.append((where, message))

    def carry(self, old: str, new: str) -> None:
        self.carried.append((old, new))

    def change(self, old: str, message: str) -> None:
        self.changed.append((old, message))

    def drop(self, old: str, why: str) -> None:
        self.dropped.append((old, why))

    def paths(self) -> set[str]:
        """Every old key path this report accounts for."""
        return (
            {p for p, _ in self.carried}
            | {p for p, _ in self.changed}
            | {p for p, _ in self.dropped}
        )


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def strategy_name(old: str) -> str:
    """The hub strategy for an old strategy name; ``ValueError`` (as before) when unknown."""
    value = getattr(old, "value", old)
    found = STRATEGIES.get(str(value).strip().lower())
    if found is None:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown load balancing strategy {old!r}; known strategies: {known}")
    return found[0]


def _number(value: Any, path: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{path}: expected a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or number < minimum:
        raise ValueError(f"{path}: expected a number >= {minimum:g}, got {value!r}")
    return number


def _integer(value: Any, path: str, *, minimum: int = 0) -> int:
    number = _number(value, path, minimum=minimum)
    if number != int(number):
        raise ValueError(f"{path}: expected a whole number, got {value!r}")
    return int(number)


def _truth(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    if isinstance(value, int):
        return bool(value)
    raise ValueError(f"{path}: expected true or false, got {value!r}")


def _strings(value: Any, path: str) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"{path}: expected a list of strings, got {value!r}")


def url_of(item: Mapping[str, Any], path: str) -> str:
    """``url``, or ``host``/``port`` (the hub-era instance shape) as a URL."""
    url = item.get("url")
    if isinstance(url, str) and url.strip():
        text = url.strip().rstrip("/")
        return text if "://" in text else f"http://{text}"
    host = item.get("host")
    if isinstance(host, str) and host.strip():
        port = _integer(item.get("port", 11434), join(path, "port"), minimum=1)
        return f"http://{host.strip()}:{port}"
    raise ValueError(f"{path}: an instance needs a url (or host and port)")


def ollama_resource(item: Mapping[str, Any], path: str, report: Report) -> dict[str, Any]:
    """One old instance dict -> one ``[[hubs.NAME.resources]]`` table."""
    if not isinstance(item, Mapping):
        raise ValueError(f"{path}: expected a table (an instance), got {item!r}")
    url = url_of(item, path)
    resource: dict[str, Any] = {}
    if "id" in item:
        resource["id"] = str(item["id"])
        report.carry(join(path, "id"), "id")
    else:
        resource["id"] = url.split("://", 1)[-1]
        report.note(path, f"no id: the instance is called {resource['id']!r} (host:port)")
    resource["url"] = url
    if "url" in item:
        report.carry(join(path, "url"), "url")
    for key in ("host", "port"):
        if key in item:
            report.change(join(path, key), f"host and port became url = {url!r}")
    if "models" in item:
        resource["models"] = _strings(item["models"], join(path, "models"))
        report.change(
            join(path, "models"),
            "carried as models (known before the first /api/tags); routing then follows what "
            "the instance has installed or loaded, names normalised (llama3.2 = llama3.2:latest)",
        )
    cap = _integer(item.get("max_concurrent", 5), join(path, "max_concurrent"), minimum=1)
    resource["max_concurrency"] = cap
    resource["num_parallel"] = cap
    if "max_concurrent" in item:
        report.change(
            join(path, "max_concurrent"),
            f"became max_concurrency = {cap} and num_parallel = {cap} (in flight per model); "
            "lower num_parallel to the instance's OLLAMA_NUM_PARALLEL so the hub, not Ollama, "
            "queues the rest",
        )
    if "tags" in item:
        resource["labels"] = _strings(item["tags"], join(path, "tags"))
        report.change(join(path, "tags"), "tags became labels")
    if "priority" in item:
        resource["priority"] = _integer(item["priority"], join(path, "priority"))
        report.change(
            join(path, "priority"),
            "the old pool ignored priority; now a tier for strategy = 'priority' (0 first)",
        )
    if "weight" in item:
        resource["weight"] = _number(item["weight"], join(path, "weight"))
        if resource["weight"] <= 0:
            raise ValueError(f"{join(path, 'weight')}: expected a weight > 0")
        report.carry(join(path, "weight"), "weight")
    if "specialization" in item:
        report.drop(
            join(path, "specialization"),
            "never used by the old pool; add it to labels if requests should select by it",
        )
    for key in item:
        if key not in (*_INSTANCE_KEYS, "weight", "specialization"):
            report.drop(join(path, key), "unknown instance key")
    return resource


def breaker_table(
    config: Mapping[str, Any] | None, path: str, report: Report, *, reported: bool = True
) -> dict[str, Any]:
    """The old pool's circuit breaker as a ``consecutive`` breaker table."""
    given = dict(config or {})
    merged = {**DEFAULT_BREAKER, **given}
    failures = _integer(merged["failure_threshold"], join(path, "failure_threshold"), minimum=1)
    open_for = _number(merged["recovery_timeout"], join(path, "recovery_timeout"))
    if open_for <= 0:
        raise ValueError(f"{join(path, 'recovery_timeout')}: expected seconds > 0")
    permits = _integer(merged["half_open_requests"], join(path, "half_open_requests"), minimum=1)
    if reported:
        if "failure_threshold" in given:
            report.change(join(path, "failure_threshold"), "became breaker.failures")
        if "recovery_timeout" in given:
            report.change(join(path, "recovery_timeout"), "became breaker.open_for (seconds)")
        if "half_open_requests" in given:
            report.change(
                join(path, "half_open_requests"),
                "became breaker.half_open_permits, now enforced (the old pool let any number "
                "of requests through while half-open)",
            )
        for key in given:
            if key not in DEFAULT_BREAKER:
                report.drop(join(path, key), "unknown circuit breaker key")
    return {
        "kind": "consecutive",
        "failures": failures,
        "open_for": open_for,
        "half_open_permits": permits,
        "successes_to_close": 1,
        "backoff": 1.0,
        "max_open_for": open_for,
    }


def ollama_hub_table(
    *,
    instances: Sequence[Mapping[str, Any]],
    load_balancing: Mapping[str, Any] | None = None,
    circuit_breaker: Mapping[str, Any] | bool | None = None,
    timeout: float | None = None,
    health_check_interval: float | None = None,
    path: str = "",
    report: Report | None = None,
    lb_path: str | None = None,
    cb_path: str | None = None,
) -> dict[str, Any]:
    """A ``[hubs.NAME]`` table of kind ``ollama`` from the old pool's arguments."""
    report = report if report is not None else Report()
    lb = dict(load_balancing or {})
    lb_path = lb_path if lb_path is not None else join(path, "load_balancing")
    table: dict[str, Any] = {"kind": "ollama", "discovery": ["static"]}
    old_strategy = lb.get("strategy", "least_loaded")
    table["strategy"] = strategy_name(old_strategy)
    if "strategy" in lb:
        note = STRATEGIES[str(getattr(old_strategy, "value", old_strategy)).lower()][1]
        if table["strategy"] == old_strategy and note is None:
            report.carry(join(lb_path, "strategy"), "strategy")
        else:
            report.change(
                join(lb_path, "strategy"),
                f"{old_strategy!r} became strategy = {table['strategy']!r}"
                + (f" ({note})" if note else ""),
            )
    interval = lb.get("health_check_interval", health_check_interval)
    seconds = _number(30.0 if interval is None else interval, join(lb_path, "interval"))
    if seconds <= 0:
        raise ValueError(f"{join(lb_path, 'health_check_interval')}: expected seconds > 0")
    table["health"] = {"interval": seconds, "timeout": 5.0}
    if "health_check_interval" in lb:
        report.change(
            join(lb_path, "health_check_interval"),
            "became health.interval; an instance is now unhealthy after 3 failed probes in a "
            "row (the old pool: after 1) - set health.unhealthy_threshold = 1 for the old rule",
        )
    failover = _truth(lb.get("failover", True), join(lb_path, "failover"))
    attempts = _integer(lb.get("retry_attempts", 3), join(lb_path, "retry_attempts"), minimum=1)
    table["retries"] = attempts - 1 if failover else 0
    if "failover" in lb:
        report.change(
            join(lb_path, "failover"),
            f"became retries = {table['retries']} (failover never retries an instance the "
            "request already tried)",
        )
    if "retry_attempts" in lb:
        report.change(
            join(lb_path, "retry_attempts"),
            f"{attempts} attempts became retries = {table['retries']} (attempts after the first)",
        )
    breaker_source = circuit_breaker if circuit_breaker is not None else lb.get("circuit_breaker")
    if cb_path is None:
        cb_path = join(lb_path, "circuit_breaker")
    if breaker_source is not False:  # False: no breaker (the old single-instance provider)
        if breaker_source is not None and not isinstance(breaker_source, Mapping):
            raise ValueError(f"{cb_path}: expected a table, got {breaker_source!r}")
        table["breaker"] = breaker_table(breaker_source or None, cb_path, report)
    for key in lb:
        known = ("strategy", "health_check_interval", "failover", "retry_attempts")
        if key not in known and key != "circuit_breaker":
            report.drop(join(lb_path, key), "unknown load balancing key")
    request_timeout = _number(60.0 if timeout is None else timeout, join(path, "timeout"))
    if request_timeout <= 0:
        raise ValueError(f"{join(path, 'timeout')}: expected seconds > 0")
    table["request_timeout"] = request_timeout
    table["resources"] = [
        ollama_resource(item, join(join(path, "instances"), i), report)
        for i, item in enumerate(instances)
    ]
    ids = [r["id"] for r in table["resources"]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{join(path, 'instances')}: duplicate instance ids {duplicates}")
    return table


def bare_key(name: str) -> str:
    """A hub name usable as a bare TOML key."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    return cleaned if cleaned and _BARE_KEY.match(cleaned) else "hub"


# -- Docker ---------------------------------------------------------------------------------------
# The old execution modes (PythonDockerProvider) and what each became. Images are the old ones;
# the network stays off (datascience had a bridge network; ask for one per call if needed).
OLD_MODES: dict[str, dict[str, Any]] = {
    "sandboxed": {"image": "python:3.11-slim", "memory": "512m", "cpus": 1.0, "timeout": 60.0},
    "datascience": {
        "image": "gleitzeit/datascience:latest",
        "memory": "2g",
        "cpus": 2.0,
        "timeout": 120.0,
    },
    "minimal": {"image": "python:3.11-alpine", "memory": "256m", "cpus": 0.5, "timeout": 30.0},
}
MODE_ALIASES = {
    "docker-sandbox": "sandboxed",
    "docker-datascience": "datascience",
    "sandbox": "sandboxed",
    "specialized": "datascience",
}
_POOL_KEYS = ("max_containers", "idle_timeout", "reuse_containers")


def mode_name(mode: str) -> str:
    """An old execution mode (or a draft alias) as a profile name; ``local`` stays ``local``."""
    name = str(getattr(mode, "value", mode)).strip().lower()
    name = MODE_ALIASES.get(name, name)
    if name not in (*OLD_MODES, "local"):
        known = ", ".join(["local", *OLD_MODES])
        raise ValueError(f"unknown execution mode {mode!r}; known modes: {known}")
    return name


def docker_pool_table(
    pool_config: Mapping[str, Any] | None, path: str, report: Report
) -> dict[str, Any]:
    """The old ``ContainerPool`` settings as the Docker hub's ``pool`` table."""
    given = dict(pool_config or {})
    pool: dict[str, Any] = {}
    size = _integer(given.get("max_containers", 10), join(path, "max_containers"), minimum=1)
    pool["max_size"] = size
    idle = _number(given.get("idle_timeout", 300), join(path, "idle_timeout"))
    pool["idle_ttl"] = idle
    if not _truth(given.get("reuse_containers", True), join(path, "reuse_containers")):
        pool["max_uses"] = 1
    if "max_containers" in given:
        report.change(
            join(path, "max_containers"),
            f"became pool.max_size = {size}: a hard cap per engine (the old pool created "
            "untracked extra containers after waiting 30 s)",
        )
    if "idle_timeout" in given:
        report.change(join(path, "idle_timeout"), "became pool.idle_ttl (seconds)")
    if "reuse_containers" in given:
        report.change(
            join(path, "reuse_containers"),
            "became pool.max_uses = 1" if "max_uses" in pool else "kept (reuse is the default)",
        )
    for key in given:
        if key not in _POOL_KEYS:
            report.drop(join(path, key), "unknown container pool key")
    return pool


def docker_hub_table(
    *,
    pool_config: Mapping[str, Any] | None = None,
    default_mode: str = "sandboxed",
    images: Mapping[str, str] | None = None,
    path: str = "",
    report: Report | None = None,
) -> dict[str, Any]:
    """A ``[hubs.NAME]`` table of kind ``docker`` reproducing the old modes' limits."""
    report = report if report is not None else Report()
    profiles: dict[str, dict[str, Any]] = {}
    for mode, preset in OLD_MODES.items():
        fields = dict(preset)
        if images and images.get(mode):
            fields["image"] = images[mode]
        profiles[mode] = fields
    default = mode_name(default_mode)
    table: dict[str, Any] = {
        "kind": "docker",
        "pool": docker_pool_table(pool_config, join(path, "pool_config"), report),
        "profiles": profiles,
        "default_profile": default if default != "local" else "sandboxed",
    }
    return table
