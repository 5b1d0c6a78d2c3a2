"""Camera geometry on the store's calibration: projection with distortion, rays onto the floor."""
from __future__ import annotations

import numpy as np

from runtime.store import Camera


def world_to_camera(cam: Camera, pts_world: np.ndarray) -> np.ndarray:
    """N×3 world points → N×3 points in the camera frame (OpenCV axes)."""
    return np.asarray(pts_world, dtype=float) @ cam.R.T + cam.t


def project(cam: Camera, pts_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project N×3 world points to pixels with the camera's distortion.

    Returns (uv N×2, depth N); depth ≤ 0 means behind the camera (uv then meaningless).
    """
    pc = world_to_camera(cam, pts_world)
    z = pc[:, 2]
    if cam.lens == "fisheye":
        # the angle off the axis, so points far to the side (and behind) land where the lens puts them
        rho = np.hypot(pc[:, 0], pc[:, 1])
        th = np.arctan2(rho, z)
        k1, k2, k3, k4 = cam.dist[:4]
        th2 = th * th
        rd = th * (1 + th2 * (k1 + th2 * (k2 + th2 * (k3 + th2 * k4))))
        s = np.where(rho > 1e-12, rd / np.maximum(rho, 1e-12), 1.0 / np.where(np.abs(z) < 1e-9, 1e-9, z))
        x, y = pc[:, 0] * s, pc[:, 1] * s
        K = cam.K
        return np.stack([K[0, 0] * x + K[0, 2], K[1, 1] * y + K[1, 2]], axis=1), z
    zs = np.where(np.abs(z) < 1e-9, 1e-9, z)
    x, y = pc[:, 0] / zs, pc[:, 1] / zs
    k1, k2, p1, p2, k3 = cam.dist
    if k1 or k2 or p1 or p2 or k3:
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 ** 3
        x, y = (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)
    K = cam.K
    uv = np.stack([K[0, 0] * x + K[0, 2], K[1, 1] * y + K[1, 2]], axis=1)
    return uv, z


def in_image(cam: Camera, uv: np.ndarray, depth: np.ndarray, margin_px: float = 0.0) -> np.ndarray:
    return ((depth > 0.05) & (uv[:, 0] >= -margin_px) & (uv[:, 0] < cam.width + margin_px)
            & (uv[:, 1] >= -margin_px) & (uv[:, 1] < cam.height + margin_px))


def undistort_pixels(cam: Camera, uv: np.ndarray) -> np.ndarray:
    """Distorted pixels → normalised image coordinates (N×2), undoing the lens model."""
    import cv2

    pts = np.asarray(uv, dtype=np.float64).reshape(-1, 1, 2)
    if cam.lens == "fisheye":    # (every pixel of a valid fisheye looks less than 90° off the axis)
        return cv2.fisheye.undistortPoints(pts, cam.K, cam.dist[:4]).reshape(-1, 2)
    return cv2.undistortPoints(pts, cam.K, cam.dist).reshape(-1, 2)


def pixel_to_floor(cam: Camera, uv: np.ndarray, z_plane: float = 0.0) -> np.ndarray:
    """Intersect the rays of N pixels with the horizontal plane z = z_plane (N×3; NaN if parallel)."""
    n = undistort_pixels(cam, uv)
    rays_c = np.concatenate([n, np.ones((len(n), 1))], axis=1)
    rays_w = rays_c @ cam.R  # R^T applied to each row
    origin = np.array(cam.position_m)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (z_plane - origin[2]) / rays_w[:, 2]
    s = np.where(s > 0, s, np.nan)
    return origin + s[:, None] * rays_w


def floor_point_cov(cam: Camera, xy: np.ndarray, z_plane: float, height_sd_m: float, pixel_sd: float,
                    base_sd_m: float) -> np.ndarray:
    """2×2 covariance of a floor point that one camera placed by casting a pixel onto the plane
    ``z = z_plane`` (the ankles on the floor, the shoulders at shoulder height).

    Along the camera's ray (radial, on the floor) the point is as unsure as the plane's height
    (a person's shoulders are not everyone's: ``height_sd_m``) times the ray's run over its drop,
    and a pixel's error grows the same way at a grazing view; across the ray only the pixel's error
    counts. ``base_sd_m`` (where on the body the point lies) adds to both. A camera 6 m away,
    seeing shoulders, is unsure by about 0.4 m along its ray and 0.1 m across it."""
    cam_xy = np.array(cam.position_m[:2], float)
    d = np.asarray(xy, float) - cam_xy
    run = float(np.linalg.norm(d))
    drop = max(float(cam.position_m[2]) - z_plane, 0.1)
    slant = float(np.hypot(run, drop))
    px = pixel_sd * slant / float(cam.K[0, 0])          # metres per pixel across the ray, at the point
    sd_t2 = base_sd_m ** 2 + px ** 2
    sd_r2 = base_sd_m ** 2 + (px * slant / drop) ** 2 + (height_sd_m * run / drop) ** 2
    u = d / run if run > 1e-6 else np.array([1.0, 0.0])
    return sd_t2 * np.eye(2) + (sd_r2 - sd_t2) * np.outer(u, u)


def coverage(store, min_fraction_in_view: float = 0.999) -> dict[str, list[str]]:
    """For each bin, the cameras that see its whole front opening (all 4 corners in the image)."""
    out: dict[str, list[str]] = {}
    for bid, b in store.bins.items():
        pts = b.front_corners_world()
        seen = []
        for cam in store.cameras:
            uv, depth = project(cam, pts)
            if (in_image(cam, uv, depth).mean() >= min_fraction_in_view and _faces(cam, b)
                    and not _blocked(store, cam, pts, b.unit.id)):
                seen.append(cam.id)
        out[bid] = seen
    return out


def _faces(cam: Camera, b) -> bool:
    """The camera is on the open (front) side of the bin's unit."""
    c = b.centre_world()
    to_cam = np.array(cam.position_m[:2]) - c[:2]
    return float(to_cam @ b.unit.front_normal()) > 0.0


def _blocked(store, cam: Camera, pts: np.ndarray, own_unit: str) -> bool:
    """Whether another shelf unit's box cuts the sight line to the middle of the points."""
    eye = np.array(cam.position_m)
    target = pts.mean(axis=0)
    for u in store.units:
        if u.id == own_unit:
            continue
        T = np.linalg.inv(u.local_to_world())
        a = (T @ np.append(eye, 1.0))[:3]
        b = (T @ np.append(target, 1.0))[:3]
        half = np.array([u.width_m / 2, u.depth_m / 2, u.height_m / 2])
        lo, hi = -half + [0, 0, half[2]], half + [0, 0, half[2]]
        if _segment_hits_box(a, b, lo, hi):
            return True
    return False


def _segment_hits_box(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    d = b - a
    t0, t1 = 0.0, 1.0
    for k in range(3):
        if abs(d[k]) < 1e-12:
            if a[k] < lo[k] or a[k] > hi[k]:
                return False
            continue
        ta, tb = (lo[k] - a[k]) / d[k], (hi[k] - a[k]) / d[k]
        t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        if t0 > t1:
            return False
    return True


def pixel_rays(cam: Camera, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World rays through N distorted pixels: (origin 3, unit directions N×3)."""
    n = undistort_pixels(cam, uv)
    d = np.concatenate([n, np.ones((len(n), 1))], axis=1) @ cam.R
    return np.array(cam.position_m, dtype=float), d / np.linalg.norm(d, axis=1, keepdims=True)


def triangulate(cam_a: Camera, uv_a: np.ndarray, cam_b: Camera, uv_b: np.ndarray) -> tuple[np.ndarray, float]:
    """The world point two cameras' pixels (distorted) look at: the midpoint of the shortest segment
    between their rays, and that segment's length (how well the two rays meet); (NaN, inf) when
    they cannot meet in front of both cameras."""
    o1, d1 = pixel_rays(cam_a, np.asarray(uv_a, dtype=float)[None])
    o2, d2 = pixel_rays(cam_b, np.asarray(uv_b, dtype=float)[None])
    return closest_point_of_rays(o1, d1[0], o2, d2[0])


def closest_points_of_rays(o1: np.ndarray, d1: np.ndarray, o2: np.ndarray, d2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`closest_point_of_rays` for N ray pairs at once (origins 3, unit directions N×3 each):
    the N midpoints and segment lengths, (NaN, inf) where the rays are parallel or meet behind
    either camera."""
    w = o1 - o2
    b = np.einsum("ij,ij->i", d1, d2)
    den = 1.0 - b * b
    d, e = d1 @ w, d2 @ w
    with np.errstate(divide="ignore", invalid="ignore"):
        s, u = (b * e - d) / den, (e - b * d) / den
    p1, p2 = o1 + s[:, None] * d1, o2 + u[:, None] * d2
    ok = (den >= 1e-6) & (s > 0) & (u > 0)
    return np.where(ok[:, None], (p1 + p2) / 2, np.nan), np.where(ok, np.linalg.norm(p1 - p2, axis=1), np.inf)


def closest_point_of_rays(o1: np.ndarray, d1: np.ndarray, o2: np.ndarray, d2: np.ndarray) -> tuple[np.ndarray, float]:
    """The midpoint of the shortest segment between two rays (unit directions) and its length;
    (NaN, inf) for parallel rays or a point behind either camera."""
    w = o1 - o2
    b = float(d1 @ d2)
    den = 1.0 - b * b
    if den < 1e-6:
        return np.full(3, np.nan), float("inf")
    d, e = float(d1 @ w), float(d2 @ w)
    s, u = (b * e - d) / den, (e - b * d) / den
    if s <= 0 or u <= 0:
        return np.full(3, np.nan), float("inf")
    p1, p2 = o1 + s * d1, o2 + u * d2
    return (p1 + p2) / 2, float(np.linalg.norm(p1 - p2))
