"""The store dressed for domain randomisation (twin/textures.py, twin/dressing.py): the same
geometry in other looks, distractors where they belong, and draws that do not depend on the
texture settings. No rendering except one small check that the twin's own look is untouched."""
from functools import lru_cache

import numpy as np
import pytest

from harness.paths import store_dir
from runtime.store import StoreSpec, load_store
from twin import dressing as dr
from twin.fixtures import WALL_HEIGHT_M, floor_mesh, shelf_unit_meshes, walls_meshes
from twin.textures import KINDS, texture


@lru_cache(maxsize=None)
def _store(name: str) -> StoreSpec:
    return load_store(store_dir() / f"{name}.yaml")


def _triangles(meshes) -> np.ndarray:
    """Every triangle as its three corners, rounded and sorted: geometry without the order."""
    tri = np.concatenate([np.asarray(m.vertices)[np.asarray(m.faces)] for m in meshes]).round(6)
    tri = np.sort(tri.reshape(-1, 3, 3).view([("x", float), ("y", float), ("z", float)]).reshape(-1, 3), axis=1)
    return np.sort(tri.view(float).reshape(-1, 9), axis=0)


@pytest.mark.parametrize("store", ["tiny_unit", "small_convenience"])
def test_dressed_store_has_the_very_geometry_of_the_twin(store: str):
    s = _store(store)
    own = []
    for u in s.units:
        for m, _ in shelf_unit_meshes(u):
            m = m.copy()
            m.apply_transform(u.local_to_world())
            own.append(m)
    own += [m for m, _ in walls_meshes(s)] + [floor_mesh(s)]
    look = dr.draw_store_look(np.random.default_rng(0), KINDS, 1.0)
    assert set(look) == set(dr.SURFACES)
    dressed = dr.dressed_static_meshes(s, look)
    assert np.array_equal(_triangles(own), _triangles(dressed))
    partly = dr.dressed_static_meshes(s, {k: v for k, v in look.items() if k in ("floor", "plates")})
    assert np.array_equal(_triangles(own), _triangles(partly))


def test_textures_are_deterministic_and_varied():
    for kind in KINDS:
        a, b = texture(kind, np.random.default_rng(1)), texture(kind, np.random.default_rng(1))
        assert a.shape == (256, 256, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
        assert not np.array_equal(a, texture(kind, np.random.default_rng(2)))
    with pytest.raises(ValueError, match="marble"):
        texture("marble", np.random.default_rng(0))


def test_distractors_stand_on_the_floor_clear_of_shelves_and_gates():
    s = _store("small_convenience")
    items = dr.distractors(s, np.random.default_rng(3), 40, KINDS)
    assert len(items) > 30
    for m, img in items:
        lo, hi = m.bounds
        assert abs(lo[2]) < 1e-6 and hi[2] < 1.5
        assert 0 < lo[0] and hi[0] < s.floor.width_m and 0 < lo[1] and hi[1] < s.floor.depth_m
        c = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 0.05])
        assert all(u.distance_to(c) > 0.05 for u in s.units)
        assert img.dtype == np.uint8 and img.shape[2] == 3


def test_posters_hang_on_the_walls_below_their_top():
    s = _store("small_convenience")
    W, D = s.floor.width_m, s.floor.depth_m
    for m, _ in dr.posters(s, np.random.default_rng(4), 30):
        lo, hi = m.bounds
        assert 0.1 < lo[2] and hi[2] < WALL_HEIGHT_M
        assert min(lo[0], lo[1], W - hi[0], D - hi[1]) < 0.01          # against a wall's inner face
        assert lo[0] > -0.01 and lo[1] > -0.01 and hi[0] < W + 0.01 and hi[1] < D + 0.01


def test_the_outside_stays_outside_and_clear_of_the_gates():
    s = _store("small_convenience")
    W, D = s.floor.width_m, s.floor.depth_m
    ground = dr.outside_ground(s, np.random.default_rng(0), KINDS)
    v = np.asarray(ground.vertices)
    assert np.all(v[:, 2] == 0)
    centres = v[np.asarray(ground.faces)].mean(axis=1)
    assert not np.any((centres[:, 0] > 0) & (centres[:, 0] < W) & (centres[:, 1] > 0) & (centres[:, 1] < D))
    gates = [(np.asarray(g.a_m) + np.asarray(g.b_m)) / 2 for g in s.gates]
    for m, _ in dr.background_props(s, np.random.default_rng(5), KINDS):
        lo, hi = m.bounds
        assert hi[0] < 0 or lo[0] > W or hi[1] < 0 or lo[1] > D
        assert all(np.linalg.norm(m.centroid[:2] - g) > dr.GATE_CLEAR_M for g in gates)


def test_placements_do_not_depend_on_the_texture_kinds():
    """The labels rely on it: the distractors' geometry is the same whatever textures they wear."""
    s = _store("tiny_unit")
    a = dr.distractors(s, np.random.default_rng(9), 6, KINDS) + dr.posters(s, np.random.default_rng(9), 3)
    b = dr.distractors(s, np.random.default_rng(9), 6, ("flat",)) + dr.posters(s, np.random.default_rng(9), 3)
    assert len(a) == len(b) and all(np.array_equal(x.vertices, y.vertices) for (x, _), (y, _) in zip(a, b))
    atlas = dr.atlas_mesh(a)
    uv = np.asarray(atlas.visual.uv)
    assert len(atlas.vertices) == sum(len(m.vertices) for m, _ in a) and uv.min() >= 0 and uv.max() <= 1


def test_the_twin_s_own_look_is_drawn_as_before():
    """None (what `storetwin simulate` and `run` pass) and no dressing at all are the same pixels."""
    from twin.renderer import StoreRenderer

    s = _store("tiny_unit")
    skus = [s.planogram[b].sku for b in sorted(s.planogram)]
    a = StoreRenderer(s, skus, "day", seed=1)
    b = StoreRenderer(s, skus, "day", seed=1, static_meshes=None)
    from twin.renderer import SceneState

    state = SceneState(0.0, np.tile(np.eye(4), (len(skus), 1, 1)), np.zeros(len(skus), bool))
    for r in (a, b):
        r.set_state(state)
    cam = s.cameras[0].id
    assert np.array_equal(a.render(cam).bgr, b.render(cam).bgr)
    c = StoreRenderer(s, skus, "day", seed=1, static_meshes=dr.dressed_static_meshes(s, dr.draw_store_look(
        np.random.default_rng(0), KINDS, 1.0)))
    c.set_state(state)
    oc, oa = c.render(cam), a.render(cam)
    assert np.array_equal(oc.depth, oa.depth) and not np.array_equal(oc.bgr, oa.bgr)
    for r in (a, b, c):
        r.close()
