"""Multi-camera tracking (runtime/tracking.py) on hand-made views: association of views into
people, track confirmation, re-linking a lost shopper, and the entry-gate rules. No pose model: the
views are what one would report."""
from __future__ import annotations

import numpy as np
import pytest

from harness.paths import store_dir
from runtime.config import TrackingConfig
from runtime.geometry import floor_point_cov, project
from runtime.store import Camera, load_store
from runtime.ticks import FrameRef
from runtime.tracking import Anchor, Observation, PersonView, WorldTracker, associate
from worlds import appearance, observation


@pytest.fixture(scope="module")
def store():
    return load_store(store_dir() / "tiny_unit.yaml")


def _view(store, cam_id: str, floor_xy, wrist=None, person: int = 0, score: float = 0.9, t: float = 0.0) -> PersonView:
    uv = None if wrist is None else project(store.camera_by_id[cam_id], np.asarray(wrist, float)[None])[0][0]
    return PersonView(FrameRef(cam_id, 0, t), np.asarray(floor_xy, float), score, [uv, None], appearance(person))


def test_views_of_one_person_from_two_cameras_are_one_observation_with_a_triangulated_wrist(store) -> None:
    wrist = np.array([2.1, 2.3, 1.0])
    obs = associate(0.0, [_view(store, "cam_01", (2.0, 1.9), wrist), _view(store, "cam_02", (2.2, 1.9), wrist)],
                    store, TrackingConfig())
    assert len(obs) == 1
    (o,) = obs
    np.testing.assert_allclose(o.xy, [2.1, 1.9])                    # equal scores: the mean
    assert len(o.wrists) == 1
    np.testing.assert_allclose(o.wrists[0], wrist, atol=1e-6)       # both rays meet at the wrist


def test_people_farther_apart_than_the_cluster_radius_are_two_and_one_camera_sees_a_person_once(store) -> None:
    cfg = TrackingConfig()
    two = associate(0.0, [_view(store, "cam_01", (1.0, 1.5)), _view(store, "cam_02", (1.0 + cfg.cluster_m + 0.1, 1.5))],
                    store, cfg)
    assert len(two) == 2
    # a second, weaker box of one camera 0.2 m from the first (< duplicate_m) is the same person
    dup = associate(0.0, [_view(store, "cam_01", (1.0, 1.5)), _view(store, "cam_01", (1.2, 1.5), score=0.5)], store, cfg)
    assert len(dup) == 1 and len(dup[0].views) == 1


def test_a_track_is_confirmed_after_min_hits_seen_by_two_cameras_and_published_once_named(store) -> None:
    tracker = WorldTracker(store)
    for i, t in enumerate((0.0, 0.2, 0.4)):
        tracker.update(t, [observation(store, t, i, (2.0, 1.5))])
    (k,) = tracker.snapshot()
    assert k.confirmed and k.id == 1
    assert tracker.active() == []                       # standing still, nobody scanned it in
    tracker.assign(1, "ann")
    assert [(a.id, a.account) for a in tracker.active()] == [(1, "ann")]
    # a person seen by one camera only is never confirmed (a static false positive of one camera)
    one = WorldTracker(store)
    for i, t in enumerate((0.0, 0.2, 0.4, 0.6, 0.8)):
        one.update(t, [observation(store, t, i, (2.0, 1.5), cams=("cam_01",))])
    assert not one.snapshot()[0].confirmed


def test_someone_stepping_in_at_the_entry_can_be_confirmed_a_tick_sooner(store) -> None:
    """With ``entry_min_hits=2`` (off by default), seen twice by two cameras, a shopper just inside
    the entry gate is a track; the same two sightings elsewhere are not yet."""
    cfg = TrackingConfig(entry_min_hits=2)
    for where, confirmed in (((0.85, 0.1), True), ((2.0, 1.5), False)):
        tracker = WorldTracker(store, cfg)
        for i, t in enumerate((0.0, 0.2)):
            tracker.update(t, [observation(store, t, i, (where[0], where[1] + 0.1 * i))])
        (k,) = tracker.snapshot()
        assert k.confirmed is confirmed, where


