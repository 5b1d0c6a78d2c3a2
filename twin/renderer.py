"""The store's cameras: pyrender offscreen over EGL.

``StoreRenderer`` is a view over the store description and one ``SceneState`` (product poses and
shopper skeletons, plain data). For a camera it renders RGB (BGR out, as OpenCV gives it), depth
and an instance-id image, and projects ground truth (boxes, keypoints with visibility) from the
same state, so labels and pixels can never disagree.
"""
from __future__ import annotations

import contextlib
import hashlib
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
from twin.people import body_mesh, shadow_mesh  # noqa: E402
from twin.fixtures import floor_mesh, shelf_unit_meshes, walls_meshes  # noqa: E402
from twin.lighting import GAIN_FLOOR, LightingPreset, light_rig  # noqa: E402
from twin.products import product_mesh  # noqa: E402

FIXTURE_ID = 1
PRODUCT_ID0 = 2
PERSON_ID0 = 1_000_000
KEYPOINT_SURFACE_TOL_M = 0.25   # a joint lies inside its limb: its own surface may be this much nearer
HIDDEN = np.diag([1.0, 1.0, 1.0, 1.0])
HIDDEN[2, 3] = -50.0
BASKET_RGB = (190, 25, 25)
SHADOW_RGB = (52, 50, 48)
GLTF_TRIANGLES = 4
_BODY_MATERIAL = pyrender.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.2,
                                                   roughnessFactor=0.8)   # as pyrender gives a coloured trimesh    # the contact shadow under a shopper (lit like the floor, so darker than any floor)


def _set_msaa_samples(samples: int) -> None:
    """pyrender always renders into a 4× multisampled framebuffer; on a CPU (llvmpipe) that costs
    ~40% of a frame. We render single-sampled and let a lens blur do the anti-aliasing."""
    from OpenGL import GL
    import pyrender.renderer as prr

    prr.glRenderbufferStorageMultisample = (
        lambda target, _samples, fmt, w, h: GL.glRenderbufferStorageMultisample(target, samples, fmt, w, h))


_set_msaa_samples(0)


def _read_framebuffer_directly() -> None:
    """pyrender blits its multisampled framebuffer into a plain one and converts depth with masked
    assignments; single-sampled (above) the render buffer can be read as it is, and the same
    conversion done in one pass: the same numbers, a few milliseconds less per pass."""
    from OpenGL.GL import (GL_DEPTH_COMPONENT, GL_FLOAT, GL_READ_FRAMEBUFFER, GL_RGB, GL_RGBA,
                           GL_UNSIGNED_BYTE, glBindFramebuffer, glReadPixels)
    import pyrender.renderer as prr

    def read(self, scene, flags):
        # storetwin_rect: only this part of the image (x0, y0, x1, y1 from the top left) was drawn
        x0, y0, x1, y1 = getattr(self, "storetwin_rect", None) or (0, 0, *self._main_fb_dims)
        width, height = x1 - x0, y1 - y0
        gy = self._main_fb_dims[1] - y1
        glBindFramebuffer(GL_READ_FRAMEBUFFER, self._main_fb_ms)
        raw = np.frombuffer(glReadPixels(x0, gy, width, height, GL_DEPTH_COMPONENT, GL_FLOAT), dtype=np.float32)
        raw = raw.reshape((height, width))[::-1]
        z_near = scene.main_camera_node.camera.znear
        z_far = scene.main_camera_node.camera.zfar
        ndc = 2.0 * raw - 1.0
        with np.errstate(divide="ignore"):   # the far plane at infinity: background pixels, zeroed below
            if z_far is None:
                depth_im = 2 * z_near / (1.0 - ndc)
            else:
                depth_im = (2.0 * z_near * z_far) / (z_far + z_near - ndc * (z_far - z_near))
        depth_im[raw == 1.0] = 0.0
        if flags & prr.RenderFlags.DEPTH_ONLY:
            return depth_im
        rgba = bool(flags & prr.RenderFlags.RGBA)
        buf = glReadPixels(x0, gy, width, height, GL_RGBA if rgba else GL_RGB, GL_UNSIGNED_BYTE)
        color_im = np.frombuffer(buf, dtype=np.uint8).reshape((height, width, 4 if rgba else 3))[::-1]
        return color_im, depth_im

    prr.Renderer._read_main_framebuffer = read


PYRENDER_READ = pyrender.renderer.Renderer._read_main_framebuffer   # pyrender's own (kept for the tests)
_read_framebuffer_directly()


def _draw_in_a_fixed_order() -> None:
    """pyrender draws opaque meshes far to near by their nodes' origins and leaves ties in the order
    of a set of nodes, i.e. of their memory addresses; where two surfaces meet at the same depth
    (a wall's foot on the floor) the pixel then depends on the process's allocations. Ties are
    broken by the order the nodes were added instead, so the same scene gives the same pixels.
    The lights too: pyrender numbers them for the shader in the order of a set, and the shader's sum
    over the lights in another order rounds a pixel here and there one grey level apart (measured:
    one run in three of the same seed); they are numbered in the order they were added."""
    import itertools

    import pyrender.renderer as prr
    import pyrender.scene as prs

    added = itertools.count()
    add_node = prs.Scene.add_node

    def add_node_in_order(self, node, parent_node=None):
        node._storetwin_order = next(added)
        return add_node(self, node, parent_node=parent_node)

    def sorted_mesh_nodes(self, scene):
        # Every pass skips meshes that are not visible, so they are left out here, before the
        # per-node cost of their poses and materials (the item-mask nodes stay in the scene).
        cam_loc = scene.get_pose(scene.main_camera_node)[:3, 3]
        shown = [n for n in scene.mesh_nodes if n.mesh.is_visible]

        def key(n):
            return (-np.linalg.norm(scene.get_pose(n)[:3, 3] - cam_loc), getattr(n, "_storetwin_order", 0))

        solid = sorted((n for n in shown if not n.mesh.is_transparent), key=key)
        clear = sorted((n for n in shown if n.mesh.is_transparent), key=key)
        return solid + clear

    def light_nodes_in_order(self):
        return sorted(self.point_light_nodes | self.spot_light_nodes | self.directional_light_nodes,
                      key=lambda n: getattr(n, "_storetwin_order", 0))

    prs.Scene.add_node = add_node_in_order
    prs.Scene.light_nodes = property(light_nodes_in_order)
    prr.Renderer._sorted_mesh_nodes = sorted_mesh_nodes


_draw_in_a_fixed_order()


