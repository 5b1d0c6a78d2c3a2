"""The shopper body: keypoints on the posed meshes, arm IK, shapes and colours."""
from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from twin.bodies import (
    COCO_KEYPOINTS, COCO_SKELETON, COLOURS, SEGMENT_NAMES, BodyPose, BodyShape, body_segments,
    reach_error_m, sample_shape, segment_poses, solve_skeleton,
)

KP = {n: i for i, n in enumerate(COCO_KEYPOINTS)}


def _shape(height_m: float = 1.75, build: float = 1.0) -> BodyShape:
    return sample_shape(np.random.default_rng(0), {"height_m": height_m, "build": build})


def _ahead(pose: BodyPose, fwd_m: float, z_m: float, left_m: float = 0.0) -> np.ndarray:
    """World point fwd_m ahead of the body root (and left_m to its left) at height z_m."""
    c, s = math.cos(pose.heading_rad), math.sin(pose.heading_rad)
    return np.array([pose.x + fwd_m * c - left_m * s, pose.y + fwd_m * s + left_m * c, z_m])


def _posed(shape: BodyShape, pose: BodyPose) -> list[trimesh.Trimesh]:
    skel = solve_skeleton(shape, pose)
    out = []
    for seg, T in zip(body_segments(shape), segment_poses(shape, skel)):
        m = seg.mesh.copy()
        m.apply_transform(T)
        out.append(m)
    return out


def _winding(mesh: trimesh.Trimesh, pts: np.ndarray) -> np.ndarray:
    """Generalised winding number (≈1 inside a closed mesh, ≈0 outside), no spatial index needed."""
    tri = mesh.triangles[None, :, :, :] - pts[:, None, None, :]          # P×F×3×3
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    la, lb, lc = (np.linalg.norm(v, axis=-1) for v in (a, b, c))
    det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    den = (la * lb * lc + np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", a, c) * lb
           + np.einsum("pfi,pfi->pf", b, c) * la)
    return 2.0 * np.arctan2(det, den).sum(axis=1) / (4 * math.pi)


def _distance_to_union(meshes: list[trimesh.Trimesh], pts: np.ndarray) -> np.ndarray:
    """Per point: 0 inside any mesh, else the distance to the nearest mesh surface (m)."""
    best = np.full(len(pts), np.inf)
    for m in meshes:
        inside = np.abs(_winding(m, pts)) > 0.5
        tri = np.repeat(m.triangles[None], len(pts), axis=0).reshape(-1, 3, 3)
        q = np.repeat(pts, len(m.faces), axis=0)
        d = np.linalg.norm(trimesh.triangles.closest_point(tri, q) - q, axis=1).reshape(len(pts), -1).min(axis=1)
        best = np.minimum(best, np.where(inside, 0.0, d))
    return best


POSES = {
    "standing": lambda: BodyPose(0.4, -1.2, 0.3),
    "walking": lambda: BodyPose(2.0, 1.0, 2.5, walk_phase=1.1, walk_amount=1.0),
    "walking_swing": lambda: BodyPose(2.0, 1.0, -1.0, walk_phase=0.0, walk_amount=0.7),
    "reaching": lambda: BodyPose(0.0, 0.0, math.pi / 2, right_hand_target=np.array([0.0, 0.55, 1.2])),
    "reaching_low": lambda: BodyPose(1.0, 0.0, 0.0, right_hand_target=np.array([1.5, 0.0, 0.3]), lean=0.3),
    "reaching_floor": lambda: BodyPose(1.0, 0.0, 0.0, left_hand_target=np.array([1.5, 0.05, 0.1])),
    "reaching_high": lambda: BodyPose(1.0, 0.0, math.pi, right_hand_target=np.array([0.5, 0.0, 1.8])),
    "both_hands": lambda: BodyPose(0.0, 0.0, 1.0, left_hand_target=np.array([0.3, 0.4, 1.0]),
                                   right_hand_target=np.array([0.45, 0.2, 1.0])),
}


@pytest.mark.parametrize("name", sorted(POSES))
@pytest.mark.parametrize("height_m,build", [(1.75, 1.0), (1.52, 0.86), (1.93, 1.24)])
def test_keypoints_lie_on_posed_body(name: str, height_m: float, build: float) -> None:
    shape, pose = _shape(height_m, build), POSES[name]()
    skel = solve_skeleton(shape, pose)
    d = _distance_to_union(_posed(shape, pose), skel.keypoints)
    far = {COCO_KEYPOINTS[i]: round(float(d[i]), 3) for i in np.flatnonzero(d > 0.03)}
    assert not far, f"keypoints more than 3 cm off the body: {far}"


