"""Hands at the shelf, from the cameras alone: reaches into bins, and what a hand holds.

A shopper's triangulated wrist inside a bin's volume opens a :class:`Reach`; the reach is over
when the wrist has been out of that bin for ``leave_s``. What the hand holds comes from the product
model run on a crop round the wrist in each camera that saw it (the frames of the last
``buffer_s`` are kept in memory for that, never written anywhere), at moments when the wrist is
clear of every shelf unit; two cameras whose boxes of one SKU meet in 3-D at the wrist make it
surer. A box that only looks near the wrist in one image is often the stock on a shelf behind
it, so the pipeline only believes a held SKU that the reached bin holds (a pick) or that the
shopper's cart holds (a put-back).

The pipeline uses these for three things: a product seen in the hand settles which of two
look-alike SKUs a weight step was; a reach into a bin whose load cell has failed (or that has
none) is still charged from what the hand took; and ``sensing=vision_only`` runs on them alone.
"""
from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

from runtime.geometry import closest_point_of_rays, pixel_rays
from runtime.perception import Detector
from runtime.store import StoreSpec
from runtime.tracking import WorldTrack, WorldTracker


@dataclass(frozen=True)
class HandConfig:
    product_model: str = "models/products_openvino_model"  # every SKU (.onnx, OpenVINO folder or .pt)
    product_conf: float = 0.3       # product boxes below this score are not used
    in_bin_m: float = 0.15          # a wrist this close to a bin's volume is in it (the fingers reach past the wrist)
    leave_s: float = 0.6            # out of the bin this long: the reach is over
    look_s: float = 0.8             # what the hand holds: this long before the reach and after it
    clear_m: float = 0.15           # the hand counts as out of the shelf this far from every unit
    held_m: float = 0.15            # a product triangulated this close to the wrist is in the hand
    crop_frac: float = 0.5          # crop side round a wrist, as a share of the frame's larger side
    near_wrist_frac: float = 0.08   # a product box centred this close to the wrist (share of that side) is held
    buffer_s: float = 2.5           # frames kept in memory for looking at hands again


@dataclass(frozen=True)
class Reach:
    """A hand in a bin: the track, the bin, when the wrist was first and last seen in it."""

    track_id: int
    bin_id: str
    t_in: float
    t_out: float


