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
from pathlib import Path
from typing import Iterable, Iterator

import cv2

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.messages import Frame, GateEvent, SensorMessage, WeightSample

_ORDER = {GateEvent: 0, WeightSample: 1, Frame: 2}   # at equal times: gates, then weights, then frames


class ReplaySource:
    """The recorded streams of a run directory (``<run>/streams`` or the streams folder itself).

    ``cameras`` limits the video to some cameras (``()``: no video at all, weights and gates only);
    ``weights=False`` leaves the load cells out (cameras and gates only).
    """

    def __init__(self, path: str | Path, cameras: Iterable[str] | None = None, weights: bool = True):
        p = Path(path)
        self.dir = p / "streams" if (p / "streams").is_dir() else p
        for name in ("weights.csv", "gates.jsonl"):
            if not (self.dir / name).is_file():
                raise FileNotFoundError(f"{self.dir / name}: not a recorded run (expected streams/{name})")
        found = sorted(f.name[: -len(".frames.csv")] for f in self.dir.glob("*.frames.csv"))
        self.cameras = found if cameras is None else [c for c in cameras if c in found]
        self.weights = weights

    def _weights(self) -> Iterator[WeightSample]:
        with open(self.dir / "weights.csv", newline="") as f:
            for row in csv.DictReader(f):
                yield WeightSample(row["cell_id"], float(row["t"]), float(row["grams"]))

    def _gates(self) -> Iterator[GateEvent]:
        with open(self.dir / "gates.jsonl") as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    yield GateEvent(d["gate_id"], float(d["t"]), d["account_id"], d["kind"])

    def _frames(self, cam: str) -> Iterator[Frame]:
        with open(self.dir / f"{cam}.frames.csv", newline="") as f:
            index = [(int(r["seq"]), float(r["t"])) for r in csv.DictReader(f)]
        video = self.dir / f"{cam}.mp4"
        if not video.is_file():
            return   # frames were counted but not kept (privacy): nothing to replay
        cap = cv2.VideoCapture(str(video))
        try:
            for seq, t in index:
                ok, img = cap.read()
                if not ok:
                    raise ValueError(f"{video}: ends at frame {seq}, but {cam}.frames.csv lists {len(index)} frames")
                yield Frame(cam, t, seq, img)
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
