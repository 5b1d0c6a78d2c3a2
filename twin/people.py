"""Smooth skinned shoppers: Anny body meshes posed on the twin's skeleton, dressed by vertex colour.

The library (``twin/assets/bodies.npz``, built by ``python -m twin.make_bodies``) holds 27 rest
bodies (sex × age × weight) with skin weights over the twin's body segments. A shopper gets the
body nearest its ``build`` among a few drawn from its own hash, scaled to its height; each frame
its vertices follow the segments that ``segment_poses`` places on the solved skeleton (linear blend
skinning; a limb stretches along its bone to the twin's proportions, the trunk to the twin's
shoulder line), so the keypoints stay the twin's and the skin lies on them.

Clothes are colours on the skin with a little volume: a top (sleeves short or long, plain, striped,
checked or with a chest print), trousers or shorts, shoes, hair on the scalp. Nothing here draws a
random number from the simulator's stream: a shopper's look follows from its ``BodyShape`` alone.
"""
from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin.bodies import _JOINTS, SEGMENT_NAMES, BodyShape, Skeleton, segment_poses

LIBRARY = Path(__file__).parent / "assets" / "bodies.npz"
_S = {n: i for i, n in enumerate(SEGMENT_NAMES)}
_LIMBS = {"neck": ("neck", "head"),
          "left_upper_arm": ("left_shoulder", "left_elbow"), "right_upper_arm": ("right_shoulder", "right_elbow"),
          "left_forearm": ("left_elbow", "left_wrist"), "right_forearm": ("right_elbow", "right_wrist"),
          "left_hand": ("left_wrist", "left_hand"), "right_hand": ("right_wrist", "right_hand"),
          "left_thigh": ("left_hip", "left_knee"), "right_thigh": ("right_hip", "right_knee"),
          "left_shin": ("left_knee", "left_ankle"), "right_shin": ("right_knee", "right_ankle")}
_UPRIGHT = {"pelvis": np.eye(3), "torso": np.eye(3), "head": np.eye(3), "left_foot": np.eye(3),
            "right_foot": np.eye(3)}
SHOE_COLOURS = ((35, 33, 32), (240, 240, 238), (70, 50, 35), (30, 40, 80), (120, 120, 125), (150, 30, 35))


@dataclass(frozen=True)
class _Library:
    faces: np.ndarray          # F×3 int32
    vertices: np.ndarray       # B×N×3 rest bodies, twin body frame
    joints: np.ndarray         # B×J×3
    joint_names: tuple[str, ...]
    seg_index: np.ndarray      # N×K segment of each weight
    seg_weight: np.ndarray     # N×K
    phenotype: np.ndarray      # B×5: gender, age, weight, muscle, height_m


@functools.lru_cache(maxsize=1)
def library() -> _Library:
    if not LIBRARY.exists():
        raise FileNotFoundError(f"{LIBRARY} is missing: build it with `python -m twin.make_bodies` (needs anny)")
    z = np.load(LIBRARY)
    return _Library(faces=z["faces"].astype(np.int64), vertices=z["vertices"].astype(np.float64),
                    joints=z["joints"].astype(np.float64), joint_names=tuple(str(s) for s in z["joint_names"]),
                    seg_index=z["seg_index"].astype(np.int64), seg_weight=z["seg_weight"].astype(np.float64),
                    phenotype=z["phenotype"].astype(np.float64))


def _look_rng(shape: BodyShape) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(shape).encode()))


