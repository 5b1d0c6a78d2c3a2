"""The physical store: a pybullet world built from the StoreSpec.

Products are rigid bodies resting on shelf plates. Each load cell is a plate joined to its shelf
frame by a fixed joint with a force sensor, so the physics reports the exact load, impacts
included. Body ids stay inside this module: the rest of the project speaks of product instances
(an index into :attr:`PhysicsWorld.instances`) and 4×4 poses.

Most of a store's stock lies still most of the time, and solving hundreds of resting boxes every
step was most of the simulator's physics time. A shelf (one level of one unit) that nobody has
touched for :data:`QUIET_S` is therefore *frozen*: its items leave the solver, keep their poses,
and each of its plates keeps the load it read, settled, at that moment; the first hand that takes
from or puts onto that shelf thaws it, and the items go back exactly where they lay. Bullet's own
sleeping does not serve here: an item sleeping on an awake plate stops pressing on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _import_pybullet_quietly():
    """pybullet prints its build time on import, from C; keep the command's output clean."""
    import ctypes
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import pybullet
        ctypes.CDLL(None).fflush(None)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return pybullet


pb = _import_pybullet_quietly()

from runtime.store import SHELF_THICKNESS_M, StoreSpec

GRAVITY = 9.81
PLATE_MASS_KG = 0.5
QUIET_S = 2.0      # a shelf untouched this long is frozen (its items out of the solver) until a hand comes
SETTLE_TAU_S = 0.1  # the load a frozen plate keeps: its reading averaged over about this long


@dataclass
class Instance:
    """One physical product item."""

    index: int
    sku: str
    home_bin: str           # the bin it was stocked in
    bin: str | None         # the bin it lies in now (None while held or in a basket)
    slot_xy: tuple[float, float]  # its slot centre in the bin's unit frame


@dataclass(frozen=True)
class Slot:
    bin: str
    local_xyz: np.ndarray   # on the plate's top surface, unit frame


