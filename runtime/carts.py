"""Virtual carts: one visit per account from its entry scan to its exit scan, the cart updates
that decisions make, the doubts that flag a receipt for review, and the receipt itself.

Every update is published as a ``CartUpdate`` stamped with the wall clock the runtime was given; a
restarted runtime rebuilds every open cart from the event log (:meth:`Carts.restore`).
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

    def cart(self, account: str | None) -> dict[str, int] | None:
        """A copy of an open visit's cart (None: no such visit)."""
        v = self.visits.get(account) if account else None
        return None if v is None else dict(v.cart)

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
    def apply(self, d: Decision) -> list[CartUpdate]:
        """A decision into its shopper's cart: one update per SKU."""
        v = self.visits[d.account]
        if d.by_weight:
            self._recent.append((self._next_key, d))
            self._next_key += 1
            del self._recent[:-self.RECENT]
        out = []
        for sku, qty in d.items:
            v.cart[sku] += d.sign * qty
            out.append(CartUpdate(d.account, sku, d.sign * qty, d.t_interaction, d.t_decided, self.clock.wall_s(),
                                  d.confidence, d.evidence))
        v.doubts.extend(d.doubts)
        return out

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
                out += [CartUpdate(m.from_account, sku, -q, d.t_interaction, t_decided, wall, d.confidence, note),
                        CartUpdate(m.to_account, sku, q, d.t_interaction, t_decided, wall, d.confidence, note)]
        return out