def test_face_keypoints_on_head_surface_facing_heading() -> None:
    shape = _shape()
    pose = BodyPose(1.0, 2.0, 2.0)
    skel = solve_skeleton(shape, pose)
    head = _posed(shape, pose)[SEGMENT_NAMES.index("head")]
    face = skel.keypoints[:5]
    on = np.linalg.norm(trimesh.triangles.closest_point(
        np.repeat(head.triangles[None], 5, 0).reshape(-1, 3, 3), np.repeat(face, len(head.faces), 0))
        - np.repeat(face, len(head.faces), 0), axis=1).reshape(5, -1).min(axis=1)
    assert np.all(on < 0.01)
    fwd = np.array([math.cos(2.0), math.sin(2.0), 0.0])
    left = np.array([-math.sin(2.0), math.cos(2.0), 0.0])
    rel = face - skel.joints["head"]
    assert rel[KP["nose"]] @ fwd > 0.05
    assert rel[KP["left_eye"]] @ fwd > 0.04 and rel[KP["right_eye"]] @ fwd > 0.04
    assert rel[KP["left_eye"]] @ left > 0.01 > -0.01 > rel[KP["right_eye"]] @ left
    assert rel[KP["left_ear"]] @ left > 0.05 and rel[KP["right_ear"]] @ left < -0.05


def test_wrist_is_at_forearm_end_and_limbs_follow_bones() -> None:
    shape = _shape()
    pose = POSES["reaching_low"]()
    skel = solve_skeleton(shape, pose)
    T = dict(zip(SEGMENT_NAMES, segment_poses(shape, skel)))
    for side in ("left", "right"):
        for seg, a, b, length in (("upper_arm", "shoulder", "elbow", shape.upper_arm_m),
                                  ("forearm", "elbow", "wrist", shape.forearm_m),
                                  ("thigh", "hip", "knee", shape.thigh_m), ("shin", "knee", "ankle", shape.shin_m)):
            M = T[f"{side}_{seg}"]
            np.testing.assert_allclose(M[:3, 3], skel.joints[f"{side}_{a}"], atol=1e-9)
            np.testing.assert_allclose(M[:3, :3] @ [0, 0, length] + M[:3, 3], skel.joints[f"{side}_{b}"], atol=1e-6)
            np.testing.assert_allclose(M[:3, :3].T @ M[:3, :3], np.eye(3), atol=1e-9)
    np.testing.assert_allclose(skel.keypoints[KP["right_wrist"]], skel.joints["right_wrist"])


@pytest.mark.parametrize("height_m", [1.55, 1.75, 1.93])
@pytest.mark.parametrize("heading", [0.0, 2.3])
def test_ik_reaches_bins_in_reach(height_m: float, heading: float) -> None:
    shape = _shape(height_m)
    base = BodyPose(0.7, -0.3, heading)
    for side in ("left", "right"):
        for fwd_m, z_m in ((0.55, 1.2), (0.5, 0.3), (0.5, 0.1), (0.45, 1.6)):
            pose = BodyPose(base.x, base.y, heading, **{f"{side}_hand_target": _ahead(base, fwd_m, z_m)})
            err = reach_error_m(shape, pose, solve_skeleton(shape, pose))
            assert set(err) == {side}
            assert err[side] < 0.02, (side, fwd_m, z_m, err)


def test_tall_shopper_reaches_top_bin() -> None:
    shape = _shape(1.80)
    pose = BodyPose(0.0, 0.0, 0.0, right_hand_target=np.array([0.5, -0.1, 1.8]))
    assert reach_error_m(shape, pose, solve_skeleton(shape, pose))["right"] < 0.02


def test_out_of_reach_target_is_approached_along_the_line() -> None:
    shape = _shape()
    target = np.array([3.0, -1.0, 1.4])
    pose = BodyPose(0.0, 0.0, 0.0, right_hand_target=target)
    skel = solve_skeleton(shape, pose)
    s, w = skel.joints["right_shoulder"], skel.joints["right_wrist"]
    np.testing.assert_allclose(np.linalg.norm(w - s), shape.arm_reach_m, rtol=1e-9)
    u, v = (w - s) / np.linalg.norm(w - s), (target - s) / np.linalg.norm(target - s)
    assert u @ v > 1 - 1e-9


def test_elbow_bends_down_and_out() -> None:
    shape = _shape()
    pose = BodyPose(0.0, 0.0, 0.0, right_hand_target=np.array([0.4, -0.15, 1.25]))
    skel = solve_skeleton(shape, pose)
    s, e, w = (skel.joints[f"right_{j}"] for j in ("shoulder", "elbow", "wrist"))
    mid = (s + w) / 2
    assert e[2] < mid[2] and e[1] < mid[1]      # below the shoulder→wrist line and to the body's right


