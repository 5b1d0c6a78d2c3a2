"""Simulator throughput and renderer speed on a busy store.

    .venv/bin/python benchmarks/bench_sim.py [--scenario busy_store] [--window-s 40] [--json out.json]

Measures, in one run:
1. physics + shoppers + load cells + gates without cameras, over the whole scenario:
   simulated seconds per wall second;
2. the full simulator (every camera rendered, per-frame ground truth) over the first
   ``--window-s`` simulated seconds: simulated seconds per wall second and frames per second;
   with each run's CPU time, and the share of the machine's time stolen by its hypervisor while
   it ran (on a shared virtual machine wall times swing with it; CPU time swings less);
3. at the end of that window, the same scene (fixtures, floor, every product, the shoppers and their
   baskets) rendered from every camera by pyrender (EGL), drawing all of it and as the simulator
   draws a frame (each camera's still view kept), and by pybullet's own ``getCameraImage``
   (TinyRenderer), side by side;
4. with ``--jobs N``: the same window with the cameras dealt out to N processes, each simulating the
   whole store and drawing its share (``storetwin simulate jobs=N``): frames per wall second of
   all of them together, and their CPU time added up.

``--only full parts`` measures some of these (``physics``, ``full``, ``parts``, ``renderers``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
from sim.world import pb  # noqa: E402  (imported quietly there)

from harness.paths import scenario_path, store_dir  # noqa: E402
from runtime.messages import Frame  # noqa: E402
from sim.scenario import load_scenario  # noqa: E402
from sim.simulator import CameraConfig, SimConfig, Simulator  # noqa: E402
from twin.fixtures import floor_mesh, shelf_unit_meshes  # noqa: E402
from twin.renderer import SceneState  # noqa: E402


def _clock() -> tuple[float, float, tuple[int, int] | None]:
    """Wall seconds, this process's CPU seconds (all its threads: llvmpipe draws on several), and
    the machine's stolen and total CPU ticks (/proc/stat, Linux; None elsewhere)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ticks = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        ticks = (f[7], sum(f))
    return time.perf_counter(), ru.ru_utime + ru.ru_stime, ticks


def _since(c0) -> dict:
    """What :func:`_clock` says passed since ``c0``: the wall time, the CPU time it took, and the
    share of the machine's time its hypervisor gave to others (figures here swing with it)."""
    c1 = _clock()
    out = {"wall_s": round(c1[0] - c0[0], 2), "cpu_s": round(c1[1] - c0[1], 2)}
    if c0[2] and c1[2] and c1[2][1] > c0[2][1]:
        out["stolen_share"] = round((c1[2][0] - c0[2][0]) / (c1[2][1] - c0[2][1]), 3)
    return out


def physics_only(scenario) -> dict:
    sim = Simulator(scenario.spec, scenario, SimConfig(camera=CameraConfig(render=False)))
    c0 = _clock()
    n = sum(1 for _ in sim.run())
    took = _since(c0)
    sim.close()
    return {"sim_s": round(sim.t, 2), **took, "sim_s_per_wall_s": round(sim.t / took["wall_s"], 2), "messages": n}


def full_window(scenario, window_s: float):
    sim = Simulator(scenario.spec, scenario, SimConfig(max_duration_s=window_s))
    c0 = _clock()
    frames = sum(1 for m in sim.run() if isinstance(m, Frame))
    took = _since(c0)
    wall = took["wall_s"]
    res = {"sim_s": round(sim.t, 2), **took, "sim_s_per_wall_s": round(sim.t / wall, 3),
           "frames": frames, "frames_per_s": round(frames / wall, 2),
           "cpu_ms_per_frame": round(1000 * took["cpu_s"] / max(frames, 1), 1), "cameras": len(sim.camera_ids),
           "shoppers_in_store_at_end": sum(s.present for s in sim.shoppers)}
    return res, sim


