"""Attribution: who caused a weight event, from where the shoppers' hands and feet were.

The hand in the bin when the item left (a triangulated wrist within ``wrist_window_s`` before the
weight's departure) decides, a hand in a bin well to the side of where its body stood counting
farther away; without a wrist, the shopper standing within ``reach_m`` of the bin's
front. One hand takes one thing at a time: a shopper just charged for another bin's item at the
same moment counts ``busy_hand_m`` farther away, and two items leaving two bins at once are
assigned jointly (:meth:`Attributor.concurrent`), which may move the earlier charge.
Without cameras, a charge goes to the only shopper in the store, or is a guess among several.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from runtime.config import RuntimeConfig
from runtime.store import StoreSpec
from runtime.tracking import TrackView
from runtime.weight_events import WeightEvent


@dataclass(frozen=True)
class Attribution:
    """Who caused a weight event, and how sure that is."""

    account: str | None
    confidence: float
    method: str                                  # wrist | floor | only shopper | guess | no track seen | none
    track_id: int | None = None
    distance_m: float | None = None              # the chosen hand's (or feet's) distance to the bin
    bin_cost: dict[str, float] = field(default_factory=dict)   # per bin of the cell: how far the hand was from it, in units
    hand_m: dict[str, float] = field(default_factory=dict)     # account → its hand's distance (no busy-hand term)
    others: tuple[dict, ...] = ()                # the runners-up
    in_store: tuple[str, ...] = ()

    def evidence(self) -> dict:
        if self.track_id is None:
            return {"method": self.method, "in_store": list(self.in_store)}
        return {"method": self.method, "track": self.track_id, "distance_m": round(self.distance_m or 0.0, 3),
                "others": list(self.others)}


@dataclass(frozen=True)
class Charged:
    """A decided weight event as the joint assignment sees it (recent ones only)."""

    key: int                                     # the carts' id of the decision
    t_start: float
    bins: tuple[str, ...]
    account: str
    hand_m: dict[str, float]


@dataclass(frozen=True)
class Move:
    """Move the decision ``key`` from one account to another: two hands at once."""

    key: int
    from_account: str
    to_account: str
    t: float                                     # the event that showed it


class Attributor:
    def __init__(self, store: StoreSpec, cfg: RuntimeConfig):
        self.store, self.cfg, self.acfg = store, cfg, cfg.attribution
        self._charged_at: dict[str, list[tuple[float, str]]] = defaultdict(list)   # account → (t, bin) charged

    def charged(self, account: str, t: float, bin_id: str) -> None:
        """A charge was made: this shopper's hand was busy at ``bin_id`` at ``t``."""
        self._charged_at[account].append((t, bin_id))

    def weight_event(self, ev: WeightEvent, tracks: tuple[TrackView, ...] | None, in_store: list[str]) -> Attribution:
        """Who reached into the cell's bins during the event; ``tracks`` None without cameras."""
        cfg, a = self.cfg, self.acfg
        bins = list(self.store.load_cells[ev.cell_id].bins)
        if not tracks:
            if not in_store:
                return Attribution(None, 0.0, "none", in_store=())
            return Attribution(in_store[0], 1.0 / len(in_store), "only shopper" if len(in_store) == 1 else "guess",
                               in_store=tuple(in_store))
        t0, t1 = ev.t_start - cfg.attribution_window_s, ev.t_end
        scored: list[tuple[float, TrackView, dict[str, float], str]] = []
        hand_m: dict[str, float] = {}
        for k in tracks:
            if k.closed or (k.account is not None and k.account not in in_store):
                continue   # gone, or its shopper has left the store
            if k.account is None and not (k.confirmed and k.moved_m >= cfg.tracking.walked_m):
                continue   # a shape nobody scanned in that never walked: not a shopper (see WorldTracker.active)
            per_bin, how = {}, "floor"
            # the hand is in the bin when the item leaves (or lands): the weight's departure time
            wrists = [w for t, w in k.wrists if ev.t_start - cfg.wrist_window_s <= t <= ev.t_start + a.wrist_after_s]
            pos = [p for t, p in k.positions if t0 <= t <= t1]
            if not pos and not wrists:
                continue
            # where the body stood while the hand was out: shoppers reach in front of themselves
            # far more than into a neighbour's bin, and a wrist is often triangulated a hand's
            # width off, so a hand in a bin far to the side of its body counts farther away
            near = [p for t, p in k.positions if ev.t_start - cfg.wrist_window_s <= t <= ev.t_start + a.wrist_after_s]
            body = np.mean(near, axis=0) if near else None
            for bid in bins:
                b = self.store.bins[bid]
                if wrists:
                    per_bin[bid] = min(b.distance_to(w) for w in wrists)
                    if body is not None:
                        per_bin[bid] += a.beside_gain * max(b.beside_m(body) - a.beside_free_m, 0.0)
                    how = "wrist"
                else:
                    # within reach, the one standing nearer the bin and more in front of it (two
                    # bodies within reach, neither hand seen, used to tie)
                    front = b.front_xy()
                    d_front = min(float(np.linalg.norm(p - front)) for p in pos)
                    per_bin[bid] = max(d_front - cfg.reach_m, 0.0) + a.unseen_hand_m + a.floor_gain * min(d_front, cfg.reach_m) \
                        + a.beside_gain * max(b.beside_m(body if body is not None else pos[-1]) - a.beside_free_m, 0.0)
            d = min(per_bin.values())
            if k.account is not None:
                hand_m[k.account] = min(hand_m.get(k.account, np.inf), d)
            # one hand takes one thing at a time: a shopper already charged for another bin's item
            # at this very moment is a less likely taker of this one (crowded shelves)
            if any(abs(t - ev.t_start) < a.concurrent_s and b not in bins for t, b in self._charged_at.get(k.account, ())):
                d += cfg.busy_hand_m
            scored.append((d, k, per_bin, how))
        scored.sort(key=lambda s: s[0])
        if not scored:
            if in_store:
                return Attribution(in_store[0], 0.5 / len(in_store), "no track seen", in_store=tuple(in_store))
            return Attribution(None, 0.0, "none")
        d, k, per_bin, how = scored[0]
        account = k.account
        margin = (scored[1][0] - d) if len(scored) > 1 else 1.0
        conf = float(np.clip(0.5 + margin, 0.5, 0.99)) * (1.0 if d < a.sure_m else a.far_factor)
        if account is None:   # the hand's track never got a scan: the nearest shopper with one
            named = [s for s in scored if s[1].account is not None]
            if named:
                account, conf = named[0][1].account, conf * a.unnamed_factor
            elif len(in_store) == 1:
                account, conf = in_store[0], conf * a.alone_factor
        dmin = min(per_bin.values())
        scale = a.wrist_bin_scale_m if how == "wrist" else a.floor_bin_scale_m
        others = tuple({"track": s[1].id, "account": s[1].account, "distance_m": round(s[0], 3)} for s in scored[1:4])
        return Attribution(account, conf, how, k.id, d, {b: (v - dmin) / scale for b, v in per_bin.items()},
                           hand_m, others, tuple(in_store))

    def concurrent(self, ev: WeightEvent, att: Attribution, account: str | None, recent: list[Charged],
                   in_store: set[str]) -> tuple[str | None, list[Move]]:
        """Two items leaving different bins at the same moment are two hands: this event and each
        charge of another bin made within ``concurrent_s`` are assigned jointly (least total hand
        distance, a hand busy with both counting ``busy_hand_m`` more), which may move the earlier
        charge. Charged one at a time, the first event takes the nearest hand, and the second one
        then avoids that busy hand even where the two together fit the other way round better.
        A joint assignment must beat the one-at-a-time one by ``joint_margin_m``. Returns this
        event's account and the earlier charges to move."""
        moves: list[Move] = []
        if account is None:
            return account, moves
        bins = set(self.store.load_cells[ev.cell_id].bins)
        busy = self.cfg.busy_hand_m
        now: dict[int, str] = {}    # decisions moved here already
        for prev in recent[-8:]:
            p_acc = now.get(prev.key, prev.account)
            if abs(prev.t_start - ev.t_start) >= self.acfg.concurrent_s or set(prev.bins) & bins:
                continue
            cur = prev.hand_m.get(p_acc, np.inf) + att.hand_m.get(account, np.inf) + (busy if p_acc == account else 0.0)
            best = None
            for a1, d1 in prev.hand_m.items():
                for a2, d2 in att.hand_m.items():
                    if a1 not in in_store or a2 not in in_store:
                        continue
                    c = d1 + d2 + (busy if a1 == a2 else 0.0)
                    if best is None or c < best[0]:
                        best = (c, a1, a2)
            if best is None or best[0] >= cur - self.acfg.joint_margin_m:
                continue
            _, a1, account = best
            if a1 != p_acc:
                moves.append(Move(prev.key, p_acc, a1, ev.t_start))
                now[prev.key] = a1
        return account, moves
