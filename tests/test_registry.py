"""The model lifecycle table and the registry's lookups."""

from __future__ import annotations

import pytest

from streamwise import ModelSettings
from streamwise.errors import ConfigError, ModelNotFound
from streamwise.registry import TRANSITIONS, Event, ModelRegistry, ModelState


def settings(
    name: str,
    version: str | None = None,
    impl: str = "x.M",
    versions: tuple[str, ...] = (),
) -> ModelSettings:
    params = {"version": version} if version else None
    return ModelSettings.model_validate(
        {"name": name, "implementation": impl, "parameters": params, "versions": versions}
    )


def test_every_state_is_reachable_and_ready_only_through_loading() -> None:
    reachable = {ModelState.UNLOADED} | set(TRANSITIONS.values())
    assert reachable == set(ModelState)
    into_ready = {src for (src, _), dst in TRANSITIONS.items() if dst is ModelState.READY}
    assert into_ready == {ModelState.LOADING}
    assert TRANSITIONS[(ModelState.LOADING, Event.FAILED)] is ModelState.FAILED


def test_find_versions_and_default_version() -> None:
    registry = ModelRegistry(
        [settings("m", "2"), settings("m", "10", versions=("m/v10",)), settings("other")]
    )
    assert registry.find("m").version == "10"  # none ready: the newest, by natural order
    assert registry.find("m", "2").version == "2"
    assert registry.find("m", "v10").version == "10"
    registry.find("m", "2").state = ModelState.READY
    assert registry.find("m").version == "2"  # the newest ready one
    with pytest.raises(ModelNotFound):
        registry.find("m", "3")
    with pytest.raises(ModelNotFound):
        registry.find("nope")
    with pytest.raises(ConfigError, match="defined twice"):
        registry.add(settings("m", "2"))
