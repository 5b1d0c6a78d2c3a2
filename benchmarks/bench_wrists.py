"""How well the runtime sees the hand in the bin: over a recorded run, the wrists the person model
finds against the twin's true ones, and, at every true pick and put-back, how far from the bin the
runtime's triangulated wrists of the shopper who did it (and of the nearest other shopper) were.
The figures behind the attribution in crowds (``attribution.*``): the true hand is in the bin.

    .venv/bin/python benchmarks/bench_wrists.py runs/suite-v2/busy_store [--until 90]

Reads the run's ground truth (``gt/``) to score; the runtime itself runs as it always does.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from harness.run import run_runtime  # noqa: E402
from runtime.config import RuntimeConfig  # noqa: E402
from runtime.geometry import project  # noqa: E402
from runtime.store import load_store  # noqa: E402
from runtime.tracking import WRISTS, WorldTracker  # noqa: E402


class _Done(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a recorded run directory")
    ap.add_argument("--until", type=float, default=1e9, help="stream seconds to look at")
    args = ap.parse_args()
    store = load_store(args.run / "store.yaml")
    truth = np.load(args.run / "gt" / "tracks.npz")
    T, XY, KP, present = truth["t"], truth["xy"], truth["keypoints"], truth["present"]
    cfg = RuntimeConfig()
    ticks: list[tuple[float, list]] = []     # (t, [(floor xy, [(camera, wrists uv)], triangulated wrists)])
    update = WorldTracker.update

    def recording(self, t, obs):
        if t > args.until:
            raise _Done
        ticks.append((t, [(o.xy.copy(), [(v.camera_id, list(v.wrists_uv)) for v in o.views], list(o.wrists))
                          for o in obs]))
        return update(self, t, obs)

    WorldTracker.update = recording
    out = "bench-wrists"
    shutil.rmtree(args.run / out, ignore_errors=True)
    try:
        run_runtime(args.run, cfg, "asfast", out)
    except _Done:
        pass
    finally:
        WorldTracker.update = update
        shutil.rmtree(args.run / out, ignore_errors=True)

    def observation_of(s: int, t: float, ol: list):
        k = int(np.argmin(np.abs(T - t)))
        if not present[k, s]:
            return None, k
        best = min(ol, key=lambda o: float(np.linalg.norm(o[0] - XY[k, s])), default=None)
        if best is None or np.linalg.norm(best[0] - XY[k, s]) >= cfg.tracking.cluster_m:
            return None, k
        # and no one else stands nearer that observation (two people shoulder to shoulder)
        mine = min((q for q in range(XY.shape[1]) if present[k, q]), key=lambda q: float(np.linalg.norm(best[0] - XY[k, q])))
        return (best if mine == s else None), k

    # 1. the person model's wrists in each camera against the true ones (either side; and the side it said)
    err_any, err_side, swapped, missed = [], [], 0, 0
    for t, ol in ticks:
        for s in range(XY.shape[1]):
            o, k = observation_of(s, t, ol)
            if o is None:
                continue
            for cam_id, uvs in o[1]:
                true_uv, _ = project(store.camera_by_id[cam_id], KP[k, s][list(WRISTS)].astype(float))
                for side, uv in enumerate(uvs):
                    if uv is None:
                        missed += 1
                        continue
                    d = np.linalg.norm(true_uv - uv, axis=1)
                    err_any.append(float(d.min()))
                    err_side.append(float(d[side]))
                    swapped += int(d[1 - side] < d[side])
    # 2. at each true pick and put-back: the doer's triangulated wrist and the nearest other's
    rows = []
    for line in open(args.run / "gt" / "interactions.jsonl"):
        it = json.loads(line)
        if it["kind"] == "browse" or it["t_end"] > min(args.until, ticks[-1][0] if ticks else 0):
            continue
        b, s, te = store.bins[it["bin"]], it["shopper"], it["t_end"]
        window = [(t, ol) for t, ol in ticks if te - cfg.wrist_window_s <= t <= te + cfg.attribution.wrist_after_s]
        hand = {}
        for q in range(XY.shape[1]):
            ds = [b.distance_to(w) for t, ol in window for o in [observation_of(q, t, ol)[0]] if o is not None for w in o[2]]
            if ds:
                hand[q] = min(ds)
        others = [d for q, d in hand.items() if q != s]
        rows.append((it, hand.get(s, np.inf), min(others, default=np.inf)))

    def pct(x, q):
        return f"{np.percentile(x, q):.0f}" if len(x) else "–"
    n = len(err_any)
    print(f"wrists found in camera views: {n} ({missed} not found); pixel error to the true wrist, either side: "
          f"median {pct(err_any, 50)}, p90 {pct(err_any, 90)}; to the side the model named: median {pct(err_side, 50)}, "
          f"p90 {pct(err_side, 90)}; named the other side {swapped / max(n, 1):.0%}")
    seen = [d for _, d, _ in rows if np.isfinite(d)]
    print(f"true picks and put-backs: {len(rows)}; the doer's wrist triangulated in the window: {len(seen)}; "
          f"its distance from the bin: median {np.median(seen) if seen else float('nan'):.2f} m, "
          f"p90 {np.percentile(seen, 90) if seen else float('nan'):.2f} m (the true wrist: in the bin)")
    contested = [(it, d, o) for it, d, o in rows if np.isfinite(o) and o < 0.6]
    nearer = sum(o < d for _, d, o in contested)
    print(f"another shopper's wrist within 0.6 m of the bin: {len(contested)} of them; that wrist nearer than the doer's: {nearer}")
    print(f"\n{'t':>7}  {'kind':8} {'bin':8} {'doer':5} {'doer wrist m':>12} {'nearest other m':>15}")
    for it, d, o in rows:
        print(f"{it['t_end']:7.2f}  {it['kind']:8} {it['bin']:8} {it['account']:5} {d:12.2f} {o:15.2f}")


if __name__ == "__main__":
    main()
