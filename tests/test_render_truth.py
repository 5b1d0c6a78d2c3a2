"""Ground truth lands on the rendered pixels, and the same seed gives the same ground truth."""
from pathlib import Path

import numpy as np
import pytest

from harness.paths import store_dir
from runtime.messages import Frame
from sim.scenario import load_scenario
from sim.simulator import CameraConfig, SimConfig, Simulator
from twin.renderer import PERSON_ID0, SceneState

SCENARIO = Path(__file__).parent / "scenarios" / "tiny_pick.yaml"


def _advance(sim: Simulator, t_s: float) -> None:
    for msg in sim.run():
        if msg.t >= t_s:
            return


@pytest.fixture(scope="module")
def reaching():
    """The tiny store's shopper mid-reach into the unit (t = 4 s)."""
    sc = load_scenario(SCENARIO, store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(truth=False)))
    _advance(sim, 4.0)
    state = sim.scene_state()
    assert state.shoppers, "the shopper is in the store"
    yield sim, state
    sim.close()


def test_person_truth_lands_on_rendered_person_pixels(reaching):
    sim, state = reaching
    r = sim.renderer
    empty = SceneState(state.t, state.product_poses, state.product_visible, [])
    checked = 0
    for cam in sim.camera_ids:
        r.set_state(empty)
        background = r.render(cam, masks="none").bgr.astype(int)
        r.set_state(state)
        out = r.render(cam, masks="all")
        truth = r.truth(cam, state, out)
        mask = out.ids == PERSON_ID0 + 0
        if mask.sum() < 300:
            continue
        checked += 1
        changed = np.abs(out.bgr.astype(int) - background).max(axis=2) > 12
        # the person's mask is where the person changed the picture (the rest of the change is
        # the basket and the item in the hand)
        assert (mask & changed).sum() >= 0.9 * mask.sum(), cam
        assert mask.sum() >= 0.5 * changed.sum(), cam
        (k,) = np.flatnonzero(truth.person_ids == 0)
        # the visible box is the mask's box; the amodal box contains it
        ys, xs = np.nonzero(mask)
        assert np.allclose(truth.person_boxes[k], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        am = truth.person_boxes_amodal[k]
        assert am[0] <= xs.min() + 2 and am[1] <= ys.min() + 2 and am[2] >= xs.max() - 1 and am[3] >= ys.max() - 1
        # visible keypoints sit on the person's pixels (within 2 px), hidden ones are not claimed visible
        kp = truth.keypoints[k]
        vis = kp[:, 2] == 2
        assert vis.sum() >= 5, cam
        from scipy.ndimage import binary_dilation

        near = binary_dilation(mask, iterations=2)
        on = [near[int(v), int(u)] for u, v, _ in kp[vis]]
        assert np.mean(on) == 1.0, cam
        # the depth-test product boxes agree with the exact product masks
        fast = r.truth(cam, state, r.render(cam, masks="persons"))
        common = set(fast.product_ids) & set(truth.product_ids)
        assert len(common) >= 0.9 * max(len(truth.product_ids), 1)
    assert checked >= 2, "the shopper is seen by at least two cameras"


def test_keypoints_hidden_behind_the_shelf_are_marked_hidden(reaching):
    """From a camera behind the unit, a shopper in front of it has hidden keypoints."""
    sim, state = reaching
    r = sim.renderer
    r.set_state(state)
    hidden_seen = False
    for cam in sim.camera_ids:
        truth = r.truth(cam, state, r.render(cam, masks="persons"))
        for kp in truth.keypoints:
            inside = kp[:, 2] > 0
            hidden_seen |= bool((kp[inside, 2] == 1).any())
    assert hidden_seen


def _truth_of_run(seed_override: int | None = None):
    sc = load_scenario(SCENARIO, store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(max_duration_s=5.0, camera=CameraConfig(cameras=("cam_01",))))
    frames = [m for m in sim.run() if isinstance(m, Frame)]
    sim.close()
    gt = sim.truth
    return gt, frames


def test_same_seed_same_ground_truth():
    a, fa = _truth_of_run()
    b, fb = _truth_of_run()
    assert np.array_equal(np.array(a.xy), np.array(b.xy), equal_nan=True)
    assert np.array_equal(np.array(a.keypoints), np.array(b.keypoints), equal_nan=True)
    assert [i.as_dict() for i in a.interactions] == [i.as_dict() for i in b.interactions]
    assert a.gate_events == b.gate_events
    ca, cb = a.cameras["cam_01"], b.cameras["cam_01"]
    assert ca.seq == cb.seq and len(ca.frames) > 10
    for x, y in zip(ca.frames, cb.frames):
        assert np.array_equal(x.keypoints, y.keypoints) and np.array_equal(x.product_boxes, y.product_boxes)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(fa, fb))


