"""Product meshes and textures, shelf fixtures, and an offscreen render of a textured product."""
from __future__ import annotations

import os

os.environ["PYOPENGL_PLATFORM"] = "egl"   # before pyrender is imported anywhere

import numpy as np
import pytest

from runtime.store import SHELF_THICKNESS_M, Product, ShelfUnit, parse_store
from twin.fixtures import floor_mesh, shelf_plate_box, shelf_unit_meshes, walls_meshes
from twin.products import label_patch_px, packaging_texture, product_mesh

SIZES = {"box": (0.19, 0.07, 0.28), "can": (0.066, 0.066, 0.122), "bottle": (0.075, 0.07, 0.27), "bag": (0.18, 0.08, 0.25)}


def _product(sku: str = "COLA", shape: str = "can", label: str = "#ffd020", lookalike: str | None = "cola") -> Product:
    return Product(sku=sku, name=sku, size_m=SIZES[shape], mass_g=350, price=1.0, shape=shape,
                   colour="#c01818", label_colour=label, lookalike=lookalike)


@pytest.mark.parametrize("shape", sorted(SIZES))
def test_mesh_extents_base_and_budget(shape: str) -> None:
    m = product_mesh(_product(shape=shape))
    assert np.allclose(m.extents, SIZES[shape], atol=0.002)
    assert abs(m.bounds[0, 2]) < 1e-9                                  # base on z=0
    assert np.allclose(m.bounds[0, :2], -m.bounds[1, :2], atol=1e-9)   # centred in x and y
    assert len(m.faces) <= 300
    assert m.visual.kind == "texture" and len(m.visual.uv) == len(m.vertices)


def test_lookalike_textures_differ_only_in_the_label() -> None:
    r0, r1, c0, c1 = label_patch_px(128)
    inside = np.zeros((128, 128), bool)
    inside[r0:r1, c0:c1] = True
    for other in (_product("COLA0", label="#111111"), _product("COLA-LIME", label="#ffd020")):  # colour differs; marks only
        a, b = packaging_texture(_product()), packaging_texture(other)
        assert np.array_equal(a[~inside], b[~inside])
        assert np.any(a[inside] != b[inside])


def test_texture_deterministic_without_rng_and_jittered_with() -> None:
    p = _product(shape="box")
    t = packaging_texture(p)
    assert t.shape == (128, 128, 3) and t.dtype == np.uint8
    assert np.array_equal(t, packaging_texture(p))
    assert np.array_equal(packaging_texture(p, np.random.default_rng(3)), packaging_texture(p, np.random.default_rng(3)))
    assert not np.array_equal(t, packaging_texture(p, np.random.default_rng(3)))
    r0, r1, c0, c1 = label_patch_px(128)
    label_pixels = t[r0:r1, c0:c1].reshape(-1, 3)
    assert np.mean(np.all(label_pixels == p.rgb("label_colour"), axis=1)) > 0.5   # mostly label colour


def test_shelf_plates_top_at_level_height() -> None:
    unit = ShelfUnit(id="U1", position_m=(2, 1), size_m=(1.0, 0.4, 1.6),
                     shelves=({"z_m": 1.05, "bins": 3}, {"z_m": 0.15, "bins": 2}, {"z_m": 0.6, "bins": 1}))
    meshes = shelf_unit_meshes(unit)
    for i, z in enumerate((0.15, 0.6, 1.05)):                          # shelf index counts bottom-up
        centre, half = shelf_plate_box(unit, i)
        assert centre[2] + half[2] == pytest.approx(z)
        assert 2 * half[2] == pytest.approx(SHELF_THICKNESS_M)
        assert np.allclose(half[:2], (0.5, 0.2))
        plates = [m for m, _ in meshes if np.allclose(m.bounds, [centre - half, centre + half])]
        assert len(plates) == 1
    dividers = [m for m, _ in meshes if m.extents[0] < 0.01]
    assert len(dividers) == (3 - 1) + (2 - 1)
    assert all(m.extents[2] == pytest.approx(0.05) for m in dividers)


def test_floor_and_walls_leave_the_gates_open() -> None:
    store = parse_store({
        "name": "t", "floor": {"width_m": 4, "depth_m": 3},
        "catalog": [{"sku": "A", "name": "a", "size_m": [0.1, 0.1, 0.1], "mass_g": 100, "price": 1}],
        "units": [{"id": "U1", "position_m": [2, 1.5], "size_m": [1, 0.4, 1.6], "shelves": [{"z_m": 0.2, "bins": 1}]}],
        "planogram": {"U1/0/0": {"sku": "A"}},
        "gates": [{"id": "in", "kind": "entry", "a_m": [0.5, 0], "b_m": [1.3, 0]},
                  {"id": "out", "kind": "exit", "a_m": [4, 2.0], "b_m": [4, 2.8]}],
        "cameras": [],
    })
    floor = floor_mesh(store)
    assert np.allclose(floor.bounds, [[0, 0, 0], [4, 3, 0]])
    boxes = [m.bounds for m, _ in walls_meshes(store)]

    def blocked(p) -> bool:
        return any(np.all(lo <= p) and np.all(p <= hi) for lo, hi in boxes)

    assert not blocked([0.9, -0.05, 0.5]) and not blocked([4.05, 2.4, 0.5])   # walk through the gates
    assert blocked([2.0, -0.05, 0.5]) and blocked([4.05, 1.0, 0.5]) and blocked([2.0, 3.05, 0.5])
    assert max(hi[2] for lo, hi in boxes) <= 1.5                                 # low enough for ceiling cameras


def _look_at(eye, target) -> np.ndarray:
    """OpenGL camera pose (looks along −z, y up) at ``eye`` towards ``target``."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = eye - target
    z /= np.linalg.norm(z)
    up = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.99 else np.array([0.0, 1.0, 0.0])
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, np.cross(z, x), z, eye
    return pose


@pytest.fixture(scope="module")
def renderer():
    pyrender = pytest.importorskip("pyrender")
    try:
        r = pyrender.OffscreenRenderer(160, 160)
    except Exception as e:   # no EGL on this machine: the Makefile's `debs` installs it
        pytest.skip(f"no offscreen OpenGL context: {e}")
    yield r
    r.delete()


def _label_fraction(renderer, product: Product, eye) -> float:
    """Fraction of the product's pixels within a few levels of its label colour (unlit render)."""
    import pyrender

    scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 1.0])
    scene.add(pyrender.Mesh.from_trimesh(product_mesh(product)))
    scene.add(pyrender.PerspectiveCamera(yfov=0.5), pose=_look_at(eye, (0, 0, product.size_m[2] / 2)))
    colour, depth = renderer.render(scene, flags=pyrender.RenderFlags.FLAT)
    seen = depth > 0
    close = np.all(np.abs(colour.astype(int) - product.rgb("label_colour")) <= 8, axis=2) & seen
    return close.sum() / max(seen.sum(), 1)


@pytest.mark.parametrize("shape", sorted(SIZES))
def test_label_rendered_on_the_front_and_from_above(renderer, shape: str) -> None:
    p = _product(shape=shape)
    assert _label_fraction(renderer, p, (0, 0.8, p.size_m[2] / 2)) > 0.05        # front: +y
    assert _label_fraction(renderer, p, (0, 0.5, 0.9)) > 0.05                     # ceiling camera, ~60° down
    if shape == "can":                                   # the label wraps the front half only; lid unseen from level
        assert _label_fraction(renderer, p, (0, -0.8, p.size_m[2] / 2)) < 0.01
