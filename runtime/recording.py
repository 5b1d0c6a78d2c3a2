"""Recorded sensor streams: the files a run directory keeps so the runtime can be replayed.

``streams/<camera>.mp4`` with ``streams/<camera>.frames.csv`` (seq, t of every written frame),
``streams/weights.csv`` (t, cell_id, grams) and ``streams/gates.jsonl``. Raw video is optional
(privacy): a store keeps it only while debugging.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2

from runtime.messages import Frame, GateEvent, SensorMessage, WeightSample


class StreamWriter:
    """Writes sensor messages as they come; ``close()`` flushes everything."""

    def __init__(self, directory: Path, video: bool = True, fourcc: str = "mp4v", fps: dict[str, float] | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.video, self.fourcc = video, fourcc
        self.fps = fps or {}
        self._videos: dict[str, cv2.VideoWriter] = {}
        self._index: dict[str, tuple] = {}
        self._weights_f = open(self.dir / "weights.csv", "w", newline="")
        self._weights = csv.writer(self._weights_f)
        self._weights.writerow(["t", "cell_id", "grams"])
        self._gates = open(self.dir / "gates.jsonl", "w")
        self.counts = {"frames": 0, "weights": 0, "gates": 0}

    def write(self, msg: SensorMessage) -> None:
        if isinstance(msg, WeightSample):
            self._weights.writerow([f"{msg.t:.6f}", msg.cell_id, f"{msg.grams:.1f}"])
            self.counts["weights"] += 1
        elif isinstance(msg, GateEvent):
            self._gates.write(json.dumps({"gate_id": msg.gate_id, "t": msg.t, "account_id": msg.account_id, "kind": msg.kind}) + "\n")
            self.counts["gates"] += 1
        elif isinstance(msg, Frame):
            self.counts["frames"] += 1
            if not self.video:
                return
            if msg.camera_id not in self._videos:
                h, w = msg.image.shape[:2]
                fps = self.fps.get(msg.camera_id, 10.0)
                self._videos[msg.camera_id] = cv2.VideoWriter(
                    str(self.dir / f"{msg.camera_id}.mp4"), cv2.VideoWriter_fourcc(*self.fourcc), fps, (w, h))
                f = open(self.dir / f"{msg.camera_id}.frames.csv", "w", newline="")
                wr = csv.writer(f)
                wr.writerow(["seq", "t"])
                self._index[msg.camera_id] = (f, wr)
            self._videos[msg.camera_id].write(msg.image)
            self._index[msg.camera_id][1].writerow([msg.seq, f"{msg.t:.6f}"])

    def close(self) -> None:
        for v in self._videos.values():
            v.release()
        for f, _ in self._index.values():
            f.close()
        self._weights_f.close()
        self._gates.close()