def test_a_faint_box_one_camera_sees_does_not_pull_a_track_off_its_shopper(store) -> None:
    """With ByteTrack's second stage on (tracking.strong_score, off by default): Ann walks past a
    faint false box (score 0.37, one camera) standing where she just was, and her track follows her
    two-camera observation 0.3 m ahead, not the nearer faint one (0.15 m)."""
    tracker = WorldTracker(store, TrackingConfig(strong_score=0.5))
    for i in range(3):
        tracker.update(0.2 * i, [observation(store, 0.2 * i, i, (1.0, 1.0 + 0.2 * i))])
    tracker.assign(1, "ann")
    ghost = PersonView(FrameRef("cam_03", 3, 0.6), np.array([1.0, 1.55]), 0.37, [None, None], appearance(0))
    tracker.update(0.6, [observation(store, 0.6, 3, (1.0, 1.7)), Observation(0.6, ghost.floor_xy, [ghost])])
    ann = tracker.track(1)
    assert ann.positions[-1][0] == 0.6
    assert abs(ann.xy[1] - 1.7) < abs(ann.xy[1] - 1.55)     # moved on with her, not onto the faint box
    assert len([k for k in tracker.snapshot() if not k.closed]) == 2   # the faint box is a track of its own


def test_a_lost_shopper_is_relinked_by_position_and_appearance(store) -> None:
    cfg = TrackingConfig()
    tracker = WorldTracker(store, cfg)
    t = 0.0
    for i in range(3):                                   # Ann walks at 0.5 m/s along x, then is lost
        t = 0.2 * i
        tracker.update(t, [observation(store, t, i, (2.0 + 0.1 * i, 1.5), person=0)])
    tracker.assign(1, "ann")
    t_back = t + cfg.lost_after_s + 0.4                  # unseen for longer than lost_after_s
    tracker.update(t + cfg.lost_after_s + 0.2, [])
    assert tracker.track(1).lost
    for i in range(3):                                   # seen again 0.6 m on, looking the same
        tb = t_back + 0.2 * i
        tracker.update(tb, [observation(store, tb, 10 + i, (2.8 + 0.1 * i, 1.5), person=0)])
    named = [k for k in tracker.snapshot() if not k.closed]
    assert [(k.id, k.account) for k in named] == [(1, "ann")]


def test_someone_dressed_otherwise_is_not_relinked(store) -> None:
    tracker = WorldTracker(store)
    for i in range(3):
        tracker.update(0.2 * i, [observation(store, 0.2 * i, i, (2.0, 1.5), person=0)])
    tracker.assign(1, "ann")
    tracker.update(1.6, [])
    for i in range(3):
        tracker.update(1.8 + 0.2 * i, [observation(store, 1.8 + 0.2 * i, 10 + i, (2.4, 1.5), person=3)])
    newest = max(tracker.snapshot(), key=lambda k: k.first_t)
    assert newest.id != 1 and newest.account is None


@pytest.mark.parametrize("rule", [True, False])
def test_someone_at_the_entry_gate_is_coming_in(store, rule: bool) -> None:
    """No jump of a track from deeper in the store onto someone who appears at the entry, and no
    re-link of a new track at the entry to a lost shopper: the gate scan will name them. Without
    the rule (entry_m=0) both would happen here."""
    cfg = TrackingConfig() if rule else TrackingConfig(entry_m=0.0)
    ann_xy, gate_xy = np.array([0.85, 1.55]), np.array([0.85, 0.5])   # 1.55 m and 0.5 m from the entry gate
    tracker = WorldTracker(store, cfg)
    for i in range(3):
        tracker.update(0.2 * i, [observation(store, 0.2 * i, i, ann_xy, person=0)])
    tracker.assign(1, "ann")
    # 1.05 m from Ann's track 0.2 s later: within the jump gate (1.0 m + 1.5 m/s · 0.2 s)
    tracker.update(0.6, [observation(store, 0.6, 3, gate_xy, person=0)])
    at_gate = [k.id for k in tracker.snapshot() if float(np.linalg.norm(k.xy - gate_xy)) < 0.4]
    assert at_gate == ([2] if rule else [1])
    if rule:   # Ann lost, the newcomer confirmed: still not Ann
        for i in range(4, 12):
            tracker.update(0.2 * i, [observation(store, 0.2 * i, i, gate_xy, person=0)])
        k2 = next(k for k in tracker.snapshot() if k.id == 2)
        assert k2.confirmed and k2.account is None
        relinking = WorldTracker(store, TrackingConfig(entry_m=0.0))   # the same, without the rule
        for i in range(3):
            relinking.update(0.2 * i, [observation(store, 0.2 * i, i, ann_xy, person=0, cams=("cam_01", "cam_02"))])
        relinking.assign(1, "ann")
        for i in range(8, 12):   # appears at the gate only after Ann's track was lost
            relinking.update(0.2 * i, [observation(store, 0.2 * i, i, gate_xy, person=0)])
        assert [(k.id, k.account) for k in relinking.snapshot() if not k.closed] == [(1, "ann")]