def _tiny_store_reaching(tmp_path, name: str, edit):
    """tiny_pick at t = 4 s in a copy of tiny_unit whose cameras ``edit`` changed (checked as a store
    file): the simulator, its renderer set to that moment, and the scenario."""
    import yaml

    from runtime.store import parse_store
    from sim.scenario import parse_scenario

    d = yaml.safe_load((store_dir() / "tiny_unit.yaml").read_text())
    edit(d["cameras"])
    store_path = tmp_path / f"{name}.yaml"
    store_path.write_text(yaml.safe_dump(d))
    parse_store(d, store_path)
    sc = parse_scenario(yaml.safe_load(SCENARIO.read_text()) | {"store": name}, SCENARIO, tmp_path)
    sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(truth=False)))
    _advance(sim, 4.0)
    state = sim.scene_state()
    sim.renderer.set_state(state)
    return sim, state, sc


def test_ground_truth_follows_lens_distortion(tmp_path):
    """With a barrel-distorted camera, projected keypoints still land on the rendered person."""
    from scipy.ndimage import binary_dilation

    def distort(cams):
        for cam in cams:
            cam["distortion"] = [-0.25, 0.05, 0.0, 0.0, 0.0]

    sim, state, _ = _tiny_store_reaching(tmp_path, "tiny_distorted", distort)
    r = sim.renderer
    checked = 0
    for cam in sim.camera_ids:
        out = r.render(cam, masks="all")
        truth = r.truth(cam, state, out)
        mask = out.ids == PERSON_ID0
        if mask.sum() < 300:
            continue
        checked += 1
        kp = truth.keypoints[list(truth.person_ids).index(0)]
        near = binary_dilation(mask, iterations=2)
        vis = kp[kp[:, 2] == 2]
        assert len(vis) >= 5 and all(near[int(v), int(u)] for u, v, _ in vis), cam
        seen = kp[kp[:, 2] > 0]
        assert np.mean([near[int(v), int(u)] for u, v, _ in seen]) >= 0.6, cam
    sim.close()
    assert checked >= 2


def test_fisheye_cameras_draw_the_scene_their_lens_sees(tmp_path):
    """A fisheye ceiling camera (equidistant lens, 120° across): keypoints projected through the
    lens land on the person it draws, and the floor's corners are drawn where the lens puts them."""
    from scipy.ndimage import binary_dilation

    def fisheyes(cams):
        for cam in cams[:2]:      # the third stays a pinhole: both kinds in one store
            cam.update(lens="fisheye", hfov_deg=120, distortion=[0.02, -0.005, 0.0, 0.0, 0.0])

    sim, state, sc = _tiny_store_reaching(tmp_path, "tiny_fisheye", fisheyes)
    r = sim.renderer
    checked = 0
    for cam in sim.camera_ids:
        out = r.render(cam, masks="all")
        assert out.bgr.shape == (240, 320, 3)
        drawn = r._render_camera(sc.spec.camera_by_id[cam])
        assert drawn.lens == "pinhole" and drawn.width * drawn.height <= 2.1 * 320 * 240
        if sc.spec.camera_by_id[cam].lens == "pinhole":
            continue
        truth = r.truth(cam, state, out)
        mask = out.ids == PERSON_ID0
        if mask.sum() < 200:
            continue
        checked += 1
        kp = truth.keypoints[list(truth.person_ids).index(0)]
        near = binary_dilation(mask, iterations=2)
        vis = kp[kp[:, 2] == 2]
        assert len(vis) >= 5 and all(near[int(v), int(u)] for u, v, _ in vis), cam
        # three of the floor's four corners are in each picture, drawn where the lens model puts them
        from runtime.geometry import in_image, project

        W, D = sc.spec.floor.width_m, sc.spec.floor.depth_m
        uv, z = project(sc.spec.camera_by_id[cam], np.array([[0.1, 0.1, 0], [W - 0.1, 0.1, 0], [0.1, D - 0.1, 0], [W - 0.1, D - 0.1, 0]]))
        seen = in_image(sc.spec.camera_by_id[cam], uv, z)
        assert seen.sum() >= 3, cam
        ys, xs = uv[seen, 1].astype(int), uv[seen, 0].astype(int)
        assert (out.depth[ys, xs] > 0).all(), "drawn where the lens puts the floor's corners"
    sim.close()
    assert checked >= 2


