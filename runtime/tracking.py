"""Tracking shoppers on the floor plane from several ceiling cameras, without faces.

Per camera, each detected person becomes a floor point (ankles, or the bottom of the box, cast
onto the floor through the camera's calibration) with an appearance signature (the colour of the
upper and lower body). Points from different cameras that land within ``cluster_m`` of each other
are one person; wrists seen by two or more cameras are triangulated in 3-D. World tracks follow
these observations with a constant-velocity model. A track that was lost (occlusion, a camera gap)
is re-linked to a new one by position, elapsed time and appearance, so it keeps its identity and
its account.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from runtime.geometry import closest_point_of_rays, pixel_rays, pixel_to_floor
from runtime.perception import Detection
from runtime.store import Camera, StoreSpec

ANKLES, WRISTS, SHOULDERS = (15, 16), (9, 10), (5, 6)


@dataclass(frozen=True)
class TrackingConfig:
    kpt_conf: float = 0.5         # keypoints below this confidence are not used
    cluster_m: float = 0.6        # floor points of one person from different cameras
    duplicate_m: float = 0.35     # two boxes of one camera this close are one person
    gate_m: float = 1.0           # largest jump of a track between updates
    appearance_weight_m: float = 2.0  # metres of distance one unit of appearance distance costs
    min_hits: int = 3             # observations (one of them by two cameras) before a track is published
    lost_after_s: float = 0.8     # unobserved this long: lost (kept for re-linking)
    forget_after_s: float = 60.0  # lost this long: forgotten
    relink_speed_mps: float = 1.6 # a lost shopper can have walked this fast since
    relink_appearance: float = 0.6  # largest appearance distance for a re-link (Bhattacharyya)
    wrist_ray_m: float = 0.12     # two wrist rays closer than this meet in one point
    history_s: float = 6.0        # keep this long a history of positions and wrists
    shoulder_m: float = 1.40      # shoulder height of an average adult, for a floor point from the shoulders
    head_m: float = 1.70          # top of the head, for a floor point from the top of a person box
    entry_m: float = 1.0          # someone first seen this close to the entry gate is coming in (no re-link, no jump onto them)


@dataclass
class PersonView:
    """One person seen by one camera."""

    camera_id: str
    floor_xy: np.ndarray
    score: float
    wrists_uv: list[np.ndarray | None]     # left, right (None when not seen)
    appearance: np.ndarray


@dataclass
class Observation:
    """One person seen by one or more cameras at one time."""

    t: float
    xy: np.ndarray
    views: list[PersonView]
    wrists: list[np.ndarray] = field(default_factory=list)   # triangulated, world metres

    @property
    def appearance(self) -> np.ndarray:
        a = np.mean([v.appearance for v in self.views], axis=0)
        return a / max(a.sum(), 1e-9)


def appearance_signature(bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Hue–saturation histograms of the upper and the lower half of a person box (clothing colour)."""
    h, w = bgr.shape[:2]
    x0, y0, x1, y1 = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1]).astype(int)
    hists = []
    mid = (y0 + y1) // 2
    for a, b in ((y0 + (y1 - y0) // 8, mid), (mid, y1 - (y1 - y0) // 8)):
        crop = bgr[a:max(b, a + 1), x0 + (x1 - x0) // 5: max(x1 - (x1 - x0) // 5, x0 + 1)]
        if crop.size == 0:
            hists.append(np.zeros(8 * 4, np.float32))
            continue
        hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [8, 4], [0, 180, 0, 256]).ravel()
        hists.append(hist / max(hist.sum(), 1e-9))
    return np.concatenate(hists).astype(np.float32)


def appearance_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two signatures (0 same, 1 disjoint)."""
    a, b = a / max(a.sum(), 1e-9), b / max(b.sum(), 1e-9)
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(a * b)))))


def person_views(cam: Camera, bgr: np.ndarray, dets: list[Detection], store: StoreSpec,
                 cfg: TrackingConfig) -> list[PersonView]:
    """Where on the floor each person detection stands (off the floor: dropped).

    The ankles, when the model sees them, are cast onto the floor. Shelves often hide the legs
    from a ceiling camera, and then the box's lower edge lies on the shelf, not the floor: the
    shoulders (cast onto a plane at ``shoulder_m``) or the top of the box (at ``head_m``) stand in,
    since the head and shoulders are what a ceiling camera almost always sees."""
    out = []
    W, D = store.floor.width_m, store.floor.depth_m
    for d in dets:
        kp = d.keypoints
        seen = lambda idx: [kp[i, :2] for i in idx if kp is not None and kp[i, 2] >= cfg.kpt_conf]  # noqa: E731
        ank, sho = seen(ANKLES), seen(SHOULDERS)
        if len(ank) == 2:
            xy = pixel_to_floor(cam, np.mean(ank, axis=0)[None])[0, :2]
        elif sho:
            xy = pixel_to_floor(cam, np.mean(sho, axis=0)[None], z_plane=cfg.shoulder_m)[0, :2]
        else:
            x0, y0, x1, _ = d.box
            if y0 <= 2 or x0 <= 2 or x1 >= cam.width - 3:
                continue   # cut by the image's edge, no joint seen: no reliable point
            xy = pixel_to_floor(cam, np.array([[(x0 + x1) / 2, y0]]), z_plane=cfg.head_m)[0, :2]
        if not np.all(np.isfinite(xy)) or not (-0.1 <= xy[0] <= W + 0.1 and -0.1 <= xy[1] <= D + 0.1):
            continue
        wrists = [kp[i, :2].copy() if kp is not None and kp[i, 2] >= cfg.kpt_conf else None for i in WRISTS]
        out.append(PersonView(cam.id, xy, d.score, wrists, appearance_signature(bgr, d.box)))
    return out


def associate(t: float, views: list[PersonView], store: StoreSpec, cfg: TrackingConfig) -> list[Observation]:
    """Group the views of one time step into people: at most one view per camera per person, views
    within ``cluster_m`` of the group's mean. Wrists seen in two cameras are triangulated."""
    groups: list[list[PersonView]] = []
    for v in sorted(views, key=lambda v: -v.score):
        best, best_d = None, cfg.cluster_m
        dup = False
        for g in groups:
            dist = float(np.linalg.norm(np.mean([u.floor_xy for u in g], axis=0) - v.floor_xy))
            if any(u.camera_id == v.camera_id for u in g):
                dup = dup or dist < cfg.duplicate_m   # a second box of the same person in one camera
                continue
            if dist < best_d:
                best, best_d = g, dist
        if dup and best is None:
            continue
        if best is None:
            groups.append([v])
        else:
            best.append(v)
    obs = []
    for g in groups:
        xy = np.average([u.floor_xy for u in g], axis=0, weights=[u.score for u in g])
        o = Observation(t, xy, g)
        for side in (0, 1):
            seen = [(store.camera_by_id[u.camera_id], u.wrists_uv[side]) for u in g if u.wrists_uv[side] is not None]
            pts = []
            for i in range(len(seen)):
                for j in range(i + 1, len(seen)):
                    o1, d1 = pixel_rays(seen[i][0], seen[i][1][None])
                    o2, d2 = pixel_rays(seen[j][0], seen[j][1][None])
                    p, gap = closest_point_of_rays(o1, d1[0], o2, d2[0])
                    if gap < cfg.wrist_ray_m and 0.0 < p[2] < 2.2:
                        pts.append(p)
            if pts:
                o.wrists.append(np.median(pts, axis=0))
        obs.append(o)
    return obs


@dataclass
class WorldTrack:
    id: int
    xy: np.ndarray
    t: float
    first_t: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    hits: int = 1
    account: str | None = None
    appearance: np.ndarray | None = None
    lost: bool = False
    closed: bool = False
    positions: deque = field(default_factory=deque)   # (t, xy)
    wrists: deque = field(default_factory=deque)      # (t, xyz)
    hand_views: deque = field(default_factory=deque)  # (t, camera_id, [left uv | None, right uv | None])

    def predict(self, t: float) -> np.ndarray:
        return self.xy + self.velocity * min(t - self.t, 0.5)

    min_hits: int = 3
    moved_m: float = 0.0   # farthest from where it was first seen
    first_xy: np.ndarray | None = None
    max_views: int = 1     # the most cameras that saw it at one time

    @property
    def confirmed(self) -> bool:
        """Seen often enough, and once by two cameras at the same time (a static false positive
        of one camera never is)."""
        return self.hits >= self.min_hits and self.max_views >= 2


class WorldTracker:
    """World tracks from per-time-step observations; identity through gates and re-linking."""

    def __init__(self, store: StoreSpec, cfg: TrackingConfig = TrackingConfig()):
        self.store, self.cfg = store, cfg
        self.tracks: list[WorldTrack] = []
        self._next_id = 1

    def active(self) -> list[WorldTrack]:
        """The tracks to publish: confirmed, observed lately, and either holding an account or
        having walked (a still shape nobody scanned in is a false detection more often than not)."""
        return [k for k in self.tracks if not k.lost and not k.closed and k.confirmed
                and (k.account is not None or k.moved_m >= 0.5)]

    def update(self, t: float, obs: list[Observation]) -> None:
        cfg = self.cfg
        live = [k for k in self.tracks if not k.lost and not k.closed]
        pairs = []
        # someone at the entry gate is someone coming in, or someone who was near it already: a
        # track last seen deeper in the store does not jump onto them
        at_entry = [self.gate_distance("entry", o.xy) < cfg.entry_m for o in obs]
        deep = [self.gate_distance("entry", k.xy) > cfg.entry_m + 0.5 for k in live]
        for i, k in enumerate(live):
            for j, o in enumerate(obs):
                if at_entry[j] and deep[i]:
                    continue
                dist = min(float(np.linalg.norm(k.predict(t) - o.xy)), float(np.linalg.norm(k.xy - o.xy)))
                if dist > cfg.gate_m + 1.5 * max(t - k.t, 0.0):
                    continue
                app = appearance_distance(k.appearance, o.appearance) if k.appearance is not None else 0.0
                # confirmed tracks choose first (as ByteTrack matches its confident tracks first)
                pairs.append((not k.confirmed, dist + cfg.appearance_weight_m * app, i, j))
        pairs.sort(key=lambda p: p[:2])
        used_k, used_o = set(), set()
        for _, _, i, j in pairs:
            if i in used_k or j in used_o:
                continue
            used_k.add(i)
            used_o.add(j)
            self._absorb(live[i], obs[j])
        for j, o in enumerate(obs):
            if j not in used_o:
                k = WorldTrack(self._next_id, o.xy.copy(), t, t, appearance=o.appearance, min_hits=cfg.min_hits)
                self._next_id += 1
                self._remember(k, o)
                self.tracks.append(k)
        for k in self.tracks:
            if not k.lost and not k.closed and t - k.t > cfg.lost_after_s:
                k.lost = True
        for k in self.tracks:
            if k.account is None and k.confirmed and not k.lost and not k.closed:
                self._relink(k)
        self.tracks = [k for k in self.tracks if not (k.lost and t - k.t > cfg.forget_after_s) and not
                       (not k.confirmed and (k.lost or k.closed))]

    def _absorb(self, k: WorldTrack, o: Observation) -> None:
        dt = o.t - k.t
        if dt > 1e-6:
            v = (o.xy - k.xy) / dt
            k.velocity = 0.6 * k.velocity + 0.4 * np.clip(v, -2.0, 2.0)
        k.xy = 0.3 * k.predict(o.t) + 0.7 * o.xy
        k.t = o.t
        k.hits += 1
        a = o.appearance
        k.appearance = a if k.appearance is None else 0.9 * k.appearance + 0.1 * a
        self._remember(k, o)

    def _remember(self, k: WorldTrack, o: Observation) -> None:
        k.max_views = max(k.max_views, len({v.camera_id for v in o.views}))
        if k.first_xy is None:
            k.first_xy = k.xy.copy()
        k.moved_m = max(k.moved_m, float(np.linalg.norm(k.xy - k.first_xy)))
        k.positions.append((o.t, k.xy.copy()))
        for w in o.wrists:
            k.wrists.append((o.t, w))
        for v in o.views:
            if any(uv is not None for uv in v.wrists_uv):
                k.hand_views.append((o.t, v.camera_id, v.wrists_uv))
        for dq in (k.positions, k.wrists, k.hand_views):
            while dq and dq[0][0] < o.t - self.cfg.history_s:
                dq.popleft()

    def _relink(self, new: WorldTrack) -> None:
        """A new track continues a lost one that could have walked here and looks the same. A track
        that starts at the entry gate is someone coming in (the gate scan names them), never a
        shopper already inside: in a busy store the next one through the gate looks close enough to
        the last one, who has just been lost in the crowd behind it."""
        if new.first_xy is not None and self.gate_distance("entry", new.first_xy) < self.cfg.entry_m:
            return
        best, best_cost = None, float("inf")
        for k in self.tracks:
            stale = k.lost or new.t - k.t > 0.3
            if k is new or not stale or k.closed or k.account is None or not k.confirmed:
                continue
            gap = new.first_t - k.t
            if gap < -0.2:
                continue
            reach = 1.0 + self.cfg.relink_speed_mps * max(gap, 0.0)
            dist = float(np.linalg.norm(new.xy - k.xy))
            app = appearance_distance(new.appearance, k.appearance) if new.appearance is not None and k.appearance is not None else 0.5
            if dist > reach or app > self.cfg.relink_appearance:
                continue
            cost = dist / reach + app
            if cost < best_cost:
                best, best_cost = k, cost
        if best is not None:
            new.id, new.account = best.id, best.account
            new.positions = deque([*best.positions, *new.positions])
            new.wrists = deque([*best.wrists, *new.wrists])
            new.hand_views = deque([*best.hand_views, *new.hand_views])
            best.closed = True

    def gate_distance(self, kind: str, p: np.ndarray) -> float:
        """Distance of a floor point to the nearest gate of this kind (inf without one)."""
        out = float("inf")
        for g in self.store.gates:
            if g.kind == kind:
                a, b = np.array(g.a_m), np.array(g.b_m)
                ab = b - a
                s = np.clip(float((p - a) @ ab / (ab @ ab)), 0.0, 1.0)
                out = min(out, float(np.linalg.norm(p - (a + s * ab))))
        return out

    def near_gate(self, gate_id: str, t: float, radius_m: float = 2.0, first: bool = False,
                  born_after: float | None = None, at: float | None = None) -> list[tuple[float, WorldTrack]]:
        """Tracks without an account near a gate, nearest first: where they are now, where they
        were first seen (``first``), or where they were at time ``at`` (the scan: the one who
        scanned was at the gate then); first seen after ``born_after`` if given."""
        g = next(g for g in self.store.gates if g.id == gate_id)
        a, b = np.array(g.a_m), np.array(g.b_m)
        out = []
        for k in self.tracks:
            if (k.closed or k.account is not None or not k.confirmed or t - k.t > 1.5
                    or (born_after is not None and k.first_t < born_after)):
                continue
            p = k.first_xy if first and k.first_xy is not None else k.xy
            if at is not None and k.positions:
                p = min(k.positions, key=lambda q: abs(q[0] - at))[1]
            ab = b - a
            s = np.clip(float((p - a) @ ab / (ab @ ab)), 0.0, 1.0)
            d = float(np.linalg.norm(p - (a + s * ab)))
            if d <= radius_m:
                out.append((d, k))
        return sorted(out, key=lambda p: p[0])

    def close_account(self, account: str) -> None:
        for k in self.tracks:
            if k.account == account:
                k.closed = True
