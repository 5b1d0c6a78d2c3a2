"""Collision-free walking paths on the floor: an occupancy grid of the store and A* over it."""
from __future__ import annotations

import heapq
import math

import numpy as np

from runtime.store import Gate, StoreSpec

OUTSIDE_M = 1.6  # how far outside the floor the grid reaches (the street side of the gates)


class FloorPlanner:
    """Plans 2-D paths around shelf units (inflated by the body radius) and through the gates."""

    def __init__(self, store: StoreSpec, resolution_m: float = 0.1, radius_m: float = 0.3):
        self.store, self.res, self.radius = store, resolution_m, radius_m
        self.origin = np.array([-OUTSIDE_M, -OUTSIDE_M])
        self.nx = int(math.ceil((store.floor.width_m + 2 * OUTSIDE_M) / resolution_m))
        self.ny = int(math.ceil((store.floor.depth_m + 2 * OUTSIDE_M) / resolution_m))
        xs = self.origin[0] + (np.arange(self.nx) + 0.5) * resolution_m
        ys = self.origin[1] + (np.arange(self.ny) + 0.5) * resolution_m
        X, Y = np.meshgrid(xs, ys, indexing="ij")
        W, D, r = store.floor.width_m, store.floor.depth_m, radius_m
        free = (X > r) & (X < W - r) & (Y > r) & (Y < D - r)
        for g in store.gates:
            free |= self._gate_corridor(g, X, Y)
        for u in store.units:
            T = np.linalg.inv(u.local_to_world())
            lx = T[0, 0] * X + T[0, 1] * Y + T[0, 3]
            ly = T[1, 0] * X + T[1, 1] * Y + T[1, 3]
            free &= ~((np.abs(lx) < u.width_m / 2 + r) & (np.abs(ly) < u.depth_m / 2 + r))
        self.free = free

    def _gate_corridor(self, g: Gate, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        a, b = np.array(g.a_m), np.array(g.b_m)
        along = (b - a) / np.linalg.norm(b - a)
        normal = np.array([-along[1], along[0]])
        mid = (a + b) / 2
        s = (X - mid[0]) * along[0] + (Y - mid[1]) * along[1]
        n = (X - mid[0]) * normal[0] + (Y - mid[1]) * normal[1]
        half = np.linalg.norm(b - a) / 2 - 0.1
        return (np.abs(s) < max(half, 0.05)) & (np.abs(n) < OUTSIDE_M)

    def gate_points(self, g: Gate) -> tuple[np.ndarray, np.ndarray]:
        """(outside, inside) points 1.2 m either side of the gate's middle."""
        a, b = np.array(g.a_m), np.array(g.b_m)
        mid = (a + b) / 2
        along = (b - a) / np.linalg.norm(b - a)
        normal = np.array([-along[1], along[0]])
        centre = np.array([self.store.floor.width_m / 2, self.store.floor.depth_m / 2])
        if normal @ (centre - mid) < 0:
            normal = -normal
        return mid - 1.2 * normal, mid + 1.2 * normal

    # -- grid helpers ------------------------------------------------------------------------
    def _cell(self, xy: np.ndarray) -> tuple[int, int]:
        i, j = ((np.asarray(xy) - self.origin) / self.res).astype(int)
        return int(np.clip(i, 0, self.nx - 1)), int(np.clip(j, 0, self.ny - 1))

    def _centre(self, c: tuple[int, int]) -> np.ndarray:
        return self.origin + (np.array(c) + 0.5) * self.res

    def is_free(self, xy: np.ndarray) -> bool:
        return bool(self.free[self._cell(xy)])

    def nearest_free(self, xy: np.ndarray) -> np.ndarray:
        if self.is_free(xy):
            return np.asarray(xy, dtype=float)
        idx = np.argwhere(self.free)
        centres = self.origin + (idx + 0.5) * self.res
        return centres[np.argmin(np.linalg.norm(centres - xy, axis=1))]

    def _line_free(self, a: np.ndarray, b: np.ndarray, free: np.ndarray) -> bool:
        n = max(2, int(np.linalg.norm(b - a) / (self.res / 2)))
        return all(free[self._cell(a + (b - a) * k / n)] for k in range(n + 1))

    def plan(self, start: np.ndarray, goal: np.ndarray, avoid: list[np.ndarray] = (),
             avoid_radius_m: float = 0.45) -> list[np.ndarray]:
        """Waypoints from start to goal (both snapped onto free cells), shortened by line of sight.

        ``avoid``: people standing still, to walk round (their discs leave the grid, start and goal
        stay in it); when that leaves no way through, the plan ignores them."""
        start, goal = self.nearest_free(start), self.nearest_free(goal)
        if len(avoid):
            xs = self.origin[0] + (np.arange(self.nx) + 0.5) * self.res
            ys = self.origin[1] + (np.arange(self.ny) + 0.5) * self.res
            grid = self.free.copy()
            for p in avoid:
                grid &= ~(((xs[:, None] - p[0]) ** 2 + (ys[None, :] - p[1]) ** 2) < avoid_radius_m ** 2)
            grid[self._cell(start)] = grid[self._cell(goal)] = True
            try:
                return self._plan(start, goal, grid)
            except RuntimeError:
                pass
        return self._plan(start, goal, self.free)

    def _plan(self, start: np.ndarray, goal: np.ndarray, free: np.ndarray) -> list[np.ndarray]:
        s, g = self._cell(start), self._cell(goal)
        steps = [(1, 0, 1.0), (-1, 0, 1.0), (0, 1, 1.0), (0, -1, 1.0),
                 (1, 1, 1.4142), (1, -1, 1.4142), (-1, 1, 1.4142), (-1, -1, 1.4142)]
        h = lambda c: math.hypot(c[0] - g[0], c[1] - g[1])  # noqa: E731
        open_ = [(h(s), 0.0, s)]
        came: dict[tuple[int, int], tuple[int, int]] = {}
        cost = {s: 0.0}
        while open_:
            _, c_cost, c = heapq.heappop(open_)
            if c == g:
                break
            if c_cost > cost.get(c, math.inf):
                continue
            for dx, dy, w in steps:
                n = (c[0] + dx, c[1] + dy)
                if not (0 <= n[0] < self.nx and 0 <= n[1] < self.ny) or not free[n]:
                    continue
                if dx and dy and not (free[c[0] + dx, c[1]] and free[c[0], c[1] + dy]):
                    continue
                nc = c_cost + w
                if nc < cost.get(n, math.inf):
                    cost[n], came[n] = nc, c
                    heapq.heappush(open_, (nc + h(n), nc, n))
        if g not in cost:
            raise RuntimeError(f"no walkable path from {start.round(2)} to {goal.round(2)}")
        cells = [g]
        while cells[-1] != s:
            cells.append(came[cells[-1]])
        pts = [start] + [self._centre(c) for c in reversed(cells[1:-1])] + [goal]
        out = [pts[0]]
        i = 0
        while i < len(pts) - 1:
            j = len(pts) - 1
            while j > i + 1 and not self._line_free(pts[i], pts[j], free):
                j -= 1
            out.append(pts[j])
            i = j
        return out

