"""Where the runtime's loop spends the wall clock at real time: a recorded run replayed at its own
pace (as `storetwin run … recorded=` does at `pacing=realtime`), each message's processing timed.
Prints, per stretch of the run, how busy the loop was, what a perception tick cost (the wait for
the person model's detections of the tick's frames, tracking, hands), and how far behind the wall
clock the messages were handled (the lag every cart update waits on).

    .venv/bin/python benchmarks/bench_runtime_loop.py runs/suite-v2/busy_store [--until 90] [--stretch-s 10]

Run it on a quiet machine: anything else on the cores shows up as lag.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from harness.paths import home  # noqa: E402
from runtime.config import RuntimeConfig  # noqa: E402
from runtime.pipeline import Runtime  # noqa: E402
from runtime.sources import ReplaySource, paced  # noqa: E402
from runtime.store import load_store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a recorded run directory")
    ap.add_argument("--until", type=float, default=1e9, help="stream seconds to replay")
    ap.add_argument("--stretch-s", type=float, default=10.0, help="report per stretch of this many stream seconds")
    args = ap.parse_args()
    rt = Runtime(load_store(args.run / "store.yaml"), RuntimeConfig().with_models_from(home()))
    rows = []      # (stream t, processing ms, lag ms)
    ticks = []     # (tick t, ms)
    tick = rt._tick

    def timed(tk):
        w = time.perf_counter()
        out = tick(tk)
        ticks.append((tk.t, (time.perf_counter() - w) * 1000))
        return out

    rt._tick = timed
    wall_t0 = time.time() + 0.5
    source = ReplaySource(args.run)
    try:
        for msg in paced(source, wall_t0):
            if msg.t > args.until:
                break
            w = time.perf_counter()
            rt.process(msg)
            rows.append((msg.t, (time.perf_counter() - w) * 1000, (time.time() - wall_t0 - msg.t) * 1000))
    finally:
        rt.close()
    a, k = np.array(rows), np.array(ticks)
    print(f"{'stream s':>12} {'loop busy':>9} {'ticks':>5} {'tick ms p50':>11} {'p95':>5} {'lag ms p50':>10} {'p95':>5} {'max':>5}")
    for s0 in np.arange(0.0, a[-1, 0], args.stretch_s):
        r = a[(a[:, 0] >= s0) & (a[:, 0] < s0 + args.stretch_s)]
        if not len(r):
            continue
        span = max(r[-1, 0] - r[0, 0], 1e-9)
        tk = k[(k[:, 0] >= s0) & (k[:, 0] < s0 + args.stretch_s), 1]
        tp = np.percentile(tk, [50, 95]) if len(tk) else (np.nan, np.nan)
        lp = np.percentile(r[:, 2], [50, 95])
        print(f"{s0:5.0f} – {s0 + args.stretch_s:<4.0f} {r[:, 1].sum() / 1000 / span:9.0%} {len(tk):5d} {tp[0]:11.0f} "
              f"{tp[1]:5.0f} {lp[0]:10.0f} {lp[1]:5.0f} {r[:, 2].max():5.0f}")


if __name__ == "__main__":
    main()
