"""A store's cameras: one reader thread per stream, frames stamped on the store clock.

:class:`CameraReader` reads a camera through OpenCV's FFmpeg backend: an RTSP stream (over TCP),
an HTTP MJPEG stream, a video file, or a USB camera by its index (``"0"``). It puts each frame
into a :class:`runtime.sources.LiveMerge` as a :class:`runtime.messages.Frame`; the merge keeps
only the newest few per camera when perception falls behind.

**Stamps.** A frame is stamped with the time it was captured, on the store clock (epoch seconds
of this machine). The stream's own presentation time (``pts``: the camera's clock, from the stream
start) gives the spacing of the frames without the network's jitter; where the stream started on
the store clock is the smallest ``arrival − pts`` seen since the stream (re)opened (the frame that
had the fastest trip), less the camera's ``latency_s`` (capture to delivery on the fastest trip:
encoding, packetising and the decoder's delay; measure it once per model of camera). Frames that
come in a burst (those buffered while the stream opened) are held until the reader has caught up
(a read that waited for the network), so they too are stamped with a settled start. A file is
played at its own pace.

**Reconnects.** A stream that does not open, or gives no frame for ``read_timeout_s``, is closed
and opened again after a pause that doubles from ``backoff_s`` up to ``max_backoff_s``; each
reconnect is counted; every outage, reconnected or ridden out by the stream, is timed
(:attr:`CameraReader.outages`: seconds from the last frame before the gap to the first after it).

No frame is written anywhere: frames live in the reader and the merge's bounded queues only.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from pathlib import Path

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.messages import Frame

log = logging.getLogger(__name__)

# RTSP over TCP (no loss on a busy network) and no probing beyond the first frame: OpenCV opens one
# stream at a time (a lock round FFmpeg's open), so each open must be short, 0.3 s here against
# 1.3-2.3 s with FFmpeg's default probing, during which the other cameras' frames go unread; the
# frames read while opening are kept (and stamped once the reader has caught up, below).
FFMPEG_OPTIONS = "rtsp_transport;tcp|flags;low_delay|analyzeduration;0|probesize;32|fpsprobesize;0"


def source_kind(url: str) -> str:
    """``usb`` (an index), ``stream`` (a URL) or ``file``."""
    if url.isdigit():
        return "usb"
    return "stream" if "://" in url else "file"


class CameraReader:
    """One camera's frames into ``put`` (a merge's :meth:`put`), on a thread of its own."""

    MAX_HELD = 50      # frames held while catching up, at most
    GAP_S = 1.0        # a stream silent this long (and back) counts as an outage

    def __init__(self, camera_id: str, url: str, put, latency_s: float = 0.0, clock: Clock = SYSTEM_CLOCK,
                 read_timeout_s: float = 3.0, open_timeout_s: float = 20.0, backoff_s: float = 0.5,
                 max_backoff_s: float = 10.0, loop: bool = False):
        self.camera_id, self.url, self.put = camera_id, str(url), put
        self.kind = source_kind(self.url)
        if self.kind == "file" and not Path(self.url).is_file():
            raise FileNotFoundError(f"camera {camera_id}: {self.url}: no such video file")
        self.latency_s, self.clock = latency_s, clock
        self.read_timeout_s, self.open_timeout_s = read_timeout_s, open_timeout_s
        self.backoff_s, self.max_backoff_s, self.loop = backoff_s, max_backoff_s, loop
        self.frames = 0                 # frames handed on
        self.opens = 0                  # times the stream was opened (1 + reconnects)
        self.failures = 0               # opens that failed, reads that timed out or ended
        self.outages: list[float] = []  # seconds without frames, for each gap a reconnect closed
        self.last_frame_wall: float | None = None
        self.ended = False              # a file (not looped) played to its end
        self._recent = deque(maxlen=64)    # wall times of the last frames: the frame rate now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)

    def start(self) -> "CameraReader":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def fps(self, window_s: float = 5.0) -> float:
        """Frames per second over the last ``window_s`` of the wall clock."""
        now = self.clock.wall_s()
        recent = [w for w in self._recent if now - w <= window_s]
        return len(recent) / window_s

    def _open(self):
        import cv2

        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_OPTIONS)
        if self.kind == "usb":
            return cv2.VideoCapture(int(self.url))
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000),
                  cv2.CAP_PROP_N_THREADS, 1]   # one decoding thread: no frame-threading delay, and the cores stay with perception
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)

    def _run(self) -> None:
        import cv2

        backoff, seq = self.backoff_s, 0
        while not self._stop.is_set():
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                self.failures += 1
                if self.failures <= 3 or self.failures % 20 == 0:
                    log.warning("camera %s: %s does not open; trying again in %.1f s", self.camera_id, self.url, backoff)
                self._stop.wait(backoff)
                backoff = min(2 * backoff, self.max_backoff_s)
                continue
            self.opens += 1
            if self.opens > 1:
                log.info("camera %s: %s open again", self.camera_id, self.url)
            start = math.inf             # where pts 0 lies on the store clock: min(arrival − pts)
            wall0 = last_read = self.clock.wall_s()
            got, held, period, last_pts = False, [], 0.1, -math.inf
            while not self._stop.is_set():
                ok, image = cap.read()
                arrival = self.clock.wall_s()
                if not ok:
                    if self.kind == "file" and got:
                        if not self.loop:
                            self.ended = True    # a file played to its end: the camera has nothing more
                            cap.release()
                            return
                        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        wall0, got = arrival, False
                        continue
                    self.failures += 1
                    for p, k, img in held:      # what came before the stream stopped
                        self.put(Frame(self.camera_id, start + p - self.latency_s, k, img))
                    break
                pts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                # frames again after a reconnect (the wall clock's gap), or after a silence the stream
                # rode out (its own clock's gap: the frames the decoder held back come late, but
                # the first frame after the silence comes with the others at once)
                gap = None
                if not got and self.opens > 1 and self.last_frame_wall is not None:
                    gap = arrival - self.last_frame_wall
                elif got and math.isfinite(pts) and abs(pts - last_pts) > self.GAP_S and math.isfinite(start):
                    # the stream's clock jumped (a silence, or a discontinuity after one): the silence
                    # is from the last frame's capture to now, and the stamps start again from this
                    # frame, so one odd pts cannot move every later stamp
                    gap = max(0.0, arrival - (start + last_pts))
                    for p, k, img in held:      # what came before the jump, on the old footing
                        self.put(Frame(self.camera_id, start + p - self.latency_s, k, img))
                    held.clear()
                    start = math.inf
                if gap is not None:
                    self.outages.append(gap)
                    log.warning("camera %s: frames again after %.1f s", self.camera_id, gap)
                got = True
                backoff = self.backoff_s
                self.frames += 1
                self.last_frame_wall = arrival
                self._recent.append(arrival)
                if self.kind == "file":       # a file plays at its own pace
                    self.clock.sleep(wall0 + pts - arrival)
                    self.put(Frame(self.camera_id, wall0 + pts, seq, image))
                elif self.kind == "usb" or not math.isfinite(pts) or pts < 0:
                    self.put(Frame(self.camera_id, arrival - self.latency_s, seq, image))
                else:
                    start = min(start, arrival - pts)
                    held.append((pts, seq, image))
                    # caught up (this read waited for the network) or holding enough: stamp and hand on
                    if arrival - last_read > 0.3 * period or len(held) >= self.MAX_HELD:
                        for p, k, img in held:
                            self.put(Frame(self.camera_id, start + p - self.latency_s, k, img))
                        held.clear()
                    if 0 < pts - last_pts < 1.0:
                        period = 0.9 * period + 0.1 * (pts - last_pts)
                    last_pts = pts
                last_read = self.clock.wall_s()
                seq += 1
            cap.release()
            if not self._stop.is_set():
                log.warning("camera %s: no frame for %.1f s; reconnecting", self.camera_id, self.read_timeout_s)
                self._stop.wait(backoff if not got else 0.0)
