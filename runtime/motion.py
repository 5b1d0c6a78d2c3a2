"""Motion gating: the person model sees a camera's frame only when something in it moved.

A ceiling camera over an aisle nobody walks down sends the same picture five times a second, and
the person model would find the same nobody (or the same still shopper) in each. :class:`MotionGate`
keeps, per camera, the mean grey level of every ``block_px`` square of the last frame the model saw
(a block's mean averages the stream's compression noise away, a moving arm does not) and compares
each new frame's with it. When no block moved by more than ``threshold`` grey levels and the model
saw that camera less than ``refresh_s`` ago, the last detections stand for the new frame. A hand
reaching into a bin, a shopper stepping in at the edge or a light flickering all move some block,
so the model runs; only a still picture is skipped.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Seen:
    """The frame of a camera the model last saw: its blocks and, once the model has handed them
    over, its detections."""

    t: float
    blocks: np.ndarray | None
    detections: list | None = None


class MotionGate:
    """``threshold`` ≤ 0 turns the gate off (every frame goes through the model).

    Which frames are skipped does not depend on how fast the model runs: a frame is compared with
    the last one *sent* to the model, and if that one's detections are still on their way,
    ``flush`` (the detector's ``wait``) brings them in first.
    """

    def __init__(self, threshold: float, refresh_s: float, block_px: int = 16):
        if block_px < 1:
            raise ValueError(f"block_px={block_px}: expected ≥ 1")
        self.threshold, self.refresh_s, self.block_px = threshold, refresh_s, block_px
        self._seen: dict[str, Seen] = {}
        self.skipped = 0
        self.passed = 0

    def blocks(self, bgr: np.ndarray) -> np.ndarray:
        """Each ``block_px`` square's mean grey level (float32)."""
        h, w = bgr.shape[:2]
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        size = (max(1, round(w / self.block_px)), max(1, round(h / self.block_px)))
        return cv2.resize(grey.astype(np.float32), size, interpolation=cv2.INTER_AREA)

    def still(self, camera_id: str, t: float, bgr: np.ndarray,
              flush: Callable[[], None] = lambda: None) -> tuple[list | None, Seen | None]:
        """``(detections, None)``: the picture has not moved since the last frame the model saw,
        whose detections stand for this one. ``(None, seen)``: the model is to see this frame; hand
        its detections to :meth:`saw` with ``seen``."""
        if self.threshold <= 0:
            return None, Seen(t, None)
        blocks = self.blocks(bgr)
        last = self._seen.get(camera_id)
        if (last is not None and 0 <= t - last.t < self.refresh_s and last.blocks.shape == blocks.shape
                and float(np.abs(blocks - last.blocks).max()) <= self.threshold):
            if last.detections is None:
                flush()
            if last.detections is not None:
                self.skipped += 1
                return last.detections, None
        self.passed += 1
        self._seen[camera_id] = seen = Seen(t, blocks)
        return None, seen

    @staticmethod
    def saw(seen: Seen, detections: list) -> None:
        """The model's detections in the frame :meth:`still` sent it."""
        seen.detections = detections
