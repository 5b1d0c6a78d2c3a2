"""Privacy controls on the event log: retention, and erasing one account's data.

**Retention** (:func:`prune`): after ``days`` (by the wall clock the row was written at) the log
keeps what the store's books need and drops what watched people: track states and the runtime's
notes (gate scans, reaches, what it could not charge) are deleted, cart updates lose their evidence
(the readings around the step, the shoppers near the bin, the candidates), delivered outbox rows
are deleted, and of the shelf stock only each cell's latest level stays (a restart starts from it).
Receipts, their versions and the reviews stay until ``receipts_days`` (financial records; none by
default). Nothing of a visit still open is touched.

**Erasing** (:func:`erase`): every row of one account (its track states and the tracks that carried
it, cart updates, gate scans, receipts with their versions, reviews and deliveries) is deleted, and
its id is replaced by ``"erased"`` wherever another visit's evidence names it. A ``privacy`` event
keeps that it happened (who, when, why, how many rows), with the account's SHA-256 only. A shopper
still in the store is refused (their visit is open).

Both run in one transaction and write a ``privacy`` event; deleted rows are overwritten in the
database file (``secure_delete``) and the write-ahead log is emptied after; the JSONL copies are
then written again from the database (:meth:`runtime.eventlog.EventLog.rewrite_copies`), by the runtime's own thread in
a live store.
"""
from __future__ import annotations

import hashlib
import json

from runtime.logdb import LogDB

NOTE_KINDS = ("track", "unexplained", "reach", "cell_back", "enter", "exit")
DAY_S = 86400.0


class PrivacyError(ValueError):
    pass


def open_accounts(db: LogDB) -> set[str]:
    """Accounts whose visit is open (entered, no receipt since)."""
    open_: set[str] = set()
    for kind, account in db.execute("SELECT kind, account_id FROM events WHERE kind IN ('enter', 'receipt') ORDER BY seq"):
        (open_.add if kind == "enter" else open_.discard)(account)
    return open_


def _when() -> str:
    return "COALESCE(wall, t)"


def prune(db: LogDB, days: float, now_wall: float, receipts_days: float | None = None) -> dict:
    """Apply the retention; how many rows of each kind went (``evidence``: cart updates stripped)."""
    if not days > 0 or (receipts_days is not None and not receipts_days >= days):
        raise PrivacyError(f"days={days}, receipts_days={receipts_days}: expected days > 0 and receipts_days ≥ days")
    cutoff = now_wall - days * DAY_S
    keep = sorted(open_accounts(db))
    not_open = f"(account_id IS NULL OR account_id NOT IN ({','.join('?' * len(keep))}))" if keep else "1"
    out: dict[str, int] = {}
    with db.transaction():
        for kind in NOTE_KINDS:
            out[kind] = db.execute(f"DELETE FROM events WHERE kind = ? AND {_when()} < ? AND {not_open}",
                                   (kind, cutoff, *keep)).rowcount
        rows = db.execute(f"SELECT seq, payload FROM events WHERE kind = 'cart_update' AND {_when()} < ? AND {not_open}",
                          (cutoff, *keep)).fetchall()
        stripped = 0
        for seq, p in rows:
            d = json.loads(p)
            if d.get("evidence") != {"pruned": True}:
                d["evidence"] = {"pruned": True}
                db.execute("UPDATE events SET payload = ? WHERE seq = ?", (json.dumps(d), seq))
                stripped += 1
        out["evidence"] = stripped
        last: dict[str, int] = {}
        stock = db.execute(f"SELECT seq, payload, {_when()} FROM events WHERE kind = 'stock' ORDER BY seq").fetchall()
        for seq, p, _ in stock:
            last[json.loads(p)["cell"]] = seq
        keep_stock = set(last.values())
        out["stock"] = sum(db.execute("DELETE FROM events WHERE seq = ?", (seq,)).rowcount
                           for seq, _, when in stock if when < cutoff and seq not in keep_stock)
        out["outbox"] = db.execute("DELETE FROM outbox WHERE delivered_wall IS NOT NULL AND delivered_wall < ?",
                                   (cutoff,)).rowcount
        if receipts_days is not None:
            rcut = now_wall - receipts_days * DAY_S
            ids = [r for (r,) in db.execute(f"SELECT seq FROM events WHERE kind = 'receipt' AND {_when()} < ?", (rcut,))]
            out["receipt"] = len(ids)
            for rid in ids:
                db.execute("DELETE FROM events WHERE seq = ? OR account_id = ?", (rid, f"#{rid}"))
                db.execute("DELETE FROM outbox WHERE key LIKE ? AND delivered_wall IS NOT NULL", (f"receipt-{rid}-v%",))
            out["cart_update"] = db.execute(f"DELETE FROM events WHERE kind = 'cart_update' AND {_when()} < ? AND {not_open}",
                                            (rcut, *keep)).rowcount
        _note(db, {"action": "prune", "days": days, "receipts_days": receipts_days, "removed": out, "wall": now_wall})
    _wipe(db)
    return out


