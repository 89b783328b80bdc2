"""``HubProviderAdapter``: the old ``ProtocolProvider`` surface over the new runtime.

Old code talked to providers in two shapes that never agreed (the old registry called
``handle_request(method, params)``, the pool and Docker providers only took
``handle_request(request_dict)`` and failed the other way). The adapter takes both:

* ``await adapter.handle_request("llm/chat", {...})`` returns the result (errors raise);
* ``await adapter.handle_request({"jsonrpc": "2.0", "method": ..., "params": ..., "id": 1})``
  and ``await adapter.execute_legacy(request)`` return the JSON-RPC envelope
  ``{"jsonrpc": "2.0", "result": ..., "id": 1}`` or ``{..., "error": {"code", "message",
  "data"}}`` - never raising for a failed call.

Used on its own it wraps any ``Runtime`` (``HubProviderAdapter("llm", "llm/v1", runtime=rt)``)
so code that expects an old provider object keeps working; the old provider classes of the
shim subclass it and add the old parameter names and result shapes.

The migration plan's Phase 4 shape works too: ``HubProviderAdapter(provider, hub)`` with a
provider object (an ``OllamaPoolProvider``, a ``PythonDockerProvider``, ...) and the hub it
runs on; every call goes to ``provider.execute`` (so ``FEATURES`` still chooses its path).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from gleitzeit_core import (
    InvalidParams,
    NoResourceAvailable,
    PermissionDenied,
    ResourceError,
    Runtime,
    UnknownMethod,
)

__all__ = ["HubProviderAdapter", "jsonrpc_error"]

# JSON-RPC 2.0 codes, plus server-defined ones (-32000..-32099) for failures of a resource
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
NO_RESOURCE = -32001
TIMEOUT = -32002
RESOURCE_FAILED = -32003
PERMISSION_DENIED = -32004  # the caller's key lacks a scope (a 403 in the gateway)


def jsonrpc_error(exc: BaseException) -> dict[str, Any]:
    """The ``error`` member for an exception (code, message, and what kind of failure)."""
    if isinstance(exc, UnknownMethod):
        code = METHOD_NOT_FOUND
    elif isinstance(exc, PermissionDenied):
        code = PERMISSION_DENIED
    elif isinstance(exc, InvalidParams | ValueError | TypeError):
        code = INVALID_PARAMS
    elif isinstance(exc, NoResourceAvailable):
        code = NO_RESOURCE
    elif isinstance(exc, TimeoutError):
        code = TIMEOUT
    elif isinstance(exc, ResourceError):
        code = RESOURCE_FAILED
    else:
        code = INTERNAL_ERROR
    data: dict[str, Any] = {"type": type(exc).__name__}
    failure = getattr(exc, "failure", None)
    if failure is not None:
        data["failure"] = getattr(failure, "value", str(failure))
    if isinstance(exc, PermissionDenied):
        data["scope"] = exc.scope
    resource = getattr(exc, "resource", None)
    if resource is not None:
        data["resource"] = resource
    return {"code": code, "message": str(exc) or type(exc).__name__, "data": data}


class HubProviderAdapter:
    """An old-style provider (``provider_id``, ``protocol_id``, ``handle_request``, ...)
    whose calls run through a ``Runtime``."""

    provider: Any = None  # the wrapped provider of HubProviderAdapter(provider, hub)
    hub: Any = None  # the hub it runs on

    def __init__(
        self,
        provider_id: Any,
        protocol_id: Any = None,
        *,
        runtime: Runtime | None = None,
        config: Any = None,
        name: str | None = None,
        description: str | None = None,
        version: str = "1.0.0",
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(provider_id, str):  # the plan's HubProviderAdapter(provider, hub)
            provider, hub = provider_id, protocol_id
            if not callable(getattr(provider, "execute", None)):
                raise TypeError(
                    "HubProviderAdapter(provider, hub): provider must have execute(method, "
                    f"params), got {type(provider).__name__}"
                )
            self.provider, self.hub = provider, hub
            provider_id = str(getattr(provider, "provider_id", type(provider).__name__))
            protocol_id = getattr(provider, "protocol_id", "")
            if runtime is None:
                runtime = getattr(hub, "runtime", None)
        self.provider_id = provider_id
        self.protocol_id = protocol_id or ""
        self.name = name or provider_id
        self.description = description or f"{self.protocol_id} through the Gleitzeit hubs"
        self.version = version
        self.aliases: dict[str, str] = dict(aliases or {})
        self.request_count = 0
        self.error_count = 0
        self._adapter_runtime: Runtime | None = runtime
        self._owns_runtime = False
        if runtime is None and config is not None:
            self._adapter_runtime = Runtime.from_config(config)
            self._owns_runtime = True

    # -- what subclasses override ---------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        if self._adapter_runtime is None:
            raise RuntimeError(f"provider {self.provider_id!r} has no runtime")
        return self._adapter_runtime

    def resolve(self, method: str) -> str:
        """The new method name for an old one (aliases such as ``llm/complete``)."""
        return self.aliases.get(method, method)

    async def execute(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run one method; errors raise."""
        if self.provider is not None:
            return await self.provider.execute(self.resolve(method), dict(params or {}))
        await self.initialize()
        return await self.runtime.execute(self.resolve(method), dict(params or {}))

    def get_supported_methods(self) -> list[str]:
        if self.provider is not None:
            return list(self.provider.get_supported_methods())
        prefix = self.protocol_id.split("/", 1)[0] + "/"
        methods = [m for m in self.runtime.methods() if m.startswith(prefix)]
        return sorted({*methods, *(a for a, target in self.aliases.items() if target in methods)})

    async def initialize(self) -> None:
        if self.provider is not None:
            await self.provider.initialize()
        elif self._adapter_runtime is not None and self._owns_runtime:
            await self._adapter_runtime.start()

    async def shutdown(self) -> None:
        if self.provider is not None:
            await self.provider.shutdown()
        elif self._adapter_runtime is not None and self._owns_runtime:
            await self._adapter_runtime.stop()

    async def health_check(self) -> dict[str, Any]:
        """``{"status": "healthy"|"unhealthy", "details": {...}}``."""
        from gleitzeit_core import to_json

        if self.provider is not None:
            result: dict[str, Any] = await self.provider.health_check()
            return result
        hubs = to_json(self.runtime.status().hubs)
        healthy = any(
            r["health"] != "unhealthy" and not r["ejected"] for h in hubs for r in h["resources"]
        )
        return {"status": "healthy" if healthy else "unhealthy", "details": {"hubs": hubs}}

    # -- the old base-class surface -------------------------------------------------------------
    async def handle_request(
        self, request: str | Mapping[str, Any], params: Mapping[str, Any] | None = None
    ) -> Any:
        """``handle_request(method, params)`` -> result, or ``handle_request(request_dict)`` ->
        JSON-RPC envelope."""
        if isinstance(request, str):
            return await self.execute_with_stats(request, params or {})
        if isinstance(request, Mapping) and params is None:
            return await self.execute_legacy(request)
        raise TypeError(
            "handle_request takes (method: str, params: dict) or one JSON-RPC request dict, "
            f"got {type(request).__name__} and {type(params).__name__}"
        )

    async def execute_legacy(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Run a JSON-RPC request ``{"jsonrpc", "method", "params", "id"}``; the envelope."""
        request_id = request.get("id") if isinstance(request, Mapping) else None
        method = request.get("method") if isinstance(request, Mapping) else None
        params = request.get("params", {}) if isinstance(request, Mapping) else None
        if not isinstance(method, str) or not method:
            error = {"code": INVALID_REQUEST, "message": "request has no method"}
            return {"jsonrpc": "2.0", "error": error, "id": request_id}
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            error = {"code": INVALID_PARAMS, "message": "params must be an object"}
            return {"jsonrpc": "2.0", "error": error, "id": request_id}
        try:
            result = await self.execute_with_stats(method, params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return {"jsonrpc": "2.0", "error": jsonrpc_error(exc), "id": request_id}
        return {"jsonrpc": "2.0", "result": result, "id": request_id}

    async def execute_with_stats(self, method: str, params: Mapping[str, Any]) -> Any:
        """``execute`` counting requests and errors (what the old registry called)."""
        self.request_count += 1
        try:
            return await self.execute(method, params)
        except Exception:
            self.error_count += 1
            raise

    async def start(self) -> None:
        await self.initialize()

    async def stop(self) -> None:
        await self.shutdown()

    async def __aenter__(self) -> HubProviderAdapter:
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    def get_info(self) -> dict[str, Any]:
        return {
            "provider_id": self.provider_id,
            "protocol_id": self.protocol_id,
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "methods": self.get_supported_methods(),
            "request_count": self.request_count,
            "error_count": self.error_count,
        }
