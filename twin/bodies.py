"""An articulated shopper body on the COCO 17-keypoint skeleton, for rendering and ground truth.

World frame: metres, z up, floor at z=0. A body's own frame has its origin on the floor between the
feet, +x the way it faces (``heading_rad``), +y its left, +z up.

``solve_skeleton`` is the per-frame path: pure numpy/math forward kinematics, an analytic two-link
IK for each arm (and for each leg, so feet stay planted while walking or crouching) and a small
posture search that leans, twists, crouches or rises on tiptoe only when a hand target lies beyond
comfortable reach. ``body_segments`` builds the low-poly meshes once per shape; ``segment_poses``
places them on a skeleton without any trimesh call.

Proportions are the Drillis & Contini segment fractions of standing height ``H``: shoulder 0.818H,
hip 0.530H, knee 0.285H, ankle 0.039H, elbow 0.630H, wrist 0.485H.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import trimesh

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)

COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12),        # legs and hips
    (5, 11), (6, 12), (5, 6),                                # trunk
    (5, 7), (6, 8), (7, 9), (8, 10),                         # arms
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),  # face, ears to shoulders
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (190, 30, 40),
    "navy": (25, 35, 80),
    "black": (25, 25, 28),
    "white": (235, 235, 230),
    "grey": (128, 128, 130),
    "green": (40, 130, 60),
    "blue": (40, 90, 190),
    "yellow": (230, 200, 40),
    "brown": (110, 70, 40),
    "beige": (210, 190, 150),
    "orange": (235, 120, 30),
    "purple": (110, 50, 140),
    "pink": (235, 140, 170),
    "teal": (20, 130, 130),
    "khaki": (170, 160, 110),
    "denim": (70, 95, 140),
    "maroon": (110, 25, 40),
    "olive": (100, 110, 45),
}

SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (255, 220, 190), (240, 195, 160), (225, 175, 135), (200, 150, 110),
    (170, 120, 85), (140, 95, 65), (105, 70, 48), (80, 55, 40),
)
HAIR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (20, 18, 16), (45, 32, 25), (80, 55, 35), (120, 85, 50), (170, 130, 80), (200, 170, 110),
    (140, 60, 30), (150, 150, 150), (215, 215, 210),
)
SHOE_RGB: tuple[int, int, int] = (35, 33, 32)

_TOP_WEIGHTS = {"black": 2.0, "white": 2.0, "grey": 2.0, "navy": 1.5, "blue": 1.5, "red": 1.0, "green": 1.0}
_BOTTOM_NAMES = ("denim", "denim", "denim", "black", "black", "navy", "grey", "khaki", "beige", "brown", "olive")

HEIGHT_RANGE_M = (1.50, 1.95)
BUILD_RANGE = (0.85, 1.25)
_APPEARANCE_KEYS = frozenset({"height_m", "build", "top", "bottom", "skin", "hair"})

# Segments, in the order body_segments returns them and segment_poses places them.
SEGMENT_NAMES: tuple[str, ...] = (
    "head", "hair", "neck", "torso", "pelvis",
    "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm", "left_hand", "right_hand",
    "left_thigh", "right_thigh", "left_shin", "right_shin", "left_foot", "right_foot",
)

_REACH_COMFORT = 0.99       # a target beyond this fraction of arm length triggers a posture change
_N_POSTURE = 33             # posture-search grid


def _rgb(value: object, what: str) -> tuple[int, int, int]:
    """Colour name from COLOURS, '#rrggbb' or an (r, g, b) tuple → (r, g, b); unknown → ValueError."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name.startswith("#") and len(name) == 7:
            try:
                return (int(name[1:3], 16), int(name[3:5], 16), int(name[5:7], 16))
            except ValueError:
                pass
        if name in COLOURS:
            return COLOURS[name]
        raise ValueError(f"unknown colour name {value!r} for {what}; use '#rrggbb' or one of {sorted(COLOURS)}")
    rgb = tuple(int(c) for c in value)  # type: ignore[union-attr]
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"{what} colour must be three 0..255 ints, got {value!r}")
    return rgb  # type: ignore[return-value]


