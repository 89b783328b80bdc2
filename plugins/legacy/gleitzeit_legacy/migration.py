"""Migrating old configs to the new TOML config, with a report of every key.

Accepted old shapes (YAML or JSON, or the dicts themselves):

* a file with a ``providers:`` block - the multi-instance guide's
  ``providers.<name>: {type: ollama_pool, instances, load_balancing: {...}}``, a Python
  Docker provider ``{type: python_docker, docker_config, pool_config, default_mode, ...}``, and
  the CLI's ``~/.gleitzeit`` config (``providers.ollama.{enabled, endpoint, default_models}``,
  ``providers.python.enabled``, ``execution``, ``batch``);
* one provider's arguments as a dict: ``{instances, load_balancing_config,
  circuit_breaker_config, timeout}`` (``OllamaPoolProvider``), ``{ollama_url, timeout}``
  (``OllamaProvider``) or ``{docker_config, pool_config, default_mode}``;
* the documented environment variables ``GLEITZEIT_OLLAMA_INSTANCES``, ``_STRATEGY``,
  ``_HEALTH_CHECK_INTERVAL``, ``_FAILOVER``, ``GLEITZEIT_PYTHON_MODE``,
  ``GLEITZEIT_DOCKER_IMAGE``, ``_MEMORY`` and ``_NETWORK`` (they override the file).

Every key of the input ends up in the report: carried over, changed (with how), or dropped
(with why). ``migrate(old).config`` loads with ``gleitzeit_core.load_config``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from .translate import (
    Report,
    bare_key,
    docker_hub_table,
    join,
    mode_name,
    ollama_hub_table,
    url_of,
)

__all__ = [
    "ENV_PREFIXES",
    "Migration",
    "leaf_paths",
    "load_old",
    "migrate",
    "migrate_provider_config",
]

ENV_PREFIXES = ("GLEITZEIT_OLLAMA_", "GLEITZEIT_PYTHON_", "GLEITZEIT_DOCKER_")
_ENV_KNOWN = {
    "GLEITZEIT_OLLAMA_INSTANCES",
    "GLEITZEIT_OLLAMA_STRATEGY",
    "GLEITZEIT_OLLAMA_HEALTH_CHECK_INTERVAL",
    "GLEITZEIT_OLLAMA_FAILOVER",
    "GLEITZEIT_PYTHON_MODE",
    "GLEITZEIT_DOCKER_IMAGE",
    "GLEITZEIT_DOCKER_MEMORY",
    "GLEITZEIT_DOCKER_NETWORK",
}
_POOL_TYPES = {"ollama_pool", "ollama-pool", "ollamapool", "ollama_pool_provider"}
_SINGLE_TYPES = {"ollama", "ollama_provider"}
_PYTHON_TYPES = {"python_docker", "python-docker", "python", "docker", "python_docker_provider"}
_DEFAULT_MODEL_KEYS = ("default_models", "default_model")  # documented for both kinds
_POOL_KEYS = {
    "type",
    "provider_id",
    "instances",
    "load_balancing",
    "load_balancing_config",
    "circuit_breaker",
    "circuit_breaker_config",
    "timeout",
    "enabled",
    "auto_discover",
    *_DEFAULT_MODEL_KEYS,
}
_SINGLE_KEYS = {
    "type",
    "provider_id",
    "endpoint",
    "ollama_url",
    "url",
    "timeout",
    "enabled",
    "default_models",
    "default_model",
    "auto_discover",
    "max_instances",
    "enable_sharing",
}
_PYTHON_KEYS = {
    "type",
    "provider_id",
    "docker_config",
    "pool_config",
    "default_mode",
    "allowed_local_modules",
    "enabled",
    "container_config",
    "max_containers",
    "enable_local",
    "default_image",
}
_TOP_LEVEL_REASONS = {
    "execution": "the hubs cap concurrency per resource (max_concurrency, pool.max_size); "
    "there is no global task cap",
    "batch": "batch file processing is not part of the hub configuration",
    "persistence": "the runtime keeps no persisted state",
    "db_path": "the runtime keeps no persisted state",
    "redis_url": "the runtime keeps no persisted state",
    "debug": "use logging configuration instead",
}


@attrs.define
class Migration:
    """A migrated config, the report, and where the input came from."""

    config: dict[str, Any]
    report: Report
    source: str = "<config>"
    env_used: list[str] = attrs.field(factory=list)

    def to_toml(self) -> str:
        header = (
            f"Migrated by `gleitzeit migrate-config` from {self.source}.\n"
            "See docs/migration.md for what each old key became."
        )
        comments = "".join(f"# {line}\n" for line in header.splitlines())
        return comments + tomli_w.dumps(self.config)

    def report_lines(self) -> list[str]:
        lines = [f"migrated {self.source}:"]
        if self.env_used:
            lines.append(f"  environment: {', '.join(self.env_used)}")
        for path, new in self.report.carried:
            lines.append(f"  kept     {path} -> {new}")
        for path, message in self.report.changed:
            lines.append(f"  changed  {path}: {message}")
        for path, why in self.report.dropped:
            lines.append(f"  dropped  {path}: {why}")
        for path, message in self.report.notes:
            lines.append(f"  note     {path}: {message}")
        if not (self.report.carried or self.report.changed or self.report.dropped):
            lines.append("  nothing to migrate")
        return lines


def leaf_paths(value: Any, path: str = "") -> list[str]:
    """Every leaf key path of an old config (lists of tables by index), for coverage checks."""
    if isinstance(value, Mapping):
        if not value:
            return [path] if path else []
        out: list[str] = []
        for key, item in value.items():
            out.extend(leaf_paths(item, join(path, str(key))))
        return out
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out = []
        for index, item in enumerate(value):
            out.extend(leaf_paths(item, join(path, index)))
        return out
    return [path]


def load_old(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an old YAML or JSON config (by suffix; unknown suffixes try JSON, then YAML).
    A new TOML config, or a file that is neither, is a ``ValueError`` that says so."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    suffix = file.suffix.lower()
    if suffix == ".toml":
        raise ValueError(
            f"{file} is a TOML file: the new config format, nothing to migrate (check it with "
            f"`gleitzeit config check {file}`); migrate-config reads the old YAML or JSON"
        )
    data: Any
    if suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{file} is not valid JSON: {exc}") from None
    else:
        try:
            if suffix not in (".yaml", ".yml"):
                data = json.loads(text)
            else:
                raise ValueError
        except ValueError:
            import importlib

            yaml: Any = importlib.import_module("yaml")
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(
                    f"{file} is not a valid old config: {_yaml_problem(exc)}"
                ) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{file}: expected a mapping at the top, got {type(data).__name__}")
    return dict(data)


def _yaml_problem(exc: Exception) -> str:
    """A YAML parser error in one line: what, and where."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"YAML: {problem}{where}; expected the old YAML or JSON provider config"


