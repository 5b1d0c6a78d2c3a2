"""How well clothing colour tells one camera's view of a shopper from a neighbour: the appearance
distance (Bhattacharyya) of every view the tracker gives to a track, against that track's signature
as the same camera sees it and against the nearest other track within 1 m, over a recorded run's
first seconds. The figures behind ``tracking.anchor_appearance_m`` and ``anchor_appearance``.

    .venv/bin/python benchmarks/bench_appearance.py runs/suite-v2/busy_store [--until 60]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from harness.run import run_runtime  # noqa: E402
from runtime.config import RuntimeConfig  # noqa: E402
from runtime.tracking import WorldTracker, appearance_distance  # noqa: E402


class _Done(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a recorded run directory")
    ap.add_argument("--until", type=float, default=60.0, help="stream seconds to look at")
    args = ap.parse_args()
    own: list[float] = []
    other: list[float] = []
    update = WorldTracker.update

    def measuring(self, t, obs):     # read-only: the tracker's state before it takes the tick
        if t > args.until:
            raise _Done
        tracks = {k.id: k for k in self._tracks if k.appearance is not None}
        for o in obs:
            k = tracks.get(o.track_id)
            if k is None:
                continue
            near = [j for j in tracks.values() if j is not k and np.linalg.norm(j.xy - o.xy) < 1.0]
            for v in o.views:
                own.append(appearance_distance(v.appearance, k.by_camera.get(v.camera_id, k.appearance)))
                if near:
                    other.append(min(appearance_distance(v.appearance, j.by_camera.get(v.camera_id, j.appearance))
                                     for j in near))
        return update(self, t, obs)

    WorldTracker.update = measuring
    out = "bench-appearance"
    shutil.rmtree(args.run / out, ignore_errors=True)
    try:
        run_runtime(args.run, RuntimeConfig(), "asfast", out)
    except _Done:
        pass
    finally:
        WorldTracker.update = update
        shutil.rmtree(args.run / out, ignore_errors=True)
    for name, x in (("view against its own track", own), ("against the nearest other track", other)):
        p = np.percentile(x, [5, 25, 50, 75, 95]).round(3)
        print(f"{name:34s} n={len(x):6d}  p5 {p[0]}  p25 {p[1]}  median {p[2]}  p75 {p[3]}  p95 {p[4]}")


if __name__ == "__main__":
    main()
