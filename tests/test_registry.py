"""The model lifecycle table, and the registry's lookups, loads and unloads."""

from __future__ import annotations

import pathlib

import pytest
import trio

from streamwise import MLModel, ModelSettings
from streamwise.errors import ConfigError, ModelLoadError, ModelNotFound, ModelNotReady
from streamwise.registry import TRANSITIONS, Event, ModelRegistry, ModelState


class Tiny(MLModel):
    async_backend = "trio"
    unloaded = 0

    async def unload(self) -> bool:
        Tiny.unloaded += 1
        return True


class Refuses(MLModel):
    async_backend = "trio"

    async def load(self) -> bool:
        return False


def settings(
    name: str,
    version: str | None = None,
    impl: str = f"{__name__}.Tiny",
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


async def test_load_find_versions_and_default_version() -> None:
    registry = ModelRegistry(
        [settings("m", "2"), settings("m", "10", versions=("m/v10",)), settings("other")]
    )
    await registry.load_all()
    assert registry.ready
    assert registry.find("m").version == "10"  # newest, by natural order
    assert registry.find("m", "2").version == "2"
    assert registry.find("m", "v10").version == "10"
    with pytest.raises(ModelNotFound):
        registry.find("m", "3")
    with pytest.raises(ModelNotFound):
        registry.find("nope")
    with pytest.raises(ConfigError, match="defined twice"):
        registry.add(settings("m", "2"))


async def test_failed_loads_keep_their_reason() -> None:
    registry = ModelRegistry(
        [
            settings("bad", impl=f"{__name__}.Refuses"),
            settings("missing", impl="no_such_module.Model"),
            settings("ok"),
        ]
    )
    await registry.load_all()
    states = {s.name: (s.state, s.reason) for s in registry.slots()}
    assert states["ok"] == (ModelState.READY, "")
    assert states["bad"] == (ModelState.FAILED, "model 'bad': load() returned False")
    assert states["missing"][0] is ModelState.FAILED
    assert "No module named 'no_such_module'" in states["missing"][1]
    with pytest.raises(ModelLoadError):
        await registry.load(registry.find("bad"))
    assert not registry.ready


async def test_unload_waits_for_calls_in_flight() -> None:
    registry = ModelRegistry([settings("m")])
    await registry.load_all()
    slot = registry.find("m")
    unloaded_before = Tiny.unloaded
    async with trio.open_nursery() as nursery:
        with slot.call():
            nursery.start_soon(registry.unload, slot)
            await trio.sleep(0.01)
            assert slot.state is ModelState.UNLOADING and Tiny.unloaded == unloaded_before
            with pytest.raises(ModelNotReady):
                with slot.call():
                    pass
    assert slot.state is ModelState.UNLOADED and Tiny.unloaded == unloaded_before + 1


def test_implementation_in_the_models_folder_can_import_its_siblings(
    tmp_path: pathlib.Path,
) -> None:
    from streamwise.registry import import_implementation

    (tmp_path / "helper.py").write_text("VALUE = 42\n")
    (tmp_path / "model.py").write_text(
        "import helper\nfrom streamwise import MLModel\n"
        "class M(MLModel):\n    value = helper.VALUE\n"
    )
    s = ModelSettings.model_validate(
        {"name": "m", "implementation": "model.M", "source": tmp_path / "model-settings.json"}
    )
    cls = import_implementation(s)
    assert cls.value == 42  # type: ignore[attr-defined]
    assert str(tmp_path) not in __import__("sys").path
