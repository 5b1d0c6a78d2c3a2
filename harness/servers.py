"""The real servers a store's devices talk to, started and stopped by ``storetwin serve`` and tests.

:class:`Mosquitto` runs Debian's mosquitto (the MQTT broker of load cells and gates) on a port of
this machine, with persistence on, so that the runtime's session and its queued messages survive a
broker restart as they would in a store. :class:`RtspServer` runs GStreamer's RTSP server
(``harness/rtsp_server.py``, under the system Python that has Debian's GStreamer bindings) and
hands it frames to serve as H.264 streams: raw frames it encodes as they come, or access units
encoded ahead of time by :func:`encode_h264` (``harness/h264_encoder.py``), as a camera's own
encoder chip would, so that serving a recording costs this machine no encoding while it plays.
"""
from __future__ import annotations

import getpass
import json
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
GST_PYTHON = "/usr/bin/python3"     # Debian's python3-gi and GStreamer's RTSP server bindings live there
INSTALL = "`make test` installs it (Debian packages: see DEBS in the Makefile)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, host: str = "127.0.0.1", timeout_s: float = 10.0) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


class Mosquitto:
    """A mosquitto broker on ``port`` (127.0.0.1), anonymous, persistent across :meth:`restart`."""

    def __init__(self, port: int | None = None, folder: str | Path | None = None, host: str = "127.0.0.1"):
        if MOSQUITTO is None:
            raise RuntimeError(f"mosquitto is not installed: {INSTALL}")
        self.port = port or free_port()
        self._tmp = None if folder is not None else tempfile.TemporaryDirectory(prefix="storetwin-mqtt-")
        self.dir = Path(folder if folder is not None else self._tmp.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        # run as this user (started as root, mosquitto would switch to its own user, which cannot
        # write the persistence file here: sessions would be lost on a restart)
        self.conf.write_text(f"user {getpass.getuser()}\nlistener {self.port} {host}\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {self.dir}/\nautosave_interval 1\nmax_queued_messages 100000\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            self.stop()
            raise RuntimeError(f"mosquitto did not start on port {self.port} (is the port taken?)")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self) -> float:
        """Stop and start again; the seconds it was down."""
        t = time.time()
        self.stop()
        self.start()
        return time.time() - t

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


class RtspServer:
    """GStreamer's RTSP server serving ``cameras`` (id, width, height, fps) at
    ``rtsp://127.0.0.1:<port>/<id>``; :meth:`send` hands it one camera's frame, stamped with its
    capture (``at``, epoch seconds; default now)."""

    def __init__(self, cameras: list[dict], port: int | None = None):
        self.port = port or free_port()
        self.index = {c["id"]: i for i, c in enumerate(cameras)}
        self.shape = {c["id"]: (c["height"], c["width"], 3) for c in cameras}
        self.codec = {c["id"]: c.get("codec", "raw") for c in cameras}
        script = Path(__file__).with_name("rtsp_server.py")
        check = subprocess.run([GST_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                                "from gi.repository import GstRtspServer"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"GStreamer's RTSP server is not installed for {GST_PYTHON}: {INSTALL} "
                               f"({check.stderr.strip().splitlines()[-1] if check.stderr.strip() else 'no python3-gi'})")
        self.proc = subprocess.Popen([GST_PYTHON, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.proc.stdin.write((json.dumps({"port": self.port, "cameras": cameras}) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().decode().strip()
        if line != "ready" or not wait_port(self.port):
            self.close()
            raise RuntimeError(f"the RTSP server did not start on port {self.port}")
        self._lock = threading.Lock()
        self.sent = 0

    def url(self, camera_id: str, host: str = "127.0.0.1") -> str:
        return f"rtsp://{host}:{self.port}/{camera_id}"

    def send(self, camera_id: str, image: np.ndarray | bytes, at: float = 0.0) -> None:
        """One frame of ``camera_id``: BGR pixels, or an H.264 access unit for a camera served with
        ``"codec": "h264"``; ``at`` its capture."""
        if self.codec[camera_id] == "h264":
            if not isinstance(image, (bytes, bytearray, memoryview)):
                raise ValueError(f"camera {camera_id}: served as H.264, expected an access unit's bytes")
            data = bytes(image)
        else:
            if image.shape != self.shape[camera_id]:
                raise ValueError(f"camera {camera_id}: a frame of {image.shape}, expected {self.shape[camera_id]}")
            data = np.ascontiguousarray(image).tobytes()
        with self._lock:
            self.proc.stdin.write(struct.pack("<HId", self.index[camera_id], len(data), at))
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        self.sent += 1

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()




class EncodedStream:
    """A camera's frames as H.264 access units, one per frame, in an unnamed temporary file (gone
    when closed; never a named file beside the runtime's)."""

    def __init__(self, fh, index: list[tuple[int, int]]):
        self._fh, self.index = fh, index
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> bytes:
        offset, size = self.index[k]
        with self._lock:
            self._fh.seek(offset)
            return self._fh.read(size)

    def close(self) -> None:
        self._fh.close()


def encode_h264(frames, width: int, height: int, fps: float, key_int: int | None = None) -> EncodedStream:
    """``frames`` (BGR arrays of ``width``×``height``) encoded by GStreamer's x264 (``harness/h264_encoder.py``,
    under the system Python): one access unit per frame, a key frame every ``key_int`` frames (default
    one a second)."""
    script = Path(__file__).with_name("h264_encoder.py")
    proc = subprocess.Popen([GST_PYTHON, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    cfg = {"width": width, "height": height, "fps": fps, "key_int": key_int or max(1, round(fps))}
    fed, failed = [0], []

    def feed() -> None:
        try:
            proc.stdin.write((json.dumps(cfg) + "\n").encode())
            for img in frames:
                if img.shape != (height, width, 3):
                    raise ValueError(f"a frame of {img.shape}, expected {(height, width, 3)}")
                data = np.ascontiguousarray(img).tobytes()
                proc.stdin.write(struct.pack("<I", len(data)) + data)
                fed[0] += 1
            proc.stdin.write(struct.pack("<I", 0))
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError) as e:
            failed.append(e)
            proc.stdin.close()

    th = threading.Thread(target=feed, daemon=True)
    th.start()
    fh = tempfile.TemporaryFile()
    index: list[tuple[int, int]] = []
    offset = 0
    while len(head := proc.stdout.read(4)) == 4:
        n = struct.unpack("<I", head)[0]
        fh.write(proc.stdout.read(n))
        index.append((offset, n))
        offset += n
    th.join()
    err = proc.stderr.read().decode(errors="replace").strip()
    rc = proc.wait()
    if failed or rc != 0 or len(index) != fed[0]:
        fh.close()
        why = failed[0] if failed else err.splitlines()[-1] if err else f"exit {rc}"
        raise RuntimeError(f"H.264 encoding failed: {len(index)} access units for {fed[0]} frames ({why})")
    return EncodedStream(fh, index)
