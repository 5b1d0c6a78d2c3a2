"""The live path on the twin served as a store: `storetwin serve` (RTSP + MQTT, impairments on) feeding
`storetwin live`, measured against the replay of the same recordings.

    # live against replay on recorded scenarios, impairments on (the closing note's table)
    .venv/bin/python benchmarks/bench_live.py compare --recorded runs/p6 \
        --scenarios single_pick,group_entry,occlusion,camera_dropout,busy_store --out runs/bench-live
    # 20 SIGKILLs at random moments of a live busy_store, each followed by a restart
    .venv/bin/python benchmarks/bench_live.py crash --recorded runs/p6/busy_store --kills 20 --out runs/bench-crash
    # a looped recording for 30 minutes: resident memory and queue depths
    .venv/bin/python benchmarks/bench_live.py soak --recorded runs/p6/busy_store --minutes 30 --out runs/bench-soak
    # decoding RTSP H.264 per camera (640x480, 10 fps) and how many cameras this machine takes
    .venv/bin/python benchmarks/bench_live.py decode --recorded runs/p6/busy_store --out runs/bench-decode
    # the replay with every camera through serve's H.264 encoding and back: what the codec alone costs
    .venv/bin/python benchmarks/bench_live.py codec --recorded runs/p6 --scenarios busy_store --out runs/bench-codec

Each writes ``<out>/bench_live_<mode>.json`` and prints a table. The replay receipts are those the
recorded run's own ``out/`` holds (``storetwin run recorded=…``); "exact" compares each receipt with
the twin's true cart (``gt/carts.json``), which the runtime never sees. `storetwin serve` runs at
the lowest priority (``nice -n 19``) on the same cores as the runtime; it encodes the cameras
before the play, as a store's cameras encode on their own chips.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.servers import free_port  # noqa: E402

CLI = [sys.executable, "-m", "harness.cli"]
ENV = {**os.environ, "STORETWIN_LOG": "WARNING"}


def receipts(path: Path) -> dict[str, dict[str, int]]:
    """account → {sku: qty} of the last receipt of each account in a receipts.jsonl."""
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            out[r["account_id"]] = {x["sku"]: x["qty"] for x in r["lines"]}
    return out


def truth(run: Path) -> dict[str, dict[str, int]]:
    return {a: {k: v for k, v in c["items"].items() if v} for a, c in json.loads((run / "gt" / "carts.json").read_text()).items()}


def exact(got: dict, gt: dict) -> int:
    return sum(got.get(a) == items for a, items in gt.items())


def rss_mb(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Served:
    """`storetwin serve` and `storetwin live` as subprocesses, as a store would run them."""

    def __init__(self, run: Path, out: Path, impair: list[str], start_in_s: float = 15, repeat: int = 1,
                 live_args: list[str] = ()):
        self.out, self.store, self.live_args = out, run / "store.yaml", list(live_args)
        out.mkdir(parents=True, exist_ok=True)
        self.devices = out / "devices.yaml"
        self.serve_json = out / "serve.json"
        for f in (self.devices, self.serve_json):
            f.unlink(missing_ok=True)
        # the twin's cameras encode on this machine's cores too; in a store they encode on their own
        # chips: serve runs at the lowest priority, so the runtime has the cores first
        self.serve = subprocess.Popen(["nice", "-n", "19", *CLI, "serve", f"recorded={run}", f"rtsp_port={free_port()}",
                                       f"broker_port={free_port()}", f"start_in_s={start_in_s}", f"repeat={repeat}",
                                       f"devices_out={self.devices}", f"report={self.serve_json}", *impair],
                                      env=ENV, stdout=open(out / "serve.log", "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 900      # it encodes every camera first (a minute or two for busy_store)
        while not self.devices.is_file():
            if self.serve.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"serve did not start: {(out / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.1)
        self.lives: list[subprocess.Popen] = []

    def start_live(self) -> subprocess.Popen:
        p = subprocess.Popen([*CLI, "live", f"store={self.store}", f"devices={self.devices}",
                              f"out={self.out / 'live'}", "health_s=5", *self.live_args], env=ENV,
                             stdout=open(self.out / f"live-{len(self.lives)}.log", "w"), stderr=subprocess.STDOUT)
        self.lives.append(p)
        return p

    def finish(self, linger_s: float = 1.5) -> dict:
        self.serve.wait()
        time.sleep(linger_s)
        live = self.lives[-1]
        live.send_signal(signal.SIGTERM)
        live.wait(timeout=120)
        return json.loads(self.serve_json.read_text())


def impairments(duration_s: float, cameras: list[str], seed: int) -> list[str]:
    """The issue's set: clock offsets up to 0.2 s with ±40 ms jitter, 1 % frame drops, one camera
    dark for 5 s, one broker restart; the dark camera and both moments drawn from ``seed``."""
    rng = random.Random(seed)
    return ["impair.clock_offset_s=0.2", "impair.jitter_s=0.04", "impair.frame_drop=0.01",
            f"impair.dark_camera={rng.choice(cameras)}", f"impair.dark_at_s={round(rng.uniform(0.3, 0.5) * duration_s, 1)}",
            "impair.dark_for_s=5", f"impair.broker_restart_at_s={round(rng.uniform(0.55, 0.75) * duration_s, 1)}",
            f"impair.seed={seed}"]


def cmd_compare(a) -> dict:
    from harness.serve import recording_s

    rows = []
    for name in a.scenarios.split(","):
        run = Path(a.recorded) / name
        out = Path(a.out) / name
        cams = sorted(f.name[: -len(".frames.csv")] for f in (run / "streams").glob("*.frames.csv"))
        dur = recording_s(run)
        imp = impairments(dur, cams, a.seed) if not a.no_impair else []
        t = time.time()
        s = Served(run, out, imp, live_args=[f"max_lateness_s={a.max_lateness_s}"] if a.max_lateness_s else [])
        s.start_live()
        served = s.finish()
        info = json.loads((out / "live" / "run.json").read_text())
        health = [json.loads(x) for x in (out / "live" / "health.jsonl").read_text().splitlines()] \
            if (out / "live" / "health.jsonl").is_file() else []
        gt, rep, live = truth(run), receipts(run / "out" / "receipts.jsonl"), receipts(out / "live" / "receipts.jsonl")
        outages = [o for c in info["cameras"].values() for o in c["outages_s"]]
        lags = [h["lag_s"] for h in health if h.get("lag_s") is not None]
        rows.append({"scenario": name, "visits": len(gt), "replay_exact": exact(rep, gt), "live_exact": exact(live, gt),
                     "same_as_replay": sum(live.get(k) == v for k, v in rep.items()), "duration_s": round(dur, 1),
                     "wall_s": round(time.time() - t, 1), "crashed": s.lives[-1].returncode != 0,
                     "frames_sent": sum(c["frames_sent"] for c in served["cameras"].values()),
                     "frames_received": sum(c["frames"] for c in info["cameras"].values()),
                     "frames_dropped": sum(info["frames_dropped"].values()), "late": info["late"],
                     "mqtt_received": info["mqtt"]["received"], "mqtt_published": served["broker"]["published"],
                     "mqtt_connects": info["mqtt"]["connects"], "mqtt_outages_s": info["mqtt"].get("outages_s"),
                     "camera_outages_s": [round(o, 2) for o in outages],
                     "lag_p50_s": round(sorted(lags)[len(lags) // 2], 2) if lags else None,
                     "lag_max_s": round(max(lags), 2) if lags else None, "impairments": imp,
                     "events": served["events"]})
        r = rows[-1]
        print(f"{name:16s} visits {r['visits']:2d}  exact replay {r['replay_exact']:2d} live {r['live_exact']:2d}  "
              f"same {r['same_as_replay']:2d}  frames {r['frames_received']}/{r['frames_sent']} (dropped {r['frames_dropped']})  "
              f"mqtt {r['mqtt_received']}/{r['mqtt_published']} outages {r['mqtt_outages_s']}  cameras' outages {r['camera_outages_s']}  lag p50 {r['lag_p50_s']} max {r['lag_max_s']}  crashed {r['crashed']}",
              flush=True)
    return {"rows": rows}


def cmd_crash(a) -> dict:
    """Kills at random moments of a live run, each followed at once by a restart; then checks the
    event log: every receipt equals the sum of its visit's cart updates (no line lost or doubled
    between them), and the receipts against the replay's and the truth."""
    run, out = Path(a.recorded), Path(a.out)
    rng = random.Random(a.seed)
    s = Served(run, out, [], repeat=a.repeat)
    live = s.start_live()
    kills = []
    for k in range(a.kills):
        time.sleep(rng.uniform(a.min_up_s, a.max_up_s))
        if s.serve.poll() is not None:
            break
        live.send_signal(signal.SIGKILL)
        live.wait()
        kills.append(round(time.time(), 3))
        live = s.start_live()
    served = s.finish()
    db = sqlite3.connect(Path(a.out) / "live" / "events.sqlite")
    rows = db.execute("SELECT kind, account_id, payload FROM events WHERE kind IN ('cart_update', 'receipt') ORDER BY seq").fetchall()
    open_: dict[str, dict[str, int]] = {}
    bad = []
    visits = 0
    for kind, account, payload in rows:
        d = json.loads(payload)
        if kind == "cart_update":
            c = open_.setdefault(account, {})
            c[d["sku"]] = c.get(d["sku"], 0) + d["delta_qty"]
        else:
            visits += 1
            summed = {k: v for k, v in open_.pop(account, {}).items() if v}
            lines = {x["sku"]: x["qty"] for x in d["lines"]}
            if summed != lines:
                bad.append({"account": account, "updates": summed, "receipt": lines})
    gt, rep = truth(run), receipts(run / "out" / "receipts.jsonl")
    # per pass: the receipts of that pass's visits (an account's later receipts are later passes)
    passes: dict[str, list] = {}
    for line in (Path(a.out) / "live" / "receipts.jsonl").read_text().splitlines():
        r = json.loads(line)
        passes.setdefault(r["account_id"], []).append({x["sku"]: x["qty"] for x in r["lines"]})
    live_exact = sum(sum(c == gt.get(acc) for c in cs) for acc, cs in passes.items())
    same = sum(sum(c == rep.get(acc) for c in cs) for acc, cs in passes.items())
    items_live = sum(sum(c.values()) for cs in passes.values() for c in cs)
    items_replay = sum(sum(c.values()) for c in rep.values())
    restored = sum("restored from" in (out / f"live-{k}.log").read_text() for k in range(1, len(s.lives)))
    res = {"kills": len(kills), "restarts": len(s.lives) - 1, "restarts_that_restored": restored, "receipts": visits,
           "items_charged": items_live, "items_charged_by_replay_per_pass": items_replay, "passes": a.repeat,
           "receipts_not_equal_to_their_updates": len(bad), "bad": bad[:10], "live_exact": live_exact,
           "same_as_replay": same, "visits_served": len(gt) * a.repeat, "replay_exact_per_pass": exact(rep, gt),
           "served": served["broker"]}
    print(json.dumps({k: v for k, v in res.items() if k != "bad"}))
    return res