@pytest.mark.parametrize("apart_m", [0.3, 0.5])
def test_two_people_dressed_alike_keep_their_tracks_through_a_crossing(store, apart_m: float) -> None:
    """Ann walks along +x and Ben along −x, ``apart_m`` to her side, both at 1.2 m/s and dressed
    alike, so colour tells them nothing. While they are closer than the cluster radius the cameras
    see one person between them. Motion carries each track through: after the crossing Ann's
    track is the one still heading +x."""
    cfg = TrackingConfig()
    tracker = WorldTracker(store, cfg)
    dt, v = 0.2, 1.2
    for i in range(16):
        t = round(dt * i, 6)
        a, b = np.array([0.6 + v * t, 1.2]), np.array([3.0 - v * t, 1.2 + apart_m])
        if np.linalg.norm(a - b) < cfg.cluster_m:
            obs = [observation(store, t, i, (a + b) / 2, person=0)]
        else:
            obs = [observation(store, t, i, a, person=0), observation(store, t, i, b, person=0)]
        tracker.update(t, obs)
        if i == 3:
            ann = min(tracker.snapshot(), key=lambda k: k.xy[0]).id
            tracker.assign(ann, "ann")
            tracker.assign(max(tracker.snapshot(), key=lambda k: k.xy[0]).id, "ben")
    live = {k.account: k for k in tracker.snapshot() if not k.closed and not k.lost}
    assert set(live) == {"ann", "ben"}
    assert live["ann"].xy[0] > 2.4 and live["ben"].xy[0] < 1.2, {a: k.xy for a, k in live.items()}


def _shoulder_view(cam, person_xy, off_m: float, score: float = 0.6, cfg: TrackingConfig = TrackingConfig()) -> PersonView:
    """A camera that saw only the shoulders and cast them ``off_m`` along its ray towards itself
    (a shorter shopper than the shoulder height assumed), with the uncertainty it reports."""
    p = np.asarray(person_xy, float)
    u = np.asarray(cam.position_m[:2], float) - p
    xy = p + off_m * u / np.linalg.norm(u)
    return PersonView(FrameRef(cam.id, 0, 0.0), xy, score, [None, None], appearance(0),
                      floor_point_cov(cam, xy, cfg.shoulder_m, cfg.shoulder_sd_m, cfg.view_px, cfg.view_sd_m))


def test_far_cameras_points_along_their_rays_join_the_person_the_near_cameras_see() -> None:
    """Two cameras 3 and 6 m away see a shopper's shoulders only and place her 0.8 and 1.2 m off,
    along their rays (they agree with each other: a second person for distance alone). Counted in
    their own uncertainty they are her: one observation, where the near cameras put her."""
    cfg = TrackingConfig()
    far_a = Camera(id="cam_far_a", position_m=(4.5, 3.5, 2.9), look_at_m=(3.2, 2.8, 0.8))
    far_b = Camera(id="cam_far_b", position_m=(7.4, 3.5, 2.9), look_at_m=(5.6, 2.8, 0.8))
    her = np.array([1.1, 1.3])
    near = [PersonView(FrameRef(c, 0, 0.0), her + d, 0.8, [None, None], appearance(0))
            for c, d in (("cam_01", (0.05, 0.0)), ("cam_02", (-0.05, 0.05)))]
    views = near + [_shoulder_view(far_a, her, 0.8), _shoulder_view(far_b, her, 1.2)]
    (o,) = associate(0.0, views, None, cfg)
    assert len(o.views) == 4
    assert np.linalg.norm(o.xy - her) < 0.15                  # the near cameras outweigh the far ones
    # by distance alone (no uncertainty reported) the far ones were someone else
    bare = [PersonView(v.frame, v.floor_xy, v.score, v.wrists_uv, v.appearance) for v in views]
    assert len(associate(0.0, bare, None, cfg)) == 2


