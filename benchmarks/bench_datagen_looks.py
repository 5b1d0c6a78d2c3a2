"""What datagen's store looks and camera effects cost, and what they look like, on one scenario of
`small_convenience`.

Renders every camera once a simulated second (as datagen does: exact product masks, ground truth)
with the twin's own look and dressed as `conf/datagen.yaml`'s defaults draw it (textures,
distractors, posters, the world outside), and times the renders (the first frame of each camera,
which draws its kept static view, apart) and the camera effects on each image. ``--picture``
writes one camera's view of one moment under six draws of the randomisation (3×2).

    .venv/bin/python benchmarks/bench_datagen_looks.py [--duration-s 20] [--shoppers 4] [--json docs/bench_datagen_looks.json]
    .venv/bin/python benchmarks/bench_datagen_looks.py --picture docs/img/datagen_randomisation.jpg
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.datagen import (Randomisation, clutter, dress_store, jitter_cameras, light_colour,  # noqa: E402
                             lighting_preset)
from harness.paths import store_dir  # noqa: E402
from runtime.store import load_store  # noqa: E402
from sim.randomize import TripConfig, random_scenario  # noqa: E402
from sim.simulator import CameraConfig, SimConfig, Simulator  # noqa: E402
from twin.camera_effects import apply, draw_camera, draw_frame  # noqa: E402
from twin.renderer import StoreRenderer  # noqa: E402


def scenario_renderer(store, skus, r: Randomisation, seed: int, draw: int, dressed: bool):
    """A renderer for one draw of the randomisation (as generate_shard makes it), and what was drawn."""
    rng = np.random.default_rng([seed, draw, 20261125])
    look_rng, prop_rng = (np.random.default_rng([seed, draw, 20261125, k]) for k in (1, 2))
    light = lighting_preset(r, rng)
    if not dressed:
        r = dataclasses.replace(r, light_kelvin=None, textures=(), distractors=(0, 0), posters=(0, 0), background=False)
    light, kelvin = light_colour(light, r, look_rng)
    d = dress_store(store, r, look_rng, prop_rng)
    ren = StoreRenderer(store, skus, light, seed=seed, packaging_rng=np.random.default_rng(seed), static_meshes=d.static)
    ren.add_props(clutter(store, rng, int(rng.integers(r.clutter[0], r.clutter[1] + 1))))
    for m in d.props:
        ren.add_props([m])
    if d.background_rgb is not None:
        ren.set_background(d.background_rgb)
    return ren, {"light": light.name, "kelvin": kelvin, **d.meta}


def _one_pass(store, sc, r: Randomisation, seed: int, dressed: bool, effects: bool) -> dict:
    """One simulation of the scenario, one look: every camera once a simulated second."""
    sim = Simulator(store, sc, SimConfig(camera=CameraConfig(render=False), load_cells=False))
    skus = [i.sku for i in sim.world.instances]
    t0 = time.perf_counter()
    ren, meta = scenario_renderer(store, skus, r, seed, 0, dressed)
    out = {"build_s": time.perf_counter() - t0, "first": [], "later": [], "effects": [], "drawn": meta}
    cam_rng = np.random.default_rng([seed, 0, 3])
    looks = {c.id: draw_camera(r.camera, cam_rng) for c in store.cameras}
    seen: set[str] = set()
    next_t = 0.5
    for _ in sim.run(every_step=True):
        if sim.t + 1e-9 < next_t:
            continue
        next_t += 1.0
        state = sim.scene_state()
        ren.set_state(state)
        for cam in store.cameras:
            t = time.perf_counter()
            o = ren.render(cam.id, masks="all")
            ren.truth(cam.id, state, o)
            (out["later"] if cam.id in seen else out["first"]).append(time.perf_counter() - t)
            seen.add(cam.id)
            if effects:
                fx = draw_frame(r.camera, looks[cam.id], cam_rng)
                t = time.perf_counter()
                apply(o.bgr, fx)
                out["effects"].append(time.perf_counter() - t)
    ren.close()
    sim.close()
    return out


def timing(store, sc, r: Randomisation, seed: int, rounds: int = 2) -> dict:
    """The twin's own look and the dressed one, in turn (``rounds`` times each, so that other work
    on the machine weighs on both alike); one renderer at a time, as datagen has (renderers in
    one process share their GL context, and take turns uploading their meshes)."""
    runs: dict[str, list[dict]] = {"twin's own look": [], "dressed": []}
    for _ in range(rounds):
        runs["twin's own look"].append(_one_pass(store, sc, r, seed, dressed=False, effects=False))
        runs["dressed"].append(_one_pass(store, sc, r, seed, dressed=True, effects=True))
    rows = {}
    for key, rs in runs.items():
        later = [x for x in rs for x in x["later"]]
        first = [x for x in rs for x in x["first"]]
        rows[key] = {"build_s": round(float(np.median([x["build_s"] for x in rs])), 2),
                     "first_frame_ms": round(1000 * float(np.median(first)), 1),
                     "frame_ms": round(1000 * float(np.median(later)), 1),
                     "frame_ms_mean": round(1000 * float(np.mean(later)), 1),
                     "frames": len(first) + len(later), "drawn": rs[0]["drawn"]}
    fx = [x for x in runs["dressed"] for x in x["effects"]]
    rows["camera effects"] = {"ms_per_image": round(1000 * float(np.median(fx)), 1),
                              "ms_per_image_mean": round(1000 * float(np.mean(fx)), 1), "images": len(fx),
                              "codec": r.camera.codec}
    for k, v in rows.items():
        print(json.dumps({k: v}), flush=True)
    return rows


def picture(store, sc, r: Randomisation, seed: int, path: Path, camera: str, at_s: float) -> None:
    sim = Simulator(store, sc, SimConfig(camera=CameraConfig(render=False), load_cells=False))
    skus = [i.sku for i in sim.world.instances]
    for _ in sim.run(every_step=True):
        if sim.t >= at_s:
            break
    state = sim.scene_state()
    tiles = []
    for k in range(6):
        rng = np.random.default_rng([seed, k, 9])
        cam_store = jitter_cameras(store, rng, r.camera_jitter_m, r.camera_look_jitter_m)
        ren, meta = scenario_renderer(cam_store, skus, r, seed, k, dressed=True)
        ren.set_state(state)
        img = ren.render(camera, masks="none").bgr
        ren.close()
        cam_rng = np.random.default_rng([seed, k, 3])
        fx = draw_frame(r.camera, draw_camera(r.camera, cam_rng), cam_rng)
        img = cv2.resize(apply(img, fx), (480, 360), interpolation=cv2.INTER_AREA)
        lines = [f"{meta['light']} light {meta['kelvin']} K; " + ", ".join(f"{s} {v}" for s, v in meta["surfaces"].items()),
                 f"{meta['distractors']} distractors, {meta['posters']} posters; camera: exposure {fx.exposure:.2f}, "
                 f"WB {fx.white_balance_k:.0f} K, vignetting {fx.vignetting:.2f}, H.264 QP {fx.codec_qp}, "
                 f"stream {fx.stream_scale:.2f}x"]
        cv2.rectangle(img, (0, 0), (img.shape[1], 27), (0, 0, 0), -1)
        for j, line in enumerate(lines):
            cv2.putText(img, line, (4, 11 + 12 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.32, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(img)
    sim.close()
    grid = np.vstack([np.hstack(tiles[0:3]), np.hstack(tiles[3:6])])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"{path}: {path.stat().st_size / 1024:.0f} KB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration-s", type=float, default=20.0)
    ap.add_argument("--shoppers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--picture", type=Path, help="write the 3×2 picture here instead of timing")
    ap.add_argument("--json", type=Path, help="write the timings here too")
    ap.add_argument("--camera", default="cam_03")
    ap.add_argument("--at-s", type=float, default=14.0)
    a = ap.parse_args()
    store = load_store(store_dir() / "small_convenience.yaml")
    sc = random_scenario(store, "small_convenience", a.seed, a.shoppers, a.duration_s, TripConfig(burst_rate=0.0),
                         store_dir=store_dir())
    r = Randomisation()
    if a.picture:
        picture(store, sc, r, a.seed, a.picture, a.camera, a.at_s)
    else:
        rows = timing(store, sc, r, a.seed)
        if a.json:
            a.json.write_text(json.dumps({"machine": f"{os.cpu_count()} × {platform.machine()}", "store": "small_convenience",
                                          "seed": a.seed, "shoppers": a.shoppers, "duration_s": a.duration_s,
                                          "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