class HandWatch:
    """Follows the wrists of world tracks through the bins and looks at what the hands hold."""

    def __init__(self, store: StoreSpec, cfg: HandConfig, products: Detector | None):
        self.store, self.cfg, self.products = store, cfg, products
        self._frames: dict[str, deque] = defaultdict(deque)      # camera → (t, image)
        self._open: dict[tuple[int, str], list[float]] = {}      # (track, bin) → [t_in, t_last_in]
        self._seen_wrist_t: dict[int, float] = {}               # track → last wrist time looked at
        self._cache: dict[tuple, list] = {}                      # (camera, t, crop x0, y0) → product detections
        self._units = [(u, np.linalg.inv(u.local_to_world())) for u in store.units]
        self._bins = [(bid, b, np.linalg.inv(b.unit.local_to_world())) for bid, b in store.bins.items()]

    # -- frames and wrists --------------------------------------------------------------------------
    def frame(self, camera_id: str, t: float, image: np.ndarray) -> None:
        """Keep a processed frame for a while (memory only: raw video is never stored)."""
        dq = self._frames[camera_id]
        dq.append((t, image))
        while dq and dq[0][0] < t - self.cfg.buffer_s:
            dq.popleft()
        if len(self._cache) > 4096:
            old = t - self.cfg.buffer_s
            self._cache = {k: v for k, v in self._cache.items() if k[1] >= old}

    def update(self, t: float, tracker: WorldTracker) -> list[Reach]:
        """Follow the newest triangulated wrists of every track; the reaches that ended."""
        for k in tracker.tracks:
            last = self._seen_wrist_t.get(k.id, -np.inf)
            for tw, w in k.wrists:
                if tw <= last:
                    continue
                for bid in self.bins_at(w)[:1]:
                    rec = self._open.setdefault((k.id, bid), [tw, tw])
                    rec[1] = tw
            if k.wrists:
                self._seen_wrist_t[k.id] = k.wrists[-1][0]
        done = []
        for (kid, bid), (t0, t1) in list(self._open.items()):
            if t - t1 >= self.cfg.leave_s:
                done.append(Reach(kid, bid, t0, t1))
                del self._open[(kid, bid)]
        return sorted(done, key=lambda r: r.t_out)

    def bins_at(self, p: np.ndarray) -> list[str]:
        """The bins whose volume (with the front lip) a world point is in, nearest first."""
        out = [(d, bid) for bid, b, inv in self._bins if (d := distance_to_bin(b, p, inv)) <= self.cfg.in_bin_m]
        return [bid for _, bid in sorted(out)]

    def clear_of_shelves(self, p: np.ndarray) -> bool:
        for u, inv in self._units:
            lo, hi = np.array([-u.width_m / 2, -u.depth_m / 2, 0.0]), np.array([u.width_m / 2, u.depth_m / 2, u.height_m])
            if _distance_to_box(inv, p, lo, hi) < self.cfg.clear_m:
                return False
        return True

    # -- what a hand holds ----------------------------------------------------------------------------
    def held(self, track: WorldTrack, t0: float, t1: float, min_views: int = 1) -> dict[str, float]:
        """SKU → best score of a product seen near this track's wrist between ``t0`` and ``t1``, at
        moments when the wrist was clear of the shelves; two cameras whose boxes meet in 3-D at the
        wrist add their scores (capped at 1); ``min_views=2`` keeps only those. Empty without a
        product model."""
        if self.products is None:
            return {}
        clear: dict[float, list[np.ndarray]] = defaultdict(list)    # t → wrists clear of the shelves
        for tw, w in track.wrists:
            if t0 <= tw <= t1 and self.clear_of_shelves(w):
                clear[round(tw, 3)].append(w)
        seen: dict[float, list[tuple[str, str, float, np.ndarray]]] = defaultdict(list)  # t → (camera, sku, score, uv)
        for tv, cam_id, wrists in track.hand_views:
            key = round(tv, 3)
            if not (t0 <= tv <= t1) or key not in clear:
                continue
            img = next((im for tf, im in self._frames.get(cam_id, ()) if abs(tf - tv) < 1e-6), None)
            if img is None:
                continue
            for uv in wrists:
                if uv is not None:
                    seen[key] += [(cam_id, sku, score, c) for sku, score, c in self._products_near(cam_id, tv, img, uv)]
        best: dict[str, float] = {}
        for key, dets in seen.items():
            for i, (ca, sa, pa, ua) in enumerate(dets):
                if min_views <= 1:
                    best[sa] = max(best.get(sa, 0.0), pa)
                for cb, sb, pb, ub in dets[i + 1:]:
                    if ca == cb or sa != sb:
                        continue
                    o1, d1 = pixel_rays(self.store.camera_by_id[ca], ua[None])
                    o2, d2 = pixel_rays(self.store.camera_by_id[cb], ub[None])
                    p, gap = closest_point_of_rays(o1, d1[0], o2, d2[0])
                    if gap < self.cfg.held_m and min(float(np.linalg.norm(p - w)) for w in clear[key]) < self.cfg.held_m:
                        best[sa] = max(best.get(sa, 0.0), min(1.0, pa + pb))
        return best

    def _products_near(self, cam_id: str, t: float, img: np.ndarray, uv: np.ndarray) -> list[tuple[str, float, np.ndarray]]:
        h, w = img.shape[:2]
        side = int(round(self.cfg.crop_frac * max(h, w)))
        x0 = int(np.clip(uv[0] - side / 2, 0, max(w - side, 0)))
        y0 = int(np.clip(uv[1] - side / 2, 0, max(h - side, 0)))
        key = (cam_id, round(t, 3), x0, y0)
        dets = self._cache.get(key)
        if dets is None:
            crop = img[y0:y0 + side, x0:x0 + side]
            dets = [(d.label, d.score, (d.box[:2] + d.box[2:]) / 2 + (x0, y0)) for d in self.products(crop)
                    if d.score >= self.cfg.product_conf and d.label in self.store.products]
            self._cache[key] = dets
        near = self.cfg.near_wrist_frac * max(h, w)
        return [(sku, score, c) for sku, score, c in dets if float(np.linalg.norm(c - uv)) <= near]


def distance_to_bin(b, p: np.ndarray, world_to_unit: np.ndarray | None = None) -> float:
    """Distance from a world point to a bin's volume, its front lip included (0 inside)."""
    inv = np.linalg.inv(b.unit.local_to_world()) if world_to_unit is None else world_to_unit
    d = b.unit.depth_m / 2
    return _distance_to_box(inv, p, np.array([b.x0, -d, b.z0]), np.array([b.x1, d + 0.05, b.z1]))


def _distance_to_box(world_to_unit: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Distance from a world point to a box given in a unit's frame (0 inside)."""
    local = (world_to_unit @ np.append(p, 1.0))[:3]
    return float(np.linalg.norm(np.maximum(lo - local, 0) + np.maximum(local - hi, 0)))
