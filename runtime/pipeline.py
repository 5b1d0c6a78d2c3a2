"""The store runtime: sensor messages in, tracks, cart updates and receipts out.

``Runtime(store, config, out_dir)`` takes the messages of any source in time order through
:meth:`Runtime.process` (or :meth:`Runtime.run` for a whole source) and publishes

- ``TrackState`` for every confirmed shopper track at each perception step,
- ``CartUpdate`` when a weight event is decided: the step is explained by items (mass match
  against the running bin belief) and given to the shopper whose hand was in that bin during the
  event (triangulated wrists, else the shopper's floor position in front of the bin),
- ``Receipt`` when an account's exit scan comes, flagged for review when any of its charges was
  unsure or an unexplained shelf change happened within reach of that shopper.

A product seen in the shopper's hand (:mod:`runtime.hands`) settles look-alike SKUs that weight
cannot tell apart, and a reach into a bin whose load cell has gone silent (or that has none) is
still charged from what the hand took.

Everything goes to the append-only event log in ``out_dir``. ``sensing`` switches the sensors used:
``fused`` (cameras and scales), ``vision_only`` (cameras and gates: reaches and the product in the
hand decide every charge) or ``weight_only`` (scales and gates; no cameras: a charge goes to the
only shopper in the store, and is a guess when there are several).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from runtime.eventlog import EventLog
from runtime.hands import HandConfig, HandWatch, Reach, distance_to_bin
from runtime.messages import CartUpdate, Frame, GateEvent, Receipt, ReceiptLine, SensorMessage, TrackState, WeightSample
from runtime.perception import Detector, load_model
from runtime.store import StoreSpec
from runtime.tracking import TrackingConfig, WorldTrack, WorldTracker, associate, person_views
from runtime.weight_events import BinBelief, Candidate, StepDetector, WeightEvent, WeightEventConfig

SENSING = ("fused", "vision_only", "weight_only")


@dataclass(frozen=True)
class RuntimeConfig:
    sensing: str = "fused"                       # fused | vision_only | weight_only
    pose_model: str = "models/person_pose_openvino_model"  # person boxes and 17 keypoints (.onnx, OpenVINO folder or .pt)
    perception_hz: float = 5.0                   # frames per second and camera that go through the model
    person_conf: float = 0.35
    review_below: float = 0.6                    # a receipt with a charge less sure than this is flagged
    attribution_window_s: float = 2.0            # look this far before a weight event for the shopper at the bin
    wrist_window_s: float = 0.6                  # and this far before the item left for the hand in the bin
    busy_hand_m: float = 0.3                     # extra distance for a shopper whose hand was busy at another bin then
    reach_m: float = 0.75                        # a shopper standing this close to a bin's front can reach in
    group_window_s: float = 5.0                  # people entering this soon after a scan share its account
    cell_silent_s: float = 1.0                   # a load cell that sent nothing for this long has failed
    held_weight: float = 1.0                     # how much a product seen in the hand counts against weight alone
    weights: WeightEventConfig = field(default_factory=WeightEventConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    hands: HandConfig = field(default_factory=HandConfig)

    def __post_init__(self) -> None:
        if self.sensing not in SENSING:
            raise ValueError(f"runtime.sensing={self.sensing!r}: expected one of {', '.join(SENSING)}")
        if self.perception_hz <= 0:
            raise ValueError(f"runtime.perception_hz={self.perception_hz}: expected > 0")


@dataclass
class _Visit:
    account: str
    t_enter: float
    cart: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    doubts: list[str] = field(default_factory=list)


class Runtime:
    def __init__(self, store: StoreSpec, config: RuntimeConfig = RuntimeConfig(), out_dir: str | Path | None = None,
                 detector: Detector | None = None, restore: bool = False, products_detector: Detector | None = None):
        self.store, self.cfg = store, config
        self.log = EventLog(out_dir) if out_dir is not None else None
        self.vision = config.sensing in ("fused", "vision_only")
        self.scales = config.sensing in ("fused", "weight_only")
        self.detector = detector if detector is not None or not self.vision else load_model(config.pose_model, conf=config.person_conf)
        products = None
        if self.vision and (config.hands.product_model or config.sensing == "vision_only"):
            products = products_detector if products_detector is not None else \
                load_model(config.hands.product_model, conf=config.hands.product_conf)
        self.hands = HandWatch(store, config.hands, products) if self.vision else None
        self._cell_last_t: dict[str, float] = {}
        self.tracker = WorldTracker(store, config.tracking)
        self.cells = {cid: StepDetector(cid, config.weights) for cid in store.load_cells}
        self.belief = BinBelief(store)
        self.visits: dict[str, _Visit] = {}
        self._tick_t: float | None = None
        self._views: list = []
        self._last_frame: dict[str, float] = {}
        self._scans: list[tuple[float, str, str]] = []      # pending entry scans: (t, gate, account)
        self._groups: list[tuple[float, str]] = []          # (until t, account): who may still join
        self._reaches: dict[str, list[tuple[float, str]]] = defaultdict(list)  # account → (t, bin) charged
        self._decided: list[dict] = []                      # recent decisions, for joint re-assignment
        self.t = 0.0
        self.stats = {"frames_seen": 0, "frames_processed": 0, "weight_events": 0, "unexplained": 0}
        if restore and self.log is not None:
            for account, cart in self.log.open_carts().items():
                v = self.visits.setdefault(account, _Visit(account, 0.0))
                for sku, q in cart.items():
                    v.cart[sku] += q

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, source: Iterable[SensorMessage]) -> list:
        out = []
        try:
            for msg in source:
                out.extend(self.process(msg))
            last = self._flush_tick()
            for m in last:
                self._publish(m)
            out.extend(last)
        finally:
            self.close()
        return out

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def process(self, msg: SensorMessage) -> list:
        out: list = []
        if self._tick_t is not None and msg.t > self._tick_t + 1e-3:
            out.extend(self._flush_tick())
        self.t = msg.t
        if isinstance(msg, Frame):
            self.stats["frames_seen"] += 1
            if self.vision:
                self._frame(msg)
        elif isinstance(msg, WeightSample):
            det = self.cells.get(msg.cell_id) if self.scales else None
            if det is not None:
                last = self._cell_last_t.get(msg.cell_id)
                if last is not None and msg.t - last >= self.cfg.cell_silent_s:
                    # back after a gap in which the hands decided: start from the level it reads now,
                    # so what was taken meanwhile is not charged a second time
                    det = self.cells[msg.cell_id] = StepDetector(msg.cell_id, self.cfg.weights)
                    self._note("cell_back", {"t": msg.t, "cell": msg.cell_id, "silent_s": round(msg.t - last, 3)})
                self._cell_last_t[msg.cell_id] = msg.t
                ev = det.update(msg.t, msg.grams)
                if ev is not None:
                    out.extend(self._weight_event(ev))
        elif isinstance(msg, GateEvent):
            out.extend(self._gate(msg))
        for m in out:
            self._publish(m)
        return out

    def _publish(self, m) -> None:
        if self.log is not None:
            self.log.append(m)

    def _note(self, kind: str, payload: dict) -> None:
        if self.log is not None:
            self.log.append({**payload, "kind": kind}, kind=kind)

    # -- vision ------------------------------------------------------------------------------------
    def _frame(self, f: Frame) -> None:
        last = self._last_frame.get(f.camera_id)
        if last is not None and f.t - last < 1.0 / self.cfg.perception_hz - 1e-3:
            return
        self._last_frame[f.camera_id] = f.t
        cam = self.store.camera_by_id.get(f.camera_id)
        if cam is None:
            return
        self.stats["frames_processed"] += 1
        dets = [d for d in self.detector(f.image) if d.label == "person"]
        self._views.extend(person_views(cam, f.image, dets, self.store, self.cfg.tracking))
        if self.hands is not None and self.hands.products is not None:
            self.hands.frame(f.camera_id, f.t, f.image)
        self._tick_t = f.t

    def _flush_tick(self) -> list:
        if self._tick_t is None:
            return []
        t, views = self._tick_t, self._views
        self._tick_t, self._views = None, []
        self.tracker.update(t, associate(t, views, self.store, self.cfg.tracking))
        self._assign_scans(t)
        for m in [TrackState(t, k.id, k.account, float(k.xy[0]), float(k.xy[1])) for k in self.tracker.active()]:
            self._publish(m)   # track states are logged, not returned: they would swamp the caller
        out: list = []
        for r in self.hands.update(t, self.tracker) if self.hands is not None else ():
            out.extend(self._reach(r))
        return out

    # -- gates and identity --------------------------------------------------------------------------
    def _gate(self, g: GateEvent) -> list:
        self._note(g.kind, {"t": g.t, "account_id": g.account_id, "gate_id": g.gate_id})
        if g.kind == "enter":
            if g.account_id not in self.visits:
                self.visits[g.account_id] = _Visit(g.account_id, g.t)
            self._scans.append((g.t, g.gate_id, g.account_id))
            self._groups.append((g.t + self.cfg.group_window_s, g.account_id))
            self._assign_scans(g.t)
            return []
        v = self.visits.pop(g.account_id, None) or _Visit(g.account_id, g.t)
        self.tracker.close_account(g.account_id)
        lines = tuple(ReceiptLine(s, q, self.store.products[s].price) for s, q in sorted(v.cart.items()) if q > 0)
        total = round(sum(l.qty * l.unit_price for l in lines), 2)
        reason = "; ".join(dict.fromkeys(v.doubts))
        return [Receipt(g.account_id, g.t, lines, total, flagged=bool(v.doubts), reason=reason)]

    def _assign_scans(self, t: float) -> None:
        """Give each pending entry scan the unassigned track nearest its gate; tracks that come in
        just behind a scanned shopper (no scan of their own) join that account as a group."""
        if not self.vision:
            self._scans.clear()
            return
        keep = []
        for ts, gate, account in self._scans:
            # who was at the gate when the scan came; wait a moment so that the one crossing has
            # been seen often enough to be a track
            near = self.tracker.near_gate(gate, t, radius_m=1.2, born_after=ts - 3.0, at=ts) if t >= ts + 0.6 else []
            if near:
                near[0][1].account = account
            elif t - ts < 4.0:
                keep.append((ts, gate, account))
        self._scans = keep
        self._groups = [(until, a) for until, a in self._groups if until >= t]
        if not self._scans and self._groups:
            entry = next((g.id for g in self.store.gates if g.kind == "entry"), None)
            if entry is not None:
                for _, k in self.tracker.near_gate(entry, t, radius_m=1.5, first=True):
                    if k.moved_m >= 0.5 and k.first_t >= self._groups[-1][0] - self.cfg.group_window_s - 1.0:
                        k.account = self._groups[-1][1]

    # -- weight events and carts ---------------------------------------------------------------------
    def _weight_event(self, ev: WeightEvent) -> list:
        self.stats["weight_events"] += 1
        cell = self.store.load_cells[ev.cell_id]
        bins = list(cell.bins)
        account, conf_who, bin_dist, why = self._attribute(ev, bins)
        raw = why.pop("_raw", {})
        account, corrections = self._resolve_concurrent(ev, bins, raw, account)
        visit = self.visits.get(account) if account else None
        put_skus = [s for s, q in visit.cart.items() if q > 0] if (visit and ev.delta_g > 0) else None
        cands = self.belief.candidates(ev, bins, put_skus=put_skus)
        evidence = {"cell": ev.cell_id, "delta_g": round(ev.delta_g, 1), "t_start": round(ev.t_start, 3),
                    "t_settled": round(ev.t_end, 3), "attribution": why, "attribution_confidence": round(conf_who, 3)}
        if not cands or visit is None:
            self.stats["unexplained"] += 1
            evidence["candidates"] = [asdict(c) for c in cands[:3]]
            self._note("unexplained", {"t": ev.t_end, "account_id": account, **evidence})
            lightest = min(p.mass_g for p in self.store.catalog)
            if visit is not None and conf_who >= 0.5 and abs(ev.delta_g) >= 0.5 * lightest:
                # a change no product explains, within this shopper's reach, and as heavy as an item
                visit.doubts.append(f"unexplained {ev.delta_g:+.0f} g on {ev.cell_id} at {ev.t_end:.1f} s")
            return corrections

        held = self._held_at_event(ev, why.get("track"))
        if held:
            evidence["held"] = {s: round(v, 2) for s, v in held.items()}

        def cost(c: Candidate) -> float:
            tol = max(8.0, 0.03 * abs(ev.delta_g))
            seen = max((held.get(s, 0.0) for s, _ in c.items), default=0.0)
            return c.residual_g / tol + 0.5 * (len(c.items) - 1) + bin_dist.get(c.bin_id, 0.0) - self.cfg.held_weight * seen

        ranked = sorted(cands, key=cost)
        best = ranked[0]
        rivals = [c for c in ranked[1:] if {s for s, _ in c.items} != {s for s, _ in best.items}]
        conf_what = 1.0 if not rivals else float(np.clip((cost(rivals[0]) - cost(best)) / 1.0, 0.3, 1.0))
        confidence = round(conf_who * conf_what, 3)
        evidence["candidates"] = [{"bin": c.bin_id, "items": c.items, "residual_g": round(c.residual_g, 1),
                                   "cost": round(cost(c), 2)} for c in ranked[:4]]
        sign = 1 if ev.delta_g < 0 else -1     # taken off the shelf: into the cart
        self._reaches[account].append((ev.t_start, best.bin_id))
        self._decided.append({"t_start": ev.t_start, "bins": bins, "account": account, "raw": raw, "sign": sign,
                              "items": best.items, "confidence": confidence, "evidence": {**evidence, "bin": best.bin_id}})
        del self._decided[:-16]
        out = list(corrections)
        for sku, qty in best.items:
            self.belief.apply(best.bin_id, sku, -sign * qty)
            visit.cart[sku] += sign * qty
            out.append(CartUpdate(account, sku, sign * qty, ev.t_start, ev.t_end, time.time(), confidence,
                                  {**evidence, "bin": best.bin_id}))
        if confidence < self.cfg.review_below:
            visit.doubts.append(f"unsure {'pick' if sign > 0 else 'put-back'} of "
                                f"{', '.join(s for s, _ in best.items)} at {ev.t_end:.1f} s ({confidence:.2f})")
        return out

    def _held_at_event(self, ev: WeightEvent, track_id: int | None) -> dict[str, float]:
        """What the hand of the shopper at the bin held: after the item left (a pick) or before it
        landed (a put-back). Looked at only when the weight leaves look-alikes open."""
        if self.hands is None or self.hands.products is None or track_id is None:
            return {}
        k = next((k for k in self.tracker.tracks if k.id == track_id), None)
        if k is None:
            return {}
        cells_bins = self.store.load_cells[ev.cell_id].bins
        groups = [self.store.products[s].lookalike for b in cells_bins for s, n in self.belief.counts.get(b, {}).items() if n > 0]
        if not any(g and groups.count(g) > 1 for g in groups):
            return {}
        # the hand is still at the shelf when the weight settles: one camera's box near it is as often
        # the neighbouring stock (look-alikes stand side by side), so two cameras must agree in 3-D
        look = self.cfg.hands.look_s
        return self.hands.held(k, ev.t_start, ev.t_end + 0.05, min_views=2) if ev.delta_g < 0 else \
            self.hands.held(k, ev.t_start - look, ev.t_start, min_views=2)

    def _reach(self, r: Reach) -> list:
        """A reach into a bin that no working scale watches (``vision_only``, a cell gone silent,
        or a bin without one): what the hand took or left decides the charge."""
        b = self.store.bins[r.bin_id]
        if self.scales and b.cell_id is not None and self.t - self._cell_last_t.get(b.cell_id, -np.inf) < self.cfg.cell_silent_s:
            return []   # the scale is working: its weight events decide
        k = next((k for k in self.tracker.tracks if k.id == r.track_id and not k.closed), None)
        account = k.account if k is not None else None
        if account is None and len(self.visits) == 1 and k is not None:
            account = next(iter(self.visits))
        visit = self.visits.get(account) if account else None
        if visit is None:
            return []
        look = self.cfg.hands.look_s
        # what the hand brought (before the wrist reached the bin) and what it carries away (from then
        # on: a grasped item is in the hand while it withdraws, and frames with the hand still in the
        # shelf are not looked at)
        before = self.hands.held(k, r.t_in - look, r.t_in - 1e-3)
        after = self.hands.held(k, r.t_in + 1e-3, r.t_out + self.cfg.hands.leave_s)
        evidence = {"method": "vision", "bin": r.bin_id, "track": k.id, "t_in": round(r.t_in, 3),
                    "t_out": round(r.t_out, 3), "held_before": {s: round(v, 2) for s, v in before.items()},
                    "held_after": {s: round(v, 2) for s, v in after.items()},
                    "scale": "none" if b.cell_id is None else ("silent" if self.scales else "not used")}
        stock = [s for s, n in self.belief.counts.get(r.bin_id, {}).items() if n > 0]
        out: list = []
        lost = {s: v for s, v in before.items() if s not in after and visit.cart.get(s, 0) > 0}
        if lost:
            sku = max(lost, key=lost.get)
            out.append(self._vision_charge(visit, sku, -1, lost[sku], r, evidence))
        # taken: what the bin holds and the hand carries away (stock elsewhere near the hand is not it)
        gained = {s: v for s, v in after.items() if s in stock and s not in before}
        if gained:
            sku = max(gained, key=gained.get)
            out.append(self._vision_charge(visit, sku, +1, gained[sku], r, evidence))
        if not out:
            self._note("reach", {"t": self.t, "account_id": account, **evidence})
        elif evidence["scale"] == "silent":
            visit.doubts.append(f"charged from the hand alone: load cell {b.cell_id} silent at {r.t_out:.1f} s")
        return out

    def _vision_charge(self, visit: _Visit, sku: str, qty: int, conf: float, r: Reach, evidence: dict) -> CartUpdate:
        self.belief.apply(r.bin_id, sku, -qty)
        visit.cart[sku] += qty
        conf = round(float(min(conf, 0.95)), 3)
        if conf < self.cfg.review_below:
            visit.doubts.append(f"unsure {'pick' if qty > 0 else 'put-back'} of {sku} at {r.t_out:.1f} s "
                                f"seen in the hand only ({conf:.2f})")
        return CartUpdate(visit.account, sku, qty, r.t_out, self.t, time.time(), conf, evidence)

    def _resolve_concurrent(self, ev: WeightEvent, bins: list[str], raw: dict[str, float],
                            account: str | None) -> tuple[str | None, list[CartUpdate]]:
        """Two items leaving different bins at the same moment are two hands: when this event's
        shopper was just charged for another bin's item, assign both events jointly (least total
        hand distance, one item per shopper unless that is much worse) and move the earlier charge
        if it was wrong. Returns this event's account and the corrections."""
        out: list[CartUpdate] = []
        if account is None:
            return account, out
        for prev in self._decided[-8:]:
            if prev["account"] != account or abs(prev["t_start"] - ev.t_start) >= 0.5 or set(prev["bins"]) & set(bins):
                continue
            best = None
            for a1, d1 in prev["raw"].items():
                for a2, d2 in raw.items():
                    if a1 not in self.visits or a2 not in self.visits:
                        continue
                    c = d1 + d2 + (self.cfg.busy_hand_m if a1 == a2 else 0.0)
                    if best is None or c < best[0]:
                        best = (c, a1, a2)
            if best is None or best[1] == prev["account"]:
                continue
            _, a1, account = best
            old, prev["account"] = prev["account"], a1
            for sku, qty in prev["items"]:
                q = prev["sign"] * qty
                self.visits[old].cart[sku] -= q
                self.visits[a1].cart[sku] += q
                ev_note = {**prev["evidence"], "reassigned": f"from {old} to {a1}: both hands at once at "
                                                              f"{ev.t_start:.2f} s"}
                out += [CartUpdate(old, sku, -q, prev["t_start"], ev.t_end, time.time(), prev["confidence"], ev_note),
                        CartUpdate(a1, sku, q, prev["t_start"], ev.t_end, time.time(), prev["confidence"], ev_note)]
        return account, out

    def _attribute(self, ev: WeightEvent, bins: list[str]) -> tuple[str | None, float, dict[str, float], dict]:
        """Who reached into the cell's bins during the event: (account, confidence, per-bin cost of
        where the hand was, evidence)."""
        in_store = [a for a in self.visits]
        if not self.vision or not self.tracker.tracks:
            if not in_store:
                return None, 0.0, {}, {"method": "none", "in_store": []}
            return in_store[0], 1.0 / len(in_store), {}, {"method": "only shopper" if len(in_store) == 1 else "guess",
                                                          "in_store": in_store}
        t0, t1 = ev.t_start - self.cfg.attribution_window_s, ev.t_end
        scored: list[tuple[float, WorldTrack, dict[str, float], str]] = []
        raw: dict[str, float] = {}      # account → how far its hand was, no busy-hand term
        for k in self.tracker.tracks:
            if k.closed or (k.account is not None and k.account not in self.visits):
                continue   # gone, or its shopper has left the store
            if k.account is None and not (k.confirmed and k.moved_m >= 0.5):
                continue   # a shape nobody scanned in that never walked: not a shopper (see WorldTracker.active)
            per_bin, how = {}, "floor"
            # the hand is in the bin when the item leaves (or lands): the weight's departure time
            wrists = [w for t, w in k.wrists if ev.t_start - self.cfg.wrist_window_s <= t <= ev.t_start + 0.3]
            pos = [p for t, p in k.positions if t0 <= t <= t1]
            if not pos and not wrists:
                continue
            for bid in bins:
                b = self.store.bins[bid]
                if wrists:
                    per_bin[bid] = min(distance_to_bin(b, w) for w in wrists)
                    how = "wrist"
                else:
                    front = _bin_front_xy(b)
                    per_bin[bid] = max(min(float(np.linalg.norm(p - front)) for p in pos) - self.cfg.reach_m, 0.0)
            d = min(per_bin.values())
            if k.account is not None:
                raw[k.account] = min(raw.get(k.account, np.inf), d)
            # one hand takes one thing at a time: a shopper already charged for another bin's item
            # at this very moment is a less likely taker of this one (crowded shelves)
            if any(abs(t - ev.t_start) < 0.5 and b not in bins for t, b in self._reaches.get(k.account, ())):
                d += self.cfg.busy_hand_m
            scored.append((d, k, per_bin, how))
        scored.sort(key=lambda s: s[0])
        if not scored:
            return (in_store[0], 0.5 / len(in_store), {}, {"method": "no track seen", "in_store": in_store}) if in_store \
                else (None, 0.0, {}, {"method": "none"})
        d, k, per_bin, how = scored[0]
        account = k.account
        margin = (scored[1][0] - d) if len(scored) > 1 else 1.0
        conf = float(np.clip(0.5 + margin, 0.5, 0.99)) * (1.0 if d < 0.3 else 0.7)
        if account is None:   # the hand's track never got a scan: the nearest shopper with one
            named = [s for s in scored if s[1].account is not None]
            if named:
                account, conf = named[0][1].account, conf * 0.5
            elif len(in_store) == 1:
                account, conf = in_store[0], conf * 0.7
        dmin = min(per_bin.values())
        scale = 0.1 if how == "wrist" else 0.4
        bin_cost = {b: (v - dmin) / scale for b, v in per_bin.items()}
        why = {"method": how, "track": k.id, "distance_m": round(d, 3), "_raw": raw,
               "others": [{"track": s[1].id, "account": s[1].account, "distance_m": round(s[0], 3)} for s in scored[1:4]]}
        return account, conf, bin_cost, why


def _bin_front_xy(b) -> np.ndarray:
    local = np.array([(b.x0 + b.x1) / 2, b.unit.depth_m / 2, 0.0, 1.0])
    return (b.unit.local_to_world() @ local)[:2]