def test_a_far_cameras_point_between_two_people_joins_neither() -> None:
    """Ann and Bob stand 1.5 m apart on one far camera's ray; its point lies between them, farther
    than ``cluster_m`` from each but within its own uncertainty of both. It could be either: it
    joins neither, and neither moves."""
    cfg = TrackingConfig()
    far = Camera(id="cam_far", position_m=(7.0, 1.0, 2.9), look_at_m=(4.0, 1.0, 0.8))
    ann, bob = np.array([1.0, 1.0]), np.array([2.5, 1.0])
    views = [PersonView(FrameRef(c, 0, 0.0), p, 0.8, [None, None], appearance(i))
             for i, p in enumerate((ann, bob)) for c in ("cam_01", "cam_02")]
    views.append(_shoulder_view(far, ann, 0.75))
    obs = associate(0.0, views, None, cfg)
    assert sorted(len(o.views) for o in obs) == [1, 2, 2]
    for o in obs:
        if len(o.views) == 2:
            assert min(np.linalg.norm(o.xy - ann), np.linalg.norm(o.xy - bob)) < 1e-9


def test_two_people_shoulder_to_shoulder_keep_their_own_views(store) -> None:
    """Ann and Bob stand 0.42 m apart (closer than ``cluster_m``). cam_01 sees both, cam_02 only Ann,
    cam_03 only Bob. Grouped among themselves, cam_03's Bob joins cam_02's Ann and cam_01's Bob is
    then a second box of that group: one person. Given to the tracks they fit, camera by camera,
    each keeps their own views."""
    cfg = TrackingConfig()
    ann, bob = np.array([2.0, 1.8]), np.array([2.42, 1.8])
    views = [_view(store, "cam_02", ann + (0.03, 0.0), score=0.95, person=0),
             _view(store, "cam_03", bob - (0.04, 0.0), score=0.93, person=1),
             _view(store, "cam_01", ann - (0.02, 0.02), score=0.9, person=0),
             _view(store, "cam_01", bob + (0.05, 0.0), score=0.8, person=1)]
    assert len(associate(0.0, views, store, cfg)) == 1
    obs = associate(0.0, views, store, cfg, anchors=[Anchor(7, ann, appearance(0)), Anchor(9, bob, appearance(1))])
    assert sorted((o.track_id, sorted(v.camera_id for v in o.views)) for o in obs) == [
        (7, ["cam_01", "cam_02"]), (9, ["cam_01", "cam_03"])]
    # the tracker keeps both, each where they stand; without the anchors one track went unseen
    for anchored in (True, False):
        tracker = WorldTracker(store, cfg)
        for i, t in enumerate((0.0, 0.1, 0.2)):
            tracker.update(t, [observation(store, t, i, ann, person=0), observation(store, t, i, bob, person=1)])
        assert len(tracker.anchors(0.3)) == 2
        tracker.update(0.3, associate(0.3, views, store, cfg, tracker.anchors(0.3) if anchored else ()))
        seen = [k for k in tracker.snapshot() if k.t == 0.3]
        assert len(seen) == (2 if anchored else 1)
        if anchored:
            for k, p in zip(sorted(seen, key=lambda k: k.xy[0]), (ann, bob)):
                assert np.linalg.norm(k.xy - p) < 0.05


def test_a_view_far_from_every_track_is_left_to_make_a_new_one(store) -> None:
    cfg = TrackingConfig()
    far = [_view(store, "cam_01", (1.0, 1.0)), _view(store, "cam_02", (1.05, 1.0))]
    obs = associate(0.0, far, store, cfg, anchors=[Anchor(3, np.array([1.0 + cfg.anchor_m + 0.3, 1.0]), None)])
    assert [(o.track_id, len(o.views)) for o in obs] == [(None, 2)]


@pytest.mark.parametrize("gate", [True, False])
def test_a_passer_by_does_not_drag_the_track_of_someone_standing_unseen(store, gate: bool) -> None:
    """Ann stands at a shelf; Bob, dressed otherwise, walks past 0.3 m from her while no camera sees
    her (he hides her). His views fit her track by place, not by look: they make a track of his
    own and hers stays where she stands. With every look allowed (``anchor_appearance`` above 1)
    her track went with him."""
    from dataclasses import replace
    cfg = TrackingConfig() if gate else replace(TrackingConfig(), anchor_appearance=1.01)
    tracker = WorldTracker(store, cfg)
    ann = np.array([2.0, 1.8])
    for i, t in enumerate((0.0, 0.1, 0.2, 0.3)):
        tracker.update(t, associate(t, observation(store, t, i, ann).views, store, cfg, tracker.anchors(t)))
    (her,) = tracker.snapshot()
    for i in range(4, 9):
        t = round(0.1 * i, 6)
        bob = ann + (0.3, -0.3 + 0.12 * (i - 4))
        views = observation(store, t, i, bob, person=3).views
        tracker.update(t, associate(t, views, store, cfg, tracker.anchors(t)))
    k = tracker.track(her.id)
    assert (np.linalg.norm(k.xy - ann) < 0.05) == gate, k.xy