def _kind(entry: Mapping[str, Any], name: str | None) -> str | None:
    declared = str(entry.get("type", "")).strip().lower()
    if declared in _POOL_TYPES:
        return "pool"
    if declared in _SINGLE_TYPES:
        return "single"
    if declared in _PYTHON_TYPES:
        return "python"
    if declared:
        return None
    if "instances" in entry:
        return "pool"
    if {"endpoint", "ollama_url", "url"} & set(entry):
        return "single"
    if {"docker_config", "pool_config", "default_mode", "allowed_local_modules"} & set(entry):
        return "python"
    lowered = (name or "").lower()
    if "pool" in lowered and "ollama" in lowered:
        return "pool"
    if "ollama" in lowered:
        return "single"
    if "python" in lowered or "docker" in lowered:
        return "python"
    return None


class _Builder:
    def __init__(self) -> None:
        self.report = Report()
        self.hubs: dict[str, dict[str, Any]] = {}
        self.providers: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, str] = {}  # hub name -> old path

    def hub_name(self, wanted: str) -> str:
        name = bare_key(wanted)
        base, n = name, 2
        while name in self.hubs:
            name, n = f"{base}-{n}", n + 1
        return name

    def bind(self, protocol: str, hub: str, path: str) -> None:
        bound = self.providers.get(protocol)
        if bound is None:
            self.providers[protocol] = {"hub": hub}
            return
        if bound["hub"] == hub:  # the same hub, updated (by an environment variable, say)
            return
        self.report.note(
            path,
            f"hub {hub!r} was created, but {protocol} already runs on hub {bound['hub']!r} "
            f"(one hub per protocol); call it via runtime.hubs[{hub!r}] or merge the instances",
        )

    # -- Ollama pool ------------------------------------------------------------------------
    def pool(self, entry: Mapping[str, Any], path: str, name: str) -> None:
        report = self.report
        if not _enabled(entry, path, report):
            return
        lb_key = "load_balancing_config" if "load_balancing_config" in entry else "load_balancing"
        lb = entry.get(lb_key) or {}
        cb_key = "circuit_breaker_config" if "circuit_breaker_config" in entry else None
        cb = entry.get(cb_key) if cb_key else None
        if not isinstance(lb, Mapping):
            raise ValueError(f"{join(path, lb_key)}: expected a table")
        instances = entry.get("instances") or []
        if not isinstance(instances, list):
            raise ValueError(f"{join(path, 'instances')}: expected a list of instances")
        table = ollama_hub_table(
            instances=instances,
            load_balancing=lb,
            circuit_breaker=cb,
            timeout=entry.get("timeout"),
            path=path,
            report=report,
            lb_path=join(path, lb_key),
            cb_path=join(path, cb_key) if cb_key else None,
        )
        if "circuit_breaker" in entry and cb_key is None:
            from .translate import breaker_table

            table["breaker"] = breaker_table(
                entry["circuit_breaker"], join(path, "circuit_breaker"), report
            )
        if "timeout" in entry:
            report.change(
                join(path, "timeout"),
                f"became request_timeout = {table['request_timeout']:g}: one deadline for the "
                "whole request, failovers included (it was per attempt)",
            )
        if entry.get("auto_discover"):
            table["discovery"] = ["static", "scan"]
            report.change(
                join(path, "auto_discover"),
                'became discovery = ["static", "scan"] (loopback ports 11434-11439)',
            )
        elif "auto_discover" in entry:
            report.carry(join(path, "auto_discover"), "discovery")
        _drop_default_models(entry, path, report)
        hub = self.hub_name(name)
        self.hubs[hub] = table
        self.bind("llm/v1", hub, path)
        _common(entry, path, report)
        for key in entry:
            if key not in _POOL_KEYS:
                report.drop(join(path, key), "unknown key of an ollama_pool provider")

    # -- single Ollama ------------------------------------------------------------------------
    def single(self, entry: Mapping[str, Any], path: str, name: str) -> None:
        report = self.report
        if not _enabled(entry, path, report):
            return
        url_key = next((k for k in ("endpoint", "ollama_url", "url") if k in entry), None)
        url = url_of({"url": entry[url_key]}, join(path, url_key)) if url_key else None
        if url is None:
            url = "http://localhost:11434"
            report.note(path, f"no endpoint: the default {url} is configured")
        else:
            assert url_key is not None
            report.change(join(path, url_key), f"became the hub's one resource, url = {url!r}")
        instances = [{"id": "ollama", "url": url, "max_concurrent": 64}]
        table = ollama_hub_table(
            instances=instances,
            load_balancing={"failover": False},
            circuit_breaker=False,
            timeout=entry.get("timeout"),
            path=path,
            report=Report(),  # our own synthetic instance: nothing of the user's to report
        )
        report.note(
            path,
            "its one resource gets max_concurrency = 64 and num_parallel = 64: the old single "
            "provider sent every call at once; lower num_parallel to the server's "
            "OLLAMA_NUM_PARALLEL (Ollama's default is 1) so the hub, not Ollama, queues the rest",
        )
        if "timeout" in entry:
            report.change(join(path, "timeout"), "became request_timeout (seconds)")
        if entry.get("auto_discover"):
            table["discovery"] = ["static", "scan"]
            report.change(join(path, "auto_discover"), 'became discovery = ["static", "scan"]')
        elif "auto_discover" in entry:
            report.carry(join(path, "auto_discover"), "discovery")
        _drop_default_models(entry, path, report)
        for key in ("max_instances", "enable_sharing"):
            if key in entry:
                report.drop(join(path, key), "hubs are shared by every caller of the runtime")
        hub = self.hub_name(name)
        self.hubs[hub] = table
        self.bind("llm/v1", hub, path)
        _common(entry, path, report)
        for key in entry:
            if key not in _SINGLE_KEYS:
                report.drop(join(path, key), "unknown key of an ollama provider")

    # -- Python in Docker ---------------------------------------------------------------------
    def python(self, entry: Mapping[str, Any], path: str, name: str) -> None:
        report = self.report
        if not _enabled(entry, path, report):
            return
        docker = entry.get("docker_config") or {}
        if not isinstance(docker, Mapping):
            raise ValueError(f"{join(path, 'docker_config')}: expected a table")
        pool = dict(entry.get("pool_config") or {})
        if "max_containers" in entry:
            pool.setdefault("max_containers", entry["max_containers"])
        mode = entry.get("default_mode", "sandboxed")
        image = docker.get("image") or entry.get("default_image")
        table = docker_hub_table(pool_config=pool, default_mode=str(mode), path=path, report=report)
        if "max_containers" in entry:
            report.change(join(path, "max_containers"), "became pool.max_size")
        if image:
            table["default_image"] = str(image)
            table["datascience_image"] = str(image)
            for profile in table["profiles"].values():
                profile.pop("image", None)
            where = "docker_config.image" if docker.get("image") else "default_image"
            report.change(join(path, where), f"became default_image = {image!r} (every profile)")
        if "default_mode" in entry:
            chosen = mode_name(str(mode))
            if chosen == "local":
                report.change(
                    join(path, "default_mode"),
                    "'local' runs code on the host and is not part of the hub config; the "
                    "default profile is sandboxed (the shim's PythonDockerProvider still offers "
                    "local when enable_local=True)",
                )
            else:
                report.change(join(path, "default_mode"), f"became default_profile = {chosen!r}")
        report.note(
            path or "<provider>",
            "the old modes' limits are kept as profiles (sandboxed 512m/1 CPU/60 s, minimal "
            "256m/0.5/30 s, datascience 2g/2/120 s); every profile is hardened and has no "
            "network (datascience had a bridge network)",
        )
        for key, value in docker.items():
            if key == "image":
                continue
            if key == "images" and isinstance(value, Mapping):
                for mode_key, mode_image in value.items():
                    mode_key = mode_name(str(mode_key))
                    if mode_key in table["profiles"]:
                        table["profiles"][mode_key]["image"] = str(mode_image)
                        report.change(
                            join(join(path, "docker_config.images"), str(mode_key)),
                            f"became profiles.{mode_key}.image",
                        )
                continue
            if key in ("base_url", "docker_host"):
                table["engines"] = [str(value)]
                report.change(join(join(path, "docker_config"), key), "became engines")
                continue
            report.drop(
                join(join(path, "docker_config"), key), "the old executor never used docker_config"
            )
        container = entry.get("container_config")
        if isinstance(container, Mapping):
            target = table["profiles"][table["default_profile"]]
            renames = {"image": "image", "memory": "memory", "cpu": "cpus", "timeout": "timeout"}
            for key, value in container.items():
                leaf = join(join(path, "container_config"), key)
                if key in renames:
                    target[renames[key]] = value
                    report.change(
                        leaf, f"became profiles.{table['default_profile']}.{renames[key]}"
                    )
                elif key == "mount_data":
                    report.drop(leaf, "host mounts are configured as a profile's mounts")
                else:
                    report.drop(leaf, "no equivalent (GPU containers are not supported)")
        if "allowed_local_modules" in entry:
            report.drop(
                join(path, "allowed_local_modules"),
                "local execution is not part of the hub config (the shim's "
                "PythonDockerProvider enforces it in local mode)",
            )
        if "enable_local" in entry:
            report.drop(join(path, "enable_local"), "local execution is not part of the hub")
        hub = self.hub_name(name)
        self.hubs[hub] = table
        self.bind("python/v1", hub, path)
        _common(entry, path, report)
        for key in entry:
            if key not in _PYTHON_KEYS:
                report.drop(join(path, key), "unknown key of a python_docker provider")
        self.sources[hub] = path


