"""``FEATURES``: the decision every call makes, as a property over all settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

NAMES = st.sampled_from(["p1", "p2", "llm/v1", "python/v1"])


@pytest.fixture(autouse=True)
def _features() -> Iterator[None]:
    from gleitzeit_legacy.features import FEATURES

    FEATURES.reset()
    yield
    FEATURES.reset()


@given(
    use_hub=st.one_of(st.none(), st.booleans()),
    listed=st.one_of(st.none(), st.lists(NAMES, max_size=3)),
    percent=st.one_of(st.none(), st.sampled_from([0.0, 100.0])),
    provider=st.sampled_from(["p1", "p2"]),
    protocol=st.sampled_from(["llm/v1", "python/v1"]),
    key=st.one_of(st.none(), st.text(max_size=5)),
)
def test_the_hub_path_exactly_when_switched_on_or_listed(
    use_hub: bool | None,
    listed: list[str] | None,
    percent: float | None,
    provider: str,
    protocol: str,
    key: str | None,
) -> None:
    """A call takes the hub path exactly when ``use_hub_architecture`` is on or its provider
    id or protocol is listed - and ``rollout_percent`` is not 0; with nothing set (``None``)
    the plan's defaults hold: the old path."""
    from gleitzeit_legacy.features import FEATURES, hub_path_wanted

    FEATURES.reset()
    if use_hub is not None:
        FEATURES["use_hub_architecture"] = use_hub
    if listed is not None:
        FEATURES["hub_architecture_providers"] = listed
    if percent is not None:
        FEATURES["rollout_percent"] = percent
    on = bool(use_hub) or provider in (listed or []) or protocol in (listed or [])
    expected = on and percent != 0.0
    assert hub_path_wanted((provider, protocol), protocol, key) is expected


@given(percent=st.floats(min_value=1.0, max_value=99.0), keys=st.lists(st.text(), max_size=20))
def test_a_partial_rollout_is_stable_per_key(percent: float, keys: list[str]) -> None:
    """Between 0 and 100 percent, a call with a key takes the same path every time."""
    from gleitzeit_legacy.features import FEATURES, hub_path_wanted

    FEATURES.reset()
    FEATURES["use_hub_architecture"] = True
    FEATURES["rollout_percent"] = percent
    for key in keys:
        first = hub_path_wanted(("p",), "llm/v1", key)
        assert all(hub_path_wanted(("p",), "llm/v1", key) is first for _ in range(3))


def test_a_config_file_table_is_the_starting_point_and_run_time_keys_win() -> None:
    """``[features]`` of the config file counts (with the core's defaults for keys it leaves
    out); a key set in ``FEATURES`` at run time wins over it; ``del`` gives it back."""
    from gleitzeit_legacy.features import FEATURES, hub_path_wanted

    configured = {"rollout_percent": 100}  # use_hub_architecture defaults to true in a table
    assert hub_path_wanted(("p",), "llm/v1", None, configured) is True
    FEATURES["use_hub_architecture"] = False
    assert hub_path_wanted(("p",), "llm/v1", None, configured) is False
    del FEATURES["use_hub_architecture"]
    assert hub_path_wanted(("p",), "llm/v1", None, configured) is True
    assert hub_path_wanted(("p",), "llm/v1", None, None) is False
    just_llm = {"hub_architecture_providers": ["llm/v1"]}  # the list alone: just these
    assert hub_path_wanted(("p",), "llm/v1", None, just_llm) is True
    assert hub_path_wanted(("q",), "python/v1", None, just_llm) is False


def test_rolling_back_a_provider_the_config_file_listed() -> None:
    """Rollback step 1 (docs/migration.md) for a provider that ``[features]`` of the config
    file sent to the hub: emptying ``FEATURES["hub_architecture_providers"]`` at run time (by
    assignment or by removing entries) puts it back on the legacy path on the next call; the
    list only read, never changed, leaves the file's list in force; ``del`` gives it back."""
    from gleitzeit_legacy.features import FEATURES, hub_path_wanted

    configured = {"hub_architecture_providers": ["p"]}
    assert FEATURES["hub_architecture_providers"] == []  # read, not set
    assert hub_path_wanted(("p",), "llm/v1", None, configured) is True
    FEATURES["hub_architecture_providers"] = []
    assert hub_path_wanted(("p",), "llm/v1", None, configured) is False
    del FEATURES["hub_architecture_providers"]
    assert hub_path_wanted(("p",), "llm/v1", None, configured) is True
    FEATURES["hub_architecture_providers"].append("q")
    FEATURES["hub_architecture_providers"].remove("q")
    assert hub_path_wanted(("p",), "llm/v1", None, configured) is False
    assert FEATURES.explicit() == {"hub_architecture_providers": []}
