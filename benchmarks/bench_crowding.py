"""How often simulated shoppers come closer than a body's width: pair-seconds under 0.35 m.

    .venv/bin/python benchmarks/bench_crowding.py [--scenario busy_store] [--run RUN_DIR]

Simulates the scenario without cameras (or reads ``RUN_DIR/gt/tracks.npz``) and sums, over the
ground-truth ticks, the pairs of present shoppers whose floor positions are closer than 0.35 m.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def pair_seconds(t: np.ndarray, present: np.ndarray, xy: np.ndarray, limit_m: float = 0.35) -> tuple[float, int]:
    dt = float(np.median(np.diff(t)))
    close, pairs = 0, set()
    for k in range(len(t)):
        idx = np.flatnonzero(present[k])
        for a in range(len(idx)):
            d = np.linalg.norm(xy[k, idx[a + 1:]] - xy[k, idx[a]], axis=1)
            for b in idx[a + 1:][d < limit_m]:
                close += 1
                pairs.add((int(idx[a]), int(b)))
    return close * dt, len(pairs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="busy_store")
    ap.add_argument("--run", type=Path, default=None)
    a = ap.parse_args()
    if a.run:
        z = np.load(a.run / "gt" / "tracks.npz")
        t, present, xy = z["t"], z["present"], z["xy"]
    else:
        from harness.paths import scenario_path, store_dir
        from sim.scenario import load_scenario
        from sim.simulator import CameraConfig, SimConfig, Simulator

        sc = load_scenario(scenario_path(a.scenario), store_dir())
        sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(render=False)))
        for _ in sim.run():
            pass
        sim.close()
        t, present, xy = np.array(sim.truth.t), np.array(sim.truth.present), np.array(sim.truth.xy)
    secs, pairs = pair_seconds(t, present, xy)
    print(f"{secs:.1f} pair-seconds closer than 0.35 m, {pairs} pairs of shoppers, over {t[-1]:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