def _part(name: str, window_s: float, cameras: tuple[str, ...]) -> dict:
    sc = load_scenario(scenario_path(name), store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(max_duration_s=window_s, camera=CameraConfig(draw_only=cameras)))
    c0 = _clock()
    frames = sum(1 for m in sim.run() if isinstance(m, Frame))
    took = _since(c0)
    sim.close()
    return {"frames": frames, "sim_s": round(sim.t, 2), **took}


def full_window_in_parts(scenario, window_s: float, jobs: int) -> dict:
    """The full simulator over the window with its cameras dealt out to ``jobs`` processes (as
    ``storetwin simulate jobs=N`` deals them), started together."""
    from joblib.externals.loky import ProcessPoolExecutor

    from harness.simulate import deal_cameras

    shares = deal_cameras([c.id for c in scenario.spec.cameras], jobs)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for f in [pool.submit(time.sleep, 0.5) for _ in range(jobs)]:
            f.result()                   # the workers are up before the clock starts
        pool.submit(_part, scenario.name, 0.0, ()).result()   # and have imported the simulator
        c0 = _clock()
        parts = [f.result() for f in [pool.submit(_part, scenario.name, window_s, sh) for sh in shares]]
        took = _since(c0)
    frames = sum(p["frames"] for p in parts)
    cpu = sum(p["cpu_s"] for p in parts)
    wall = took["wall_s"]
    return {"jobs": jobs, "sim_s": parts[0]["sim_s"], "wall_s": wall, "cpu_s": round(cpu, 2),
            **({"stolen_share": took["stolen_share"]} if "stolen_share" in took else {}),
            "frames": frames, "frames_per_s": round(frames / wall, 2),
            "cpu_ms_per_frame": round(1000 * cpu / max(frames, 1), 1), "parts": parts}


def _pybullet_scene(store, state: SceneState, skus: list[str]) -> int:
    c = pb.connect(pb.DIRECT)

    def add_mesh(verts: np.ndarray, faces: np.ndarray, rgb) -> None:
        vs = pb.createVisualShape(pb.GEOM_MESH, vertices=verts.tolist(), indices=faces.ravel().tolist(),
                                  rgbaColor=[*(np.array(rgb) / 255.0), 1.0], physicsClientId=c)
        pb.createMultiBody(0, -1, vs, [0, 0, 0], physicsClientId=c)

    fl = floor_mesh(store)
    add_mesh(np.asarray(fl.vertices), np.asarray(fl.faces), (200, 200, 200))
    for u in store.units:
        T = u.local_to_world()
        for mesh, rgb in shelf_unit_meshes(u):
            v = np.asarray(mesh.vertices) @ T[:3, :3].T + T[:3, 3]
            add_mesh(v, np.asarray(mesh.faces), rgb)
    for i, sku in enumerate(skus):
        if not state.product_visible[i]:
            continue
        p = store.products[sku]
        vs = pb.createVisualShape(pb.GEOM_BOX, halfExtents=(np.array(p.size_m) / 2).tolist(),
                                  rgbaColor=[*(np.array(p.rgb()) / 255.0), 1.0], physicsClientId=c)
        T = state.product_poses[i]
        q = _quat(T[:3, :3])
        pb.createMultiBody(0, -1, vs, T[:3, 3].tolist(), q, physicsClientId=c)
    return c


def _quat(R: np.ndarray) -> list[float]:
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    return [x, y, z, w]