@dataclass(frozen=True)
class BodyShape:
    """A shopper's size and look. Segment lengths derive from ``height_m``, widths also from ``build``."""

    height_m: float
    build: float
    top_rgb: tuple[int, int, int]
    bottom_rgb: tuple[int, int, int]
    skin_rgb: tuple[int, int, int]
    hair_rgb: tuple[int, int, int]

    def __post_init__(self) -> None:
        lo, hi = HEIGHT_RANGE_M
        if not lo - 1e-9 <= self.height_m <= hi + 1e-9:
            raise ValueError(f"height_m {self.height_m} outside {HEIGHT_RANGE_M}")
        lo, hi = BUILD_RANGE
        if not lo - 1e-9 <= self.build <= hi + 1e-9:
            raise ValueError(f"build {self.build} outside {BUILD_RANGE}")

    # Lengths along the body (metres), Drillis & Contini fractions of height.
    @property
    def hip_height_m(self) -> float:
        return 0.530 * self.height_m

    @property
    def shoulder_height_m(self) -> float:
        return 0.818 * self.height_m

    @property
    def ankle_height_m(self) -> float:
        return 0.039 * self.height_m

    @property
    def upper_arm_m(self) -> float:
        return 0.188 * self.height_m

    @property
    def forearm_m(self) -> float:
        return 0.145 * self.height_m

    @property
    def arm_reach_m(self) -> float:
        """Shoulder to wrist, arm straight."""
        return self.upper_arm_m + self.forearm_m

    @property
    def hand_offset_m(self) -> float:
        """Wrist to the centre of the hand, along the forearm."""
        return 0.045 * self.height_m

    @property
    def thigh_m(self) -> float:
        return 0.245 * self.height_m

    @property
    def shin_m(self) -> float:
        return 0.246 * self.height_m

    @property
    def spine_m(self) -> float:
        """Pelvis centre (hip-joint level) up to the shoulder line."""
        return self.shoulder_height_m - self.hip_height_m

    @property
    def neck_base_m(self) -> float:
        """Pelvis centre up to the base of the neck, along the spine."""
        return self.spine_m + 0.004 * self.height_m

    @property
    def neck_vec_m(self) -> tuple[float, float]:
        """(forward, up) from the neck base to the head centre, torso upright."""
        return (0.012 * self.height_m, 0.938 * self.height_m - self.hip_height_m - self.neck_base_m)

    @property
    def head_radii_m(self) -> tuple[float, float, float]:
        """Head ellipsoid half-axes (front-back, side-side, up-down)."""
        return (0.056 * self.height_m, 0.046 * self.height_m, 0.062 * self.height_m)

    @property
    def shoulder_half_width_m(self) -> float:
        """Spine to each shoulder joint."""
        return 0.112 * self.height_m * self.build

    @property
    def hip_half_width_m(self) -> float:
        """Pelvis centre to each hip joint (and each ankle, standing)."""
        return 0.052 * self.height_m * self.build

    @property
    def limb_scale(self) -> float:
        """Limb girth factor: limbs thicken more slowly than the trunk widens."""
        return math.sqrt(self.build)


def sample_shape(rng: np.random.Generator, appearance: dict | None = None) -> BodyShape:
    """A random plausible shape; keys in ``appearance`` override the draw.

    Keys: ``height_m``, ``build``, ``top``, ``bottom``, ``skin``, ``hair``; colours are names from
    COLOURS, '#rrggbb' or (r, g, b). Every value is drawn whatever is overridden, so a seed gives the
    same remaining draws with or without overrides. Unknown key or colour name → ValueError.
    """
    appearance = dict(appearance or {})
    unknown = set(appearance) - _APPEARANCE_KEYS
    if unknown:
        raise ValueError(f"unknown appearance keys {sorted(unknown)}; known: {sorted(_APPEARANCE_KEYS)}")
    height = float(np.clip(rng.normal(1.71, 0.085), *HEIGHT_RANGE_M))
    build = float(np.clip(rng.normal(1.03, 0.08), *BUILD_RANGE))
    names = list(COLOURS)
    w = np.array([_TOP_WEIGHTS.get(n, 0.6) for n in names])
    top = names[int(rng.choice(len(names), p=w / w.sum()))]
    bottom = _BOTTOM_NAMES[int(rng.integers(len(_BOTTOM_NAMES)))]
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    hair = HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))]
    return BodyShape(
        height_m=float(appearance.get("height_m", height)),
        build=float(appearance.get("build", build)),
        top_rgb=_rgb(appearance.get("top", top), "top"),
        bottom_rgb=_rgb(appearance.get("bottom", bottom), "bottom"),
        skin_rgb=_rgb(appearance.get("skin", skin), "skin"),
        hair_rgb=_rgb(appearance.get("hair", hair), "hair"),
    )


