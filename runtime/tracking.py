"""Tracking shoppers on the floor plane from several ceiling cameras, without faces.

Per camera, each detected person becomes a floor point (ankles, or the shoulders or the top of the
box at an average height, cast through the camera's calibration) with an appearance signature (the
colour of the upper and lower body) and an uncertainty (:func:`runtime.geometry.floor_point_cov`:
a far camera that sees only the shoulders is unsure along its ray). Points from different cameras
that land within ``cluster_m`` of each other are one person, and so are groups of them within
``cluster_m`` counted in their uncertainty when nobody else is; wrists seen by two or more cameras
are triangulated in 3-D. World tracks follow
these observations with a constant-velocity model. A track that was lost (occlusion, a camera gap)
is re-linked to a new one by position, elapsed time and appearance, so it keeps its identity and
its account.
"""
from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from runtime.config import TrackingConfig
from runtime.geometry import closest_points_of_rays, floor_point_cov, pixel_rays, pixel_to_floor, triangulate
from runtime.perception import Detection
from runtime.store import Camera, StoreSpec
from runtime.ticks import FrameRef

log = logging.getLogger(__name__)

ANKLES, WRISTS, SHOULDERS = (15, 16), (9, 10), (5, 6)
SKELETON_REACH_M = 0.9     # no joint of a standing adult lies farther than this from the middle of the others, seen from above


@dataclass
class PersonView:
    """One person seen by one camera, in one of its frames."""

    frame: FrameRef
    floor_xy: np.ndarray
    score: float
    wrists_uv: list[np.ndarray | None]     # left, right (None when not seen)
    appearance: np.ndarray
    cov: np.ndarray | None = None          # 2×2 floor covariance (None: ``view_sd_m`` every way)
    keypoints: np.ndarray | None = None    # the 17 joints (u, v, confidence), for the skeleton a display draws

    @property
    def camera_id(self) -> str:
        return self.frame.camera_id


@dataclass(frozen=True)
class HandView:
    """A track's wrists as one camera saw them at one tick, and the frame to look at them again."""

    t: float                                # the tick
    frame: FrameRef
    wrists_uv: tuple                        # left, right pixel (None when not seen)


@dataclass
class Observation:
    """One person seen by one or more cameras at one time."""

    t: float
    xy: np.ndarray
    views: list[PersonView]
    wrists: list[np.ndarray] = field(default_factory=list)   # triangulated, world metres
    skeleton: np.ndarray | None = None    # 17 × 3 world metres, NaN where a joint was not found (:func:`skeleton_3d`)
    track_id: int | None = None       # the track whose predicted place these views were given to (or None)

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


def person_views(cam: Camera, frame: FrameRef, bgr: np.ndarray, dets: list[Detection], store: StoreSpec,
                 cfg: TrackingConfig, dropped: Counter | None = None) -> list[PersonView]:
    """Where on the floor each person detection stands (off the floor: dropped).

    The ankles, when the model sees them, are cast onto the floor. Shelves often hide the legs
    from a ceiling camera, and then the box's lower edge lies on the shelf, not the floor: the
    shoulders (cast onto a plane at ``shoulder_m``) or the top of the box (at ``head_m``) stand in,
    since the head and shoulders are what a ceiling camera almost always sees.

    Detections left out are counted in ``dropped`` by reason."""
    out = []
    dropped = Counter() if dropped is None else dropped
    W, D = store.floor.width_m, store.floor.depth_m
    for d in dets:
        kp = d.keypoints
        seen = lambda idx: [kp[i, :2] for i in idx if kp is not None and kp[i, 2] >= cfg.kpt_conf]  # noqa: E731
        ank, sho = seen(ANKLES), seen(SHOULDERS)
        if len(ank) == 2:
            z, sd = 0.0, cfg.ankle_sd_m
            xy = pixel_to_floor(cam, np.mean(ank, axis=0)[None])[0, :2]
        elif sho:
            z, sd = cfg.shoulder_m, cfg.shoulder_sd_m
            xy = pixel_to_floor(cam, np.mean(sho, axis=0)[None], z_plane=z)[0, :2]
        else:
            x0, y0, x1, _ = d.box
            if y0 <= 2 or x0 <= 2 or x1 >= cam.width - 3:
                dropped["person cut by the image edge"] += 1   # no joint seen: no reliable point
                continue
            z, sd = cfg.head_m, cfg.head_sd_m
            xy = pixel_to_floor(cam, np.array([[(x0 + x1) / 2, y0]]), z_plane=z)[0, :2]
        if not np.all(np.isfinite(xy)) or not (-0.1 <= xy[0] <= W + 0.1 and -0.1 <= xy[1] <= D + 0.1):
            dropped["person off the floor"] += 1
            continue
        wrists = [kp[i, :2].copy() if kp is not None and kp[i, 2] >= cfg.kpt_conf else None for i in WRISTS]
        out.append(PersonView(frame, xy, d.score, wrists, appearance_signature(bgr, d.box),
                              floor_point_cov(cam, xy, z, sd, cfg.view_px, cfg.view_sd_m), keypoints=kp))
    return out


