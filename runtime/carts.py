"""Virtual carts: one visit per account from its entry scan to its exit scan, the cart updates
that decisions make, the doubts that flag a receipt for review, and the receipt itself.

Every update is published as a ``CartUpdate`` stamped with the wall clock the runtime was given; a
restarted runtime rebuilds every open cart from the event log (:meth:`Carts.restore`). A decision
made before the weight settled goes into the cart at once as a provisional update
(:meth:`Carts.provisional`); the settled decision then confirms it, or takes it back and corrects
it (:meth:`Carts.settle`), each as an update of its own.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace

from runtime.attribution import Charged, Move
from runtime.clock import Clock
from runtime.fusion import Decision
from runtime.messages import CartUpdate, Receipt, ReceiptLine
from runtime.store import StoreSpec

log = logging.getLogger(__name__)


@dataclass
class Visit:
    account: str
    t_enter: float
    cart: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    doubts: list[str] = field(default_factory=list)


class Carts:
    RECENT = 16   # decisions kept for the joint assignment of simultaneous events

    def __init__(self, store: StoreSpec, clock: Clock):
        self.store, self.clock = store, clock
        self.visits: dict[str, Visit] = {}
        self._recent: list[tuple[int, Decision]] = []
        self._next_key = 0
        self._pending: dict[str, tuple[Decision, tuple[str, ...]]] = {}   # key → a provisional decision, its update ids
        self._ids = 0

    # -- visits -----------------------------------------------------------------------------------
    def enter(self, account: str, t: float) -> None:
        if account not in self.visits:
            self.visits[account] = Visit(account, t)

    def exit(self, account: str, t: float) -> Receipt:
        """The visit ends: its receipt (flagged, with the reasons, when anything was in doubt)."""
        v = self.visits.pop(account, None) or Visit(account, t)
        lines = tuple(ReceiptLine(s, q, self.store.products[s].price) for s, q in sorted(v.cart.items()) if q > 0)
        total = round(sum(ln.qty * ln.unit_price for ln in lines), 2)
        reason = "; ".join(dict.fromkeys(v.doubts))
        return Receipt(account, t, lines, total, flagged=bool(v.doubts), reason=reason)

    def accounts(self) -> list[str]:
        """Accounts in the store, in the order they came in."""
        return list(self.visits)

    def cart(self, account: str | None, settling: str | None = None) -> dict[str, int] | None:
        """A copy of an open visit's cart (None: no such visit); ``settling``: as it was before the
        provisional update of that key, which the settled decision replaces."""
        v = self.visits.get(account) if account else None
        if v is None:
            return None
        cart = dict(v.cart)
        p = self._pending.get(settling) if settling is not None else None
        if p is not None and p[0].account == account:
            for sku, qty in p[0].items:
                cart[sku] = cart.get(sku, 0) - p[0].sign * qty
        return cart

    def doubt(self, account: str, text: str) -> None:
        v = self.visits.get(account)
        if v is not None:
            v.doubts.append(text)

    def restore(self, open_carts: dict[str, dict[str, int]]) -> None:
        """Open carts read back from the event log after a restart."""
        for account, cart in open_carts.items():
            v = self.visits.setdefault(account, Visit(account, 0.0))
            for sku, q in cart.items():
                v.cart[sku] += q

    # -- decisions -------------------------------------------------------------------------------
    def _remember(self, d: Decision) -> None:
        """Keep a decision by weight for the joint assignment of simultaneous events."""
        if d.by_weight:
            self._recent.append((self._next_key, d))
            self._next_key += 1
            del self._recent[:-self.RECENT]

    def _id(self) -> str:
        self._ids += 1
        return f"u{self._ids}"

    def apply(self, d: Decision) -> list[CartUpdate]:
        """A decision into its shopper's cart: one update per SKU."""
        v = self.visits[d.account]
        self._remember(d)
        out = []
        for sku, qty in d.items:
            v.cart[sku] += d.sign * qty
            out.append(CartUpdate(d.account, sku, d.sign * qty, d.t_interaction, d.t_decided, self.clock.wall_s(),
                                  d.confidence, d.evidence, update_id=self._id()))
        v.doubts.extend(d.doubts)
        return out

    def provisional(self, key: str, d: Decision) -> list[CartUpdate]:
        """A decision made before the weight settled (``key``: the cell whose step it read) into the
        cart at once; :meth:`settle` confirms or corrects it. One provisional per key at a time."""
        if key in self._pending or d.account not in self.visits:
            return []
        v = self.visits[d.account]
        out = []
        for sku, qty in d.items:
            v.cart[sku] += d.sign * qty
            out.append(CartUpdate(d.account, sku, d.sign * qty, d.t_interaction, d.t_decided, self.clock.wall_s(),
                                  d.confidence, {**d.evidence, "provisional": True}, stage="provisional",
                                  update_id=self._id()))
        self._pending[key] = (d, tuple(u.update_id for u in out))
        return out

    def settle(self, key: str, d: Decision | None, t_decided: float, why: str = "") -> list[CartUpdate]:
        """The settled decision for ``key`` (None: the weight settled on nothing to charge). Without
        a provisional it is applied as it is; otherwise it confirms the provisional (same shopper,
        items and direction: a zero update per SKU) or takes it back and is applied as a correction."""
        pending = self._pending.pop(key, None)
        if pending is None:
            return self.apply(d) if d is not None else []
        p, ids = pending
        if d is not None and (d.account, d.items, d.sign) == (p.account, p.items, p.sign):
            v = self.visits.get(d.account)
            self._remember(d)
            if v is not None:
                v.doubts.extend(d.doubts)
            return [CartUpdate(d.account, sku, 0, d.t_interaction, d.t_decided, self.clock.wall_s(), d.confidence,
                               d.evidence, update_id=self._id(), settles=uid) for (sku, _), uid in zip(d.items, ids)]
        note = why or (f"settled as {d.sign * sum(q for _, q in d.items):+d} × {', '.join(s for s, _ in d.items)} "
                       f"for {d.account}" if d is not None else "the weight settled on nothing to charge")
        log.info("provisional %s for %s taken back: %s", p.items, p.account, note)
        out = []
        v = self.visits.get(p.account)
        for (sku, qty), uid in zip(p.items, ids):
            if v is not None:
                v.cart[sku] -= p.sign * qty
            out.append(CartUpdate(p.account, sku, -p.sign * qty, p.t_interaction, t_decided, self.clock.wall_s(),
                                  p.confidence, {"corrected": note}, update_id=self._id(), settles=uid))
        return out + (self.apply(d) if d is not None else [])

    def pending(self, key: str) -> bool:
        return key in self._pending

    def recent(self) -> list[Charged]:
        """The latest decisions by weight, for the joint assignment."""
        return [Charged(k, d.t_interaction, d.bins, d.account, d.hand_m)
                for k, d in self._recent]

    def move(self, moves: list[Move], t_decided: float) -> list[CartUpdate]:
        """Move earlier charges between shoppers (two hands at once): a correction pair per SKU."""
        out: list[CartUpdate] = []
        for m in moves:
            i = next(i for i, (k, _) in enumerate(self._recent) if k == m.key)
            key, d = self._recent[i]
            self._recent[i] = (key, replace(d, account=m.to_account))
            note = {**d.evidence, "reassigned": f"from {m.from_account} to {m.to_account}: both hands at once at {m.t:.2f} s"}
            log.info("charge of %s moved from %s to %s", d.items, m.from_account, m.to_account)
            for sku, qty in d.items:
                q = d.sign * qty
                self.visits[m.from_account].cart[sku] -= q
                self.visits[m.to_account].cart[sku] += q
                wall = self.clock.wall_s()
                out += [CartUpdate(m.from_account, sku, -q, d.t_interaction, t_decided, wall, d.confidence, note,
                                   update_id=self._id()),
                        CartUpdate(m.to_account, sku, q, d.t_interaction, t_decided, wall, d.confidence, note,
                                   update_id=self._id())]
        return out