def _set_uniforms_once() -> None:
    """pyrender sets some twenty uniforms for every primitive it draws (camera, lights, material),
    asking GL for each one's location every time, through PyOpenGL's wrappers: a frame spent more
    time there than drawing. A program keeps its uniforms' values, so each program now remembers
    the locations it was told and the values it was last given, and a call that would set the
    same value again is skipped. The same values reach the shader; the pixels cannot change."""
    from OpenGL.GL import GL_TRUE, glGetUniformLocation, glUniform1f, glUniform1i, glUniform1ui
    import pyrender.shader_program as psp

    funcs = psp.ShaderProgram._FUNC_MAP

    def set_uniform(self, name, value, unsigned=False):
        cache = self.__dict__.get("_storetwin_uniforms")
        if cache is None or cache[0] != self._program_id:
            cache = self._storetwin_uniforms = (self._program_id, {}, {})
        _, locs, last = cache
        loc = locs.get(name)
        if loc is None:
            loc = locs[name] = glGetUniformLocation(self._program_id, name)
        if loc == -1:      # pyrender ignores uniforms the program does not have
            return
        if isinstance(value, np.ndarray):
            if value.ndim == 1:
                if np.issubdtype(value.dtype, np.unsignedinteger) or unsigned:
                    value, kind = value.astype(np.uint32), "u"
                elif np.issubdtype(value.dtype, np.integer):
                    value, kind = value.astype(np.int32), "i"
                else:
                    value, kind = value.astype(np.float32), "f"
                key = (kind, value.tobytes())
                if last.get(name) != key:
                    funcs[(value.shape[0], kind)](loc, 1, value)
                    last[name] = key
            else:
                key = ("m", value.shape, value.astype(np.float32).tobytes())
                if last.get(name) != key:
                    funcs[(value.shape[0], value.shape[1])](loc, 1, GL_TRUE, value)
                    last[name] = key
            return
        key = (type(value), unsigned, value)
        if last.get(name) == key:
            return
        if isinstance(value, float):
            glUniform1f(loc, value)
        elif isinstance(value, (bool, int)):
            (glUniform1ui if unsigned else glUniform1i)(loc, int(value))
        else:
            return
        last[name] = key

    psp.ShaderProgram.set_uniform = set_uniform


_set_uniforms_once()

SHADERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shaders")


def _light_small_faces_per_vertex() -> None:
    """Primitives marked ``storetwin_vertex_lit`` (the shoppers' and baskets' flat-shaded,
    vertex-coloured meshes) are drawn with pyrender's lighting worked out at their vertices
    (``shaders/vertex_lit.vert``) instead of at every pixel: their faces are a few pixels across,
    and llvmpipe runs the pixel shader on a whole 4×4 block for every small triangle, so their
    PBR shading was half of a crowded frame. Everything else is drawn as pyrender draws it."""
    import pyrender.renderer as prr

    plain = prr.Renderer._get_primitive_program
    lit = (os.path.join(SHADERS, "vertex_lit.vert"), os.path.join(SHADERS, "vertex_lit.frag"))

    def get_primitive_program(self, primitive, flags, program_flags):
        if not getattr(primitive, "storetwin_vertex_lit", False):
            return plain(self, primitive, flags, program_flags)
        cache = self._program_cache
        get_program = cache.get_program

        def lit_program(vertex_shader, fragment_shader, geometry_shader=None, defines=None):
            if (vertex_shader, fragment_shader) == ("mesh.vert", "mesh.frag"):
                vertex_shader, fragment_shader = lit
            return get_program(vertex_shader, fragment_shader, geometry_shader, defines)

        cache.get_program = lit_program
        try:
            return plain(self, primitive, flags, program_flags)
        finally:
            del cache.get_program

    prr.Renderer._get_primitive_program = get_primitive_program


_light_small_faces_per_vertex()


# Off by default: with it, the default suite's busy_store lost two exact receipts and nine identity
# switches appeared (docs/BENCHMARKS.md), though its frames moved by under a third of a level on average.
LIGHT_SHOPPERS_PER_VERTEX = os.environ.get("STORETWIN_VERTEX_LIT", "0") == "1"


def _vertex_lit(mesh: pyrender.Mesh) -> pyrender.Mesh:
    for p in mesh.primitives:
        p.storetwin_vertex_lit = LIGHT_SHOPPERS_PER_VERTEX
    return mesh
LENS_BLUR_SIGMA_PX = 0.7


_OFFSCREEN: dict[tuple[int, int], pyrender.OffscreenRenderer] = {}


def _offscreen(w: int, h: int) -> pyrender.OffscreenRenderer:
    """One EGL context per image size for the whole process: creating and deleting contexts
    alongside each other is what EGL drivers get wrong."""
    if (w, h) not in _OFFSCREEN:
        _OFFSCREEN[(w, h)] = pyrender.OffscreenRenderer(w, h)
    return _OFFSCREEN[(w, h)]


def _id_colour(i: int) -> np.ndarray:
    return np.array([i & 255, (i >> 8) & 255, (i >> 16) & 255], dtype=np.uint8)


def _decode_ids(rgb: np.ndarray) -> np.ndarray:
    """An id image (H×W×3 bytes, low byte first) as H×W int64."""
    c = np.zeros((*rgb.shape[:2], 8), np.uint8)
    c[..., :3] = rgb
    return c.view("<i8")[..., 0]


@dataclass
class ShopperView:
    """What the cameras see of one shopper."""

    id: int
    shape: BodyShape
    skeleton: Skeleton
    basket_xyz: np.ndarray | None = None
    heading_rad: float = 0.0
    holding: bool = False          # items in the right hand (the basket, when there is one, in the left)


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
    masks: str = "persons"   # which ids are resolved: none | persons | all


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
    product_pixels: np.ndarray      # Q: mask pixels (masks="all") or seen surface samples (of 150)


def _face_points() -> np.ndarray:
    g = np.linspace(-1, 1, 5)
    a, b = np.meshgrid(g, g)
    a, b = a.ravel(), b.ravel()
    one = np.ones_like(a)
    return np.concatenate([np.stack([s * one, a, b], 1) for s in (-1, 1)] + [np.stack([a, s * one, b], 1) for s in (-1, 1)]
                          + [np.stack([a, b, s * one], 1) for s in (-1, 1)])


_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
_FACE_POINTS = _face_points()   # a box's 150 surface samples in half-extents