@dataclass
class BodyPose:
    """Where a body stands and what it is doing; targets are world xyz for the wrists."""

    x: float
    y: float
    heading_rad: float
    walk_phase: float = 0.0
    walk_amount: float = 0.0
    left_hand_target: np.ndarray | None = None
    right_hand_target: np.ndarray | None = None
    lean: float = 0.0


@dataclass
class Skeleton:
    """A solved body in world coordinates.

    ``keypoints`` is 17×3 in COCO order. ``joints`` holds 3-vectors: 'pelvis' (centre at hip-joint
    level), 'neck' (base), 'head' (centre), 'left/right_' + shoulder, elbow, wrist, hand (centre,
    beyond the wrist), hip, knee, ankle, and the face points. ``frames`` holds 3×3 world rotations
    (columns: forward, left, up) of 'pelvis', 'torso', 'head', 'left_foot', 'right_foot'.
    """

    keypoints: np.ndarray
    joints: dict[str, np.ndarray]
    frames: dict[str, np.ndarray] = field(default_factory=dict)


_JOINTS: tuple[str, ...] = (
    "pelvis", "neck", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
)
_J = {n: i for i, n in enumerate(_JOINTS)}
_KP_INDEX = np.array([_J[n] for n in COCO_KEYPOINTS])
_FRAMES: tuple[str, ...] = ("pelvis", "torso", "head", "left_foot", "right_foot")

# Face points as directions from the head centre in the head frame (x face, y left, z up); they are
# pushed out onto the head ellipsoid.
_FACE_DIRS = np.array([
    [1.0, 0.0, -0.12],      # nose
    [0.86, 0.34, 0.14],     # left eye
    [0.86, -0.34, 0.14],    # right eye
    [-0.08, 1.0, 0.02],     # left ear
    [-0.08, -1.0, 0.02],    # right ear
])


@functools.lru_cache(maxsize=4096)
def _face_local(shape: BodyShape) -> np.ndarray:
    """5×3 face points on the head ellipsoid, head frame."""
    r = np.array(shape.head_radii_m)
    d = _FACE_DIRS / np.linalg.norm(_FACE_DIRS, axis=1, keepdims=True)
    return d / np.sqrt(((d / r) ** 2).sum(axis=1, keepdims=True))


def _rot_yz(lean: float, twist: float) -> np.ndarray:
    """R_y(lean) @ R_z(twist): twist about the spine, then pitch forward (+z toward +x)."""
    cl, sl, ct, st = math.cos(lean), math.sin(lean), math.cos(twist), math.sin(twist)
    return np.array([[cl * ct, -cl * st, sl], [st, ct, 0.0], [-sl * ct, sl * st, cl]])


def _two_link(s: tuple, t: tuple, a: float, b: float, pole: tuple) -> tuple[tuple, tuple]:
    """Analytic two-link IK from root ``s`` towards ``t`` (lengths a, b); bend towards ``pole``.

    Returns (middle joint, end). An unreachable target is approached along the line s→t as far as
    the chain allows (fully stretched, or fully folded when too near).
    """
    dx, dy, dz = t[0] - s[0], t[1] - s[1], t[2] - s[2]
    d = math.sqrt(dx * dx + dy * dy + dz * dz)
    if d < 1e-9:
        dx, dy, dz, d = -pole[0], -pole[1], -pole[2], 1.0
        d = math.sqrt(dx * dx + dy * dy + dz * dz)
    ux, uy, uz = dx / d, dy / d, dz / d
    dc = min(max(d, abs(a - b) + 1e-6), a + b)
    x = (a * a - b * b + dc * dc) / (2.0 * dc)
    r = math.sqrt(max(a * a - x * x, 0.0))
    k = pole[0] * ux + pole[1] * uy + pole[2] * uz
    nx, ny, nz = pole[0] - k * ux, pole[1] - k * uy, pole[2] - k * uz
    nn = math.sqrt(nx * nx + ny * ny + nz * nz)
    if nn < 1e-9:                                    # pole along the chain: any perpendicular
        nx, ny, nz = (-uy, ux, 0.0) if abs(uz) < 0.9 else (0.0, -uz, uy)
        nn = math.sqrt(nx * nx + ny * ny + nz * nz)
    nx, ny, nz = nx / nn, ny / nn, nz / nn
    mid = (s[0] + x * ux + r * nx, s[1] + x * uy + r * ny, s[2] + x * uz + r * nz)
    end = (s[0] + dc * ux, s[1] + dc * uy, s[2] + dc * uz)
    return mid, end


