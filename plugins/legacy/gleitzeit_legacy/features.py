"""``FEATURES``: the migration plan's feature flags as a live mapping (Phase 6).

::

    from gleitzeit.config.features import FEATURES

    FEATURES["hub_architecture_providers"].append("ollama-pool")   # one provider first
    FEATURES["use_hub_architecture"] = True                          # then everyone
    FEATURES["use_hub_architecture"] = False                         # rollback, next call

Every call of an old or hub-era object reads the mapping, so a change takes effect on the next
call - no restart, no new objects. The plan's defaults hold until an operator opts in: with
nothing configured, old code keeps its old (legacy) path.

* ``use_hub_architecture`` (bool, default False): every provider takes the hub path;
* ``hub_architecture_providers`` (list of names, default []): these providers take the hub path
  even while the switch above is off (a provider id such as ``"test-provider"``, or a protocol,
  ``"llm/v1"`` / ``"python/v1"``);
* ``rollout_percent`` (0-100, default 100): our extra - of the calls that would take the hub
  path, only this share does (stable per ``rollout_key``/``session_id``/``user_id``).

Precedence, most specific first: an object's own ``features=`` argument, then any key set here
at run time, then ``[features]`` of ``$GLEITZEIT_CONFIG``, then the defaults above.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from gleitzeit_core import FeatureFlags, FeaturesConfig

__all__ = ["DEFAULTS", "FEATURES", "LiveFeatures", "hub_path_wanted"]

DEFAULTS: dict[str, Any] = {
    "use_hub_architecture": False,  # the plan: "Start disabled"
    "hub_architecture_providers": [],  # the plan: "Gradual enable"
    "rollout_percent": 100.0,
}
_EXPECTED = {
    "use_hub_architecture": "true or false",
    "hub_architecture_providers": "a list of provider ids or protocols (strings)",
    "rollout_percent": "a number from 0 to 100",
}


def _checked(key: str, value: Any) -> Any:
    if key not in _EXPECTED:
        known = ", ".join(_EXPECTED)
        raise KeyError(f"FEATURES[{key!r}]: unknown feature flag; known flags: {known}")
    if key == "use_hub_architecture" and isinstance(value, bool):
        return value
    if key == "hub_architecture_providers" and (
        isinstance(value, list | tuple | set) and all(isinstance(v, str) for v in value)
    ):
        return ProviderList(value, chosen=True)
    if (
        key == "rollout_percent"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 <= value <= 100
    ):
        return float(value)
    raise TypeError(f"FEATURES[{key!r}]: expected {_EXPECTED[key]}, got {value!r}")


class ProviderList(list[str]):
    """``hub_architecture_providers``: a list that only takes strings (so a typo such as
    ``.append(OllamaPoolProvider)`` fails where it is made, not silently later).

    ``chosen`` says an operator set or changed it: an emptied list is a setting ("none of
    them", which overrides ``[features]``), the default one only read is not."""

    def __init__(self, items: Iterable[str] = (), *, chosen: bool = False) -> None:
        super().__init__(self._name(item) for item in items)
        self.chosen = chosen

    @staticmethod
    def _name(item: Any) -> str:
        if not isinstance(item, str) or not item:
            raise TypeError(
                "FEATURES['hub_architecture_providers']: expected provider ids or protocols "
                f"(non-empty strings), got {item!r}"
            )
        return item

    def append(self, item: str) -> None:
        super().append(self._name(item))
        self.chosen = True

    def extend(self, items: Iterable[str]) -> None:
        super().extend(self._name(item) for item in items)
        self.chosen = True

    def insert(self, index: Any, item: str) -> None:
        super().insert(index, self._name(item))
        self.chosen = True

    def remove(self, item: str) -> None:
        super().remove(item)
        self.chosen = True

    def pop(self, index: Any = -1) -> str:
        self.chosen = True
        return super().pop(index)

    def clear(self) -> None:
        super().clear()
        self.chosen = True

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self.chosen = True

    def __setitem__(self, index: Any, item: Any) -> None:
        self.chosen = True
        if isinstance(index, slice):
            super().__setitem__(index, [self._name(i) for i in item])
        else:
            super().__setitem__(index, self._name(item))

    def __iadd__(self, items: Iterable[str]) -> ProviderList:  # type: ignore[override,misc]
        self.extend(items)
        return self


class LiveFeatures(MutableMapping[str, Any]):
    """The flags as a dict that knows which keys an operator set at run time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self._set:
            return self._set[key]
        if key not in DEFAULTS:
            raise KeyError(key)
        # the default list is stored on first read, so .append() on it is a run-time setting
        with self._lock:
            if key == "hub_architecture_providers":
                return self._set.setdefault(key, ProviderList())
            return DEFAULTS[key]

    def __setitem__(self, key: str, value: Any) -> None:
        checked = _checked(key, value)
        with self._lock:
            self._set[key] = checked

    def __delitem__(self, key: str) -> None:
        """Back to the configured value (``[features]`` of ``$GLEITZEIT_CONFIG``) or default."""
        with self._lock:
            self._set.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(DEFAULTS)

    def __len__(self) -> int:
        return len(DEFAULTS)

    def explicit(self) -> dict[str, Any]:
        """The keys set at run time (the provider list only read, never changed, is not)."""
        with self._lock:
            items = dict(self._set)
        listed = items.get("hub_architecture_providers")
        if isinstance(listed, ProviderList) and not listed.chosen:
            del items["hub_architecture_providers"]
        return items

    def reset(self) -> None:
        """Forget every run-time setting."""
        with self._lock:
            self._set.clear()

    def effective(self, configured: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What decides a call now: defaults < ``configured`` (a ``[features]`` table) < keys
        set at run time. A ``[features]`` table follows the core's defaults for keys it
        leaves out (its presence means the operator chose) - except that a table listing
        providers without ``use_hub_architecture`` sends just those to the hub path."""
        settings = dict(DEFAULTS)
        if configured is not None:
            core = FeaturesConfig()
            listed = configured.get("hub_architecture_providers")
            # a table that lists providers without the switch means "just these" (as the
            # core reads it); otherwise the core's default for the switch applies
            settings["use_hub_architecture"] = configured.get(
                "use_hub_architecture", core.use_hub_architecture if listed is None else False
            )
            settings["hub_architecture_providers"] = list(listed or [])
            settings["rollout_percent"] = float(
                configured.get("rollout_percent", core.rollout_percent)
            )
        settings.update(self.explicit())
        settings["hub_architecture_providers"] = list(settings["hub_architecture_providers"])
        return settings

    def __repr__(self) -> str:
        return f"FEATURES({dict(self)!r})"


FEATURES = LiveFeatures()

# one hashing rule for "is this key inside the percentage" (the core's)
_PERCENT_FLAGS: dict[float, FeatureFlags] = {}


def _in_rollout(percent: float, protocol: str, key: str | None) -> bool:
    if percent >= 100.0:
        return True
    if percent <= 0.0:
        return False
    flags = _PERCENT_FLAGS.get(percent)
    if flags is None:
        flags = _PERCENT_FLAGS[percent] = FeatureFlags(FeaturesConfig(rollout_percent=percent))
    return flags.hub_enabled_for(protocol, key)


def hub_path_wanted(
    names: Iterable[str],
    protocol: str,
    key: str | None,
    configured: Mapping[str, Any] | None = None,
) -> bool:
    """Whether a call of the provider known by ``names`` (its id, protocol, ...) takes the hub
    path under ``FEATURES`` (see the module docstring for the rules)."""
    set_now = FEATURES.explicit() if FEATURES._set else {}
    if configured is None and not set_now:
        return False  # nothing configured, nothing opted in: the old path (the common case)
    settings = FEATURES.effective(configured)
    listed = settings["hub_architecture_providers"]
    on = bool(settings["use_hub_architecture"]) or any(
        name in listed for name in (*names, protocol)
    )
    return on and _in_rollout(float(settings["rollout_percent"]), protocol, key)
