"""Product look and shape for the renderer: procedural packaging textures and low-poly meshes.

Every product is drawn from its catalog entry alone, so a store file is all the renderer needs.
The packaging is a base colour, one or two bands and a label patch in ``label_colour`` carrying a
few marks derived from the SKU. Everything outside the label comes from the look-alike group (or
the SKU when there is none) and the base colour, so look-alikes of one colour differ only inside
the label: the hard case for a recogniser, as in a real store.

Mesh frame: base at z=0, centred in x and y, extents ``size_m`` (x width, y depth, z height). The
front, the face a shopper sees, faces local **+y** (as shelf fronts do in a unit's frame), and the
label is centred on it. Seen from the front, +x is on the viewer's left. The label also shows from
above: a box's and a bag's top face carry the label patch, a can's lid and a bottle's cap are in
``label_colour``, so ceiling cameras can tell look-alikes apart.
"""
from __future__ import annotations

import hashlib
import math

import cv2
import numpy as np
import trimesh
from PIL import Image

from runtime.store import Product

# Texture layout, as fractions of the image (u from the left, t from the top).
LABEL_U = (0.30, 0.70)
LABEL_T = (0.28, 0.74)
_HEADER_T = (0.28, 0.40)        # top strip of the label: label colour only, no marks (lids, caps)
_BAND_T = ((0.04, 0.24), (0.78, 0.96))   # where the bands may lie: never beside the label
_SIDE_U = (0.03, 0.22)          # a strip of base colour and bands, left of the label
_PLAIN = (0.12, 0.5)            # a point of plain base colour (u, t)
_HEADER = (0.5, 0.33)           # a point of plain label colour (u, t)
_SEGMENTS = 16


def _seeded(key: str) -> np.random.Generator:
    """A generator seeded from a string, stable across runs and machines (unlike ``hash``)."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


def label_patch_px(size_px: int = 128) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of the label patch in a ``size_px`` texture; rows/cols half-open."""
    return (round(LABEL_T[0] * size_px), round(LABEL_T[1] * size_px),
            round(LABEL_U[0] * size_px), round(LABEL_U[1] * size_px))


def _shade(rgb: np.ndarray, k: float) -> np.ndarray:
    """k < 0 darkens towards black, k > 0 lightens towards white."""
    return rgb * (1 + k) if k < 0 else rgb + (255 - rgb) * k


