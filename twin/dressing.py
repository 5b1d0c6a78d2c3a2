"""The store dressed differently for domain randomisation: the same fixtures in other textures and
colours, distractor objects and posters, and a world outside the walls.

:func:`draw_store_look` picks, per surface (floor, walls, shelf frames, back panels, shelf
plates), a procedural texture (``twin.textures``) or the twin's own colours;
:func:`dressed_static_meshes` builds the renderer's static scene with it: the very geometry of
``twin.fixtures`` (same vertices, same faces), only the look differs, so the depth and instance
masks, and with them every label, are those of the undressed store. Distractors
(:func:`distractors`, :func:`posters`, :func:`background_props`) are extra, unlabelled geometry
that only occludes; all of it comes as one textured mesh (:func:`atlas_mesh`), one draw call, and
the ground outside the walls (:func:`outside_ground`) as another.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import trimesh

from runtime.store import StoreSpec
from twin.fixtures import (BACK_PANEL, BASE, DIVIDER, METAL, PLATE, WALL, WALL_HEIGHT_M, floor_mesh, shelf_unit_meshes,
                           walls_meshes)
from twin.textures import box_uv, palette_colour, texture

SURFACES = ("floor", "walls", "frames", "back_panels", "plates")
# metres per texture repeat, drawn per surface
REPEAT_M = {"floor": (0.8, 3.0), "walls": (0.5, 2.0), "frames": (0.3, 1.2), "back_panels": (0.4, 1.5), "plates": (0.3, 1.2)}
_PART_SURFACE = {METAL: "frames", BASE: "frames", BACK_PANEL: "back_panels", PLATE: "plates", DIVIDER: "plates"}
OUTSIDE_M = 8.0          # the ground outside the walls reaches this far
GATE_CLEAR_M = 4.0       # nothing is put within this of a gate's middle: shoppers walk there


@dataclass(frozen=True)
class SurfaceLook:
    kind: str                 # a texture kind of twin.textures
    image: np.ndarray         # its sRGB texture, H×W×3 uint8
    repeat_m: float           # metres per repeat


def draw_store_look(rng: np.random.Generator, kinds: tuple[str, ...], p: float) -> dict[str, SurfaceLook]:
    """Per surface, with probability ``p`` a texture of a kind drawn uniformly from ``kinds``; the
    surfaces left out keep the twin's own colours. Draws the same number of values from ``rng``
    whatever ``p`` decides."""
    look = {}
    for s in SURFACES:
        take = rng.random() < p
        kind = str(rng.choice(list(kinds))) if kinds else "flat"
        sub = np.random.default_rng(rng.integers(2 ** 63))
        repeat = float(rng.uniform(*REPEAT_M[s]))
        if take and kinds:
            look[s] = SurfaceLook(kind, texture(kind, sub), repeat)
    return look


def _textured(mesh: trimesh.Trimesh, uv: np.ndarray, image: np.ndarray) -> trimesh.Trimesh:
    from PIL import Image

    mat = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(image), metallicFactor=0.0,
                                              roughnessFactor=0.9)
    return trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uv, material=mat))


def _coloured(parts: list[tuple[trimesh.Trimesh, tuple]]) -> trimesh.Trimesh:
    """Parts in their own face colours, as the renderer colours its fixtures."""
    out = []
    for m, rgb in parts:
        m = m.copy()
        m.visual = trimesh.visual.ColorVisuals(m, face_colors=np.tile([*rgb, 255], (len(m.faces), 1)))
        out.append(m)
    return trimesh.util.concatenate(out)


def dressed_static_meshes(store: StoreSpec, look: dict[str, SurfaceLook]) -> list[trimesh.Trimesh]:
    """The store's fixtures, walls, gates and floor (the geometry of ``twin.fixtures``), each
    surface in its texture from ``look`` or, when it has none, in its own colours."""
    groups: dict[str, list] = {s: [] for s in SURFACES}
    plain: list[tuple[trimesh.Trimesh, tuple]] = []
    for u in store.units:
        T = u.local_to_world()
        for mesh, rgb in shelf_unit_meshes(u):
            s = _PART_SURFACE[rgb]
            if s in look:     # texture coordinates in the unit's own frame, where its boxes are axis-aligned
                uv = box_uv(np.asarray(mesh.vertices), np.asarray(mesh.faces), mesh.face_normals, look[s].repeat_m)
                m = mesh.copy()
                m.apply_transform(T)
                groups[s].append((m, uv))
            else:
                m = mesh.copy()
                m.apply_transform(T)
                plain.append((m, rgb))
    for mesh, rgb in walls_meshes(store):
        if rgb == WALL and "walls" in look:
            groups["walls"].append((mesh, box_uv(np.asarray(mesh.vertices), np.asarray(mesh.faces), mesh.face_normals,
                                                 look["walls"].repeat_m)))
        else:
            plain.append((mesh, rgb))
    out = []
    for s in ("frames", "back_panels", "plates", "walls"):
        if groups[s]:
            m = trimesh.util.concatenate([g[0] for g in groups[s]])
            out.append(_textured(m, np.concatenate([g[1] for g in groups[s]]), look[s].image))
    if plain:
        out.append(_coloured(plain))
    floor = floor_mesh(store)
    if "floor" in look:
        out.append(_textured(floor, np.asarray(floor.vertices)[:, :2] / look["floor"].repeat_m, look["floor"].image))
    else:
        out.append(floor)
    return out


# -- distractors ----------------------------------------------------------------------------------
def _face_uv(mesh: trimesh.Trimesh) -> np.ndarray:
    """0..1 texture coordinates for any mesh with unshared vertices: each face projected along its
    normal's main axis onto the mesh's bounding box."""
    v = np.asarray(mesh.vertices)
    lo, hi = v.min(axis=0), v.max(axis=0)
    ext = np.maximum(hi - lo, 1e-6)
    uv = np.zeros((len(v), 2))
    axis = np.abs(mesh.face_normals).argmax(axis=1)
    for a in range(3):
        fa = mesh.faces[axis == a].ravel()
        i, j = [k for k in range(3) if k != a]
        uv[fa] = (v[fa][:, [i, j]] - lo[[i, j]]) / ext[[i, j]]
    return uv


def poster_image(rng: np.random.Generator, w_px: int = 128, h_px: int = 160) -> np.ndarray:
    """A poster: a background colour, a few shapes and lines of made-up words (OpenCV's built-in
    Hershey font). sRGB bytes."""
    def c():
        return tuple(int(x) for x in np.clip(255 * palette_colour(rng) ** (1 / 2.2), 0, 255))

    img = np.full((h_px, w_px, 3), c(), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.integers(0, w_px - 10)), int(rng.integers(0, h_px - 10))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(10, w_px)), y0 + int(rng.integers(10, h_px // 2))), c(), -1)
        else:
            cv2.circle(img, (x0, y0), int(rng.integers(8, w_px // 2)), c(), -1)
    letters = np.array(list("ABCDEFGHIJKLMNOPRSTUVWYZ0123456789%"))
    y = int(rng.integers(18, 40))
    for _ in range(int(rng.integers(1, 5))):
        word = "".join(rng.choice(letters, int(rng.integers(2, 7))))
        scale = float(rng.uniform(0.4, 1.1))
        cv2.putText(img, word, (int(rng.integers(2, 20)), y), cv2.FONT_HERSHEY_SIMPLEX if rng.random() < 0.5
                    else cv2.FONT_HERSHEY_DUPLEX, scale, c(), max(1, int(round(scale * 2))), cv2.LINE_AA)
        y += int(30 * scale + rng.integers(4, 16))
        if y > h_px - 4:
            break
    return img


def _random_look(rng: np.random.Generator, kinds: tuple[str, ...]) -> np.ndarray:
    """A small texture of a kind drawn from ``kinds``, made from a seed drawn from ``rng``: one
    draw from ``rng`` whatever the kinds, so the placements drawn after it stay the same."""
    sub = np.random.default_rng(rng.integers(2 ** 63))
    return texture(str(sub.choice(list(kinds))) if kinds else "flat", sub, 64)


def _free_on_floor(store: StoreSpec, xy: np.ndarray, radius: float) -> bool:
    """Inside the floor, off the shelf units and away from the gates."""
    W, D = store.floor.width_m, store.floor.depth_m
    if not (radius < xy[0] < W - radius and radius < xy[1] < D - radius):
        return False
    p = np.array([xy[0], xy[1], 0.05])
    if any(u.distance_to(p) < radius + 0.1 for u in store.units):
        return False
    return all(np.linalg.norm(xy - (np.asarray(g.a_m) + np.asarray(g.b_m)) / 2) > 1.5 for g in store.gates)


def _placed(m: trimesh.Trimesh, xy, z: float, yaw: float) -> trimesh.Trimesh:
    T = trimesh.transformations.rotation_matrix(yaw, [0, 0, 1])
    T[:3, 3] = [xy[0], xy[1], z]
    m.apply_transform(T)
    return m


def distractors(store: StoreSpec, rng: np.random.Generator, n: int, kinds: tuple[str, ...]) -> list[tuple[trimesh.Trimesh, np.ndarray]]:
    """``n`` unlabelled objects in random textures and colours: floor mats, balls and wet-floor
    cones in the aisles; bins, buckets, boxes and sign stands along the walls and at the shelves'
    feet. (mesh in world coordinates, its texture) pairs; they only occlude (the shoppers'
    physics does not know them)."""
    W, D = store.floor.width_m, store.floor.depth_m
    out = []
    for _ in range(n):
        kind = str(rng.choice(["mat", "ball", "cone", "bin", "box", "stand"], p=[0.2, 0.15, 0.15, 0.2, 0.15, 0.15]))
        if kind == "mat":
            m = trimesh.creation.box([rng.uniform(0.6, 1.4), rng.uniform(0.4, 0.9), 0.008])
        elif kind == "ball":
            m = trimesh.creation.icosphere(subdivisions=2, radius=rng.uniform(0.06, 0.18))
        elif kind == "cone":
            m = trimesh.creation.cone(radius=rng.uniform(0.1, 0.18), height=rng.uniform(0.3, 0.6), sections=12)
        elif kind == "bin":
            m = trimesh.creation.cylinder(radius=rng.uniform(0.12, 0.25), height=rng.uniform(0.3, 0.8), sections=16)
        elif kind == "box":
            m = trimesh.creation.box([rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.5), rng.uniform(0.15, 0.6)])
        else:
            m = trimesh.creation.box([rng.uniform(0.35, 0.6), 0.04, rng.uniform(0.8, 1.4)])
        m.unmerge_vertices()
        lo, hi = m.bounds
        radius = float(np.linalg.norm(hi[:2] - lo[:2]) / 2)
        in_aisle = kind in ("mat", "ball", "cone")
        for _try in range(30):
            if in_aisle:
                xy = np.array([rng.uniform(0, W), rng.uniform(0, D)])
            elif rng.random() < 0.5 and store.units:           # at the foot of a shelf unit
                u = store.units[int(rng.integers(len(store.units)))]
                nrm = u.front_normal()
                along = np.array([-nrm[1], nrm[0]])
                c = u.footprint_xy().mean(axis=0)
                xy = c + nrm * (u.depth_m / 2 + radius + 0.15) + along * rng.uniform(-0.5, 0.5) * u.width_m
            else:                                               # along a wall
                t = rng.uniform(0, 1)
                side = int(rng.integers(4))
                xy = np.array([[t * W, radius + 0.05], [t * W, D - radius - 0.05],
                               [radius + 0.05, t * D], [W - radius - 0.05, t * D]][side])
            if _free_on_floor(store, xy, radius):
                break
        else:
            continue
        out.append((_placed(m, xy, -lo[2], rng.uniform(0, 2 * np.pi)), _random_look(rng, kinds)))
    return out


def posters(store: StoreSpec, rng: np.random.Generator, n: int) -> list[tuple[trimesh.Trimesh, np.ndarray]]:
    """``n`` posters on the inner faces of the low walls (below their top, clear of the gates)."""
    W, D = store.floor.width_m, store.floor.depth_m
    # each wall's inner face: (start, direction along, inward normal, length)
    walls = [(np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), W),
             (np.array([0.0, D]), np.array([1.0, 0.0]), np.array([0.0, -1.0]), W),
             (np.array([0.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), D),
             (np.array([W, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), D)]
    out = []
    for _ in range(n):
        start, along, inward, length = walls[int(rng.integers(4))]
        w, h = rng.uniform(0.3, 0.8), rng.uniform(0.25, 0.55)
        if length < w + 0.4:
            continue
        t = rng.uniform(0.2 + w / 2, length - 0.2 - w / 2)
        centre = start + along * t + inward * 0.004
        if any(np.linalg.norm(centre - (np.asarray(g.a_m) + np.asarray(g.b_m)) / 2)
               < np.linalg.norm(np.subtract(g.b_m, g.a_m)) / 2 + w / 2 + 0.3 for g in store.gates):
            continue
        z = rng.uniform(0.12, WALL_HEIGHT_M - 0.05 - h) + h / 2
        m = trimesh.creation.box([w, 0.004, h])      # x along the wall, y its thickness
        m.unmerge_vertices()
        yaw = float(np.arctan2(along[1], along[0]))
        out.append((_placed(m, centre, z, yaw), poster_image(np.random.default_rng(rng.integers(2 ** 63)))))
    return out


def outside_ground(store: StoreSpec, rng: np.random.Generator, kinds: tuple[str, ...]) -> trimesh.Trimesh:
    """The ground outside the low walls, out to :data:`OUTSIDE_M`, in a random texture: four
    rectangles round the floor, none over it (the floor stays the only surface inside)."""
    W, D, R = store.floor.width_m, store.floor.depth_m, OUTSIDE_M
    image = texture(str(rng.choice(list(kinds))) if kinds else "flat", rng)
    repeat = float(rng.uniform(1.0, 3.0))
    verts, faces = [], []
    for k, (lo, hi) in enumerate((((-R, -R), (W + R, 0.0)), ((-R, D), (W + R, D + R)), ((-R, 0.0), (0.0, D)),
                                  ((W, 0.0), (W + R, D)))):
        verts += [[lo[0], lo[1], 0.0], [hi[0], lo[1], 0.0], [hi[0], hi[1], 0.0], [lo[0], hi[1], 0.0]]
        faces += [[4 * k, 4 * k + 1, 4 * k + 2], [4 * k, 4 * k + 2, 4 * k + 3]]
    m = trimesh.Trimesh(np.array(verts), np.array(faces), process=False)
    return _textured(m, np.asarray(m.vertices)[:, :2] / repeat, image)


def background_props(store: StoreSpec, rng: np.random.Generator, kinds: tuple[str, ...]) -> list[tuple[trimesh.Trimesh, np.ndarray]]:
    """A few tall boxes beyond the low walls (other rooms' shelving, stacked goods), for the
    cameras that see over them, clear of the gates where the shoppers come and go."""
    W, D = store.floor.width_m, store.floor.depth_m
    gates = [(np.asarray(g.a_m) + np.asarray(g.b_m)) / 2 for g in store.gates]
    out = []
    for _ in range(int(rng.integers(3, 9))):
        size = [rng.uniform(0.5, 2.5), rng.uniform(0.4, 1.2), rng.uniform(1.0, 2.6)]
        side = int(rng.integers(4))
        off = rng.uniform(0.5, 4.0) + max(size[:2]) / 2
        t = rng.uniform(-1.0, 1.0 + (W if side < 2 else D))
        xy = np.array([[t, -off], [t, D + off], [-off, t], [W + off, t]][side])
        if any(np.linalg.norm(xy - g) < GATE_CLEAR_M + max(size[:2]) / 2 for g in gates):
            continue
        m = trimesh.creation.box(size)
        m.unmerge_vertices()
        out.append((_placed(m, xy, size[2] / 2, rng.uniform(0, np.pi)), _random_look(rng, kinds)))
    return out


def background_colour(rng: np.random.Generator) -> np.ndarray:
    """What the cameras see where nothing is drawn (RGB, 0..1)."""
    return np.clip(palette_colour(rng) ** (1 / 2.2), 0, 1)


def atlas_mesh(items: list[tuple[trimesh.Trimesh, np.ndarray]], cell_px: int = 64) -> trimesh.Trimesh | None:
    """Meshes with their own textures as one mesh over one texture atlas (one draw call): each
    texture in a cell with a padded edge (so mipmaps do not bleed), each mesh's faces projected
    onto its bounding box (:func:`_face_uv`) into its cell."""
    from PIL import Image

    if not items:
        return None
    n = int(np.ceil(np.sqrt(len(items))))
    pad = cell_px // 8
    cell = cell_px + 2 * pad
    A = n * cell
    atlas = np.zeros((A, A, 3), np.uint8)
    verts, faces, uvs, k0 = [], [], [], 0
    for k, (m, img) in enumerate(items):
        cx, cy = k % n, k // n
        t = cv2.resize(img, (cell_px, cell_px), interpolation=cv2.INTER_AREA) if img.shape[:2] != (cell_px, cell_px) else img
        atlas[cy * cell:(cy + 1) * cell, cx * cell:(cx + 1) * cell] = np.pad(t, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        uv = np.clip(_face_uv(m), 0.0, 1.0)
        x = (cx * cell + pad + uv[:, 0] * cell_px) / A
        y_top = (cy * cell + pad + (1.0 - uv[:, 1]) * cell_px) / A
        uvs.append(np.stack([x, 1.0 - y_top], axis=1))
        verts.append(np.asarray(m.vertices))
        faces.append(np.asarray(m.faces) + k0)
        k0 += len(m.vertices)
    mat = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(atlas), metallicFactor=0.0, roughnessFactor=0.85)
    return trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=False,
                           visual=trimesh.visual.TextureVisuals(uv=np.concatenate(uvs), material=mat))
