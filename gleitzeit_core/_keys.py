"""API keys of the gateway: which token is which caller, and how much each may ask for.

``[gateway.keys.NAME]`` tables become :class:`KeyConfig`; a :class:`KeyRing` built from the
gateway config turns a presented token into a :class:`~gleitzeit_core._caller.Caller` and admits
or refuses each request by the key's ``requests_per_minute`` and ``max_concurrent``. The
single ``[gateway] token`` (or ``GLEITZEIT_GATEWAY_TOKEN``) is an admin key named ``admin``.
With no key at all the ring has an anonymous caller instead (see docs/security.md), so a
gateway on loopback works with no configuration, as before.

Tokens are never kept, compared or shown as given: the ring keeps SHA-256 digests and looks a
presented token up by its digest, so any bytes (non-ASCII included) are a plain miss, and the
time a lookup takes says nothing useful about a real token. Counters are keyed by the key's
name, which is what status and metrics show.

Where the limits are counted depends on the runtime's state backend: the in-process default
keeps them here (a token bucket and a count, no await); a shared backend (``[state] backend =
"redis"``) counts them for the whole fleet of replicas (its ``take`` and ``enter``/``leave``),
and falls back to this process's own counts while the store is unreachable.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections.abc import Mapping
from typing import Any

import attrs

from ._caller import Caller
from ._errors import ConfigError
from ._state import StateBackend
from ._validators import FieldError, at_least, satisfies

__all__ = ["ANONYMOUS", "CallerCounters", "KeyConfig", "KeyRing", "token_digest"]

ANONYMOUS = "local"  # the caller's name on a gateway without keys
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def token_digest(token: str | bytes) -> bytes:
    """SHA-256 of a token's bytes; header text that is not valid UTF-8 keeps its raw bytes."""
    raw = token if isinstance(token, bytes) else token.encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).digest()


@attrs.frozen(kw_only=True)
class KeyConfig:
    """``[gateway.keys.NAME]``: one client's token (exactly one of ``token``, ``token_env`` or
    ``token_sha256``) and scopes. ``methods``/``models`` are globs; ``profiles`` names the
    sandbox profiles it may choose (unset: the hub's defaults for untrusted clients)."""

    token: str | None = attrs.field(default=None, validator=satisfies("a non-empty token", bool))
    token_env: str | None = attrs.field(
        default=None, validator=satisfies("an environment variable name", bool)
    )
    token_sha256: str | None = attrs.field(
        default=None,
        validator=satisfies("64 hex digits (sha256 of the token)", _HEX64.match),
    )
    methods: list[str] = attrs.field(factory=lambda: ["*"])
    models: list[str] = attrs.field(factory=lambda: ["*"])
    profiles: list[str] | None = None
    admin: bool = False
    max_concurrent: int | None = attrs.field(default=None, validator=at_least(1))
    requests_per_minute: int | None = attrs.field(default=None, validator=at_least(1))

    def __attrs_post_init__(self) -> None:
        given = [self.token, self.token_env, self.token_sha256]
        if sum(value is not None for value in given) != 1:
            raise FieldError("token", "give exactly one of token, token_env or token_sha256")

    def digest(self, name: str, environ: Mapping[str, str]) -> bytes:
        if self.token_sha256 is not None:
            return bytes.fromhex(self.token_sha256)
        if self.token_env is not None:
            value = environ.get(self.token_env)
            if not value:
                raise ConfigError(
                    f"gateway.keys.{name}.token_env: environment variable {self.token_env} "
                    "is not set or empty; set it or give token/token_sha256"
                )
            return token_digest(value)
        assert self.token is not None
        return token_digest(self.token)

    def caller(self, name: str) -> Caller:
        profiles = tuple(self.profiles) if self.profiles is not None else None
        return Caller(
            name=name,
            admin=self.admin,
            methods=tuple(self.methods),
            models=tuple(self.models),
            profiles=profiles,
            max_concurrent=self.max_concurrent,
        )


@attrs.define
class CallerCounters:
    """What one key did since the gateway started (for status and metrics)."""

    requests: int = 0  # admitted
    in_flight: int = 0
    rate_limited: int = 0  # 429: requests_per_minute
    concurrency_limited: int = 0  # 429: max_concurrent
    denied: int = 0  # 403: outside its scopes


@attrs.define
class _Key:
    caller: Caller
    max_concurrent: int | None
    per_minute: int | None
    rate: float | None  # tokens per second; bucket size is one minute's worth
    capacity: float
    tokens: float
    stamp: float
    counters: CallerCounters

    def retry_after(self, now: float) -> float | None:
        """Take one request from the bucket; seconds to wait when it is empty."""
        if self.rate is None:
            return None
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