def _draw_marks(label: np.ndarray, sku: str, label_rgb: np.ndarray, base_rgb: np.ndarray) -> None:
    """Draw 3–6 small shapes and text-like bars from the SKU's hash into ``label`` (in place)."""
    g = _seeded("marks:" + sku)
    h, w = label.shape[:2]
    top = round((_HEADER_T[1] - LABEL_T[0]) / (LABEL_T[1] - LABEL_T[0]) * h)  # keep the header plain
    lum = 0.299 * label_rgb[0] + 0.587 * label_rgb[1] + 0.114 * label_rgb[2]
    ink = np.array([25.0, 25.0, 30.0]) if lum > 120 else np.array([245.0, 245.0, 240.0])
    inks = [ink, _shade(base_rgb, -0.45) if lum > 120 else _shade(base_rgb, 0.6)]
    sub = label[top:]
    sh = sub.shape[0]
    for _ in range(int(g.integers(3, 7))):
        colour = tuple(float(c) for c in inks[int(g.integers(0, 2))])
        kind = int(g.integers(0, 4))
        cx, cy = int(g.integers(3, w - 3)), int(g.integers(2, sh - 2))
        if kind == 0:     # a line of "text"
            half = int(g.integers(w // 8, w // 3))
            cv2.line(sub, (cx - half, cy), (cx + half, cy), colour, int(g.integers(1, 4)))
        elif kind == 1:   # a disc
            cv2.circle(sub, (cx, cy), int(g.integers(2, max(3, sh // 5))), colour, -1)
        elif kind == 2:   # a block
            a, b = int(g.integers(2, w // 4)), int(g.integers(2, max(3, sh // 4)))
            cv2.rectangle(sub, (cx - a, cy - b), (cx + a, cy + b), colour, -1)
        else:             # a triangle
            r = int(g.integers(3, max(4, sh // 4)))
            pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
            cv2.fillPoly(sub, [pts], colour)


def _jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A slight global hue, saturation and brightness change (domain randomisation)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-4.0, 4.0), 180.0)   # OpenCV hue: 0..180
    hsv[..., 1] *= rng.uniform(0.9, 1.1)
    hsv[..., 2] *= rng.uniform(0.88, 1.12)
    hsv[..., 1:] = np.clip(hsv[..., 1:], 0, 255)
    return cv2.cvtColor(np.round(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB)


def packaging_texture(product: Product, rng: np.random.Generator | None = None, size_px: int = 128) -> np.ndarray:
    """H×W×3 uint8 RGB packaging (square, ``size_px``): base colour, bands, label patch with marks.

    Bands come from the look-alike group (or the SKU) and the base colour; the label colour and
    marks from the SKU, inside ``label_patch_px(size_px)`` only. Without ``rng`` the result is
    deterministic; with it the whole image gets a slight hue/saturation/brightness jitter.
    """
    if size_px < 32:
        raise ValueError(f"size_px must be at least 32 for the label marks, got {size_px}")
    s = size_px
    base = np.array(product.rgb("colour"), float)
    label_rgb = np.array(product.rgb("label_colour"), float)
    img = np.empty((s, s, 3), np.float32)
    img[:] = base
    g = _seeded("group:" + (product.lookalike or product.sku))
    slots = list(_BAND_T) if g.random() < 0.5 else [_BAND_T[int(g.integers(0, 2))]]   # one or two bands
    tone = [-0.45, 0.55, -0.25][int(g.integers(0, 3))]
    for i, (t0, t1) in enumerate(slots):
        height = g.uniform(0.35, 1.0) * (t1 - t0)
        start = t0 + g.uniform(0, (t1 - t0) - height)
        r0, r1 = round(start * s), max(round((start + height) * s), round(start * s) + 1)
        img[r0:r1] = _shade(base, tone if i == 0 else tone / 2)
        if g.random() < 0.5:   # a thin accent line under the band
            img[min(r1, s - 1)] = _shade(base, -tone)
    r0, r1, c0, c1 = label_patch_px(s)
    label = np.empty((r1 - r0, c1 - c0, 3), np.float32)
    label[:] = label_rgb
    _draw_marks(label, product.sku, label_rgb, base)
    img[r0:r1, c0:c1] = label
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return _jitter(out, rng) if rng is not None else out


class _Builder:
    """Collects faces with their own vertices and UVs (u, t-from-top) into one textured mesh."""

    def __init__(self) -> None:
        self.v: list[np.ndarray] = []
        self.uv: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.n = 0

    def add(self, verts: np.ndarray, uv_t: np.ndarray, faces: np.ndarray) -> None:
        self.v.append(np.asarray(verts, float))
        self.uv.append(np.asarray(uv_t, float))
        self.f.append(np.asarray(faces, np.int64) + self.n)
        self.n += len(verts)

    def grid(self, bl, br, tr, tl, region: tuple[float, float, float, float], nu: int = 1, nt: int = 1,
             bulge=None) -> None:
        """A quad seen from outside as bl, br, tr, tl (counter-clockwise), split nu×nt, textured with
        the image region (u0, u1, t0, t1); ``bulge(s, r)`` pushes points along the outward normal."""
        bl, br, tr, tl = (np.asarray(p, float) for p in (bl, br, tr, tl))
        normal = np.cross(br - bl, tl - bl)
        normal /= np.linalg.norm(normal)
        s, r = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nt + 1))
        s, r = s.ravel(), r.ravel()
        pts = ((1 - s) * (1 - r))[:, None] * bl + (s * (1 - r))[:, None] * br + (s * r)[:, None] * tr + ((1 - s) * r)[:, None] * tl
        if bulge is not None:
            pts += bulge(s, r)[:, None] * normal
        u0, u1, t0, t1 = region
        uv = np.stack([u0 + s * (u1 - u0), t1 - r * (t1 - t0)], axis=1)
        idx = np.arange((nu + 1) * (nt + 1)).reshape(nt + 1, nu + 1)
        a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
        faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
        self.add(pts, uv, faces)

    def band(self, rx0: float, ry0: float, z0: float, rx1: float, ry1: float, z1: float,
             region: tuple[float, float, float, float] | None, point: tuple[float, float] | None = None) -> None:
        """The side of an elliptic frustum from z0 (radii rx0, ry0) to z1; u wraps the ``region``
        horizontally with its middle at +y, or every vertex takes the texture ``point``."""
        k = np.arange(_SEGMENTS + 1)
        frac = k / _SEGMENTS
        phi = 2 * math.pi * frac - math.pi / 2      # frac 0.5 → +y, the front; seam at the back
        c, s = np.cos(phi), np.sin(phi)
        lo = np.stack([rx0 * c, ry0 * s, np.full_like(c, z0)], 1)
        hi = np.stack([rx1 * c, ry1 * s, np.full_like(c, z1)], 1)
        if region is not None:
            u0, u1, t0, t1 = region
            u = u0 + frac * (u1 - u0)
            uv = np.concatenate([np.stack([u, np.full_like(u, t1)], 1), np.stack([u, np.full_like(u, t0)], 1)])
        else:
            uv = np.tile(point, (2 * len(k), 1))
        m = len(k)
        i = np.arange(_SEGMENTS)
        faces = np.concatenate([np.stack([i, i + 1, m + i + 1], 1), np.stack([i, m + i + 1, m + i], 1)])
        self.add(np.concatenate([lo, hi]), uv, faces)

    def disc(self, rx: float, ry: float, z: float, up: bool, region: tuple[float, float, float, float]) -> None:
        """A flat elliptic cap at height z facing up (or down); seen from the front-above, its image
        region maps with u across x (+x on the left) and t from back (top) to front (bottom)."""
        phi = 2 * math.pi * np.arange(_SEGMENTS) / _SEGMENTS - math.pi / 2
        x, y = np.append(rx * np.cos(phi), 0.0), np.append(ry * np.sin(phi), 0.0)
        verts = np.stack([x, y, np.full_like(x, z)], 1)
        u0, u1, t0, t1 = region
        uv = np.stack([u0 + (0.5 - x / (2 * rx)) * (u1 - u0), t0 + (0.5 + y / (2 * ry)) * (t1 - t0)], 1)
        i = np.arange(_SEGMENTS)
        j = (i + 1) % _SEGMENTS
        centre = np.full_like(i, _SEGMENTS)
        faces = np.stack([centre, i, j], 1) if up else np.stack([centre, j, i], 1)
        self.add(verts, uv, faces)

    def mesh(self, texture: np.ndarray) -> trimesh.Trimesh:
        uv = np.concatenate(self.uv)
        uv = np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1)       # trimesh/OpenGL: v=0 is the image's bottom
        material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=Image.fromarray(texture), metallicFactor=0.0, roughnessFactor=0.75)
        return trimesh.Trimesh(vertices=np.concatenate(self.v), faces=np.concatenate(self.f),
                               visual=trimesh.visual.TextureVisuals(uv=uv, material=material), process=False)


_FULL = (0.0, 1.0, 0.0, 1.0)
_LABEL = (LABEL_U[0], LABEL_U[1], LABEL_T[0], LABEL_T[1])
_SIDE = (_SIDE_U[0], _SIDE_U[1], 0.0, 1.0)
_PLAIN_RECT = (_PLAIN[0] - 0.05, _PLAIN[0] + 0.05, _PLAIN[1] - 0.05, _PLAIN[1] + 0.05)
_HEADER_RECT = (0.36, 0.64, _HEADER_T[0] + 0.03, _HEADER_T[1] - 0.03)


def _cuboid(b: _Builder, w: float, d: float, h: float, front_back: dict) -> None:
    """Box faces; ``front_back`` holds grid options (subdivision, bulge) for the ±y faces."""
    x, y = w / 2, d / 2
    b.grid((x, y, 0), (-x, y, 0), (-x, y, h), (x, y, h), _FULL, **front_back)       # front (+y)
    b.grid((-x, -y, 0), (x, -y, 0), (x, -y, h), (-x, -y, h), _FULL, **front_back)   # back
    b.grid((x, -y, 0), (x, y, 0), (x, y, h), (x, -y, h), _SIDE)                     # +x side
    b.grid((-x, y, 0), (-x, -y, 0), (-x, -y, h), (-x, y, h), _SIDE)                 # −x side
    b.grid((x, y, h), (-x, y, h), (-x, -y, h), (x, -y, h), _LABEL)                  # top: the label
    b.grid((x, -y, 0), (-x, -y, 0), (-x, y, 0), (x, y, 0), _PLAIN_RECT)             # bottom


def product_mesh(product: Product, rng: np.random.Generator | None = None) -> trimesh.Trimesh:
    """A low-poly textured mesh (≤ ~200 faces), base at z=0, centred in x/y, extents ``size_m``.

    The front faces +y. box: label on the front, back and top. can: elliptic cylinder of 16
    segments, label wrapped around the front, lid showing the label. bottle: body with the label,
    shoulder and neck in the base colour, cap in ``label_colour``. bag: a pillow whose front and back
    bulge to the full depth (thin seals at the edges), label on the front and on the top seal.
    ``rng`` only jitters the texture (see ``packaging_texture``).
    """
    w, d, h = product.size_m
    b = _Builder()
    if product.shape == "box":
        _cuboid(b, w, d, h, {})
    elif product.shape == "bag":
        seal = 0.3                                            # depth at the edges, fraction of d
        grow = (1 - seal) * d / 2

        def bulge(s: np.ndarray, r: np.ndarray) -> np.ndarray:
            return grow * np.clip(np.sin(np.pi * s) * np.sin(np.pi * r), 0.0, 1.0) ** 0.6

        _cuboid(b, w, seal * d, h, {"nu": 6, "nt": 6, "bulge": bulge})
    elif product.shape == "can":
        rx, ry = w / 2, d / 2
        b.band(rx, ry, 0.0, rx, ry, h, _FULL)
        b.disc(rx, ry, h, True, _LABEL)
        b.disc(rx, ry, 0.0, False, _PLAIN_RECT)
    elif product.shape == "bottle":
        rx, ry = w / 2, d / 2
        z_body, z_neck, z_cap = 0.62 * h, 0.75 * h, 0.86 * h
        neck, cap = 0.38, 0.46
        b.band(rx, ry, 0.0, rx, ry, z_body, _FULL)
        b.band(rx, ry, z_body, neck * rx, neck * ry, z_neck, None, _PLAIN)
        b.band(neck * rx, neck * ry, z_neck, neck * rx, neck * ry, z_cap, None, _PLAIN)
        b.band(neck * rx, neck * ry, z_cap, cap * rx, cap * ry, z_cap, None, _HEADER)    # cap's underside
        b.band(cap * rx, cap * ry, z_cap, cap * rx, cap * ry, h, None, _HEADER)
        b.disc(cap * rx, cap * ry, h, True, _HEADER_RECT)
        b.disc(rx, ry, 0.0, False, _PLAIN_RECT)
    else:
        raise ValueError(f"unknown product shape {product.shape!r}")
    return b.mesh(packaging_texture(product, rng))
