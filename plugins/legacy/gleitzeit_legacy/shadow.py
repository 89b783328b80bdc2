"""Two distributions, one ``gleitzeit`` package: say so instead of shadowing silently.

The shim ships a top-level ``gleitzeit`` package (the old import paths). The original
``gleitzeit`` distribution (the project before the hub architecture) installs a package of the
same name, so with both installed one overwrites or shadows the other, and which one old code
gets depends on install order and ``sys.path``. ``shadow_notes()`` finds that out without
importing either: the other distribution's metadata, and where ``import gleitzeit`` would load
from. The shim's ``gleitzeit/__init__.py`` warns at import; ``gleitzeit plugins list`` shows
the same notes.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import warnings
from pathlib import Path

__all__ = [
    "OTHER",
    "ShadowWarning",
    "other_distribution",
    "shadow_notes",
    "warn_if_shadowed",
    "warn_once_if_shadowed",
]

OTHER = "gleitzeit"  # the original distribution's name
SHIM = "gleitzeit-legacy"


class ShadowWarning(UserWarning):
    """The original ``gleitzeit`` distribution is installed next to the shim."""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def other_distribution() -> importlib.metadata.Distribution | None:
    """The original ``gleitzeit`` distribution, if one is installed."""
    for dist in importlib.metadata.distributions():
        if _normal(dist.name or "") == OTHER:
            return dist
    return None


def _shim_root() -> Path:
    return Path(__file__).resolve().parent.parent


def shadow_notes() -> list[str]:
    """What to tell the user about the two distributions (empty: only the shim is there)."""
    other = other_distribution()
    if other is None:
        return []
    version = other.version
    spec = importlib.util.find_spec(OTHER)
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    ours = origin is not None and _shim_root() in origin.parents
    fix = (
        f"keep one: `pip uninstall {OTHER}` (old code then runs on the shim) or "
        f"`pip uninstall {SHIM}` (old code runs on the original, without the hubs)"
    )
    if ours:
        return [
            f"the original {OTHER} {version} is installed too; `import gleitzeit` loads the "
            f"shim's package from {origin}, and modules only the original has may still be "
            f"picked up from its files - {fix}"
        ]
    where = str(origin) if origin is not None else "nowhere"
    return [
        f"the original {OTHER} {version} shadows the shim: `import gleitzeit` loads {where}, "
        f"so the old import paths do not reach the hubs - {fix}"
    ]


_warned = [False]


def warn_once_if_shadowed() -> None:
    """``warn_if_shadowed`` once per process (runtimes start often)."""
    if not _warned[0]:
        _warned[0] = True
        warn_if_shadowed()


def warn_if_shadowed() -> None:
    """Warn (``ShadowWarning``) when the original distribution is installed too."""
    for note in shadow_notes():
        warnings.warn(f"gleitzeit-legacy: {note}", ShadowWarning, stacklevel=3)