_HAND_RADII = (0.027, 0.012, 0.05)     # hand ellipsoid half-axes / H: across the palm, thickness, length
_FLOOR_CLEAR_M = 0.005


def _hand_dir(shape: BodyShape, wrist: tuple, u: tuple, left: tuple) -> tuple:
    """The hand's direction: along the forearm, unless the hand would then dip below the floor;
    then the wrist bends it up towards horizontal (same azimuth) until it clears."""
    H = shape.height_m
    rw, rt, rl = (r * H for r in _HAND_RADII)
    rw *= shape.limb_scale
    rt *= shape.limb_scale
    ho = shape.hand_offset_m

    def lowest(d: tuple) -> float:
        # Hand frame as in segment_poses: z = d, x = left × d, y = z × x; only z-components matter.
        xx, xy, xz = left[1] * d[2] - left[2] * d[1], left[2] * d[0] - left[0] * d[2], left[0] * d[1] - left[1] * d[0]
        n = math.sqrt(xx * xx + xy * xy + xz * xz) or 1.0
        xx, xy, xz = xx / n, xy / n, xz / n
        yz = d[0] * xy - d[1] * xx
        return wrist[2] + ho * d[2] - math.sqrt((rl * d[2]) ** 2 + (rw * xz) ** 2 + (rt * yz) ** 2)

    if u[2] >= 0.0 or wrist[2] - (ho + rl) > _FLOOR_CLEAR_M or lowest(u) >= _FLOOR_CLEAR_M:
        return u
    h = math.hypot(u[0], u[1])
    hx, hy = (u[0] / h, u[1] / h) if h > 1e-6 else (1.0, 0.0)
    elev0 = math.atan2(u[2], h)
    d = u
    for k in range(1, 13):
        e = elev0 * (1.0 - k / 12.0)
        d = (hx * math.cos(e), hy * math.cos(e), math.sin(e))
        if lowest(d) >= _FLOOR_CLEAR_M:
            break
    return d


def _posture(s: np.ndarray, high: float, twist_sign: float, H: float, hip_m: float) -> tuple:
    """Posture adjustments for effort ``s`` in [0, 1]: (lean, crouch, back, twist, rise, shrug).

    ``high`` in [0, 1] blends two ways of reaching: for low or far targets (0) bend forward at the
    hips, then crouch (pelvis down and back); for high ones (1) lean a little, rise on tiptoe and
    lift the shoulder. Both twist the reaching shoulder forward.
    """
    lean = (1.3 - 1.0 * high) * s
    crouch = (1.0 - high) * 0.45 * hip_m * np.clip((s - 0.3) / 0.7, 0.0, 1.0)
    back = 0.35 * crouch
    twist = twist_sign * 0.4 * s
    rise = high * 0.04 * H * s
    shrug = high * 0.015 * H * s
    return lean, crouch, back, twist, rise, shrug


