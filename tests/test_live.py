"""The live path end to end on real protocols: `storetwin serve` plays a recorded tiny_pick over
GStreamer's RTSP server (H.264) and mosquitto, `storetwin live` consumes it as it would a store's
devices, and its receipts equal those of `storetwin run recorded=` on the same recording. Nothing
image-like is written by the live runtime. Also the pieces: a camera read from a video file at its
own pace, the merge's bounded frame queues, the devices file's camera entries, serve's options."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from harness.cli import main
from harness.servers import free_port
from runtime.clock import ManualClock
from runtime.messages import Frame, WeightSample
from runtime.ops.outbox import verify
from runtime.sources import LiveMerge

HERE = Path(__file__).parent
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"ftypisom", b"ftypmp4", b"RIFF", b"GIF8", b"BM6")


def _lines(receipts: list[dict]) -> list[tuple]:
    return sorted((r["account_id"], tuple(sorted((x["sku"], x["qty"]) for x in r["lines"]))) for r in receipts)


def _image_like(folder: Path) -> list[str]:
    found = []
    for f in folder.rglob("*"):
        if f.is_file():
            head = f.read_bytes()[:64]
            if f.suffix.lower() in (".mp4", ".jpg", ".jpeg", ".png", ".avi", ".mkv", ".npy", ".npz") or \
                    any(m in head for m in IMAGE_MAGIC):
                found.append(str(f))
    return found


class _Till(BaseHTTPRequestHandler):
    """The point-of-sale system's webhook: checks each delivery's signature and keeps what it got."""

    got: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = verify(SECRET, self.headers["X-Storetwin-Timestamp"], self.headers["X-Storetwin-Signature"], body, time.time())
        self.got.append((self.headers["Idempotency-Key"], ok, json.loads(body)))
        self.send_response(200 if ok else 401)
        self.end_headers()

    def log_message(self, *a):
        pass


SECRET = b"the-shared-webhook-secret"
API_TOKEN = "operator-token-for-the-live-test"


def test_live_on_the_served_twin_gives_the_receipts_of_replay(recorded, tmp_path) -> None:
    """... and serves them through its API while it runs, and delivers each once, signed, to the
    point-of-sale system's webhook."""
    run, replay_receipts = recorded
    assert replay_receipts, "the replay charged nobody: nothing to compare"
    devices, out, tmp = tmp_path / "devices.yaml", tmp_path / "live", tmp_path / "tmp"
    tmp.mkdir()
    till = ThreadingHTTPServer(("127.0.0.1", 0), _Till)
    _Till.got = []
    threading.Thread(target=till.serve_forever, daemon=True).start()
    api_port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "STORETWIN_LOG": "WARNING", "STORETWIN_WEBHOOK_SECRET": SECRET.decode(),
           "STORETWIN_TOKENS": f"ana:operator:{API_TOKEN}"}
    cli = [sys.executable, "-m", "harness.cli"]
    serve = subprocess.Popen([*cli, "serve", f"recorded={run}", f"rtsp_port={free_port()}", f"broker_port={free_port()}",
                              "start_in_s=12", f"devices_out={devices}", f"report={tmp_path / 'serve.json'}"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    live = None
    try:
        deadline = time.time() + 30
        while not devices.is_file():
            assert serve.poll() is None, f"serve stopped: {serve.stdout.read()}"
            assert time.time() < deadline, "serve did not start its servers"
            time.sleep(0.1)
        live = subprocess.Popen([*cli, "live", "store=tiny_unit", f"devices={devices}", f"out={out}", "health_s=2",
                                 f"api_port={api_port}", f"webhook=http://127.0.0.1:{till.server_port}/receipts",
                                 "webhook_carts=true"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        serve_out, _ = serve.communicate(timeout=90)
        assert serve.returncode == 0, serve_out
        time.sleep(1.0)                   # the merge's lateness bound and the last messages on their way
        api = httpx.get(f"http://127.0.0.1:{api_port}/api/receipts", headers={"Authorization": f"Bearer {API_TOKEN}"})
        health = httpx.get(f"http://127.0.0.1:{api_port}/api/health", headers={"Authorization": f"Bearer {API_TOKEN}"})
        live.send_signal(signal.SIGTERM)
        live_out, _ = live.communicate(timeout=60)
    finally:
        for p in (serve, live):
            if p is not None and p.poll() is None:
                p.kill()
    till.shutdown()
    assert live.returncode == 0, live_out
    receipts = [json.loads(x) for x in (out / "receipts.jsonl").read_text().splitlines()]
    assert _lines(receipts) == _lines(replay_receipts), live_out
    assert _lines(api.json()) == _lines(receipts), "the API serves the receipts while the store runs"
    published = health.json()["published"]
    assert published.get("track", 0) > 10 and published.get("cart_update", 0) >= 1, published   # to the dashboard
    assert [ok for _, ok, _ in _Till.got] == [True] * len(_Till.got), "each delivery signed right"
    assert len({k for k, _, _ in _Till.got}) == len(_Till.got), "each receipt and cart update delivered once"
    assert _lines([b for k, _, b in _Till.got if k.startswith("receipt-")]) == _lines(receipts)
    carts: dict = {}                  # webhook_carts=true: the cart updates add up to each receipt
    for k, _, b in _Till.got:
        if k.startswith("cart-update-"):
            cart = carts.setdefault(b["account_id"], {})
            cart[b["sku"]] = cart.get(b["sku"], 0) + b["delta_qty"]
    assert carts and {a: {s: q for s, q in c.items() if q} for a, c in carts.items()} == \
        {r["account_id"]: {ln["sku"]: ln["qty"] for ln in r["lines"]} for r in receipts}
    info = json.loads((out / "run.json").read_text())
    served = json.loads((tmp_path / "serve.json").read_text())
    for cam, c in info["cameras"].items():
        assert c["frames"] >= 0.9 * served["cameras"][cam]["frames_sent"], (cam, c, live_out[:3000])
    assert info["mqtt"]["received"] == served["broker"]["published"] and not info["mqtt"]["bad"]
    assert info["mqtt"]["taken"] == served["broker"]["readings"] + served["broker"]["scans"], "every reading and scan"
    assert (out / "health.jsonl").read_text().strip(), "no health line was logged"
    # privacy: frames lived in memory only
    assert sorted(p.name for p in out.iterdir()) == ["cart_updates.jsonl", "events.sqlite", "health.jsonl", "live.lock",
                                                     "receipts.jsonl", "run.json", "tracks.jsonl"]
    assert _image_like(out) == [] and _image_like(tmp) == []
    assert "Traceback" not in live_out


def test_killed_and_started_again_the_live_runtime_loses_and_doubles_no_cart_line(recorded, tmp_path) -> None:
    """SIGKILL right after the pick reached the cart, started again at once on the same folder:
    the open cart, the shelf stock and the shopper come back from the event log (the cells' and
    gates' messages meanwhile wait in the broker's persistent session), and the receipt is the
    replay's, charged once."""
    import sqlite3

    run, replay_receipts = recorded
    devices, out = tmp_path / "devices.yaml", tmp_path / "live"
    cli = [sys.executable, "-m", "harness.cli"]
    env = {**os.environ, "STORETWIN_LOG": "WARNING"}
    serve = subprocess.Popen([*cli, "serve", f"recorded={run}", f"rtsp_port={free_port()}", f"broker_port={free_port()}",
                              "start_in_s=12", f"devices_out={devices}"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    procs = [serve]
    logs = []

    def start_live():
        p = subprocess.Popen([*cli, "live", "store=tiny_unit", f"devices={devices}", f"out={out}", "health_s=2"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(p)
        return p

    try:
        deadline = time.time() + 30
        while not devices.is_file():
            assert serve.poll() is None and time.time() < deadline, "serve did not start its servers"
            time.sleep(0.1)
        live = start_live()
        updates = out / "cart_updates.jsonl"
        deadline = time.time() + 60
        while not (updates.is_file() and updates.read_text().strip()):
            assert time.time() < deadline and serve.poll() is None, "no cart update before the end of the recording"
            time.sleep(0.05)
        live.send_signal(signal.SIGKILL)
        logs.append(live.communicate(timeout=10)[0])
        live = start_live()
        serve_out, _ = serve.communicate(timeout=90)
        assert serve.returncode == 0, serve_out
        time.sleep(1.0)
        live.send_signal(signal.SIGTERM)
        logs.append(live.communicate(timeout=60)[0])
        assert live.returncode == 0, logs[-1]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert "restored from" in logs[-1], logs[-1]
    receipts = [json.loads(x) for x in (out / "receipts.jsonl").read_text().splitlines()]
    assert _lines(receipts) == _lines(replay_receipts), logs
    db = sqlite3.connect(out / "events.sqlite")
    for r in receipts:
        rows = db.execute("SELECT payload FROM events WHERE kind = 'cart_update' AND account_id = ?", (r["account_id"],))
        total: dict[str, int] = {}
        for (payload,) in rows:
            d = json.loads(payload)
            total[d["sku"]] = total.get(d["sku"], 0) + d["delta_qty"]
        assert {k: v for k, v in total.items() if v} == {x["sku"]: x["qty"] for x in r["lines"]}, "every update once"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_event_log_drops_a_line_a_crash_cut_and_copies_what_was_committed(tmp_path) -> None:
    from runtime.eventlog import EventLog
    from runtime.messages import CartUpdate

    log = EventLog(tmp_path)
    for k in range(3):
        log.append(CartUpdate("a", "cola", 1, float(k), float(k), 0.0, 1.0, update_id=f"u{k}"))
    log.close()
    f = tmp_path / "cart_updates.jsonl"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:1]) + "\n" + lines[1][:20])     # the copy cut short by a crash
    log = EventLog(tmp_path)
    log.close()
    assert f.read_text().splitlines() == lines, "the cut line is gone and the committed ones are copied again"
    assert EventLog(tmp_path).open_carts() == {"a": {"cola": 3}}


def test_a_camera_from_a_video_file_plays_at_its_own_pace(recorded) -> None:
    from runtime.cameras import CameraReader

    run, _ = recorded
    got = []
    r = CameraReader("cam_01", str(run / "streams" / "cam_01.mp4"), got.append).start()
    t = time.time()
    while not r.ended and time.time() - t < 30:
        time.sleep(0.1)
    r.stop()
    n = sum(1 for _ in open(run / "streams" / "cam_01.frames.csv")) - 1
    assert r.ended and len(got) == n and r.frames == n
    stamps = np.array([f.t for f in got])
    assert np.all(np.diff(stamps) > 0) and abs(np.median(np.diff(stamps)) - 0.1) < 0.01, "10 fps, in order"
    assert time.time() - t >= 0.9 * (stamps[-1] - stamps[0]), "played on the wall clock, not as fast as it decodes"


def test_a_camera_that_goes_quiet_and_comes_back_is_timed_and_stamped_right() -> None:
    """Through GStreamer's RTSP server: a camera silent for 2.5 s. The reader rides it out, times the
    outage from the stream's own clock, and stamps the frames after it at their capture, not where
    a frame count would put them."""
    from harness.servers import RtspServer
    from runtime.cameras import CameraReader

    srv = RtspServer([{"id": "c", "width": 160, "height": 120, "fps": 10}])
    got, pushed = [], {}
    r = CameraReader("c", srv.url("c"), lambda f: got.append((time.time(), f.t, int(f.image[60, 80, 0])))).start()
    img = np.zeros((120, 160, 3), np.uint8)
    try:
        for k in range(70):
            if not 30 <= k < 55:
                img[:] = 3 * k
                pushed[3 * k] = time.time()
                srv.send("c", img)
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        r.stop()
        srv.close()
    assert len(r.outages) == 1 and 2.4 <= r.outages[0] <= 3.0, r.outages
    after = [(t, pushed[v]) for _, t, v in got if v in pushed and v >= 3 * 56]
    assert after and all(abs(t - p) < 0.5 for t, p in after), "stamped at capture (within the stream's latency)"


def test_a_stream_that_never_opens_is_retried_with_backoff(caplog) -> None:
    from runtime.cameras import CameraReader

    r = CameraReader("cam_01", f"rtsp://127.0.0.1:{free_port()}/cam_01", lambda f: None, backoff_s=0.05,
                     max_backoff_s=0.2, open_timeout_s=0.5).start()
    time.sleep(1.5)
    r.stop()
    assert r.opens == 0 and r.failures >= 3, "nobody listens: refused, tried again, and again"


def test_a_stream_of_garbage_bytes_is_counted_and_retried_never_taken(tmp_path) -> None:
    """A camera URL whose server answers with garbage: the reader counts the failed opens, tries
    again with backoff, and hands on nothing; the process goes on."""
    import socket
    import threading

    from runtime.cameras import CameraReader

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port, stop = srv.getsockname()[1], threading.Event()

    def garbage():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            try:
                conn.sendall(bytes(range(256)) * 64)
            except OSError:
                pass
            conn.close()

    threading.Thread(target=garbage, daemon=True).start()
    got = []
    for url in (f"rtsp://127.0.0.1:{port}/cam_01", f"http://127.0.0.1:{port}/cam_01.mjpg"):
        r = CameraReader("cam_01", url, got.append, backoff_s=0.05, max_backoff_s=0.2, open_timeout_s=1.0,
                         read_timeout_s=1.0).start()
        time.sleep(2.5)
        r.stop()
        assert r.failures >= 2 and r.frames == 0, url
    stop.set()
    srv.close()
    assert got == []


def test_a_camera_s_oldest_waiting_frame_makes_way_when_perception_falls_behind() -> None:
    clock = ManualClock(100.0)
    m = LiveMerge(lateness_s=0.1, clock=clock, max_frames=3)
    img = np.zeros((2, 2, 3), np.uint8)
    for k in range(5):
        m.put(Frame("cam_01", 99.0 + 0.1 * k, k, img))
    m.put(WeightSample("U/0/0", 99.0, 1.0))
    assert m.frames_dropped == {"cam_01": 2} and m.depth == 4
    out = m.poll()
    assert [type(x).__name__ for x in out] == ["WeightSample", "Frame", "Frame", "Frame"]
    assert [x.seq for x in out[1:]] == [2, 3, 4], "the newest frames stay, in order; readings are never dropped"
    for k in range(5):        # frames still within the bound wait for it, however many: none is dropped
        m.put(Frame("cam_01", 99.95 + 0.01 * k, 10 + k, img))
    assert m.frames_dropped == {"cam_01": 2} and m.depth == 5


def test_the_devices_file_takes_a_camera_s_latency(tmp_path) -> None:
    from runtime.devices import load_devices
    from runtime.store import SpecError, load_store

    from harness.paths import store_dir

    store = load_store(store_dir() / "tiny_unit.yaml")
    f = tmp_path / "d.yaml"
    f.write_text("cameras:\n  cam_01: {url: 'rtsp://h/c1', latency_s: 0.2}\n  cam_02: rtsp://h/c2\n")
    d = load_devices(f, store)
    assert d.cameras == {"cam_01": "rtsp://h/c1", "cam_02": "rtsp://h/c2"} and d.latency_s == {"cam_01": 0.2}
    f.write_text("cameras:\n  cam_01: {url: 'rtsp://h/c1', latency_s: -1}\n")
    with pytest.raises(SpecError, match="cameras.cam_01.latency_s"):
        load_devices(f, store)
    f.write_text("cameras:\n  cam_01: {url: 'rtsp://h/c1', delay: 1}\n")
    with pytest.raises(SpecError, match="cameras.cam_01.delay"):
        load_devices(f, store)


def test_serve_refuses_bad_options_in_one_line(recorded, capsys) -> None:
    run, _ = recorded
    assert main(["serve", f"recorded={run}", "impair.frame_drop=2"]) == 2
    assert "impair.frame_drop=2.0: expected a share between 0 and 1" in capsys.readouterr().err
    assert main(["serve", f"recorded={run}", "impair.flicker=1"]) == 2
    assert "expected one of" in capsys.readouterr().err
    assert main(["serve", f"recorded={run}", "impair.dark_camera=cam_99"]) == 2
    assert "impair.dark_camera=cam_99: expected one of cam_01" in capsys.readouterr().err
    assert main(["serve", f"recorded={run.parent / 'nothing'}"]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["live", "store=tiny_unit"]) == 2
    assert "missing devices, out=" in capsys.readouterr().err
    assert main(["live", f"replay={run.parent / 'nothing'}", f"out={run.parent / 'live-bad'}"]) == 2
    assert "no store.yaml there (expected a recorded run's folder)" in capsys.readouterr().err
    assert main(["live", f"replay={run}", "devices=conf/devices/x.yaml", f"out={run.parent / 'live-bad'}"]) == 2
    assert "replay= and devices= both given" in capsys.readouterr().err
    assert main(["live", f"replay={run}", f"out={run.parent / 'live-bad'}", "webhook_carts=true"]) == 2
    assert "webhook_carts=true: expected true or false, with webhook=<url>" in capsys.readouterr().err
    assert not (run.parent / "live-bad").exists(), "nothing written for a refused start"
    assert main(["serve", f"recorded={run}", "repeat=two"]) == 2
    assert "repeat=two: expected a whole number" in capsys.readouterr().err
    devices = run.parent / "devices.yaml"
    devices.write_text("cameras: {}\ncells: mqtt\ngates: mqtt\nbroker: {host: 127.0.0.1, port: 1}\n")
    out = run.parent / "live-bad"
    assert main(["live", "store=tiny_unit", f"devices={devices}", f"out={out}", "lateness_s=soon"]) == 2
    assert "lateness_s=soon: expected seconds" in capsys.readouterr().err
    assert main(["live", "store=tiny_unit", f"devices={devices}", f"out={out}", "max_lateness_s=0.1"]) == 2
    assert "max_lateness_s=0.1: expected seconds ≥ lateness_s=0.3" in capsys.readouterr().err
    assert not out.exists(), "nothing written for a run refused"


def test_a_gate_scan_delivered_twice_is_decided_once_even_across_a_restart(tmp_path) -> None:
    from harness.paths import store_dir
    from runtime.config import RuntimeConfig
    from runtime.messages import GateEvent
    from runtime.pipeline import Runtime
    from runtime.store import load_store

    store = load_store(store_dir() / "tiny_unit.yaml")
    cfg = RuntimeConfig(sensing="weight_only")
    enter, leave = GateEvent("gate_in", 1.0, "a1", "enter"), GateEvent("gate_out", 9.0, "a1", "exit")
    rt = Runtime(store, cfg, tmp_path)
    out = rt.run([enter, enter, leave, leave])
    assert [type(m).__name__ for m in out] == ["Receipt"] and rt.stats["dropped"] == {"gate scan decided before (delivered again)": 2}
    rt = Runtime(store, cfg, tmp_path, restore=True)      # the broker delivers the exit once more after a restart
    assert rt.run([leave]) == []
    assert len((tmp_path / "receipts.jsonl").read_text().splitlines()) == 1
