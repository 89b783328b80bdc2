"""A strategy that lacks what the hub reads is refused when the config is checked, naming
the hub, the strategy, its plugin and what is missing."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import TypeVar

import pytest

from gleitzeit_core import (
    Candidate,
    ConfigError,
    PluginManager,
    Register,
    Request,
    Runtime,
    hookimpl,
)
from gleitzeit_core.testing import echo

C = TypeVar("C", bound=Candidate)


class OnlySelect:
    """What a hurried author writes: ``select`` and nothing else."""

    def select(self, candidates: Sequence[C], request: Request) -> C:
        return candidates[0]


@hookimpl
def gleitzeit_register_strategies(register: Register) -> None:
    register("only_select", OnlySelect)


def test_a_strategy_without_sampling_name_guarantees_is_a_config_error() -> None:
    """Selecting a strategy that lacks ``name``, ``guarantees`` and ``sampling`` fails when
    the runtime is built (not on every request with a bare AttributeError), with the config
    path, the strategy's name, its plugin and the missing attributes."""
    manager = PluginManager(autoload=False)
    manager.load()
    manager.add(echo, "echo")
    manager.add(
        SimpleNamespace(gleitzeit_register_strategies=gleitzeit_register_strategies), "hurried"
    )
    config = {
        "hubs": {
            "e": {"kind": "echo", "strategy": "only_select", "resources": [{"url": "echo://a"}]}
        }
    }
    with pytest.raises(ConfigError) as raised:
        Runtime.from_config(config, plugins=manager)
    message = str(raised.value)
    assert "hubs.e.strategy" in message
    assert "'only_select'" in message
    assert "plugin 'hurried'" in message
    assert "name, guarantees, sampling" in message