class KeyRing:
    """Tokens -> callers, with each key's limits and counters.

    With a state backend that is not shared (the default), limits are a token bucket per key
    (``requests_per_minute`` tokens, refilled evenly, so a quiet key may burst one minute's
    worth) and a count of requests in flight, in this process only. With a shared ``state``
    they are the backend's sliding window (at most ``requests_per_minute`` in any 60 s) and
    concurrency count, across every replica that shares it.
    """

    def __init__(
        self,
        keys: Mapping[str, KeyConfig],
        *,
        anonymous: Caller | None = None,
        environ: Mapping[str, str] | None = None,
        counters: dict[str, CallerCounters] | None = None,
        clock: Any = time.monotonic,
        state: StateBackend | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.clock = clock
        # only a shared backend changes anything: the local one would count what we count here
        self.state = state if state is not None and state.shared else None
        self.counters: dict[str, CallerCounters] = {} if counters is None else counters
        self.anonymous = anonymous
        self._by_digest: dict[bytes, _Key] = {}
        self._anonymous_key = self._entry(anonymous, None) if anonymous else None
        for name, config in keys.items():
            digest = config.digest(name, env)
            if digest in self._by_digest:
                other = self._by_digest[digest].caller.name
                raise ConfigError(f"gateway.keys.{name}: same token as key {other!r}")
            key = self._entry(config.caller(name), config)
            self._by_digest[digest] = key

    def _entry(self, caller: Caller, config: KeyConfig | None) -> _Key:
        per_minute = config.requests_per_minute if config else None
        counters = self.counters.setdefault(caller.name, CallerCounters())
        return _Key(
            caller=caller,
            max_concurrent=config.max_concurrent if config else None,
            per_minute=per_minute,
            rate=per_minute / 60.0 if per_minute else None,
            capacity=float(per_minute or 0),
            tokens=float(per_minute or 0),
            stamp=self.clock(),
            counters=counters,
        )

    @classmethod
    def from_config(
        cls,
        gateway: Any,
        *,
        token: str | None = None,
        environ: Mapping[str, str] | None = None,
        counters: dict[str, CallerCounters] | None = None,
        state: StateBackend | None = None,
    ) -> KeyRing:
        """The keys of a ``GatewayConfig``: ``keys`` plus the single ``token`` (else
        ``token_env``'s variable) as an admin key named ``admin``. No key at all: an anonymous
        admin caller named ``local`` (the gateway decides whether it may serve without keys)."""
        env = os.environ if environ is None else environ
        keys: dict[str, KeyConfig] = dict(getattr(gateway, "keys", None) or {})
        single = token or gateway.token or env.get(gateway.token_env) or None
        if single is not None:
            if "admin" in keys:
                raise ConfigError(
                    "gateway.keys.admin: the name is taken by [gateway] token; rename the key"
                )
            keys["admin"] = KeyConfig(token=single, admin=True)
        anonymous = None if keys else Caller(name=ANONYMOUS, admin=True)
        return cls(keys, anonymous=anonymous, environ=env, counters=counters, state=state)

    def adopt(self, other: KeyRing) -> list[str]:
        """Serve ``other``'s keys from now on (a config reload): requests in flight finish
        under the key they came with; a key whose name and rate stay keeps its bucket.
        Returns what changed, one line per key name."""
        before = {key.caller.name: key for key in self._by_digest.values()}
        after = {key.caller.name: key for key in other._by_digest.values()}
        for name, key in after.items():
            kept = before.get(name)
            if kept is not None and kept.rate == key.rate:
                key.tokens, key.stamp = kept.tokens, kept.stamp
        changed = [f"gateway.keys: added {n}" for n in sorted(after.keys() - before.keys())]
        changed += [f"gateway.keys: removed {n}" for n in sorted(before.keys() - after.keys())]
        changed += [
            f"gateway.keys: changed {n}"
            for n in sorted(after.keys() & before.keys())
            if after[n].caller != before[n].caller
            or after[n].rate != before[n].rate
            or after[n].max_concurrent != before[n].max_concurrent
        ]
        self._by_digest, self._anonymous_key = other._by_digest, other._anonymous_key
        self.anonymous = other.anonymous
        return changed

    @property
    def open(self) -> bool:
        """True when no key is configured and every request is the anonymous caller."""
        return self._anonymous_key is not None

    def lookup(self, token: str | None) -> _Key | None:
        """The key a presented token belongs to (the anonymous one on an open ring)."""
        if self._anonymous_key is not None:
            return self._anonymous_key
        if not token:
            return None
        return self._by_digest.get(token_digest(token))

    async def admit(self, key: _Key) -> tuple[str, float] | None:
        """Count a request in, or say which limit refuses it and when to retry."""
        counters = key.counters
        if key.max_concurrent is not None and counters.in_flight >= key.max_concurrent:
            # this process alone is at the limit: no need to ask a shared backend
            counters.concurrency_limited += 1
            return "max_concurrent", 1.0
        if self.state is not None and (key.max_concurrent or key.per_minute):
            refused = await self._admit_shared(key, self.state)
            if refused is not None:
                return refused
        else:
            wait = key.retry_after(self.clock())
            if wait is not None:
                counters.rate_limited += 1
                return "requests_per_minute", wait
        counters.requests += 1
        counters.in_flight += 1
        return None

    @staticmethod
    async def _admit_shared(key: _Key, state: StateBackend) -> tuple[str, float] | None:
        bucket = _bucket(key)
        entered = False
        if key.max_concurrent is not None:
            if not await state.enter(bucket, key.max_concurrent):
                key.counters.concurrency_limited += 1
                return "max_concurrent", 1.0
            entered = True
        if key.per_minute is not None:
            try:
                wait = await state.take(bucket, key.per_minute)
            except BaseException:  # the client went away meanwhile: its place is free again
                if entered:
                    state.leave(bucket)
                raise
            if wait > 0.0:
                if entered:
                    state.leave(bucket)
                key.counters.rate_limited += 1
                return "requests_per_minute", wait
        return None

    def release(self, key: _Key) -> None:
        """End a request :meth:`admit` admitted."""
        key.counters.in_flight -= 1
        if self.state is not None and key.max_concurrent is not None:
            self.state.leave(_bucket(key))

    @staticmethod
    def retry_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))


def _bucket(key: _Key) -> str:
    # what a shared backend counts a key's limits under (its name: the same on every replica)
    return f"key:{key.caller.name}"