def solve_skeleton(shape: BodyShape, pose: BodyPose) -> Skeleton:
    """Forward kinematics with arm and leg IK; world keypoints, joints and frames.

    Walking (``walk_phase``, ``walk_amount``) swings the feet along a step of ±0.18 H with the
    swing foot lifted, arms counter-swinging; the pelvis drops so the stance foot stays planted.
    A hand target pulls that wrist there by two-link IK (elbow down and out). When a target lies
    beyond 99 % of the arm, the smallest posture change that brings it in reach is chosen: a lean
    at the hips then a crouch for low or far targets, tiptoe and shoulder lift for high ones, and a
    twist of the reaching shoulder forward. An unreachable target is approached along the line.
    ``pose.lean`` adds to the lean. A free arm hangs (or swings) whatever the other arm does.
    """
    H = shape.height_m
    hip_m, ankle_m = shape.hip_height_m, shape.ankle_height_m
    a_up, a_lo = shape.upper_arm_m, shape.forearm_m
    thigh, shin = shape.thigh_m, shape.shin_m
    sh_w, hip_w = shape.shoulder_half_width_m, shape.hip_half_width_m
    spine = shape.spine_m

    ch, sh = math.cos(pose.heading_rad), math.sin(pose.heading_rad)
    R_yaw = np.array([[ch, -sh, 0.0], [sh, ch, 0.0], [0.0, 0.0, 1.0]])
    root = np.array([pose.x, pose.y, 0.0])

    # Targets into the body frame.
    targets: dict[int, np.ndarray] = {}
    for side, t in ((1, pose.left_hand_target), (-1, pose.right_hand_target)):
        if t is not None:
            targets[side] = (np.asarray(t, dtype=float) - root) @ R_yaw

    # Gait: ankles forward/back, swing foot lifted; the pelvis height keeps the stance leg planted.
    w = min(max(float(pose.walk_amount), 0.0), 1.0)
    sp, cp = math.sin(pose.walk_phase), math.cos(pose.walk_phase)
    step = 0.18 * H * w
    ankle_fwd = {1: step * sp, -1: -step * sp}
    ankle_lift = {1: 0.07 * H * w * max(0.0, cp) ** 2, -1: 0.07 * H * w * max(0.0, -cp) ** 2}
    leg = 0.997 * (thigh + shin)
    z_gait = min(ankle_m + ankle_lift[k] + math.sqrt(max(leg * leg - ankle_fwd[k] ** 2, 0.0)) for k in (1, -1))
    z_gait = min(z_gait, hip_m)

    base_lean = float(pose.lean) + 0.06 * w
    zs = spine
    reach_ok = _REACH_COMFORT * (a_up + a_lo)

    # Posture search, only when some target is beyond comfortable reach of the neutral posture:
    # the least effort s on a grid that brings every target in reach, interpolated inside its cell
    # so the posture moves smoothly as a target moves.
    lean_a = crouch = back = twist = rise = shrug = 0.0
    if targets:
        twist_sign = 0.0 if len(targets) == 2 else -float(next(iter(targets)))
        cl0, sl0 = math.cos(base_lean), math.sin(base_lean)
        worst, t_worst = -math.inf, None
        for side, t in targets.items():
            e = math.dist(t, (zs * sl0, side * sh_w, z_gait + zs * cl0)) - reach_ok
            if e > worst:
                worst, t_worst = e, t
        if worst > 0.0:
            u = min(max((t_worst[2] - z_gait - zs * cl0 + 0.05 * H) / (0.15 * H), 0.0), 1.0)
            high = u * u * (3.0 - 2.0 * u)
            s_grid = np.linspace(0.0, 1.0, _N_POSTURE)
            lg, cg, bg, tg, rg, sg = _posture(s_grid, high, twist_sign, H, hip_m)
            th = base_lean + lg
            pz = np.minimum(z_gait, hip_m - cg) + rg
            cth, sth, ctw, stw = np.cos(th), np.sin(th), np.cos(tg), np.sin(tg)
            zz = zs + sg
            excess = np.full(_N_POSTURE, -np.inf)
            for side, t in targets.items():
                y = side * sh_w
                sx = -bg - y * stw * cth + zz * sth
                sy = y * ctw
                sz = pz + y * stw * sth + zz * cth
                dist = np.sqrt((t[0] - sx) ** 2 + (t[1] - sy) ** 2 + (t[2] - sz) ** 2)
                excess = np.maximum(excess, dist - reach_ok)
            ok = np.flatnonzero(excess <= 0.0)
            if ok.size:
                k = int(ok[0])
                best_s = float(s_grid[k])
                if k > 0:
                    e0, e1 = float(excess[k - 1]), float(excess[k])
                    best_s -= (best_s - float(s_grid[k - 1])) * (-e1) / (e0 - e1)
            else:
                best_s = float(s_grid[int(np.argmin(excess))])
            lean_a, crouch, back, twist, rise, shrug = (
                float(v) for v in _posture(np.float64(best_s), high, twist_sign, H, hip_m))

    lean = base_lean + lean_a
    pz = min(z_gait, hip_m - crouch) + rise
    pelvis = (-back, 0.0, pz)
    R_t = _rot_yz(lean, twist)

    def torso_pt(x: float, y: float, z: float) -> tuple:
        p = R_t @ np.array([x, y, z])
        return (pelvis[0] + p[0], pelvis[1] + p[1], pelvis[2] + p[2])

    neck = torso_pt(0.0, 0.0, shape.neck_base_m)
    nf, nu = shape.neck_vec_m
    R_neck = _rot_yz(0.75 * lean, twist)
    hv = R_neck @ np.array([nf, 0.0, nu])
    head = (neck[0] + hv[0], neck[1] + hv[1], neck[2] + hv[2])
    R_head = _rot_yz(0.55 * lean, twist)

    # Arms.
    pts: dict[str, tuple] = {"pelvis": pelvis, "neck": neck, "head": head}
    swing = 0.35 * w * sp
    for side, name in ((1, "left"), (-1, "right")):
        S = torso_pt(0.0, side * sh_w, zs + shrug)
        pts[name + "_shoulder"] = S
        if side in targets:
            t = targets[side]
            pole = (-0.25, side * 0.8, -1.0)
            E, Wr = _two_link(S, (t[0], t[1], t[2]), a_up, a_lo, pole)
        else:
            fwd = -side * swing                     # arm swings against the same-side leg
            flex = 0.35 + 0.25 * w * max(0.0, fwd) / 0.35
            beta = 0.13
            cb, sb = math.cos(beta), math.sin(beta)
            E = (S[0] + a_up * math.sin(fwd) * cb, S[1] + side * a_up * sb, S[2] - a_up * math.cos(fwd) * cb)
            f2 = fwd + flex
            Wr = (E[0] + a_lo * math.sin(f2) * cb, E[1] + side * a_lo * sb, E[2] - a_lo * math.cos(f2) * cb)
        u = _hand_dir(shape, Wr, ((Wr[0] - E[0]) / a_lo, (Wr[1] - E[1]) / a_lo, (Wr[2] - E[2]) / a_lo),
                      (R_t[0, 1], R_t[1, 1], R_t[2, 1]))
        ho = shape.hand_offset_m
        pts[name + "_elbow"] = E
        pts[name + "_wrist"] = Wr
        pts[name + "_hand"] = (Wr[0] + ho * u[0], Wr[1] + ho * u[1], Wr[2] + ho * u[2])

    # Legs: hips on the pelvis, ankles planted by the gait, knees forward.
    foot_pitch = math.asin(min(rise / (0.115 * H), 0.9))    # on tiptoe: heel up, toes stay down
    for side, name in ((1, "left"), (-1, "right")):
        hp = (pelvis[0], side * hip_w, pelvis[2])
        A = (ankle_fwd[side], side * hip_w, ankle_m + ankle_lift[side] + rise)
        K, A = _two_link(hp, A, thigh, shin, (1.0, 0.0, 0.0))
        pts[name + "_hip"] = hp
        pts[name + "_knee"] = K
        pts[name + "_ankle"] = A

    J = np.empty((len(_JOINTS), 3))
    for n, p in pts.items():
        J[_J[n]] = p
    J[_J["nose"]:] = np.asarray(head) + _face_local(shape) @ R_head.T

    # Body frame → world.
    Jw = J @ R_yaw.T + root
    R_foot = _rot_yz(foot_pitch, 0.0)
    R_pelvis = _rot_yz(0.35 * lean, 0.0)            # the pelvis tips with a bend; hip joints lie on its axis
    frames_b = np.stack([R_pelvis, R_t, R_head, R_foot, R_foot])
    frames_w = R_yaw @ frames_b
    joints = {n: Jw[i] for i, n in enumerate(_JOINTS)}
    return Skeleton(keypoints=Jw[_KP_INDEX], joints=joints, frames=dict(zip(_FRAMES, frames_w)))