def _drop_default_models(entry: Mapping[str, Any], path: str, report: Report) -> None:
    """``default_models`` (documented for every Ollama provider) has no hub equivalent."""
    for key in _DEFAULT_MODEL_KEYS:
        if key in entry:
            for leaf in leaf_paths(entry[key], join(path, key)):
                report.drop(
                    leaf,
                    "the new config has no default model; pass model in each call "
                    "(the shim's OllamaProvider keeps default_model)",
                )


def _enabled(entry: Mapping[str, Any], path: str, report: Report) -> bool:
    if "enabled" not in entry:
        return True
    if entry["enabled"] in (False, "false", "no", 0):
        for leaf in leaf_paths(entry, path):
            report.drop(leaf, "the provider was disabled (enabled: false); no hub created")
        return False
    report.carry(join(path, "enabled"), "(a hub exists only when enabled)")
    return True


def _common(entry: Mapping[str, Any], path: str, report: Report) -> None:
    if "type" in entry:
        report.change(join(path, "type"), f"{entry['type']!r} became the hub's kind")
    if "provider_id" in entry:
        report.drop(
            join(path, "provider_id"), "providers are named by protocol (llm/v1, python/v1)"
        )


def _apply_env(builder: _Builder, environ: Mapping[str, str]) -> list[str]:
    """Old environment variables, applied over what the file said."""
    used = sorted(k for k in environ if k.startswith(ENV_PREFIXES))
    report = builder.report
    for name in used:
        if name not in _ENV_KNOWN:
            report.drop(f"${name}", "not an old Gleitzeit setting")
    ollama = {k: environ[k] for k in used if k.startswith("GLEITZEIT_OLLAMA_")}
    if ollama:
        hub = builder.providers.get("llm/v1", {}).get("hub")
        if "GLEITZEIT_OLLAMA_INSTANCES" in ollama:
            instances = []
            for index, item in enumerate(
                p for p in ollama["GLEITZEIT_OLLAMA_INSTANCES"].split(",") if p.strip()
            ):
                text = item.strip()
                ident, sep, rest = text.partition(":")
                if sep and not rest.startswith("//") and ident not in ("http", "https"):
                    instances.append({"id": ident, "url": rest})
                else:
                    instances.append({"id": f"ollama-{index}", "url": text})
            previous = builder.hubs.get(hub) if hub else None
            lb: dict[str, Any] = {}
            table = ollama_hub_table(instances=instances, load_balancing=lb, report=Report())
            if previous is not None:
                for key in ("strategy", "retries", "health", "breaker", "request_timeout"):
                    table[key] = previous[key] if key in previous else table.get(key)
            name = hub or builder.hub_name("llm")
            builder.hubs[name] = table
            builder.bind("llm/v1", name, "$GLEITZEIT_OLLAMA_INSTANCES")
            report.change(
                "$GLEITZEIT_OLLAMA_INSTANCES",
                f"became the resources of hub {name!r}"
                + (" (replacing the file's instances)" if previous is not None else ""),
            )
            hub = name
        target = builder.hubs.get(hub) if hub else None
        for key, setting in (
            ("GLEITZEIT_OLLAMA_STRATEGY", "strategy"),
            ("GLEITZEIT_OLLAMA_HEALTH_CHECK_INTERVAL", "health_check_interval"),
            ("GLEITZEIT_OLLAMA_FAILOVER", "failover"),
        ):
            if key not in ollama:
                continue
            if target is None:
                report.drop(f"${key}", "no Ollama hub to apply it to (set the instances too)")
                continue
            probe = Report()
            applied = ollama_hub_table(
                instances=[], load_balancing={setting: ollama[key]}, report=probe
            )
            if setting == "strategy":
                target["strategy"] = applied["strategy"]
            elif setting == "health_check_interval":
                target.setdefault("health", {})["interval"] = applied["health"]["interval"]
            else:
                target["retries"] = 0 if applied["retries"] == 0 else (target.get("retries") or 2)
            message = probe.changed[0][1] if probe.changed else f"became {setting}"
            report.change(f"${key}", message)
    python = {
        k: environ[k] for k in used if k in _ENV_KNOWN and not k.startswith("GLEITZEIT_OLLAMA_")
    }
    if python:
        hub = builder.providers.get("python/v1", {}).get("hub")
        if hub is None:
            hub = builder.hub_name("sandbox")
            builder.hubs[hub] = docker_hub_table(report=Report())
            builder.bind("python/v1", hub, "$GLEITZEIT_PYTHON_MODE")
        table = builder.hubs[hub]
        if "GLEITZEIT_PYTHON_MODE" in python:
            mode = mode_name(python["GLEITZEIT_PYTHON_MODE"])
            if mode == "local":
                report.drop(
                    "$GLEITZEIT_PYTHON_MODE",
                    "'local' is not part of the hub config (the shim offers it with enable_local)",
                )
            else:
                table["default_profile"] = mode
                report.change("$GLEITZEIT_PYTHON_MODE", f"became default_profile = {mode!r}")
        if "GLEITZEIT_DOCKER_IMAGE" in python:
            table["default_image"] = python["GLEITZEIT_DOCKER_IMAGE"]
            table["datascience_image"] = python["GLEITZEIT_DOCKER_IMAGE"]
            for profile in table.get("profiles", {}).values():
                profile.pop("image", None)
            report.change("$GLEITZEIT_DOCKER_IMAGE", "became default_image (every profile)")
        if "GLEITZEIT_DOCKER_MEMORY" in python:
            default = table.get("default_profile", "sandboxed")
            table.setdefault("profiles", {}).setdefault(default, {})["memory"] = python[
                "GLEITZEIT_DOCKER_MEMORY"
            ]
            report.change("$GLEITZEIT_DOCKER_MEMORY", f"became profiles.{default}.memory")
        if "GLEITZEIT_DOCKER_NETWORK" in python:
            network = python["GLEITZEIT_DOCKER_NETWORK"].strip().lower()
            if network in ("none", ""):
                report.carry("$GLEITZEIT_DOCKER_NETWORK", "(sandboxes have no network)")
            else:
                report.drop(
                    "$GLEITZEIT_DOCKER_NETWORK",
                    f"network {network!r} for every sandbox is not carried over: only the "
                    "'trusted' profile has network, and it needs allow_trusted = true",
                )
    return used


