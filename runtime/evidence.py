"""What a reviewer is shown of a weight decision: the cell's readings around it and where the
shoppers near its bin were (floor points and triangulated wrists). Numbers only, never an image:
the review queue (:mod:`runtime.ops.review`) reads it from the cart updates in the event log.

Each stage keeps its own state; this one keeps the last ``keep_s`` of every cell's readings and is
handed the tracker's snapshot when a decision asks for evidence.
"""
from __future__ import annotations

from collections import defaultdict, deque

import numpy as np

from runtime.messages import WeightSample
from runtime.store import StoreSpec
from runtime.tracking import TrackView


class Evidence:
    def __init__(self, store: StoreSpec, keep_s: float = 20.0, before_s: float = 1.0, after_s: float = 1.0,
                 max_points: int = 60, near_m: float = 1.5):
        self.store, self.keep_s, self.before_s, self.after_s = store, keep_s, before_s, after_s
        self.max_points, self.near_m = max_points, near_m
        self._readings: dict[str, deque] = defaultdict(deque)     # cell → (t, grams)
        self._bins_of: dict[str, list] = defaultdict(list)
        for b in store.bins.values():
            if b.cell_id is not None:
                self._bins_of[b.cell_id].append(b)

    def reading(self, s: WeightSample) -> None:
        q = self._readings[s.cell_id]
        q.append((s.t, s.grams))
        while q and q[0][0] < s.t - self.keep_s:
            q.popleft()

    def around(self, cell_id: str, t_start: float, t_end: float, tracks: tuple[TrackView, ...] = ()) -> dict:
        """``trace``: the cell's readings from ``before_s`` ahead of the step to ``after_s`` past it
        ([t, grams], at most ``max_points``, evenly thinned); ``near``: each track within ``near_m`` of
        one of the cell's bins when the step began, with its floor path and wrists in that window and its
        skeleton (17 joints, metres) seen nearest the step's start."""
        t0, t1 = t_start - self.before_s, t_end + self.after_s
        trace = [(t, g) for t, g in self._readings.get(cell_id, ()) if t0 <= t <= t1]
        if len(trace) > self.max_points:
            trace = [trace[i] for i in np.linspace(0, len(trace) - 1, self.max_points).round().astype(int)]
        near = []
        bins = self._bins_of.get(cell_id, [])
        for k in tracks:
            if not bins or k.closed:
                continue
            x, y = k.position_at(t_start)
            d = min(b.distance_to(np.array([x, y, 1.0])) for b in bins)
            if d > self.near_m:
                continue
            path = [(t, *xy) for t, xy in k.positions if t0 <= t <= t1]
            wrists = [(t, *p) for t, p in k.wrists if t0 <= t <= t1]
            # the skeleton seen nearest the step's start (where the hand was when the weight changed)
            sk = min((q for q in k.skeletons if t0 <= q[0] <= t1), key=lambda q: abs(q[0] - t_start), default=None)
            near.append({"track": k.id, "account": k.account, "distance_m": round(float(d), 3),
                         "path": [[round(float(v), 3) for v in q] for q in path[:: max(1, len(path) // 20)]],
                         "wrists": [[round(float(v), 3) for v in q] for q in wrists[:: max(1, len(wrists) // 20)]],
                         "skeleton": None if sk is None else {
                             "t": round(float(sk[0]), 3),
                             "joints": [None if np.isnan(p[0]) else [round(float(v), 3) for v in p] for p in sk[1]]}})
        return {"trace": [[round(float(t), 3), round(float(g), 1)] for t, g in trace],
                "near": sorted(near, key=lambda n: n["distance_m"])}
