"""``OllamaPoolProvider`` and the single-instance ``OllamaProvider`` over an Ollama hub.

Both build an Ollama hub from their old arguments and run each call on one of two paths:

* **hub**: ``runtime.execute("llm/...", params)`` - the llm/v1 provider and the hub choose the
  instance (strategy, model tiers, per-model slots, breaker, failover to untried instances
  within the deadline). A call that needs routing llm/v1 parameters cannot express (instance
  tags, ``require_gpu``, a strategy other than the hub's) runs through ``hub.call`` with the
  same failover, the HTTP call made here.
* **legacy**: the old single-pass filter and strategy choose, the call goes straight to the
  instance - but without the old bugs: a retry never goes back to an instance this request
  already tried, ``max_tokens`` reaches Ollama as ``options.num_predict``, and the timeout
  bounds the whole call.

``FEATURES`` (``gleitzeit.config.features``) picks the path per call - or the object's own
``features=`` - and both paths report to the per-path figures (``paths`` in the status).
Results have the old shapes on both paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, overload

import attrs
from typing_extensions import deprecated

from gleitzeit_core import (
    FailureClass,
    InvalidParams,
    Lease,
    NoResourceAvailable,
    RequestTimeout,
    Runtime,
    UnknownMethod,
)

from .adapter import HubProviderAdapter
from .backend import HUB, LEGACY, Backend, Timer, failure_of, request_timeout
from .deprecation import warn_once
from .ollama_common import LegacyHttp, LoadBalancingStrategy, encode_images
from .ollama_hub import OllamaHub
from .ollama_pool import OllamaPoolManager, add_resources, make_ollama_backend
from .translate import STRATEGIES, ollama_hub_table

__all__ = ["LlmCall", "LlmShim", "OllamaPoolProvider", "OllamaProvider"]

_PATHS = {
    "llm/generate": "/api/generate",
    "llm/vision": "/api/generate",
    "llm/chat": "/api/chat",
    "llm/embed": "/api/embed",
}
_ALIASES = {"llm/complete": "llm/generate", "llm/embeddings": "llm/embed"}
_KEY_PARAMS = ("rollout_key", "session_id", "user_id")
_ROUTING_PARAMS = ("load_balancing_strategy", "instance_tags", "require_gpu", *_KEY_PARAMS)
_EXTRA_FIELDS = ("system", "format", "keep_alive")


@attrs.frozen
class LlmCall:
    """One LLM call, in terms both paths understand."""

    method: str  # the new method name (llm/generate, llm/chat, llm/vision, llm/embed)
    model: str
    fields: Mapping[str, Any]
    options: Mapping[str, Any] | None
    timeout: float
    tags: tuple[str, ...] = ()
    strategy: LoadBalancingStrategy = LoadBalancingStrategy.LEAST_LOADED
    key: str | None = None

    @property
    def ollama_path(self) -> str:
        return _PATHS[self.method]

    def params(self) -> dict[str, Any]:
        """Parameters of the llm/v1 method."""
        params: dict[str, Any] = {"model": self.model, **self.fields, "timeout": self.timeout}
        if self.options:
            params["options"] = dict(self.options)
        return params

    def body(self) -> dict[str, Any]:
        """The Ollama request body (sampling parameters under ``options``)."""
        body: dict[str, Any] = {"model": self.model, **self.fields}
        if self.method != "llm/embed":
            body["stream"] = False
        if self.options:
            body["options"] = dict(self.options)
        return body


class LlmShim:
    """Runs ``LlmCall``s on the hub or the legacy path and records which one served them."""

    def __init__(
        self,
        backend: Backend,
        manager: OllamaPoolManager,
        *,
        default_strategy: LoadBalancingStrategy,
        failover: bool,
        retry_attempts: int,
        names: tuple[str, ...] = (),
    ) -> None:
        self.names = names  # how FEATURES["hub_architecture_providers"] may name this provider
        self.backend = backend
        self.manager = manager
        self.default_strategy = default_strategy
        self.failover = failover
        self.retry_attempts = max(1, retry_attempts)
        self.http = LegacyHttp()

    async def run(self, call: LlmCall, path: str | None = None) -> dict[str, Any]:
        chosen = path or self.backend.path_for(call.key, self.names)
        timer = Timer()
        try:
            if chosen == HUB:
                answer = await self.hub_path(call)
            else:
                answer = await self.legacy_path(call)
        except BaseException as exc:
            self.backend.record(chosen, timer.elapsed(), failure_of(exc))
            raise
        self.backend.record(chosen, timer.elapsed(), None)
        return answer

    def _hub_strategy(self, strategy: LoadBalancingStrategy) -> str:
        return STRATEGIES[strategy.value][0]

    async def hub_path(self, call: LlmCall) -> dict[str, Any]:
        plain = not call.tags and self._hub_strategy(call.strategy) == self._hub_strategy(
            self.default_strategy
        )
        if plain:
            answer = await self.backend.runtime.execute(call.method, call.params())
            if not isinstance(answer, dict):
                raise TypeError(f"{call.method} returned {type(answer).__name__}, not a dict")
            return answer
        hub = self.backend.hub
        request = self.manager.hub_request(
            call.model, call.tags, deadline=hub.clock.now() + call.timeout
        )
        body = call.body()

        async def attempt(lease: Lease) -> dict[str, Any]:
            resource = lease.resource
            return await self.http.post(
                resource.id, resource.endpoint, call.ollama_path, body, call.timeout
            )

        return await hub.call(
            attempt, request, strategy=self.manager.strategy_object(call.strategy)
        )

    async def legacy_path(self, call: LlmCall) -> dict[str, Any]:
        hub = self.backend.hub
        clock = hub.clock
        deadline = clock.now() + call.timeout
        attempts = self.retry_attempts if self.failover else 1
        tried: list[str] = []
        last_error: BaseException | None = None
        body = call.body()
        for _ in range(attempts):
            remaining = deadline - clock.now()
            if remaining <= 0:
                break
            lease = self.manager.legacy_lease(call.model, call.tags, call.strategy, True, tried)
            if lease is None:
                if last_error is not None:
                    raise last_error
                raise NoResourceAvailable(
                    hub.name,
                    self.manager.legacy_reasons(call.model, call.tags, tried),
                    "legacy path: no instance passes the old pool rules",
                )
            resource = lease.resource
            tried.append(resource.id)
            try:
                answer = await self.http.post(
                    resource.id, resource.endpoint, call.ollama_path, body, remaining
                )
            except BaseException as exc:
                failure = hub.classify(exc)
                lease.fail(failure)
                if failure is FailureClass.CANCELLED or not failure.retryable:
                    raise
                last_error = exc
                continue
            lease.succeed()
            # as the hub path's answers say: which instance served it, after how many tries
            answer["gleitzeit"] = {"instance": resource.id, "attempts": len(tried)}
            return answer
        if last_error is not None:
            raise last_error
        raise RequestTimeout(f"legacy path: no answer within {call.timeout:g} s")

    async def close(self) -> None:
        await self.http.close()


# -- parameter handling shared by both providers ------------------------------------------------
def _text(method: str, params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    if not isinstance(value, str):
        raise InvalidParams(method, [f"params.{name}: expected a string, got {value!r}"])
    return value


def _number(method: str, params: Mapping[str, Any], name: str, default: Any) -> Any:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParams(method, [f"params.{name}: expected a number, got {value!r}"])
    return value


def _options(
    method: str, params: Mapping[str, Any], *, temperature: Any, top_p: Any, max_tokens: Any
) -> dict[str, Any]:
    """Sampling options where Ollama reads them; ``max_tokens`` becomes ``num_predict``."""
    options: dict[str, Any] = {}
    extra = params.get("options")
    if isinstance(extra, Mapping):
        options.update(extra)
        if "max_tokens" in options:
            options.setdefault("num_predict", options.pop("max_tokens"))
    for name, default, key in (
        ("temperature", temperature, "temperature"),
        ("top_p", top_p, "top_p"),
        ("max_tokens", max_tokens, "num_predict"),
        ("top_k", None, "top_k"),
        ("seed", None, "seed"),
    ):
        value = _number(method, params, name, default)
        if value is not None:
            options[key] = int(value) if key == "num_predict" else value
    return options


def _messages(method: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise InvalidParams(method, ["params.messages: expected a non-empty list of messages"])
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise InvalidParams(
                method, [f"params.messages[{index}]: expected {{role, content}}, got {message!r}"]
            )
        messages.append(dict(message))
    return messages


def _routing(
    params: Mapping[str, Any], default: LoadBalancingStrategy, fallback_key: str | None
) -> tuple[tuple[str, ...], LoadBalancingStrategy, str | None]:
    tags = list(params.get("instance_tags") or [])
    if params.get("require_gpu") and "gpu" not in tags:
        tags.append("gpu")  # a copy: the old code appended to the caller's list
    strategy = OllamaPoolManager._strategy(params.get("load_balancing_strategy") or default)
    key = next((str(params[k]) for k in _KEY_PARAMS if params.get(k) is not None), None)
    return tuple(str(t) for t in tags), strategy, key or fallback_key


def _durations(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "total_duration": raw.get("total_duration"),
        "load_duration": raw.get("load_duration"),
        "prompt_eval_duration": raw.get("prompt_eval_duration"),
        "eval_duration": raw.get("eval_duration"),
        "eval_count": raw.get("eval_count"),
    }


class _LlmAdapter(HubProviderAdapter):
    """What both Ollama providers share: dual-mode execution and lifecycle."""

    methods: tuple[str, ...] = ("llm/generate", "llm/chat", "llm/vision", "llm/embed")
    shim: LlmShim
    pool_manager: OllamaPoolManager
    backend: Backend
    hub: OllamaHub  # the hub-era view of the hub this provider runs on
    owns_hub: bool  # stopped with the provider (a hub passed in is left running)

    def get_supported_methods(self) -> list[str]:
        return list(self.methods)

    def _method(self, method: str) -> str:
        resolved = self.resolve(method)
        if resolved not in self.methods:
            raise UnknownMethod(method, [*self.methods, *self.aliases])
        return resolved

    async def initialize(self) -> None:
        if not self.backend.started:
            await self.hub.start()
            await self.pool_manager.initialize()

    async def shutdown(self) -> None:
        await self.pool_manager.shutdown()
        await self.shim.close()
        await self.backend.stop()
        if self.owns_hub:
            await self.hub.stop()

    def build(self, method: str, params: Mapping[str, Any]) -> LlmCall:
        raise NotImplementedError

    def shape(self, call: LlmCall, raw: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def execute(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run an old-style call on the path the feature flags choose; the old result shape."""
        return await self.execute_path(None, method, params)

    async def execute_path(
        self, path: str | None, method: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``execute`` on a given path (``"hub"``, ``"legacy"``, or ``None``: the flags')."""
        if path not in (None, HUB, LEGACY):
            raise ValueError(f"path must be 'hub' or 'legacy', got {path!r}")
        call = self.build(self._method(method), dict(params or {}))
        await self.initialize()
        raw = await self.shim.run(call, path)
        return self.shape(call, raw)

    async def _execute_with_hub(
        self, method: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The plan's Phase 6.2 name: this call on the hub path, whatever ``FEATURES`` says."""
        return await self.execute_path(HUB, method, params)

    async def _execute_legacy(
        self, method: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The plan's Phase 6.2 name: this call on the legacy path."""
        return await self.execute_path(LEGACY, method, params)

    async def _execute_generation(
        self, instance: Any, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The plan's Phase 2.2 step: ``llm/generate`` on the instance
        ``hub.get_instance_for_model`` chose (the old result shape)."""
        call = self.build("llm/generate", dict(params or {}))
        await self.initialize()
        timer = Timer()
        try:
            raw = await self.hub.execute_on_instance(instance.id, "generate", call.body())
        except BaseException as exc:
            self.backend.record(HUB, timer.elapsed(), failure_of(exc))
            raise
        self.backend.record(HUB, timer.elapsed(), None)
        return self.shape(call, raw)

    async def get_pool_status(self) -> dict[str, Any]:
        return await self.pool_manager.get_pool_status()

    def path_metrics(self) -> dict[str, Any]:
        """Calls per path (hub/legacy) with error rate and latency, from the runtime status."""
        return self.backend.path_status()


class OllamaPoolProvider(_LlmAdapter):
    """The old ``OllamaPoolProvider(provider_id, instances, load_balancing_config,
    circuit_breaker_config, timeout)`` (protocol ``llm/v1``)."""

    @overload
    def __init__(
        self,
        provider_id: str,
        *,
        hub: OllamaHub | None = None,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        rollout_key: str | None = None,
    ) -> None: ...

    @overload
    @deprecated(  # PEP 702: the pre-hub shape (a literal: checkers read no expressions)
        "OllamaPoolProvider is deprecated. Use OllamaPoolProvider(provider_id, "
        "hub=OllamaHub(...)) instead (docs/migration.md).",
        category=None,
    )
    def __init__(
        self,
        provider_id: str,
        instances: Sequence[Mapping[str, Any]],
        load_balancing_config: Mapping[str, Any] | None = None,
        circuit_breaker_config: Mapping[str, Any] | None = None,
        timeout: float = 60,
        *,
        hub: OllamaHub | str | None = None,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        rollout_key: str | None = None,
    ) -> None: ...

    def __init__(
        self,
        provider_id: str,
        instances: Sequence[Mapping[str, Any]] | None = None,
        load_balancing_config: Mapping[str, Any] | None = None,
        circuit_breaker_config: Mapping[str, Any] | None = None,
        timeout: float = 60,
        *,
        hub: OllamaHub | str | None = None,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        rollout_key: str | None = None,
    ) -> None:
        if instances is not None and not isinstance(hub, OllamaHub):
            warn_once("OllamaPoolProvider")  # the pre-hub shape; the plan's hub= shape is current
        lb = dict(load_balancing_config or {})
        table = ollama_hub_table(
            instances=list(instances or []),
            load_balancing=lb,
            circuit_breaker=circuit_breaker_config,
            timeout=timeout,
        )
        shared: OllamaHub | None = None
        if isinstance(hub, OllamaHub):
            shared, self.owns_hub = hub, False  # the plan's Phase 2: use the hub given
        elif instances is None and runtime is None:
            # the plan's Phase 2: no hub and no instances - a discovering hub of its own
            shared = OllamaHub(hub_id=f"{provider_id}-hub", auto_discover=True, features=features)
            self.owns_hub = True
        else:
            if not instances and runtime is None:
                raise ValueError("At least one Ollama instance must be configured")
            self.owns_hub = runtime is None
        if shared is not None:
            self.backend = make_ollama_backend(
                table, hub=shared.name, runtime=shared.runtime, features=features
            )
            add_resources(shared.core_hub, table)  # instances given as well join the hub
            self.hub = shared
        else:
            name = hub if isinstance(hub, str) else "llm"
            self.backend = make_ollama_backend(table, hub=name, runtime=runtime, features=features)
            self.hub = OllamaHub(name, _backend=self.backend)
        super().__init__(
            provider_id,
            "llm/v1",
            runtime=self.backend.runtime,
            name="Ollama Pool Provider",
            description="Multi-instance Ollama provider with load balancing",
            aliases=_ALIASES,
        )
        self.timeout = float(timeout)
        self.default_strategy = str(lb.get("strategy", "least_loaded"))
        self.health_check_interval = lb.get("health_check_interval", 30)
        self.enable_failover = bool(lb.get("failover", True))
        self.retry_attempts = int(lb.get("retry_attempts", 3))
        self.rollout_key = rollout_key
        self.pool_manager = OllamaPoolManager(
            health_check_interval=self.health_check_interval,
            circuit_breaker_config=circuit_breaker_config,
            rollout_key=rollout_key,
            _backend=self.backend,
        )
        self._strategy = OllamaPoolManager._strategy(self.default_strategy)
        self.shim = LlmShim(
            self.backend,
            self.pool_manager,
            default_strategy=self._strategy,
            failover=self.enable_failover,
            retry_attempts=self.retry_attempts,
            names=(provider_id,),
        )
        self.pool_manager.names = (provider_id,)

    async def health_check(self) -> dict[str, Any]:
        try:
            pool_status = await self.pool_manager.get_pool_status()
        except Exception as exc:
            return {"status": "unhealthy", "details": {"error": str(exc)}}
        return {
            "status": "healthy" if pool_status["healthy_instances"] > 0 else "unhealthy",
            "details": {
                "pool_status": pool_status,
                "default_strategy": self.default_strategy,
                "failover_enabled": self.enable_failover,
            },
        }

    def build(self, method: str, params: Mapping[str, Any]) -> LlmCall:
        tags, strategy, key = _routing(params, self._strategy, self.rollout_key)
        fields: dict[str, Any] = {}
        options: dict[str, Any] | None
        if method in ("llm/generate", "llm/chat"):
            model = str(params.get("model") or "llama3.2")
            if method == "llm/generate":
                prompt = _text(method, params, "prompt")
                if not prompt:
                    raise InvalidParams(method, ["Missing required parameter: prompt"])
                fields["prompt"] = prompt
            else:
                if not params.get("messages"):
                    raise InvalidParams(method, ["Missing required parameter: messages"])
                fields["messages"] = _messages(method, params["messages"])
            for name in _EXTRA_FIELDS:
                if params.get(name) is not None:
                    fields[name] = params[name]
            options = _options(method, params, temperature=0.7, top_p=0.9, max_tokens=None)
        elif method == "llm/vision":
            model = str(params.get("model") or "llava")
            images = params.get("images")
            if not images:
                raise InvalidParams(method, ["Missing required parameter: images"])
            fields["prompt"] = _text(method, params, "prompt") or "Describe this image"
            fields["images"] = encode_images(method, list(images))
            options = _options(method, params, temperature=0.7, top_p=None, max_tokens=None)
        else:
            model = str(params.get("model") or "llama3.2")
            value = params.get("input")
            if not value:
                raise InvalidParams(method, ["Missing required parameter: input"])
            texts = [value] if isinstance(value, str) else list(value)
            if not all(isinstance(t, str) for t in texts):
                raise InvalidParams(method, ["params.input: expected a string or strings"])
            fields["input"] = texts
            options = None
        timeout = request_timeout(method, params, self.timeout)
        return LlmCall(method, model, fields, options, timeout, tags, strategy, key)

    def shape(self, call: LlmCall, raw: Mapping[str, Any]) -> dict[str, Any]:
        if call.method == "llm/generate":
            return {
                "response": raw.get("response", ""),
                "model": call.model,
                "done": raw.get("done", True),
                "context": raw.get("context"),
                **_durations(raw),
            }
        if call.method == "llm/chat":
            message = raw.get("message") or {}
            return {
                "response": message.get("content", ""),
                "role": message.get("role", "assistant"),
                "model": call.model,
                "done": raw.get("done", True),
                **_durations(raw),
            }
        if call.method == "llm/vision":
            return {
                "response": raw.get("response", ""),
                "model": call.model,
                "done": raw.get("done", True),
                "total_duration": raw.get("total_duration"),
                "eval_count": raw.get("eval_count"),
            }
        vectors = list(raw.get("embeddings") or [])
        # the old provider embedded text by text and kept each answer's list of vectors
        per_text = [[vector] for vector in vectors]
        return {"embeddings": per_text[0] if len(per_text) == 1 else per_text, "model": call.model}


_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}(/.*)?$")


def _as_url(value: str) -> str:
    """The positional ``ollama_url``: a URL stays a URL (it never becomes a model name)."""
    text = value.strip()
    if "://" in text:
        return text.rstrip("/")
    if _HOST_PORT.match(text) or text in ("localhost", "127.0.0.1"):
        return "http://" + text.rstrip("/")
    raise ValueError(
        f"OllamaProvider: ollama_url {value!r} is not a URL (such as http://localhost:11434); "
        "pass default_model=... to choose a model"
    )


# PEP 702, so type checkers flag it (a literal: checkers read no expressions)
@deprecated(
    "OllamaProvider is deprecated. Use OllamaPoolProvider(provider_id, hub=OllamaHub(...)) "
    "instead (docs/migration.md).",
    category=None,
)
class OllamaProvider(_LlmAdapter):
    """The pre-hub single-instance ``OllamaProvider(provider_id, ollama_url, timeout)``.

    ``OllamaProvider("ollama-1", "http://gpu-box:11434")`` talks to ``gpu-box`` - the positional
    URL stays the URL (after the streamlining it silently became the default model).
    """

    def __init__(
        self,
        provider_id: str = "ollama",
        ollama_url: str = "http://localhost:11434",
        timeout: float = 60,
        *,
        default_model: str | None = None,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        hub: str = "llm",
        rollout_key: str | None = None,
    ) -> None:
        warn_once("OllamaProvider")
        self.ollama_url = _as_url(ollama_url)
        table = ollama_hub_table(
            instances=[{"id": "ollama", "url": self.ollama_url, "max_concurrent": 64}],
            load_balancing={"failover": False},
            circuit_breaker=False,
            timeout=timeout,
        )
        self.backend = make_ollama_backend(table, hub=hub, runtime=runtime, features=features)
        self.hub = OllamaHub(hub, _backend=self.backend)
        self.owns_hub = runtime is None
        super().__init__(
            provider_id,
            "llm/v1",
            runtime=self.backend.runtime,
            name="Ollama Provider",
            description=f"Ollama at {self.ollama_url}",
            aliases=_ALIASES,
        )
        self.timeout = float(timeout)
        self.default_model = default_model
        self.rollout_key = rollout_key
        self.pool_manager = OllamaPoolManager(rollout_key=rollout_key, _backend=self.backend)
        self.shim = LlmShim(
            self.backend,
            self.pool_manager,
            default_strategy=LoadBalancingStrategy.LEAST_LOADED,
            failover=False,
            retry_attempts=1,
            names=(provider_id,),
        )
        self.pool_manager.names = (provider_id,)

    async def health_check(self) -> dict[str, Any]:
        status = await self.pool_manager.get_pool_status()
        first: dict[str, Any] = next(iter(status["instances"].values()), {})
        state = str(first.get("state", "unknown"))
        healthy = state in ("healthy", "degraded", "unknown")
        if self.backend.started and state == "unknown":
            healthy = await self.pool_manager.health_check(next(iter(status["instances"])))
        return {
            "status": "healthy" if healthy else "unhealthy",
            "details": {"endpoint": self.ollama_url, "state": state},
        }

    def build(self, method: str, params: Mapping[str, Any]) -> LlmCall:
        key = next(
            (str(params[k]) for k in _KEY_PARAMS if params.get(k) is not None), self.rollout_key
        )
        fields: dict[str, Any] = {}
        timeout = request_timeout(method, params, self.timeout)
        options: dict[str, Any] | None
        if method == "llm/generate":
            model = str(params.get("model") or self.default_model or "llama3")
            prompt = _text(method, params, "prompt")
            if prompt is None:
                raise InvalidParams(method, ["Missing required parameter: prompt"])
            fields["prompt"] = prompt
            options = _options(method, params, temperature=0.7, top_p=None, max_tokens=500)
        elif method == "llm/chat":
            model = str(params.get("model") or self.default_model or "llama3")
            if params.get("messages"):
                fields["messages"] = _messages(method, params["messages"])
            else:
                prompt = _text(method, params, "prompt")
                if not prompt:
                    raise InvalidParams(method, ["Missing required parameter: messages"])
                fields["messages"] = [{"role": "user", "content": prompt}]
            options = _options(method, params, temperature=0.7, top_p=None, max_tokens=500)
        elif method == "llm/vision":
            model = str(params.get("model") or "llava")
            prompt = _text(method, params, "prompt")
            if prompt is None and params.get("messages"):
                prompt = str(_messages(method, params["messages"])[-1].get("content", ""))
            images = list(params.get("images") or [])
            if not images and params.get("image_data"):
                images = [params["image_data"]]
            if not images and params.get("image_path"):
                images = [params["image_path"]]
            if not images:
                raise InvalidParams(
                    method, ["Missing required parameter: images (or image_data, image_path)"]
                )
            fields["prompt"] = prompt or "Describe this image"
            fields["images"] = encode_images(method, images[:1])  # the first image, as before
            options = _options(method, params, temperature=0.7, top_p=None, max_tokens=500)
            timeout *= 2  # vision had twice the timeout
        else:
            model = str(params.get("model") or "nomic-embed-text")
            text = _text(method, params, "prompt") or _text(method, params, "text")
            if not text:
                raise InvalidParams(method, ["Missing required parameter: prompt (or text)"])
            fields["input"] = [text]
            options = None
        return LlmCall(method, model, fields, options, timeout, key=key)

    def shape(self, call: LlmCall, raw: Mapping[str, Any]) -> dict[str, Any]:
        if call.method == "llm/embed":
            vectors = list(raw.get("embeddings") or [])
            vector = list(vectors[0]) if vectors else []
            return {
                "embedding": vector,
                "model": call.model,
                "provider_id": self.provider_id,
                "dimensions": len(vector),
            }
        if call.method == "llm/chat":
            message = raw.get("message") or {}
            content = message.get("content", "")
            role = message.get("role", "assistant")
            return {
                "response": content,
                "content": content,
                "role": role,
                "model": call.model,
                "provider_id": self.provider_id,
                "tokens_used": raw.get("eval_count", 0),
                "total_duration": raw.get("total_duration"),
            }
        text = raw.get("response", "")
        return {
            "response": text,
            "content": text,
            "model": call.model,
            "provider_id": self.provider_id,
            "tokens_used": raw.get("eval_count", 0),
            "total_duration": raw.get("total_duration"),
        }
