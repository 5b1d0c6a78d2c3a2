"""Model and settings rollout without downtime: a candidate runs in shadow on the live messages,
its receipts are compared with the live ones, and it is promoted or dropped while the store runs.

:class:`Shadow` starts a second :class:`runtime.pipeline.Runtime` with the candidate's settings from a
copy of the live event log (the open carts, the shelf stock and where each shopper was, exactly as a
restarted runtime starts) and feeds it every message the live runtime gets, from a thread of its own
(frames beyond ``max_backlog`` waiting are left out and counted, so a slow candidate never holds the
store back). It decides into its own log (``<live folder>/shadow-<n>/``) and publishes nothing.

:meth:`Shadow.compare` pairs each visit that ended since the shadow started (the live receipt as it
stands now, reviews included, against the candidate's receipt for the same account and exit) as
``storetwin compare`` gates a suite: a visit whose lines differ, or that the candidate has no
receipt for, is a receipt the candidate would lose; it passes with at least ``min_receipts``
compared and ``max_lost`` (0) lost. Promotion (by :class:`runtime.live.LiveStore`) is a restart of
the runtime in place, between two messages, with the candidate's settings and its already loaded
models, from the live log: the devices stay connected and the carts carry on.
"""
from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.config import RuntimeConfig, as_dict, runtime_config_from
from runtime.logdb import LogDB
from runtime.messages import Frame, SensorMessage
from runtime.ops.review import ReviewDesk
from runtime.pipeline import Runtime
from runtime.store import StoreSpec

log = logging.getLogger(__name__)


def candidate_config(live: RuntimeConfig, settings: dict) -> RuntimeConfig:
    """The live settings with ``settings`` ({"weights.min_step_g": 30, "pose_model": "…"}) over them;
    one-line errors name ``runtime.<key>``."""
    data = as_dict(live)
    for key, value in settings.items():
        node, parts = data, str(key).split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ValueError(f"runtime.{key}: not a setting")
            node = node[p]
        if parts[-1] not in node:
            raise ValueError(f"runtime.{key}: not a setting")
        node[parts[-1]] = value
    return runtime_config_from(data)


def _receipts(where, after_seq: int, store: StoreSpec) -> list[dict]:
    """Receipts after ``after_seq`` as they stand (a reviewer's correction is the better reference)."""
    desk = ReviewDesk(where, store)
    try:
        return desk.receipts(since_id=after_seq, limit=100_000)
    finally:
        desk.close()


def _lines(r: dict) -> list[tuple]:
    return sorted((ln["sku"], ln["qty"]) for ln in r["lines"] if ln["qty"])


class Shadow:
    def __init__(self, store: StoreSpec, config: RuntimeConfig, live_log: str | Path, folder: str | Path,
                 settings: dict, min_receipts: int = 5, max_lost: int = 0, max_backlog: int = 64,
                 clock: Clock = SYSTEM_CLOCK, detector=None):
        """``live_log``: the live event log's SQLite file or PostgreSQL URL; the shadow's own log is a
        SQLite file in ``folder``, a copy of the live one to start from."""
        self.store, self.cfg, self.settings, self.clock = store, config, dict(settings), clock
        self.live_log, self.dir = live_log, Path(folder)
        self.min_receipts, self.max_lost, self.max_backlog = min_receipts, max_lost, max_backlog
        self.dir.mkdir(parents=True, exist_ok=False)
        src = LogDB(live_log, store.name)
        self.start_seq = src.copy_to_sqlite(self.dir / "events.sqlite")
        src.close()
        self.started_wall = clock.wall_s()
        self.runtime = Runtime(store, config, self.dir, detector=detector, restore=True, clock=clock)
        self.frames_left_out = 0
        self.fed = 0
        self._q: queue.Queue = queue.Queue()
        self._frames = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="shadow")
        self._thread.start()

    def feed(self, msg: SensorMessage) -> None:
        if isinstance(msg, Frame):
            with self._lock:
                if self._frames >= self.max_backlog:
                    self.frames_left_out += 1
                    return
                self._frames += 1
        self.fed += 1
        self._q.put(msg)

    def _run(self) -> None:
        while True:
            msg = self._q.get()
            if msg is None:
                break
            if isinstance(msg, Frame):
                with self._lock:
                    self._frames -= 1
            try:
                self.runtime.process(msg)
            except Exception:     # a candidate that fails is dropped by its comparison, never the store
                log.exception("shadow runtime failed on a message; it takes no more")
                self.failed = True
                break

    failed = False

    def stop(self) -> None:
        """Finish what it holds and close its log (its models stay loaded for a promotion)."""
        self._q.put(None)
        self._thread.join(timeout=60)
        if not self.failed:
            self.runtime.finish()
        self.runtime.close()

    @property
    def t(self) -> float:
        """How far the candidate has decided, on the store clock."""
        return self.runtime.t

    def compare(self) -> dict:
        """The candidate's receipts against the live ones, for the visits both have decided."""
        live = _receipts(self.live_log, self.start_seq, self.store)
        cand = _receipts(self.dir / "events.sqlite", self.start_seq, self.store)
        horizon = self.runtime.t
        rows, lost = [], 0
        for r in live:
            if r["t_exit"] > horizon - 1.0 and not self.failed:
                continue        # the candidate has not come that far yet
            match = next((c for c in cand if c["account_id"] == r["account_id"] and abs(c["t_exit"] - r["t_exit"]) < 1.0), None)
            same = match is not None and _lines(match) == _lines(r)
            lost += not same
            rows.append({"account_id": r["account_id"], "t_exit": r["t_exit"], "live": _lines(r),
                         "candidate": _lines(match) if match else None, "verdict": "same" if same else "lost"})
        compared = len(rows)
        verdict = "fail" if (self.failed or lost > self.max_lost) else ("pass" if compared >= self.min_receipts else "waiting")
        return {"settings": self.settings, "compared": compared, "lost": lost, "min_receipts": self.min_receipts,
                "max_lost": self.max_lost, "verdict": verdict, "visits": rows, "fed": self.fed,
                "frames_left_out": self.frames_left_out, "shadow_t": horizon, "folder": str(self.dir),
                "failed": self.failed}
