"""What the old Ollama classes share: enums, per-instance views, old single-pass selection,
the legacy path's HTTP calls, and the old request bodies and result shapes."""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from gleitzeit_ollama.api import ImageFiles, failure_for_status, normalize_model, read_image

from gleitzeit_core import (
    FailureClass,
    Health,
    InvalidParams,
    Resource,
    ResourceError,
    ResourceHub,
    current_caller,
)

__all__ = [
    "CallTimeout",
    "InstanceMetrics",
    "InstanceState",
    "LegacyHttp",
    "LoadBalancingStrategy",
    "OllamaInstance",
    "encode_images",
    "select_legacy",
    "state_of",
]

_WINDOW = 100  # the old pool kept the last 100 response times


class InstanceState(enum.StrEnum):
    """The old instance states (``str`` values, as the old status dicts show them)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class LoadBalancingStrategy(enum.StrEnum):
    """The old pool's strategy names; each maps to a hub strategy (docs/migration.md)."""

    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"
    RANDOM = "random"
    MODEL_AFFINITY = "model_affinity"
    LATENCY_BASED = "latency_based"
    WEIGHTED = "weighted"


def state_of(hub: ResourceHub, resource: Resource) -> InstanceState:
    """The old state of a hub resource: unhealthy; degraded (a failed probe not yet enough to
    be unhealthy, ejected for failing requests, or its breaker half-open); healthy; unknown."""
    if resource.health is Health.UNHEALTHY:
        return InstanceState.UNHEALTHY
    if (
        resource.probe_failures > 0
        or resource.is_ejected(hub.clock.now())
        or resource.breaker.state.value == "half_open"
    ):
        return InstanceState.DEGRADED
    if resource.health is Health.HEALTHY:
        return InstanceState.HEALTHY
    return InstanceState.UNKNOWN


class InstanceMetrics:
    """The old per-instance numbers, fed by every finished lease of the hub (either path).

    ``response_times`` are seconds (the last 100 successes); ``error_rate`` is a 0..1 fraction
    as before; ``active_requests`` is the hub's live in-flight count.
    """

    def __init__(self, resource: Resource | None = None) -> None:
        self._resource = resource
        self.response_times: list[float] = []
        self.error_count = 0
        self.success_count = 0
        self.total_requests = 0
        self.last_error_time: float | None = None
        self.last_success_time: float | None = None
        self.models_loaded: list[str] = []

    @property
    def active_requests(self) -> int:
        return self._resource.in_flight if self._resource is not None else 0

    @property
    def avg_response_time(self) -> float:
        """Mean of the recorded response times in seconds (0.0 before the first)."""
        times = self.response_times
        return sum(times) / len(times) if times else 0.0

    @property
    def error_rate(self) -> float:
        done = self.error_count + self.success_count
        return self.error_count / done if done else 0.0

    @property
    def availability(self) -> float:
        """Successes in percent of finished calls (100 before the first)."""
        done = self.error_count + self.success_count
        return 100.0 * self.success_count / done if done else 100.0

    def record(self, duration: float | None, failure: FailureClass | None) -> None:
        if failure is FailureClass.CANCELLED:
            return  # released without an outcome: neither a success nor an error
        self.total_requests += 1
        if failure is None:
            self.success_count += 1
            self.last_success_time = time.time()
            if duration is not None:
                self.response_times.append(duration)
                del self.response_times[:-_WINDOW]
        else:
            self.error_count += 1
            self.last_error_time = time.time()


class OllamaInstance:
    """One configured instance as the old pool exposed it, backed by a hub resource."""

    def __init__(self, hub: ResourceHub, spec: Mapping[str, Any], resource: Resource) -> None:
        self._hub = hub
        self.resource = resource
        self.id: str = resource.id
        self.url: str = resource.endpoint.rstrip("/")
        self.models: list[str] = list(spec.get("models", []))
        self.max_concurrent: int = int(spec.get("max_concurrency", 5))
        self.tags: list[str] = list(spec.get("labels", []))
        self.priority: int = int(spec.get("priority", 1))
        self.weight: float = float(spec.get("weight", 1.0))
        self.specialization: str | None = spec.get("specialization")
        self.metrics = InstanceMetrics(resource)

    @property
    def state(self) -> InstanceState:
        return state_of(self._hub, self.resource)

    @property
    def models_loaded(self) -> list[str]:
        """Installed models as the hub last saw them (``[]`` before the first answer)."""
        installed = self._hub.describe(self.resource).get("installed")
        return list(installed) if isinstance(installed, list | tuple | set | frozenset) else []

    def installed_known(self) -> bool:
        return self._hub.describe(self.resource).get("installed") is not None

    def has_model(self, model: str) -> bool:
        """Configured or installed (names normalised); unknown inventory counts as maybe."""
        wanted = normalize_model(model)
        if wanted in {normalize_model(m) for m in self.models}:
            return True
        if not self.installed_known():
            return not self.models  # nothing known at all: let the instance answer
        return wanted in {normalize_model(m) for m in self.models_loaded}

    def __repr__(self) -> str:
        return f"<OllamaInstance {self.id} {self.url} {self.state.value}>"