def cmd_soak(a) -> dict:
    from harness.serve import recording_s

    run, out = Path(a.recorded), Path(a.out)
    repeat = max(1, int(a.minutes * 60 // (recording_s(run) + 2.0)) + 1)
    s = Served(run, out, [], repeat=repeat)
    live = s.start_live()
    t0, samples = time.time(), []
    while time.time() - t0 < a.minutes * 60 and s.serve.poll() is None:
        time.sleep(10)
        samples.append({"s": round(time.time() - t0), "rss_mb": rss_mb(live.pid)})
    s.serve.send_signal(signal.SIGTERM)
    s.finish()
    health = [json.loads(x) for x in (out / "live" / "health.jsonl").read_text().splitlines()]
    return {"minutes": a.minutes, "repeat": repeat, "rss": samples,
            "held": [h["held"] for h in health], "lag_s": [h["lag_s"] for h in health],
            "frames_dropped": [h["frames_dropped"] for h in health]}


def cmd_decode(a) -> dict:
    """RTSP H.264 from the twin's server, decoded by the runtime's camera reader: CPU seconds per
    camera-second, with 1, 2, 4, 8 and 12 cameras at once (the cameras of the recording, repeated)."""
    import resource
    import threading

    from harness.servers import RtspServer
    from runtime.cameras import CameraReader
    from runtime.sources import ReplaySource
    from runtime.messages import Frame

    run = Path(a.recorded)
    cam = sorted(f.name[: -len(".frames.csv")] for f in (run / "streams").glob("*.frames.csv"))[0]
    frames = [m.image for m in ReplaySource(run, cameras=[cam], weights=False) if isinstance(m, Frame)][: int(a.seconds * 10)]
    h, w = frames[0].shape[:2]
    rows = []
    for n in (1, 2, 4, 8, 12):
        ids = [f"c{i:02d}" for i in range(n)]
        srv = RtspServer([{"id": c, "width": w, "height": h, "fps": 10} for c in ids])
        got = {c: 0 for c in ids}
        readers = [CameraReader(c, srv.url(c), lambda f, c=c: got.__setitem__(c, got[c] + 1)).start() for c in ids]
        stop = threading.Event()

        def feed():
            t = time.time() + 1.0
            k = 0
            while not stop.is_set():
                for c in ids:
                    srv.send(c, frames[k % len(frames)])
                k += 1
                t += 0.1
                time.sleep(max(0.0, t - time.time()))

        th = threading.Thread(target=feed, daemon=True)
        th.start()
        time.sleep(4)                                   # opened and flowing
        c0 = {c: got[c] for c in ids}
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
        time.sleep(a.seconds)
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.time()
        c1 = {c: got[c] for c in ids}
        stop.set()
        for r in readers:
            r.stop()
        srv.close()
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)   # this process: the readers (and the feeding)
        fps = sum(c1[c] - c0[c] for c in ids) / (t1 - t0)
        rows.append({"cameras": n, "fps_received": round(fps, 1), "fps_sent": 10 * n,
                     "cpu_s_per_s": round(cpu / (t1 - t0), 3), "cpu_ms_per_frame": round(1000 * cpu / max(1, fps * (t1 - t0)), 2)})
        print(rows[-1], flush=True)
    return {"resolution": [w, h], "rows": rows}


def cmd_codec(a) -> dict:
    """The replay of each scenario with its cameras transcoded as serve sends them (GStreamer's x264,
    one access unit a frame) and decoded again: what H.264 alone costs the receipts, apart from
    timing and protocols."""
    import shutil

    import cv2

    from harness.servers import encode_h264
    from runtime.sources import ReplaySource

    rows = []
    for name in a.scenarios.split(","):
        run, dst = Path(a.recorded) / name, Path(a.out) / name
        rec = dst / "h264"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(run, rec, ignore=shutil.ignore_patterns("out", "*.mp4", "report.html"))
        for video in sorted((run / "streams").glob("*.mp4")):
            cam = video.name[: -len(".mp4")]
            frames = (m.image for m in ReplaySource(run, cameras=[cam], weights=False) if hasattr(m, "image"))
            cap = cv2.VideoCapture(str(video))
            w, h, fps = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), cap.get(cv2.CAP_PROP_FPS) or 10
            cap.release()
            enc = encode_h264(frames, w, h, fps)
            with open(rec / "streams" / video.name, "wb") as f:     # an H.264 elementary stream: FFmpeg reads it by its content
                for k in range(len(enc)):
                    f.write(enc[k])
            enc.close()
        r = subprocess.run([*CLI, "run", f"recorded={rec}", "pacing=asfast", f"out={dst / 'replay'}"], env=ENV,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{name}: the replay failed: {r.stderr[-2000:]}")
        got = receipts(next((dst / "replay").rglob("receipts.jsonl")))
        gt, rep = truth(run), receipts(run / "out" / "receipts.jsonl")
        rows.append({"scenario": name, "visits": len(gt), "replay_exact": exact(rep, gt), "h264_replay_exact": exact(got, gt),
                     "same_as_replay": sum(got.get(k) == v for k, v in rep.items())})
        print(rows[-1], flush=True)
    return {"rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["compare", "crash", "soak", "decode", "codec"])
    ap.add_argument("--recorded", required=True, help="a suite folder (compare) or a run folder")
    ap.add_argument("--scenarios", default="single_pick,group_entry,occlusion,camera_dropout,busy_store")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-impair", action="store_true")
    ap.add_argument("--max-lateness-s", type=float, default=None, help="compare: live learns its lateness bound up to this")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=2, help="crash: passes of the recording")
    ap.add_argument("--min-up-s", type=float, default=8.0)
    ap.add_argument("--max-up-s", type=float, default=20.0)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    res = {"compare": cmd_compare, "crash": cmd_crash, "soak": cmd_soak, "decode": cmd_decode, "codec": cmd_codec}[a.mode](a)
    res["command"] = " ".join(sys.argv)
    (Path(a.out) / f"bench_live_{a.mode}.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
