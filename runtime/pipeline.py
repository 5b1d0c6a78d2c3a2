"""The store runtime: sensor messages in, tracks, cart updates and receipts out.

``Runtime(store, config, out_dir)`` takes the messages of any source through :meth:`Runtime.process`
(or :meth:`Runtime.run` for a whole source) and passes each to the stage that owns it:

- frames → :mod:`runtime.ticks` (which frames go through perception, and which tick each joins) →
  the pose model → :mod:`runtime.tracking` (people on the floor, world tracks) →
  :mod:`runtime.identity` (entry scans name tracks) and :mod:`runtime.hands` (reaches, the
  product in the hand);
- load-cell readings → :mod:`runtime.cell_health` → the cell's step detector
  (:mod:`runtime.weight_events`; an item across several plates is one event) → :mod:`runtime.attribution` (who) → :mod:`runtime.fusion`
  (what) → :mod:`runtime.carts`;
- gate scans → :mod:`runtime.carts` (visits, receipts) and :mod:`runtime.identity`.

It publishes ``TrackState`` for every confirmed shopper track at each tick (and once, ``ended``,
when a track is no longer shown), ``CartUpdate`` for
every decision and ``Receipt`` at each exit scan, all into the append-only event log in
``out_dir``. ``sensing`` switches the sensors used: ``fused`` (cameras and scales),
``vision_only`` (cameras and gates: reaches and the product in the hand decide every charge) or
``weight_only`` (scales and gates; a charge goes to the only shopper in the store, and is a guess
when there are several). Every message the runtime leaves out is counted in ``stats["dropped"]``
by reason, and logged.
"""
from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import numpy as np

from runtime.attribution import Attributor
from runtime.carts import Carts
from runtime.cell_health import CellHealth
from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.config import SENSING, RuntimeConfig  # noqa: F401  (SENSING: the modes, for callers)
from runtime.eventlog import EventLog
from runtime.evidence import Evidence
from runtime.fusion import Fusion, Unexplained
from runtime.hands import HandWatch, Reach
from runtime.identity import GateIdentity
from runtime.motion import MotionGate
from runtime.messages import CartUpdate, Frame, GateEvent, SensorMessage, TrackState, WeightSample, gate_key
from runtime.perception import Detector, as_detector, load_model, load_person_model
from runtime.store import StoreSpec
from runtime.ticks import FrameRef, Tick, TickBuilder
from runtime.tracking import WorldTracker, associate, person_views
from runtime.weight_events import PlateJoiner, StepDetector, WeightEvent

log = logging.getLogger(__name__)


def skeleton_now(k, t: float) -> tuple:
    """A track's skeleton seen at tick ``t`` as a message carries it: 17 joints, (x, y, z) metres
    rounded to the millimetre or None; () when none was seen then."""
    sk = k.skeletons[-1] if k.skeletons and abs(k.skeletons[-1][0] - t) < 1e-6 else None
    if sk is None:
        return ()
    return tuple(None if np.isnan(p[0]) else (round(float(p[0]), 3), round(float(p[1]), 3), round(float(p[2]), 3))
                 for p in sk[1])