def test_right_target_does_not_move_left_arm() -> None:
    shape = _shape()
    free = solve_skeleton(shape, BodyPose(0.0, 0.0, 0.5))
    near = BodyPose(0.0, 0.0, 0.5, right_hand_target=free.joints["right_shoulder"] + [0.25, 0.1, -0.2])
    skel = solve_skeleton(shape, near)
    assert reach_error_m(shape, near, skel)["right"] < 1e-6
    np.testing.assert_array_equal(skel.keypoints[KP["left_wrist"]], free.keypoints[KP["left_wrist"]])
    # A far-low target bends the body, but the free arm keeps hanging the same way from its shoulder.
    low = BodyPose(0.0, 0.0, 0.5, right_hand_target=_ahead(near, 0.5, 0.3))
    bent = solve_skeleton(shape, low)
    assert reach_error_m(shape, low, bent)["right"] < 0.02
    np.testing.assert_allclose(bent.joints["left_wrist"] - bent.joints["left_shoulder"],
                               free.joints["left_wrist"] - free.joints["left_shoulder"], atol=1e-12)


@pytest.mark.parametrize("name", ["standing", "walking", "reaching_low", "reaching_floor", "reaching_high"])
def test_feet_on_the_floor(name: str) -> None:
    shape = _shape()
    meshes = _posed(shape, POSES[name]())
    low_z = min(float(m.vertices[:, 2].min()) for m in meshes)
    assert -0.005 < low_z < 0.005


def test_standing_proportions() -> None:
    shape = _shape(1.80)
    skel = solve_skeleton(shape, BodyPose(0.0, 0.0, 0.0))
    top = max(float(m.vertices[:, 2].max()) for m in _posed(shape, BodyPose(0.0, 0.0, 0.0)))
    assert 1.78 < top < 1.84
    assert 0.8 * 1.80 < skel.keypoints[KP["left_shoulder"], 2] < 0.84 * 1.80
    # Heading 0 faces +x, so the body's left is +y.
    assert skel.keypoints[KP["left_shoulder"], 1] > 0 > skel.keypoints[KP["right_shoulder"], 1]


def test_segments_low_poly_and_coloured_by_clothing() -> None:
    shape = sample_shape(np.random.default_rng(3), {"top": "red", "bottom": "navy"})
    segs = body_segments(shape)
    assert [s.name for s in segs] == list(SEGMENT_NAMES)
    assert len(segment_poses(shape, solve_skeleton(shape, BodyPose(0, 0, 0)))) == len(segs)
    rgb = {s.name: s.rgb for s in segs}
    for s in segs:
        assert len(s.mesh.faces) <= 200 and s.mesh.is_watertight
    assert rgb["torso"] == rgb["left_upper_arm"] == COLOURS["red"]
    assert rgb["pelvis"] == rgb["left_thigh"] == rgb["right_shin"] == COLOURS["navy"]
    assert rgb["head"] == rgb["left_forearm"] == rgb["right_hand"] == shape.skin_rgb
    assert rgb["hair"] == shape.hair_rgb


def test_coco_tables() -> None:
    assert len(COCO_KEYPOINTS) == 17 and COCO_KEYPOINTS[0] == "nose" and COCO_KEYPOINTS[16] == "right_ankle"
    assert all(0 <= a < 17 and 0 <= b < 17 and a != b for a, b in COCO_SKELETON)


def test_sample_shape_deterministic_and_plausible() -> None:
    a = sample_shape(np.random.default_rng(42))
    b = sample_shape(np.random.default_rng(42))
    assert a == b
    shapes = [sample_shape(np.random.default_rng(s)) for s in range(200)]
    assert len({s.height_m for s in shapes}) > 150
    assert all(1.50 <= s.height_m <= 1.95 and 0.85 <= s.build <= 1.25 for s in shapes)


def test_appearance_overrides() -> None:
    plain = sample_shape(np.random.default_rng(7))
    s = sample_shape(np.random.default_rng(7), {"height_m": 1.62, "build": 1.2, "top": "Teal", "bottom": "#102030"})
    assert s.height_m == 1.62 and s.build == 1.2
    assert s.top_rgb == COLOURS["teal"] and s.bottom_rgb == (0x10, 0x20, 0x30)
    assert (s.skin_rgb, s.hair_rgb) == (plain.skin_rgb, plain.hair_rgb)   # other draws unchanged


def test_unknown_colour_name_raises() -> None:
    with pytest.raises(ValueError, match="chartreuse"):
        sample_shape(np.random.default_rng(0), {"top": "chartreuse"})
    with pytest.raises(ValueError, match="appearance"):
        sample_shape(np.random.default_rng(0), {"colour": "red"})
