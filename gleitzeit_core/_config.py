"""The configuration: attrs classes, loaded from TOML (or a dict) by strict cattrs structuring.

Where the file comes from: ``--config PATH``, else ``GLEITZEIT_CONFIG``, else none (each
installed hub plugin then contributes a default hub, if its backend answers). Types, keys and
values are checked here, every problem at once, one line each, naming its key path; names and
references between tables when the runtime builds the hubs, and all of it in one pass by
``gleitzeit_core._checking`` (``gleitzeit config check``). Kind-specific keys of a hub or a
resource (an Ollama hub's ``auto_pull``, say) are collected in ``options`` here and checked
against the hub kind's own settings class.

Reading the files themselves, and the user's own settings (plugins enabled or disabled with
``gleitzeit plugins``), is ``gleitzeit_core._configfile``'s: plugin selection needs them at start-up
without importing attrs and cattrs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ._configfile import read_toml
from ._errors import ConfigError
from ._health import HealthSettings, OutlierSettings
from ._keys import KeyConfig
from ._structuring import converter, structure, structure_attrs, unknown_keys
from ._validators import (
    InvalidValue,
    MissingKey,
    at_least,
    in_range,
    positive,
    satisfies,
    seconds,
)

__all__ = [
    "ComponentRef",
    "FeaturesConfig",
    "GatewayConfig",
    "GleitzeitConfig",
    "HubConfig",
    "PluginsConfig",
    "ProviderConfig",
    "ResourceConfig",
    "StateConfig",
    "config_path_from_env",
    "is_url",
    "load_config",
]


@attrs.frozen(kw_only=True)
class ComponentRef:
    """A strategy, breaker or probe chosen by name, with its options.

    In TOML either a bare name (``strategy = "p2c"``) or a table with ``kind``
    (``breaker = { kind = "window", window_size = 50 }``).
    """

    kind: str
    options: dict[str, Any] = attrs.field(factory=dict)


def _structure_ref(value: Any, _: Any) -> ComponentRef:
    if isinstance(value, str):
        return ComponentRef(kind=value)
    if isinstance(value, Mapping):
        kind = value.get("kind")
        if kind is None:
            raise MissingKey("kind")
        if not isinstance(kind, str):
            raise InvalidValue("kind", "a name", kind)
        return ComponentRef(kind=kind, options={k: v for k, v in value.items() if k != "kind"})
    raise TypeError(f"expected a name or a table with 'kind', got {value!r}")


converter.register_structure_hook(ComponentRef, _structure_ref)


@attrs.frozen(kw_only=True)
class PluginsConfig:
    disabled: list[str] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class GatewayConfig:
    host: str = "127.0.0.1"  # loopback unless the operator says otherwise
    port: int = attrs.field(default=11500, validator=in_range(0, 65535, "a port"))
    # empty would silently mean "no token", i.e. an open gateway
    token: str | None = attrs.field(default=None, validator=satisfies("a non-empty token", bool))
    token_env: str = "GLEITZEIT_GATEWAY_TOKEN"
    keys: dict[str, KeyConfig] = attrs.field(factory=dict)  # see gleitzeit_core._keys
    origins: list[str] = attrs.field(factory=list)  # besides loopback pages; globs
    hosts: list[str] = attrs.field(factory=list)  # Host names besides localhost and IPs; globs
    max_body_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=at_least(1))
    request_timeout: float = attrs.field(default=300.0, validator=seconds())
    header_timeout: float = attrs.field(default=10.0, validator=seconds())
    body_timeout: float = attrs.field(default=60.0, validator=seconds())
    max_connections: int = attrs.field(default=256, validator=at_least(1))
    max_batch: int = attrs.field(default=64, validator=at_least(1))  # tasks of one */batch
    # SIGTERM: requests and streams in flight get this long to finish (docs/scale-out.md)
    shutdown_grace: float = attrs.field(default=30.0, validator=seconds(allow_zero=True))
    reuse_port: bool = False  # SO_REUSEPORT: replicas share one port for rolling restarts
    speedups: bool = True  # uvloop and orjson when installed (gleitzeit-core[speed])


_NETWORK_SCHEMES = ("http", "https", "tcp")


def is_url(value: Any) -> bool:
    """``scheme://...`` with no spaces; for http, https and tcp also a host and a numeric
    port, if any (``unix:///path`` and a plugin's own schemes pass on their form alone)."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or "://" not in value or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    if not parts.scheme or not (parts.netloc or parts.path):
        return False
    return parts.scheme not in _NETWORK_SCHEMES or bool(parts.hostname)


@attrs.frozen(kw_only=True)
class ResourceConfig:
    id: str | None = None
    url: str | None = attrs.field(
        default=None,
        validator=satisfies(
            'a URL such as "http://127.0.0.1:11434"',
            is_url,
        ),
    )
    host: str | None = None
    port: int | None = attrs.field(default=None, validator=in_range(1, 65535, "a port"))
    weight: float = attrs.field(default=1.0, validator=positive("a weight"))
    max_concurrency: int | None = attrs.field(default=None, validator=at_least(1))
    priority: int = attrs.field(default=0, validator=at_least(0))
    labels: list[str] = attrs.field(factory=list)
    capabilities: list[str] = attrs.field(factory=list)
    options: dict[str, Any] = attrs.field(factory=dict)  # kind-specific keys


@attrs.frozen(kw_only=True)
class HubConfig:
    kind: str
    strategy: ComponentRef = attrs.field(factory=lambda: ComponentRef(kind="p2c"))
    breaker: ComponentRef | None = None
    discovery: list[str] | None = None  # None: the hub kind's default
    request_timeout: float = attrs.field(default=120.0, validator=seconds())
    attempt_timeout: float | None = attrs.field(default=None, validator=seconds())
    retries: int = attrs.field(default=2, validator=at_least(0))
    queue_timeout: float = attrs.field(default=30.0, validator=seconds(allow_zero=True))
    max_waiting: int = attrs.field(default=1000, validator=at_least(0))
    seed: int | None = None
    health: HealthSettings = attrs.field(factory=HealthSettings)
    outlier: OutlierSettings = attrs.field(factory=OutlierSettings)
    resources: list[ResourceConfig] = attrs.field(factory=list)
    options: dict[str, Any] = attrs.field(factory=dict)  # kind-specific keys


def _split_extras(cls: type) -> Any:
    """Structure ``cls`` with its declared keys; anything else lands in ``options``."""
    known = {a.name for a in attrs.fields(cls)} - {"options"}

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a table, got {value!r}")
        data = {k: v for k, v in value.items() if k in known}
        data["options"] = {k: v for k, v in value.items() if k not in known}
        return structure_attrs(data, cls)

    return hook


converter.register_structure_hook(ResourceConfig, _split_extras(ResourceConfig))
converter.register_structure_hook(HubConfig, _split_extras(HubConfig))


@attrs.frozen(kw_only=True)
class ProviderConfig:
    hub: str | None = None
    options: dict[str, Any] = attrs.field(factory=dict)


converter.register_structure_hook(ProviderConfig, _split_extras(ProviderConfig))


@attrs.frozen(kw_only=True)
class FeaturesConfig:
    """Feature flags (see ``gleitzeit_core._features``)."""

    use_hub_architecture: bool = True
    hub_architecture_providers: list[str] | None = None  # None: every provider
    rollout_percent: float = attrs.field(default=100.0, validator=in_range(0, 100, "a percentage"))
    flags: dict[str, bool] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class StateConfig:
    """Where gateway replicas share state: ``backend`` names a registered state backend
    (``local``, the default, shares nothing); its own keys (a Redis ``url``, say) go to it."""

    backend: str = "local"
    options: dict[str, Any] = attrs.field(factory=dict)  # the backend's own keys


converter.register_structure_hook(StateConfig, _split_extras(StateConfig))


@attrs.frozen(kw_only=True)
class GleitzeitConfig:
    plugins: PluginsConfig = attrs.field(factory=PluginsConfig)
    gateway: GatewayConfig = attrs.field(factory=GatewayConfig)
    hubs: dict[str, HubConfig] = attrs.field(factory=dict)
    providers: dict[str, ProviderConfig] = attrs.field(factory=dict)
    features: FeaturesConfig = attrs.field(factory=FeaturesConfig)
    state: StateConfig = attrs.field(factory=StateConfig)
    source: str | None = attrs.field(default=None, eq=False)
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


_FROM_FILE = [a.name for a in attrs.fields(GleitzeitConfig) if a.name not in ("source", "raw")]


def config_path_from_env() -> Path | None:
    value = os.environ.get("GLEITZEIT_CONFIG")
    return Path(value) if value else None


def split_sections(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The known top-level tables of a config, and one line per unknown one."""
    problems = unknown_keys([], [key for key in raw if key not in _FROM_FILE], _FROM_FILE)
    problems = [line.replace("unknown key", "unknown section", 1) for line in problems]
    return {key: value for key, value in raw.items() if key in _FROM_FILE}, problems


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> GleitzeitConfig:
    """Read and check a config from a TOML path or a dict; ``None`` uses ``GLEITZEIT_CONFIG``.

    Checks types, keys and values; names (strategies, hub kinds) and cross-references are
    checked when the runtime builds it, or all at once by ``gleitzeit_core._checking``."""
    if source is None:
        source = config_path_from_env()
        if source is None:
            return GleitzeitConfig()
    if isinstance(source, Mapping):
        raw, name = dict(source), "<config>"
    else:
        raw, name = read_toml(source), str(source)
    top, problems = split_sections(raw)
    try:
        config = structure(top, GleitzeitConfig, source=None)
    except ConfigError as exc:
        problems.extend(exc.problems)
        raise ConfigError(problems, source=name) from None
    if problems:
        raise ConfigError(problems, source=name)
    return attrs.evolve(config, source=name, raw=raw)
