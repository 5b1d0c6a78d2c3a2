"""Load-cell health: which cells are reporting, and a cell back from silence.

A cell that sent nothing for ``cell_silent_s`` has failed: its bins are then decided by the hands
(``runtime/fusion.py``). When it reports again, its step detector starts from the level it reads
then, so what the hands charged meanwhile is not charged a second time.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class CellHealth:
    def __init__(self, silent_s: float):
        self.silent_s = silent_s
        self._last_t: dict[str, float] = {}

    def reading(self, cell_id: str, t: float) -> float | None:
        """Note a reading; how long the cell had been silent if it is back from a failure, else None."""
        last = self._last_t.get(cell_id)
        self._last_t[cell_id] = t
        if last is not None and t - last >= self.silent_s:
            log.info("load cell %s back at %.1f s after %.1f s of silence", cell_id, t, t - last)
            return t - last
        return None

    def working(self, cell_id: str | None, t: float) -> bool:
        """The cell has reported within ``silent_s`` of ``t`` (a bin without a cell has none working)."""
        return cell_id is not None and t - self._last_t.get(cell_id, -float("inf")) < self.silent_s

    def snapshot(self, t: float) -> dict[str, float]:
        """Seconds since each cell last reported."""
        return {c: round(t - lt, 3) for c, lt in self._last_t.items()}