def test_a_fisheye_wider_than_the_twin_can_draw_is_refused():
    import yaml

    from runtime.store import parse_store
    from runtime.store import SpecError

    d = yaml.safe_load((store_dir() / "tiny_unit.yaml").read_text())
    d["cameras"][1].update(lens="fisheye", hfov_deg=160)
    with pytest.raises(SpecError, match=r"cameras\[1\]\.hfov_deg.*at most 80° off its axis.*look 1\d\d° off"):
        parse_store(d, "tiny.yaml")


# -- the cuts in the renderer's cost (issue 12) keep its output ---------------------------------------
def test_id_images_decode_as_three_little_endian_bytes():
    from twin.renderer import _decode_ids, _id_colour

    ids = np.array([[0, 1, 2, 255], [256, 65_535, PERSON_ID0, PERSON_ID0 + 77]])
    rgb = np.stack([[_id_colour(int(i)) for i in row] for row in ids])
    got = _decode_ids(rgb)
    assert got.dtype == np.int64 and np.array_equal(got, ids)
    c = rgb.astype(np.int64)   # the plain formula it replaces
    assert np.array_equal(got, c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16))


def test_pixels_and_depth_as_pyrender_reads_them(reaching):
    """The renderer reads its single-sampled framebuffer directly; pyrender's own path (blit, then
    masked depth conversion) gives the very same colour and depth."""
    import pyrender

    import twin.renderer

    sim, state = reaching
    r = sim.renderer
    r.set_state(state)
    cam = sim.camera_ids[0]
    r._place_camera(sim.store.camera_by_id[cam])
    c = sim.store.camera_by_id[cam]
    off = r._renderer(c.width, c.height)
    fast = off.render(r.scene)
    ours = pyrender.renderer.Renderer._read_main_framebuffer
    try:
        pyrender.renderer.Renderer._read_main_framebuffer = twin.renderer.PYRENDER_READ
        slow = off.render(r.scene)
    finally:
        pyrender.renderer.Renderer._read_main_framebuffer = ours
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
    assert (fast[1] > 0).any() and (fast[1] == 0).any()   # something seen, and the background


def test_meshes_at_the_same_distance_draw_in_the_order_they_were_added():
    """Ties in pyrender's far-to-near order follow the order nodes were added, not their addresses,
    so two processes (or two versions of the code) draw the same scene the same way."""
    import pyrender
    import trimesh

    scene = pyrender.Scene()
    mesh = pyrender.Mesh.from_trimesh(trimesh.creation.box([1, 1, 1]))
    nodes = [pyrender.Node(mesh=mesh) for _ in range(12)][::-1]    # allocated in the reverse order
    for n in nodes:
        scene.add_node(n)
    scene.add(pyrender.PerspectiveCamera(yfov=1.0), pose=np.eye(4))
    order = pyrender.renderer.Renderer._sorted_mesh_nodes(None, scene)
    assert order == nodes


def test_lights_reach_the_shader_in_the_order_they_were_added():
    """pyrender numbers the lights for the shader in the order it iterates them; the shader's sum over
    them in another order rounds some pixels a grey level apart, so that order is the order added."""
    import pyrender

    scene = pyrender.Scene()
    lights = [pyrender.Node(light=pyrender.PointLight(intensity=float(i + 1))) for i in range(12)][::-1]
    for n in lights[:6]:
        scene.add_node(n)
    scene.add_node(pyrender.Node(light=pyrender.DirectionalLight()))
    for n in lights[6:]:
        scene.add_node(n)
    order = list(scene.light_nodes)
    assert [n for n in order if n in lights] == lights and len(order) == 13


def test_items_out_of_sight_leave_the_scene(reaching):
    """An item in a basket is not drawn under the floor: its node leaves the scene, and comes back
    when the item is seen again."""
    sim, state = reaching
    r = sim.renderer
    i = 0
    poses = state.product_poses.copy()
    poses[i, :3, 3] += [0.0, 0.0, 0.05]            # lifted: the item has moved, it has a node
    shown = SceneState(state.t, poses, state.product_visible.copy(), state.shoppers)
    r.set_state(shown)
    node = r._single[i]
    assert node in r.scene.mesh_nodes
    gone = SceneState(state.t, poses, np.where(np.arange(len(poses)) == i, False, state.product_visible), state.shoppers)
    r.set_state(gone)
    assert i not in r._single and node not in r.scene.mesh_nodes
    r.set_state(shown)
    assert i in r._single
    r.set_state(state)