def _cov(v: PersonView, cfg: TrackingConfig) -> np.ndarray:
    return v.cov if v.cov is not None else cfg.view_sd_m ** 2 * np.eye(2)


def _fuse(g: list[PersonView], cfg: TrackingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Where the views of one person place them together (each weighted by its inverse covariance,
    so a near camera outweighs a far one along the far one's ray, and by its score), and how surely: the fused
    covariance plus the part every view shares (where on the body the point lies does not average
    out over cameras)."""
    infos = [np.linalg.inv(_cov(u, cfg)) for u in g]
    cov = np.linalg.inv(np.sum(infos, axis=0))
    # the point: each view by its certainty and by the detector's score (a faint box, half hidden,
    # places its keypoints worse than its geometry alone says)
    w = [u.score * i for u, i in zip(g, infos)]
    xy = np.linalg.solve(np.sum(w, axis=0), np.sum([wi @ u.floor_xy for wi, u in zip(w, g)], axis=0))
    return xy, cov + cfg.view_sd_m ** 2 * (1 - 1 / len(g)) * np.eye(2)


def _apart(xy_a: np.ndarray, cov_a: np.ndarray, xy_b: np.ndarray, cov_b: np.ndarray, cfg: TrackingConfig) -> float:
    """How far apart two floor points are, in metres as two close cameras would see them: the
    Mahalanobis distance scaled by the spread of two close-by views (``√2 · view_sd_m``). Two
    close views: their distance in metres; a far view: its error along its ray counts less."""
    r = xy_a - xy_b
    return float(np.sqrt(r @ np.linalg.solve(cov_a + cov_b, r))) * np.sqrt(2) * cfg.view_sd_m


def _apart_many(views: list[PersonView], xy: np.ndarray, cov: np.ndarray, cfg: TrackingConfig) -> np.ndarray:
    """:func:`_apart` of every view against every point ``xy`` (k×2) of one covariance ``cov``, at
    once (views × points)."""
    r = np.array([v.floor_xy for v in views], dtype=float)[:, None, :] - xy[None, :, :]
    inv = np.linalg.inv(np.array([_cov(v, cfg) for v in views], dtype=float) + cov)       # views × 2 × 2
    d2 = np.einsum("nki,nij,nkj->nk", r, inv, r)
    return np.sqrt(np.maximum(d2, 0.0)) * np.sqrt(2) * cfg.view_sd_m


def _appearance_many(sigs: list[np.ndarray], looks: list[np.ndarray | None]) -> np.ndarray:
    """:func:`appearance_distance` of every signature against every look at once (0 where a look
    is None)."""
    def unit_sqrt(xs: list[np.ndarray]) -> np.ndarray:
        a = np.array(xs, dtype=np.float64)
        return np.sqrt(a / np.maximum(a.sum(axis=1, keepdims=True), 1e-9))
    out = np.zeros((len(sigs), len(looks)))
    have = [j for j, look in enumerate(looks) if look is not None]
    if sigs and have:
        bc = unit_sqrt(sigs) @ unit_sqrt([looks[j] for j in have]).T
        out[:, have] = np.sqrt(np.maximum(0.0, 1.0 - bc))
    return out


@dataclass(frozen=True)
class Anchor:
    """A track as :func:`associate` needs it: its id, where it should be now, and its look."""

    id: int
    xy: np.ndarray
    appearance: np.ndarray | None
    by_camera: dict = field(default_factory=dict)   # camera id → its look as that camera sees it

    def look(self, camera_id: str) -> np.ndarray | None:
        return self.by_camera.get(camera_id, self.appearance)


def _anchor_views(views: list[PersonView], anchors: list[Anchor],
                  cfg: TrackingConfig) -> tuple[dict[int, list[PersonView]], list[PersonView]]:
    """Give each camera's views to the tracks whose predicted places they fit: per camera an optimal
    one-to-one assignment (each camera sees a person once, and sees each person once) by distance
    and look (``anchor_appearance_m`` metres per unit of appearance distance). A view farther than
    ``anchor_m`` from a track (counted in its uncertainty, :func:`_apart`), or unlike it by
    ``anchor_appearance`` or more, fits it not: a passer-by's views do not drag along the track of
    someone who stands unseen beside them.
    Returns the views per track, and the views left over (newcomers, ghosts, second boxes)."""
    from scipy.optimize import linear_sum_assignment
    given: dict[int, list[PersonView]] = {}
    if not anchors:
        return given, list(views)
    pred_cov = cfg.anchor_sd_m ** 2 * np.eye(2)
    by_cam: dict[str, list[PersonView]] = {}
    for v in views:
        by_cam.setdefault(v.camera_id, []).append(v)
    left = []
    anchor_xy = np.array([a.xy for a in anchors], dtype=float)
    for cam_views in by_cam.values():
        apart = _apart_many(cam_views, anchor_xy, pred_cov, cfg)
        looks = [a.look(cam_views[0].camera_id) for a in anchors]
        app = _appearance_many([v.appearance for v in cam_views], looks)
        fits = (apart < cfg.anchor_m) & (app < cfg.anchor_appearance)
        cost = apart + cfg.anchor_appearance_m * app
        rows, cols = linear_sum_assignment(np.where(fits, cost, 1e6))
        taken = set()
        for r, c in zip(rows, cols):
            if fits[r, c]:
                given.setdefault(anchors[c].id, []).append(cam_views[r])
                taken.add(r)
        for r, v in enumerate(cam_views):
            if r in taken:
                continue
            # a second box of someone this camera already gave to a track is no one new
            if any(np.linalg.norm(cam_views[q].floor_xy - v.floor_xy) < cfg.duplicate_m for q in taken):
                continue
            left.append(v)
    return given, left


def associate(t: float, views: list[PersonView], store: StoreSpec, cfg: TrackingConfig,
              anchors: list[Anchor] = ()) -> list[Observation]:
    """Group the views of one time step into people: at most one view per camera per person. With
    ``anchors`` (each track's id and predicted place, :meth:`WorldTracker.anchors`), views are first
    given to the tracks they fit, camera by camera (:func:`_anchor_views`: two people shoulder to
    shoulder keep their own views). The views left over are grouped greedily, views within
    ``cluster_m`` of the group's mean; then groups that are one person seen apart are joined
    (:func:`_merge_split_groups`; two tracks' groups never). A person's point weighs each view by its certainty (a near
    camera outweighs a far one along the far one's ray). Wrists seen in two cameras are triangulated."""
    given, views = _anchor_views(views, list(anchors), cfg) if cfg.anchor_m > 0 else ({}, list(views))
    track_of: list[int | None] = [k for k in given]
    groups: list[list[PersonView]] = [given[k] for k in given]
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
            track_of.append(None)
        else:
            best.append(v)
    if cfg.merge_split:
        groups, track_of = _merge_split_groups(groups, cfg, track_of)
    obs = []
    for g, k in zip(groups, track_of):
        o = Observation(t, _fuse(g, cfg)[0], g, track_id=k)
        for side in (0, 1):
            seen = [(store.camera_by_id[u.camera_id], u.wrists_uv[side]) for u in g if u.wrists_uv[side] is not None]
            pts = []
            for i in range(len(seen)):
                for j in range(i + 1, len(seen)):
                    p, gap = triangulate(seen[i][0], seen[i][1], seen[j][0], seen[j][1])
                    if gap < cfg.wrist_ray_m and 0.0 < p[2] < cfg.wrist_max_z_m:
                        pts.append(p)
            if pts:
                o.wrists.append(np.median(pts, axis=0))
        o.skeleton = skeleton_3d(g, store, cfg)
        obs.append(o)
    return obs


def skeleton_3d(views: list[PersonView], store: StoreSpec, cfg: TrackingConfig) -> np.ndarray | None:
    """A person's 17 joints in world metres (NaN where a joint was not found), for display and a
    review's evidence: each joint triangulated from the two most certain views that have keypoints
    (every joint at once, one ray pair each), kept where both saw it with ``kpt_conf``, the rays meet
    within ``wrist_ray_m``, the point lies between the floor and ``wrist_max_z_m`` and within
    :data:`SKELETON_REACH_M` of the joints' middle seen from above. None with fewer
    than two such views. Nothing the runtime decides reads it."""
    vs = sorted((v for v in views if v.keypoints is not None and len(v.keypoints) == 17), key=lambda v: -v.score)[:2]
    if len(vs) < 2:
        return None
    a, b = vs
    ok = (a.keypoints[:, 2] >= cfg.kpt_conf) & (b.keypoints[:, 2] >= cfg.kpt_conf)
    if not ok.any():
        return None
    o1, d1 = pixel_rays(store.camera_by_id[a.camera_id], a.keypoints[ok, :2].astype(float))
    o2, d2 = pixel_rays(store.camera_by_id[b.camera_id], b.keypoints[ok, :2].astype(float))
    p, gap = closest_points_of_rays(o1, d1, o2, d2)
    good = (gap < cfg.wrist_ray_m) & (p[:, 2] > -0.05) & (p[:, 2] < cfg.wrist_max_z_m)
    # two views' joints paired wrongly (left for right, a neighbour's wrist) can still meet: a joint
    # farther than a person's reach from the others' middle is left out
    if good.any():
        mid = np.median(p[good, :2], axis=0)
        good &= np.linalg.norm(p[:, :2] - mid, axis=1) <= SKELETON_REACH_M
    out = np.full((17, 3), np.nan)
    idx = np.flatnonzero(ok)[good]
    if not idx.size:
        return None
    out[idx] = p[good]
    return out


def _merge_split_groups(groups: list[list[PersonView]], cfg: TrackingConfig,
                        track_of: list[int | None] | None = None) -> tuple[list[list[PersonView]], list[int | None]]:
    """Greedy grouping can split one person in two when the cameras disagree on where they stand
    (a walker's frames exposed tens of milliseconds apart, legs hidden on one side, a far camera
    that sees only the shoulders and casts them along its ray). Two groups with no camera in
    common are one person when their means lie within ``cluster_m``, or when they lie within it
    counted in their own uncertainty (:func:`_apart`: the far camera's error along its ray) and
    neither has another group that close (in a crowd a far camera's point could be anyone's along
    its ray). A camera sees a person once, so groups that share a camera are two people and stay apart,
    and so do the groups of two tracks (``track_of``: the track a group was given to, or None)."""
    track_of = list(track_of) if track_of is not None else [None] * len(groups)
    merged = True
    while merged and len(groups) > 1:
        merged = False
        n = len(groups)
        means = [np.mean([u.floor_xy for u in g], axis=0) for g in groups]
        fused = [_fuse(g, cfg) for g in groups]
        apart = np.full((n, n), np.inf)
        for i in range(n):
            for j in range(i + 1, n):
                apart[i, j] = apart[j, i] = _apart(fused[i][0], fused[i][1], fused[j][0], fused[j][1], cfg)
        near = [list(np.flatnonzero(apart[i] < cfg.cluster_m)) for i in range(n)]
        best = None
        for i in range(n):
            cams_i = {u.camera_id for u in groups[i]}
            for j in range(i + 1, n):
                if cams_i & {u.camera_id for u in groups[j]} or (track_of[i] is not None and track_of[j] is not None):
                    continue
                d = float(np.linalg.norm(means[i] - means[j]))
                if d >= cfg.cluster_m and not (near[i] == [j] and near[j] == [i]):
                    continue
                d = min(d, float(apart[i, j]))
                if best is None or d < best[0]:
                    best = (d, i, j)
        if best is not None:
            _, i, j = best
            groups[i] = groups[i] + groups[j]
            track_of[i] = track_of[i] if track_of[i] is not None else track_of[j]
            del groups[j], track_of[j]
            merged = True
    return groups, track_of


@dataclass(frozen=True)
class TrackView:
    """A world track as the tracker last left it: what every other stage reads (never writes)."""

    id: int
    account: str | None
    xy: np.ndarray
    t: float                   # last observed
    first_t: float
    first_xy: np.ndarray
    moved_m: float             # farthest from where it was first seen
    confirmed: bool
    lost: bool
    closed: bool
    positions: tuple           # (t, xy), the last ``history_s``
    velocity: np.ndarray       # m/s, the constant-velocity model's
    wrists: tuple              # (t, xyz), triangulated
    hand_views: tuple[HandView, ...]
    skeletons: tuple = ()      # (t, 17 × 3 world metres, NaN where not found)

    def position_at(self, t: float) -> np.ndarray:
        """Where the track was nearest in time to ``t``."""
        return min(self.positions, key=lambda q: abs(q[0] - t))[1] if self.positions else self.xy


@dataclass
class _Track:
    """The tracker's own, mutable record of a track."""

    id: int
    xy: np.ndarray
    t: float
    first_t: float
    min_hits: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    hits: int = 1
    account: str | None = None
    appearance: np.ndarray | None = None
    lost: bool = False
    closed: bool = False
    positions: deque = field(default_factory=deque)   # (t, xy)
    wrists: deque = field(default_factory=deque)      # (t, xyz)
    hand_views: deque = field(default_factory=deque)  # HandView
    skeletons: deque = field(default_factory=deque)   # (t, 17 × 3)
    moved_m: float = 0.0
    first_xy: np.ndarray | None = None
    max_views: int = 1     # the most cameras that saw it at one time
    merged_t: float = -1e9 # when it was last hidden in another track's observation
    by_camera: dict = field(default_factory=dict)     # camera id → appearance as that camera sees it (the back, the front)

    def predict(self, t: float, max_s: float) -> np.ndarray:
        return self.xy + self.velocity * min(t - self.t, max_s)

    @property
    def confirmed(self) -> bool:
        """Seen often enough, and once by two cameras at the same time (a static false positive
        of one camera never is)."""
        return self.hits >= self.min_hits and self.max_views >= 2

    def view(self) -> TrackView:
        return TrackView(self.id, self.account, self.xy.copy(), self.t, self.first_t,
                         (self.first_xy if self.first_xy is not None else self.xy).copy(), self.moved_m,
                         self.confirmed, self.lost, self.closed, tuple(self.positions), self.velocity.copy(),
                         tuple(self.wrists),
                         tuple(self.hand_views), tuple(self.skeletons))


class WorldTracker:
    """World tracks from per-tick observations; identity kept through re-linking. It alone writes
    its tracks: accounts come in through :meth:`assign` and :meth:`close_account`, and every
    other stage reads :meth:`snapshot`."""

    def __init__(self, store: StoreSpec, cfg: TrackingConfig = TrackingConfig()):
        self.store, self.cfg = store, cfg
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._snapshot: tuple[TrackView, ...] | None = ()
        self.t = 0.0                 # the last update's time

    def snapshot(self) -> tuple[TrackView, ...]:
        """Every track the tracker still keeps (lost ones too, for a while), as read-only views."""
        if self._snapshot is None:
            self._snapshot = tuple(k.view() for k in self._tracks)
        return self._snapshot

    def active(self) -> list[TrackView]:
        """The tracks to publish: confirmed, observed lately, and either holding an account, having
        walked, or first seen at the entry gate (someone coming in, whose scan names them a moment
        later): a still shape elsewhere that nobody scanned in is a false detection more often than
        not. A track unseen for ``gone_s`` where it stood at the exit gate has walked out (its
        exit scan may wait for the rest of a group): it is kept, for a while, but not shown."""
        cfg = self.cfg
        return [k for k in self.snapshot() if not k.lost and not k.closed and k.confirmed
                and (k.account is not None or k.moved_m >= cfg.walked_m
                     or self.store.distance_to_gate("entry", k.first_xy) < cfg.entry_m)
                and not (self.t - k.t > cfg.gone_s and self.store.distance_to_gate("exit", k.xy) < cfg.exit_m)]

    def track(self, track_id: int) -> TrackView | None:
        return next((k for k in self.snapshot() if k.id == track_id), None)

    def assign(self, track_id: int, account: str) -> None:
        """The shopper behind this track is ``account`` (a gate scan, a group)."""
        for k in self._tracks:
            if k.id == track_id:
                k.account = account
        self._snapshot = None

    def close_account(self, account: str) -> None:
        """The account has left the store: its tracks end."""
        for k in self._tracks:
            if k.account == account:
                k.closed = True
        self._snapshot = None

    def anchors(self, t: float) -> list[Anchor]:
        """Where each confirmed track seen within ``anchor_s`` should be at ``t``, and its look, for
        :func:`associate` to give it the views that fit."""
        return [Anchor(k.id, k.predict(t, self.cfg.predict_max_s), k.appearance, dict(k.by_camera))
                for k in self._tracks if self._offered_views(k, t)]

    def _offered_views(self, k: _Track, t: float) -> bool:
        """Whether :meth:`anchors` offers this track the views that fit it at ``t``."""
        return k.confirmed and not k.lost and not k.closed and t - k.t <= self.cfg.anchor_s

    def update(self, t: float, obs: list[Observation]) -> None:
        cfg = self.cfg
        self._snapshot = None
        self.t = max(self.t, t)
        live = [k for k in self._tracks if not k.lost and not k.closed]
        pairs = []
        # observations made of the views given to a track (associate's anchors) are that track's
        by_id = {k.id: i for i, k in enumerate(live)}
        for j, o in enumerate(obs):
            if o.track_id is not None and o.track_id in by_id:
                pairs.append((False, False, -1.0, by_id[o.track_id], j))
        # someone at the entry gate is someone coming in, or someone who was near it already: a
        # track last seen deeper in the store does not jump onto them
        at_entry = [self.store.distance_to_gate("entry", o.xy) < cfg.entry_m for o in obs]
        deep = [self.store.distance_to_gate("entry", k.xy) > cfg.entry_m + cfg.deep_m for k in live]
        weak = [len(o.views) == 1 and o.views[0].score < cfg.strong_score for o in obs]
        # a track that was offered the views that fit it (an anchor) and found none unlike it by
        # anchor_appearance or more is not seen now: such an observation is someone else
        anchor = {k.id for k in live if self._offered_views(k, t)} if cfg.anchor_m > 0 else set()
        for i, k in enumerate(live):
            for j, o in enumerate(obs):
                if at_entry[j] and deep[i]:
                    continue
                if k.id in anchor and o.track_id is None and k.appearance is not None and \
                        appearance_distance(k.appearance, o.appearance) >= cfg.anchor_appearance:
                    continue
                # where it was heading, or where it was (it stopped); a track that was hidden in
                # someone else's observation only where it was heading: two people dressed alike who
                # cross are told apart by their motion
                dist = float(np.linalg.norm(k.predict(t, cfg.predict_max_s) - o.xy))
                if t - k.merged_t > cfg.merged_s:
                    dist = min(dist, float(np.linalg.norm(k.xy - o.xy)))
                if dist > cfg.gate_m + cfg.gate_speed_mps * max(t - k.t, 0.0):
                    continue
                app = appearance_distance(k.appearance, o.appearance) if k.appearance is not None else 0.0
                # confirmed tracks choose first, and strong observations go first (ByteTrack matches
                # its confident tracks to high-score detections before low-score ones): a faint
                # box that one camera sees where a shopper just stood does not pull the track off her
                pairs.append((not k.confirmed, weak[j], dist + cfg.appearance_weight_m * app, i, j))
        pairs.sort(key=lambda p: p[:3])
        used_k, used_o = set(), set()
        for _, _, _, i, j in pairs:
            if i in used_k or j in used_o:
                continue
            used_k.add(i)
            used_o.add(j)
            self._absorb(live[i], obs[j])
        taken = [obs[j].xy for j in used_o]
        for i, k in enumerate(live):   # unseen, where someone else was seen: hidden in their observation
            if i not in used_k and k.confirmed and any(
                    np.linalg.norm(k.predict(t, cfg.predict_max_s) - xy) < cfg.cluster_m for xy in taken):
                k.merged_t = t
        for j, o in enumerate(obs):
            if j not in used_o:
                # someone stepping through the entry gate is expected: seen twice (by two cameras) is enough
                hits = cfg.entry_min_hits if at_entry[j] else cfg.min_hits
                k = _Track(self._next_id, o.xy.copy(), t, t, hits, appearance=o.appearance)
                self._next_id += 1
                self._remember(k, o)
                self._tracks.append(k)
        for k in self._tracks:
            if not k.lost and not k.closed and t - k.t > cfg.lost_after_s:
                k.lost = True
        for k in self._tracks:
            if k.account is None and k.confirmed and not k.lost and not k.closed:
                self._relink(k)
        self._tracks = [k for k in self._tracks if not (k.lost and t - k.t > cfg.forget_after_s) and not
                        (not k.confirmed and (k.lost or k.closed))]

    def _absorb(self, k: _Track, o: Observation) -> None:
        cfg = self.cfg
        dt = o.t - k.t
        if dt > 1e-6:
            v = (o.xy - k.xy) / dt
            k.velocity = (1 - cfg.velocity_gain) * k.velocity + cfg.velocity_gain * np.clip(v, -cfg.max_speed_mps, cfg.max_speed_mps)
        k.xy = (1 - cfg.position_gain) * k.predict(o.t, cfg.predict_max_s) + cfg.position_gain * o.xy
        k.t = o.t
        k.hits += 1
        a = o.appearance
        k.appearance = a if k.appearance is None else (1 - cfg.appearance_gain) * k.appearance + cfg.appearance_gain * a
        self._remember(k, o)

    def _remember(self, k: _Track, o: Observation) -> None:
        k.max_views = max(k.max_views, len({v.camera_id for v in o.views}))
        g = self.cfg.appearance_gain
        for v in o.views:
            a = k.by_camera.get(v.camera_id)
            k.by_camera[v.camera_id] = v.appearance if a is None else (1 - g) * a + g * v.appearance
        if k.first_xy is None:
            k.first_xy = k.xy.copy()
        k.moved_m = max(k.moved_m, float(np.linalg.norm(k.xy - k.first_xy)))
        k.positions.append((o.t, k.xy.copy()))
        for w in o.wrists:
            k.wrists.append((o.t, w))
        if o.skeleton is not None:
            k.skeletons.append((o.t, o.skeleton))
        for v in o.views:
            if any(uv is not None for uv in v.wrists_uv):
                k.hand_views.append(HandView(o.t, v.frame, tuple(v.wrists_uv)))
        horizon = o.t - self.cfg.history_s
        for dq in (k.positions, k.wrists, k.skeletons):
            while dq and dq[0][0] < horizon:
                dq.popleft()
        while k.hand_views and k.hand_views[0].t < horizon:
            k.hand_views.popleft()

    def _relink(self, new: _Track) -> None:
        """A new track continues a lost one that could have walked here and looks the same. A track
        that starts at the entry gate is someone coming in (the gate scan names them), never a
        shopper already inside: in a busy store the next one through the gate looks close enough to
        the last one, who has just been lost in the crowd behind it."""
        cfg = self.cfg
        if new.first_xy is not None and self.store.distance_to_gate("entry", new.first_xy) < cfg.entry_m:
            return
        best, best_cost = None, float("inf")
        for k in self._tracks:
            stale = k.lost or new.t - k.t > cfg.relink_stale_s
            if k is new or not stale or k.closed or k.account is None or not k.confirmed:
                continue
            gap = new.first_t - k.t
            if gap < -cfg.relink_overlap_s:
                continue
            reach = cfg.relink_m + cfg.relink_speed_mps * max(gap, 0.0)
            dist = float(np.linalg.norm(new.xy - k.xy))
            app = appearance_distance(new.appearance, k.appearance) if new.appearance is not None and k.appearance is not None else 0.5
            if dist > reach or app > cfg.relink_appearance:
                continue
            cost = dist / reach + app
            if cost < best_cost:
                best, best_cost = k, cost
        if best is not None:
            log.debug("track %d continues lost track %d (%s)", new.id, best.id, best.account)
            new.id, new.account = best.id, best.account
            new.positions = deque([*best.positions, *new.positions])
            new.wrists = deque([*best.wrists, *new.wrists])
            new.hand_views = deque([*best.hand_views, *new.hand_views])
            new.skeletons = deque([*best.skeletons, *new.skeletons])
            best.closed = True
