"""Loading and unloading models on their backend, and the lifecycle events that fires."""

from __future__ import annotations

import pathlib

import pytest
import trio

from streamwise import MLModel, ModelSettings
from streamwise.errors import ModelLoadError, ModelNotFound, ModelNotReady
from streamwise.registry import ModelRegistry, ModelState
from streamwise.runtime import Backends
from streamwise.runtime.loading import ModelLoader, import_implementation


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


class OnAsyncio(MLModel):
    """The default backend: with no asyncio loop running, its load fails, with why."""


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


def loader_of(registry: ModelRegistry) -> ModelLoader:
    return ModelLoader(registry, Backends.on(None))


async def test_load_all_makes_every_version_ready() -> None:
    registry = ModelRegistry(
        [settings("m", "2"), settings("m", "10", versions=("m/v10",)), settings("other")]
    )
    await loader_of(registry).load_all()
    assert registry.ready
    assert registry.find("m").version == "10"  # newest, by natural order
    assert registry.find("m", "2").version == "2"
    with pytest.raises(ModelNotFound):
        registry.find("m", "3")


async def test_failed_loads_keep_their_reason() -> None:
    registry = ModelRegistry(
        [
            settings("bad", impl=f"{__name__}.Refuses"),
            settings("missing", impl="no_such_module.Model"),
            settings("ok"),
            settings("aio", impl=f"{__name__}.OnAsyncio"),
        ]
    )
    loader = loader_of(registry)
    await loader.load_all()
    states = {s.name: (s.state, s.reason) for s in registry.slots()}
    assert states["ok"] == (ModelState.READY, "")
    assert states["bad"] == (ModelState.FAILED, "model 'bad': load() returned False")
    assert states["missing"][0] is ModelState.FAILED
    assert "No module named 'no_such_module'" in states["missing"][1]
    assert states["aio"][0] is ModelState.FAILED
    assert "no asyncio loop is running" in states["aio"][1]
    with pytest.raises(ModelLoadError):
        await loader.load(registry.find("bad"))
    assert not registry.ready


async def test_unload_waits_for_calls_in_flight() -> None:
    registry = ModelRegistry([settings("m")])
    loader = loader_of(registry)
    await loader.load_all()
    slot = registry.find("m")
    unloaded_before = Tiny.unloaded
    async with trio.open_nursery() as nursery:
        with slot.call():
            nursery.start_soon(loader.unload, slot)
            await trio.sleep(0.01)
            assert slot.state is ModelState.UNLOADING and Tiny.unloaded == unloaded_before
            with pytest.raises(ModelNotReady):
                with slot.call():
                    pass
    assert slot.state is ModelState.UNLOADED and Tiny.unloaded == unloaded_before + 1


def test_implementation_in_the_models_folder_can_import_its_siblings(
    tmp_path: pathlib.Path,
) -> None:
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
