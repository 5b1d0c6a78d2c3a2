"""The store description: what an installer writes down for a real store.

``load_store(path) -> StoreSpec`` reads ``conf/store/*.yaml``, validates it and derives what every
consumer needs (bins with their 3-D extents, load cells, camera matrices). A bad file raises one
``SpecError`` naming the file, the field and what was expected.

World frame: metres, origin at a floor corner, x along the floor's width, y along its depth, z up.
A shelf unit's local frame has x along its width (bin 0 at its −x end: on the right of a shopper
facing the unit), y towards its front (the aisle side), z up; ``yaw_deg`` turns it about z.
"""
from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SHELF_THICKNESS_M = 0.02


class SpecError(ValueError):
    """A store or scenario file that cannot be used: names the file, the field and the expectation."""

    def __init__(self, path: str | Path, field: str, expected: str, got: Any = None):
        self.path, self.field, self.expected, self.got = str(path), field, expected, got
        got_txt = "" if got is None else f", got {got!r}"
        super().__init__(f"{path}: field '{field}': expected {expected}{got_txt}")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Vec2 = tuple[float, float]
Vec3 = tuple[float, float, float]
Positive = Annotated[float, Field(gt=0)]


class Floor(_Model):
    width_m: Positive
    depth_m: Positive


class Product(_Model):
    """One SKU of the catalog. ``size_m`` is width (along the shelf), depth (into it), height."""

    sku: str
    name: str
    size_m: tuple[Positive, Positive, Positive]
    mass_g: Positive
    price: Annotated[float, Field(ge=0)]
    shape: Literal["box", "can", "bottle", "bag"] = "box"
    colour: str = "#808080"
    label_colour: str = "#ffffff"
    lookalike: str | None = None

    @field_validator("colour", "label_colour")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not (isinstance(v, str) and len(v) == 7 and v[0] == "#" and all(c in "0123456789abcdefABCDEF" for c in v[1:])):
            raise ValueError("a colour '#rrggbb'")
        return v.lower()

    def rgb(self, which: str = "colour") -> tuple[int, int, int]:
        h = getattr(self, which)
        return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)


class ShelfLevel(_Model):
    z_m: Annotated[float, Field(ge=0)]
    bins: Annotated[int, Field(ge=1, le=12)]
    # items that sit across two plates: bin index → (share of its load on the left neighbour's
    # plate, share on the right neighbour's), e.g. {1: [0.17, 0.24]}
    straddle: dict[int, tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]]] = {}

    @model_validator(mode="after")
    def _straddle_in_range(self) -> "ShelfLevel":
        for j, (left, right) in self.straddle.items():
            if not 0 <= j < self.bins:
                raise ValueError(f"straddle: bin {j} is not one of the shelf's {self.bins} bins")
            if (left and j == 0) or (right and j == self.bins - 1):
                raise ValueError(f"straddle: bin {j} has no neighbour on that side")
            if left + right >= 1:
                raise ValueError(f"straddle: bin {j} rests {left + right:g} of its load on its neighbours (expected < 1)")
        return self