def test_a_cameras_still_view_is_kept_and_only_what_moves_is_drawn_again(reaching):
    """Each camera's view of what does not move is drawn once; a frame draws only the shopper, the
    basket and handled items, in the rectangle that holds them. Frames, depth, person masks and
    every item's mask are those of drawing everything, also after an item moved (the kept view is
    drawn again). Under a flickering light the kept view is drawn at full intensity and at the
    flicker's floor once, and dimmed to each frame's light: within two levels of drawing it
    again (one before the lens blur), depth and masks exact."""
    sim, state = reaching
    r = sim.renderer

    def both(st):
        r.set_state(st)
        out = {}
        for share in (False, True, True):     # the second shared render uses the kept view
            r.share_static_view = share
            out[share] = [o for c in sim.camera_ids for o in (r.render(c), r.render(c, masks="all"))]
        r.share_static_view = True
        return out[False], out[True]

    from twin.lighting import LightingPreset

    poses = state.product_poses.copy()
    poses[3, :3, 3] += [0.0, 0.0, 0.04]        # an item lifted: it moves, the stock changes
    lifted = SceneState(state.t, poses, state.product_visible, state.shoppers)
    lighting = r.lighting
    try:
        for st, light in ((state, lighting), (lifted, lighting), (lifted, LightingPreset.named("flicker"))):
            r.lighting = light
            full, shared = both(st)
            flickers = bool(light.flicker_depth)
            for a, b in zip(full, shared):
                assert np.array_equal(a.depth, b.depth) and np.array_equal(a.ids, b.ids)
                if flickers:
                    d = np.abs(a.bgr.astype(int) - b.bgr.astype(int))
                    assert d.max() <= 2 and (d > 1).mean() < 1e-3, (d.max(), (d > 1).mean())
                else:
                    assert np.array_equal(a.bgr, b.bgr)
            want = (r._static_version,) if flickers else (r._static_version, r._gain)
            assert all(v[0] == want for v in r._static_view.values()), "kept for this stock (and light)"
        assert r._gain != 1.0, "the flickering light was dimmer"
        # another instant of the flicker: the same kept views, dimmed to another light
        kept = {c: v[1] for c, v in r._static_view.items()}
        r.set_state(SceneState(state.t + 0.37, poses, state.product_visible, state.shoppers))
        g = r._gain
        shared = [r.render(c) for c in sim.camera_ids]
        assert all(r._static_view[c][1] is kept[c] for c in sim.camera_ids), "not drawn again"
        r.share_static_view = False
        full = [r.render(c) for c in sim.camera_ids]
        r.share_static_view = True
        assert g != 1.0
        for a, b in zip(full, shared):
            d = np.abs(a.bgr.astype(int) - b.bgr.astype(int))
            assert d.max() <= 2 and (d > 1).mean() < 1e-3 and np.array_equal(a.depth, b.depth)
    finally:
        r.lighting = lighting
        r.set_state(state)


def test_the_moving_rectangle_holds_every_moving_pixel(reaching):
    """Outside the rectangle the renderer draws things that move in, nothing moves: a full render
    of the moving meshes alone puts no pixel outside it."""
    sim, state = reaching
    r = sim.renderer
    r.set_state(state)
    seen = 0
    for c in sim.camera_ids:
        cam = sim.store.camera_by_id[c]
        rect = r._moving_rect(cam)
        r._place_camera(cam)
        off = r._renderer(cam.width, cam.height)
        still = [n for n in r.scene.mesh_nodes if n not in {*r._shopper_nodes.values(), r._baskets_node}]
        with r._drawing(still, visible=False):
            _, depth = off.render(r.scene)
        ys, xs = np.nonzero(depth)
        if rect is None:
            assert not len(ys), c
            continue
        seen += 1
        x0, y0, x1, y1 = rect
        assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1, c
        assert (x1 - x0) * (y1 - y0) < cam.width * cam.height, "a rectangle, not the whole image"
    assert seen


