"""The ``ollama`` probe: liveness from ``/api/version``, models from ``/api/ps`` and ``/api/tags``.

Each probe asks, at the same time and each with the probe's timeout, ``GET /api/version``
(liveness and latency), ``GET /api/ps`` (loaded models and when they expire; every probe) and,
every ``tags_interval`` seconds, ``GET /api/tags`` (installed models). The version decides
health; the model lists update ``resource.attributes`` whenever they answer. It never raises:
a failure is ``ProbeResult(False, detail=...)``.

One more step while the hub has the instance *ejected* (its requests kept failing): a
successful probe ends an ejection early, and ``/api/version`` answers even when every model
runner is broken. So an ejected instance must also serve a load-only ``/api/generate`` (no
prompt) for a model it has loaded - instant for a loaded model, and sent with the keep_alive it
has left, so it neither loads anything nor changes when the model leaves.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp

from gleitzeit_core import LimitExceeded, ProbeResult, Resource
from gleitzeit_ollama.client import read_object, refused
from gleitzeit_ollama.errors import BadAnswer
from gleitzeit_ollama.models import (
    LOADED,
    TAGS_AT,
    VERSION,
    loaded_models,
    record_ps,
    record_tags,
)
from gleitzeit_ollama.settings import OllamaSettings

__all__ = ["OllamaProbe", "check_instance", "get_small_json", "serves_a_loaded_model"]

_DEFAULT_TAGS_INTERVAL = 60.0


# Entries of one /api/tags or /api/ps listing. max_probe_bytes alone does not bound them: at
# ~15 bytes an entry ({"name":"m1"}) 4 MiB lists 250,000 models, and the gateway decoded, kept
# and merged each (one such listing took it to 320 MiB and a merged /api/tags to 5 s). A real
# tags entry has ~12 values, so a probe answer may have 16 per model, checked before decoding.
MAX_LISTED_MODELS = 10_000
MAX_PROBE_VALUES = 16 * MAX_LISTED_MODELS


class _BadStatus(Exception):
    pass


async def get_small_json(
    session: aiohttp.ClientSession,
    base: str,
    path: str,
    *,
    timeout: float,
    settings: OllamaSettings,
    resource: Resource | None = None,
) -> tuple[float, dict[str, Any]]:
    """``GET base+path`` within ``timeout``: a JSON object of at most ``max_probe_bytes``
    (these answers are small; a huge, endless or malformed one is a ``BadAnswer``) and the
    time it took."""
    started = time.monotonic()
    url = base.rstrip("/") + path
    async with session.get(  # a redirect is the instance's failure, never followed
        url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
    ) as response:
        if response.status != 200:
            raise _BadStatus(f"HTTP {response.status} from {path}")
        data = await read_object(
            response,
            settings,
            resource=resource,
            what=f"the answer of {path}",
            limit=settings.max_probe_bytes,
            limit_name="max_probe_bytes",
            max_values=min(MAX_PROBE_VALUES, settings.max_json_values),
        )
    listed = data.get("models")
    if isinstance(listed, list) and len(listed) > MAX_LISTED_MODELS:
        raise refused(
            resource,
            LimitExceeded(
                "max_listed_models",
                MAX_LISTED_MODELS,
                f"the answer of {path} lists {len(listed)} models, more than {MAX_LISTED_MODELS}",
            ),
        )
    return time.monotonic() - started, data


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def check_instance(
    session: aiohttp.ClientSession,
    resource: Resource,
    *,
    timeout: float,
    tags: bool,
    settings: OllamaSettings | None = None,
) -> ProbeResult:
    """Probe one instance and record its models; never raises (except on cancellation).

    Healthy when ``/api/version`` answers and none of the three answers broke a bound or was
    malformed (an instance that sends such answers is broken or hostile, whatever its version
    says); ``/api/ps`` or ``/api/tags`` merely not answering in time is a note."""
    limits = settings or OllamaSettings()
    base = resource.endpoint

    def get(path: str) -> Any:
        return get_small_json(
            session, base, path, timeout=timeout, settings=limits, resource=resource
        )

    calls = [get("/api/version"), get("/api/ps")]
    if tags:
        calls.append(get("/api/tags"))
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, asyncio.CancelledError):
            raise result
    version = results[0]
    if isinstance(version, BaseException):
        resource.attributes[LOADED] = {}  # whatever it had loaded is not to be counted on
        return ProbeResult(False, None, _describe(version, timeout))
    bad = [r for r in results if isinstance(r, BadAnswer)]
    if bad:
        resource.attributes[LOADED] = {}
        return ProbeResult(False, version[0], "; ".join(map(str, bad)))
    latency, answer = version
    resource.attributes[VERSION] = answer.get("version")
    notes = []
    ps = results[1]
    if isinstance(ps, BaseException):
        notes.append(f"/api/ps: {_describe(ps, timeout)}")
    else:
        record_ps(resource, ps[1], time.time())
    if tags:
        listing = results[2]
        if isinstance(listing, BaseException):
            notes.append(f"/api/tags: {_describe(listing, timeout)}")
        else:
            record_tags(resource, listing[1], time.monotonic())
    return ProbeResult(True, latency, "; ".join(notes))


async def serves_a_loaded_model(
    session: aiohttp.ClientSession, resource: Resource, *, timeout: float
) -> str | None:
    """Ask for a load-only generate of the loaded model that stays longest; ``None`` if it
    worked (or nothing is loaded, so there is nothing cheap to try), else what went wrong."""
    now = time.time()
    loaded = {m: at for m, at in loaded_models(resource).items() if at > now}
    if not loaded:
        return None
    model, until = max(loaded.items(), key=lambda item: item[1])
    keep_alive: float | int = -1 if math.isinf(until) else max(1, round(until - now))
    body = {"model": model, "keep_alive": keep_alive, "stream": False}
    url = resource.endpoint.rstrip("/") + "/api/generate"
    try:
        async with session.post(
            url, json=body, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as response:
            if response.status == 200:
                return None  # the body is not read: leaving closes the connection
            text = (await response.content.read(200)).decode("utf-8", "replace")
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return f"ejected, and a load-only generate of {model} failed: {_describe(exc, timeout)}"
    return f"ejected, and a load-only generate of {model} got HTTP {response.status}: {text}"


class OllamaProbe:
    """Registered as ``ollama``; built by the core with the health ``timeout`` and the hub.

    Uses the hub's session when the hub has one open (no extra connections), else its own,
    closed by ``close()``.
    """

    name = "ollama"

    def __init__(self, *, timeout: float = 2.0, hub: Any = None) -> None:
        if not timeout > 0:
            raise ValueError(f"probe timeout must be > 0, got {timeout!r}")
        self.timeout = timeout
        self.hub = hub
        self._own: aiohttp.ClientSession | None = None

    @property
    def tags_interval(self) -> float:
        settings = getattr(self.hub, "settings", None)
        return float(getattr(settings, "tags_interval", _DEFAULT_TAGS_INTERVAL))

    def _session(self) -> aiohttp.ClientSession:
        shared = getattr(self.hub, "open_session", None)
        if shared is not None:
            session: aiohttp.ClientSession | None = shared()
            if session is not None:
                return session
        if self._own is None or self._own.closed:
            self._own = aiohttp.ClientSession()
        return self._own

    def tags_due(self, resource: Resource) -> bool:
        last = resource.attributes.get(TAGS_AT)
        return last is None or time.monotonic() - last >= self.tags_interval

    def _ejected(self, resource: Resource) -> bool:
        clock = getattr(self.hub, "clock", None)
        return resource.is_ejected(clock.now() if clock is not None else time.monotonic())

    async def probe(self, resource: Resource) -> ProbeResult:
        try:
            session = self._session()
            started = time.monotonic()
            settings = getattr(self.hub, "settings", None)
            result = await check_instance(
                session,
                resource,
                timeout=self.timeout,
                tags=self.tags_due(resource),
                settings=settings if isinstance(settings, OllamaSettings) else None,
            )
            shared = getattr(self.hub, "loaded_changed", None)
            if shared is not None:  # tell the other gateway replicas what it has loaded
                shared(resource)
            if result.ok and self._ejected(resource):
                left = max(0.05, self.timeout - (time.monotonic() - started))
                problem = await serves_a_loaded_model(session, resource, timeout=left)
                if problem is not None:
                    return ProbeResult(False, result.latency, problem)
            return result
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a probe reports, it never raises
            return ProbeResult(False, None, f"probe failed: {_describe(exc, self.timeout)}")

    async def close(self) -> None:
        own, self._own = self._own, None
        if own is not None:
            await own.close()
