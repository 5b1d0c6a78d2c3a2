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

import logging
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from runtime.config import HandConfig
from runtime.geometry import triangulate
from runtime.perception import Detector
from runtime.store import StoreSpec
from runtime.ticks import FrameRef
from runtime.tracking import TrackView

log = logging.getLogger(__name__)


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
        self._frames: OrderedDict[tuple[str, int], tuple[float, np.ndarray]] = OrderedDict()  # (camera, seq) → (t, image)
        self._open: dict[tuple[int, str], list[float]] = {}      # (track, bin) → [t_in, t_last_in]
        self._seen_wrist_t: dict[int, float] = {}               # track → last wrist time looked at
        self._cache: dict[tuple, list] = {}                      # (camera, seq, crop x0, y0) → product detections
        self.dropped: Counter = Counter()
        # every bin's volume (front lip included) as one array, to find the bins at a wrist at once
        self._bin_ids = list(store.bins)
        self._bin_inv = np.array([b.world_to_local()[:3] for b in store.bins.values()]).reshape(-1, 3, 4)   # B×3×4
        boxes = [b.volume_local() for b in store.bins.values()]
        self._bin_lo = np.array([lo for lo, _ in boxes]).reshape(-1, 3)
        self._bin_hi = np.array([hi for _, hi in boxes]).reshape(-1, 3)

    # -- frames and wrists --------------------------------------------------------------------------
    def frame(self, ref: FrameRef, image: np.ndarray) -> None:
        """Keep a processed frame for a while (memory only: raw video is never stored)."""
        self._frames[(ref.camera_id, ref.seq)] = (ref.t, image)
        old = ref.t - self.cfg.buffer_s
        while self._frames:
            key, (t, _) = next(iter(self._frames.items()))
            if t >= old:
                break
            del self._frames[key]
        if len(self._cache) > 4096:
            self._cache = {k: v for k, v in self._cache.items() if k[:2] in self._frames}

    def update(self, t: float, tracks: Iterable[TrackView]) -> list[Reach]:
        """Follow the newest triangulated wrists of every track; the reaches that ended."""
        for k in tracks:
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
        """The bins whose volume (with the front lip) a world point is in, nearest first (as
        :meth:`Bin.distance_to`, every bin at once)."""
        if not self._bin_ids:
            return []
        local = self._bin_inv @ np.append(np.asarray(p, dtype=float), 1.0)                   # B×3
        d = np.linalg.norm(np.maximum(self._bin_lo - local, 0) + np.maximum(local - self._bin_hi, 0), axis=1)
        near = np.flatnonzero(d <= self.cfg.in_bin_m)
        return [self._bin_ids[i] for i in sorted(near, key=lambda i: (d[i], self._bin_ids[i]))]

    def clear_of_shelves(self, p: np.ndarray) -> bool:
        return all(u.distance_to(p) >= self.cfg.clear_m for u in self.store.units)

    # -- what a hand holds ----------------------------------------------------------------------------
    def held(self, track: TrackView, t0: float, t1: float, min_views: int = 1) -> dict[str, float]:
        """SKU → best score of a product seen near this track's wrist between ``t0`` and ``t1``, at
        moments when the wrist was clear of the shelves; two cameras whose boxes meet in 3-D at the
        wrist add their scores (capped at 1); ``min_views=2`` keeps only those. Empty without a
        product model."""
        if self.products is None:
            return {}
        clear: dict[float, list[np.ndarray]] = defaultdict(list)    # tick → wrists clear of the shelves
        for tw, w in track.wrists:
            if t0 <= tw <= t1 and self.clear_of_shelves(w):
                clear[tw].append(w)
        seen: dict[float, list[tuple[str, str, float, np.ndarray]]] = defaultdict(list)  # tick → (camera, sku, score, uv)
        for hv in track.hand_views:
            if not (t0 <= hv.t <= t1) or hv.t not in clear:
                continue
            kept = self._frames.get((hv.frame.camera_id, hv.frame.seq))
            if kept is None:
                self.dropped["hand view whose frame is no longer kept"] += 1
                continue
            for uv in hv.wrists_uv:
                if uv is not None:
                    seen[hv.t] += [(hv.frame.camera_id, sku, score, c)
                                   for sku, score, c in self._products_near(hv.frame, kept[1], uv)]
        best: dict[str, float] = {}
        for key, dets in seen.items():
            for i, (ca, sa, pa, ua) in enumerate(dets):
                if min_views <= 1:
                    best[sa] = max(best.get(sa, 0.0), pa)
                for cb, sb, pb, ub in dets[i + 1:]:
                    if ca == cb or sa != sb:
                        continue
                    p, gap = triangulate(self.store.camera_by_id[ca], ua, self.store.camera_by_id[cb], ub)
                    if gap < self.cfg.held_m and min(float(np.linalg.norm(p - w)) for w in clear[key]) < self.cfg.held_m:
                        best[sa] = max(best.get(sa, 0.0), min(1.0, pa + pb))
        return best

    def _products_near(self, ref: FrameRef, img: np.ndarray, uv: np.ndarray) -> list[tuple[str, float, np.ndarray]]:
        h, w = img.shape[:2]
        side = int(round(self.cfg.crop_frac * max(h, w)))
        x0 = int(np.clip(uv[0] - side / 2, 0, max(w - side, 0)))
        y0 = int(np.clip(uv[1] - side / 2, 0, max(h - side, 0)))
        key = (ref.camera_id, ref.seq, x0, y0)
        dets = self._cache.get(key)
        if dets is None:
            crop = img[y0:y0 + side, x0:x0 + side]
            dets = [(d.label, d.score, (d.box[:2] + d.box[2:]) / 2 + (x0, y0)) for d in self.products(crop)
                    if d.score >= self.cfg.product_conf and d.label in self.store.products]
            self._cache[key] = dets
        near = self.cfg.near_wrist_frac * max(h, w)
        return [(sku, score, c) for sku, score, c in dets if float(np.linalg.norm(c - uv)) <= near]
