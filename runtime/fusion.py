"""Fusion: weight × vision → a decision about one shopper's cart.

A weight event is explained by items the bin belief says lie in the cell's bins (mass match), or,
for a put-back, by what the shopper carries; the explanations are ranked once (:func:`rank`): how
well the mass matches, how many SKUs it takes, how far the hand was from each bin, and what the
hand was seen holding (which settles look-alikes that weigh the same). A reach into a bin that no
working scale watches is decided from the hand alone (:meth:`Fusion.reach`).
Fusion owns the bin belief: every decision it makes is applied to it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from runtime.config import RuntimeConfig
from runtime.hands import HandWatch, Reach
from runtime.store import StoreSpec
from runtime.tracking import TrackView
from runtime.weight_events import BinBelief, Candidate, WeightEvent, explanation_cost, mass_tolerance_g


@dataclass(frozen=True)
class Decision:
    """Items into (``sign`` +1: taken from the shelf) or out of (−1: put back) one shopper's cart."""

    account: str
    bin_id: str
    items: tuple[tuple[str, int], ...]
    sign: int
    t_interaction: float
    t_decided: float
    confidence: float
    evidence: dict
    doubts: tuple[str, ...] = ()                  # why the receipt needs a review, if it does
    bins: tuple[str, ...] = ()                    # the weighed cell's bins (joint assignment)
    hand_m: dict[str, float] = field(default_factory=dict)
    by_weight: bool = True


@dataclass(frozen=True)
class Unexplained:
    """A change nothing explains (or nobody to charge), noted for the reviewer."""

    account: str | None
    t: float
    evidence: dict
    doubts: tuple[str, ...] = ()


def rank(cands: list[Candidate], tol_g: float, mix_penalty: float, bin_cost: dict[str, float],
         held: dict[str, float], held_weight: float) -> list[tuple[float, Candidate]]:
    """Explanations of one event, best first, each with its cost: the mass match, the number of
    SKUs, how far the hand was from the candidate's bin, less what was seen in the hand."""
    def cost(c: Candidate) -> float:
        seen = max((held.get(s, 0.0) for s, _ in c.items), default=0.0)
        return explanation_cost(c, tol_g, mix_penalty) + bin_cost.get(c.bin_id, 0.0) - held_weight * seen

    return sorted(((cost(c), c) for c in cands), key=lambda p: (p[0], explanation_cost(p[1], tol_g, mix_penalty), p[1].qty))


