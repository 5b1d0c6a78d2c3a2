"""Sources: where the runtime's sensor messages come from, in time order.

Any iterable of :data:`SensorMessage` in time order is a source: the simulator's live source is
``Simulator.run()``. :class:`ReplaySource` reads a run directory's recorded streams (one mp4 per
camera with its frame index, ``weights.csv``, ``gates.jsonl``) and merges them by time.
:func:`paced` releases any source's messages at their own timestamps on the wall clock (real-time
pacing), the way a store's sensors deliver them.
"""
from __future__ import annotations

import csv
import heapq
import json
import logging
import math
import time
from collections import Counter, deque
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.messages import Frame, GateEvent, SensorMessage, WeightSample

_ORDER = {GateEvent: 0, WeightSample: 1, Frame: 2}   # at equal times: gates, then weights, then frames
MAX_GRAMS = 1e6      # a reading beyond a tonne is no shelf's: a corrupt value
log = logging.getLogger(__name__)


def implausible(msg: WeightSample | GateEvent) -> str | None:
    """What no device sends in ``msg`` (a recording's line or a live message), or None."""
    if isinstance(msg, WeightSample):
        if not (math.isfinite(msg.t) and math.isfinite(msg.grams)) or abs(msg.grams) > MAX_GRAMS:
            return f"t={msg.t!r}, grams={msg.grams!r}: expected finite numbers, grams within ±{MAX_GRAMS:g}"
        return None
    if msg.kind not in ("enter", "exit") or not math.isfinite(msg.t):
        return f"kind={msg.kind!r}, t={msg.t!r}: expected enter or exit at a finite time"
    return None


