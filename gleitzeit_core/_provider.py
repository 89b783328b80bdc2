"""Protocol providers: named methods with validated parameters, executed through a hub.

A provider (``"llm/v1"``) offers methods (``"llm/chat"``). Each method declares an attrs class
for its parameters; the raw parameters are structured into it strictly, and every problem is
reported at once, naming its field (``params.messages[0].content: expected a string, got 3``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import attrs

from ._errors import ConfigError, InvalidParams, UnknownMethod
from ._structuring import structure

__all__ = ["Method", "ProtocolProvider"]


@attrs.frozen
class Method:
    """One callable method of a provider."""

    name: str
    handler: Callable[[Any], Awaitable[Any]]
    params: Any = None  # an attrs class, or None to pass the raw mapping through


class ProtocolProvider:
    """Base class of providers; subclasses list their methods in ``methods()``."""

    protocol: ClassVar[str] = ""

    def __init__(self, hub: Any, runtime: Any = None, options: Mapping[str, Any] | None = None):
        self.hub = hub
        self.runtime = runtime
        self.options = dict(options or {})

    def methods(self) -> Mapping[str, Method]:
        raise NotImplementedError

    def validate(self, method: str, params: Any) -> Any:
        spec = self._method(method)
        if params is None:
            params = {}
        if spec.params is None:
            if not isinstance(params, Mapping):
                raise InvalidParams(method, [f"params: expected a table, got {params!r}"])
            return params
        if not isinstance(params, Mapping):
            raise InvalidParams(method, [f"params: expected a table, got {params!r}"])
        try:
            return structure(dict(params), spec.params, path="params")
        except ConfigError as exc:
            raise InvalidParams(method, exc.problems) from None

    async def execute(self, method: str, params: Any = None) -> Any:
        validated = self.validate(method, params)
        return await self._method(method).handler(validated)

    def _method(self, method: str) -> Method:
        # a provider's methods are fixed once it exists: build the table once, not per call
        methods: dict[str, Method] | None = self.__dict__.get("_method_table")
        if methods is None:
            methods = self.__dict__["_method_table"] = dict(self.methods())
        try:
            return methods[method]
        except KeyError:
            raise UnknownMethod(method, list(methods)) from None

    async def start(self) -> None:
        """Called once the hub has started."""

    async def stop(self) -> None:
        """Called before the hub stops."""
