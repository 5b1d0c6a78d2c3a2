"""Where the full simulator's time goes on a busy store: a timer around each stage of the loop.

    .venv/bin/python benchmarks/bench_sim_profile.py [--scenario busy_store] [--window-s 30] [--json out.json]

Runs the full simulator (every camera, per-frame ground truth) over the first ``--window-s``
simulated seconds and reports, per stage, the wall seconds spent and the share of the run:
physics, shoppers, load cells, the per-tick ground truth, the scene update for the cameras
(products, shoppers' meshes, lights), pyrender's colour/depth pass (drawing, and reading the
pixels back), the person-mask pass, the lens blur and distortion, and each frame's boxes and
keypoints. Stages nest (a pass is inside the render), so the table gives each its own time
(its total less the stages inside it).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import cv2  # noqa: E402
import pyrender  # noqa: E402
import pyrender.renderer as prr  # noqa: E402

import sim.simulator as simmod  # noqa: E402
import twin.renderer as trr  # noqa: E402
from harness.paths import scenario_path, store_dir  # noqa: E402
from runtime.messages import Frame  # noqa: E402
from sim.groundtruth import GroundTruth  # noqa: E402
from sim.loadcell import LoadCellBank  # noqa: E402
from sim.scenario import load_scenario  # noqa: E402
from sim.shoppers import Shopper  # noqa: E402
from sim.simulator import SimConfig, Simulator  # noqa: E402
from sim.world import PhysicsWorld  # noqa: E402
from twin.renderer import StoreRenderer  # noqa: E402

TOTAL: dict[str, float] = defaultdict(float)   # inclusive seconds per stage
CHILD: dict[str, float] = defaultdict(float)   # seconds of nested stages, per parent
CALLS: dict[str, int] = defaultdict(int)
_STACK: list[str] = []


def _timed(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        _STACK.append(name)
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            dt = time.perf_counter() - t0
            _STACK.pop()
            TOTAL[name] += dt
            CALLS[name] += 1
            if _STACK:
                CHILD[_STACK[-1]] += dt
    return wrapper


def _offscreen_render(orig):
    def render(self, scene, flags=pyrender.RenderFlags.NONE, seg_node_map=None):
        name = "pyrender: person-mask pass" if flags & pyrender.RenderFlags.SEG else "pyrender: colour + depth pass"
        return _timed(name, orig)(self, scene, flags=flags, seg_node_map=seg_node_map)
    return render


def instrument() -> None:
    for cls, meth, name in [
        (PhysicsWorld, "step", "physics (pybullet step)"),
        (Shopper, "tick", "shoppers (behaviour, skeleton)"),
        (LoadCellBank, "step", "load cells"),
        (GroundTruth, "record_tick", "ground truth per tick"),
        (Simulator, "scene_state", "scene state for the cameras"),
        (StoreRenderer, "_sync_products", "scene update: products"),
        (StoreRenderer, "_sync_shoppers", "scene update: shoppers' meshes"),
        (StoreRenderer, "render", "render (rest: camera placement, copies)"),
        (StoreRenderer, "truth", "per-frame boxes and keypoints"),
        (prr.Renderer, "_read_main_framebuffer", "pyrender: reading pixels back"),
    ]:
        setattr(cls, meth, _timed(name, getattr(cls, meth)))
    pyrender.OffscreenRenderer.render = _offscreen_render(pyrender.OffscreenRenderer.render)
    trr.cv2 = _Cv2Timed()


class _Cv2Timed:
    """cv2 as the renderer sees it, with the blur and the distortion remap timed."""

    GaussianBlur = staticmethod(_timed("lens blur", cv2.GaussianBlur))
    remap = staticmethod(_timed("lens distortion (remap)", cv2.remap))

    def __getattr__(self, name):
        return getattr(cv2, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="busy_store")
    ap.add_argument("--window-s", type=float, default=30.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sc = load_scenario(scenario_path(args.scenario), store_dir())
    instrument()
    sim = Simulator(sc.spec, sc, SimConfig(max_duration_s=args.window_s))
    t0 = time.perf_counter()
    frames = sum(1 for m in sim.run() if isinstance(m, Frame))
    wall = time.perf_counter() - t0
    sim.close()
    rows = []
    for name in TOTAL:
        own = TOTAL[name] - CHILD.get(name, 0.0)
        rows.append((name, own, CALLS[name]))
    rows.sort(key=lambda r: -r[1])
    accounted = sum(r[1] for r in rows)
    rows.append(("everything else (loop, messages, sorting)", wall - accounted, 0))
    print(f"{args.scenario}, first {sim.t:.1f} simulated s: {wall:.1f} wall s, {frames} frames "
          f"({frames / wall:.1f} frames/s, {sim.t / wall:.3f} simulated s per wall s)")
    print(f"{'stage':48s} {'wall s':>8s} {'share':>6s} {'ms/frame':>9s} {'calls':>8s}")
    for name, own, n in rows:
        print(f"{name:48s} {own:8.1f} {100 * own / wall:5.1f}% {1000 * own / max(frames, 1):9.2f} {n:8d}")
    if args.json:
        args.json.write_text(json.dumps({
            "scenario": args.scenario, "sim_s": round(sim.t, 2), "wall_s": round(wall, 2), "frames": frames,
            "stages": [{"stage": n, "wall_s": round(o, 3), "share": round(o / wall, 4), "calls": c} for n, o, c in rows]},
            indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
