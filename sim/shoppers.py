"""Scripted shoppers: walk between gates and bins, reach with arm IK, pick, put back, browse.

Each shopper runs its script as a generator that advances one control tick per ``next()``; what it
does to the world goes through :class:`ShopperContext` (the physics world, the planner and the
ground-truth log), so a shopper never touches a physics body id.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from runtime.store import StoreSpec
from sim.navigation import FloorPlanner
from sim.scenario import ShopperPlan, Step
from sim.world import PhysicsWorld
from twin.bodies import BodyPose, BodyShape, Skeleton, solve_skeleton

STAND_OFF_M = 0.42      # from the unit's front face to where the shopper stands
STAND_SHIFTS_M = (0.0, 0.45, -0.45, 0.7, -0.7, 0.225, -0.225)   # ... or this far to the side of the bin, first free
STAND_ROOM_M = 0.42     # a place at a shelf is free this far from everyone (shoulder to shoulder)
PERSONAL_M = 0.55       # shoppers keep this far apart (centre to centre) when they can
MAX_YIELD_S = 2.0       # ... but give up waiting for someone after this long
MAX_WAIT_FOR_ROOM_S = 20.0   # with every place at a bin taken, wait this long for one
REACH_S = 0.8
GRASP_S = 0.25
RETRACT_S = 0.6
TO_BASKET_S = 0.45


@dataclass
class Interaction:
    """A true interaction: ``end`` is when the item leaves (pick) or lands on (put-back) the shelf."""

    kind: str            # pick | put_back | browse
    account: str
    shopper: int
    sku: str | None
    bin: str
    instance: int | None
    t_start: float
    t_end: float
    planogram_bin: str | None = None   # where the planogram says this SKU belongs

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ShopperContext:
    """What shoppers may do to the world and what they must report."""

    store: StoreSpec
    world: PhysicsWorld
    planner: FloorPlanner
    dt_s: float
    on_gate: Callable[[str, float, str, str], None]           # gate_id, t, account, kind
    on_interaction: Callable[[Interaction], None]
    clock: Callable[[], float]
    others: Callable[[], list] = lambda: []     # every shopper, for keeping a polite distance


def _smooth(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


def _segments_cross(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    def orient(o, s, t) -> float:
        return float((s[0] - o[0]) * (t[1] - o[1]) - (s[1] - o[1]) * (t[0] - o[0]))
    return orient(p, q, a) * orient(p, q, b) < 0 and orient(a, b, p) * orient(a, b, q) < 0


@dataclass
class Shopper:
    index: int
    plan: ShopperPlan
    shape: BodyShape
    ctx: ShopperContext
    speed_mps: float
    pose: BodyPose = field(init=False)
    present: bool = False
    done: bool = False
    held: list[int] = field(default_factory=list)   # items in the right hand
    basket: list[int] = field(default_factory=list)
    cart: dict[str, int] = field(default_factory=dict)
    skeleton: Skeleton | None = None
    walking: bool = False
    heading_for: np.ndarray | None = None   # where it is walking to stand at a bin (others leave it free)

    def __post_init__(self) -> None:
        entry = self.ctx.store.gate("entry")
        outside, inside = self.ctx.planner.gate_points(entry)
        d = inside - outside
        self.pose = BodyPose(x=float(outside[0]), y=float(outside[1]), heading_rad=math.atan2(d[1], d[0]))
        self._gen = self._behaviour()

    @property
    def xy(self) -> np.ndarray:
        return np.array([self.pose.x, self.pose.y])

    def tick(self) -> None:
        """Advance one control tick (no-op before entry and after leaving)."""
        if self.done:
            return
        if not self.present:
            if self.ctx.clock() + 1e-9 < self.plan.enter_at_s:
                return
            self.present = True
        try:
            next(self._gen)
        except StopIteration:
            self.done, self.present = True, False
        self._update_skeleton()

    def _update_skeleton(self) -> None:
        self.skeleton = solve_skeleton(self.shape, self.pose)
        hand = self.skeleton.joints["right_hand"]
        side = np.array([-math.sin(self.pose.heading_rad), math.cos(self.pose.heading_rad), 0.0])
        for k, i in enumerate(self.held):   # a multi-item grab fans the items out across the hand
            p = self.ctx.store.products[self.ctx.world.instances[i].sku]
            offset = side * (k - (len(self.held) - 1) / 2) * p.size_m[0]
            self.ctx.world.carry(i, hand - [0, 0, p.size_m[2] * 0.25] + offset, self.pose.heading_rad)
        base = self.basket_position()
        for k, i in enumerate(self.basket):
            self.ctx.world.carry(i, base + [0.04 * ((k % 3) - 1), 0.0, -0.06 + 0.02 * (k // 3)], self.pose.heading_rad)

    def basket_position(self) -> np.ndarray:
        """Centre of the basket carried in the left hand."""
        if self.skeleton is None:
            return np.array([self.pose.x, self.pose.y, 0.6])
        return self.skeleton.joints["left_hand"] - [0, 0, 0.14]

    # -- the script ---------------------------------------------------------------------------
    def _behaviour(self) -> Iterator[None]:
        store, planner = self.ctx.store, self.ctx.planner
        entry = store.gate("entry")
        _, inside = planner.gate_points(entry)
        yield from self._walk([inside], gates=[entry])
        for step in self.plan.script:
            if step.kind == "exit":
                ex = store.gate("exit")
                ex_out, ex_in = planner.gate_points(ex)
                yield from self._walk(self._plan(ex_in), replan=True)
                yield from self._walk([ex_out], gates=[ex])
                for i in self.basket:
                    self.ctx.world.carry(i, np.array([0.0, 0.0, -5.0 - i * 0.5]))
                return
            if step.kind == "wait":
                if step.at is not None:
                    yield from self._walk(self._plan(self.ctx.planner.nearest_free(np.array(step.at))), replan=True)
                yield from self._idle(step.seconds)
                continue
            bin_id = self._bin_for(step)
            if bin_id is None:
                continue
            yield from self._walk_to_bin(bin_id)
            if step.kind == "pick":
                left = step.qty
                while left > 0:
                    n = min(step.per_reach, left)
                    yield from self._pick(bin_id, step.sku, n)
                    left -= n
            elif step.kind == "put_back":
                for _ in range(step.qty):
                    yield from self._put_back(bin_id, step.sku)
            elif step.kind == "browse":
                yield from self._browse(bin_id, step.seconds)

    def _bin_for(self, step: Step) -> str | None:
        if step.bin is not None:
            return step.bin
        bins = self.ctx.store.bins_of_sku(step.sku)
        if step.kind == "pick":
            stocked = [b for b in bins if any(self.ctx.world.instances[i].sku == step.sku for i in self.ctx.world.items_in_bin(b))]
            return (stocked or bins or [None])[0]
        return bins[0] if bins else None

    # -- motion primitives (each yields once per control tick) ----------------------------------
    def _idle(self, seconds: float) -> Iterator[None]:
        self.pose.walk_amount = 0.0
        for _ in range(max(1, round(seconds / self.ctx.dt_s))):
            yield

    def _plan(self, goal: np.ndarray) -> list[np.ndarray]:
        """A path to ``goal`` round the people standing still (waypoints after the start)."""
        still = [o.xy for o in self.ctx.others() if o is not self and o.present and not o.walking]
        return self.ctx.planner.plan(self.xy, goal, avoid=still)[1:]

    def _walk(self, waypoints: list[np.ndarray], gates=(), replan: bool = False) -> Iterator[None]:
        """Follow waypoints; with ``replan``, plan again round anyone who stops on the way."""
        self.walking = True
        try:
            path = list(waypoints)
            for _ in range(8):
                if (yield from self._walk_path(path, gates, replan)) != "replan":
                    break
                path = self._plan(waypoints[-1])
            else:
                yield from self._walk_path(path, gates, False)
        finally:
            self.walking = False

    def _still_person_on(self, path: list[np.ndarray], reach_m: float = 1.2) -> bool:
        """Someone standing still within 0.4 m of the next ``reach_m`` of the path."""
        still = [o.xy for o in self.ctx.others() if o is not self and o.present and not o.walking]
        if not still:
            return False
        pts, left, prev = [], reach_m, self.xy
        for wp in path:
            seg = float(np.linalg.norm(wp - prev))
            n = max(1, int(min(seg, left) / 0.1))
            pts += [prev + (wp - prev) * min(1.0, left / max(seg, 1e-9)) * k / n for k in range(1, n + 1)]
            left -= seg
            prev = wp
            if left <= 0:
                break
        if not pts:
            return False
        d = np.linalg.norm(np.array(pts)[:, None] - np.array(still)[None], axis=2)
        return bool((d < 0.4).any())

    def _walk_path(self, waypoints: list[np.ndarray], gates=(), replan: bool = False) -> Iterator[None]:
        dt = self.ctx.dt_s
        stride_m = 0.75 * self.shape.height_m
        waited = 0.0
        tick = 0
        for k, wp in enumerate(waypoints):
            while True:
                d = np.asarray(wp) - self.xy
                dist = float(np.linalg.norm(d))
                if dist < 1e-3:
                    break
                tick += 1
                if replan and tick % 15 == 0 and self._still_person_on([np.asarray(w) for w in waypoints[k:]]):
                    return "replan"
                target_heading = math.atan2(d[1], d[0])
                self._turn_towards(target_heading, dt)
                ahead = math.cos(target_heading - self.pose.heading_rad)
                step = min(dist, self.speed_mps * dt * max(0.2, ahead))
                if self._blocked(d / dist):
                    waited += dt
                    if waited < MAX_YIELD_S:
                        self.pose.walk_amount = max(0.0, self.pose.walk_amount - dt * 4)
                        yield
                        continue
                else:
                    waited = 0.0
                old = self.xy
                new = old + d / dist * step
                self.pose.x, self.pose.y = float(new[0]), float(new[1])
                self.pose.walk_phase = (self.pose.walk_phase + 2 * math.pi * step / stride_m) % (2 * math.pi)
                self.pose.walk_amount = min(1.0, self.pose.walk_amount + dt * 3)
                for g in gates:
                    if _segments_cross(old, new, np.array(g.a_m), np.array(g.b_m)):
                        self.ctx.on_gate(g.id, self.ctx.clock(), self.plan.account, "enter" if g.kind == "entry" else "exit")
                yield
        while self.pose.walk_amount > 0:
            self.pose.walk_amount = max(0.0, self.pose.walk_amount - dt * 4)
            yield

    def _blocked(self, direction: np.ndarray) -> bool:
        """Someone stands close ahead (the lower index goes first when two meet)."""
        for o in self.ctx.others():
            if o is self or not o.present:
                continue
            rel = o.xy - self.xy
            dist = float(np.linalg.norm(rel))
            if dist < PERSONAL_M and float(rel @ direction) > 0.3 * dist:
                if o.index < self.index or float(-rel @ o.heading_vector()) <= 0.3 * dist:
                    return True
        return False

    def heading_vector(self) -> np.ndarray:
        return np.array([math.cos(self.pose.heading_rad), math.sin(self.pose.heading_rad)])

    def _turn_towards(self, heading: float, dt: float, rate: float = 5.0) -> float:
        diff = (heading - self.pose.heading_rad + math.pi) % (2 * math.pi) - math.pi
        turn = max(-rate * dt, min(rate * dt, diff))
        self.pose.heading_rad = (self.pose.heading_rad + turn) % (2 * math.pi)
        return abs(diff - turn)

    def _walk_to_bin(self, bin_id: str) -> Iterator[None]:
        b = self.ctx.store.bins[bin_id]
        n = b.unit.front_normal()
        c = b.centre_world()[:2]
        stand = c + n * (b.unit.depth_m / 2 + STAND_OFF_M)
        along = np.array([-n[1], n[0]])
        here = abs(float((self.xy - stand) @ along)) < 0.3 and abs(float((self.xy - stand) @ n)) < 0.15
        if here:
            stand = self.xy   # already standing at this bin (the step before was here too): stay put
        # make room beside someone at the same bin (or on the way to stand there), but stay within
        # arm's reach of it; with every place taken, wait for one (a while), then take the one with
        # the most room: two people never stand in one spot
        if not here:
            cands = [self.ctx.planner.nearest_free(stand + shift * along) for shift in STAND_SHIFTS_M]
            waited = 0.0
            while True:
                taken = [p for o in self.ctx.others() if o is not self and o.present
                         for p in ([o.xy] + ([o.heading_for] if o.heading_for is not None else []))]
                room = [min((float(np.linalg.norm(p - c)) for p in taken), default=np.inf) for c in cands]
                free = [c for c, r in zip(cands, room) if r >= STAND_ROOM_M]
                if free or waited >= MAX_WAIT_FOR_ROOM_S:
                    break
                yield from self._idle(0.5)
                waited += 0.5
            stand = free[0] if free else cands[int(np.argmax(room))]
        if np.linalg.norm(stand - self.xy) > 0.05:
            self.heading_for = stand
            try:
                yield from self._walk(self._plan(stand), replan=True)
            finally:
                self.heading_for = None
        face = math.atan2(-n[1], -n[0])
        while self._turn_towards(face, self.ctx.dt_s) > 0.02:
            yield

    def _move_hand(self, target_from: np.ndarray, target_to: np.ndarray, seconds: float) -> Iterator[None]:
        ticks = max(1, round(seconds / self.ctx.dt_s))
        for k in range(1, ticks + 1):
            u = _smooth(k / ticks)
            self.pose.right_hand_target = (1 - u) * target_from + u * target_to
            self.pose.lean = self._lean_for(self.pose.right_hand_target)
            yield

    def _lean_for(self, target: np.ndarray) -> float:
        """Bend forward for low bins."""
        return float(np.clip((0.9 - target[2]) * 0.6, 0.0, 0.5))

    def _rest_hand(self) -> np.ndarray:
        pose = BodyPose(self.pose.x, self.pose.y, self.pose.heading_rad)
        return solve_skeleton(self.shape, pose).keypoints[10].copy()

    def _grasp_point(self, instance: int) -> np.ndarray:
        w = self.ctx.world
        T = w.pose(instance)
        p = self.ctx.store.products[w.instances[instance].sku]
        n = np.append(self.ctx.store.bins[w.instances[instance].home_bin].unit.front_normal(), 0.0)
        return T[:3, 3] + n * (p.size_m[1] / 2 + 0.02) + [0, 0, p.size_m[2] * 0.2]

    def _bin_entry_point(self, bin_id: str) -> np.ndarray:
        b = self.ctx.store.bins[bin_id]
        c = b.centre_world()
        n = np.append(b.unit.front_normal(), 0.0)
        return c + n * (b.unit.depth_m / 2 + 0.02)

    def _pick(self, bin_id: str, sku: str, n: int = 1) -> Iterator[None]:
        """One reach that takes the ``n`` frontmost items of ``sku`` (n > 1: a multi-item grab)."""
        w = self.ctx.world
        items = [i for i in w.items_in_bin(bin_id) if w.instances[i].sku == sku]
        if not items:
            return
        front = np.append(self.ctx.store.bins[bin_id].unit.front_normal(), 0.0)
        taken = sorted(items, key=lambda i: -float(w.pose(i)[:3, 3] @ front))[:n]
        t_start = self.ctx.clock()
        rest = self._rest_hand()
        grasp = np.mean([self._grasp_point(i) for i in taken], axis=0)
        yield from self._move_hand(rest, grasp, REACH_S)
        yield from self._idle(GRASP_S)
        for item in taken:
            w.grasp(item)
        self.held = list(taken)
        t_end = self.ctx.clock()
        for item in taken:
            self.ctx.on_interaction(Interaction("pick", self.plan.account, self.index, sku, bin_id, item, t_start, t_end,
                                                self._planogram_bin(sku)))
        yield from self._move_hand(grasp, rest + [0, 0, 0.25], RETRACT_S)
        yield from self._move_hand(rest + [0, 0, 0.25], self.basket_position() + [0, 0, 0.12], TO_BASKET_S)
        self.basket.extend(taken)
        self.held = []
        self.cart[sku] = self.cart.get(sku, 0) + len(taken)
        self.pose.right_hand_target = None

    def _put_back(self, bin_id: str, sku: str) -> Iterator[None]:
        w = self.ctx.world
        mine = [i for i in self.basket if w.instances[i].sku == sku]
        if not mine:
            return
        item = mine[-1]
        rest = self._rest_hand()
        yield from self._move_hand(rest, self.basket_position() + [0, 0, 0.12], TO_BASKET_S)
        self.basket.remove(item)
        self.held = [item]
        t_start = self.ctx.clock()
        slot = w.free_slot(bin_id, sku)
        b = self.ctx.store.bins[bin_id]
        p = self.ctx.store.products[sku]
        target = (b.unit.local_to_world() @ np.append(slot + [0, p.size_m[1] / 2 + 0.02, p.size_m[2] * 0.7], 1.0))[:3]
        yield from self._move_hand(self.basket_position() + [0, 0, 0.12], target, REACH_S)
        self.held = []
        w.release(item, bin_id, slot)
        self.cart[sku] -= 1
        if self.cart[sku] == 0:
            del self.cart[sku]
        yield from self._idle(0.1)
        self.ctx.on_interaction(Interaction("put_back", self.plan.account, self.index, sku, bin_id, item, t_start,
                                            self.ctx.clock(), self._planogram_bin(sku)))
        yield from self._move_hand(target, rest, RETRACT_S)
        self.pose.right_hand_target = None

    def _browse(self, bin_id: str, seconds: float) -> Iterator[None]:
        w = self.ctx.world
        front = np.append(self.ctx.store.bins[bin_id].unit.front_normal(), 0.0)
        items = sorted(w.items_in_bin(bin_id), key=lambda i: -float(w.pose(i)[:3, 3] @ front))
        t_start = self.ctx.clock()
        rest = self._rest_hand()
        touch = self._grasp_point(items[0]) if items else self._bin_entry_point(bin_id)
        yield from self._move_hand(rest, touch, REACH_S)
        yield from self._idle(seconds)
        sku = w.instances[items[0]].sku if items else None
        self.ctx.on_interaction(Interaction("browse", self.plan.account, self.index, sku, bin_id, None, t_start,
                                            self.ctx.clock(), self._planogram_bin(sku) if sku else None))
        yield from self._move_hand(touch, rest, RETRACT_S)
        self.pose.right_hand_target = None

    def _planogram_bin(self, sku: str) -> str | None:
        bins = self.ctx.store.bins_of_sku(sku)
        return bins[0] if bins else None
