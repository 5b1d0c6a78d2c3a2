"""The runtime's append-only event log: SQLite (one row per published message) and JSONL files.

Every published ``TrackState``, ``CartUpdate`` and ``Receipt`` goes in, with what was seen at the
gates and each weight event's decision, so a restarted runtime rebuilds every open cart from the
log (:meth:`EventLog.open_carts`) and a reviewer can replay the reasoning behind each charge.
"""
from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import asdict, is_dataclass
from pathlib import Path

from runtime.messages import CartUpdate, Receipt, TrackState

_FILES = {TrackState: "tracks.jsonl", CartUpdate: "cart_updates.jsonl", Receipt: "receipts.jsonl"}
_KINDS = {TrackState: "track", CartUpdate: "cart_update", Receipt: "receipt"}


class EventLog:
    """``out_dir/events.sqlite`` plus one JSONL file per kind of message in ``out_dir``."""

    def __init__(self, out_dir: str | Path, jsonl: bool = True):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.dir / "events.sqlite")
        self.db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
                        "t REAL NOT NULL, account_id TEXT, payload TEXT NOT NULL)")
        self.db.execute("CREATE INDEX IF NOT EXISTS events_account ON events (account_id, kind)")
        self._files = {cls: open(self.dir / name, "a") for cls, name in _FILES.items()} if jsonl else {}
        self._pending = 0

    def append(self, msg: object, kind: str | None = None) -> None:
        """Append one message (a dataclass, or a dict with ``kind``); committed in small batches."""
        payload = asdict(msg) if is_dataclass(msg) else dict(msg)
        kind = kind or _KINDS.get(type(msg), type(msg).__name__)
        text = json.dumps(payload, default=_plain)
        self.db.execute("INSERT INTO events (kind, t, account_id, payload) VALUES (?, ?, ?, ?)",
                        (kind, float(payload.get("t", payload.get("t_decided", payload.get("t_exit", 0.0)))),
                         payload.get("account_id"), text))
        f = self._files.get(type(msg))
        if f is not None:
            f.write(text + "\n")
        self._pending += 1
        if kind != "track" or self._pending >= 200:
            self.flush()

    def flush(self) -> None:
        self.db.commit()
        for f in self._files.values():
            f.flush()
        self._pending = 0

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


def _plain(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