def renderer_comparison(sim: Simulator, repeats: int = 3) -> dict:
    """The scene at the end of the window, shoppers and baskets included, from every camera: pyrender
    drawing all of it each time, pyrender as the simulator draws a frame (each camera's still view
    kept, what moves drawn again), and pybullet's TinyRenderer drawing all of it."""
    store = sim.store
    state = sim.scene_state()
    r = sim.renderer
    r.set_state(state)
    skus = r.instance_skus
    c = _pybullet_scene(store, state, skus)
    people = [*r._shopper_nodes.values(), *([r._baskets_node] if r._baskets_node is not None else [])]
    for node in people:   # the same people and baskets, as pybullet meshes (one colour each: TinyRenderer's look)
        for p in node.mesh.primitives:
            faces = p.indices if p.indices is not None else np.arange(len(p.positions)).reshape(-1, 3)
            vs = pb.createVisualShape(pb.GEOM_MESH, vertices=np.asarray(p.positions, float).tolist(),
                                      indices=np.asarray(faces).ravel().tolist(), rgbaColor=[0.4, 0.3, 0.6, 1.0],
                                      physicsClientId=c)
            pb.createMultiBody(0, -1, vs, [0, 0, 0], physicsClientId=c)
    out = {"pyrender_full_ms": [], "pyrender_ms": [], "pybullet_tiny_ms": []}
    for cam in store.cameras:
        for share, key in ((False, "pyrender_full_ms"), (True, "pyrender_ms")):
            r.share_static_view = share
            r.render(cam.id, masks="none")  # warm: uploads, and the still view kept
            t0 = time.perf_counter()
            for _ in range(repeats):
                r.render(cam.id, masks="none")
            out[key].append((time.perf_counter() - t0) / repeats * 1000)
        r.share_static_view = True
        view = pb.computeViewMatrix(cam.position_m, cam.look_at_m, (-cam.R[1]).tolist())
        fov_y = math.degrees(2 * math.atan(cam.height / 2 / cam.K[1, 1]))
        proj = pb.computeProjectionMatrixFOV(fov_y, cam.width / cam.height, 0.05, 30.0)
        t0 = time.perf_counter()
        for _ in range(repeats):
            pb.getCameraImage(cam.width, cam.height, view, proj, renderer=pb.ER_TINY_RENDERER, physicsClientId=c)
        out["pybullet_tiny_ms"].append((time.perf_counter() - t0) / repeats * 1000)
    pb.disconnect(c)
    res = {k: round(float(np.mean(v)), 1) for k, v in out.items()}
    res["speedup_pyrender"] = round(res["pybullet_tiny_ms"] / res["pyrender_ms"], 2)
    res["speedup_pyrender_full"] = round(res["pybullet_tiny_ms"] / res["pyrender_full_ms"], 2)
    res["shoppers"] = len(state.shoppers)
    res["resolution"] = f"{store.cameras[0].width}x{store.cameras[0].height}"
    res["products"] = int(state.product_visible.sum())
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="busy_store")
    ap.add_argument("--window-s", type=float, default=40.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=1, help="also the window with the cameras in this many processes")
    ap.add_argument("--only", nargs="*", choices=["physics", "full", "parts", "renderers"], default=None)
    a = ap.parse_args()
    only = set(a.only or ["physics", "full", "renderers", *(["parts"] if a.jobs > 1 else [])])
    if "parts" in only and a.jobs < 2:
        ap.error("parts: give --jobs 2 or more")
    sc = load_scenario(scenario_path(a.scenario), store_dir())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; scenario {sc.name}", flush=True)
    result: dict = {"scenario": sc.name, "cores": os.cpu_count()}
    if "physics" in only:
        result["physics_only"] = physics_only(sc)
        print(f"physics+shoppers (no cameras): {result['physics_only']}", flush=True)
    if "full" in only or "renderers" in only:
        full, sim = full_window(sc, a.window_s)
        result["full"] = full
        print(f"full simulator, first {a.window_s:g} s: {full}", flush=True)
        if "renderers" in only:
            result["renderers"] = renderer_comparison(sim)
            print(f"renderers on the same scene: {result['renderers']}", flush=True)
        sim.close()
    if "parts" in only:
        result["parts"] = full_window_in_parts(sc, a.window_s, a.jobs)
        print(f"full simulator, first {a.window_s:g} s, cameras in {a.jobs} processes: {result['parts']}", flush=True)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
