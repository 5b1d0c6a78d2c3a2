"""The runtime on a store's own devices (``storetwin live``): cameras, load cells and gates in,
the event log out, until told to stop.

:class:`LiveStore` opens every device the devices file names (a :class:`runtime.cameras.CameraReader`
per camera, :class:`runtime.devices.MqttSensors` for the cells and gates), merges them on the store
clock (:class:`runtime.sources.LiveMerge`) and feeds the runtime. Every ``health_s`` it logs a line
of health and appends it to ``health.jsonl``: frames per second per camera, cells reporting, the
merge's depth, frames that made way for newer ones, late and bad messages, the share of the wall
clock the runtime was busy (its real-time factor is the inverse) and the delay of cart updates.

:meth:`LiveStore.stop` (SIGINT or SIGTERM from the command) closes the devices, lets the merge
release what it holds, decides what waits and closes the event log. Started again on the same
folder, the runtime picks up the open carts from the log (``restore``).

Nothing image-like is written: frames live only in the readers and the merge's bounded queues; the
folder holds the event log (``events.sqlite``, JSONL), ``health.jsonl`` and ``run.json``.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from runtime.cameras import CameraReader
from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.config import RuntimeConfig, as_dict
from runtime.devices import Devices, HttpGates, MqttSensors, SerialCells
from runtime.messages import CartUpdate, Frame, Receipt, WeightSample
from runtime.pipeline import Runtime
from runtime.sources import LiveMerge
from runtime.store import StoreSpec

log = logging.getLogger(__name__)


LOCK_FILE = "live.lock"


def _has_events(where, store: str) -> bool:
    """A log to resume from: a SQLite file that exists, or a PostgreSQL schema with events in it."""
    from runtime.logdb import LogDB, is_url

    if not is_url(where):
        return Path(where).is_file()
    db = LogDB(where, store)
    try:
        return db.execute("SELECT COUNT(*) FROM events").fetchone()[0] > 0
    finally:
        db.close()


def hold_folder(folder: Path):
    """An exclusive lock on a live store's folder, held while the runtime runs (the kernel drops it
    when the process ends, killed or not): a second runtime, or a privacy job from outside, is
    refused instead of writing the same log."""
    import fcntl

    f = open(folder / LOCK_FILE, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RuntimeError(f"{folder}: a live runtime is running on this folder (it holds {LOCK_FILE})") from None
    return f


class _Logged:
    """The retention's own jobs: their outcome goes to the log, nobody waits on them."""

    def set_result(self, removed: dict) -> None:
        log.warning("retention: removed %s", removed)

    def set_exception(self, e: Exception) -> None:
        log.error("retention failed: %s", e)


