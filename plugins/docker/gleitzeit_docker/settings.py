"""Settings of a Docker hub (the kind-specific keys of ``[hubs.NAME]``) and of one engine.

Strict attrs classes: the core structures the config into them and reports every unknown
key or wrong value with its key path (``hubs.sandbox.pool.max_size: expected ...``). The
profile overrides are checked here too, by building the profile set once, so a bad size or
an unknown profile field fails the config before anything starts.

This module stays light (attrs only): the hub, the engine and aiodocker are imported only
when a hub is built.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import attrs

from gleitzeit_core import InvalidValue, at_least, in_range, one_of, satisfies, seconds, shown

__all__ = [
    "ENGINE_SCHEMES",
    "DockerSettings",
    "EngineOptions",
    "PoolSettings",
    "SettingsProblem",
    "ValidateSettings",
    "default_hub_id",
    "engine_options",
    "engine_url_problem",
]

ENGINE_SCHEMES = ("unix://", "tcp://", "http://", "https://", "ssh://", "npipe://")


class SettingsProblem(InvalidValue):
    """A problem found by a whole-settings check, worded freely (not "expected X, got Y")."""

    def __init__(self, field: str, message: str, *, index: int | None = None) -> None:
        self.field = field
        self.index = index
        self.expected = message
        ValueError.__init__(self, message)


def engine_url_problem(url: Any) -> str | None:
    """Why ``url`` is not a usable engine URL (``None``: it is)."""
    if not isinstance(url, str) or not url.startswith(ENGINE_SCHEMES):
        return "an engine URL such as unix:///var/run/docker.sock or tcp://host:2375"
    if url.startswith("unix://") and not url[len("unix://") :].startswith("/"):
        return "a unix:// URL with an absolute socket path (unix:///path/docker.sock)"
    if url.rstrip("/").endswith("://"):
        return "an engine URL with a host or a socket path"
    return None


def _engines(_: Any, attribute: attrs.Attribute[Any], value: list[str]) -> None:
    for index, url in enumerate(value):
        problem = engine_url_problem(url)
        if problem is not None:
            raise SettingsProblem(
                attribute.name, f"expected {problem}, got {shown(url)}", index=index
            )


def _optional_name(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value.strip():
        raise InvalidValue(attribute.name, "a non-empty string", value)


@attrs.frozen(kw_only=True)
class PoolSettings:
    """``pool = { ... }``: the warm containers of each engine (see ``WarmPool``)."""

    # "runner": a resident runner forks per job (fast); "exec": one `docker exec` per job.
    mode: str = attrs.field(default="runner", validator=one_of("runner", "exec"))
    # Idle containers kept ready per profile in use, on every engine.
    min_idle: int = attrs.field(default=0, validator=at_least(0))
    # Containers per engine (busy + idle + starting): also the engine's concurrency cap.
    max_size: int = attrs.field(default=8, validator=in_range(1, 1024, "an integer"))
    # An idle container is removed after this many seconds (0: right after its job).
    idle_ttl: float = attrs.field(default=300.0, validator=seconds(allow_zero=True))
    # A container is removed after this many jobs.
    max_uses: int = attrs.field(default=100, validator=at_least(1))
    # ... or once it is this old.
    max_lifetime: float = attrs.field(default=3600.0, validator=seconds())
    # Waiting for a free container of an engine (the hub's queue_timeout waits for an engine).
    acquire_timeout: float = attrs.field(default=30.0, validator=seconds(allow_zero=True))
    # Creating, starting and hearing from a new container.
    start_timeout: float = attrs.field(default=20.0, validator=seconds())
    # After a job's timeout, how long its runner has to confirm the kill.
    kill_grace: float = attrs.field(default=2.0, validator=seconds())
    # How often idle containers are checked for idle_ttl/max_lifetime and min_idle topped up.
    reap_interval: float = attrs.field(default=5.0, validator=seconds())
    # A profile whose runner cannot start falls back to `docker exec`.
    fallback: bool = True
    # Runner mode on an engine of this host: the runner's protocol over a unix socket in a
    # directory mounted for its container alone, past the engine's attach relay.
    direct: bool = True

    def pool_config(self, max_size: int | None = None) -> Any:
        """The engine layer's ``PoolConfig`` (``max_size`` overridden per engine)."""
        from gleitzeit_docker.pool import PoolConfig

        fields = attrs.asdict(self)
        if max_size is not None:
            fields["max_size"] = max_size
        return PoolConfig(**fields)


def _size_text(value: Any) -> bool:
    from gleitzeit_docker.profile_fields import parse_size

    try:
        parse_size(value)
    except (ValueError, TypeError):
        return False
    return True


_byte_size = satisfies('a size such as "1m" or a number of bytes', _size_text)


@attrs.frozen(kw_only=True)
class ValidateSettings:
    """``validate = { ... }``: limits of ``python/validate``'s compiler process."""

    # Source bigger than this is refused without compiling (default 1m).
    max_size: Any = attrs.field(default="1m", validator=_byte_size)
    # The compiler process is killed after this many seconds.
    timeout: float = attrs.field(default=5.0, validator=seconds())
    # Its address-space limit (compiling 2 MiB of code took 835 MiB).
    memory: Any = attrs.field(default="512m", validator=_byte_size)
    # Compiler processes at once; more requests wait.
    concurrency: int = attrs.field(default=2, validator=in_range(1, 64, "an integer"))


