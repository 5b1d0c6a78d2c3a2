"""Where the runtime's time goes, stage by stage, on a recorded run replayed as fast as it goes.

The person model runs one frame at a time here (``perception_streams=1``) so that each stage's wall
time lands in the loop that calls it and the stages add up to the whole; the last line is the
replay with the runtime's own settings, whose real-time factor is the one to quote.

    .venv/bin/python benchmarks/bench_runtime_stages.py runs/v3/busy_store [--until 60] [--set motion_threshold=0] [--only-plain] [--json out.json]

Per stream second: reading the recording (video decoding, CSV, the merge), the person model's
input (letterbox), the model itself, its output (NMS), the views (floor points, wrists, looks),
the tick (association, tracks, identity, reaches), the load cells (step detection, attribution,
fusion, carts) and the rest. Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.paths import home  # noqa: E402
from runtime import perception, pipeline  # noqa: E402
from runtime.config import RuntimeConfig  # noqa: E402
from runtime.pipeline import Runtime  # noqa: E402
from runtime.sources import ReplaySource  # noqa: E402
from runtime.store import load_store  # noqa: E402

STAGES = ["read", "prepare", "model", "nms", "views", "tick", "weights", "gates", "rest"]


def _timed(spent: dict, name: str, fn):
    def wrapper(*a, **k):
        w = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[name] += time.perf_counter() - w
    return wrapper


def staged(run: Path, until: float, cfg: RuntimeConfig) -> dict:
    spent: dict[str, float] = defaultdict(float)
    rt = Runtime(load_store(run / "store.yaml"), cfg)
    det = rt.detector
    det._prepare = _timed(spent, "prepare", det._prepare)
    det._run = _timed(spent, "model", det._run)
    orig_decode, orig_views = perception.decode, pipeline.person_views
    perception.decode = _timed(spent, "nms", orig_decode)
    pipeline.person_views = _timed(spent, "views", orig_views)
    orig_tick = rt._tick
    rt._tick = _timed(spent, "tick", orig_tick)
    rt._weight = _timed(spent, "weights", rt._weight)
    rt._gate = _timed(spent, "gates", rt._gate)
    it = iter(ReplaySource(run))
    n, t_last = 0, 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        while True:
            w = time.perf_counter()
            msg = next(it, None)
            spent["read"] += time.perf_counter() - w
            if msg is None or msg.t > until:
                break
            rt.process(msg)
            n, t_last = n + 1, msg.t
        rt.finish()
    finally:
        rt.close()
        perception.decode, pipeline.person_views = orig_decode, orig_views
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    named = sum(spent[s] for s in STAGES if s != "rest")
    spent["rest"] = wall - named
    return {"stream_s": t_last, "messages": n, "wall_s": wall, "cpu_s": cpu, "rtf": t_last / wall,
            "frames_processed": rt.stats["frames_processed"], "frames_still": rt.stats["frames_still"],
            "per_stream_s_ms": {s: 1000 * spent[s] / t_last for s in STAGES}}


def plain(run: Path, until: float, cfg: RuntimeConfig) -> dict:
    rt = Runtime(load_store(run / "store.yaml"), cfg)
    wall, cpu, t_last = time.perf_counter(), time.process_time(), 0.0
    try:
        for msg in ReplaySource(run):
            if msg.t > until:
                break
            rt.process(msg)
            t_last = msg.t
        rt.finish()
    finally:
        rt.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"stream_s": t_last, "wall_s": wall, "cpu_s": cpu, "rtf": t_last / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a recorded run directory (a suite's scenario folder)")
    ap.add_argument("--until", type=float, default=60.0, help="stream seconds to replay")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="runtime settings for both replays, e.g. perception_hz=5")
    ap.add_argument("--only-plain", action="store_true", help="skip the stage by stage replay")
    args = ap.parse_args()
    base = RuntimeConfig().with_models_from(home())
    over = {k: type(getattr(base, k))(v) for k, v in (s.split("=", 1) for s in args.set)}
    base = dataclasses.replace(base, **over)
    pl = plain(args.run, args.until, base)
    st = None
    if not args.only_plain:
        st = staged(args.run, args.until, dataclasses.replace(base, perception_streams=1, perception_batch=1))
        print(f"{args.run}: first {st['stream_s']:.1f} stream s, {st['frames_processed']} frames for the person model, "
              f"{st['frames_still']} of them still (their last detections stand)")
        print(f"{'stage':<10} {'ms per stream s':>16} {'share':>6}")
        total = sum(st["per_stream_s_ms"].values())
        for s in STAGES:
            v = st["per_stream_s_ms"][s]
            print(f"{s:<10} {v:16.0f} {v / total:6.0%}")
        print(f"{'whole':<10} {total:16.0f}   (one stream: RTF {st['rtf']:.2f}, CPU {st['cpu_s'] / st['stream_s']:.2f} s per stream s)")
    print(f"runtime's own settings (streams={base.perception_streams}): "
          f"RTF {pl['rtf']:.2f}, CPU {pl['cpu_s'] / pl['stream_s']:.2f} s per stream s, {pl['stream_s']:.1f} stream s")
    if args.json:
        args.json.write_text(json.dumps({"run": str(args.run), "settings": over,
                                         "staged": st, "plain": pl}, indent=1))


if __name__ == "__main__":
    main()
