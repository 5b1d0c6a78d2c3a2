"""The skinned shopper bodies (twin/people.py): proportions, skin on the skeleton, looks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from twin.bodies import BodyPose, sample_shape, solve_skeleton
from twin.people import body_mesh, library, shadow_mesh, skinned_body


@pytest.fixture(scope="module")
def shapes():
    rng = np.random.default_rng(7)
    return [sample_shape(rng) for _ in range(12)]


def _mesh(shape, **pose):
    skel = solve_skeleton(shape, BodyPose(x=1.0, y=2.0, heading_rad=0.7, **pose))
    V, N, C = body_mesh(shape, skel)
    return skel, V, N, C


def test_the_library_holds_bodies_of_every_sex_age_and_weight():
    lib = library()
    assert lib.vertices.shape[0] == 27 and lib.vertices.shape[2] == 3
    for col in range(3):
        assert len(np.unique(lib.phenotype[:, col])) == 3
    assert np.allclose(lib.seg_weight.sum(axis=1), 1.0, atol=1e-5)
    assert lib.faces.max() < lib.vertices.shape[1]


def test_a_standing_body_is_its_height_with_its_feet_on_the_floor(shapes):
    for shape in shapes:
        _, V, _, _ = _mesh(shape)
        assert abs(V[:, 2].max() - shape.height_m) < 0.06 * shape.height_m, (V[:, 2].max(), shape.height_m)
        assert -0.02 < V[:, 2].min() < 0.05


def test_the_skin_lies_on_the_keypoints(shapes):
    """Every limb keypoint of the skeleton is inside the body's surface, or within 4 cm of it."""
    for shape in shapes:
        for pose in ({}, {"walk_phase": 1.3, "walk_amount": 1.0},
                     {"right_hand_target": np.array([1.5, 2.5, 1.3])}):
            skel, V, _, _ = _mesh(shape, **pose)
            for k in range(5, 17):
                d = np.linalg.norm(V - skel.keypoints[k], axis=1).min()
                assert d < 0.09 * shape.height_m, (k, d)
        # a reaching hand reaches: the skin's farthest point along the arm is beyond the wrist
        wrist = skel.keypoints[10]
        assert np.linalg.norm(V - wrist, axis=1).min() < 0.05


def test_a_shape_always_wears_the_same_and_shapes_differ(shapes):
    a = _mesh(shapes[0])[3]
    assert np.array_equal(a, _mesh(shapes[0])[3])
    looks = {skinned_body(s).rgba.tobytes() for s in shapes}
    assert len(looks) == len(shapes)
    # the top's colour is worn: some faces are the shape's top colour exactly
    for s in shapes:
        rgba = skinned_body(s).rgba[:, :3]
        assert (rgba == np.array(s.top_rgb)).all(axis=1).mean() > 0.05
        assert (rgba == np.array(s.skin_rgb)).all(axis=1).any()


def test_normals_point_out_of_the_trunk(shapes):
    skel, V, N, _ = _mesh(shapes[1])
    centre = (skel.joints["pelvis"] + skel.joints["neck"]) / 2
    trunk = np.abs(V[:, 2] - centre[2]) < 0.1
    radial = V[trunk, :2] - centre[:2]
    assert ((radial * N[trunk, :2]).sum(axis=1) > 0).mean() > 0.8


def test_the_shadow_lies_flat_under_the_body(shapes):
    skel, V, _, _ = _mesh(shapes[2])
    sv, sf = shadow_mesh(V)
    assert np.allclose(sv[:, 2], sv[0, 2]) and 0 < sv[0, 2] < 0.01
    feet = (skel.joints["left_ankle"][:2] + skel.joints["right_ankle"][:2]) / 2
    assert math.dist(sv[0, :2], feet) < 0.25
    assert sf.max() < len(sv)


def test_hands_close_round_what_they_hold(shapes):
    """A closed hand: only that hand's skin moves, its fingertips come back towards the wrist and,
    with the arm hanging, curl in towards the body (palms face the thighs)."""
    for shape in shapes[:6]:
        skel = solve_skeleton(shape, BodyPose(x=1.0, y=2.0, heading_rad=0.7))
        V0, _, _ = body_mesh(shape, skel)
        for grip, hand in (((True, False), "left_hand"), ((False, True), "right_hand")):
            V1, _, _ = body_mesh(shape, skel, grip)
            moved = np.linalg.norm(V1 - V0, axis=1) > 1e-6
            wrist = skel.joints["left_wrist" if hand == "left_hand" else "right_wrist"]
            assert moved.any() and np.linalg.norm(V0[moved] - wrist, axis=1).max() < 0.25, hand
            reach0 = np.linalg.norm(V0[moved] - wrist, axis=1).max()
            reach1 = np.linalg.norm(V1[moved] - wrist, axis=1).max()
            assert reach1 < 0.85 * reach0, (hand, reach0, reach1)
            mid = skel.joints["pelvis"][:2] - skel.joints[hand][:2]
            assert np.mean((V1[moved] - V0[moved])[:, :2] @ mid) > 0, hand