class ReplaySource:
    """The recorded streams of a run directory (``<run>/streams`` or the streams folder itself).

    ``cameras`` limits the video to some cameras (``()``: no video at all, weights and gates only);
    ``weights=False`` leaves the load cells out (cameras and gates only).

    A recording may be damaged (a line cut short, garbage appended, a video that ends early): each
    line that cannot be read, or reads as no sensor could have sent it (a value that is not a
    finite number, grams beyond a tonne, time going backwards within its file), is left out and
    reported with its file and line (logged, the first few; all counted in :attr:`skipped`), a
    video that ends before its index is replayed up to where it ends, and the rest is replayed.
    """

    LOGGED = 5     # per file: lines reported one by one; the rest only counted

    def __init__(self, path: str | Path, cameras: Iterable[str] | None = None, weights: bool = True):
        p = Path(path)
        self.dir = p / "streams" if (p / "streams").is_dir() else p
        for name in ("weights.csv", "gates.jsonl"):
            if not (self.dir / name).is_file():
                raise FileNotFoundError(f"{self.dir / name}: not a recorded run (expected streams/{name})")
        found = sorted(f.name[: -len(".frames.csv")] for f in self.dir.glob("*.frames.csv"))
        self.cameras = found if cameras is None else [c for c in cameras if c in found]
        self.weights = weights
        self.skipped: Counter = Counter()   # file name → lines (or frames) left out

    def _skip(self, path: Path, line: int, why: str) -> None:
        self.skipped[path.name] += 1
        if self.skipped[path.name] <= self.LOGGED:
            log.warning("%s:%d: %s; left out, the rest is replayed", path, line, why)
        elif self.skipped[path.name] == self.LOGGED + 1:
            log.warning("%s: more lines left out; counted, not logged one by one", path)

    def _rows(self, path: Path, fields: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
        """A CSV file's rows with their line numbers; rows missing a field are reported and left out."""
        with open(path, newline="", errors="replace") as f:
            reader = csv.DictReader(line.replace("\0", "") for line in f)   # NUL bytes: garbage, not the end
            if reader.fieldnames is None or any(k not in reader.fieldnames for k in fields):
                raise ValueError(f"{path}: expected a header with {', '.join(fields)}; found {reader.fieldnames}")
            for row in reader:
                if any(row.get(k) in (None, "") for k in fields):
                    self._skip(path, reader.line_num, f"expected {len(fields)} fields ({', '.join(fields)}), found {row}")
                    continue
                yield reader.line_num, row

    def _weights(self) -> Iterator[WeightSample]:
        path = self.dir / "weights.csv"
        last: dict[str, float] = {}
        for line, row in self._rows(path, ("t", "cell_id", "grams")):
            try:
                t, grams = float(row["t"]), float(row["grams"])
            except ValueError as e:
                self._skip(path, line, f"expected numbers for t and grams ({e})")
                continue
            w = WeightSample(row["cell_id"], t, grams)
            why = implausible(w)
            if why:
                self._skip(path, line, why)
                continue
            if t < last.get(w.cell_id, -math.inf):
                self._skip(path, line, f"t={t:g} s is before this cell's previous reading ({last[w.cell_id]:g} s)")
                continue
            last[w.cell_id] = t
            yield w

    def _gates(self) -> Iterator[GateEvent]:
        path = self.dir / "gates.jsonl"
        last = -math.inf
        with open(path, errors="replace") as f:
            for line, text in enumerate(f, 1):
                if not text.strip():
                    continue
                try:
                    d = json.loads(text)
                    g = GateEvent(str(d["gate_id"]), float(d["t"]), str(d["account_id"]), d["kind"])
                except (ValueError, KeyError, TypeError) as e:
                    self._skip(path, line, f"expected a JSON object with gate_id, t, account_id, kind ({type(e).__name__}: {e})")
                    continue
                why = implausible(g) or (f"t={g.t:g} s is before the previous gate event's ({last:g} s)" if g.t < last else None)
                if why:
                    self._skip(path, line, why)
                    continue
                last = g.t
                yield g

    def _frames(self, cam: str) -> Iterator[Frame]:
        path = self.dir / f"{cam}.frames.csv"
        index = []
        for line, row in self._rows(path, ("seq", "t")):
            try:
                seq, t = int(row["seq"]), float(row["t"])
            except ValueError as e:
                self._skip(path, line, f"expected a whole seq and a time t ({e})")
                index.append(None)   # the video still holds its frame: read past it
                continue
            if not math.isfinite(t) or (index and index[-1] is not None and t < index[-1][1]):
                self._skip(path, line, f"t={row['t']}: expected a finite time after the previous frame's")
                index.append(None)
                continue
            index.append((seq, t))
        video = self.dir / f"{cam}.mp4"
        if not video.is_file():
            return   # frames were counted but not kept (privacy): nothing to replay
        cap = cv2.VideoCapture(str(video))
        try:
            for k, entry in enumerate(index):
                ok, img = cap.read()
                if not ok:
                    left = sum(e is not None for e in index[k:])
                    if not left:
                        return
                    self.skipped[video.name] += left
                    log.warning("%s: ends after %d frames, but %s lists %d; its last %d frames left out, the rest "
                                "is replayed", video, k, path.name, len(index), left)
                    return
                if entry is not None:
                    yield Frame(cam, entry[1], entry[0], img)
        finally:
            cap.release()

    def __iter__(self) -> Iterator[SensorMessage]:
        streams = [self._gates(), *([self._weights()] if self.weights else []), *[self._frames(c) for c in self.cameras]]
        return merge(streams)


def merge(streams: list[Iterable[SensorMessage]]) -> Iterator[SensorMessage]:
    """Merge time-ordered streams into one time-ordered stream."""
    def tagged(i: int, s: Iterable[SensorMessage]):
        for k, m in enumerate(s):
            yield (m.t, _ORDER[type(m)], i, k), m

    for _, m in heapq.merge(*[tagged(i, s) for i, s in enumerate(streams)], key=lambda p: p[0]):
        yield m


def paced(source: Iterable[SensorMessage], wall_t0: float | None = None,
          clock: Clock = SYSTEM_CLOCK) -> Iterator[SensorMessage]:
    """Release each message when the wall clock reaches ``wall_t0 + msg.t`` (real-time pacing).
    A consumer slower than real time receives the messages late, as it would in a store."""
    t0 = clock.wall_s() if wall_t0 is None else wall_t0
    for m in source:
        clock.sleep(t0 + m.t - clock.wall_s())
        yield m


def _stream(msg: SensorMessage) -> str:
    return msg.camera_id if isinstance(msg, Frame) else "cells" if isinstance(msg, WeightSample) else "gates"


class LiveMerge:
    """Live device streams merged in time order, for a store's cameras, scales and gates.

    Reader threads :meth:`put` messages as they arrive, each stamped on the store clock; iterating
    yields them in time order. A message is held until the store clock has passed its stamp by
    ``lateness_s`` (every stream has had that long to send what came before it), so a stream that
    goes quiet (a gate nobody passes, a camera that dropped out) holds the others up by at most the
    bound, never for ever as a merge of iterators would. A message that arrives after a later one
    was released is *late*: it is counted (:attr:`late`) and, by ``late=``, handed on at once
    (``"deliver"``, the default: the runtime takes it at its own stamp, and what it decided for the
    time before stands) or left out (``"drop"``). :meth:`close` (no more messages) releases what
    is held. ``now_t`` reads the store clock (default: the wall clock's epoch seconds, as devices
    stamp them).

    Frames wait in one queue per camera: when perception falls behind (``max_frames`` of a camera
    wait and the oldest is past the bound, free to go but not taken), a camera's oldest waiting
    frame makes way for its newest, counted in :attr:`frames_dropped` by camera, so the runtime
    always works on the present and memory stays bounded (by ``max_frames`` and the frames within
    the bound); readings and gate scans are small and never dropped.

    With ``max_lateness_s`` above ``lateness_s`` the bound is learnt: every second it becomes the
    ``quantile`` of each stream's delays (arrival on the store clock less the stamp) over the last
    ``learn_s``, the largest of the streams', plus ``margin_s``, kept between the two; it rises at
    once and comes down by at most ``margin_s`` a second. A machine whose cameras' frames come in
    bunches, or a network that holds messages back for a while, then costs the runtime that much
    more lag instead of the late frames. :attr:`delay_q` holds each stream's learnt quantile."""

    def __init__(self, lateness_s: float = 0.3, late: str = "deliver", clock: Clock = SYSTEM_CLOCK,
                 now_t=None, max_frames: int = 8, max_lateness_s: float | None = None, learn_s: float = 10.0,
                 quantile: float = 0.99, margin_s: float = 0.05):
        import threading

        if late not in ("deliver", "drop"):
            raise ValueError(f"late={late!r}: expected deliver or drop")
        if not lateness_s >= 0:
            raise ValueError(f"lateness_s={lateness_s!r}: expected seconds ≥ 0")
        if not (isinstance(max_frames, int) and max_frames >= 1):
            raise ValueError(f"max_frames={max_frames!r}: expected a whole number ≥ 1")
        if max_lateness_s is not None and not max_lateness_s >= lateness_s:
            raise ValueError(f"max_lateness_s={max_lateness_s!r}: expected seconds ≥ lateness_s={lateness_s}")
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile={quantile!r}: expected a share in (0, 1]")
        self.lateness_s, self.policy, self.clock = lateness_s, late, clock
        self.min_lateness_s = lateness_s
        self.max_lateness_s = lateness_s if max_lateness_s is None else max_lateness_s
        self.learn_s, self.quantile, self.margin_s = learn_s, quantile, margin_s
        self._delays: dict[str, deque] = {}         # stream → (arrival, delay) of the last learn_s
        self._learnt_at = -math.inf
        self.delay_q: dict[str, float] = {}         # stream → its delays' quantile, as last learnt
        self.now_t = now_t or clock.wall_s
        self.max_frames = max_frames
        self._heap: list = []                       # readings and scans: (t, order, n, msg)
        self._frames: dict[str, deque] = {}         # camera → its waiting frames, oldest first: (t, n, msg)
        self._n = 0
        self._released_t = -math.inf
        self._closed = False
        self._cond = threading.Condition()
        self.late = 0            # messages that came after a later one was released
        self.late_by: Counter = Counter()           # ... by stream: a camera's id, "cells" or "gates"
        self.late_dropped = 0
        self.frames_dropped: Counter = Counter()    # camera → frames that made way for newer ones

    def put(self, msg: SensorMessage) -> None:
        """From any thread: one message, as it arrives."""
        with self._cond:
            if self._closed:
                return
            self._n += 1
            if self.max_lateness_s > self.min_lateness_s:
                now = self.now_t()
                self._delays.setdefault(_stream(msg), deque()).append((now, now - msg.t))
            if msg.t < self._released_t:
                self.late += 1
                self.late_by[_stream(msg)] += 1
                if self.policy == "drop":
                    self.late_dropped += 1
                    return
                heapq.heappush(self._heap, (-math.inf, 0, self._n, msg))   # at once, ahead of the held ones
            elif isinstance(msg, Frame):
                q = self._frames.setdefault(msg.camera_id, deque())
                if len(q) >= self.max_frames and q[0][0] <= self.now_t() - self.lateness_s:
                    q.popleft()       # free to go and not taken: the consumer is behind
                    self.frames_dropped[msg.camera_id] += 1
                q.append((msg.t, self._n, msg))
            else:
                heapq.heappush(self._heap, (msg.t, _ORDER[type(msg)], self._n, msg))
            self._cond.notify()

    def close(self) -> None:
        """No more messages: what is held is released, and iteration ends after it."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def depth(self) -> int:
        """Messages held now."""
        return len(self._heap) + sum(len(q) for q in self._frames.values())

    def _head(self):
        """The next message in time order, as (t, order, n, queue), or None; under the lock."""
        best = (self._heap[0][:3] + (None,)) if self._heap else None
        for q in self._frames.values():
            if q:
                t, n, _ = q[0]
                if best is None or (t, 2, n) < best[:3]:
                    best = (t, 2, n, q)
        return best

    def _pop_ready(self, horizon: float):
        head = self._head()
        if head is None or head[0] > horizon:
            return None
        if head[3] is None:
            t, _, _, msg = heapq.heappop(self._heap)
        else:
            t, _, msg = head[3].popleft()
        if t != -math.inf:
            self._released_t = max(self._released_t, msg.t)
        return msg

    def _learn(self) -> None:
        """The bound from the streams' recent delays (at most once a second); under the lock."""
        now = self.now_t()
        if self.max_lateness_s <= self.min_lateness_s or now - self._learnt_at < 1.0:
            return
        self._learnt_at = now
        for stream, q in self._delays.items():
            while q and now - q[0][0] > self.learn_s:
                q.popleft()
            if q:
                self.delay_q[stream] = float(np.quantile(np.fromiter((d for _, d in q), float, len(q)), self.quantile))
            else:
                self.delay_q.pop(stream, None)
        want = max(self.delay_q.values(), default=0.0) + self.margin_s
        want = min(self.max_lateness_s, max(self.min_lateness_s, want))
        self.lateness_s = want if want >= self.lateness_s else max(want, self.lateness_s - self.margin_s)

    def poll(self) -> list[SensorMessage]:
        """What may go now (never waits)."""
        out = []
        with self._cond:
            self._learn()
            horizon = math.inf if self._closed else self.now_t() - self.lateness_s
            while (msg := self._pop_ready(horizon)) is not None:
                out.append(msg)
        return out

    def __iter__(self) -> Iterator[SensorMessage]:
        """One message at a time, as each may go: what waits is still in the queues (a slow
        consumer's backlog of frames stays bounded)."""
        return (m for m in self.stream() if m is not None)

    def stream(self, idle_s: float | None = None) -> Iterator[SensorMessage | None]:
        """As iterating, but ``None`` whenever ``idle_s`` passes with nothing to hand on (the
        consumer's moment for periodic work on a quiet store)."""
        waited = 0.0
        while True:
            with self._cond:
                self._learn()
                horizon = math.inf if self._closed else self.now_t() - self.lateness_s
                msg = self._pop_ready(horizon)
                if msg is None:
                    head = self._head()
                    if self._closed and head is None:
                        return
                    # the next release is due when the store clock passes its stamp + the bound
                    wait = 0.5 if head is None else head[0] + self.lateness_s - self.now_t()
                    if idle_s is not None:
                        wait = min(wait, idle_s - waited)
                    if wait > 0:
                        t = time.monotonic()
                        self._cond.wait(min(wait, 0.5))
                        waited += time.monotonic() - t
                    if idle_s is None or waited < idle_s:
                        continue
            waited = 0.0
            yield msg