class PhysicsWorld:
    """pybullet in DIRECT mode; one instance per simulation, deterministic for the same calls.

    ``freeze``: shelves untouched for :data:`QUIET_S` leave the solver (see the module's note);
    False solves every item every step. ``sense=False``: nobody reads the plates (no load cells), so
    their forces are not followed each step."""

    def __init__(self, store: StoreSpec, timestep_s: float = 1.0 / 240.0, solver_iterations: int = 20,
                 freeze: bool = True, sense: bool = True):
        self.store = store
        self.dt_s = timestep_s
        self.freeze = freeze
        self.sense = sense
        self._client = pb.connect(pb.DIRECT)
        c = self._client
        pb.resetSimulation(physicsClientId=c)
        pb.setGravity(0, 0, -GRAVITY, physicsClientId=c)
        pb.setPhysicsEngineParameter(fixedTimeStep=timestep_s, numSolverIterations=solver_iterations,
                                     deterministicOverlappingPairs=1, physicsClientId=c)
        plane = pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=c)
        pb.createMultiBody(0, plane, physicsClientId=c)
        self.cell_ids = sorted(store.load_cells)
        self._cell_body: dict[str, int] = {}
        self._static_plates: list[int] = []
        self._build_shelves()
        self.instances: list[Instance] = []
        self._bodies: list[int] = []
        self._carried: dict[int, np.ndarray] = {}   # items out of physics: in a hand or a basket
        # freezing: a shelf is (unit id, level); its plates' rows in cell_ids
        self._shelf_of_bin = {b.id: (b.unit.id, b.shelf) for b in store.bins.values()}
        self._shelf_cells: dict[tuple[str, int], list[int]] = {}
        for i, cid in enumerate(self.cell_ids):
            spec = store.load_cells[cid]
            self._shelf_cells.setdefault((spec.unit, spec.shelf), []).append(i)
        self._touched: dict[tuple[str, int], int] = {k: 0 for k in self._shelf_of_bin.values()}  # step of the last hand
        self._frozen: dict[tuple[str, int], dict[int, np.ndarray]] = {}   # shelf → {item: pose}
        self._frozen_fz = np.zeros(len(self.cell_ids))       # force the frozen items put on each plate, N
        self._settled_fz = np.full(len(self.cell_ids), PLATE_MASS_KG * GRAVITY)  # each plate's reading, averaged
        self._thawed: list[int] = []   # plates whose kept load goes after the next step
        self._step = 0
        self._stock()

    # -- construction -------------------------------------------------------------------------
    def _plate_pose(self, unit, shelf: int, x0: float, x1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World centre, half extents and quaternion of a plate spanning x0..x1 on a shelf level."""
        level = sorted(unit.shelves, key=lambda s: s.z_m)[shelf]
        centre_local = np.array([(x0 + x1) / 2, 0.0, level.z_m - SHELF_THICKNESS_M / 2, 1.0])
        centre = (unit.local_to_world() @ centre_local)[:3]
        half = np.array([(x1 - x0) / 2 - 0.002, unit.depth_m / 2 - 0.01, SHELF_THICKNESS_M / 2])
        quat = pb.getQuaternionFromEuler([0, 0, np.radians(unit.yaw_deg)])
        return centre, half, np.array(quat)

    def _build_shelves(self) -> None:
        c = self._client
        done: set[tuple[str, int, float]] = set()
        for b in self.store.bins.values():
            cell = b.cell_id
            if cell is not None and cell in self._cell_body:
                continue
            bins = [self.store.bins[x] for x in self.store.load_cells[cell].bins] if cell else [b]
            x0, x1 = min(x.x0 for x in bins), max(x.x1 for x in bins)
            centre, half, quat = self._plate_pose(b.unit, b.shelf, x0, x1)
            shape = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half.tolist(), physicsClientId=c)
            if cell is None:
                key = (b.unit.id, b.shelf, x0)
                if key not in done:
                    self._static_plates.append(pb.createMultiBody(0, shape, -1, centre.tolist(), quat.tolist(), physicsClientId=c))
                    done.add(key)
                continue
            body = pb.createMultiBody(
                baseMass=0, basePosition=(centre - [0, 0, 0.05]).tolist(), baseOrientation=quat.tolist(),
                linkMasses=[PLATE_MASS_KG], linkCollisionShapeIndices=[shape], linkVisualShapeIndices=[-1],
                linkPositions=[[0, 0, 0.05]], linkOrientations=[[0, 0, 0, 1]],
                linkInertialFramePositions=[[0, 0, 0]], linkInertialFrameOrientations=[[0, 0, 0, 1]],
                linkParentIndices=[0], linkJointTypes=[pb.JOINT_FIXED], linkJointAxis=[[0, 0, 1]],
                physicsClientId=c)
            pb.enableJointForceTorqueSensor(body, 0, True, physicsClientId=c)
            pb.changeDynamics(body, 0, lateralFriction=0.8, physicsClientId=c)
            self._cell_body[cell] = body

    def bin_slots(self, bin_id: str) -> list[Slot]:
        """The planogram's grid of slots in a bin, front row first."""
        b = self.store.bins[bin_id]
        f = self.store.planogram.get(bin_id)
        if f is None:
            return [Slot(bin_id, np.array([(b.x0 + b.x1) / 2, b.unit.depth_m / 2 - 0.06, b.z0]))]
        p = self.store.products[f.sku]
        w, d = p.size_m[0], p.size_m[1]
        gap_x = (b.width_m - f.facings * w) / f.facings
        slots = []
        for row in range(f.depth):
            y = b.unit.depth_m / 2 - 0.01 - d / 2 - row * (d + 0.005)
            for col in range(f.facings):
                x = b.x0 + gap_x / 2 + w / 2 + col * (w + gap_x)
                slots.append(Slot(bin_id, np.array([x, y, b.z0])))
        return slots

    def _stock(self) -> None:
        for bin_id in sorted(self.store.planogram):
            sku = self.store.planogram[bin_id].sku
            for s in self.bin_slots(bin_id):
                self._spawn(sku, bin_id, s)
        for _ in range(int(0.5 / self.dt_s)):  # let everything come to rest before t = 0
            pb.stepSimulation(physicsClientId=self._client)

    def _spawn(self, sku: str, bin_id: str, slot: Slot) -> None:
        c = self._client
        p = self.store.products[sku]
        half = [p.size_m[0] / 2, p.size_m[1] / 2, p.size_m[2] / 2]
        unit = self.store.bins[bin_id].unit
        pos = (unit.local_to_world() @ np.append(slot.local_xyz + [0, 0, half[2] + 0.0005], 1.0))[:3]
        quat = pb.getQuaternionFromEuler([0, 0, np.radians(unit.yaw_deg)])
        shape = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=c)
        body = pb.createMultiBody(p.mass_g / 1000.0, shape, -1, pos.tolist(), quat, physicsClientId=c)
        pb.changeDynamics(body, -1, lateralFriction=0.7, restitution=0.05, linearDamping=0.1,
                          angularDamping=0.1, physicsClientId=c)
        self.instances.append(Instance(len(self.instances), sku, bin_id, bin_id, tuple(slot.local_xyz[:2])))
        self._bodies.append(body)

    # -- stepping and sensing -----------------------------------------------------------------
    def step(self) -> None:
        # A plate's sensor tells what lay on it at the last step, so a shelf is frozen just before
        # a step and a thawed shelf's kept load is dropped just after one.
        if self.freeze and self._step % 12 == 0:
            quiet = self._step - round(QUIET_S / self.dt_s)
            for shelf, touched in self._touched.items():
                if touched <= quiet and shelf not in self._frozen:
                    self._freeze(shelf)
        pb.stepSimulation(physicsClientId=self._client)
        self._step += 1
        if self._thawed:
            self._frozen_fz[self._thawed] = 0.0
            self._thawed = []
        if self.freeze and self.sense:
            self._settled_fz += self.dt_s / SETTLE_TAU_S * (self._plate_fz() - self._settled_fz)

    def _plate_fz(self) -> np.ndarray:
        """Each plate's force sensor: the vertical force its joint carries (plate included), N."""
        c = self._client
        return np.array([pb.getJointState(self._cell_body[cid], 0, physicsClientId=c)[2][2] for cid in self.cell_ids])

    def cell_loads_g(self) -> np.ndarray:
        """True load on every cell (sorted by id), grams: the plate's reaction force minus its tare,
        plus what its frozen items weighed on it."""
        return (self._plate_fz() + self._frozen_fz) / GRAVITY * 1000.0 - PLATE_MASS_KG * 1000.0

    def _freeze(self, shelf: tuple[str, int]) -> None:
        c = self._client
        rows = self._shelf_cells.get(shelf, [])
        items = {i.index: self.pose(i.index) for i in self.instances
                 if i.bin is not None and self._shelf_of_bin[i.bin] == shelf and i.index not in self._carried}
        for index in items:
            pb.changeDynamics(self._bodies[index], -1, mass=0, physicsClientId=c)
            pb.resetBasePositionAndOrientation(self._bodies[index], self._parking(index), [0, 0, 0, 1], physicsClientId=c)
        self._frozen[shelf] = items
        self._frozen_fz[rows] = self._settled_fz[rows] - PLATE_MASS_KG * GRAVITY

    def _thaw(self, bin_id: str | None) -> None:
        """A hand at ``bin_id``: its shelf's items return to the solver where they lay."""
        if bin_id is None:
            return
        shelf = self._shelf_of_bin[bin_id]
        self._touched[shelf] = self._step
        items = self._frozen.pop(shelf, None)
        if items is None:
            return
        c = self._client
        for index, T in items.items():
            body = self._bodies[index]
            pb.resetBasePositionAndOrientation(body, T[:3, 3].tolist(), _quaternion(T), physicsClientId=c)
            pb.changeDynamics(body, -1, mass=self.store.products[self.instances[index].sku].mass_g / 1000.0, physicsClientId=c)
            pb.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        self._thawed += self._shelf_cells.get(shelf, [])

    def frozen_shelves(self) -> list[tuple[str, int]]:
        """The shelves (unit id, level) whose items are out of the solver now."""
        return sorted(self._frozen)

    @staticmethod
    def _parking(index: int) -> list[float]:
        """Where an item out of the solver waits, far outside the store and apart from the others."""
        return [1000.0 + 2.0 * index, 1000.0, 5.0]

    def pose(self, index: int) -> np.ndarray:
        if index in self._carried:
            return self._carried[index].copy()
        bin_id = self.instances[index].bin
        frozen = self._frozen.get(self._shelf_of_bin[bin_id]) if bin_id is not None else None
        if frozen is not None and index in frozen:
            return frozen[index].copy()
        pos, quat = pb.getBasePositionAndOrientation(self._bodies[index], physicsClientId=self._client)
        T = np.eye(4)
        T[:3, :3] = np.array(pb.getMatrixFromQuaternion(quat)).reshape(3, 3)
        T[:3, 3] = pos
        return T

    def poses(self) -> np.ndarray:
        """N×4×4 poses of all product instances (their box centres)."""
        return np.stack([self.pose(i) for i in range(len(self._bodies))]) if self._bodies else np.zeros((0, 4, 4))

    # -- the hand -----------------------------------------------------------------------------
    def grasp(self, index: int) -> None:
        """The item leaves physics and follows :meth:`carry` from now on.

        Its body is parked, static, far outside the store (pybullet's collision filters do not
        reliably stop a teleported body from hitting the items it passes), and the world reports
        the carried pose instead."""
        self._thaw(self.instances[index].bin)
        body = self._bodies[index]
        c = self._client
        self._carried[index] = self.pose(index)
        pb.changeDynamics(body, -1, mass=0, physicsClientId=c)
        pb.resetBasePositionAndOrientation(body, self._parking(index), [0, 0, 0, 1], physicsClientId=c)
        self.instances[index].bin = None

    def carry(self, index: int, position: np.ndarray, yaw_rad: float = 0.0) -> None:
        """Move a held item (or one in a basket) to ``position``, its box centre."""
        c, s = np.cos(yaw_rad), np.sin(yaw_rad)
        T = np.eye(4)
        T[:2, :2] = [[c, -s], [s, c]]
        T[:3, 3] = position
        self._carried[index] = T

    def release(self, index: int, bin_id: str, local_xyz: np.ndarray) -> np.ndarray:
        """Put a held item down on a bin's plate at ``local_xyz`` (unit frame, plate surface);
        it drops the last few millimetres under physics. Returns its world centre."""
        self._thaw(bin_id)
        p = self.store.products[self.instances[index].sku]
        unit = self.store.bins[bin_id].unit
        pos = (unit.local_to_world() @ np.append(np.asarray(local_xyz) + [0, 0, p.size_m[2] / 2 + 0.004], 1.0))[:3]
        body = self._bodies[index]
        c = self._client
        pb.resetBasePositionAndOrientation(body, pos.tolist(), pb.getQuaternionFromEuler([0, 0, np.radians(unit.yaw_deg)]), physicsClientId=c)
        pb.changeDynamics(body, -1, mass=p.mass_g / 1000.0, physicsClientId=c)
        pb.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        self._carried.pop(index, None)
        inst = self.instances[index]
        inst.bin, inst.slot_xy = bin_id, (float(local_xyz[0]), float(local_xyz[1]))
        return pos

    def items_in_bin(self, bin_id: str) -> list[int]:
        return [i.index for i in self.instances if i.bin == bin_id]

    def free_slot(self, bin_id: str, sku: str) -> np.ndarray:
        """Where a shopper puts ``sku`` down in a bin (unit frame, on the plate): the front-most
        spot where its footprint clears every item already there, nearest the bin's middle; on
        top of the front-middle item when the bin is full."""
        b = self.store.bins[bin_id]
        w, d, _ = self.store.products[sku].size_m
        inv = np.linalg.inv(b.unit.local_to_world())
        boxes = []  # (x0, x1, y0, y1, top_z) of the items in this bin, unit frame
        for i in self.items_in_bin(bin_id):
            c = (inv @ np.append(self.pose(i)[:3, 3], 1.0))[:3]
            pw, pd, ph = self.store.products[self.instances[i].sku].size_m
            boxes.append((c[0] - pw / 2, c[0] + pw / 2, c[1] - pd / 2, c[1] + pd / 2, c[2] + ph / 2))
        half_depth = b.unit.depth_m / 2
        xs = np.arange(b.x0 + w / 2 + 0.003, b.x1 - w / 2 - 0.003 + 1e-9, 0.01)
        ys = np.arange(half_depth - 0.01 - d / 2, -half_depth + d / 2, -0.01)
        mid = (b.x0 + b.x1) / 2
        xs = xs[np.argsort(np.abs(xs - mid))] if len(xs) else np.array([mid])
        for y in ys:
            for x in xs:
                if all(x + w / 2 + 0.003 <= bx0 or x - w / 2 - 0.003 >= bx1 or y + d / 2 + 0.003 <= by0 or y - d / 2 - 0.003 >= by1
                       for bx0, bx1, by0, by1, _ in boxes):
                    return np.array([x, y, b.z0])
        front = max(boxes, key=lambda bx: (bx[3], -abs((bx[0] + bx[1]) / 2 - mid)))
        return np.array([(front[0] + front[1]) / 2, (front[2] + front[3]) / 2, front[4] + 0.002])

    def close(self) -> None:
        if pb.isConnected(self._client):
            pb.disconnect(self._client)



def _quaternion(T: np.ndarray) -> list[float]:
    """The (x, y, z, w) quaternion of a 4×4 pose's rotation."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(T[:3, :3]).as_quat().tolist()
