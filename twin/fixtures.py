"""Store fixtures for the renderer: shelf units, the floor, low walls and the gates.

Shelf units are built in the unit's local frame (x along the width, centred; y towards the front,
centred, so the front is at +y; z up from the floor); place them with ``ShelfUnit.local_to_world``.
The frame (uprights, back panel) sits just outside the bins' volume (|x| > width/2, y < −depth/2)
so it never cuts into stocked products; a plate spans exactly the unit's width and depth.
Floor, walls and gates are in the world frame. Every mesh has its own vertices per face (flat
shading even with pyrender's default ``smooth=True``) and carries its colour as vertex colours too.
"""
from __future__ import annotations

import numpy as np
import trimesh

from runtime.store import SHELF_THICKNESS_M, ShelfUnit, StoreSpec

RGB = tuple[int, int, int]

METAL: RGB = (190, 192, 196)
BACK_PANEL: RGB = (168, 171, 176)
BASE: RGB = (120, 122, 128)
PLATE: RGB = (242, 242, 238)
DIVIDER: RGB = (205, 210, 216)
WALL: RGB = (224, 220, 212)
GATE_POST: RGB = (110, 115, 122)
SCANNER: dict[str, RGB] = {"entry": (40, 150, 90), "exit": (190, 60, 50)}

UPRIGHT_M = 0.03        # upright thickness (x)
BACK_M = 0.015          # back panel thickness (y)
BASE_TOP_M = 0.10       # plinth height, lowered to clear the lowest plate
DIVIDER_M = 0.004       # bin divider thickness (x)
DIVIDER_HEIGHT_M = 0.05
TILE_M = 0.6
WALL_HEIGHT_M = 1.0     # low: ceiling cameras see over it
WALL_M = 0.1
GATE_ON_WALL_M = 0.5    # a gate end this close to a wall line opens that wall


def _box(lo, hi, rgb: RGB) -> trimesh.Trimesh:
    """An axis-aligned box from corner ``lo`` to ``hi`` with unshared vertices and a vertex colour."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    m = trimesh.creation.box(extents=hi - lo)
    m.apply_translation((lo + hi) / 2)
    m.unmerge_vertices()
    m.visual.vertex_colors = np.tile([*rgb, 255], (len(m.vertices), 1)).astype(np.uint8)
    return m


def _levels(unit: ShelfUnit) -> list:
    """Shelf levels bottom-up: the shelf index of a bin id (``UNIT/SHELF/BIN``) counts in this order."""
    return sorted(unit.shelves, key=lambda s: s.z_m)


def shelf_plate_box(unit: ShelfUnit, shelf_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(centre xyz, half extents xyz) of a shelf level's plate in the unit's local frame; its top
    surface is at the level's ``z_m``. ``shelf_index`` counts levels bottom-up, as bin ids do."""
    z = _levels(unit)[shelf_index].z_m
    centre = np.array([0.0, 0.0, z - SHELF_THICKNESS_M / 2])
    half = np.array([unit.width_m / 2, unit.depth_m / 2, SHELF_THICKNESS_M / 2])
    return centre, half


def shelf_unit_meshes(unit: ShelfUnit) -> list[tuple[trimesh.Trimesh, RGB]]:
    """Uprights, back panel, plinth, one plate per level and 5 cm bin dividers, unit local frame."""
    w, d, h = unit.width_m / 2, unit.depth_m / 2, unit.height_m
    out: list[tuple[trimesh.Trimesh, RGB]] = []
    for sign in (-1, 1):
        x0, x1 = sorted((sign * w, sign * (w + UPRIGHT_M)))
        out.append((_box((x0, -d - BACK_M, 0), (x1, d, h), METAL), METAL))
    out.append((_box((-w, -d - BACK_M, 0), (w, -d, h), BACK_PANEL), BACK_PANEL))
    levels = _levels(unit)
    base_top = min(BASE_TOP_M, levels[0].z_m - SHELF_THICKNESS_M)
    if base_top > 0.005:
        out.append((_box((-w, -d, 0), (w, d, base_top), BASE), BASE))
    for i, level in enumerate(levels):
        centre, half = shelf_plate_box(unit, i)
        out.append((_box(centre - half, centre + half, PLATE), PLATE))
        pitch = unit.width_m / level.bins
        for j in range(1, level.bins):
            x = -w + j * pitch
            lo, hi = (x - DIVIDER_M / 2, -d, level.z_m), (x + DIVIDER_M / 2, d, level.z_m + DIVIDER_HEIGHT_M)
            out.append((_box(lo, hi, DIVIDER), DIVIDER))
    return out