@attrs.frozen(kw_only=True)
class EngineOptions:
    """Per-engine keys of ``[[hubs.NAME.resources]]`` (an engine given as a resource)."""

    # This engine's containers at most (default: pool.max_size), e.g. for a bigger machine.
    max_size: int | None = attrs.field(default=None, validator=in_range(1, 1024, "an integer"))


@attrs.frozen(kw_only=True)
class DockerSettings:
    """``[hubs.NAME]`` keys of a ``docker`` hub, besides the ones every hub has."""

    # Engine URLs; empty: DOCKER_HOST, else the default socket (plus any [[resources]]).
    engines: list[str] = attrs.field(factory=list, validator=_engines)
    # The value of the `gleitzeit.hub` label on every container (default: NAME@HOSTNAME).
    hub_id: str | None = attrs.field(default=None, validator=_optional_name)
    pool: PoolSettings = attrs.field(factory=PoolSettings)
    # Overrides per profile, e.g. profiles.sandboxed = { memory = "512m" }; a new name may
    # say base = "minimal". Fields: see the README (pids is an alias of pids_limit).
    profiles: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    # The profile of a request that names none.
    default_profile: str = "sandboxed"
    # Enable profiles with network access (the built-in "trusted"); a gateway key may then use
    # one only if its `profiles` list names it.
    allow_trusted: bool = False
    # Profiles a gateway client may choose when its key has no `profiles` list (besides
    # default_profile); networked ones never. In-process (operator) code may use any profile.
    client_profiles: list[str] = attrs.field(factory=lambda: ["sandboxed", "minimal"])
    # python/validate compiles in a separate process: the biggest source it takes (bytes),
    # how long it may take (seconds) and its memory (address space), and how many at once.
    validate: ValidateSettings = attrs.field(factory=ValidateSettings)
    # Image of every profile that sets none (default python:3.11-slim) and of datascience.
    default_image: str | None = attrs.field(default=None, validator=_optional_name)
    datascience_image: str | None = attrs.field(default=None, validator=_optional_name)
    # Engine API: connecting (an unreachable engine fails within it) and any single call.
    connect_timeout: float = attrs.field(default=1.5, validator=seconds())
    call_timeout: float = attrs.field(default=30.0, validator=seconds())

    def __attrs_post_init__(self) -> None:
        from gleitzeit_docker.errors import ProfileError

        for name in self.profiles:  # one at a time, so the error names the profile
            try:
                self.profile_set(only=name)
            except (ProfileError, TypeError, ValueError) as exc:
                raise SettingsProblem(f"profiles.{name}", str(exc)) from None
        try:
            profiles = self.profile_set()
        except ProfileError as exc:
            raise SettingsProblem("profiles", str(exc)) from None
        try:
            profiles.get(self.default_profile)
        except ProfileError as exc:
            raise SettingsProblem("default_profile", str(exc)) from None
        for index, name in enumerate(self.client_profiles):
            known = profiles.profiles.get(name)
            if known is None or known.networked:
                why = "unknown" if known is None else "networked (a key must name it)"
                raise SettingsProblem(
                    "client_profiles",
                    f"{name!r} is {why}; expected one of "
                    + ", ".join(sorted(n for n, p in profiles.profiles.items() if not p.networked)),
                    index=index,
                )

    def profile_config(self, only: str | None = None) -> dict[str, Any]:
        """The mapping ``load_profiles`` takes (``pids`` renamed to ``pids_limit``)."""
        from gleitzeit_docker.errors import ProfileError

        profiles: dict[str, dict[str, Any]] = {}
        for name, fields in self.profiles.items():
            if only is not None and name != only:
                continue
            fields = dict(fields)
            if "pids" in fields:
                if "pids_limit" in fields:
                    raise ProfileError(f"profile {name!r}: give pids or pids_limit, not both")
                fields["pids_limit"] = fields.pop("pids")
            profiles[name] = fields
        config: dict[str, Any] = {"allow_trusted": self.allow_trusted, "profiles": profiles}
        if self.default_image is not None:
            config["default_image"] = self.default_image
        if self.datascience_image is not None:
            config["datascience_image"] = self.datascience_image
        return config

    def profile_set(self, only: str | None = None) -> Any:
        """The ``ProfileSet`` these settings describe (``ProfileError`` if they are wrong);
        ``only``: apply the overrides of that one profile."""
        from gleitzeit_docker.profiles import load_profiles

        return load_profiles(self.profile_config(only))


def engine_options(options: Mapping[str, Any]) -> EngineOptions:
    """The options the core stored on a resource spec, back as ``EngineOptions``."""
    known = {a.name for a in attrs.fields(EngineOptions)}
    return EngineOptions(**{k: v for k, v in options.items() if k in known})


# -- container labels: whose containers are whose ------------------------------------------
def default_hub_id(name: str) -> str:
    """``NAME@HOSTNAME``: stable across restarts on one host, so a restarted process finds
    the orphans of its crashed predecessor (set ``hub_id`` where hostnames change)."""
    return f"{name}@{socket.gethostname()}"