class ShelfUnit(_Model):
    id: str
    position_m: Vec2
    yaw_deg: float = 0.0
    size_m: tuple[Positive, Positive, Positive]
    shelves: tuple[ShelfLevel, ...]
    load_cells: Literal["per_bin", "per_shelf", "none"] = "per_bin"

    @property
    def width_m(self) -> float:
        return self.size_m[0]

    @property
    def depth_m(self) -> float:
        return self.size_m[1]

    @property
    def height_m(self) -> float:
        return self.size_m[2]

    def local_to_world(self) -> np.ndarray:
        """4×4 transform from the unit's local frame to the world."""
        a = math.radians(self.yaw_deg)
        T = np.eye(4)
        T[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
        T[:2, 3] = self.position_m
        return T

    def footprint_xy(self) -> np.ndarray:
        """The unit's 4 floor corners, world xy (4×2)."""
        w, d = self.width_m / 2, self.depth_m / 2
        pts = np.array([[-w, -d, 0, 1], [w, -d, 0, 1], [w, d, 0, 1], [-w, d, 0, 1]])
        return (self.local_to_world() @ pts.T).T[:, :2]

    def front_normal(self) -> np.ndarray:
        a = math.radians(self.yaw_deg)
        return np.array([-math.sin(a), math.cos(a)])

    def world_to_local(self) -> np.ndarray:
        """4×4 transform from the world to the unit's local frame."""
        return np.linalg.inv(self.local_to_world())

    def distance_to(self, p: np.ndarray) -> float:
        """Distance from a world point to the unit's box (0 inside)."""
        half_w, half_d = self.width_m / 2, self.depth_m / 2
        return box_distance(self._inverse, p, np.array([-half_w, -half_d, 0.0]), np.array([half_w, half_d, self.height_m]))

    @cached_property
    def _inverse(self) -> np.ndarray:
        return self.world_to_local()


class Facing(_Model):
    sku: str
    facings: Annotated[int, Field(ge=1)] = 1
    depth: Annotated[int, Field(ge=1)] = 1


class Gate(_Model):
    id: str
    kind: Literal["entry", "exit"]
    a_m: Vec2
    b_m: Vec2

    def distance_to(self, p: np.ndarray) -> float:
        """Distance of a floor point (world xy) to the gate's line segment."""
        a, b = np.array(self.a_m), np.array(self.b_m)
        ab = b - a
        s = np.clip(float((np.asarray(p) - a) @ ab / (ab @ ab)), 0.0, 1.0)
        return float(np.linalg.norm(np.asarray(p) - (a + s * ab)))


class Intrinsics(_Model):
    fx: Positive
    fy: Positive
    cx: float
    cy: float


class Camera(_Model):
    id: str
    position_m: Vec3
    look_at_m: Vec3
    resolution: tuple[Annotated[int, Field(ge=16)], Annotated[int, Field(ge=16)]] = (640, 480)
    hfov_deg: Annotated[float, Field(gt=10, lt=170)] | None = None
    intrinsics: Intrinsics | None = None
    distortion: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    # pinhole: OpenCV's model, distortion = (k1, k2, p1, p2, k3); fisheye: OpenCV's fisheye
    # (equidistant) model r = f·θ(1 + k1θ² + k2θ⁴ + k3θ⁶ + k4θ⁸), distortion = (k1, k2, k3, k4, 0), and
    # hfov_deg is the angle across the image's width (f = half the width over half that angle in radians)
    lens: Literal["pinhole", "fisheye"] = "pinhole"
    fps: Annotated[float, Field(gt=0, le=120)] = 10.0

    @property
    def width(self) -> int:
        return self.resolution[0]

    @property
    def height(self) -> int:
        return self.resolution[1]

    @cached_property
    def K(self) -> np.ndarray:
        if self.intrinsics is not None:
            i = self.intrinsics
            return np.array([[i.fx, 0, i.cx], [0, i.fy, i.cy], [0, 0, 1.0]])
        half = math.radians(self.hfov_deg or 90.0) / 2
        f = (self.width / 2) / (half if self.lens == "fisheye" else math.tan(half))
        return np.array([[f, 0, (self.width - 1) / 2], [0, f, (self.height - 1) / 2], [0, 0, 1.0]])

    @cached_property
    def R(self) -> np.ndarray:
        """World→camera rotation, OpenCV convention (x right, y down, z forward)."""
        eye, target = np.array(self.position_m), np.array(self.look_at_m)
        z = (target - eye) / np.linalg.norm(target - eye)
        # Image "down": world down for a tilted camera, world -y for one that looks straight down.
        down = np.array([0.0, 0.0, -1.0]) if abs(z[2]) < 0.95 else np.array([0.0, -1.0, 0.0])
        y = down - (down @ z) * z
        y /= np.linalg.norm(y)
        x = np.cross(y, z)
        return np.stack([x, y, z])

    @cached_property
    def t(self) -> np.ndarray:
        return -self.R @ np.array(self.position_m)

    @property
    def dist(self) -> np.ndarray:
        return np.array(self.distortion, dtype=float)


class Bin:
    """One bin: a shelf's share between two dividers. Derived, never written by hand."""

    __slots__ = ("id", "unit", "shelf", "index", "x0", "x1", "z0", "z1", "cell_id", "_inv")

    LIP_M = 0.05   # a hand this far out of the opening is still at the bin (the fingers reach past the wrist)

    def __init__(self, id: str, unit: ShelfUnit, shelf: int, index: int, x0: float, x1: float, z0: float, z1: float, cell_id: str | None):
        self.id, self.unit, self.shelf, self.index = id, unit, shelf, index
        self.x0, self.x1, self.z0, self.z1 = x0, x1, z0, z1
        self.cell_id = cell_id
        self._inv = unit.world_to_local()

    def distance_to(self, p: np.ndarray) -> float:
        """Distance from a world point to the bin's volume, its front lip included (0 inside)."""
        return box_distance(self._inv, p, *self.volume_local())

    def volume_local(self) -> tuple[np.ndarray, np.ndarray]:
        """The bin's volume, its front lip included, as the low and high corners in its unit's frame
        (``world_to_local`` takes a world point there)."""
        d = self.unit.depth_m / 2
        return np.array([self.x0, -d, self.z0]), np.array([self.x1, d + self.LIP_M, self.z1])

    def world_to_local(self) -> np.ndarray:
        return self._inv

    def beside_m(self, xy: np.ndarray) -> float:
        """How far to the side of the bin a floor point (world xy) stands: its distance along the
        shelf beyond the bin's two edges (0 anywhere in front of or behind the bin)."""
        x = float((self._inv @ np.array([xy[0], xy[1], 0.0, 1.0]))[0])
        return max(self.x0 - x, x - self.x1, 0.0)

    def front_xy(self) -> np.ndarray:
        """The middle of the bin's front edge on the floor plane (world xy): where a shopper faces it."""
        local = np.array([(self.x0 + self.x1) / 2, self.unit.depth_m / 2, 0.0, 1.0])
        return (self.unit.local_to_world() @ local)[:2]

    def front_corners_world(self) -> np.ndarray:
        """The 4 corners of the bin's front opening, world coordinates (4×3)."""
        return self.corners_world()[[2, 3, 6, 7]]   # corners_world: x, then y (-d, +d), then z

    @property
    def width_m(self) -> float:
        return self.x1 - self.x0

    def centre_world(self) -> np.ndarray:
        """Centre of the bin's open volume in world coordinates."""
        local = np.array([(self.x0 + self.x1) / 2, 0.0, (self.z0 + self.z1) / 2, 1.0])
        return (self.unit.local_to_world() @ local)[:3]

    def corners_world(self) -> np.ndarray:
        """The 8 corners of the bin's volume, world coordinates (8×3)."""
        d = self.unit.depth_m / 2
        pts = np.array([[x, y, z, 1.0] for x in (self.x0, self.x1) for y in (-d, d) for z in (self.z0, self.z1)])
        return (self.unit.local_to_world() @ pts.T).T[:, :3]

    def __repr__(self) -> str:
        return f"Bin({self.id})"


def box_distance(world_to_local: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Distance from a world point to a box given in a local frame by its corners (0 inside)."""
    local = (world_to_local @ np.append(p, 1.0))[:3]
    return float(np.linalg.norm(np.maximum(lo - local, 0) + np.maximum(local - hi, 0)))


class LoadCellSpec:
    __slots__ = ("id", "bins", "unit", "shelf")

    def __init__(self, id: str, bins: tuple[str, ...], unit: str, shelf: int):
        self.id, self.bins, self.unit, self.shelf = id, bins, unit, shelf

    def __repr__(self) -> str:
        return f"LoadCell({self.id}: {', '.join(self.bins)})"


class StoreSpec(_Model):
    name: str
    currency: str = "EUR"
    floor: Floor
    catalog: tuple[Product, ...]
    units: tuple[ShelfUnit, ...]
    planogram: dict[str, Facing]
    gates: tuple[Gate, ...]
    cameras: tuple[Camera, ...]

    @cached_property
    def products(self) -> dict[str, Product]:
        return {p.sku: p for p in self.catalog}

    @cached_property
    def unit_by_id(self) -> dict[str, ShelfUnit]:
        return {u.id: u for u in self.units}

    @cached_property
    def bins(self) -> dict[str, Bin]:
        out: dict[str, Bin] = {}
        for u in self.units:
            levels = sorted(u.shelves, key=lambda s: s.z_m)
            for i, s in enumerate(levels):
                z1 = (levels[i + 1].z_m - SHELF_THICKNESS_M) if i + 1 < len(levels) else u.height_m
                w = u.width_m / s.bins
                for j in range(s.bins):
                    bid = f"{u.id}/{i}/{j}"
                    cell = {"per_bin": bid, "per_shelf": f"{u.id}/{i}", "none": None}[u.load_cells]
                    out[bid] = Bin(bid, u, i, j, -u.width_m / 2 + j * w, -u.width_m / 2 + (j + 1) * w, s.z_m, z1, cell)
        return out

    @cached_property
    def load_cells(self) -> dict[str, LoadCellSpec]:
        cells: dict[str, list[Bin]] = {}
        for b in self.bins.values():
            if b.cell_id is not None:
                cells.setdefault(b.cell_id, []).append(b)
        return {cid: LoadCellSpec(cid, tuple(b.id for b in bs), bs[0].unit.id, bs[0].shelf) for cid, bs in cells.items()}

    @cached_property
    def cell_neighbours(self) -> dict[str, tuple[str, ...]]:
        """Each load cell's neighbours: the cells of the bins beside its own on the same shelf."""
        out: dict[str, set[str]] = {c: set() for c in self.load_cells}
        for b in self.bins.values():
            for j in (b.index - 1, b.index + 1):
                o = self.bins.get(f"{b.unit.id}/{b.shelf}/{j}")
                if b.cell_id and o is not None and o.cell_id and o.cell_id != b.cell_id:
                    out[b.cell_id].add(o.cell_id)
        return {c: tuple(sorted(v)) for c, v in out.items()}

    @cached_property
    def straddles(self) -> dict[str, dict[str, float]]:
        """Cell → {neighbouring cell: share of its load resting there}, from the shelves' ``straddle``
        (bins with load cells of their own only: a shelf-wide cell carries both sides anyway)."""
        out: dict[str, dict[str, float]] = {}
        for u in self.units:
            for i, level in enumerate(sorted(u.shelves, key=lambda s: s.z_m)):
                for j, shares in level.straddle.items():
                    b = self.bins[f"{u.id}/{i}/{j}"]
                    for k, share in zip((j - 1, j + 1), shares):
                        o = self.bins.get(f"{u.id}/{i}/{k}")
                        if share and o is not None and b.cell_id and o.cell_id and o.cell_id != b.cell_id:
                            out.setdefault(b.cell_id, {})[o.cell_id] = float(share)
        return out

    @cached_property
    def camera_by_id(self) -> dict[str, Camera]:
        return {c.id: c for c in self.cameras}

    def gate(self, kind: str) -> Gate:
        return next(g for g in self.gates if g.kind == kind)

    def gate_by_id(self, gate_id: str) -> Gate:
        return next(g for g in self.gates if g.id == gate_id)

    def distance_to_gate(self, kind: str, p: np.ndarray) -> float:
        """Distance of a floor point to the nearest gate of this kind (inf without one)."""
        return min((g.distance_to(p) for g in self.gates if g.kind == kind), default=float("inf"))

    def bins_of_sku(self, sku: str) -> list[str]:
        return [b for b, f in self.planogram.items() if f.sku == sku]


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _check_semantics(spec: StoreSpec, path: str) -> None:
    seen: set[str] = set()
    for i, p in enumerate(spec.catalog):
        if p.sku in seen:
            raise SpecError(path, f"catalog[{i}].sku", "a unique SKU", p.sku)
        seen.add(p.sku)
    groups: dict[str, Product] = {}
    for i, p in enumerate(spec.catalog):
        if p.lookalike is not None:
            first = groups.setdefault(p.lookalike, p)
            for attr in ("mass_g", "size_m", "shape", "colour"):
                if getattr(first, attr) != getattr(p, attr):
                    raise SpecError(path, f"catalog[{i}].{attr}", f"{getattr(first, attr)!r} like the rest of look-alike "
                                    f"group '{p.lookalike}' (look-alikes differ only by label)", getattr(p, attr))
    ids = [u.id for u in spec.units]
    for i, u in enumerate(spec.units):
        if "/" in u.id or ids.count(u.id) > 1:
            raise SpecError(path, f"units[{i}].id", "a unique id without '/'", u.id)
        zs = sorted(s.z_m for s in u.shelves)
        if not u.shelves:
            raise SpecError(path, f"units[{i}].shelves", "at least one shelf level")
        if zs[-1] >= u.height_m - 0.05:
            raise SpecError(path, f"units[{i}].shelves", f"every z_m below the unit's height ({u.height_m} m) minus 5 cm", zs[-1])
        for a, b in zip(zs, zs[1:]):
            if b - a < 0.08:
                raise SpecError(path, f"units[{i}].shelves", "shelf levels at least 8 cm apart", [a, b])
    W, D = spec.floor.width_m, spec.floor.depth_m
    for i, u in enumerate(spec.units):
        c = u.footprint_xy()
        if c[:, 0].min() < -0.01 or c[:, 1].min() < -0.01 or c[:, 0].max() > W + 0.01 or c[:, 1].max() > D + 0.01:
            raise SpecError(path, f"units[{i}].position_m", f"a footprint inside the {W} × {D} m floor", u.position_m)
        for j in range(i):
            if _rectangles_overlap(c, spec.units[j].footprint_xy()):
                raise SpecError(path, f"units[{i}].position_m", f"a footprint clear of unit '{spec.units[j].id}'", u.position_m)
    for i, g in enumerate(spec.gates):
        if not _on_floor_edge(np.array(g.a_m), np.array(g.b_m), W, D):
            raise SpecError(path, f"gates[{i}]", "a gate whose ends a_m and b_m lie on the same edge of the floor",
                            [list(g.a_m), list(g.b_m)])
    bins = spec.bins
    for bid, f in spec.planogram.items():
        field = f"planogram.{bid}"
        if bid not in bins:
            raise SpecError(path, field, f"a bin id UNIT/SHELF/BIN of this store (e.g. {next(iter(bins))})", bid)
        if f.sku not in spec.products:
            raise SpecError(path, f"{field}.sku", "a SKU of the catalog", f.sku)
        b, p = bins[bid], spec.products[f.sku]
        if f.facings * p.size_m[0] > b.width_m + 1e-6:
            raise SpecError(path, f"{field}.facings", f"at most {int(b.width_m // p.size_m[0])} facings of {p.sku} in a {b.width_m:.3f} m bin", f.facings)
        if f.depth * p.size_m[1] > b.unit.depth_m + 1e-6:
            raise SpecError(path, f"{field}.depth", f"at most {int(b.unit.depth_m // p.size_m[1])} rows of {p.sku} in a {b.unit.depth_m} m deep unit", f.depth)
        if p.size_m[2] > b.z1 - b.z0:
            raise SpecError(path, f"{field}.sku", f"a product at most {b.z1 - b.z0:.3f} m tall for this bin", f"{p.sku} ({p.size_m[2]} m)")
    kinds = [g.kind for g in spec.gates]
    for k in ("entry", "exit"):
        if k not in kinds:
            raise SpecError(path, "gates", f"a gate of kind '{k}'", kinds)
    for i, c in enumerate(spec.cameras):
        if (c.hfov_deg is None) == (c.intrinsics is None):
            raise SpecError(path, f"cameras[{i}]", "exactly one of 'hfov_deg' or 'intrinsics'")
        if np.linalg.norm(np.subtract(c.look_at_m, c.position_m)) < 1e-3:
            raise SpecError(path, f"cameras[{i}].look_at_m", "a point other than position_m", c.look_at_m)
        if c.lens == "fisheye":
            if c.distortion[4] != 0:
                raise SpecError(path, f"cameras[{i}].distortion", "a fisheye's (k1, k2, k3, k4, 0): the fifth is not used", list(c.distortion))
            corner = fisheye_max_angle_deg(c)
            if not corner <= FISHEYE_MAX_ANGLE_DEG:
                raise SpecError(path, f"cameras[{i}].hfov_deg", f"a fisheye whose image corners look at most "
                                f"{FISHEYE_MAX_ANGLE_DEG:g}° off its axis (the twin draws it from one perspective view); "
                                f"these look {corner:.0f}° off", c.hfov_deg if c.hfov_deg is not None else "intrinsics")
    cam_ids = [c.id for c in spec.cameras]
    if len(set(cam_ids)) != len(cam_ids):
        raise SpecError(path, "cameras", "unique camera ids", cam_ids)


FISHEYE_MAX_ANGLE_DEG = 80.0


def fisheye_max_angle_deg(cam: Camera) -> float:
    """How far off its axis a fisheye camera's farthest image corner looks, degrees (the lens
    model's θ for the corner's radius, found by bisection; NaN if the model folds back first)."""
    K = cam.K
    k1, k2, k3, k4 = cam.distortion[:4]
    r = max(math.hypot(u - K[0, 2], v - K[1, 2]) for u in (0, cam.width - 1) for v in (0, cam.height - 1)) / K[0, 0]
    th = np.linspace(0, math.pi, 2001)
    rd = th * (1 + k1 * th ** 2 + k2 * th ** 4 + k3 * th ** 6 + k4 * th ** 8)
    rising = np.concatenate([[True], np.diff(rd) > 0])
    ok = np.flatnonzero(~rising)
    top = ok[0] if len(ok) else len(th)
    if rd[:top].max() < r:
        return float("nan")
    return math.degrees(float(np.interp(r, rd[:top], th[:top])))


def _rectangles_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex quadrilaterals (touching does not count)."""
    for poly in (a, b):
        for k in range(4):
            edge = poly[(k + 1) % 4] - poly[k]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() + 1e-6 or pb.max() <= pa.min() + 1e-6:
                return False
    return True


def _on_floor_edge(a: np.ndarray, b: np.ndarray, W: float, D: float, tol: float = 0.05) -> bool:
    for axis, value in ((0, 0.0), (0, W), (1, 0.0), (1, D)):
        if abs(a[axis] - value) <= tol and abs(b[axis] - value) <= tol:
            return True
    return False


def parse_store(data: Any, path: str | Path = "<store>") -> StoreSpec:
    """Validate a store description already read into Python objects."""
    if not isinstance(data, dict):
        raise SpecError(path, "<top>", "a mapping of store fields", type(data).__name__)
    try:
        spec = StoreSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        got = err.get("input") if err["type"] != "missing" else None
        if isinstance(got, (dict, list)) and len(repr(got)) > 80:
            got = type(got).__name__
        raise SpecError(path, _loc(err["loc"]) or "<top>", err["msg"].replace("Value error, ", "").lower(), got) from None
    _check_semantics(spec, str(path))
    return spec


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise SpecError(path, "<file>", "an existing YAML file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "<file>"
        raise SpecError(path, where, "valid YAML", str(getattr(e, "problem", e))) from None


def load_store(path: str | Path) -> StoreSpec:
    """Read and validate ``conf/store/<name>.yaml``."""
    return parse_store(read_yaml(path), path)