class StoreRenderer:
    """The cameras of one store over one pyrender scene (GL contexts are shared per image size)."""

    def __init__(self, store: StoreSpec, instance_skus: list[str], lighting: LightingPreset | str = "day",
                 seed: int = 0, packaging_rng: np.random.Generator | None = None,
                 static_meshes: list[trimesh.Trimesh] | None = None):
        """``static_meshes``: the floor, fixtures, walls and gates in another look (``twin.dressing``:
        the same geometry in other textures and colours); None draws them as ``twin.fixtures`` colours them."""
        self.store = store
        self.lighting = lighting if isinstance(lighting, LightingPreset) else LightingPreset.named(lighting)
        self.seed = seed
        self.scene = pyrender.Scene(ambient_light=np.full(3, self.lighting.ambient), bg_color=[0.1, 0.1, 0.1, 1.0])
        self._add_static(static_meshes)
        self._sku_trimesh = {sku: product_mesh(store.products[sku], packaging_rng) for sku in sorted(set(instance_skus))}
        self._sku_mesh = {sku: pyrender.Mesh.from_trimesh(m) for sku, m in self._sku_trimesh.items()}
        self._sku_half = {sku: np.array(store.products[sku].size_m) / 2 for sku in self._sku_mesh}
        self._sku_bottom = {sku: np.array([0.0, 0.0, -h[2]]) for sku, h in self._sku_half.items()}
        self.instance_skus = list(instance_skus)
        # Items resting where they were stocked are drawn as one mesh over a texture atlas; an item
        # that moves gets its own node from then on (pyrender's per-draw cost is in Python).
        self._resting_pose: np.ndarray | None = None
        self._moved = np.zeros(len(instance_skus), dtype=bool)
        self._stock_node: pyrender.Node | None = None
        self._single: dict[int, pyrender.Node] = {}
        self._seg_items: list[pyrender.Node] | None = None
        self._build_atlas()
        self._lights = [(self.scene.add(light, pose=pose), light.intensity) for light, pose in light_rig(store, self.lighting)]
        self._shopper_nodes: dict[int, pyrender.Node] = {}
        self._shopper_parts: dict[int, list] = {}
        self._baskets_node: pyrender.Node | None = None
        self._shadow_node: pyrender.Node | None = None
        self._shadow_verts: np.ndarray | None = None
        # People: "anny" smooth skinned bodies (twin.people) or "blocks", the low-poly segments.
        self.bodies = "anny"
        self.shadows = True
        self._shopper_verts: dict[int, np.ndarray] = {}
        self._state: SceneState | None = None
        self._cam_node = None
        self._undistort: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        self._pinhole_for: dict[str, Camera] = {}     # a fisheye camera's id → the pinhole it is drawn with
        self._halves: np.ndarray | None = None
        self._basket_verts: np.ndarray | None = None
        # Each camera's view of what does not move, kept between frames (see _colour_pass).
        self.share_static_view = True
        self._static_view: dict[str, tuple] = {}
        self._kept_fb: dict[str, tuple] = {}   # camera → (offscreen renderer, framebuffer, colour and depth buffers): its kept depth
        self._static_ids: dict[str, tuple] = {}
        self._static_version = 0
        self._gain = 1.0
        self._points_of: SceneState | None = None
        self._points: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 8, 3)), np.zeros((0, 3)))
        self._resting_proj: dict[str, tuple[np.ndarray, np.ndarray]] = {}   # camera → face points of the stock at rest

    # -- scene ---------------------------------------------------------------------------------
    def _add_static(self, meshes: list[trimesh.Trimesh] | None = None) -> None:
        if meshes is not None:     # dressed (textured meshes draw with pyrender's own shader, as the stock does)
            self._static_nodes = [self.scene.add(pyrender.Mesh.from_trimesh(m, smooth=False)) for m in meshes]
            return
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
        floor = pyrender.Mesh.from_trimesh(floor_mesh(self.store), smooth=False)
        self._static_nodes = [self.scene.add(fixtures), self.scene.add(floor)]

    def add_props(self, props: list[trimesh.Trimesh]) -> None:
        """Static clutter in world coordinates (boxes on the floor, signs, a mop bucket): drawn and
        occluding like the fixtures, never labelled. One mesh, so it costs one draw call."""
        if props:
            self._static_nodes.append(self.scene.add(pyrender.Mesh.from_trimesh(trimesh.util.concatenate(props), smooth=False)))
            self._static_version += 1

    def set_background(self, rgb) -> None:
        """The colour the cameras see where nothing is drawn (RGB, 0..1)."""
        self.scene.bg_color = np.array([*np.asarray(rgb, float)[:3], 1.0])
        self._static_version += 1

    def _mesh_pose(self, i: int, centre_pose: np.ndarray) -> np.ndarray:
        """Product meshes have their base at z=0; physics poses are box centres."""
        T = centre_pose.copy()
        T[:3, 3] = centre_pose[:3, 3] + centre_pose[:3, :3] @ self._sku_bottom[self.instance_skus[i]]
        return T

    def _build_atlas(self) -> None:
        """All SKUs' packaging in one texture (edge-padded cells, so mipmaps do not bleed), so that
        the whole resting stock is one mesh and one draw call."""
        skus = sorted(self._sku_trimesh)
        n = max(1, math.ceil(math.sqrt(len(skus))))
        tex = {k: np.asarray(self._sku_trimesh[k].visual.material.baseColorTexture.convert("RGB")) for k in skus}
        size = max(t.shape[0] for t in tex.values())
        pad = size // 8
        cell = size + 2 * pad
        atlas = np.zeros((n * cell, n * cell, 3), np.uint8)
        self._atlas_uv: dict[str, np.ndarray] = {}
        A = n * cell
        for k, sku in enumerate(skus):
            cx, cy = k % n, k // n
            t = cv2.resize(tex[sku], (size, size), interpolation=cv2.INTER_AREA) if tex[sku].shape[0] != size else tex[sku]
            atlas[cy * cell:(cy + 1) * cell, cx * cell:(cx + 1) * cell] = np.pad(t, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
            uv = np.asarray(self._sku_trimesh[sku].visual.uv, float)
            x = cx * cell + pad + uv[:, 0] * size
            y_top = cy * cell + pad + (1.0 - uv[:, 1]) * size
            self._atlas_uv[sku] = np.stack([x / A, 1.0 - y_top / A], axis=1)
        from PIL import Image

        self._atlas_material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=Image.fromarray(atlas), metallicFactor=0.0, roughnessFactor=0.75)

    def _stock_mesh(self, items: np.ndarray) -> pyrender.Mesh:
        verts, faces, uvs, n = [], [], [], 0
        for i in items:
            sku = self.instance_skus[i]
            m = self._sku_trimesh[sku]
            T = self._mesh_pose(i, self._resting_pose[i])
            v = np.asarray(m.vertices)
            verts.append(v @ T[:3, :3].T + T[:3, 3])
            faces.append(np.asarray(m.faces) + n)
            uvs.append(self._atlas_uv[sku])
            n += len(v)
        tm = trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=False,
                             visual=trimesh.visual.TextureVisuals(uv=np.concatenate(uvs), material=self._atlas_material))
        return pyrender.Mesh.from_trimesh(tm)

    def _sync_products(self, state: SceneState) -> None:
        poses = state.product_poses
        if self._resting_pose is None:
            self._resting_pose = poses.copy()
            changed = True
        else:
            drift = np.abs(poses[:, :3, 3] - self._resting_pose[:, :3, 3]).max(axis=1)
            newly = (drift > 0.002) & ~self._moved
            self._moved |= newly
            changed = bool(newly.any())
        if changed:
            if self._stock_node is not None:
                self.scene.remove_node(self._stock_node)
                self._stock_node = None
            resting = np.flatnonzero(~self._moved)
            if len(resting):
                self._stock_node = self.scene.add(self._stock_mesh(resting))
            self._static_version += 1
        # An item out of sight (in a basket) leaves the scene rather than being drawn under the floor:
        # every node costs a draw call's worth of Python, in every pass of every camera.
        for i in np.flatnonzero(self._moved):
            node = self._single.get(i)
            if not state.product_visible[i]:
                if node is not None:
                    self.scene.remove_node(node)
                    del self._single[i]
                continue
            pose = self._mesh_pose(i, poses[i])
            if node is None:
                self._single[i] = self.scene.add(self._sku_mesh[self.instance_skus[i]], pose=pose)
            else:
                self.scene.set_pose(node, pose)

    def _sync_shoppers(self, state: SceneState) -> None:
        """One merged, vertex-coloured body mesh per shopper (a node each, for the person masks)
        and one mesh for all the baskets, rebuilt per state."""
        for node in [*self._shopper_nodes.values(), *([self._baskets_node] if self._baskets_node else []),
                     *([self._shadow_node] if self._shadow_node else [])]:
            self.scene.remove_node(node)
        self._shadow_node = None
        self._shadow_verts = None
        self._shopper_nodes = {}
        self._shopper_verts = {}
        self._baskets_node = None
        basket = trimesh.creation.box([0.36, 0.26, 0.2])
        bverts, bfaces = [], []
        shadows = []
        for v in state.shoppers:
            if self.bodies == "anny":
                V, N, C = body_mesh(v.shape, v.skeleton, grip=(v.basket_xyz is not None, v.holding))
                mesh = pyrender.Mesh([pyrender.Primitive(positions=V, normals=N, color_0=C, mode=GLTF_TRIANGLES,
                                                         material=_BODY_MATERIAL)])
                if self.shadows:
                    shadows.append(shadow_mesh(V))
            else:
                if v.id not in self._shopper_parts:
                    self._shopper_parts[v.id] = [(np.asarray(sg.mesh.vertices), np.asarray(sg.mesh.faces), sg.rgb)
                                                 for sg in body_segments(v.shape)]
                verts, faces, cols, n = [], [], [], 0
                for (vt, fc, rgb), P in zip(self._shopper_parts[v.id], segment_poses(v.shape, v.skeleton)):
                    verts.append(vt @ P[:3, :3].T + P[:3, 3])
                    faces.append(fc + n)
                    cols.append(np.tile([*rgb, 255], (len(vt), 1)))
                    n += len(vt)
                V = np.concatenate(verts)
                tm = trimesh.Trimesh(V, np.concatenate(faces), vertex_colors=np.concatenate(cols).astype(np.uint8), process=False)
                mesh = pyrender.Mesh.from_trimesh(tm, smooth=False)
            self._shopper_nodes[v.id] = self.scene.add(_vertex_lit(mesh))
            self._shopper_verts[v.id] = V
            if v.basket_xyz is not None:
                c, sn = math.cos(v.heading_rad), math.sin(v.heading_rad)
                R = np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1.0]])
                bfaces.append(np.asarray(basket.faces) + 8 * len(bverts))
                bverts.append(np.asarray(basket.vertices) @ R.T + v.basket_xyz)
        self._basket_verts = np.concatenate(bverts) if bverts else None
        if shadows:
            offs = np.cumsum([0] + [len(sv) for sv, _ in shadows])
            V = np.concatenate([sv for sv, _ in shadows])
            F = np.concatenate([sf + o for (_, sf), o in zip(shadows, offs)])
            tm = trimesh.Trimesh(V, F, process=False, face_colors=np.tile([*SHADOW_RGB, 255], (len(F), 1)).astype(np.uint8))
            self._shadow_node = self.scene.add(_vertex_lit(pyrender.Mesh.from_trimesh(tm, smooth=False)))
            self._shadow_verts = V
        if bverts:
            tm = trimesh.Trimesh(np.concatenate(bverts), np.concatenate(bfaces), process=False,
                                 face_colors=np.tile([*BASKET_RGB, 255], (12 * len(bverts), 1)).astype(np.uint8))
            self._baskets_node = self.scene.add(_vertex_lit(pyrender.Mesh.from_trimesh(tm, smooth=False)))

    def set_state(self, state: SceneState) -> None:
        self._state = state
        self._sync_products(state)
        self._sync_shoppers(state)
        gain = self.lighting.gain(state.t, self.seed)
        self._gain = gain
        for node, base in self._lights:
            node.light.intensity = base * gain
        self.scene.ambient_light = np.full(3, self.lighting.ambient * gain)

    # -- cameras --------------------------------------------------------------------------------
    def _colour_pass(self, r: pyrender.OffscreenRenderer, cam: Camera,
                     rect: tuple[int, int, int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Colour and depth of the whole scene from ``cam``. A ceiling camera does not move, and
        most of what it sees (fixtures, floor, the stock resting where it was stocked) does not
        either: that view is drawn once per camera and kept (its pixels, and its depth in a GL
        framebuffer of its own) until the stock or the light changes. Each frame copies the kept
        depth into the rectangle that holds what moves, draws only what moves (people, baskets,
        items that were handled) there, so that a body part hidden behind a shelf is never shaded
        (the depth test comes before shading), and takes what it drew where it is nearer than the
        kept view. Shading has no shadows or transparency, so a surface's colour does not depend
        on what else is drawn."""
        if not self.share_static_view:
            return r.render(self.scene)
        moving = [*self._shopper_nodes.values(), *([self._baskets_node] if self._baskets_node else []),
                  *([self._shadow_node] if self._shadow_node else []), *self._single.values()]
        flickers = bool(self.lighting.flicker_depth)
        key = (self._static_version,) if flickers else (self._static_version, self._gain)
        kept = self._static_view.get(cam.id)
        if kept is None or kept[0] != key:
            with self._drawing(moving, visible=False):
                if flickers:
                    with self._light_at(1.0):
                        rgb_s, depth_s = r.render(self.scene)
                    self._keep_in_gl(r, cam)
                    with self._light_at(GAIN_FLOOR):
                        rgb_lo, _ = r.render(self.scene)
                    kept = (key, rgb_s, depth_s, self._dimming(rgb_s, rgb_lo, depth_s))
                else:
                    rgb_s, depth_s = r.render(self.scene)
                    self._keep_in_gl(r, cam)
                    kept = (key, rgb_s, depth_s, None)
            self._static_view[cam.id] = kept
        _, rgb_s, depth_s, dimming = kept
        rgb = self._dimmed(rgb_s, dimming, self._gain) if flickers else rgb_s.copy()
        depth = depth_s.copy()
        if rect is None or not moving:
            return rgb, depth
        x0, y0, x1, y1 = rect
        moving_set = set(moving)
        still = [n for n in self.scene.mesh_nodes if n not in moving_set]
        with self._only_in(r, cam, rect), self._drawing(still, visible=False), self._over_kept(r, cam):
            rgb_m, depth_m = r.render(self.scene)
        # The copied-in depth can come back a unit of the 24-bit buffer deeper than it was read
        # (llvmpipe's blit), so what moves is taken where it is nearer than the kept view as read:
        # the pixels, and the depth, of drawing everything at once.
        ds = depth_s[y0:y1, x0:x1]
        nearer = (depth_m > 0) & ((ds == 0) | (depth_m < ds))
        np.copyto(rgb[y0:y1, x0:x1], rgb_m, where=nearer[..., None])
        np.copyto(depth[y0:y1, x0:x1], depth_m, where=nearer)
        return rgb, depth

    @contextlib.contextmanager
    def _light_at(self, gain: float):
        """Every light (and the ambient term) at ``gain`` of its intensity for one pass."""
        saved = ([(node, node.light.intensity) for node, _ in self._lights], self.scene.ambient_light)
        for node, base in self._lights:
            node.light.intensity = base * gain
        self.scene.ambient_light = np.full(3, self.lighting.ambient * gain)
        try:
            yield
        finally:
            for node, intensity in saved[0]:
                node.light.intensity = intensity
            self.scene.ambient_light = saved[1]

    @staticmethod
    def _dimming(rgb_full: np.ndarray, rgb_floor: np.ndarray, depth: np.ndarray):
        """What :meth:`_dimmed` needs besides the full-intensity view: the bytes clipped at 255 there
        with their values at the flicker's floor, and the background's bytes (depth 0: the clear
        colour, which no light changes)."""
        flat = rgb_full.reshape(-1)
        clipped = np.flatnonzero(flat == 255)
        bg = np.flatnonzero(np.repeat((depth == 0).reshape(-1), 3))
        return clipped, rgb_floor.reshape(-1)[clipped], bg, flat[bg]

    @staticmethod
    def _dimmed(rgb_full: np.ndarray, dimming, gain: float) -> np.ndarray:
        """The kept view under a flickering light at ``gain``, from the same view drawn at full
        intensity and at the flicker's floor, instead of drawing it again every frame. Every light
        and the ambient term scale together and the shader's last step is ``colour^(1/2.2)``, so a
        pixel at gain g is the full-intensity pixel times g^(1/2.2) (within a level: both are
        rounded to bytes); where the full-intensity pixel was clipped at 255, the floor's pixel is
        scaled up instead; the background keeps its colour."""
        clipped, floor_vals, bg, bg_vals = dimming
        lut = np.clip(np.rint(np.arange(256) * gain ** (1 / 2.2)), 0, 255).astype(np.uint8)
        lut_lo = np.clip(np.rint(np.arange(256) * (gain / GAIN_FLOOR) ** (1 / 2.2)), 0, 255).astype(np.uint8)
        out = cv2.LUT(rgb_full, lut)
        flat = out.reshape(-1)
        flat[clipped] = lut_lo[floor_vals]
        flat[bg] = bg_vals
        return out

    def _keep_in_gl(self, r: pyrender.OffscreenRenderer, cam: Camera) -> None:
        """Copy the depth just drawn (the whole image) into this camera's own framebuffer."""
        from OpenGL import GL

        fb = self._kept_fb.get(cam.id)
        w, h = cam.width, cam.height
        r._platform.make_current()
        if fb is None:
            cb, db = GL.glGenRenderbuffers(2)
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, cb)
            GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_RGBA, w, h)   # pyrender's formats, so blits copy
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, db)
            GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_DEPTH_COMPONENT24, w, h)
            f = GL.glGenFramebuffers(1)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, f)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, cb)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, db)
            fb = self._kept_fb[cam.id] = (r, f, cb, db)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, r._renderer._main_fb_ms)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, fb[1])
        GL.glBlitFramebuffer(0, 0, w, h, 0, 0, w, h, GL.GL_DEPTH_BUFFER_BIT, GL.GL_NEAREST)

    @contextlib.contextmanager
    def _over_kept(self, r: pyrender.OffscreenRenderer, cam: Camera):
        """A pass that starts from this camera's kept depth instead of a cleared one: the kept
        depth is copied in (within the scissor rectangle) and pyrender's clear is skipped. The
        colour is left as it was: only what this pass draws nearer than the kept view is taken."""
        from OpenGL import GL
        import pyrender.renderer as prr

        w, h = cam.width, cam.height
        r._platform.make_current()
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._kept_fb[cam.id][1])
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, r._renderer._main_fb_ms)
        GL.glBlitFramebuffer(0, 0, w, h, 0, 0, w, h, GL.GL_DEPTH_BUFFER_BIT, GL.GL_NEAREST)
        clear = prr.glClear
        prr.glClear = lambda mask: None
        try:
            yield
        finally:
            prr.glClear = clear

    def _moving_rect(self, cam: Camera, pad_px: int = 4) -> tuple[int, int, int, int] | None:
        """The image rectangle (x0, y0, x1, y1) that holds everything that moves, as the pinhole
        camera draws it (before lens distortion); the whole image when any of it is behind the
        camera; None when none of it is in view."""
        pts = [*self._shopper_verts.values(), *(v for v in (self._basket_verts, self._shadow_verts) if v is not None)]
        if self._single:
            corners, _ = self._product_points(self._state)
            pts.append(corners[list(self._single)].reshape(-1, 3))
        if not pts:
            return None
        pc = np.concatenate(pts) @ cam.R.T + cam.t
        if (pc[:, 2] < 0.06).any():
            return 0, 0, cam.width, cam.height
        u = cam.K[0, 0] * pc[:, 0] / pc[:, 2] + cam.K[0, 2]
        v = cam.K[1, 1] * pc[:, 1] / pc[:, 2] + cam.K[1, 2]
        x0, x1 = max(0, int(np.floor(u.min())) - pad_px), min(cam.width, int(np.ceil(u.max())) + pad_px)
        y0, y1 = max(0, int(np.floor(v.min())) - pad_px), min(cam.height, int(np.ceil(v.max())) + pad_px)
        if x0 >= x1 or y0 >= y1:
            return None
        return x0, y0, x1, y1

    @staticmethod
    @contextlib.contextmanager
    def _only_in(r: pyrender.OffscreenRenderer, cam: Camera, rect: tuple[int, int, int, int]):
        """Passes that clear, draw and read back only ``rect`` of the image (GL's scissor test);
        what they return is that rectangle."""
        from OpenGL import GL

        x0, y0, x1, y1 = rect
        GL.glEnable(GL.GL_SCISSOR_TEST)
        GL.glScissor(x0, cam.height - y1, x1 - x0, y1 - y0)
        r._renderer.storetwin_rect = rect
        try:
            yield
        finally:
            GL.glDisable(GL.GL_SCISSOR_TEST)
            r._renderer.storetwin_rect = None

    @contextlib.contextmanager
    def _drawing(self, nodes, visible: bool):
        """Set these nodes' meshes (in)visible for one pass."""
        meshes = {id(n.mesh): n.mesh for n in nodes}.values()
        saved = [(m, m.is_visible) for m in meshes]
        for m in meshes:
            m.is_visible = visible
        try:
            yield
        finally:
            for m, v in saved:
                m.is_visible = v

    def _renderer(self, w: int, h: int) -> pyrender.OffscreenRenderer:
        return _offscreen(w, h)

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

    def _render_camera(self, cam: Camera) -> Camera:
        """The pinhole camera the scene is drawn with for ``cam``: ``cam`` itself, or for a fisheye
        a perspective view along the same axis wide enough for its corners (at most
        ``FISHEYE_MAX_ANGLE_DEG`` off the axis, so the view stays finite), with at most twice the
        fisheye's pixels; :meth:`render` then bends it into the fisheye's image."""
        if cam.lens != "fisheye":
            return cam
        kept = self._pinhole_for.get(cam.id)
        if kept is None:
            edge = np.array([(u, v) for u in np.linspace(0, cam.width - 1, 65) for v in (0, cam.height - 1)]
                            + [(u, v) for v in np.linspace(0, cam.height - 1, 49) for u in (0, cam.width - 1)], float)
            n = cv2.fisheye.undistortPoints(edge.reshape(-1, 1, 2), cam.K, cam.dist[:4]).reshape(-1, 2)
            hx, hy = np.abs(n[:, 0]).max(), np.abs(n[:, 1]).max()
            f = cam.K[0, 0] * min(1.0, float(np.sqrt(2 * cam.width * cam.height / (4 * cam.K[0, 0] ** 2 * hx * hy))))
            w, h = int(np.ceil(2 * f * hx)) + 4, int(np.ceil(2 * f * hy)) + 4
            kept = self._pinhole_for[cam.id] = type(cam).model_validate({
                **cam.model_dump(), "lens": "pinhole", "resolution": (w, h), "hfov_deg": None, "distortion": (0.0,) * 5,
                "intrinsics": {"fx": f, "fy": f, "cx": (w - 1) / 2, "cy": (h - 1) / 2}})
        return kept

    def _distortion_maps(self, cam: Camera, drawn: Camera):
        """Where each of ``cam``'s pixels lies in the image drawn by ``drawn`` (its pinhole), or
        None when they are the same image."""
        if cam.id not in self._undistort:
            if cam.lens != "fisheye" and not np.any(cam.dist):
                self._undistort[cam.id] = None
            else:
                u, v = np.meshgrid(np.arange(cam.width, dtype=np.float32), np.arange(cam.height, dtype=np.float32))
                pts = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2).astype(np.float64)
                if cam.lens == "fisheye":
                    ideal = cv2.fisheye.undistortPoints(pts, cam.K, cam.dist[:4], P=drawn.K)
                else:
                    ideal = cv2.undistortPoints(pts, cam.K, cam.dist, P=cam.K)
                ideal = ideal.reshape(cam.height, cam.width, 2)
                self._undistort[cam.id] = (ideal[..., 0].astype(np.float32), ideal[..., 1].astype(np.float32))
        return self._undistort[cam.id]

    def render(self, camera_id: str, masks: str = "persons") -> RenderOutput:
        """Render the current state from one camera (call :meth:`set_state` first).

        ``masks``: ``"none"``; ``"persons"`` (default: every person's visible pixels get its id,
        other surfaces the fixture id — one cheap extra pass); ``"all"`` (every product instance
        too — an extra pass that draws each item on its own, for training data).
        """
        if masks not in ("none", "persons", "all"):
            raise ValueError(f"masks={masks!r}: expected 'none', 'persons' or 'all'")
        lens = self.store.camera_by_id[camera_id]
        cam = self._render_camera(lens)       # drawn with a pinhole, bent into the lens's image below
        self._place_camera(cam)
        # the context of the lens's image size (meshes belong to one context), its framebuffer sized
        # for what is drawn: a fisheye's wider pinhole resizes it (EGL resizes in place)
        r = self._renderer(lens.width, lens.height)
        if (r.viewport_width, r.viewport_height) != (cam.width, cam.height):
            r.viewport_width, r.viewport_height = cam.width, cam.height
            # resized now, not in the next render: the kept depth is copied into it before that
            r._platform.make_current()
            r._renderer.viewport_width, r._renderer.viewport_height = cam.width, cam.height
            r._renderer._configure_main_framebuffer()
        rect = self._moving_rect(cam)
        rgb, depth = self._colour_pass(r, cam, rect)
        ids = None
        if masks == "persons":
            seg_map = {node: _id_colour(PERSON_ID0 + sid) for sid, node in self._shopper_nodes.items()}
            ids = (depth > 0).astype(np.int64) * FIXTURE_ID
            if seg_map and rect is not None:   # nobody in view: no person pixels
                with self._only_in(r, cam, rect):
                    seg, pdepth = r.render(self.scene, flags=pyrender.RenderFlags.SEG, seg_node_map=seg_map)
                # Only people are drawn in this pass, and every person id has a non-zero third byte
                # (PERSON_ID0 ≥ 2¹⁶): decode just their pixels.
                ys, xs = np.nonzero(seg[..., 2])
                pid = _decode_ids(seg[ys, xs][None])[0]
                pdepth = pdepth[ys, xs]
                ys, xs = ys + rect[1], xs + rect[0]
                d = depth[ys, xs]
                keep = (pid >= PERSON_ID0) & (np.abs(pdepth - d) <= 0.005 + 0.002 * d)
                ids[ys[keep], xs[keep]] = pid[keep]
        elif masks == "all":
            ids = self._render_all_ids(r, cam, rect)
        # the lens blur works on each channel alone, so blurring before the channel swap gives the
        # same pixels, and OpenCV's swap is a quarter of numpy's reversed copy (2 ms a frame less)
        bgr = cv2.cvtColor(cv2.GaussianBlur(rgb, (3, 3), LENS_BLUR_SIGMA_PX), cv2.COLOR_RGB2BGR)
        maps = self._distortion_maps(lens, cam)
        if maps is not None:
            bgr = cv2.remap(bgr, maps[0], maps[1], cv2.INTER_LINEAR)
            depth = cv2.remap(depth, maps[0], maps[1], cv2.INTER_NEAREST)
            if ids is not None:
                ids = cv2.remap(ids.astype(np.float64), maps[0], maps[1], cv2.INTER_NEAREST).astype(np.int64)
        return RenderOutput(bgr, depth.astype(np.float32, copy=False), ids, masks)

    def _render_all_ids(self, r: pyrender.OffscreenRenderer, cam: Camera,
                        rect: tuple[int, int, int, int] | None) -> np.ndarray:
        """Instance ids of everything. Each item has its own node in the scene whose mesh stays
        invisible except during this pass (one scene, so nothing is re-uploaded between passes).
        As with colour, each camera's ids of what does not move are kept (for as long as the
        stock and which items are out of sight stay the same) and a frame draws only what moves,
        in its rectangle, keeping the nearer surface per pixel."""
        st = self._state
        if self._seg_items is None:
            seg_meshes = {sku: pyrender.Mesh.from_trimesh(m) for sku, m in self._sku_trimesh.items()}
            for m in seg_meshes.values():
                m.is_visible = False
            self._seg_meshes = seg_meshes
            self._seg_mesh_set = set(seg_meshes.values())
            self._seg_items = [self.scene.add(seg_meshes[sku], pose=HIDDEN) for sku in self.instance_skus]
        # Items resting where they were stocked are masked where the picture draws them: at their
        # resting pose (drift under 2 mm, as in _sync_products); handled items where they are now.
        for i, node in enumerate(self._seg_items):
            pose = self._resting_pose[i] if not self._moved[i] else st.product_poses[i]
            self.scene.set_pose(node, self._mesh_pose(i, pose) if st.product_visible[i] else HIDDEN)
        baskets = [self._baskets_node] if self._baskets_node else []
        people = {n: _id_colour(PERSON_ID0 + sid) for sid, n in self._shopper_nodes.items()}
        if not self.share_static_view:
            seg_map = {n: _id_colour(FIXTURE_ID) for n in [*self._static_nodes, *baskets]}
            seg_map.update({n: _id_colour(PRODUCT_ID0 + i) for i, n in enumerate(self._seg_items)})
            seg_map.update(people)
            seg, _ = self._seg_pass(r, seg_map)
            return _decode_ids(seg)
        # Still: fixtures, and items resting where they were stocked or out of sight (under the floor).
        moving = self._moved & st.product_visible
        still = np.flatnonzero(~moving)
        key = (self._static_version, hashlib.sha1(st.product_visible.tobytes()).digest())
        kept = self._static_ids.get(cam.id)
        if kept is None or kept[0] != key:
            seg_map = {n: _id_colour(FIXTURE_ID) for n in self._static_nodes}
            seg_map.update({self._seg_items[i]: _id_colour(PRODUCT_ID0 + i) for i in still})
            seg, depth = self._seg_pass(r, seg_map)
            kept = self._static_ids[cam.id] = (key, _decode_ids(seg), depth)
        _, ids_s, depth_s = kept
        ids = ids_s.copy()
        seg_map = {n: _id_colour(FIXTURE_ID) for n in baskets}
        seg_map.update({self._seg_items[i]: _id_colour(PRODUCT_ID0 + i) for i in np.flatnonzero(moving)})
        seg_map.update(people)
        if rect is None or not seg_map:
            return ids
        x0, y0, x1, y1 = rect
        with self._only_in(r, cam, rect):
            seg_m, depth_m = self._seg_pass(r, seg_map)
        ds = depth_s[y0:y1, x0:x1]
        nearer = (depth_m > 0) & ((ds == 0) | (depth_m < ds))
        ids[y0:y1, x0:x1][nearer] = _decode_ids(seg_m)[nearer]
        return ids

    def _seg_pass(self, r: pyrender.OffscreenRenderer, seg_map: dict) -> tuple[np.ndarray, np.ndarray]:
        """A mask pass over the nodes of ``seg_map``; the item nodes' meshes (one per SKU) are shown
        for it, only those of the SKUs it draws."""
        shown = {id(n.mesh): n.mesh for n in seg_map if n.mesh in self._seg_mesh_set}.values()
        for m in shown:
            m.is_visible = True
        try:
            return r.render(self.scene, flags=pyrender.RenderFlags.SEG, seg_node_map=seg_map)
        finally:
            for m in shown:
                m.is_visible = False

    # -- ground truth from the same state --------------------------------------------------------
    def truth(self, camera_id: str, state: SceneState, out: RenderOutput) -> FrameTruth:
        """Boxes and keypoints of one rendered frame. Product boxes come from the instance masks
        when ``out`` has them (``masks="all"``), else from a depth test of points on each box."""
        cam = self.store.camera_by_id[camera_id]
        ids = out.ids
        if ids is None:
            raise ValueError("ground truth needs a render with masks='persons' or 'all'")
        person_lab = np.where(ids >= PERSON_ID0, ids - PERSON_ID0 + 1, 0).astype(np.int32)
        objs = ndimage.find_objects(person_lab)
        counts_person = np.bincount(person_lab.ravel())
        p_ids, p_box, p_amodal, p_pix, kps = [], [], [], [], []
        lim = np.array([cam.width, cam.height, cam.width, cam.height], float)
        for v in state.shoppers:
            k = v.id + 1
            uv_all, z_all = project(cam, self._shopper_verts[v.id])
            ok = z_all > 0.05
            if not ok.any():
                continue
            amodal = np.array([*uv_all[ok].min(axis=0), *uv_all[ok].max(axis=0)])
            if amodal[2] < 0 or amodal[3] < 0 or amodal[0] >= cam.width or amodal[1] >= cam.height:
                continue
            npix = int(counts_person[k]) if k < len(counts_person) else 0
            sl = objs[k - 1] if (npix and k - 1 < len(objs)) else None
            box = np.array([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop], float) if sl is not None else np.zeros(4)
            uv, z = project(cam, v.skeleton.keypoints)
            inside = in_image(cam, uv, z)
            vis = np.where(inside, 1, 0)
            for j in np.flatnonzero(inside):
                px, py = int(uv[j, 0]), int(uv[j, 1])
                if ids[py, px] == PERSON_ID0 + v.id and out.depth[py, px] > z[j] - KEYPOINT_SURFACE_TOL_M:
                    vis[j] = 2
            p_ids.append(v.id)
            p_box.append(box)
            p_amodal.append(np.clip(amodal, 0, lim))
            p_pix.append(npix)
            kps.append(np.concatenate([uv, vis[:, None]], axis=1))
        q = self._product_truth(cam, state, out)
        f = lambda a, shape: np.asarray(a, dtype=float).reshape(shape)  # noqa: E731
        return FrameTruth(np.asarray(p_ids, dtype=int), f(p_box, (-1, 4)), f(p_amodal, (-1, 4)),
                          np.asarray(p_pix, dtype=int), f(kps, (-1, 17, 3)), *q)

    def _product_points(self, state: SceneState) -> tuple[np.ndarray, np.ndarray]:
        """Every item's 8 box corners and 150 face points (a 5×5 grid on each face) in the world,
        N×8×3 and N·150×3, where the picture draws the item: an item resting where it was stocked
        at its resting pose (as :meth:`_sync_products` draws it), a handled one where it is now.
        The same for every camera, so worked out once per state."""
        if self._points_of is state:
            return self._points
        world, pts = self._points_at(self._drawn_poses(state))
        self._points_of, self._points = state, (world, pts.reshape(-1, 3))
        return self._points

    def _drawn_poses(self, state: SceneState) -> np.ndarray:
        if self._resting_pose is None:
            return state.product_poses
        return np.where(self._moved[:, None, None], state.product_poses, self._resting_pose)

    def _points_at(self, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Corners (N×8×3) and face points (N×150×3) of every item at ``poses``."""
        n = len(self.instance_skus)
        if self._halves is None:
            self._halves = np.stack([self._sku_half[s] for s in self.instance_skus]) if n else np.zeros((0, 3))
        halves = self._halves
        R, t = poses[:, :3, :3], poses[:, :3, 3]
        world = np.einsum("nij,nkj->nki", R, _CORNERS[None] * halves[:, None]) + t[:, None]
        pts = np.einsum("nij,nkj->nki", R, _FACE_POINTS[None] * halves[:, None]) + t[:, None]
        return world, pts

    def _face_projection(self, cam: Camera, face_pts: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (len(items)×150×2) and depths of the face points of ``items``. The stock at rest
        does not move and neither does the camera: its projection is worked out once per camera
        and kept; handled items are projected afresh."""
        m = len(_FACE_POINTS)
        kept = self._resting_proj.get(cam.id)
        if kept is None and self._resting_pose is not None:
            _, rest = self._points_at(self._resting_pose)
            uv, z = project(cam, rest.reshape(-1, 3))
            kept = self._resting_proj[cam.id] = (uv.reshape(-1, m, 2), z.reshape(-1, m))
        if kept is None:
            uv, z = project(cam, face_pts.reshape(-1, m, 3)[items].reshape(-1, 3))
            return uv.reshape(-1, m, 2), z.reshape(-1, m)
        puv, pz = kept[0][items], kept[1][items]
        moved = self._moved[items]
        if moved.any():
            uv, z = project(cam, face_pts.reshape(-1, m, 3)[items[moved]].reshape(-1, 3))
            puv[moved], pz[moved] = uv.reshape(-1, m, 2), z.reshape(-1, m)
        return puv, pz

    def _product_truth(self, cam: Camera, state: SceneState, out: RenderOutput, cull: bool = True):
        lim = np.array([cam.width, cam.height, cam.width, cam.height], float)
        n = len(self.instance_skus)
        world, face_pts = self._product_points(state)
        uv, z = project(cam, world.reshape(-1, 3))
        uv, z = uv.reshape(n, 8, 2), z.reshape(n, 8)
        amodal = np.concatenate([uv.min(axis=1), uv.max(axis=1)], axis=1)
        if out.masks == "all":
            lab = np.where((out.ids >= PRODUCT_ID0) & (out.ids < PERSON_ID0), out.ids - PRODUCT_ID0 + 1, 0).astype(np.int32)
            objs = ndimage.find_objects(lab, max_label=n)
            counts = np.bincount(lab.ravel(), minlength=n + 1)[1:]
            keep = np.flatnonzero(counts)
            boxes = np.array([[objs[i][1].start, objs[i][0].start, objs[i][1].stop, objs[i][0].stop] for i in keep], float)
            return keep, boxes.reshape(-1, 4), np.clip(amodal[keep], 0, lim), counts[keep]
        # Depth test of a 5×5 grid on each of the six faces: a point is seen where the depth image
        # agrees with its own depth. Only items whose box can reach into the picture are tested:
        # in front of the camera, a face point projects inside its box corners' bounding box
        # (give or take a lens's bulge, hence the margin); an item partly behind is always tested.
        m = len(_FACE_POINTS)
        if cull:
            margin = 32.0
            front = (z > 0.05).all(axis=1)
            reach = ((amodal[:, 2] >= -margin) & (amodal[:, 0] < cam.width + margin)
                     & (amodal[:, 3] >= -margin) & (amodal[:, 1] < cam.height + margin))
            cand = np.flatnonzero(state.product_visible & (~front | reach))
        else:
            cand = np.arange(n)
        puv, pz = self._face_projection(cam, face_pts, cand)
        puv, pz = puv.reshape(-1, 2), pz.reshape(-1)
        inside = in_image(cam, puv, pz)
        seen = np.zeros(len(pz), bool)
        px = np.clip(puv[:, 0].astype(int), 0, cam.width - 1)
        py = np.clip(puv[:, 1].astype(int), 0, cam.height - 1)
        d = out.depth[py, px]
        seen[inside] = np.abs(d[inside] - pz[inside]) <= 0.006 + 0.004 * pz[inside]
        seen = seen.reshape(len(cand), m) & state.product_visible[cand, None]
        counts = seen.sum(axis=1)
        kc = np.flatnonzero(counts)
        keep = cand[kc]
        puv = puv.reshape(len(cand), m, 2)[kc]
        s = seen[kc][..., None]
        boxes = np.concatenate([np.where(s, puv, np.inf).min(axis=1), np.where(s, puv, -np.inf).max(axis=1)], axis=1)
        return keep, np.clip(boxes, 0, lim), np.clip(amodal[keep], 0, lim), counts[kc]

    def close(self) -> None:
        """Drop this store's scene and the cameras' kept framebuffers; the process-wide GL contexts
        stay for the next renderer."""
        from OpenGL import GL

        for r, f, cb, db in self._kept_fb.values():
            r._platform.make_current()
            GL.glDeleteFramebuffers(1, [f])
            GL.glDeleteRenderbuffers(2, [cb, db])
        self._kept_fb = {}
        self.scene = None