def _vertex_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    n = np.zeros_like(V)
    for k in range(3):
        np.add.at(n, F[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _rest_skeleton(J: dict[str, np.ndarray]) -> Skeleton:
    joints = {n: J.get(n, J["head"]) for n in _JOINTS}     # face points: not used by the segments
    return Skeleton(keypoints=np.zeros((17, 3)), joints=joints, frames=dict(_UPRIGHT))


@dataclass
class SkinnedBody:
    """One shopper's body: rest coordinates per (vertex, segment), weights, faces and colours."""

    local: np.ndarray       # N×K×3 rest vertex in each weighting segment's frame (scaled)
    seg: np.ndarray         # N×K
    weight: np.ndarray      # N×K
    faces: np.ndarray       # F×3
    rgba: np.ndarray        # 3F×4 uint8: each face's colour at its three corners
    rest_len: np.ndarray    # segments: rest bone length (limbs), else 0
    torso_scale: np.ndarray  # (sy, sz) trunk stretch onto the twin's shoulder line
    foot_scale: float        # foot height onto the twin's ankle height (soles on the floor)
    closed: dict = None      # hand segment → its rest coordinates with the fingers closed (see _closed_hand)

    def vertices(self, shape: BodyShape, skel: Skeleton, grip: tuple[bool, bool] = (False, False)) -> np.ndarray:
        """World vertices on ``skel`` (N×3); ``grip`` (left, right): hands closed round what they hold."""
        local = self.local
        for hand, on in zip(("left_hand", "right_hand"), grip):
            if on and self.closed:
                if local is self.local:
                    local = self.local.copy()
                rows, k, pts = self.closed[hand]
                local[rows, k] = pts
        T = np.stack(segment_poses(shape, skel))
        S = np.ones((len(SEGMENT_NAMES), 3))
        for name, (a, b) in _LIMBS.items():
            i = _S[name]
            S[i, 2] = np.linalg.norm(skel.joints[b] - skel.joints[a]) / self.rest_len[i]
        S[_S["torso"], 1:] = self.torso_scale
        S[[_S["left_foot"], _S["right_foot"]], 2] = self.foot_scale
        M = T[:, :3, :3] * S[:, None, :]                     # rotation ∘ scale, per segment
        p = np.einsum("nkij,nkj->nki", M[self.seg], local) + T[self.seg, :3, 3]
        return np.einsum("nk,nki->ni", self.weight, p)


@functools.lru_cache(maxsize=256)
def skinned_body(shape: BodyShape) -> SkinnedBody:
    """The body and clothes a shape wears (cached per shape)."""
    lib = library()
    rng = _look_rng(shape)
    # Build → the library's weight axis; sex and age from the shape's own hash.
    weight_want = float(np.clip((shape.build - 0.85) / 0.4, 0.0, 1.0))
    pick = rng.choice(len(lib.vertices), size=6, replace=False)
    b = int(pick[np.argmin(np.abs(lib.phenotype[pick, 2] - weight_want))])
    s = shape.height_m / lib.phenotype[b, 4]
    V = lib.vertices[b] * s
    J = {n: lib.joints[b, i] * s for i, n in enumerate(lib.joint_names)}
    F = lib.faces
    seg, w = lib.seg_index, lib.seg_weight
    H = shape.height_m

    # Clothes are decided per face (crisp edges on a coarse mesh): at each face's centre, on the
    # segment most of its corners follow.
    vseg = seg[:, 0]
    fseg = np.where(vseg[F[:, 1]] == vseg[F[:, 2]], vseg[F[:, 1]], vseg[F[:, 0]])
    face_rgba, face_layer, hair_len = _clothes(shape, rng, V[F].mean(axis=1), fseg, J)
    # A little volume: clothes stand off the skin, hair off the scalp.
    normals = _vertex_normals(V, F)
    face_off = np.select([face_layer == 1, face_layer == 2, face_layer == 3, face_layer == 4],
                         [0.010, 0.006, 0.006, 0.009 + 0.02 * hair_len], 0.0)
    offset = np.zeros(len(V))
    for k in range(3):
        np.maximum.at(offset, F[:, k], face_off)
    V = V + normals * offset[:, None] * (H / 1.7)

    rest = np.stack(segment_poses(shape, _rest_skeleton(J)))
    inv_R = np.transpose(rest[:, :3, :3], (0, 2, 1))
    local = np.einsum("nkij,nkj->nki", inv_R[seg], V[:, None, :] - rest[seg, :3, 3])
    rest_len = np.zeros(len(SEGMENT_NAMES))
    for name, (a, bb) in _LIMBS.items():
        rest_len[_S[name]] = np.linalg.norm(J[bb] - J[a])
    sh_half = abs(J["left_shoulder"][1] - J["right_shoulder"][1]) / 2
    sh_up = (J["left_shoulder"][2] + J["right_shoulder"][2]) / 2 - J["pelvis"][2]
    torso_scale = np.array([shape.shoulder_half_width_m / sh_half, shape.spine_m / sh_up])
    ankle_z = (J["left_ankle"][2] + J["right_ankle"][2]) / 2
    closed = {hand: _closed_hand(local, seg, _S[hand], rest[_S[hand], :3, :3], rest_len[_S[hand]])
              for hand in ("left_hand", "right_hand")}
    return SkinnedBody(local=local, seg=seg, weight=w, faces=F, rgba=np.repeat(face_rgba, 3, axis=0), rest_len=rest_len,
                       torso_scale=torso_scale, foot_scale=shape.ankle_height_m / ankle_z, closed=closed)


CURL_DEG = 100.0     # how far the fingertips turn towards the palm in a closed hand


def _closed_hand(local: np.ndarray, seg: np.ndarray, hand: int, rest_R: np.ndarray, bone: float):
    """The hand's rest coordinates (its own frame, z along wrist → hand) with the fingers curled
    towards the palm: each point past the knuckles turned about the line across the palm at the
    knuckles, by an angle that grows from 0 there to ``CURL_DEG`` at the fingertips. The palm's
    normal is the flat direction of the finger vertices, on the side that faces down in the body
    model's rest pose (arms out, palms down). Returns (vertex rows, weight slot, new points)."""
    rows, k = np.nonzero(seg == hand)
    pts = local[rows, k].copy()
    zk = 0.8 * bone
    fingers = pts[:, 2] > zk
    if fingers.sum() < 8:
        return rows[:0], k[:0], pts[:0]
    far = pts[:, 2] > zk + 0.4 * (pts[:, 2].max() - zk)       # the four fingers, past the thumb
    f = pts[far] - pts[far].mean(axis=0)
    n = np.linalg.svd(f, full_matrices=False)[2][2]
    n[2] = 0.0
    n /= np.linalg.norm(n)
    if (rest_R @ n)[2] > 0:          # the palm faces down in the rest pose
        n = -n
    axis = np.cross([0.0, 0.0, 1.0], n)          # turning z about it brings z towards the palm
    tip = pts[:, 2].max()
    ang = np.radians(CURL_DEG) * np.clip((pts[:, 2] - zk) / max(tip - zk, 1e-6), 0.0, 1.0)
    d = pts - [0.0, 0.0, zk]
    c, s_ = np.cos(ang)[:, None], np.sin(ang)[:, None]
    rot = d * c + np.cross(axis, d) * s_ + axis * (d @ axis)[:, None] * (1 - c)   # Rodrigues
    return rows, k, rot + [0.0, 0.0, zk]


def _clothes(shape: BodyShape, rng: np.random.Generator, V: np.ndarray, main: np.ndarray,
             J: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """Colour (N×4 uint8) and layer (0 skin, 1 top, 2 bottom, 3 shoes, 4 hair) of points ``V`` on
    segments ``main`` (rest pose), and the hair length (0 short … 1 long)."""
    H = shape.height_m
    names = np.array(SEGMENT_NAMES)[main]
    z = V[:, 2]
    layer = np.zeros(len(V), np.int64)
    long_sleeves = rng.random() < 0.45
    shorts = rng.random() < 0.18
    hem = J["pelvis"][2] + H * rng.uniform(0.03, 0.12)
    trunk = np.isin(names, ["torso", "pelvis"])
    layer[trunk & (z >= hem)] = 1
    layer[np.isin(names, ["left_upper_arm", "right_upper_arm"])] = 1
    if long_sleeves:
        layer[np.isin(names, ["left_forearm", "right_forearm"])] = 1
    layer[trunk & (z < hem)] = 2
    legs = np.isin(names, ["left_thigh", "right_thigh", "left_shin", "right_shin"])
    layer[legs] = 2
    if shorts:
        knee_z = (J["left_knee"][2] + J["right_knee"][2]) / 2
        layer[legs & (z < knee_z + 0.06 * H)] = 0
    layer[np.isin(names, ["left_foot", "right_foot"]) | (legs & (z < 0.06 * H))] = 3
    # Hair: the scalp above the brow and the back of the head.
    head = names == "head"
    c = J["head"]
    rel = V - c
    hair_len = rng.choice([0.0, 0.0, 0.3, 1.0])
    scalp = head & ((rel[:, 2] > 0.030 * H / 1.7) | ((rel[:, 0] < -0.02 * H / 1.7) & (rel[:, 2] > -0.05 * H / 1.7 - 0.05 * hair_len)))
    bald = rng.random() < 0.05
    if not bald:
        layer[scalp] = 4
    colour = np.tile(np.array([*shape.skin_rgb], float), (len(V), 1))
    top = np.array(shape.top_rgb, float)
    colour[layer == 1] = top
    colour[layer == 2] = shape.bottom_rgb
    colour[layer == 3] = SHOE_COLOURS[int(rng.integers(len(SHOE_COLOURS)))]
    colour[layer == 4] = shape.hair_rgb
    # Prints on the top: stripes, checks or a chest print, in a second colour.
    second = np.array(rng.choice([(240, 240, 235), (25, 25, 28), (200, 40, 40), (40, 70, 160), (230, 200, 50)]), float)
    pattern = rng.choice(["plain", "plain", "stripes", "checks", "print"])
    on_top = layer == 1
    if pattern == "stripes":
        period = H * rng.uniform(0.02, 0.05)
        colour[on_top & ((z // (period / 2)) % 2 == 0)] = second
    elif pattern == "checks":
        period = H * rng.uniform(0.03, 0.06)
        ang = np.arctan2(V[:, 1] - J["pelvis"][1], V[:, 0] - J["pelvis"][0])
        band = (z // (period / 2) + (ang * 0.5 * H * 0.16 // (period / 2))) % 2 == 0
        colour[on_top & band] = 0.5 * colour[on_top & band] + 0.5 * second
    elif pattern == "print":
        chest = np.array([0.0, 0.0, J["pelvis"][2] + 0.2 * H])
        d = np.hypot(V[:, 1] - chest[1], z - chest[2])
        colour[on_top & (V[:, 0] > 0) & (d < H * rng.uniform(0.03, 0.06))] = second
    # Shading of the skin: lips and a little darker at the brows so a face reads as a face.
    face = head & (rel[:, 0] > 0.06 * H / 1.7) & ~scalp
    mouth = face & (np.abs(rel[:, 2] + 0.055 * H / 1.7) < 0.006 * H / 1.7) & (np.abs(rel[:, 1]) < 0.02 * H / 1.7)
    colour[mouth] *= np.array([0.8, 0.55, 0.55])
    eyes = face & (np.abs(rel[:, 2] - 0.005 * H / 1.7) < 0.006 * H / 1.7) & (np.abs(np.abs(rel[:, 1]) - 0.032 * H / 1.7) < 0.012 * H / 1.7)
    colour[eyes] *= 0.45
    rgba = np.concatenate([np.clip(colour, 0, 255), np.full((len(V), 1), 255.0)], axis=1).astype(np.uint8)
    return rgba, layer, float(hair_len)


def body_mesh(shape: BodyShape, skel: Skeleton, grip: tuple[bool, bool] = (False, False)
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shopper on its skeleton as unindexed triangles: corner positions (3F×3), smooth normals
    (3F×3) and colours (3F×4 uint8), each face one colour. ``grip`` (left, right): which hands
    are closed round what they hold (the basket's handle, items)."""
    body = skinned_body(shape)
    V = body.vertices(shape, skel, grip)
    N = _vertex_normals(V, body.faces)
    return V[body.faces].reshape(-1, 3), N[body.faces].reshape(-1, 3), body.rgba


def shadow_mesh(verts: np.ndarray, floor_z: float = 0.002, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A soft-edged dark ellipse on the floor under a body (vertices, faces): the contact shadow."""
    low = verts[verts[:, 2] < 0.35 * max(verts[:, 2].max(), 1e-6)]
    pts = low if len(low) >= 3 else verts
    c = pts[:, :2].mean(axis=0)
    cov = np.cov((pts[:, :2] - c).T) + np.eye(2) * 1e-4
    evals, evecs = np.linalg.eigh(cov)
    radii = 2.2 * np.sqrt(evals) + 0.06
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    ring = (np.stack([np.cos(t) * radii[0], np.sin(t) * radii[1]], axis=1) @ evecs.T) + c
    V = np.vstack([[*c, floor_z], np.column_stack([ring, np.full(n, floor_z)])])
    F = np.array([[0, 1 + i, 1 + (i + 1) % n] for i in range(n)])
    return V, F
