"""The runtime's append-only event log: SQLite (one row per published message) and JSONL files.

Every published ``TrackState``, ``CartUpdate`` and ``Receipt`` goes in, with what was seen at the
gates and each weight event's decision, so a restarted runtime rebuilds every open cart from the
log (:meth:`EventLog.open_carts`) and a reviewer can replay the reasoning behind each charge.

**Durability.** The runtime may be killed at any moment (power, SIGKILL, the kernel's OOM killer).
SQLite runs in write-ahead-log mode (``journal_mode=WAL``: a commit appends to the WAL file, readers
such as an API never block the writer, and a half-written transaction is ignored on the next open)
with ``synchronous=FULL`` (each commit waits for the WAL to reach the disk, so a committed cart
update survives a power cut too, not only a killed process; at a few commits a second the fsync
costs nothing that matters). Everything one decision writes (its cart updates and the shelf stock
it leaves) is one transaction (:meth:`batch`): after a crash the log holds all of it or none of
it. The JSONL files are copies for people and tools; a line cut by a crash is removed when the log
is opened again.

**The outbox.** A receipt goes to the point-of-sale system from the ``outbox`` table, written in the
same transaction as the receipt itself (a transactional outbox): a crash can lose neither, and a
restarted deliverer (:mod:`runtime.ops.outbox`) sends what is still pending under the same
idempotency key. A receipt's id is its row in ``events``; a reviewed receipt's new version is a
``receipt_revision`` event with its own outbox row (:mod:`runtime.ops.review`).
"""
from __future__ import annotations

import json
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.logdb import LogDB
from runtime.messages import CartUpdate, Receipt, TrackState

_FILES = {TrackState: "tracks.jsonl", CartUpdate: "cart_updates.jsonl", Receipt: "receipts.jsonl"}
_KINDS = {TrackState: "track", CartUpdate: "cart_update", Receipt: "receipt"}