class Fusion:
    def __init__(self, store: StoreSpec, cfg: RuntimeConfig, hands: HandWatch | None):
        self.store, self.cfg, self.fcfg, self.hands = store, cfg, cfg.fusion, hands
        self.belief = BinBelief(store, cfg.weights)
        self._lightest_g = min(p.mass_g for p in store.catalog)

    # -- weight events -------------------------------------------------------------------------------
    def weight(self, ev: WeightEvent, account: str | None, confidence_who: float, bin_cost: dict[str, float],
               attribution: dict, cart: dict[str, int] | None, track: TrackView | None,
               hand_m: dict[str, float] | None = None, commit: bool = True) -> Decision | Unexplained:
        """Decide a weight event given who caused it (``account``, ``confidence_who``, where the hand
        was per bin) and that shopper's cart (None: no open visit). ``commit=False`` (a provisional
        step) leaves the bin belief as it was: the settled step decides again."""
        bins = tuple(self.store.load_cells[ev.cell_id].bins)
        # a put-back is of what the shopper carries, no more of it than they carry (never a credit below zero)
        put_skus = {s: q for s, q in cart.items() if q > 0} if (cart is not None and ev.delta_g > 0) else None
        cands = self.belief.candidates(ev, list(bins), put_skus=put_skus)
        evidence = {"cell": ev.cell_id, "delta_g": round(ev.delta_g, 1), "t_start": round(ev.t_start, 3),
                    "t_settled": round(ev.t_end, 3), "attribution": attribution,
                    "attribution_confidence": round(confidence_who, 3)}
        if not cands or cart is None:
            evidence["candidates"] = [asdict(c) for c in cands[:3]]
            doubts = ()
            if cart is not None and confidence_who >= self.fcfg.doubt_who \
                    and abs(ev.delta_g) >= self.fcfg.doubt_mass_frac * self._lightest_g:
                # a change no product explains, within this shopper's reach, and as heavy as an item
                doubts = (f"unexplained {ev.delta_g:+.0f} g on {ev.cell_id} at {ev.t_end:.1f} s",)
            return Unexplained(account, ev.t_end, evidence, doubts)
        held = self._held_at_event(ev, track, cands)
        if held:
            evidence["held"] = {s: round(v, 2) for s, v in held.items()}
        tol = mass_tolerance_g(self.cfg.weights, ev.delta_g, ev.noise_g)
        ranked = rank(cands, tol, self.cfg.weights.mix_penalty, bin_cost, held, self.cfg.held_weight)
        best_cost, best = ranked[0]
        evidence["candidates"] = [{"bin": c.bin_id, "items": c.items, "residual_g": round(c.residual_g, 1),
                                   "cost": round(float(k), 2)} for k, c in ranked[:4]]
        if not commit and any(k - best_cost < self.fcfg.provisional_margin and c.qty < best.qty
                              and {s for s, _ in c.items} == {s for s, _ in best.items} for k, c in ranked[1:]):
            # a plate that rings or wanders overshoots the step (the tray springs back as the item
            # leaves): while fewer items fit almost as well (one tea or two?), no provisional update
            # yet, another look in a moment
            return Unexplained(account, ev.t_end, {**evidence, "undecided": "how many"}, ())
        rivals = [c for c in ranked[1:] if {s for s, _ in c[1].items} != {s for s, _ in best.items}]
        conf_what = 1.0 if not rivals else float(np.clip((rivals[0][0] - best_cost) / self.fcfg.rival_margin,
                                                         self.fcfg.min_what, 1.0))
        confidence = round(confidence_who * conf_what, 3)
        evidence["bin"] = best.bin_id
        sign = 1 if ev.delta_g < 0 else -1     # taken off the shelf: into the cart
        for sku, qty in best.items if commit else ():
            self.belief.apply(best.bin_id, sku, -sign * qty)
        doubts = ()
        if confidence < self.cfg.review_below:
            doubts = (f"unsure {'pick' if sign > 0 else 'put-back'} of "
                      f"{', '.join(s for s, _ in best.items)} at {ev.t_end:.1f} s ({confidence:.2f})",)
        return Decision(account, best.bin_id, best.items, sign, ev.t_start, ev.t_end, confidence, evidence, doubts,
                        bins, dict(hand_m or {}))

    def _held_at_event(self, ev: WeightEvent, track: TrackView | None, cands: list[Candidate]) -> dict[str, float]:
        """What the hand of the shopper at the bin held: after the item left (a pick) or before it
        landed (a put-back). Looked at only when the mass leaves more than one answer open: the
        look-alikes, and any products of equal mass side by side on one cell (the wrist alone can
        point one bin off)."""
        if self.hands is None or self.hands.products is None or track is None:
            return {}
        if len({frozenset(s for s, _ in c.items) for c in cands}) < 2:
            return {}
        # the hand is still at the shelf when the weight settles: one camera's box near it is as often
        # the neighbouring stock (look-alikes stand side by side), so two cameras must agree in 3-D
        look = self.cfg.hands.look_s
        return self.hands.held(track, ev.t_start, ev.t_end + 0.05, min_views=2) if ev.delta_g < 0 else \
            self.hands.held(track, ev.t_start - look, ev.t_start, min_views=2)

    # -- reaches without a working scale --------------------------------------------------------------
    def reach(self, r: Reach, track: TrackView, account: str, cart: dict[str, int], scale: str,
              t_now: float) -> tuple[list[Decision], dict]:
        """What the hand took or left in a reach that no working scale watched (``scale``: none,
        silent or not used); the decisions and the evidence."""
        look = self.cfg.hands.look_s
        # what the hand brought (before the wrist reached the bin) and what it carries away (from then
        # on: a grasped item is in the hand while it withdraws, and frames with the hand still in the
        # shelf are not looked at)
        before = self.hands.held(track, r.t_in - look, r.t_in - 1e-3)
        after = self.hands.held(track, r.t_in + 1e-3, r.t_out + self.cfg.hands.leave_s)
        evidence = {"method": "vision", "bin": r.bin_id, "track": track.id, "t_in": round(r.t_in, 3),
                    "t_out": round(r.t_out, 3), "held_before": {s: round(v, 2) for s, v in before.items()},
                    "held_after": {s: round(v, 2) for s, v in after.items()}, "scale": scale}
        stock = [s for s, n in self.belief.counts.get(r.bin_id, {}).items() if n > 0]
        out: list[Decision] = []
        lost = {s: v for s, v in before.items() if s not in after and cart.get(s, 0) > 0}
        if lost:
            sku = max(lost, key=lost.get)
            out.append(self._from_hand(account, sku, -1, lost[sku], r, evidence, t_now))
        # taken: what the bin holds and the hand carries away (stock elsewhere near the hand is not it)
        gained = {s: v for s, v in after.items() if s in stock and s not in before}
        if gained:
            sku = max(gained, key=gained.get)
            out.append(self._from_hand(account, sku, +1, gained[sku], r, evidence, t_now))
        if out and scale == "silent":
            b = self.store.bins[r.bin_id]
            last = out[-1]
            out[-1] = replace(last, doubts=(*last.doubts, f"charged from the hand alone: load cell {b.cell_id} "
                                                         f"silent at {r.t_out:.1f} s"))
        return out, evidence

    def _from_hand(self, account: str, sku: str, qty: int, conf: float, r: Reach, evidence: dict, t_now: float) -> Decision:
        self.belief.apply(r.bin_id, sku, -qty)
        conf = round(float(min(conf, self.fcfg.vision_conf_max)), 3)
        doubts = ()
        if conf < self.cfg.review_below:
            doubts = (f"unsure {'pick' if qty > 0 else 'put-back'} of {sku} at {r.t_out:.1f} s seen in the hand only "
                      f"({conf:.2f})",)
        return Decision(account, r.bin_id, ((sku, 1),), qty, r.t_out, t_now, conf, evidence, doubts, by_weight=False)