def migrate(
    old: Mapping[str, Any] | None,
    *,
    environ: Mapping[str, str] | None = None,
    source: str = "<config>",
) -> Migration:
    """Translate an old config (and the old environment variables) into a new config."""
    data = copy.deepcopy(dict(old or {}))
    builder = _Builder()
    report = builder.report
    providers = data.get("providers")
    if isinstance(providers, Mapping):
        for name, entry in providers.items():
            path = join("providers", str(name))
            if not isinstance(entry, Mapping):
                report.drop(path, "not a provider table")
                continue
            kind = _kind(entry, str(name))
            if kind is None:
                for leaf in leaf_paths(entry, path):
                    report.drop(leaf, f"provider type {entry.get('type')!r} has no hub kind")
                continue
            getattr(builder, kind)(entry, path, str(name))
        for key, value in data.items():
            if key == "providers":
                continue
            why = _TOP_LEVEL_REASONS.get(key, "not part of the provider configuration")
            for leaf in leaf_paths(value, key):
                report.drop(leaf, why)
    elif data:
        kind = _kind(data, None)
        if kind is None:
            for leaf in leaf_paths(data):
                report.drop(leaf, "not a provider configuration this tool knows")
        else:
            default_name = {"pool": "llm", "single": "llm", "python": "sandbox"}[kind]
            getattr(builder, kind)(data, "", default_name)
    env = os.environ if environ is None else environ
    used = _apply_env(builder, env)
    config: dict[str, Any] = {}
    if builder.hubs:
        config["hubs"] = builder.hubs
    if builder.providers:
        config["providers"] = builder.providers
    return Migration(config=config, report=report, source=source, env_used=used)


def migrate_provider_config(old: Mapping[str, Any]) -> dict[str, Any]:
    """The new config dict for an old provider config (environment variables not read).

    ``Runtime.from_config(migrate_provider_config(old))`` builds the same hubs the old
    classes of the shim would; ``migrate(old).report`` says what changed.
    """
    return migrate(old, environ={}).config
