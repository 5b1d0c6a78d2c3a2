"""Wall clocks: everything that stamps wall time takes one, so tests drive time themselves.

The store clock (``t``, seconds) comes with the messages; the wall clock says when something was
published or released on this machine (``wall_s``). :class:`SystemClock` is the real one;
:class:`ManualClock` is set by hand.
"""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def wall_s(self) -> float:
        """Seconds on the wall clock (epoch seconds for the system clock)."""
        ...

    def sleep(self, seconds: float) -> None:
        ...


class SystemClock:
    def wall_s(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to (``advance``) or when slept on."""

    def __init__(self, start_s: float = 0.0):
        self.now_s = start_s

    def wall_s(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.now_s += seconds


SYSTEM_CLOCK = SystemClock()