def erase(db: LogDB, account: str, by: str, why: str, now_wall: float) -> dict:
    """Erase one account's data; how many rows went, and how many other rows were scrubbed of it."""
    if not account or account.startswith("#"):
        raise PrivacyError(f"account={account!r}: expected an account id as the gate scans it")
    if not why or not why.strip():
        raise PrivacyError("why: expected a reason, kept with the erasure")
    if account in open_accounts(db):
        raise PrivacyError(f"account {account!r} is in the store now (an open visit): erase it after the visit ends")
    out: dict[str, int] = {}
    with db.transaction():
        tracks = {json.loads(p)["track_id"] for (p,) in db.execute(
            "SELECT payload FROM events WHERE kind = 'track' AND account_id = ?", (account,))}
        rids = [r for (r,) in db.execute("SELECT seq FROM events WHERE kind = 'receipt' AND account_id = ?", (account,))]
        out["own"] = db.execute("DELETE FROM events WHERE account_id = ?", (account,)).rowcount
        theirs = [seq for seq, p in db.execute("SELECT seq, payload FROM events WHERE kind = 'track' AND account_id IS NULL")
                  if json.loads(p)["track_id"] in tracks]     # their tracks before they took the account
        out["tracks"] = sum(db.execute("DELETE FROM events WHERE seq = ?", (seq,)).rowcount for seq in theirs)
        out["receipt_events"] = sum(db.execute("DELETE FROM events WHERE account_id = ?", (f"#{r}",)).rowcount for r in rids)
        out["outbox"] = sum(db.execute("DELETE FROM outbox WHERE key LIKE ?", (f"receipt-{r}-v%",)).rowcount for r in rids)
        needle = json.dumps(account)
        scrubbed = 0
        like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for seq, p in db.execute("SELECT seq, payload FROM events WHERE payload LIKE ? ESCAPE '\\'", (like,)).fetchall():
            d = _scrub(json.loads(p), account)
            db.execute("UPDATE events SET payload = ? WHERE seq = ?", (json.dumps(d), seq))
            scrubbed += 1
        out["scrubbed"] = scrubbed
        _note(db, {"action": "erase", "account_sha256": hashlib.sha256(account.encode()).hexdigest(), "by": by,
                   "why": why.strip(), "removed": out, "wall": now_wall})
    _wipe(db)
    return out


def _scrub(v, account: str):
    if isinstance(v, dict):
        return {("erased" if k == account else k): _scrub(x, account) for k, x in v.items()}
    if isinstance(v, list):
        return [_scrub(x, account) for x in v]
    return "erased" if v == account else v


def _note(db: LogDB, payload: dict) -> None:
    db.insert("events", {"kind": "privacy", "t": 0.0, "account_id": None, "payload": json.dumps(payload),
                         "wall": payload["wall"]})


def _wipe(db: LogDB) -> None:
    db.wipe()