def floor_mesh(store: StoreSpec) -> trimesh.Trimesh:
    """The floor, z=0 over [0, width]×[0, depth], in 0.6 m tiles of slightly varying grey (vertex
    colours, unshared per tile so the edges stay crisp). The pattern is fixed by the floor size."""
    W, D = store.floor.width_m, store.floor.depth_m
    xs = np.append(np.arange(0.0, W, TILE_M), W)
    ys = np.append(np.arange(0.0, D, TILE_M), D)
    xs, ys = xs[np.append(np.diff(xs) > 1e-6, True)], ys[np.append(np.diff(ys) > 1e-6, True)]
    ix, iy = np.meshgrid(np.arange(len(xs) - 1), np.arange(len(ys) - 1), indexing="ij")
    ix, iy = ix.ravel(), iy.ravel()
    x0, x1, y0, y1 = xs[ix], xs[ix + 1], ys[iy], ys[iy + 1]
    z = np.zeros_like(x0)
    verts = np.stack([np.stack([x0, y0, z], 1), np.stack([x1, y0, z], 1),
                      np.stack([x1, y1, z], 1), np.stack([x0, y1, z], 1)], 1).reshape(-1, 3)
    k = 4 * np.arange(len(ix))[:, None]
    faces = np.concatenate([k + [0, 1, 2], k + [0, 2, 3]])
    # A checker of two close greys plus a small fixed per-tile variation: subtle, never a cue.
    grey = 200 + 8 * ((ix + iy) % 2) + ((ix * 7 + iy * 13) % 5) - 2
    rgb = np.stack([grey, grey - 2, grey - 6], 1)
    colours = np.repeat(np.concatenate([rgb, np.full((len(ix), 1), 255)], 1), 4, axis=0).astype(np.uint8)
    return trimesh.Trimesh(vertices=verts, faces=faces, vertex_colors=colours, process=False)


def _subtract(lo: float, hi: float, cuts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of [lo, hi] outside every cut interval."""
    parts = [(lo, hi)]
    for c0, c1 in cuts:
        parts = [p for a, b in parts for p in ((a, min(b, c0)), (max(a, c1), b)) if p[1] - p[0] > 1e-6]
    return parts


def walls_meshes(store: StoreSpec) -> list[tuple[trimesh.Trimesh, RGB]]:
    """Low walls just outside the floor's edges, open where a gate lies on the wall line, plus at
    each gate two posts (at ``a_m`` and ``b_m``) and a scanner pillar just inside the store next to
    ``a_m`` (green at the entry, red at the exit). World frame."""
    W, D, t, hw = store.floor.width_m, store.floor.depth_m, WALL_M, WALL_HEIGHT_M
    # Each wall: (axis along it, coordinate of its line, the wall's lo/hi across the line).
    walls = [(0, 0.0, (-t, 0.0)), (0, D, (D, D + t)), (1, 0.0, (-t, 0.0)), (1, W, (W, W + t))]
    out: list[tuple[trimesh.Trimesh, RGB]] = []
    for axis, line, (c0, c1) in walls:
        across = 1 - axis
        cuts = []
        for g in store.gates:
            a, b = np.asarray(g.a_m, float), np.asarray(g.b_m, float)
            if abs(a[across] - line) < GATE_ON_WALL_M and abs(b[across] - line) < GATE_ON_WALL_M:
                cuts.append((min(a[axis], b[axis]), max(a[axis], b[axis])))
        length = (W, D)[axis]
        for s0, s1 in _subtract(-t, length + t, cuts):
            lo, hi = [0.0, 0.0, 0.0], [0.0, 0.0, hw]
            lo[axis], hi[axis], lo[across], hi[across] = s0, s1, c0, c1
            out.append((_box(lo, hi, WALL), WALL))
    centre = np.array([W / 2, D / 2])
    for g in store.gates:
        a, b = np.asarray(g.a_m, float), np.asarray(g.b_m, float)
        for p in (a, b):
            out.append((_box((*(p - 0.05), 0.0), (*(p + 0.05), 1.05), GATE_POST), GATE_POST))
        along = (b - a) / max(np.linalg.norm(b - a), 1e-9)
        inward = np.array([-along[1], along[0]])
        if inward @ (centre - (a + b) / 2) < 0:
            inward = -inward
        p = a + 0.35 * inward - 0.1 * along
        rgb = SCANNER[g.kind]
        out.append((_box((*(p - 0.1), 0.0), (*(p + 0.1), 1.3), rgb), rgb))
    return out
