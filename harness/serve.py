"""``storetwin serve``: the twin as a store. A recorded run is played on the wall clock over the
protocols a store's devices speak: every camera as an H.264 RTSP stream (GStreamer's RTSP server),
every load-cell reading and gate scan on MQTT (mosquitto), as ``storetwin live`` (or any other
consumer) would meet them in a store.

The recording's time ``t`` becomes the store clock ``t0 + t`` (epoch seconds; ``t0`` is when the
play starts): the payloads carry it, and each frame is pushed to the RTSP server at that moment.
The cameras' frames are encoded (H.264) before the play starts, as each camera's own chip encodes
them in a store, so the play itself costs this machine little beside the runtime it feeds.

Every frame is stamped with its capture, as a camera's own clock stamps it (RTP time): a frame this
machine hands to the server late, when it is busy, keeps its stamp. Impairments
(:class:`Impairments`, all off by default) make the store less kind: cameras whose clocks run behind
the store's (a fixed delay per camera, drawn up to ``clock_offset_s``, in the frames' stamps and
their sending) with ``jitter_s`` more or less on each frame, a share of frames dropped, one camera dark
for a while, the broker restarted once, and MQTT messages duplicated, reordered or lost (load
cells only: a lost gate scan is a different failure). What was done, and when, goes in the
summary (``serve.json`` with ``report=``).
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tqdm import tqdm

from harness.servers import EncodedStream, Mosquitto, RtspServer, encode_h264
from runtime.devices import QOS, encode, encode_readings
from runtime.messages import Frame, GateEvent, WeightSample
from runtime.sources import ReplaySource
from runtime.store import load_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Impairments:
    clock_offset_s: float = 0.0      # each camera's frames later by a fixed delay drawn in [0, this]
    jitter_s: float = 0.0            # and each frame by a further uniform ±this
    frame_drop: float = 0.0          # share of frames never sent
    dark_camera: str | None = None   # this camera sends nothing ...
    dark_at_s: float = 0.0           # ... from this recording time ...
    dark_for_s: float = 0.0          # ... for this long
    broker_restart_at_s: float | None = None   # the broker is stopped and started at this recording time
    duplicate: float = 0.0           # share of MQTT messages sent twice
    reorder: float = 0.0             # share of MQTT messages sent after the one that follows them
    lose_cells: float = 0.0          # share of load-cell messages never sent
    seed: int = 0

    def __post_init__(self) -> None:
        for f in ("frame_drop", "duplicate", "reorder", "lose_cells"):
            v = getattr(self, f)
            if not 0 <= v <= 1:
                raise ValueError(f"impair.{f}={v}: expected a share between 0 and 1")
        for f in ("clock_offset_s", "jitter_s", "dark_at_s", "dark_for_s"):
            if not getattr(self, f) >= 0:
                raise ValueError(f"impair.{f}={getattr(self, f)}: expected seconds ≥ 0")

    @classmethod
    def from_strings(cls, d: dict[str, str]) -> "Impairments":
        kw = {}
        types = {f.name: f.type for f in fields(cls)}
        for k, v in d.items():
            if k not in types:
                raise ValueError(f"impair.{k}: expected one of {', '.join(types)}")
            if k == "dark_camera":
                kw[k] = v
                continue
            try:
                kw[k] = int(v) if k == "seed" else float(v)
            except ValueError:
                raise ValueError(f"impair.{k}={v}: expected a number") from None
        return cls(**kw)


def serve(recorded: str | Path, rtsp_port: int = 8554, broker_port: int = 1883, prefix: str = "store",
          start_in_s: float = 2.0, impair: Impairments = Impairments(), devices_out: str | Path | None = None,
          report: str | Path | None = None, stop: threading.Event | None = None, repeat: int = 1,
          linger_s: float = 3.0, batch_s: float = 0.1) -> dict:
    """Play ``recorded`` (a run folder with ``streams/`` and ``store.yaml``) over RTSP and MQTT on
    servers started here, ``repeat`` times back to back (a soak); returns ``linger_s`` after it has
    been played (a consumer that lags behind gets the last messages), or when ``stop`` is set.
    A cell's readings go out together every ``batch_s`` (``{"readings": [...]}``, as a board that
    samples at 80 Hz would send them; 0: one message per reading)."""
    if not (isinstance(repeat, int) and repeat >= 1):
        raise ValueError(f"repeat={repeat}: expected a whole number ≥ 1")
    run = Path(recorded)
    if not (run / "store.yaml").is_file():
        raise FileNotFoundError(f"recorded={run}: not a run folder (expected store.yaml and streams/)")
    store = load_store(run / "store.yaml")
    replay = ReplaySource(run, cameras=None, weights=False)
    cams = [store.camera_by_id[c] for c in replay.cameras if c in store.camera_by_id]
    if impair.dark_camera is not None and impair.dark_camera not in {c.id for c in cams}:
        raise ValueError(f"impair.dark_camera={impair.dark_camera}: expected one of {', '.join(c.id for c in cams)}")
    stop = stop or threading.Event()
    period = recording_s(run) + 2.0       # one pass, and a quiet store between passes
    rng = random.Random(impair.seed)
    delay = {c.id: rng.uniform(0, impair.clock_offset_s) for c in cams}
    broker = Mosquitto(broker_port).start()
    rtsp = None
    encoded: list[_Camera] = []
    events: list[dict] = []
    try:
        fps = {c.id: recorded_fps(run, c.id, c.fps) for c in cams}
        w, h = cams[0].resolution
        total = sum(_frame_count(run, c.id) for c in cams)
        with tqdm(total=total, desc="encoding the cameras (H.264, as their own chips would)", unit="frame",
                  disable=None) as bar, ThreadPoolExecutor(max_workers=2) as pool:
            encoded = list(pool.map(lambda c: _encode(run, c, fps[c.id], delay[c.id], impair, bar), cams))
        rtsp = RtspServer([{"id": c.id, "width": c.resolution[0], "height": c.resolution[1], "fps": fps[c.id],
                            "codec": "h264"} for c in cams]
                          + [{"id": PROBE, "width": w, "height": h, "fps": fps[cams[0].id]}], port=rtsp_port)
        latency = measure_latency(rtsp, w, h, fps[cams[0].id])
        log.warning("the streams' delay from capture to a reader's frame, measured: %.3f s", latency)
        if devices_out is not None:
            write_devices(Path(devices_out), store.name, broker.port, prefix,
                          {c.id: (rtsp.url(c.id), round(latency, 3)) for c in cams})
        t0 = time.time() + start_in_s
        log.warning("serving %s: %d cameras at rtsp://127.0.0.1:%d/<camera>, cells and gates on mqtt://127.0.0.1:%d "
                    "(topics %s/cells/#, %s/gates/#); the recording starts at %.3f", run, len(cams), rtsp.port,
                    broker.port, prefix, prefix, t0)
        sent = {c.id: 0 for c in cams}
        threads = [threading.Thread(target=_cameras, args=(c, rtsp, t0, sent, stop, repeat, period),
                                    name=f"serve-{c.id}", daemon=True) for c in encoded]
        mqtt = _Publisher(broker, prefix, impair, batch_s)
        threads.append(threading.Thread(target=mqtt.play, args=(run, t0, stop, repeat, period), name="serve-mqtt",
                                       daemon=True))
        if impair.broker_restart_at_s is not None:
            def restart() -> None:
                if stop.wait(max(0.0, t0 + impair.broker_restart_at_s - time.time())):
                    return
                at = time.time()
                down = broker.restart()
                events.append({"event": "broker restart", "wall": round(at, 3), "t": round(at - t0, 3), "down_s": round(down, 3)})
                log.warning("broker restarted (down %.2f s)", down)
            threads.append(threading.Thread(target=restart, daemon=True))
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        stop.wait(linger_s)     # the last messages on their way to a consumer that lags behind
        summary = {"recorded": str(run), "t0": t0, "repeat": repeat, "period_s": period, "latency_s": round(latency, 3),
                   "cameras": {c.id: {"url": rtsp.url(c.id), "delay_s": round(delay[c.id], 3),
                                                                      "frames_sent": sent[c.id]} for c in cams},
                   "broker": {"port": broker.port, "prefix": prefix, "published": mqtt.published,
                              "readings": mqtt.readings, "scans": mqtt.scans, "lost": mqtt.lost,
                              "duplicated": mqtt.duplicated, "reordered": mqtt.reordered},
                   "impairments": asdict(impair), "events": events}
        if impair.dark_camera:
            summary["events"].append({"event": "camera dark", "camera": impair.dark_camera, "t": impair.dark_at_s,
                                      "for_s": impair.dark_for_s})
        if report is not None:
            Path(report).write_text(json.dumps(summary, indent=1))
        return summary
    finally:
        if rtsp is not None:
            rtsp.close()
        for c in encoded:
            c.close()
        broker.close()


PROBE = "probe"       # a stream of counter frames: the delay from capture to a reader's frame, measured


def recorded_fps(run: Path, cam: str, nominal: float) -> float:
    """The rate the recording holds of a camera (a recording of the perceived frames only holds fewer
    than the camera's nominal rate)."""
    ts = []
    with open(run / "streams" / f"{cam}.frames.csv", errors="replace") as f:
        for line in f:
            try:
                ts.append(float(line.split(",")[1]))
            except (ValueError, IndexError):
                pass
    d = sorted(b - a for a, b in zip(ts, ts[1:]) if b > a)
    return round(1.0 / d[len(d) // 2], 3) if d else nominal


def measure_latency(rtsp: RtspServer, width: int, height: int, fps: float, frames: int = 30) -> float:
    """The delay from a frame's push (its capture) to the runtime's camera reader returning it, on
    these servers: frames carrying a counter on the probe stream, read as the runtime reads
    (OpenCV's FFmpeg with the runtime's options); the median over ``frames``."""
    import cv2
    import numpy as np

    from runtime.cameras import CameraReader

    pushed: dict[int, float] = {}
    got: list[tuple[float, int]] = []

    def mark(k: int) -> np.ndarray:
        img = np.zeros((height, width, 3), np.uint8)
        for b in range(8):                     # the counter in eight blocks of black or white
            if k >> b & 1:
                img[: height // 4, b * width // 8:(b + 1) * width // 8] = 255
        return img

    def read(f) -> None:
        bits = f.image[: height // 4].reshape(height // 4, 8, width // 8, 3).mean(axis=(0, 2, 3)) > 127
        got.append((time.time(), int(sum(1 << b for b in range(8) if bits[b]))))

    reader = CameraReader(PROBE, rtsp.url(PROBE), read, open_timeout_s=10).start()
    try:
        for k in range(int(frames + 3 * fps)):      # a few seconds for the reader to open, then the counted frames
            pushed[k % 256] = time.time()
            rtsp.send(PROBE, mark(k % 256))
            time.sleep(1.0 / fps)
        time.sleep(1.0)
    finally:
        reader.stop()
    d = sorted(w - pushed[k] for w, k in got[-frames:] if k in pushed and w >= pushed[k])
    if not d:
        raise RuntimeError(f"{rtsp.url(PROBE)}: no frame came back from the RTSP server")
    return d[len(d) // 2]


def _frame_count(run: Path, cam: str) -> int:
    with open(run / "streams" / f"{cam}.frames.csv", errors="replace") as f:
        return max(0, sum(1 for _ in f) - 1)


def recording_s(run: Path) -> float:
    """The last time any stream of the recording reaches (from the index files, nothing decoded)."""
    last = 0.0
    for f in [*(run / "streams").glob("*.frames.csv"), run / "streams" / "weights.csv"]:
        with open(f, errors="replace") as fh:
            for line in fh:
                try:
                    last = max(last, float(line.split(",")[1 if f.name.endswith(".frames.csv") else 0]))
                except (ValueError, IndexError):
                    pass
    return last


@dataclass
class _Camera:
    """One camera's frames as they will go out: encoded ahead of time, with their times."""

    id: str
    fps: float
    still: EncodedStream          # the first frame for one key-frame interval, looped before the recording
    frames: EncodedStream         # the frames sent, in order (drops and the dark stretch left out)
    times: list[float]            # each one's capture on the recording's clock (+ the camera's delay and jitter)

    def close(self) -> None:
        self.still.close()
        self.frames.close()


def _encode(run: Path, cam, fps: float, delay_s: float, impair: Impairments, progress) -> _Camera:
    """Decide which of the camera's frames go out and when (drops, the dark stretch, delay and
    jitter), and encode them, before anything is played."""
    rng = random.Random(f"{impair.seed}/{cam.id}")
    dark = (impair.dark_at_s, impair.dark_at_s + impair.dark_for_s) if impair.dark_camera == cam.id else None
    times: list[float] = []
    first: list = []

    def sent():
        for m in ReplaySource(run, cameras=[cam.id], weights=False):
            if not isinstance(m, Frame):
                continue
            progress.update(1)
            if not first:
                first.append(m.image)
            jitter = rng.uniform(-impair.jitter_s, impair.jitter_s) if impair.jitter_s else 0.0
            if (impair.frame_drop and rng.random() < impair.frame_drop) or (dark and dark[0] <= m.t < dark[1]):
                continue
            times.append(m.t + delay_s + jitter)
            yield m.image

    w, h = cam.resolution
    frames = encode_h264(sent(), w, h, fps)
    key_int = max(1, round(fps))
    still = encode_h264([first[0]] * key_int if first else [], w, h, fps, key_int)
    return _Camera(cam.id, fps, still, frames, times)


def _cameras(c: _Camera, rtsp: RtspServer, t0: float, sent: dict, stop: threading.Event, repeat: int = 1,
             period: float = 0.0) -> None:
    for k in range(repeat):
        if stop.is_set():
            return
        _camera_pass(c, rtsp, t0 + k * period, sent, stop, preroll=k == 0)


def _camera_pass(c: _Camera, rtsp: RtspServer, t0: float, sent: dict, stop: threading.Event, preroll: bool) -> None:
    """One camera's frames at their times. Until the recording starts the camera shows its first
    frame at its rate, as a store's cameras stream all the time, so a consumer that connected
    early has its stream open when the recording starts."""
    if not c.times:
        return
    if preroll and len(c.still):       # the still store before the recording, on the camera's own beat
        n = int((t0 + c.times[0] - time.time()) * c.fps)
        for j, k in enumerate(range(n, 0, -1)):
            at = t0 + c.times[0] - k / c.fps
            if at > time.time() and stop.wait(at - time.time()):
                return
            rtsp.send(c.id, c.still[j % len(c.still)], at=at)
    for i, t in enumerate(c.times):
        at = t0 + t
        if at > time.time() and stop.wait(at - time.time()):
            return
        rtsp.send(c.id, c.frames[i], at=at)     # stamped at its capture, even when this machine hands it over late
        sent[c.id] += 1


class _Publisher:
    """The recording's load cells and gates on MQTT at their times on the store clock."""

    def __init__(self, broker: Mosquitto, prefix: str, impair: Impairments, batch_s: float = 0.1):
        from paho.mqtt import client as mqtt

        self.prefix, self.impair, self.batch_s = prefix, impair, batch_s
        self.rng = random.Random(f"{impair.seed}/mqtt")
        self.published = self.lost = self.duplicated = self.reordered = 0
        self.readings = self.scans = 0                # what the published messages carry
        self._held = None                             # a message held back to go after the next (reorder)
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="storetwin-serve")
        c.max_queued_messages_set(0)          # while the broker restarts: everything waits, nothing is lost here
        c.max_inflight_messages_set(100)
        c.reconnect_delay_set(0.2, 2)
        c.connect("127.0.0.1", broker.port, keepalive=10)
        c.loop_start()

    def _out(self, msgs: list) -> None:
        """One MQTT message (a cell's readings, or a scan), with the impairments."""
        im = self.impair
        if isinstance(msgs[0], WeightSample) and im.lose_cells and self.rng.random() < im.lose_cells:
            self.lost += 1
            return
        if self._held is None and im.reorder and self.rng.random() < im.reorder:
            self._held = msgs      # goes after the next one
            self.reordered += 1
            return
        for x in ([msgs, self._held] if self._held is not None else [msgs]):
            self._send(x)
            if im.duplicate and self.rng.random() < im.duplicate:
                self._send(x)
                self.duplicated += 1
        self._held = None

    def _send(self, msgs: list) -> None:
        m = msgs[0]
        topic, payload = encode(self.prefix, m) if len(msgs) == 1 else encode_readings(self.prefix, m.cell_id, msgs)
        self.client.publish(topic, payload, qos=QOS)
        self.published += 1
        if isinstance(m, WeightSample):
            self.readings += len(msgs)
        else:
            self.scans += 1

    def play(self, run: Path, t0: float, stop: threading.Event, repeat: int = 1, period: float = 0.0) -> None:
        batches: dict[str, list[WeightSample]] = {}
        passes = ((k, m) for k in range(repeat) for m in ReplaySource(run, cameras=()))
        try:
            for k, m in passes:
                if isinstance(m, WeightSample):
                    m = WeightSample(m.cell_id, t0 + k * period + m.t, m.grams)
                elif isinstance(m, GateEvent):
                    m = GateEvent(m.gate_id, t0 + k * period + m.t, m.account_id, m.kind)
                else:
                    continue
                wait = m.t - time.time()
                if wait > 0 and stop.wait(wait):
                    return
                if isinstance(m, GateEvent):
                    self._out([m])
                    continue
                b = batches.setdefault(m.cell_id, [])
                b.append(m)
                if m.t - b[0].t >= self.batch_s - 1e-9:
                    self._out(b)
                    batches[m.cell_id] = []
            for b in batches.values():
                if b:
                    self._out(b)
            if self._held is not None:
                self._send(self._held)
        finally:
            deadline = time.time() + 10
            while self.client.want_write() and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            self.client.disconnect()
            self.client.loop_stop()


def write_devices(path: Path, store: str, broker_port: int, prefix: str, cameras: dict[str, tuple[str, float]]) -> None:
    """A devices file for the servers of this serve (``storetwin live devices=<path>``); each
    camera's ``latency_s`` is the capture-to-delivery delay these servers were measured at
    (:func:`measure_latency`: x264 at zero latency, RTP over TCP, OpenCV's decoder)."""
    lines = [f"# The devices of {store} as `storetwin serve` serves them (written by it).", f"store: {store}",
             "broker:", "  host: 127.0.0.1", f"  port: {broker_port}", f"  prefix: {prefix}",
             "cameras:                 # latency_s: capture to delivery on these servers, measured at start"]
    lines += [f"  {c}: {{url: {u}, latency_s: {lat}}}" for c, (u, lat) in cameras.items()]
    lines += ["cells: mqtt", "gates: mqtt"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