def test_views_are_weighed_against_every_track_at_once_as_pair_by_pair():
    """_anchor_views weighs each camera's views against all tracks in one go; the distances must be
    the pairwise _apart and appearance_distance."""
    from runtime.tracking import _apart, _apart_many, _appearance_many, _cov, appearance_distance

    rng = np.random.default_rng(5)
    cfg = TrackingConfig()
    views = []
    for _ in range(6):
        a = rng.normal(0, 0.3, (2, 2))
        views.append(PersonView(None, rng.uniform(0, 6, 2), 0.9, [None, None], rng.random(64).astype(np.float32),
                                a @ a.T + 0.01 * np.eye(2)))
    views.append(PersonView(None, np.array([1.0, 1.0]), 0.9, [None, None], rng.random(64).astype(np.float32)))  # no cov
    xy, pred = rng.uniform(0, 6, (4, 2)), cfg.anchor_sd_m ** 2 * np.eye(2)
    pairwise = [[_apart(v.floor_xy, _cov(v, cfg), p, pred, cfg) for p in xy] for v in views]
    np.testing.assert_allclose(_apart_many(views, xy, pred, cfg), pairwise, rtol=1e-9, atol=1e-12)
    looks = [rng.random(64).astype(np.float32) for _ in range(3)] + [None]
    pairwise = [[appearance_distance(v.appearance, k) if k is not None else 0.0 for k in looks] for v in views]
    np.testing.assert_allclose(_appearance_many([v.appearance for v in views], looks), pairwise, atol=1e-6)


def test_the_skeleton_is_triangulated_from_the_two_surest_views_and_published_with_the_track(store) -> None:
    from runtime.pipeline import skeleton_now

    rng = np.random.default_rng(3)
    joints = np.column_stack([2.0 + rng.uniform(-0.3, 0.3, 17), 1.9 + rng.uniform(-0.2, 0.2, 17),
                              rng.uniform(0.05, 1.7, 17)])

    def view(cam_id: str, score: float, lost: tuple = ()) -> PersonView:
        uv = project(store.camera_by_id[cam_id], joints)[0]
        kp = np.column_stack([uv, np.full(17, 0.9)])
        kp[list(lost), 2] = 0.1                            # joints this camera did not see
        v = _view(store, cam_id, (2.0, 1.9), score=score)
        v.keypoints = kp
        return v

    (o,) = associate(0.0, [view("cam_01", 0.9, lost=(3,)), view("cam_02", 0.8)], store, TrackingConfig())
    assert o.skeleton is not None and o.skeleton.shape == (17, 3)
    seen = [i for i in range(17) if i != 3]
    np.testing.assert_allclose(o.skeleton[seen], joints[seen], atol=1e-6)
    assert np.isnan(o.skeleton[3]).all(), "a joint one of the two views missed is not made up"
    far = joints.copy()
    joints[10] = [3.4, 1.9, 1.0]                           # a wrist 1.4 m from the body: a wrong pairing
    (o2,) = associate(0.0, [view("cam_01", 0.9), view("cam_02", 0.8)], store, TrackingConfig())
    assert np.isnan(o2.skeleton[10]).all() and not np.isnan(o2.skeleton[9]).any(), "a joint out of reach is left out"
    joints[:] = far
    (one,) = associate(0.0, [view("cam_01", 0.9)], store, TrackingConfig())
    assert one.skeleton is None, "one camera gives no skeleton"

    tracker = WorldTracker(store, TrackingConfig(min_hits=1))
    tracker.update(0.0, [o])
    (k,) = tracker.snapshot()
    shown = skeleton_now(k, 0.0)
    assert len(shown) == 17 and shown[3] is None
    np.testing.assert_allclose(shown[0], joints[0], atol=1e-3)
    assert skeleton_now(k, 0.2) == (), "a tick without a skeleton publishes none"
