"""Procedural surface textures for domain randomisation: tiles, wood-like planks, mottled noise,
checkers and flat colours from a wide palette, made with numpy from an ``rng`` (nothing is
downloaded), and the texture coordinates that lay them on the store's boxes and planes.

Every texture tiles seamlessly (its patterns have whole periods across it and its noise is made
in the frequency domain), so a surface repeats it every ``metres_per_repeat``. Colours are chosen
in the units of the fixtures' vertex colours (linear albedo, 0..1) and written as sRGB bytes,
since pyrender decodes a base-colour texture from sRGB and takes vertex colours as they are: a
texture of a fixture's colour renders as that fixture did.
"""
from __future__ import annotations

import colorsys

import numpy as np

KINDS = ("tiles", "wood", "noise", "checker", "flat")
SIZE_PX = 256


def palette_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour (linear albedo, 0..1) from a wide palette: any hue, mostly muted, some vivid, from
    dark to near white."""
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(0.0, 0.3) if rng.random() < 0.65 else rng.uniform(0.3, 0.75)
    v = rng.uniform(0.2, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) ** 1.6     # drawn on a perceptual scale, returned as albedo


def wood_colour(rng: np.random.Generator) -> np.ndarray:
    """A wood-like brown (linear albedo), pale birch to dark walnut."""
    h = rng.uniform(0.05, 0.11)
    return np.array(colorsys.hsv_to_rgb(h, rng.uniform(0.35, 0.75), rng.uniform(0.3, 0.9))) ** 1.6


def smooth_noise(rng: np.random.Generator, size: int, scale_px: float) -> np.ndarray:
    """Periodic Gaussian-filtered noise, size×size, zero mean and unit std; features ~``scale_px``."""
    f = np.fft.fftfreq(size)
    k2 = f[:, None] ** 2 + f[None, :] ** 2
    spec = np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-2 * (np.pi * scale_px) ** 2 * k2)
    n = np.real(np.fft.ifft2(spec))
    return (n - n.mean()) / (n.std() + 1e-9)


def _grain(rng: np.random.Generator, size: int, amount: float) -> np.ndarray:
    return 1.0 + amount * (0.6 * smooth_noise(rng, size, 6.0) + 0.4 * rng.standard_normal((size, size)))


def _tiles(rng, size):
    n = int(rng.choice([2, 4, 6, 8]))             # even: the colours alternate across the wrap too
    c = palette_colour(rng)
    alt = palette_colour(rng) if rng.random() < 0.3 else c
    grout = np.clip(c * rng.uniform(0.4, 0.7), 0, 1) if rng.random() < 0.6 else np.full(3, rng.uniform(0.5, 0.85))
    px = size / n
    u = np.arange(size)
    iu = (u // px).astype(int)
    tile = ((iu[:, None] + iu[None, :]) % 2)[..., None]
    img = np.where(tile == 1, alt, c) * (1 + rng.normal(0, 0.06, (n, n, 1))[iu][:, iu])
    line = max(1, int(round(px * rng.uniform(0.03, 0.08))))
    edge = (u % px) < line
    img[edge[:, None] | edge[None, :]] = grout
    return img * _grain(rng, size, 0.03)[..., None]


def _wood(rng, size):
    n = int(rng.choice([2, 4, 8]))                 # planks across the texture (dividing its size: seams wrap)
    c = wood_colour(rng) if rng.random() < 0.7 else palette_colour(rng)
    v = np.arange(size)
    plank = (v * n // size)
    shade = 1 + rng.normal(0, 0.08, n)[plank]
    u = np.arange(size) / size
    warp = 0.04 * smooth_noise(rng, size, 20.0)
    stripes = np.sin(2 * np.pi * (int(rng.integers(6, 20)) * (u[None, :] + warp) + rng.uniform(0, 1, n)[plank][:, None]))
    img = c * (shade[:, None] * (1 + 0.12 * stripes) * _grain(rng, size, 0.04))[..., None]
    seam = (v % (size // n)) == 0
    img[seam] *= 0.55
    return img


def _noise(rng, size):
    a, b = palette_colour(rng), palette_colour(rng)
    b = a + (b - a) * rng.uniform(0.15, 0.6)        # a mottled surface: the two colours not too far apart
    t = 1 / (1 + np.exp(-2.5 * smooth_noise(rng, size, rng.uniform(4.0, 30.0))))
    img = a + (b - a) * t[..., None]
    if rng.random() < 0.5:                          # terrazzo specks
        specks = rng.random((size, size)) < rng.uniform(0.005, 0.03)
        img[specks] = palette_colour(rng)
    return img * _grain(rng, size, 0.03)[..., None]


def _checker(rng, size):
    n = int(rng.choice([2, 4, 8]))
    a, b = palette_colour(rng), palette_colour(rng)
    iu = np.arange(size) * n // size
    img = np.where((((iu[:, None] + iu[None, :]) % 2) == 1)[..., None], a, b)
    return img * _grain(rng, size, 0.03)[..., None]


def _flat(rng, size):
    return palette_colour(rng) * _grain(rng, size, 0.02)[..., None]


def texture(kind: str, rng: np.random.Generator, size: int = SIZE_PX) -> np.ndarray:
    """A seamless size×size×3 sRGB texture (uint8) of ``kind`` (one of :data:`KINDS`)."""
    makers = {"tiles": _tiles, "wood": _wood, "noise": _noise, "checker": _checker, "flat": _flat}
    if kind not in makers:
        raise ValueError(f"texture kind {kind!r}: expected one of {', '.join(KINDS)}")
    albedo = np.clip(makers[kind](rng, size), 0.0, 1.0)
    srgb = np.where(albedo <= 0.0031308, 12.92 * albedo, 1.055 * albedo ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(srgb * 255), 0, 255).astype(np.uint8)


def box_uv(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray, metres_per_repeat: float) -> np.ndarray:
    """Texture coordinates for a mesh of axis-aligned faces with unshared vertices (the fixtures'
    boxes, in their own frame): each face takes the two coordinates across its normal, so the
    texture lies on it at ``metres_per_repeat`` per repeat. Per vertex, N×2."""
    uv = np.zeros((len(vertices), 2))
    axis = np.abs(face_normals).argmax(axis=1)
    for a in range(3):
        fa = faces[axis == a].ravel()
        i, j = [k for k in range(3) if k != a]
        uv[fa] = vertices[fa][:, [i, j]]     # a horizontal face: x, y; a vertical one: along it, then up
    return uv / metres_per_repeat
