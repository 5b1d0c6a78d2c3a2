"""Camera geometry (runtime/geometry.py) and the geometry of the store's own types (runtime/store.py),
on tiny_unit and on a hand-placed camera, with expected values a reader can work out on paper.

tiny_unit's one unit U stands at (2.0, 2.8), turned 180° (its front faces −y), 1.0 m wide, 0.4 m
deep, 1.2 m tall; so its local x runs along world −x and its front face is the plane y = 2.8 − 0.2
= 2.6. Shelf levels at z 0.10 and 0.60; 2 bins of 0.5 m each:
U/0/0: local x −0.5…0 → world x 2.5…2.0, z 0.10…0.60 − 0.02 (shelf thickness) = 0.58;
U/1/0: the same x, z 0.60…1.2 (the unit's top).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from harness.paths import store_dir
from runtime.geometry import pixel_to_floor, project, triangulate
from runtime.store import Bin, Camera, parse_store


@pytest.fixture(scope="module")
def store_data() -> dict:
    return yaml.safe_load((store_dir() / "tiny_unit.yaml").read_text())


@pytest.fixture(scope="module")
def store(store_data):
    return parse_store(store_data, "tiny_unit")


def _level_camera() -> Camera:
    """A camera 1 m above the floor at the origin, looking along +x: f = (64 / 2) / tan(90° / 2) = 32
    px, principal point ((64 − 1) / 2, (48 − 1) / 2) = (31.5, 23.5); image right is world −y, image
    down is world −z."""
    return Camera(id="level", position_m=(0.0, 0.0, 1.0), look_at_m=(1.0, 0.0, 1.0), resolution=(64, 48), hfov_deg=90)


# -- projection and rays ---------------------------------------------------------------------------

def test_project_a_point_by_hand() -> None:
    cam = _level_camera()
    # (2, 0, 0): 2 m ahead, 1 m below the eye → normalised (0, 1 / 2) → pixel (31.5, 23.5 + 32 · 0.5)
    # (2, −1, 0): also 1 m to the right → normalised (1 / 2, 1 / 2) → pixel (31.5 + 16, 39.5)
    uv, depth = project(cam, np.array([[2.0, 0.0, 0.0], [2.0, -1.0, 0.0]]))
    np.testing.assert_allclose(uv, [[31.5, 39.5], [47.5, 39.5]], atol=1e-9)
    np.testing.assert_allclose(depth, [2.0, 2.0])


def test_pixel_to_floor_by_hand() -> None:
    cam = _level_camera()
    # pixel (31.5, 39.5) looks along (1, 0, −1/2): it meets z = 0 after 2 m along x.
    # pixel (31.5, 23.5) looks level and (31.5, 7.5) up: neither meets the floor in front.
    pts = pixel_to_floor(cam, np.array([[31.5, 39.5], [47.5, 39.5], [31.5, 23.5], [31.5, 7.5]]))
    np.testing.assert_allclose(pts[:2], [[2.0, 0.0, 0.0], [2.0, -1.0, 0.0]], atol=1e-9)
    assert np.isnan(pts[2:]).all()


def test_a_fisheye_projects_by_the_equidistant_model_by_hand() -> None:
    """A fisheye straight down from 3 m, 100° across 400 px (f = 200 / 50° in radians = 229.2 px):
    a floor point 3 m to the side is 45° off the axis, r = f·θ = 180 px from the centre (a pinhole
    of that focal length would put it at f·tan 45° = 229 px); and the floor point back again."""
    cam = Camera(id="f", position_m=(0.0, 0.0, 3.0), look_at_m=(0.0, 0.0, 0.0), resolution=(400, 300),
                 hfov_deg=100.0, lens="fisheye")
    f = 200 / math.radians(50)
    assert cam.K[0, 0] == pytest.approx(f)
    uv, z = project(cam, np.array([[3.0, 0.0, 0.0]]))
    assert np.hypot(*(uv[0] - cam.K[:2, 2])) == pytest.approx(f * math.pi / 4)
    assert z[0] == pytest.approx(3.0)
    assert pixel_to_floor(cam, uv)[0] == pytest.approx([3.0, 0.0, 0.0], abs=1e-9)


def test_pixel_to_floor_inverts_project_through_a_distorted_fisheye() -> None:
    cam = Camera(id="f", position_m=(2.0, 2.0, 3.0), look_at_m=(2.5, 2.5, 0.0), resolution=(640, 480),
                 hfov_deg=120.0, lens="fisheye", distortion=(0.03, -0.01, 0.002, 0.0, 0.0))
    pts = np.random.default_rng(0).uniform([0, 0, 0], [6, 6, 0], (300, 3))
    uv, z = project(cam, pts)
    keep = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 640) & (uv[:, 1] >= 0) & (uv[:, 1] < 480)
    assert keep.sum() > 100
    assert pixel_to_floor(cam, uv[keep]) == pytest.approx(pts[keep], abs=1e-6)


def test_pixel_to_floor_inverts_project_on_tiny_unit(store) -> None:
    floor_pts = np.array([[2.0, 1.5, 0.0], [1.0, 0.5, 0.0], [3.2, 2.0, 0.0]])
    for cam in store.cameras:
        uv, depth = project(cam, floor_pts)
        assert (depth > 0).all()
        np.testing.assert_allclose(pixel_to_floor(cam, uv), floor_pts, atol=1e-6)
    # any horizontal plane, e.g. the upper shelf's: z = 0.6
    cam = store.camera_by_id["cam_01"]
    shelf_pt = np.array([[2.25, 2.5, 0.6]])
    uv, _ = project(cam, shelf_pt)
    np.testing.assert_allclose(pixel_to_floor(cam, uv, z_plane=0.6), shelf_pt, atol=1e-6)


def test_triangulate_a_projected_point(store) -> None:
    a, b = store.camera_by_id["cam_01"], store.camera_by_id["cam_02"]
    for p in ([2.0, 2.3, 1.0], [2.25, 2.55, 0.34], [1.6, 2.0, 1.5]):
        uv_a, _ = project(a, np.array([p]))
        uv_b, _ = project(b, np.array([p]))
        point, gap_m = triangulate(a, uv_a[0], b, uv_b[0])
        np.testing.assert_allclose(point, p, atol=1e-6)
        assert gap_m == pytest.approx(0.0, abs=1e-6)


def test_pixels_of_two_different_points_leave_a_gap(store) -> None:
    a, b = store.camera_by_id["cam_01"], store.camera_by_id["cam_02"]
    p, q = np.array([2.0, 2.3, 1.0]), np.array([2.0, 2.3, 1.2])
    uv_a, _ = project(a, p[None])
    uv_b, _ = project(b, q[None])
    point, gap_m = triangulate(a, uv_a[0], b, uv_b[0])
    # The rays miss each other (q is off the plane of both eyes and p); p on one ray and q on the other
    # are 0.2 m apart, so the shortest segment between the rays is no longer than that.
    assert 0.0 < gap_m <= 0.2 + 1e-9
    assert np.isfinite(point).all()


def test_rays_that_meet_only_behind_the_cameras_give_nan_and_inf(store) -> None:
    a, b = store.camera_by_id["cam_01"], store.camera_by_id["cam_02"]   # eyes at x = 1.2 and x = 2.8
    # cam_01 looks out to the left (x = 0.2), cam_02 to the right (x = 3.8): mirror images of each
    # other about x = 2, the two rays meet only behind both eyes, at x = 2.
    uv_a, depth_a = project(a, np.array([[0.2, 2.6, 0.6]]))
    uv_b, depth_b = project(b, np.array([[3.8, 2.6, 0.6]]))
    assert depth_a[0] > 0 and depth_b[0] > 0
    point, gap_m = triangulate(a, uv_a[0], b, uv_b[0])
    assert np.isnan(point).all()
    assert gap_m == math.inf


def test_one_camera_with_itself_cannot_triangulate(store) -> None:
    a = store.camera_by_id["cam_01"]
    uv, _ = project(a, np.array([[2.0, 2.3, 1.0]]))
    point, gap_m = triangulate(a, uv[0], a, uv[0])   # one ray twice: parallel
    assert np.isnan(point).all() and gap_m == math.inf


# -- bins --------------------------------------------------------------------------------------------

def test_the_bins_of_tiny_unit(store) -> None:
    b = store.bins["U/0/0"]
    assert (b.x0, b.x1) == (-0.5, 0.0)
    assert (b.z0, b.z1) == pytest.approx((0.10, 0.60 - 0.02))
    assert store.bins["U/1/0"].z1 == pytest.approx(1.2)
    np.testing.assert_allclose(b.centre_world(), [2.0 + 0.25, 2.8, (0.10 + 0.58) / 2], atol=1e-12)


def test_bin_distance_to(store) -> None:
    b = store.bins["U/0/0"]   # world x 2.0…2.5, y 2.6 (front)…3.0 (back), z 0.10…0.58
    assert b.distance_to(b.centre_world()) == 0.0
    # the lip: out of the front face (y = 2.6) by up to Bin.LIP_M still counts as in the bin
    assert Bin.LIP_M == 0.05
    assert b.distance_to(np.array([2.25, 2.6 - 0.05, 0.34])) == pytest.approx(0.0, abs=1e-12)
    assert b.distance_to(np.array([2.25, 2.6 - 0.05 - 0.1, 0.34])) == pytest.approx(0.1)
    # 0.3 m above the top of the bin, and 0.3 m beside it (world x 2.5 + 0.3)
    assert b.distance_to(np.array([2.25, 2.8, b.z1 + 0.3])) == pytest.approx(0.3)
    assert b.distance_to(np.array([2.5 + 0.3, 2.8, 0.34])) == pytest.approx(0.3)
    # off a corner: 0.3 m along x and 0.4 m along z → √(0.3² + 0.4²) = 0.5
    assert b.distance_to(np.array([2.0 - 0.3, 2.8, 0.10 - 0.4])) == pytest.approx(0.5)
    # the neighbouring bin is 0.25 m from this one's middle: the bins split at x = 2.0
    assert store.bins["U/0/1"].distance_to(b.centre_world()) == pytest.approx(0.25)


def test_bin_front_xy_is_on_the_front_face_midway_along_the_bin(store) -> None:
    np.testing.assert_allclose(store.bins["U/0/0"].front_xy(), [(2.5 + 2.0) / 2, 2.6], atol=1e-12)
    np.testing.assert_allclose(store.bins["U/0/1"].front_xy(), [(2.0 + 1.5) / 2, 2.6], atol=1e-12)
    np.testing.assert_allclose(store.bins["U/1/1"].front_xy(), [(2.0 + 1.5) / 2, 2.6], atol=1e-12)


def test_bin_front_corners_world(store) -> None:
    corners = store.bins["U/0/0"].front_corners_world()
    assert corners.shape == (4, 3)
    np.testing.assert_allclose(corners[:, 1], 2.6, atol=1e-12)   # all on the front face
    got = sorted((round(x, 9), round(z, 9)) for x, _, z in corners)
    assert got == sorted([(2.0, 0.1), (2.0, 0.58), (2.5, 0.1), (2.5, 0.58)])


def test_shelf_unit_distance_to(store) -> None:
    u = store.unit_by_id["U"]   # world x 1.5…2.5, y 2.6…3.0, z 0…1.2
    assert u.distance_to(np.array([2.0, 2.8, 0.6])) == 0.0
    assert u.distance_to(np.array([2.0, 2.0, 0.6])) == pytest.approx(2.6 - 2.0)
    assert u.distance_to(np.array([3.0, 2.8, 0.6])) == pytest.approx(3.0 - 2.5)
    assert u.distance_to(np.array([2.0, 2.8, 1.5])) == pytest.approx(1.5 - 1.2)
    # off the front-left top edge: 0.3 m in front and 0.4 m above → 0.5
    assert u.distance_to(np.array([2.0, 2.6 - 0.3, 1.2 + 0.4])) == pytest.approx(0.5)


def test_a_unit_turned_90_degrees() -> None:
    data = yaml.safe_load((store_dir() / "tiny_unit.yaml").read_text())
    # the unit against the left wall (x = 0) facing +x: local +y (front) turns to world +x
    data["units"][0].update(position_m=[0.2, 1.5], yaw_deg=-90)
    store = parse_store(data, "turned")
    np.testing.assert_allclose(store.unit_by_id["U"].front_normal(), [1.0, 0.0], atol=1e-12)
    b = store.bins["U/0/0"]   # local x −0.5…0 → world y (yaw −90°: local x → world −y) 1.5…2.0
    np.testing.assert_allclose(b.front_xy(), [0.2 + 0.2, 1.5 + 0.25], atol=1e-12)
    assert b.distance_to(np.array([0.4 + 0.05, 1.75, 0.3])) == pytest.approx(0.0, abs=1e-12)   # on the lip
    assert b.distance_to(np.array([0.4 + 0.05 + 0.2, 1.75, 0.3])) == pytest.approx(0.2)


# -- gates -------------------------------------------------------------------------------------------

def test_gate_distance_to(store) -> None:
    g = store.gate_by_id("gate_in")   # the segment (0.40, 0) – (1.30, 0)
    assert g.distance_to(np.array([0.85, 0.0])) == 0.0
    assert g.distance_to(np.array([0.85, 0.5])) == pytest.approx(0.5)
    # beyond an end the distance is to that end: √(0.4² + 0.3²) = 0.5 and √(0.3² + 0.4²) = 0.5
    assert g.distance_to(np.array([0.40 - 0.4, 0.3])) == pytest.approx(0.5)
    assert g.distance_to(np.array([1.30 + 0.3, 0.4])) == pytest.approx(0.5)


def test_distance_to_the_nearest_gate_of_a_kind(store_data) -> None:
    data = {**store_data, "gates": [*store_data["gates"],
                                    {"id": "gate_side", "kind": "entry", "a_m": [0.0, 1.0], "b_m": [0.0, 2.0]}]}
    store = parse_store(data, "two_entries")
    p = np.array([0.3, 1.5])
    # gate_side (x = 0, y 1…2) is 0.3 m away; gate_in's near end (0.4, 0) is √(0.1² + 1.5²) away
    assert store.distance_to_gate("entry", p) == pytest.approx(0.3)
    # the only exit (2.7, 0) – (3.6, 0): its end (2.7, 0) is √(2.4² + 1.5²) away
    assert store.distance_to_gate("exit", p) == pytest.approx(math.hypot(2.4, 1.5))
    assert store.distance_to_gate("exit", np.array([3.0, 0.4])) == pytest.approx(0.4)


def test_closest_points_of_rays_is_the_single_pair_one_for_many() -> None:
    from runtime.geometry import closest_point_of_rays, closest_points_of_rays

    rng = np.random.default_rng(5)
    o1, o2 = np.array([0.0, 0.0, 3.0]), np.array([2.0, 0.0, 3.0])
    d1 = rng.normal(size=(20, 3))
    d1[:, 2] = -np.abs(d1[:, 2])
    d1 /= np.linalg.norm(d1, axis=1, keepdims=True)
    d2 = d1[::-1].copy()
    d2[3] = d1[3]                                   # parallel: no point
    d2[4] = -d1[4]                                  # meeting behind a camera: no point
    p, gap = closest_points_of_rays(o1, d1, o2, d2)
    for i in range(20):
        q, g = closest_point_of_rays(o1, d1[i], o2, d2[i])
        np.testing.assert_allclose(p[i], q, atol=1e-12)
        assert gap[i] == g or abs(gap[i] - g) < 1e-12
    assert np.isnan(p[3]).all() and gap[3] == np.inf and np.isnan(p[4]).all() and gap[4] == np.inf