def test_product_truth_tests_only_items_that_can_reach_the_picture(reaching):
    """Items whose box cannot reach into a camera's picture are left out of the depth test: the
    boxes, amodal boxes and seen-point counts are those of testing every item."""
    sim, state = reaching
    r = sim.renderer
    r.set_state(state)
    found = 0
    for c in sim.camera_ids:
        cam = sim.store.camera_by_id[c]
        out = r.render(c)
        a = r._product_truth(cam, state, out, cull=True)
        b = r._product_truth(cam, state, out, cull=False)
        for x, y in zip(a, b):
            assert np.array_equal(x, y), c
        found += len(a[0])
    assert found


def test_product_truth_is_of_where_the_picture_draws_each_item(reaching):
    """Boxes are worked out at the pose the picture draws: resting items where they rest (their
    face points' pixels kept per camera), a handled item where it is now. Against projecting
    every point afresh at those poses, the boxes and counts are the same, and the lifted item's box
    follows it."""
    from runtime.geometry import project
    from twin.renderer import _FACE_POINTS

    sim, state = reaching
    r = sim.renderer
    r.set_state(state)
    j = int(np.flatnonzero(~r._moved)[-1])   # an item no earlier test has moved
    poses = state.product_poses.copy()
    poses[j, :3, 3] += [0.0, 0.0, 0.04]
    lifted = SceneState(state.t, poses, state.product_visible, state.shoppers)
    m = len(_FACE_POINTS)
    try:
        for st in (state, lifted):
            r.set_state(st)
            drawn = r._drawn_poses(st)
            assert r._moved[j] == (st is lifted)
            assert np.array_equal(drawn[j], st.product_poses[j] if st is lifted else r._resting_pose[j])
            _, face = r._points_at(drawn)
            for c in sim.camera_ids:
                cam = sim.store.camera_by_id[c]
                items = np.arange(len(poses))
                uv, z = r._face_projection(cam, face.reshape(-1, 3), items)
                uv0, z0 = project(cam, face.reshape(-1, 3))
                assert np.allclose(uv, uv0.reshape(-1, m, 2), atol=1e-9) and np.allclose(z, z0.reshape(-1, m), atol=1e-12), c
        seen = 0
        for c in sim.camera_ids:
            cam = sim.store.camera_by_id[c]
            keep, boxes, _, _ = r._product_truth(cam, lifted, r.render(c))
            if j in keep:
                uv3, _ = project(cam, face.reshape(len(poses), m, 3)[j])
                row = list(keep).index(j)
                lo, hi = uv3.min(axis=0) - 1e-6, uv3.max(axis=0) + 1e-6
                assert (boxes[row, :2] >= lo).all() and (boxes[row, 2:] <= hi).all(), "its box is of where it is now"
                seen += 1
        assert seen, "some camera sees the lifted item"
    finally:
        r.set_state(state)


def test_shoppers_lit_at_their_vertices_look_as_lit_at_every_pixel(reaching):
    """The shoppers' and baskets' small flat faces are lit at their vertices (shaders/vertex_lit.*),
    not at every pixel as pyrender does: within a few levels on the shopper's pixels, and the
    same depth and masks. (The smooth skinned bodies are lit per pixel: Gouraud shading of their
    larger faces is a visible difference, so the optional path is for the low-poly bodies.)"""
    sim, state = reaching
    r = sim.renderer
    r.bodies = "blocks"
    r.set_state(state)
    nodes = [*r._shopper_nodes.values(), *([r._baskets_node] if r._baskets_node else [])]
    for n in nodes:
        for p in n.mesh.primitives:
            p.storetwin_vertex_lit = True
    lit = [r.render(c) for c in sim.camera_ids]
    for n in nodes:
        for p in n.mesh.primitives:
            p.storetwin_vertex_lit = False
    try:
        r.share_static_view = False
        per_pixel = [r.render(c) for c in sim.camera_ids]
    finally:
        r.share_static_view = True
        for n in nodes:
            for p in n.mesh.primitives:
                p.storetwin_vertex_lit = False
        r.bodies = "anny"
        r.set_state(state)
    seen = 0
    for a, b in zip(lit, per_pixel):
        assert np.array_equal(a.depth, b.depth) and np.array_equal(a.ids, b.ids)
        person = a.ids >= PERSON_ID0
        d = np.abs(a.bgr.astype(int) - b.bgr.astype(int)).max(axis=-1)
        if person.sum():
            seen += 1
            assert d[person].max() <= 6 and d[person].mean() < 0.5, (d[person].max(), d[person].mean())
        assert d[~person].max() <= 2      # the lens blur carries a shopper's edge a pixel out
    assert seen