class LiveStore:
    def __init__(self, store: StoreSpec, devices: Devices, out_dir: str | Path, config: RuntimeConfig = RuntimeConfig(),
                 lateness_s: float = 0.3, health_s: float = 5.0, clock: Clock = SYSTEM_CLOCK, detector=None,
                 max_lateness_s: float | None = None, retention_days: float | None = None, log_url: str | None = None,
                 outbox: tuple[str, ...] = ("receipt",)):
        max_lateness_s = lateness_s if max_lateness_s is None else max_lateness_s
        if not max_lateness_s >= lateness_s:
            raise ValueError(f"max_lateness_s={max_lateness_s}: expected seconds ≥ lateness_s={lateness_s}")
        self.store, self.devices, self.cfg, self.clock = store, devices, config, clock
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = hold_folder(self.dir)
        # the event log: out_dir/events.sqlite, or the store's schema on a PostgreSQL server (log_url)
        self.log_url = log_url
        self.log_where = log_url or self.dir / "events.sqlite"
        resumed = _has_events(self.log_where, store.name)
        self.outbox = tuple(outbox)     # what goes to the point of sale: receipts, and cart updates too
        self.runtime = Runtime(store, config, self.dir, detector=detector, restore=resumed, clock=clock, log_url=log_url,
                               outbox=self.outbox)
        if resumed:
            log.warning("%s: resuming from its event log (%d open carts)", self.dir, len(self.runtime.carts.accounts()))
        # a camera's frames reach the merge its latency_s after their stamps (and the cells' and gates'
        # messages come stamped on capture): the bound waits for the slowest camera too
        # with ``max_lateness_s`` above ``lateness_s`` the bound is learnt from the messages' delays up to
        # it (a network whose delays are not known beforehand); by default it is fixed
        latency = max(devices.latency_s.values(), default=0.0)
        self.lateness_s = lateness_s + latency
        self.merge = LiveMerge(lateness_s=self.lateness_s, clock=clock, max_lateness_s=max_lateness_s + latency)
        self.health_s = health_s
        self.cameras: dict[str, CameraReader] = {}
        self.sensors: MqttSensors | None = None
        self.serial: list[SerialCells] = []
        self.http: HttpGates | None = None
        self._stopped = threading.Event()
        self._busy_s = 0.0
        self._delays: deque = deque(maxlen=2000)     # wall_published − t_interaction of recent cart updates
        self._cell_seen: dict[str, float] = {}
        self.health: list[dict] = []
        self.resumed = resumed
        self._jobs: queue.Queue = queue.Queue()     # jobs for the runtime's thread (privacy, rollout)
        self.shadow = None                          # a candidate runtime in shadow (start_rollout)
        self.rollout_auto = True
        self.rollouts: list[dict] = []
        self._rollouts = 0
        self._next_look = 0.0
        self.retention_days = retention_days
        self._next_prune = 0.0
        self.view = None           # the API's view of the store (serve_api), fed what the runtime publishes
        self._api = self._desk = self._deliverer = None     # beside the runtime; stopped after it
        self.played: dict | None = None                     # a live replay's counts (play)

    # -- beside the runtime --------------------------------------------------------------------------
    def serve_api(self, tokens, host: str = "127.0.0.1", port: int = 8080, process: bool = True) -> str:
        """The store's API and dashboard over this run's event log (:mod:`runtime.ops.api`); its URL.
        By default in a process of its own at a lower CPU priority (:mod:`runtime.ops.process`), fed
        what the runtime publishes, so that requests never hold the runtime back; ``process=False``:
        in a thread of this one."""
        if process:
            from runtime.ops.process import ApiProcess

            self._api = self.view = ApiProcess(self, tokens, host=host, port=port)
            self.runtime.on_track = self.view.publish
            return self._api.url
        from runtime.ops.api import open_ops
        from runtime.ops.view import StoreView

        self.view = StoreView(latency="wall", clock=self.clock)
        self.view.reset(carts={a: dict(self.runtime.carts.cart(a) or {}) for a in self.runtime.carts.accounts()})
        self.runtime.on_track = self.view.publish
        self._api, _, self._desk = open_ops(self.store, self.dir, tokens, view=self.view, host=host, port=port,
                                            clock=self.clock, jobs=self.privacy_job, rollout=self, log=self.log_where)
        return self._api.url

    def job(self, fn, timeout_s: float = 60.0):
        """``fn()`` run by the runtime's own thread between two messages (it may touch the runtime and
        its event log); from any thread. Its result, or its error raised here."""
        from concurrent.futures import Future

        fut: Future = Future()
        self._jobs.put((fn, fut))
        return fut.result(timeout=timeout_s)

    def privacy_job(self, name: str, **kw) -> dict:
        """A privacy job (``prune`` or ``erase``, :mod:`runtime.ops.privacy`) on the runtime's event
        log, its JSONL copies written again after."""
        return self.job(lambda: self._privacy(name, **kw))

    def _privacy(self, name: str, **kw) -> dict:
        from runtime.ops import privacy

        log_ = self.runtime.log
        log_.flush()
        out = getattr(privacy, name)(log_.db, now_wall=self.clock.wall_s(), **kw)
        log_.rewrite_copies()
        return out

    def _run_jobs(self) -> None:
        while not self._jobs.empty():
            fn, fut = self._jobs.get_nowait()
            try:
                fut.set_result(fn())
            except Exception as e:     # to the caller (the API answers it), never into the loop
                fut.set_exception(e)

    # -- rollout (runtime.ops.rollout) ---------------------------------------------------------------
    def start_rollout(self, settings: dict, min_receipts: int = 5, max_lost: int = 0, auto: bool = True) -> dict:
        """A candidate (settings over the live ones: a model path, thresholds) in shadow from now; with
        ``auto`` it is promoted or dropped as soon as its comparison decides."""
        from runtime.ops.rollout import Shadow, candidate_config

        cfg = candidate_config(self.cfg, settings)     # a bad key is refused here, before anything starts

        def start():
            if self.shadow is not None:
                raise ValueError("a candidate is in shadow already: promote or drop it first")
            self.runtime.log.flush()
            self._rollouts += 1
            self.shadow = Shadow(self.store, cfg, self.log_where, self.dir / f"shadow-{self._rollouts}",
                                 settings, min_receipts=min_receipts, max_lost=max_lost, clock=self.clock)
            self.rollout_auto = auto
            self.runtime._note("rollout", {"t": self.runtime.t, "action": "shadow", "settings": settings,
                                           "min_receipts": min_receipts, "max_lost": max_lost, "wall": self.clock.wall_s()})
            return self.shadow.compare()
        return self.job(start, timeout_s=120.0)

    def rollout_status(self) -> dict:
        sh = self.shadow
        return {"active": sh is not None, "config": as_dict(self.cfg), "history": list(self.rollouts),
                **({"shadow": sh.compare(), "auto": self.rollout_auto} if sh is not None else {})}

    def promote(self, force: bool = False) -> dict:
        return self.job(lambda: self._promote(force), timeout_s=120.0)

    def drop(self) -> dict:
        return self.job(lambda: self._drop("dropped by hand"), timeout_s=120.0)

    def _promote(self, force: bool = False) -> dict:
        """The runtime restarted in place with the candidate's settings and models, from the live log."""
        sh = self.shadow
        if sh is None:
            raise ValueError("no candidate in shadow")
        cmp = sh.compare()
        if cmp["verdict"] != "pass" and not force:
            raise ValueError(f"the candidate's verdict is {cmp['verdict']} ({cmp['compared']} compared, {cmp['lost']} lost)")
        wall0 = self.clock.wall_s()
        self.shadow = None
        self._published(self.runtime.finish())      # what the live runtime holds is decided by it
        self.runtime.close()
        sh.stop()
        rt = sh.runtime
        self.runtime = Runtime(self.store, sh.cfg, self.dir, restore=True, clock=self.clock, detector=rt.detector,
                               products_detector=rt.hands.products if rt.hands is not None else None, log_url=self.log_url,
                               outbox=self.outbox)
        self.cfg = sh.cfg
        if self.view is not None:
            self.runtime.on_track = self.view.publish
        self._published(self.runtime._restored)
        rec = {"action": "promote", "settings": sh.settings, "comparison": cmp, "forced": force,
               "swap_s": round(self.clock.wall_s() - wall0, 3), "wall": self.clock.wall_s()}
        self.runtime._note("rollout", {"t": self.runtime.t, **rec})
        self.rollouts.append(rec)
        log.warning("rollout: promoted %s (%d receipts compared, %d lost; swapped in %.2f s)", sh.settings,
                    cmp["compared"], cmp["lost"], rec["swap_s"])
        return rec

    def _drop(self, why: str) -> dict:
        sh = self.shadow
        if sh is None:
            raise ValueError("no candidate in shadow")
        self.shadow = None
        cmp = sh.compare()
        sh.stop()
        rec = {"action": "drop", "why": why, "settings": sh.settings, "comparison": cmp, "wall": self.clock.wall_s()}
        self.runtime._note("rollout", {"t": self.runtime.t, **rec})
        self.rollouts.append(rec)
        log.warning("rollout: dropped %s: %s (%d receipts compared, %d lost)", sh.settings, why, cmp["compared"], cmp["lost"])
        return rec

    def _decide_rollout(self, now: float) -> None:
        """With ``auto``: promote or drop as soon as the comparison says (looked at once a second)."""
        if self.shadow is None or not self.rollout_auto or now < self._next_look:
            return
        self._next_look = now + 1.0
        v = self.shadow.compare()["verdict"]
        if v == "pass":
            self._promote()
        elif v == "fail":
            self._drop("it would lose a receipt" if not self.shadow.failed else "it failed")

    def deliver_to(self, webhook) -> None:
        """Receipts (and reviewed versions) to the point-of-sale system from the event log's outbox."""
        from runtime.ops.outbox import Deliverer

        self._deliverer = Deliverer(self.log_where, webhook, clock=self.clock, store=self.store.name).start()

    # -- devices -----------------------------------------------------------------------------------
    def open(self) -> "LiveStore":
        d, vision = self.devices, self.cfg.sensing in ("fused", "vision_only")
        if vision:     # the readers connect (seconds for an RTSP camera) while the person model warms up
            for cam in self.store.cameras:
                url = d.cameras.get(cam.id)
                if url is None:
                    log.warning("camera %s: not in %s; the runtime goes on without it", cam.id, d.path)
                    continue
                self.cameras[cam.id] = CameraReader(cam.id, url, self.merge.put,
                                                    latency_s=d.latency_s.get(cam.id, 0.0), clock=self.clock).start()
        b, gates = d.broker, {g.id for g in self.store.gates}
        if "mqtt" in (d.cells, d.gates):     # what the broker carries: the rest counts as unknown there
            self.sensors = MqttSensors(self.merge, b.host, b.port, b.prefix,
                                       cells=set(self.store.load_cells) if d.cells == "mqtt" else set(),
                                       gates=gates if d.gates == "mqtt" else set(), username_env=b.username_env,
                                       password_env=b.password_env, client_id=f"storetwin-{self.store.name}",
                                       hold_gates=True)
        for port, spec in d.serial.items():
            self.serial.append(SerialCells(self.merge, port, spec["cells"], spec["baud"], clock=self.clock))
        if d.gates == "http":
            self.http = HttpGates(self.merge, d.http_port, gates=gates, clock=self.clock)
        if vision:     # the person model compiled for each camera size before the first frame is taken
            for w, h in sorted({tuple(c.resolution) for c in self.store.cameras}):
                self.runtime.detector(np.zeros((h, w, 3), np.uint8))
        return self

    def stop(self) -> None:
        """From any thread or a signal handler: the loop ends after what the merge holds."""
        self._stopped.set()
        self.merge.close()

    def play(self, run: str | Path, start_in_s: float = 1.0) -> "LiveStore":
        """A live replay: a recorded run's messages (its cameras' frames, cells' readings and gate
        scans) put into the merge at the wall clock's pace, in place of the store's devices, each
        stamped on the store clock as a device would stamp it; the store stops after the last one
        (what the merge holds is decided first). Call before :meth:`run`."""
        from dataclasses import replace

        from runtime.sources import ReplaySource, paced

        run = Path(run)
        source = ReplaySource(run, cameras=() if self.cfg.sensing == "weight_only" else None,
                              weights=self.cfg.sensing != "vision_only")
        self.played = {"run": str(run), "messages": 0, "frames": 0}

        def feed() -> None:
            wall0 = self.clock.wall_s() + start_in_s
            try:
                for m in paced(source, wall0, clock=self.clock):
                    if self._stopped.is_set():
                        break
                    self.merge.put(replace(m, t=m.t + wall0))
                    self.played["messages"] += 1
                    self.played["frames"] += isinstance(m, Frame)
            except Exception:
                log.exception("%s: the replay failed; the store stops", run)
            finally:
                self.stop()
        self._player = threading.Thread(target=feed, name="live-replay", daemon=True)
        self._player.start()
        return self

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None) -> dict:
        """Until :meth:`stop` (or ``duration_s`` of wall clock); the run's summary."""
        wall0 = self.clock.wall_s()
        next_health = wall0 + self.health_s
        timer = threading.Timer(duration_s, self.stop) if duration_s is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            for msg in self.merge.stream(idle_s=1.0):     # None: a quiet second (health is still logged)
                if msg is not None:
                    if isinstance(msg, WeightSample):
                        self._cell_seen[msg.cell_id] = self.clock.wall_s()
                    t = time.perf_counter()
                    self._published(self.runtime.process(msg))
                    self._busy_s += time.perf_counter() - t
                    if self.shadow is not None:
                        self.shadow.feed(msg)
                now = self.clock.wall_s()
                self._run_jobs()
                self._decide_rollout(now)
                if self.retention_days is not None and now >= self._next_prune:     # at the start, then daily
                    self._next_prune = now + 86400.0
                    self._jobs.put((lambda: self._privacy("prune", days=self.retention_days), _Logged()))
                if now >= next_health:
                    self._log_health(now, now - (next_health - self.health_s))
                    next_health = now + self.health_s
        finally:
            for r in self.cameras.values():
                r.stop()
            for dev in [*self.serial, self.http]:
                if dev is not None:
                    dev.close()
            self.merge.close()              # a gate scan after this stays unacknowledged: the next start gets it
            for msg in self.merge:          # what the devices sent before
                self._published(self.runtime.process(msg))
                if self.shadow is not None:
                    self.shadow.feed(msg)
            self._published(self.runtime.finish())
            self._run_jobs()
            if self.shadow is not None:
                self._drop("the store stopped")
            self.runtime.close()
            if self.sensors is not None:    # after the last scans were acknowledged
                self.sensors.close()
            summary = self.summary(self.clock.wall_s() - wall0)
            (self.dir / "run.json").write_text(json.dumps(summary, indent=1))
            if self._deliverer is not None:     # one last pass for the last receipts; the rest on the next start
                self._deliverer.deliver_due()
                self._deliverer.stop()
                self._deliverer = None
            if self._api is not None:
                self._api.stop()
                if self._desk is not None:
                    self._desk.close()
                self._api = self._desk = None
            self._lock.close()     # the folder is free for the next start, or a privacy job
        return summary

    def _published(self, out: list) -> None:
        rt = self.runtime
        while rt.decided_gates:     # decided and in the event log: the broker may forget them
            g = rt.decided_gates.popleft()
            if self.sensors is not None:
                self.sensors.ack_gate(g)
        for m in out:
            if isinstance(m, CartUpdate):
                self._delays.append(m.wall_published - m.t_interaction)
            if self.view is not None:
                self.view.publish(m)
            if self._deliverer is not None and (isinstance(m, Receipt) or (isinstance(m, CartUpdate)
                                                                            and "cart_update" in self.outbox)):
                self._deliverer.notify()     # committed with its outbox row: the deliverer sends it now

    # -- health ------------------------------------------------------------------------------------
    def _log_health(self, now: float, span_s: float) -> None:
        h = self.snapshot(now, span_s)
        self.health.append(h)
        with open(self.dir / "health.jsonl", "a") as f:
            f.write(json.dumps(h) + "\n")
        if self.view is not None:
            self.view.publish({"type": "health", "data": h})
        fps = " ".join(f"{c}={v:.1f}" for c, v in h["fps"].items())
        log.warning("health: fps %s; cells %d/%d; held %d; bound %.2f s; frames dropped %d; late %d; bad %d; lag %s; "
                    "busy %.0f %%; update delay p95 %s", fps or "-", h["cells_reporting"], len(self.store.load_cells),
                    h["held"], h["bound_s"], h["frames_dropped"], h["late"], h["bad_messages"],
                    f"{h['lag_s']:.2f} s" if h["lag_s"] is not None else "-", 100 * h["busy"],
                    f"{h['delay_p95_s']:.2f} s" if h["delay_p95_s"] is not None else "-")

    def snapshot(self, now: float, span_s: float) -> dict:
        busy = self._busy_s / span_s if span_s > 0 else 0.0
        self._busy_s = 0.0
        d = list(self._delays)
        return {"wall": round(now, 3), "fps": {c: round(r.fps(), 2) for c, r in self.cameras.items()},
                "cells_reporting": sum(now - w < 5.0 for w in self._cell_seen.values()),
                "held": self.merge.depth, "bound_s": round(self.merge.lateness_s, 3),
                "delay_q_s": {k: round(v, 3) for k, v in self.merge.delay_q.items()}, "frames_dropped": sum(self.merge.frames_dropped.values()),
                "late": self.merge.late, "late_by": dict(self.merge.late_by),
                "bad_messages": sum(sum(x.bad.values()) for x in [self.sensors, *self.serial, self.http] if x is not None),
                "lag_s": round(now - self.runtime.t, 3) if self.runtime.t > 0 else None, "busy": round(busy, 3),
                "delay_p95_s": round(float(np.percentile(d, 95)), 3) if d else None}

    def summary(self, wall_s: float) -> dict:
        rt = self.runtime
        return {"source": "replay" if self.played is not None else "devices", "devices": self.devices.path,
                "replay": self.played, "resumed": self.resumed, "wall_s": round(wall_s, 3),
                "stream_t_end": rt.t, "sensing": self.cfg.sensing,
                "cameras": {c: {"frames": r.frames, "opens": r.opens, "failures": r.failures,
                                "outages_s": [round(o, 3) for o in r.outages]} for c, r in self.cameras.items()},
                "frames_dropped": dict(self.merge.frames_dropped), "late": self.merge.late,
                "late_by": dict(self.merge.late_by),
                "late_dropped": self.merge.late_dropped,
                "mqtt": {"received": self.sensors.received, "taken": self.sensors.taken, "connects": self.sensors.connects,
                         "outages_s": [round(o, 3) for o in self.sensors.outages], "bad": dict(self.sensors.bad)}
                if self.sensors else None,
                "serial": {x.port: {"lines": x.lines, "taken": x.taken, "opens": x.opens, "bad": dict(x.bad)}
                           for x in self.serial},
                "http_gates": {"taken": self.http.taken, "bad": dict(self.http.bad)} if self.http else None,
                **rt.stats}
