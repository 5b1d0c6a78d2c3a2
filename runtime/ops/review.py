"""The review desk: receipts as the point-of-sale system and the staff see them, the queue of
flagged ones with their evidence, and the actions that settle them.

Everything is read from, and written to, the event log (its own connection: the runtime keeps
writing beside it). A receipt's id is its row in the log. A review action is a ``review`` event
(who, when on the wall clock, why, what); one that changes the receipt adds a
``receipt_revision`` event (the whole receipt, its next version) and an outbox row for the
point-of-sale system (key ``receipt-<id>-v<version>``), all in one transaction.

Actions: ``approve`` (the receipt stands as it is), ``change`` (set one line's quantity, 0 removes
it; a SKU not on the receipt is added at the catalog's price), ``refund`` (take back ``qty`` of one
line, or everything when no SKU is given). The evidence of a receipt is the visit's cart updates
(candidates and their costs, the weight trace around each step, the shoppers near the bin: numbers,
never an image) and what the runtime noted but could not charge.
"""
from __future__ import annotations

import json
from pathlib import Path

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.eventlog import connect, enqueue
from runtime.logdb import LogDB
from runtime.store import StoreSpec

ACTIONS = ("approve", "change", "refund")


class ReviewError(ValueError):
    """An action that cannot be taken (the message says why); ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class ReviewDesk:
    def __init__(self, db_path: str | Path, store: StoreSpec, clock: Clock = SYSTEM_CLOCK):
        """``db_path``: the event log's SQLite file, or its PostgreSQL URL (the store's schema)."""
        self.path, self.store, self.clock = db_path, store, clock
        self.db: LogDB = connect(db_path, store.name)
        self._price = {p.sku: p.price for p in store.catalog}

    def close(self) -> None:
        self.db.close()

    # -- reading -----------------------------------------------------------------------------------
    def receipts(self, since_id: int = 0, until_t: float | None = None, limit: int = 500) -> list[dict]:
        """Receipts after ``since_id`` (their current versions), oldest first."""
        q = "SELECT seq, payload FROM events WHERE kind = 'receipt' AND seq > ?"
        args: list = [since_id]
        if until_t is not None:
            q += " AND t <= ?"
            args.append(until_t)
        rows = self.db.execute(q + " ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        if not rows:
            return []
        # every receipt's last version and whether it was reviewed: two queries, not two per receipt
        last, reviewed = {}, set()
        for kind, account, p in self.db.execute(
                "SELECT kind, account_id, payload FROM events WHERE kind IN ('receipt_revision', 'review') AND seq > ? "
                "ORDER BY seq", (rows[0][0],)):
            rid = int(account[1:])
            if kind == "review":
                reviewed.add(rid)
            else:
                last[rid] = json.loads(p)
        return [self._status(rid, json.loads(p), last.get(rid), rid in reviewed) for rid, p in rows]

    def receipt(self, receipt_id: int) -> dict:
        """One receipt: its current version, every version and the reviews."""
        row = self.db.execute("SELECT payload FROM events WHERE kind = 'receipt' AND seq = ?", (receipt_id,)).fetchone()
        if row is None:
            raise ReviewError(f"no receipt {receipt_id}", 404)
        first = {"receipt_id": receipt_id, "version": 1, **json.loads(row[0])}
        out = self._current(receipt_id, json.loads(row[0]))
        out["versions"] = [first, *self._revisions(receipt_id)]
        out["reviews"] = self._reviews(receipt_id)
        return out

    def queue(self, until_t: float | None = None) -> list[dict]:
        """Flagged receipts nobody has reviewed yet, oldest first."""
        return [r for r in self.receipts(until_t=until_t, limit=100_000) if r["flagged"] and r["status"] == "to review"]

    def evidence(self, receipt_id: int) -> dict:
        r = self.receipt(receipt_id)
        account, t_exit = r["account_id"], r["t_exit"]
        enter = self.db.execute("SELECT MAX(seq) FROM events WHERE kind = 'enter' AND account_id = ? AND seq < ?",
                                (account, receipt_id)).fetchone()[0] or 0
        rows = self.db.execute("SELECT kind, payload FROM events WHERE account_id = ? AND seq > ? AND seq < ? AND kind IN "
                               "('cart_update', 'unexplained', 'reach') ORDER BY seq", (account, enter, receipt_id)).fetchall()
        updates, notes = [], []
        for kind, p in rows:
            d = json.loads(p)
            (updates if kind == "cart_update" else notes).append(d if kind == "cart_update" else {"kind": kind, **d})
        return {"receipt": r, "t_exit": t_exit, "updates": updates, "notes": notes}

    def _revisions(self, receipt_id: int) -> list[dict]:
        return [json.loads(p) for (p,) in self.db.execute(
            "SELECT payload FROM events WHERE kind = 'receipt_revision' AND account_id = ? ORDER BY seq", (f"#{receipt_id}",))]

    def _reviews(self, receipt_id: int) -> list[dict]:
        return [json.loads(p) for (p,) in self.db.execute(
            "SELECT payload FROM events WHERE kind = 'review' AND account_id = ? ORDER BY seq", (f"#{receipt_id}",))]

    def _current(self, receipt_id: int, first: dict) -> dict:
        revs = self._revisions(receipt_id)
        return self._status(receipt_id, first, revs[-1] if revs else None, bool(self._reviews(receipt_id)))

    @staticmethod
    def _status(receipt_id: int, first: dict, last: dict | None, reviewed: bool) -> dict:
        cur = last if last is not None else {"receipt_id": receipt_id, "version": 1, **first}
        status = "reviewed" if reviewed else ("to review" if first.get("flagged") else "ok")
        return {**cur, "flagged": bool(first.get("flagged")), "reason": first.get("reason", ""), "status": status}

    # -- acting ------------------------------------------------------------------------------------
    def act(self, receipt_id: int, action: str, by: str, why: str, sku: str | None = None,
            qty: int | None = None) -> dict:
        """Take one action; the receipt as it now stands. Refused actions change nothing."""
        if action not in ACTIONS:
            raise ReviewError(f"action {action!r}: expected one of {', '.join(ACTIONS)}", 404)
        if not why or not why.strip():
            raise ReviewError("why: expected a reason, written to the event log with the action")
        cur = self.receipt(receipt_id)
        lines = {ln["sku"]: dict(ln) for ln in cur["lines"]}
        if action == "change":
            if sku is None or qty is None or qty < 0:
                raise ReviewError("change: expected sku and qty (a whole number ≥ 0; 0 removes the line)")
            if sku not in lines and sku not in self._price:
                raise ReviewError(f"sku {sku!r}: not in the store's catalog")
            if qty == 0:
                lines.pop(sku, None)
            else:
                lines[sku] = {"sku": sku, "qty": qty, "unit_price": lines.get(sku, {}).get("unit_price", self._price.get(sku))}
        elif action == "refund":
            if sku is None:
                lines = {}
            else:
                if sku not in lines:
                    raise ReviewError(f"sku {sku!r}: not on receipt {receipt_id}")
                n = lines[sku]["qty"] if qty is None else qty
                if not 0 < n <= lines[sku]["qty"]:
                    raise ReviewError(f"qty {n}: expected 1..{lines[sku]['qty']} (on the receipt)")
                lines[sku]["qty"] -= n
                if not lines[sku]["qty"]:
                    del lines[sku]
        wall = self.clock.wall_s()
        review = {"receipt_id": receipt_id, "action": action, "by": by, "why": why.strip(), "wall": wall,
                  "sku": sku, "qty": qty, "from_version": cur["version"]}
        with self.db.transaction():     # one transaction: the review, the new version and its delivery
            changed = action != "approve" and sorted(lines.values(), key=lambda x: x["sku"]) != \
                sorted(cur["lines"], key=lambda x: x["sku"])
            if changed:
                version = cur["version"] + 1
                rev = {"receipt_id": receipt_id, "version": version, "account_id": cur["account_id"], "t_exit": cur["t_exit"],
                       "lines": sorted(lines.values(), key=lambda x: x["sku"]),
                       "total": round(sum(ln["qty"] * ln["unit_price"] for ln in lines.values()), 2),
                       "action": action, "by": by, "why": review["why"], "wall": wall}
                review["to_version"] = version
                self._insert("receipt_revision", cur["t_exit"], receipt_id, rev)
                enqueue(self.db, f"receipt-{receipt_id}-v{version}", "receipt", rev, wall)
            self._insert("review", cur["t_exit"], receipt_id, review)
        return self.receipt(receipt_id)

    def _insert(self, kind: str, t: float, receipt_id: int, payload: dict) -> None:
        # account_id "#<id>": a receipt's own events, apart from the shopper's (open_carts never reads them)
        self.db.insert("events", {"kind": kind, "t": t, "account_id": f"#{receipt_id}", "payload": json.dumps(payload),
                                  "wall": payload["wall"]})
