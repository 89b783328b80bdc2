"""One pass over a config file that reports every problem it has, without starting anything.

Types, value ranges, unknown keys (with the closest known key), URLs, names nobody installed
(hub kinds, strategies, breakers, probes, discoverers, providers), duplicate resource ids and
references between tables (a provider's hub) are all checked in the same run: keys with a
problem are set aside so the rest of the file is still checked (``gleitzeit config check``,
and ``Runtime.from_config`` when a file has mistakes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from ._clock import SystemClock
from ._config import GleitzeitConfig, split_sections
from ._configfile import read_toml
from ._errors import ConfigError, DuplicateNameError, PluginLoadError
from ._plugins import PluginManager, PluginSelection
from ._structuring import structure_lenient
from ._wiring import build_state, check_providers, plan_hub

__all__ = ["check_config"]


def check_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    plugins: PluginManager | None = None,
) -> ConfigError | None:
    """Every problem of a config (a TOML path or a dict) as one ``ConfigError``, or ``None``
    when it is valid. A file that cannot be read or parsed is the one problem reported."""
    if isinstance(source, Mapping):
        raw, name = dict(source), "<config>"
    else:
        raw, name = read_toml(source), str(source)
    top, problems = split_sections(raw)
    config, more = structure_lenient(top, GleitzeitConfig)
    problems.extend(more)
    if config is not None:
        config = attrs.evolve(config, source=name, raw=raw)
        structural = [_path_of(line) for line in problems]
        for line in _wiring_problems(config, top, plugins):
            here = _path_of(line)
            # a table whose key was set aside may look incomplete: that is not news
            if not any(path.startswith((here + ".", here + "[")) for path in structural):
                problems.append(line)
    return ConfigError(problems, source=name) if problems else None


def _path_of(line: str) -> str:
    return line.split(": ", 1)[0]


def _wiring_problems(
    config: GleitzeitConfig, top: Mapping[str, Any], plugins: PluginManager | None
) -> list[str]:
    manager = (plugins or PluginSelection.resolve(config).manager()).load()
    registries = manager.registries
    problems: list[str] = []
    for name, hub in config.hubs.items():
        try:
            plan_hub(name, hub, registries)
        except (ConfigError, DuplicateNameError) as exc:
            problems.extend(getattr(exc, "problems", [str(exc)]))
        except PluginLoadError as exc:
            problems.append(f"hubs.{name}.kind: {exc}")
    kinds: dict[str, str | None] = {name: hub.kind for name, hub in config.hubs.items()}
    raw_hubs = top.get("hubs")
    if isinstance(raw_hubs, Mapping):  # a hub with a mistake is still a hub to refer to
        for name, table in raw_hubs.items():
            kind = table.get("kind") if isinstance(table, Mapping) else None
            kinds.setdefault(name, kind if isinstance(kind, str) else None)
    problems.extend(check_providers(config, kinds, registries))
    try:  # building the backend checks its options; it connects only when started
        build_state(config, registries, clock=SystemClock())
    except ConfigError as exc:
        problems.extend(exc.problems)
    except PluginLoadError as exc:
        problems.append(f"state.backend: {exc}")
    return problems
