"""Renderer cost on `small_convenience`: one camera's RGB pass on the stocked store, and one tick
of all 12 cameras (RGB, person masks, ground truth) with the busy_store shoppers 50 s in.

    .venv/bin/python benchmarks/bench_render.py                  # the skinned people (default)
    .venv/bin/python benchmarks/bench_render.py --bodies blocks   # the first models' low-poly people
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from harness.paths import scenario_path, store_dir  # noqa: E402
from sim.scenario import load_scenario  # noqa: E402
from sim.simulator import CameraConfig, SimConfig, Simulator  # noqa: E402
from sim.world import PhysicsWorld  # noqa: E402
from twin.renderer import SceneState, StoreRenderer  # noqa: E402


def one_camera(repeats: int = 6) -> float:
    sc = load_scenario(scenario_path("single_pick"), store_dir())
    w = PhysicsWorld(sc.spec)
    r = StoreRenderer(sc.spec, [i.sku for i in w.instances], "day", seed=1)
    r.set_state(SceneState(0.0, w.poses(), np.ones(len(w.instances), bool), []))
    r.render("cam_03", masks="none")
    t0 = time.perf_counter()
    for _ in range(repeats):
        r.render("cam_03", masks="none")
    w.close()
    return (time.perf_counter() - t0) / repeats * 1000


def busy_tick(at_s: float = 50.0, repeats: int = 3, bodies: str = "anny") -> tuple[float, int]:
    sc = load_scenario(scenario_path("busy_store"), store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(render=False)))
    for m in sim.run():
        if m.t > at_s:
            break
    r = StoreRenderer(sc.spec, [i.sku for i in sim.world.instances], sc.lighting, seed=sc.seed)
    r.bodies = bodies

    def tick() -> None:
        st = sim.scene_state()
        r.set_state(st)
        for c in sim.camera_ids:
            r.truth(c, st, r.render(c, masks="persons"))

    tick()
    t0 = time.perf_counter()
    for _ in range(repeats):
        tick()
    return (time.perf_counter() - t0) / repeats * 1000, sum(s.present for s in sim.shoppers)


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--bodies", choices=["anny", "blocks"], default="anny")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    print(f"one camera, RGB pass, 640x480: {one_camera():.1f} ms")
    ms, n = busy_tick(repeats=a.repeats, bodies=a.bodies)
    print(f"people: {a.bodies}")
    print(f"one tick of 12 cameras with ground truth, {n} shoppers in the store: {ms:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
