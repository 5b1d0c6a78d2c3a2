"""The store's cameras: pyrender offscreen over EGL.

``StoreRenderer`` is a view over the store description and one ``SceneState`` (product poses and
shopper skeletons, plain data). For a camera it renders RGB (BGR out, as OpenCV gives it), depth
and an instance-id image, and projects ground truth (boxes, keypoints with visibility) from the
same state, so labels and pixels can never disagree.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pyrender  # noqa: E402
import trimesh  # noqa: E402
from scipy import ndimage  # noqa: E402

from runtime.geometry import in_image, project  # noqa: E402
from runtime.store import Camera, StoreSpec  # noqa: E402
from twin.bodies import BodyShape, Skeleton, body_segments, segment_poses  # noqa: E402
from twin.fixtures import floor_mesh, shelf_unit_meshes, walls_meshes  # noqa: E402
from twin.lighting import LightingPreset, light_rig  # noqa: E402
from twin.products import product_mesh  # noqa: E402

FIXTURE_ID = 1
PRODUCT_ID0 = 2
PERSON_ID0 = 1_000_000
KEYPOINT_SURFACE_TOL_M = 0.25   # a joint lies inside its limb: its own surface may be this much nearer
HIDDEN = np.diag([1.0, 1.0, 1.0, 1.0])
HIDDEN[2, 3] = -50.0


def _id_colour(i: int) -> np.ndarray:
    return np.array([i & 255, (i >> 8) & 255, (i >> 16) & 255], dtype=np.uint8)


def _decode_ids(rgb: np.ndarray) -> np.ndarray:
    c = rgb.astype(np.int64)
    return c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16)


@dataclass
class ShopperView:
    """What the cameras see of one shopper."""

    id: int
    shape: BodyShape
    skeleton: Skeleton
    basket_xyz: np.ndarray | None = None
    heading_rad: float = 0.0


@dataclass
class SceneState:
    """The world at one instant, as plain data."""

    t: float
    product_poses: np.ndarray                  # N×4×4, box centres
    product_visible: np.ndarray                # N bool
    shoppers: list[ShopperView] = field(default_factory=list)


@dataclass
class RenderOutput:
    bgr: np.ndarray          # H×W×3 uint8
    depth: np.ndarray        # H×W float32, metres along the optical axis, 0 where nothing
    ids: np.ndarray | None   # H×W int64 instance ids (0 background, 1 fixtures, products, people)


@dataclass
class FrameTruth:
    """Ground truth of one camera frame. Boxes are x0, y0, x1, y1 in pixels."""

    person_ids: np.ndarray          # P
    person_boxes: np.ndarray        # P×4, visible (from the mask)
    person_boxes_amodal: np.ndarray # P×4, whole body projected
    person_pixels: np.ndarray       # P
    keypoints: np.ndarray           # P×17×3: u, v, visibility (0 outside image, 1 hidden, 2 visible)
    product_ids: np.ndarray         # Q instance indices
    product_boxes: np.ndarray       # Q×4 visible
    product_boxes_amodal: np.ndarray  # Q×4
    product_pixels: np.ndarray      # Q


class StoreRenderer:
    """One offscreen renderer for all cameras of a store (they share a resolution or get resized)."""

    def __init__(self, store: StoreSpec, instance_skus: list[str], lighting: LightingPreset | str = "day",
                 seed: int = 0, packaging_rng: np.random.Generator | None = None):
        self.store = store
        self.lighting = lighting if isinstance(lighting, LightingPreset) else LightingPreset.named(lighting)
        self.seed = seed
        self.scene = pyrender.Scene(ambient_light=np.full(3, self.lighting.ambient), bg_color=[0.1, 0.1, 0.1, 1.0])
        self._seg: dict[pyrender.Node, np.ndarray] = {}
        self._add_static()
        sku_mesh = {sku: pyrender.Mesh.from_trimesh(product_mesh(store.products[sku], packaging_rng))
                    for sku in sorted(set(instance_skus))}
        self._sku_half = {sku: np.array(store.products[sku].size_m) / 2 for sku in sku_mesh}
        self.instance_skus = list(instance_skus)
        self._product_nodes = []
        for i, sku in enumerate(instance_skus):
            node = self.scene.add(sku_mesh[sku], pose=HIDDEN)
            self._seg[node] = _id_colour(PRODUCT_ID0 + i)
            self._product_nodes.append(node)
        self._lights = [(self.scene.add(light, pose=pose), light.intensity) for light, pose in light_rig(store, self.lighting)]
        self._shopper_nodes: dict[int, tuple[list[pyrender.Node], list[np.ndarray], pyrender.Node]] = {}
        self._cam_node = None
        self._renderers: dict[tuple[int, int], pyrender.OffscreenRenderer] = {}
        self._undistort: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    # -- scene ---------------------------------------------------------------------------------
    def _add_static(self) -> None:
        parts: list[trimesh.Trimesh] = []
        for u in self.store.units:
            T = u.local_to_world()
            for mesh, rgb in shelf_unit_meshes(u):
                m = mesh.copy()
                m.apply_transform(T)
                m.visual = trimesh.visual.ColorVisuals(m, face_colors=np.tile([*rgb, 255], (len(m.faces), 1)))
                parts.append(m)
        for mesh, rgb in walls_meshes(self.store):
            m = mesh.copy()
            m.visual = trimesh.visual.ColorVisuals(m, face_colors=np.tile([*rgb, 255], (len(m.faces), 1)))
            parts.append(m)
        fixtures = pyrender.Mesh.from_trimesh(trimesh.util.concatenate(parts), smooth=False)
        self._seg[self.scene.add(fixtures)] = _id_colour(FIXTURE_ID)
        floor = pyrender.Mesh.from_trimesh(floor_mesh(self.store), smooth=False)
        self._seg[self.scene.add(floor)] = _id_colour(FIXTURE_ID)

    def _shopper(self, view: ShopperView):
        if view.id not in self._shopper_nodes:
            segs = body_segments(view.shape)
            nodes, verts = [], []
            for s in segs:
                mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=[*(np.array(s.rgb) / 255.0), 1.0], roughnessFactor=0.9, metallicFactor=0.0)
                node = self.scene.add(pyrender.Mesh.from_trimesh(s.mesh, material=mat, smooth=False), pose=HIDDEN)
                self._seg[node] = _id_colour(PERSON_ID0 + view.id)
                nodes.append(node)
                verts.append(np.asarray(s.mesh.vertices))
            basket = trimesh.creation.box([0.36, 0.26, 0.2])
            bmat = pyrender.MetallicRoughnessMaterial(baseColorFactor=[0.75, 0.1, 0.1, 1.0], roughnessFactor=0.7)
            bnode = self.scene.add(pyrender.Mesh.from_trimesh(basket, material=bmat), pose=HIDDEN)
            self._seg[bnode] = _id_colour(PERSON_ID0 + view.id)
            self._shopper_nodes[view.id] = (nodes, verts, bnode)
        return self._shopper_nodes[view.id]

    def set_state(self, state: SceneState) -> None:
        for node, pose, vis in zip(self._product_nodes, state.product_poses, state.product_visible):
            self.scene.set_pose(node, pose if vis else HIDDEN)
        seen = set()
        for v in state.shoppers:
            nodes, _, bnode = self._shopper(v)
            for node, pose in zip(nodes, segment_poses(v.shape, v.skeleton)):
                self.scene.set_pose(node, pose)
            if v.basket_xyz is not None:
                T = np.eye(4)
                c, s = math.cos(v.heading_rad), math.sin(v.heading_rad)
                T[:2, :2] = [[c, -s], [s, c]]
                T[:3, 3] = v.basket_xyz
                self.scene.set_pose(bnode, T)
            else:
                self.scene.set_pose(bnode, HIDDEN)
            seen.add(v.id)
        for sid, (nodes, _, bnode) in self._shopper_nodes.items():
            if sid not in seen:
                for node in [*nodes, bnode]:
                    self.scene.set_pose(node, HIDDEN)
        gain = self.lighting.gain(state.t, self.seed)
        for node, base in self._lights:
            node.light.intensity = base * gain
        self.scene.ambient_light = np.full(3, self.lighting.ambient * gain)

    # -- cameras --------------------------------------------------------------------------------
    def _renderer(self, w: int, h: int) -> pyrender.OffscreenRenderer:
        if (w, h) not in self._renderers:
            self._renderers[(w, h)] = pyrender.OffscreenRenderer(w, h)
        return self._renderers[(w, h)]

    def _place_camera(self, cam: Camera) -> None:
        K = cam.K
        pc = pyrender.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], znear=0.05, zfar=30.0)
        T = np.eye(4)
        T[:3, :3] = cam.R.T
        T[:3, 3] = cam.position_m
        T = T @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV axes → OpenGL axes
        if self._cam_node is not None:
            self.scene.remove_node(self._cam_node)
        self._cam_node = self.scene.add(pc, pose=T)

    def _distortion_maps(self, cam: Camera):
        if cam.id not in self._undistort:
            if not np.any(cam.dist):
                self._undistort[cam.id] = None
            else:
                u, v = np.meshgrid(np.arange(cam.width, dtype=np.float32), np.arange(cam.height, dtype=np.float32))
                pts = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
                ideal = cv2.undistortPoints(pts, cam.K, cam.dist, P=cam.K).reshape(cam.height, cam.width, 2)
                self._undistort[cam.id] = (ideal[..., 0].astype(np.float32), ideal[..., 1].astype(np.float32))
        return self._undistort[cam.id]

    def render(self, camera_id: str, with_ids: bool = True) -> RenderOutput:
        """Render the current state from one camera (call :meth:`set_state` first)."""
        cam = self.store.camera_by_id[camera_id]
        self._place_camera(cam)
        r = self._renderer(cam.width, cam.height)
        rgb, depth = r.render(self.scene)
        ids = None
        if with_ids:
            seg, _ = r.render(self.scene, flags=pyrender.RenderFlags.SEG, seg_node_map=self._seg)
            ids = _decode_ids(seg)
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        maps = self._distortion_maps(cam)
        if maps is not None:
            bgr = cv2.remap(bgr, maps[0], maps[1], cv2.INTER_LINEAR)
            depth = cv2.remap(depth, maps[0], maps[1], cv2.INTER_NEAREST)
            if ids is not None:
                ids = cv2.remap(ids.astype(np.float64), maps[0], maps[1], cv2.INTER_NEAREST).astype(np.int64)
        return RenderOutput(bgr, depth.astype(np.float32), ids)

    # -- ground truth from the same state --------------------------------------------------------
    def truth(self, camera_id: str, state: SceneState, out: RenderOutput) -> FrameTruth:
        cam = self.store.camera_by_id[camera_id]
        ids = out.ids
        assert ids is not None, "ground truth needs the instance-id render"
        objs = ndimage.find_objects(np.where(ids >= PERSON_ID0, ids - PERSON_ID0 + 1, 0).astype(np.int32))
        counts_person = np.bincount(np.clip(ids - PERSON_ID0 + 1, 0, None).ravel())
        p_ids, p_box, p_amodal, p_pix, kps = [], [], [], [], []
        for v in state.shoppers:
            k = v.id + 1
            nodes, verts, _ = self._shopper(v)
            pts = np.concatenate([vt @ T[:3, :3].T + T[:3, 3] for vt, T in zip(verts, segment_poses(v.shape, v.skeleton))])
            uv_all, z_all = project(cam, pts)
            ok = z_all > 0.05
            if not ok.any():
                continue
            uv_all = uv_all[ok]
            amodal = np.array([*uv_all.min(axis=0), *uv_all.max(axis=0)])
            if amodal[2] < 0 or amodal[3] < 0 or amodal[0] >= cam.width or amodal[1] >= cam.height:
                continue
            sl = objs[k - 1] if k - 1 < len(objs) else None
            npix = int(counts_person[k]) if k < len(counts_person) else 0
            box = np.array([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop], float) if (sl is not None and npix) else np.zeros(4)
            uv, z = project(cam, v.skeleton.keypoints)
            inside = in_image(cam, uv, z)
            vis = np.where(inside, 1, 0)
            for j in np.flatnonzero(inside):
                px, py = int(uv[j, 0]), int(uv[j, 1])
                if ids[py, px] == PERSON_ID0 + v.id and out.depth[py, px] > z[j] - KEYPOINT_SURFACE_TOL_M:
                    vis[j] = 2
            p_ids.append(v.id)
            p_box.append(box)
            p_amodal.append(np.clip(amodal, [0, 0, 0, 0], [cam.width, cam.height, cam.width, cam.height]))
            p_pix.append(npix)
            kps.append(np.concatenate([uv, vis[:, None]], axis=1))
        # products
        prod = np.where((ids >= PRODUCT_ID0) & (ids < PERSON_ID0), ids - PRODUCT_ID0 + 1, 0).astype(np.int32)
        pobjs = ndimage.find_objects(prod)
        counts = np.bincount(prod.ravel(), minlength=len(self.instance_skus) + 1)
        q_ids, q_box, q_amodal, q_pix = [], [], [], []
        for i in np.flatnonzero(counts[1:]):
            sl = pobjs[i]
            T = state.product_poses[i]
            half = self._sku_half[self.instance_skus[i]]
            corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
            uv, z = project(cam, corners @ T[:3, :3].T + T[:3, 3])
            am = np.array([*uv.min(axis=0), *uv.max(axis=0)])
            q_ids.append(i)
            q_box.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
            q_amodal.append(np.clip(am, [0, 0, 0, 0], [cam.width, cam.height, cam.width, cam.height]))
            q_pix.append(int(counts[i + 1]))
        f = lambda a, shape: np.asarray(a, dtype=float).reshape(shape)  # noqa: E731
        return FrameTruth(
            np.asarray(p_ids, dtype=int), f(p_box, (-1, 4)), f(p_amodal, (-1, 4)), np.asarray(p_pix, dtype=int),
            f(kps, (-1, 17, 3)), np.asarray(q_ids, dtype=int), f(q_box, (-1, 4)), f(q_amodal, (-1, 4)),
            np.asarray(q_pix, dtype=int))

    def close(self) -> None:
        for r in self._renderers.values():
            r.delete()
        self._renderers.clear()