def _least_loaded(instances: Sequence[OllamaInstance]) -> OllamaInstance:
    # the old rule: fewest active requests, ties to the first in configuration order
    return min(instances, key=lambda i: i.metrics.active_requests)


def select_legacy(
    instances: Sequence[OllamaInstance],
    strategy: LoadBalancingStrategy,
    model: str | None,
    *,
    rng: random.Random,
    counter: list[int],
) -> OllamaInstance | None:
    """The old pool's single-pass choice among already filtered instances."""
    if not instances:
        return None
    if strategy is LoadBalancingStrategy.ROUND_ROBIN:
        chosen = instances[counter[0] % len(instances)]
        counter[0] += 1
        return chosen
    if strategy is LoadBalancingStrategy.RANDOM:
        return rng.choice(list(instances))
    if strategy is LoadBalancingStrategy.MODEL_AFFINITY:
        if model:
            wanted = normalize_model(model)
            warm = [i for i in instances if wanted in {normalize_model(m) for m in i.models_loaded}]
            if warm:
                return _least_loaded(warm)
        return _least_loaded(instances)
    if strategy is LoadBalancingStrategy.LATENCY_BASED:
        # never measured counts as infinitely slow, as before
        def latency(instance: OllamaInstance) -> float:
            return instance.metrics.avg_response_time or float("inf")

        return min(instances, key=latency)
    if strategy is LoadBalancingStrategy.WEIGHTED:
        return rng.choices(list(instances), weights=[i.weight for i in instances])[0]
    return _least_loaded(instances)


# The old API read any host file an in-process caller named; gateway clients get none.
_HOST_FILES = ImageFiles(["/"], max_bytes=64 * 2**20)


def encode_images(method: str, images: Sequence[Any]) -> list[str]:
    """Images as base64, by the Ollama plugin's rules (base64 or a ``data:`` URI), plus what
    the old API took: ``bytes``, and file paths for in-process code only; a request made for a
    gateway client (``current_caller()`` set) never reads a host file."""
    files = _HOST_FILES if current_caller() is None else None
    encoded: list[str] = []
    problems: list[str] = []
    for index, image in enumerate(images):
        if isinstance(image, bytes):
            encoded.append(base64.b64encode(image).decode("ascii"))
            continue
        converted = read_image(image, files) if isinstance(image, str) else None
        if converted is None:
            expected = "a data: URI or a file path" if files else "or a data: URI"
            problems.append(f"params.images[{index}]: expected base64, {expected}")
        else:
            encoded.append(converted)
    if problems:
        raise InvalidParams(method, problems)
    return encoded


class CallTimeout(ResourceError, TimeoutError):
    """No answer within the call's timeout (``except TimeoutError`` catches it)."""


class LegacyHttp:
    """The legacy path's HTTP client: one session per old object, a hard timeout per call."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
            )
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(
        self, resource: str, base_url: str, path: str, body: Mapping[str, Any], timeout: float
    ) -> dict[str, Any]:
        """POST ``body``; Ollama's JSON answer, or a ``ResourceError`` with its failure class.

        The timeout bounds the whole call (the old code passed one too, but wrapped it around
        blocking work elsewhere; here it always holds)."""
        url = base_url.rstrip("/") + path
        try:
            async with asyncio.timeout(timeout):
                async with self.session.post(url, json=dict(body)) as response:
                    raw = await response.read()
                    status = response.status
        except TimeoutError:
            raise CallTimeout(
                f"no answer from {path} within {timeout:g} s",
                failure=FailureClass.TIMEOUT,
                resource=resource,
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ResourceError(
                f"{type(exc).__name__}: {exc}", failure=FailureClass.CONNECTION, resource=resource
            ) from exc
        text = raw.decode("utf-8", "replace")
        if status != 200:
            message = text.strip()
            try:
                decoded = json.loads(raw)
                if isinstance(decoded, dict) and "error" in decoded:
                    message = str(decoded["error"])
            except ValueError:
                pass
            raise ResourceError(
                f"Ollama API error: HTTP {status} from {path}: {message}",
                failure=failure_for_status(status),
                resource=resource,
                status=status,
                body=message,
            )
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ResourceError(
                f"{path} did not answer with a JSON object: {text[:200]!r}",
                failure=FailureClass.PROTOCOL,
                resource=resource,
            )
        if "error" in answer:
            raise ResourceError(
                f"error from {path}: {answer['error']}",
                failure=FailureClass.PROTOCOL,
                resource=resource,
                status=200,
                body=answer["error"],
            )
        return answer