def reach_error_m(shape: BodyShape, pose: BodyPose, skel: Skeleton) -> dict[str, float]:
    """Distance (m) from each wrist to its target, for the targets given: keys 'left', 'right'."""
    out: dict[str, float] = {}
    for name, t in (("left", pose.left_hand_target), ("right", pose.right_hand_target)):
        if t is not None:
            out[name] = float(np.linalg.norm(skel.joints[name + "_wrist"] - np.asarray(t, dtype=float)))
    return out


# ---------------------------------------------------------------------------------------------
# Meshes


@dataclass(frozen=True)
class Segment:
    """One rigid part: a low-poly mesh in its local frame and a flat colour."""

    name: str
    mesh: trimesh.Trimesh
    rgb: tuple[int, int, int]


def _sphere_dirs(n_around: int, n_rings: int) -> np.ndarray:
    """Unit vectors: two poles and ``n_rings`` latitude rings of ``n_around`` points."""
    lat = np.linspace(0.0, math.pi, n_rings + 2)[1:-1]
    lon = np.linspace(0.0, 2 * math.pi, n_around, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    ring = np.stack([np.sin(la) * np.cos(lo), np.sin(la) * np.sin(lo), np.cos(la)], axis=-1).reshape(-1, 3)
    return np.vstack([[0.0, 0.0, 1.0], ring, [0.0, 0.0, -1.0]])


def _hull(points: np.ndarray) -> trimesh.Trimesh:
    return trimesh.convex.convex_hull(np.asarray(points, dtype=float))


def _capsule(r0: float, r1: float, length_m: float) -> trimesh.Trimesh:
    """Tapered capsule from z=0 (radius r0) to z=length_m (radius r1)."""
    d = _sphere_dirs(10, 5)
    return _hull(np.vstack([d * r0, d * r1 + [0.0, 0.0, length_m]]))


def _ellipsoid(radii: tuple[float, float, float], centre=(0.0, 0.0, 0.0), n_around: int = 12,
               n_rings: int = 7) -> trimesh.Trimesh:
    return _hull(_sphere_dirs(n_around, n_rings) * np.asarray(radii) + np.asarray(centre))


def _rings(rings: list[tuple[float, float, float, float]], n: int = 14, power: float = 3.0) -> trimesh.Trimesh:
    """Hull of superellipse rings (z, half-depth x, half-width y, x offset): a rounded trunk."""
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    cx = np.sign(c) * np.abs(c) ** (2.0 / power)
    sy = np.sign(s) * np.abs(s) ** (2.0 / power)
    pts = [np.stack([x0 + hd * cx, hw * sy, np.full(n, z)], axis=1) for z, hd, hw, x0 in rings]
    return _hull(np.vstack(pts))


def body_segments(shape: BodyShape) -> list[Segment]:
    """The rigid parts, in SEGMENT_NAMES order, each in its local frame.

    Frames: head and hair at the head centre (x face, z up); neck, arms, legs along local +z from
    the proximal joint; hand from the wrist along the forearm (thin across local y); torso and
    pelvis at the pelvis centre (x forward, y left, z up the spine); feet at the ankle. Colours: top
    on torso and upper arms, bottom on pelvis and legs, skin on head, neck, forearms and hands.
    """
    H, b, g = shape.height_m, shape.build, shape.limb_scale
    sb = math.sqrt(b)
    top, bottom, skin = shape.top_rgb, shape.bottom_rgb, shape.skin_rgb
    hr = np.array(shape.head_radii_m)

    head = _ellipsoid(tuple(hr))
    d = _sphere_dirs(14, 9)
    keep = ((d[:, 2] > -0.15) & (d[:, 0] < 0.35)) | (d[:, 2] > 0.5) | ((d[:, 0] < -0.2) & (d[:, 2] > -0.6))
    hair = _hull(d[keep] * hr * [1.07, 1.08, 1.09] + [-0.004 * H, 0.0, 0.004 * H])

    nf, nu = shape.neck_vec_m
    neck = _capsule(0.030 * H * g, 0.027 * H * g, math.hypot(nf, nu))

    z_sh = shape.spine_m
    torso = _rings([
        (0.00 * H, 0.055 * H * sb, 0.083 * H * b, 0.0),
        (0.09 * H, 0.053 * H * sb, 0.081 * H * b, 0.0),
        (0.19 * H, 0.062 * H * sb, 0.094 * H * b, 0.004 * H),
        (z_sh - 0.022 * H, 0.056 * H * sb, 0.108 * H * b, 0.0),
        (z_sh + 0.013 * H, 0.040 * H * sb, 0.068 * H * b, -0.004 * H),
    ])
    pelvis = _rings([
        (0.075 * H, 0.056 * H * sb, 0.086 * H * b, 0.0),
        (0.02 * H, 0.062 * H * sb, 0.097 * H * b, -0.003 * H),
        (-0.035 * H, 0.060 * H * sb, 0.092 * H * b, -0.006 * H),
        (-0.075 * H, 0.045 * H * sb, 0.055 * H * b, -0.004 * H),
    ])

    upper_arm = _capsule(0.026 * H * g, 0.020 * H * g, shape.upper_arm_m)
    forearm = _capsule(0.019 * H * g, 0.015 * H * g, shape.forearm_m)
    hw, ht, hl = _HAND_RADII
    hand = _ellipsoid((hw * H * g, ht * H * g, hl * H), (0.0, 0.0, shape.hand_offset_m), 8, 5)
    thigh = _capsule(0.040 * H * g, 0.027 * H * g, shape.thigh_m)
    shin = _capsule(0.026 * H * g, 0.019 * H * g, shape.shin_m)

    ha = shape.ankle_height_m
    t = np.linspace(0.0, 2 * math.pi, 12, endpoint=False)
    foot_pts = []
    for z, x0, x1, hw in ((-ha, -0.035 * H, 0.118 * H, 0.029 * H), (-ha + 0.022 * H, -0.035 * H, 0.112 * H, 0.027 * H),
                          (0.006 * H, -0.022 * H, 0.028 * H, 0.021 * H)):
        foot_pts.append(np.stack([(x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(t), hw * g * np.sin(t), np.full(12, z)], 1))
    foot = _hull(np.vstack(foot_pts))

    meshes = {
        "head": (head, skin), "hair": (hair, shape.hair_rgb), "neck": (neck, skin),
        "torso": (torso, top), "pelvis": (pelvis, bottom),
        "left_upper_arm": (upper_arm, top), "right_upper_arm": (upper_arm.copy(), top),
        "left_forearm": (forearm, skin), "right_forearm": (forearm.copy(), skin),
        "left_hand": (hand, skin), "right_hand": (hand.copy(), skin),
        "left_thigh": (thigh, bottom), "right_thigh": (thigh.copy(), bottom),
        "left_shin": (shin, bottom), "right_shin": (shin.copy(), bottom),
        "left_foot": (foot, SHOE_RGB), "right_foot": (foot.copy(), SHOE_RGB),
    }
    return [Segment(n, meshes[n][0], meshes[n][1]) for n in SEGMENT_NAMES]


# Limbs placed by two joints: (segment, proximal joint, distal joint, frame giving the side axis).
_LIMBS: tuple[tuple[str, str, str, str], ...] = (
    ("neck", "neck", "head", "torso"),
    ("left_upper_arm", "left_shoulder", "left_elbow", "torso"),
    ("right_upper_arm", "right_shoulder", "right_elbow", "torso"),
    ("left_forearm", "left_elbow", "left_wrist", "torso"),
    ("right_forearm", "right_elbow", "right_wrist", "torso"),
    ("left_hand", "left_wrist", "left_hand", "torso"),
    ("right_hand", "right_wrist", "right_hand", "torso"),
    ("left_thigh", "left_hip", "left_knee", "pelvis"),
    ("right_thigh", "right_hip", "right_knee", "pelvis"),
    ("left_shin", "left_knee", "left_ankle", "pelvis"),
    ("right_shin", "right_knee", "right_ankle", "pelvis"),
)
_SEG_INDEX = {n: i for i, n in enumerate(SEGMENT_NAMES)}
_LIMB_SEG = np.array([_SEG_INDEX[s] for s, _, _, _ in _LIMBS])
_LIMB_A = np.array([_J[a] for _, a, _, _ in _LIMBS])
_LIMB_B = np.array([_J[b] for _, _, b, _ in _LIMBS])
_LIMB_REF = np.array([_FRAMES.index(f) for _, _, _, f in _LIMBS])
_FRAME_SEGS = (("head", "head", "head"), ("hair", "head", "head"), ("torso", "torso", "pelvis"),
               ("pelvis", "pelvis", "pelvis"), ("left_foot", "left_foot", "left_ankle"),
               ("right_foot", "right_foot", "right_ankle"))
_FS_SEG = np.array([_SEG_INDEX[s] for s, _, _ in _FRAME_SEGS])
_FS_FRAME = np.array([_FRAMES.index(f) for _, f, _ in _FRAME_SEGS])
_FS_JOINT = np.array([_J[j] for _, _, j in _FRAME_SEGS])


def segment_poses(shape: BodyShape, skel: Skeleton) -> list[np.ndarray]:
    """One 4×4 world pose per segment of ``body_segments(shape)``, same order.

    Limbs: origin at the proximal joint, local +z onto the bone, local y as near the parent
    frame's left axis as the bone allows (so hands stay thin across the body).
    """
    if not skel.frames:
        raise ValueError("skeleton has no frames; build it with solve_skeleton")
    J = np.stack([skel.joints[n] for n in _JOINTS])
    F = np.stack([skel.frames[n] for n in _FRAMES])
    T = np.zeros((len(SEGMENT_NAMES), 4, 4))
    T[:, 3, 3] = 1.0

    A, B = J[_LIMB_A], J[_LIMB_B]
    z = B - A
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    left = F[_LIMB_REF, :, 1]
    x = np.cross(left, z)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    bad = n[:, 0] < 1e-6                              # bone along the side axis: use the up axis
    if bad.any():
        x[bad] = np.cross(F[_LIMB_REF[bad], :, 2], z[bad])
        n[bad] = np.linalg.norm(x[bad], axis=1, keepdims=True)
    x /= n
    y = np.cross(z, x)
    T[_LIMB_SEG, :3, :3] = np.stack([x, y, z], axis=-1)
    T[_LIMB_SEG, :3, 3] = A

    T[_FS_SEG, :3, :3] = F[_FS_FRAME]
    T[_FS_SEG, :3, 3] = J[_FS_JOINT]
    return list(T)
