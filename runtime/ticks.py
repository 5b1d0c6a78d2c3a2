"""The time model for real cameras: which frames go through perception, and which tick each joins.

IP cameras are not synchronised: each stamps its frames on its own clock (offset, jitter) at its
own rate. Perception therefore runs on a common schedule of ticks, ``perception_hz`` a second at
``T_k = k / perception_hz`` on the store clock, and each camera gives every tick the one frame of
its own that lies nearest ``T_k``, if that frame is within ``window_s`` of it (by default half
the slowest camera's frame period, so every camera has a frame in reach, plus the jitter its
stamps may have; a camera whose frames come at least a quarter slower than the store file says
gets half its real period). Views of
one tick are one moment for the tracker: that is how two cameras see one person at once.

A tick is complete when every camera that is delivering has given it a frame, or when the stream
has passed ``T_k + window_s`` (a watermark: a camera gone dark never holds a tick up). A frame for
a tick already closed is late: it is counted and left out.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameRef:
    """Where a view came from: a camera's frame, found again by ``(camera_id, seq)``."""

    camera_id: str
    seq: int
    t: float


@dataclass
class Tick:
    """One perception moment: what every camera contributed to it (filled by the pipeline)."""

    index: int
    t: float
    frames: list[FrameRef] = field(default_factory=list)
    views: list = field(default_factory=list)


class TickBuilder:
    """Chooses frames for perception and closes ticks. ``camera_fps``: each camera's nominal rate
    (the store file's); the real period is learnt from the frames' own stamps as they come."""

    def __init__(self, camera_fps: dict[str, float], perception_hz: float, window_s: float = 0.0,
                 quiet_after_s: float = 1.0, jitter_s: float = 0.0):
        self.period_s = 1.0 / perception_hz
        slowest = min(camera_fps.values()) if camera_fps else 10.0
        # half the slowest period puts one frame of every camera in reach; ``jitter_s`` more keeps
        # it there when a camera's stamps wander by that much round its nominal rate
        self.window_s = window_s or min(0.5 / slowest + jitter_s, 0.5 * self.period_s - 1e-6)
        self._auto, self.jitter_s = not window_s, jitter_s
        self._widest = self.window_s                 # the widest camera window: when a tick may close
        self.quiet_after_s = quiet_after_s
        self._frame_period = {c: 1.0 / f for c, f in camera_fps.items()}
        self._nominal = dict(self._frame_period)
        self._last_frame_t: dict[str, float] = {}
        self._served: dict[str, int] = {}            # camera → last tick it gave a frame to
        self._open: dict[int, Tick] = {}
        self._closed_upto = -math.inf                # every tick up to this index is closed
        self._start_t: float | None = None           # the stream's first time seen
        self.late = 0

    def select(self, ref: FrameRef) -> Tick | None:
        """The tick this frame is for (run perception on it), or None (another of the camera's
        frames is nearer a tick, the frame is between ticks, or it came too late)."""
        cam, t = ref.camera_id, ref.t
        last = self._last_frame_t.get(cam)
        if last is not None and 0.0 < t - last < 1.0:   # learn the real frame period (rate, jitter)
            self._frame_period[cam] = 0.9 * self._frame_period.get(cam, t - last) + 0.1 * (t - last)
        self._last_frame_t[cam] = t if last is None else max(last, t)
        k = round(t / self.period_s)
        t_k = k * self.period_s
        if abs(t - t_k) > self._window(cam) or self._served.get(cam, -math.inf) >= k:
            return None
        if k <= self._closed_upto:
            self.late += 1
            log.debug("frame %s/%d at %.3f s is late for tick %.3f s: left out", cam, ref.seq, t, t_k)
            return None
        if t < t_k - 0.5 * self._frame_period.get(cam, 2 * self.window_s):
            return None   # this camera's next frame will be nearer the tick
        self._served[cam] = k
        tick = self._open.get(k)
        if tick is None:
            tick = self._open[k] = Tick(k, round(t_k, 6))
        tick.frames.append(ref)
        return tick

    def _window(self, cam: str) -> float:
        """A camera that sends fewer frames than the store file says (a 10 fps camera set to 5, a
        stream thinned on the way) gets half its real period as its window, up to half a tick: its
        frames, at whatever phase its clock puts them, still reach the tick nearest them."""
        p, nominal = self._frame_period.get(cam), self._nominal.get(cam)
        if not self._auto or p is None or nominal is None or p < 1.25 * nominal:
            return self.window_s
        w = min(max(self.window_s, 0.5 * p + self.jitter_s), 0.5 * self.period_s - 1e-6)
        self._widest = max(self._widest, w)
        return w

    def due(self, t: float) -> list[Tick]:
        """The ticks to close now that the stream has reached ``t``, oldest first: those whose
        window has passed, and those every delivering camera has given its frame. At the start
        every camera the store lists counts as delivering until it has been quiet for
        ``quiet_after_s``, so the first tick waits for the cameras that have not spoken yet."""
        if self._start_t is None:
            self._start_t = t
        if not self._open:    # called for every message of the store: the common case is quick
            return []
        live = None
        out = []
        for k in sorted(self._open):
            tick = self._open[k]
            if t <= tick.t + self._widest:
                if live is None:
                    live = self._delivering(t)
                if not (live and live <= {f.camera_id for f in tick.frames}):
                    break   # ticks close in order
            out.append(self._close(k))
        return out

    def _delivering(self, t: float) -> set[str]:
        live = {c for c, lt in self._last_frame_t.items() if t - lt < self.quiet_after_s}
        if t - self._start_t < self.quiet_after_s:
            live |= {c for c in self._frame_period if c not in self._last_frame_t}
        return live

    def flush(self) -> list[Tick]:
        """Close every open tick (the stream has ended)."""
        return [self._close(k) for k in sorted(self._open)]

    def _close(self, k: int) -> Tick:
        self._closed_upto = max(self._closed_upto, k)
        return self._open.pop(k)