class Runtime:
    def __init__(self, store: StoreSpec, config: RuntimeConfig = RuntimeConfig(), out_dir: str | Path | None = None,
                 detector: Detector | Callable | None = None, restore: bool = False, products_detector: Detector | None = None,
                 clock: Clock = SYSTEM_CLOCK, log_url: str | None = None, outbox: tuple[str, ...] = ("receipt",)):
        """``log_url``: the event log on a PostgreSQL server (the store's schema) instead of
        ``out_dir/events.sqlite``; the JSONL copies stay in ``out_dir``. ``outbox``: what the event
        log queues for the point-of-sale system (:class:`runtime.eventlog.EventLog`)."""
        self.store, self.cfg, self.clock = store, config, clock
        self.log = EventLog(out_dir, clock=clock, url=log_url, store=store.name, outbox=outbox) \
            if out_dir is not None else None
        self.vision = config.sensing in ("fused", "vision_only")
        self.scales = config.sensing in ("fused", "weight_only")
        self.detector = as_detector(detector) if detector is not None else \
            load_person_model(config.pose_model, conf=config.person_conf, streams=config.perception_streams,
                              batch=config.perception_batch, fit=config.person_input == "fit") if self.vision else None
        products = None
        if self.vision and (config.hands.product_model or config.sensing == "vision_only"):
            products = products_detector if products_detector is not None else \
                load_model(config.hands.product_model, conf=config.hands.product_conf)
        self.hands = HandWatch(store, config.hands, products) if self.vision else None
        self.ticks = TickBuilder({c.id: c.fps for c in store.cameras}, config.perception_hz, config.tick_window_s,
                                 jitter_s=config.tick_jitter_s)
        self.motion = MotionGate(config.motion_threshold, config.motion_refresh_s)
        self.tracker = WorldTracker(store, config.tracking)
        self.identity = GateIdentity(store, config.identity, config.group_window_s, config.tracking.walked_m)
        self.cell_health = CellHealth(config.cell_silent_s)
        self.cells = {cid: StepDetector(cid, config.weights) for cid in store.load_cells}
        self.plates = PlateJoiner(store, lambda cid: self.cells[cid], config.weights.join_s)
        self.attribution = Attributor(store, config)
        self.fusion = Fusion(store, config, self.hands)
        self.carts = Carts(store, clock)
        self.evidence = Evidence(store)
        self.on_track: Callable | None = None       # track states as they are published (a live display)
        self.t = 0.0                          # the stream's time as far as it has been decided
        self._t_in = 0.0                      # the newest message's time
        # What waits behind the person model, in the order it came: (the stream's time to decide it
        # at, how many frames it waits for, what decides it). The loop reads up to ``lookahead_s``
        # of the stream ahead of the model, choosing and submitting frames, while the model runs;
        # ticks, scales and gates are still decided in the order they came, with the same data.
        self._queue: deque = deque()
        self.lookahead_s = config.perception_lookahead_s if self.vision and self.detector.overlapped else 0.0
        self._shown: dict[int, TrackState] = {}    # the tracks shown at the last tick, by id
        self.stats = {"frames_seen": 0, "frames_processed": 0, "weight_events": 0, "unexplained": 0, "dropped": {}}
        self._dropped: Counter = Counter()     # what this dispatcher and the perception step left out
        self._restored: list = []
        self._gates_seen: set = set()          # the scans decided (a redelivered one is decided once)
        self.decided_gates: deque = deque()    # scans decided, for the caller to acknowledge to their source
        if restore and self.log is not None:
            self._restore()

    def _restore(self) -> None:
        """Started again on the event log of a run that stopped (or was killed): the open carts,
        the shelf stock (each cell's settled level and what lies in its bins) and where each
        shopper was last shown (the first track seen near there takes the account again). A
        provisional update that nothing settled is taken back: its step is found again against the
        restored level and decided afresh, so it is charged once."""
        log_ = self.log
        self._gates_seen = {gate_key(GateEvent(d["gate_id"], d["t"], d["account_id"], d["kind"])) for d in log_.gate_scans()}
        self.carts.restore(log_.open_carts())
        for cell, st in log_.stock().items():
            if cell in self.cells:
                self.cells[cell].restore(st["level"], st.get("noise"))
            for bid, counts in st.get("bins", {}).items():
                self.fusion.belief.counts[bid] = Counter(counts)
        back = []
        for u in log_.unsettled():
            if self.carts.cart(u["account_id"]) is None:
                continue       # the visit ended meanwhile: its receipt stands
            self.carts.restore({u["account_id"]: {u["sku"]: -int(u["delta_qty"])}})
            back.append(CartUpdate(u["account_id"], u["sku"], -int(u["delta_qty"]), u["t_interaction"], u["t_decided"],
                                   self.clock.wall_s(), u["confidence"], {"why": "restart: decided again from the shelf"},
                                   "final", f"{u['update_id']}-restart", u["update_id"]))
        with log_.batch():
            for m in back:
                self._publish(m)
        self._restored = back
        if self.vision:
            for account, (t, x, y) in log_.last_seen(set(self.carts.accounts())).items():
                self.identity.resume(account, (x, y))
        log.warning("restored from %s: %d open carts, stock of %d cells, %d provisional updates taken back",
                    log_.dir, len(self.carts.accounts()), len(log_.stock()), len(back))

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, source: Iterable[SensorMessage]) -> list:
        out = []
        try:
            for msg in source:
                out.extend(self.process(msg))
            out.extend(self.finish())
        finally:
            self.close()
        return out

    def finish(self) -> list:
        """The stream has ended: close the ticks still open, and decide everything still waiting."""
        if self.vision:
            for tick in self.ticks.flush():
                self._later(self._t_in, self.detector.submitted, lambda tick=tick: self._tick(tick))
            self.detector.wait()
        return self._drain(math.inf)

    def close(self) -> None:
        """Flush and close the event log; ``stats["dropped"]`` then counts what every stage left out."""
        dropped = Counter(self._dropped)
        dropped["late frame"] = self.ticks.late
        dropped["entry scan nobody was seen for"] = self.identity.unmatched_scans
        if self.hands is not None:
            dropped.update(self.hands.dropped)
        self.stats["dropped"] = {k: n for k, n in sorted(dropped.items()) if n}
        self.stats["frames_still"] = self.motion.skipped
        if self.log is not None:
            for reason, n in self.stats["dropped"].items():
                log.info("left out %d × %s", n, reason)
        if self.log is not None:
            self.log.close()
            self.log = None

    def process(self, msg: SensorMessage) -> list:
        """One message; what the runtime published meanwhile (track states aside: they go to the
        log). A frame is chosen for its tick and given to the person model at once; the rest is
        decided in order once the model has handed on the frames before it, at most
        ``perception_lookahead_s`` of stream later (at once with a model that runs each frame as it
        comes), so what is published can come with a later message, or from :meth:`finish`."""
        if self.vision:
            for tick in self.ticks.due(msg.t):
                self._later(self._t_in, self.detector.submitted, lambda tick=tick: self._tick(tick))
        t = self._t_in = max(self._t_in, msg.t)
        if isinstance(msg, Frame):
            self.stats["frames_seen"] += 1
            if self.vision:
                self._frame(msg, t)
        elif isinstance(msg, WeightSample):
            if self.scales:
                self._later(t, 0, lambda: self._weight(msg))
        elif isinstance(msg, GateEvent):
            self._later(t, 0, lambda: self._gate(msg))
        else:
            self._drop(f"unknown message {type(msg).__name__}")
        return self._drain(msg.t - self.lookahead_s)

    def _later(self, t: float, frames: int, decide: Callable[[], list]) -> None:
        self._queue.append((t, frames, decide))

    def _drain(self, before: float) -> list:
        """Decide, in order, what waits and may go: what the model has handed on the frames for, and
        whatever came before ``before`` (waiting for the model if it must)."""
        out: list = []
        while self._queue:
            t, frames, decide = self._queue[0]
            if frames and not self.detector.settled(frames):
                if t > before:
                    break
                self.detector.wait(frames)
            self._queue.popleft()
            self.t = max(self.t, t)
            if self.log is None:
                made = decide()
            else:
                with self.log.batch():     # a decision's updates and the stock it leaves: all or nothing
                    made = decide()
                    for m in made:
                        self._publish(m)
            out.extend(made)
        return out

    def _publish(self, m) -> None:
        if self.log is not None:
            self.log.append(m)
        if self.on_track is not None and isinstance(m, TrackState):
            self.on_track(m)

    def _note(self, kind: str, payload: dict) -> None:
        if self.log is not None:
            self.log.append({**payload, "kind": kind}, kind=kind)

    def _drop(self, reason: str, detail: str = "") -> None:
        if not self._dropped[reason]:
            log.warning("left out: %s%s (counted in stats['dropped'] from now on)", reason, f" ({detail})" if detail else "")
        self._dropped[reason] += 1

    # -- cameras -----------------------------------------------------------------------------------
    def _frame(self, f: Frame, t: float) -> None:
        cam = self.store.camera_by_id.get(f.camera_id)
        if cam is None:
            self._drop("frame of a camera the store file does not list", f.camera_id)
            return
        ref = FrameRef(f.camera_id, f.seq, f.t)
        tick = self.ticks.select(ref)
        if tick is None:
            return    # not this frame: another of the camera's frames serves the tick
        self.stats["frames_processed"] += 1
        image = f.image

        def seen(dets: list) -> None:
            people = [d for d in dets if d.label == "person"]
            tick.views.extend(person_views(cam, ref, image, people, self.store, self.cfg.tracking, self._dropped))

        still, sent = self.motion.still(f.camera_id, f.t, image, self.detector.wait)
        if still is not None:
            # nothing moved since the model last saw this camera: its detections stand (handed on
            # in turn with the frames before, as the model's would be)
            self.detector.hand_on(still, seen)
        else:
            def detected(dets: list) -> None:
                self.motion.saw(sent, dets)
                seen(dets)

            # the frame's people are in the tick's views by the time the tick closes (see _tick); the
            # detector may run it beside other frames meanwhile, while the scales' samples go on
            self.detector.submit(image, detected)
        if self.hands is not None and self.hands.products is not None:
            self._later(t, 0, lambda: self.hands.frame(ref, image) or [])

    def _tick(self, tick: Tick) -> list:
        t = tick.t      # its frames' detections are in (see _drain)
        self.tracker.update(t, associate(t, tick.views, self.store, self.cfg.tracking, self.tracker.anchors(t)))
        self.identity.update(t, self.tracker)
        shown = {}
        active = self.tracker.active()
        for k in active:
            hands = tuple(tuple(round(float(v), 3) for v in w) for tw, w in k.wrists if abs(tw - t) < 1e-6)
            shown[k.id] = TrackState(t, k.id, k.account, float(k.xy[0]), float(k.xy[1]), hands=hands,
                                     skeleton=skeleton_now(k, t))
            self._publish(shown[k.id])  # logged (and to on_track), not returned
        self._forecast(t, active)
        for gone in self._shown.keys() - shown.keys():    # shown at the last tick, not now: the track ended
            last = self._shown[gone]
            self._publish(TrackState(t, gone, last.account_id, last.x, last.y, ended=True))
        self._shown = shown
        out: list = []
        for r in self.hands.update(t, self.tracker.snapshot()) if self.hands is not None else ():
            out.extend(self.reach(r, max(self.t, t)))
        return out

    def _forecast(self, t: float, active: list) -> None:
        """Between this tick and the next, ``tracking.publish_hz`` states a second of each track seen
        at this tick: its constant-velocity forecast, stamped with the time it is for (a display
        moves the dots between measurements; a state held until the next tick lags a walking
        shopper by up to a period, 13 cm at 1.3 m/s and 5 Hz)."""
        cfg = self.cfg.tracking
        n = int(round(cfg.publish_hz * self.ticks.period_s)) - 1
        if n < 1:
            return
        step = self.ticks.period_s / (n + 1)
        for k in active:
            if abs(k.t - t) > 1e-6:
                continue           # not seen at this tick: no velocity to trust, its last state holds
            for j in range(1, n + 1):
                dt = min(j * step, cfg.predict_max_s)
                xy = k.xy + k.velocity * dt
                self._publish(TrackState(t + j * step, k.id, k.account, float(xy[0]), float(xy[1])))

    # -- gates -------------------------------------------------------------------------------------
    def _gate(self, g: GateEvent) -> list:
        self.decided_gates.append(g)
        key = gate_key(g)
        if key in self._gates_seen:
            self._drop("gate scan decided before (delivered again)", f"{g.kind} {g.account_id}")
            return []
        self._gates_seen.add(key)
        self._note(g.kind, {"t": g.t, "account_id": g.account_id, "gate_id": g.gate_id})
        if g.kind == "enter":
            self.carts.enter(g.account_id, g.t)
            self.identity.entry(g.t, g.gate_id, g.account_id)
            if self.vision:
                self.identity.update(g.t, self.tracker)
            else:
                self.identity.clear()
            return []
        self.tracker.close_account(g.account_id)
        return [self.carts.exit(g.account_id, g.t)]

    # -- load cells --------------------------------------------------------------------------------
    def _weight(self, s: WeightSample) -> list:
        det = self.cells.get(s.cell_id)
        if det is None:
            self._drop("reading of a load cell the store file does not list", s.cell_id)
            return []
        silent_s = self.cell_health.reading(s.cell_id, s.t)
        self.evidence.reading(s)
        learnt = det.level is not None
        out: list = []
        joins = self.plates.joins(s.cell_id)
        key = self.plates.key(s.cell_id)     # a provisional update is kept per item: its cell, or its joined plates
        if silent_s is not None:
            # back after a gap in which the hands decided: start from the level it reads now, so
            # what was taken meanwhile is not charged a second time
            det = self.cells[s.cell_id] = StepDetector(s.cell_id, self.cfg.weights)
            self._note("cell_back", {"t": s.t, "cell": s.cell_id, "silent_s": round(silent_s, 3)})
            out += self.carts.settle(key, None, s.t, f"load cell {s.cell_id} went silent")
        ev = det.update(s.t, s.grams)
        early = det.take_provisional()
        if early is not None:
            # on joined plates, over the whole item: the other plates' offsets now, or their declared shares
            ups = self.provisional(self.plates.provisional(early) if joins else early, key)
            if not ups and not self.carts.pending(key):
                det.decline(s.t)     # read too far off while the plate wanders: another look soon
            out += ups
        if ev is not None and joins:
            self.plates.add(ev)      # an item on several plates: one event once they have all settled
            ev = None
        if ev is not None:
            out += self.weight_event(ev)
        elif self.carts.pending(key) and (self.plates.idle(s.cell_id) if joins else not det.busy):
            out += self.carts.settle(key, None, s.t)    # it settled back: a knock, not an item
        decided = ev is not None
        for joined in self.plates.ready(s.t) if joins else ():
            out.extend(self.weight_event(joined, key))
            decided = True
        if decided or (not learnt and self.cells[s.cell_id].level is not None):
            self._stock(sorted(self.plates.group[s.cell_id]) if joins else [s.cell_id])
        return out

    def _stock(self, cells) -> None:
        """The shelf stock of these cells after a decision (or once a cell's level is first known),
        into the log with the decision itself: what a restart starts from."""
        for cid in cells:
            det = self.cells.get(cid)
            if det is None or det.level is None:
                continue
            bins = {b.id: dict(self.fusion.belief.counts.get(b.id, {})) for b in self.store.bins.values() if b.cell_id == cid}
            self._note("stock", {"t": self.t, "cell": cid, "level": det.level, "noise": det.noise, "bins": bins})

    def provisional(self, ev: WeightEvent, key: str) -> list:
        """A step not settled yet (the plate still rings): decided as a settled one would be, into
        the cart at once as a provisional update (kept under ``key``); its settled event confirms or
        corrects it."""
        if self.carts.pending(key):
            return []
        in_store = self.carts.accounts()
        tracks = self.tracker.snapshot() if self.vision else None
        att = self.attribution.weight_event(ev, tracks, in_store)
        track = self.tracker.track(att.track_id) if att.track_id is not None else None
        d = self.fusion.weight(ev, att.account, att.confidence, att.bin_cost, att.evidence(), self.carts.cart(att.account),
                               track, att.hand_m, commit=False)
        return [] if isinstance(d, Unexplained) else self.carts.provisional(key, d)

    def weight_event(self, ev: WeightEvent, key: str | None = None) -> list:
        """Decide one settled weight event: who (attribution), what (fusion), into whose cart (``key``:
        what its provisional update was kept under; its cell by default)."""
        key = ev.cell_id if key is None else key
        self.stats["weight_events"] += 1
        in_store = self.carts.accounts()
        tracks = self.tracker.snapshot() if self.vision else None
        att = self.attribution.weight_event(ev, tracks, in_store)
        account, moves = self.attribution.concurrent(ev, att, att.account, self.carts.recent(), set(in_store))
        out = self.carts.move(moves, ev.t_end)
        track = self.tracker.track(att.track_id) if att.track_id is not None else None
        d = self.fusion.weight(ev, account, att.confidence, att.bin_cost, att.evidence(),
                               self.carts.cart(account, settling=key), track, att.hand_m)
        # for the reviewer: the readings around the step and who stood near its bins (numbers, no image)
        d = replace(d, evidence={**d.evidence, **self.evidence.around(ev.cell_id, ev.t_start, ev.t_end, tracks or ())})
        if isinstance(d, Unexplained):
            self.stats["unexplained"] += 1
            self._note("unexplained", {"t": d.t, "account_id": d.account, **d.evidence})
            for text in d.doubts:
                self.carts.doubt(d.account, text)
            return out + self.carts.settle(key, None, ev.t_end)
        self.attribution.charged(d.account, ev.t_start, d.bin_id)
        return out + self.carts.settle(key, d, ev.t_end)

    # -- reaches -----------------------------------------------------------------------------------
    def reach(self, r: Reach, t_now: float) -> list:
        """A reach that ended (``t_now``: the stream's time) into a bin that no working scale
        watches (``vision_only``, a cell gone silent, or a bin without one): what the hand took or
        left decides the charge."""
        b = self.store.bins[r.bin_id]
        if self.scales and self.cell_health.working(b.cell_id, t_now):
            return []   # the scale is working: its weight events decide
        k = self.tracker.track(r.track_id)
        if k is None or k.closed:
            return []
        in_store = self.carts.accounts()
        account = k.account if k.account is not None else (in_store[0] if len(in_store) == 1 else None)
        cart = self.carts.cart(account)
        if cart is None:
            return []
        scale = "none" if b.cell_id is None else ("silent" if self.scales else "not used")
        decisions, evidence = self.fusion.reach(r, k, account, cart, scale, t_now)
        if not decisions:
            self._note("reach", {"t": t_now, "account_id": account, **evidence})
        out: list = []
        for d in decisions:
            out.extend(self.carts.apply(d))
        return out


__all__ = ["Runtime", "RuntimeConfig", "SENSING"]