class EventLog:
    """``out_dir/events.sqlite`` plus one JSONL file per kind of message in ``out_dir``."""

    def __init__(self, out_dir: str | Path, jsonl: bool = True, clock: Clock = SYSTEM_CLOCK, url: str | None = None,
                 store: str | None = None, outbox: tuple[str, ...] = ("receipt",)):
        """``url``: a PostgreSQL log (``store`` names its schema) instead of ``out_dir/events.sqlite``;
        the JSONL copies stay in ``out_dir``. ``outbox``: what goes to the point-of-sale system, in
        the transaction that logs it: receipts, and with ``cart_update`` every cart update too."""
        if not set(outbox) <= {"receipt", "cart_update"}:
            raise ValueError(f"outbox={outbox!r}: expected receipt and, or, cart_update")
        self.outbox = tuple(outbox)
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.db = connect(url or self.dir / "events.sqlite", store)
        if jsonl:
            for cls, name in _FILES.items():
                self._catch_up(self.dir / name, _KINDS[cls])
        self._files = {cls: open(self.dir / name, "a") for cls, name in _FILES.items()} if jsonl else {}
        self._lines: list[tuple] = []     # JSONL lines waiting for their transaction's commit
        self._pending = 0
        self._batch = 0

    def _catch_up(self, path: Path, kind: str) -> None:
        """The JSONL copy as the database has it after a crash: a line cut short is removed, and
        lines committed but not yet copied are added (a copy is written after its commit)."""
        _cut_partial_line(path)
        have = sum(1 for _ in open(path)) if path.is_file() else 0
        rows = self.db.execute("SELECT payload FROM events WHERE kind = ? ORDER BY seq LIMIT 9223372036854775807 OFFSET ?",
                               (kind, have))
        missing = [r[0] for r in rows]
        if missing:
            with open(path, "a") as f:
                f.writelines(text + "\n" for text in missing)

    @contextmanager
    def batch(self):
        """Everything appended inside is committed together, at the end."""
        self._batch += 1
        try:
            yield self
        finally:
            self._batch -= 1
            if not self._batch and self._pending:
                self.flush()

    def append(self, msg: object, kind: str | None = None) -> None:
        """Append one message (a dataclass, or a dict with ``kind``); committed in small batches."""
        payload = asdict(msg) if is_dataclass(msg) else dict(msg)
        kind = kind or _KINDS.get(type(msg), type(msg).__name__)
        text = json.dumps(payload, default=_plain)
        seq = self.db.insert("events", {"kind": kind, "t": float(payload.get("t", payload.get("t_decided", payload.get("t_exit", 0.0)))),
                                        "account_id": payload.get("account_id"), "payload": text, "wall": self.clock.wall_s()})
        if kind == "receipt" and kind in self.outbox:     # to the point-of-sale system, in the same transaction
            enqueue(self.db, f"receipt-{seq}-v1", "receipt", {"receipt_id": seq, "version": 1, **payload}, self.clock.wall_s())
        elif kind == "cart_update" and kind in self.outbox:     # the numbers of the change, not its evidence
            enqueue(self.db, f"cart-update-{seq}", "cart_update",
                    {"event_id": seq, **{k: v for k, v in payload.items() if k != "evidence"}}, self.clock.wall_s())
        f = self._files.get(type(msg))
        if f is not None:
            self._lines.append((f, text))
        self._pending += 1
        if not self._batch and (kind != "track" or self._pending >= 200):
            self.flush()

    def flush(self) -> None:
        self.db.commit()
        for f, text in self._lines:
            f.write(text + "\n")
        self._lines.clear()
        for f in self._files.values():
            f.flush()
        self._pending = 0

    def rewrite_copies(self) -> None:
        """The JSONL copies written again from the database (after a privacy job removed rows)."""
        self.flush()
        for cls, name in _FILES.items():
            path = self.dir / name
            f = self._files.pop(cls, None)
            if f is None:
                continue
            f.close()
            tmp = path.with_suffix(".jsonl.tmp")
            with open(tmp, "w") as out:
                out.writelines(p + "\n" for (p,) in self.db.execute(
                    "SELECT payload FROM events WHERE kind = ? ORDER BY seq", (_KINDS[cls],)))
            tmp.replace(path)
            self._files[cls] = open(path, "a")

    def close(self) -> None:
        self.flush()
        for f in self._files.values():
            f.close()
        self.db.close()

    def open_carts(self) -> dict[str, dict[str, int]]:
        """Every cart that has updates but no receipt yet: account → SKU → quantity."""
        carts: dict[str, dict[str, int]] = defaultdict(dict)
        closed: set[str] = set()
        for kind, account, payload in self.db.execute(
                "SELECT kind, account_id, payload FROM events WHERE kind IN ('cart_update', 'receipt', 'enter') ORDER BY seq"):
            if kind == "receipt":
                closed.add(account)
                carts.pop(account, None)
            elif kind == "enter":
                closed.discard(account)
                carts.setdefault(account, {})
            else:
                d = json.loads(payload)
                c = carts[account]
                c[d["sku"]] = c.get(d["sku"], 0) + int(d["delta_qty"])
        return {a: {s: q for s, q in c.items() if q} for a, c in carts.items() if a not in closed}


    def stock(self) -> dict[str, dict]:
        """The shelf stock as last written: cell → ``{"level", "noise", "bins": {bin: {sku: n}}}``."""
        out: dict[str, dict] = {}
        for (payload,) in self.db.execute("SELECT payload FROM events WHERE kind = 'stock' ORDER BY seq"):
            d = json.loads(payload)
            out[d["cell"]] = d
        return out

    def gate_scans(self) -> list[dict]:
        """Every gate scan the runtime decided (its enter and exit notes)."""
        return [json.loads(p) for (p,) in self.db.execute("SELECT payload FROM events WHERE kind IN ('enter', 'exit') ORDER BY seq")]

    def unsettled(self) -> list[dict]:
        """Provisional cart updates that no final update settled (the runtime stopped between)."""
        ups, settled = {}, set()
        for (payload,) in self.db.execute("SELECT payload FROM events WHERE kind = 'cart_update' ORDER BY seq"):
            d = json.loads(payload)
            if d.get("stage") == "provisional":
                ups[d["update_id"]] = d
            if d.get("settles"):
                settled.add(d["settles"])
        return [d for k, d in ups.items() if k not in settled]

    def last_seen(self, accounts: set[str]) -> dict[str, tuple[float, float, float]]:
        """Where each of ``accounts`` was last shown on the floor: account → (t, x, y)."""
        out: dict[str, tuple[float, float, float]] = {}
        for account, payload in self.db.execute(
                "SELECT account_id, payload FROM events WHERE kind = 'track' AND account_id IS NOT NULL ORDER BY seq"):
            if account in accounts:
                d = json.loads(payload)
                out[account] = (d["t"], d["x"], d["y"])
        return out


def connect(where: str | Path, store: str | None = None) -> LogDB:
    """One connection to an event log (created if new): a SQLite file (WAL, full sync, a writer that
    waits up to 10 s for another: the runtime, the API's review desk and the deliverer each hold
    their own) or a PostgreSQL URL (the store's schema)."""
    return LogDB(where, store)


def enqueue(db: LogDB, key: str, kind: str, payload: dict, wall_s: float) -> None:
    """One delivery into the outbox (inside the caller's transaction); a key already there is kept."""
    db.insert("outbox", {"key": key, "kind": kind, "payload": json.dumps(payload, default=_plain),
                         "created_wall": wall_s, "next_wall": wall_s}, ignore_duplicate=True)


def _cut_partial_line(path: Path) -> None:
    """A JSONL file whose last line a crash cut short loses that line (the database has it, or it
    was never committed)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return
        data = f.seek(0) or f.read()
        f.truncate(data.rfind(b"\n") + 1)


def _plain(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
