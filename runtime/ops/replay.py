"""A recorded run played through the API and dashboard, for demos and for looking back.

:class:`LogReplay` reads a run's event log (``out/events.sqlite``) and publishes its track states,
cart updates and receipts to a :class:`runtime.ops.view.StoreView` at the times they were made,
``speed`` × real time, from a thread of its own. :meth:`seek` moves it (the dashboard's time slider):
the view is rebuilt from the start up to there at once and the stream clients are told to reload.
The review desk works on a copy of the log (``review/events.sqlite`` beside the run's ``out/``): the
recording itself is never written.
"""
from __future__ import annotations

import bisect
import json
import sqlite3
import threading
from pathlib import Path

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.eventlog import connect
from runtime.messages import CartUpdate, Receipt, ReceiptLine, TrackState
from runtime.ops.view import StoreView


def _message(kind: str, d: dict):
    if kind == "track":
        return TrackState(**d)
    if kind == "cart_update":
        return CartUpdate(**d)
    return Receipt(d["account_id"], d["t_exit"], tuple(ReceiptLine(**ln) for ln in d["lines"]), d["total"],
                   d.get("flagged", False), d.get("reason", ""))


def review_copy(run_log: str | Path, into: str | Path) -> Path:
    """A copy of a recorded event log to review on (made once; later replays keep its reviews)."""
    into = Path(into)
    dst = into / "events.sqlite"
    if not dst.is_file():
        into.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(f"file:{Path(run_log)}?mode=ro", uri=True)
        out = sqlite3.connect(dst)
        src.backup(out)
        src.close()
        out.close()
    connect(dst).close()     # the outbox table, if the recording predates it
    return dst


class LogReplay:
    def __init__(self, run_log: str | Path, view: StoreView, speed: float = 1.0, start_s: float = 0.0,
                 clock: Clock = SYSTEM_CLOCK):
        path = Path(run_log)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no event log (a run's out/events.sqlite)")
        if not speed > 0:
            raise ValueError(f"speed={speed}: expected a positive factor of real time")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = db.execute("SELECT t, kind, payload FROM events WHERE kind IN ('track', 'cart_update', 'receipt') "
                          "ORDER BY t, seq").fetchall()
        db.close()
        self.events = [(t, _message(kind, json.loads(p))) for t, kind, p in rows]
        self._times = [t for t, _ in self.events]
        self.duration_s = self._times[-1] if self._times else 0.0
        self.view, self.speed, self.clock = view, speed, clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._anchor(min(max(start_s, 0.0), self.duration_s), 0)
        if start_s > 0:
            self.seek(start_s)

    def _anchor(self, t: float, i: int) -> None:
        self._t0, self._wall0, self._i = t, self.clock.wall_s(), i

    @property
    def t(self) -> float:
        """Where the replay is, in the recording's seconds."""
        with self._lock:
            return min(self.duration_s, self._t0 + (self.clock.wall_s() - self._wall0) * self.speed)

    @property
    def done(self) -> bool:
        return self._i >= len(self.events)

    def seek(self, t: float) -> None:
        t = min(max(float(t), 0.0), self.duration_s)
        with self._lock:
            i = bisect.bisect_right(self._times, t)
            self.view.reset()
            for _, m in self.events[:i]:
                self.view.publish(m, fan_out=False)
            self._anchor(t, i)
        self.view.publish({"type": "reset", "data": {"t": t}})
        self._wake.set()

    def step(self) -> int:
        """Publish what is due now; how many."""
        n = 0
        with self._lock:
            now = min(self.duration_s, self._t0 + (self.clock.wall_s() - self._wall0) * self.speed)
            while self._i < len(self.events) and self.events[self._i][0] <= now:
                self.view.publish(self.events[self._i][1])
                self._i += 1
                n += 1
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            with self._lock:
                nxt = self._times[self._i] if self._i < len(self._times) else None
                wait = 0.5 if nxt is None else max(0.0, (nxt - self._t0) / self.speed + self._wall0 - self.clock.wall_s())
            self._wake.wait(min(wait, 0.5))
            self._wake.clear()

    def start(self) -> "LogReplay":
        self._thread = threading.Thread(target=self._run, daemon=True, name="log-replay")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
