"""Lighting presets change what the cameras see: evening is darker, flicker varies over time."""
import numpy as np
import pytest

from harness.paths import store_dir
from runtime.store import load_store
from sim.world import PhysicsWorld
from twin.lighting import LightingPreset
from twin.renderer import SceneState, StoreRenderer


@pytest.fixture(scope="module")
def scene():
    store = load_store(store_dir() / "tiny_unit.yaml")
    w = PhysicsWorld(store)
    yield store, [i.sku for i in w.instances], w.poses()
    w.close()


def _brightness(scene, preset: str, t: float) -> float:
    store, skus, poses = scene
    r = StoreRenderer(store, skus, preset, seed=1)
    r.set_state(SceneState(t, poses, np.ones(len(skus), bool), []))
    return float(r.render("cam_01", masks="none").bgr.mean())


def test_evening_is_darker_than_day(scene):
    assert _brightness(scene, "evening", 0.0) < 0.7 * _brightness(scene, "day", 0.0)


def test_flicker_varies_and_day_does_not():
    flicker, day = LightingPreset.named("flicker"), LightingPreset.named("day")
    g = [flicker.gain(t / 10, seed=3) for t in range(100)]
    assert max(g) - min(g) > 0.3
    assert {day.gain(t / 10) for t in range(100)} == {1.0}
    assert g == [flicker.gain(t / 10, seed=3) for t in range(100)], "deterministic"


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="disco"):
        LightingPreset.named("disco")
