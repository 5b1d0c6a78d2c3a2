"""Overhead fisheye cameras in the twin: one moment of busy_store from the middle of the ceiling,
through a pinhole of 100° and through fisheyes of 110° and 125° across (equidistant), the ground
truth's skeletons drawn on each; and what each costs to render.

    .venv/bin/python benchmarks/fisheye_sheet.py --out docs/img/fisheye.jpg

Prints the mean render time per frame (``masks="persons"``, as the simulator renders) over
``--frames`` frames a camera, and the share of the store's floor each camera sees.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from harness.paths import scenario_path, store_dir  # noqa: E402
from runtime.geometry import in_image, project  # noqa: E402
from sim.scenario import load_scenario  # noqa: E402
from sim.simulator import CameraConfig, SimConfig, Simulator  # noqa: E402
from twin.bodies import COCO_SKELETON  # noqa: E402
from twin.renderer import StoreRenderer  # noqa: E402

TILE = (480, 360)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("docs/img/fisheye.jpg"))
    ap.add_argument("--at", type=float, default=50.0, help="busy_store's moment, seconds")
    ap.add_argument("--frames", type=int, default=10, help="frames a camera for the timing (0.2 s apart)")
    a = ap.parse_args()
    sc = load_scenario(scenario_path("busy_store"), store_dir())
    W, D = sc.spec.floor.width_m, sc.spec.floor.depth_m
    eye, at = [W / 2, D / 2, 3.0], [W / 2, D / 2 + 0.01, 0.0]
    rigs = {"pinhole 100°": {"hfov_deg": 100.0},
            "fisheye 110°": {"hfov_deg": 110.0, "lens": "fisheye"},
            "fisheye 125°": {"hfov_deg": 125.0, "lens": "fisheye", "distortion": [0.01, -0.004, 0, 0, 0]}}
    d = sc.spec.model_dump()
    d["cameras"] = [{"id": f"top_{k}", "position_m": eye, "look_at_m": at, "resolution": [640, 480], **v}
                    for k, v in enumerate(rigs.values())]
    spec = type(sc.spec).model_validate(d)
    sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(render=False)))
    states = []
    for m in sim.run():
        if m.t > a.at + len(states) * 0.2 - 0.2 * a.frames and m.t > a.at - 0.2 * a.frames and len(states) < a.frames:
            states.append(sim.scene_state())
        if m.t > a.at:
            break
    state = sim.scene_state()
    r = StoreRenderer(spec, [i.sku for i in sim.world.instances], sc.lighting, seed=sc.seed)
    grid = np.stack(np.meshgrid(np.linspace(0.05, W - 0.05, 80), np.linspace(0.05, D - 0.05, 60)), -1).reshape(-1, 2)
    floor = np.concatenate([grid, np.zeros((len(grid), 1))], axis=1)
    tiles = []
    for k, name in enumerate(rigs):
        cam = spec.cameras[k]
        r.set_state(states[0])
        r.render(cam.id, masks="persons")            # the kept view of what does not move
        t0 = time.perf_counter()
        for s in states:
            r.set_state(s)
            r.render(cam.id, masks="persons")
        ms = 1000 * (time.perf_counter() - t0) / len(states)
        r.set_state(state)
        out = r.render(cam.id, masks="persons")
        truth = r.truth(cam.id, state, out)
        img = out.bgr.copy()
        for kp in truth.keypoints:
            for i, j in COCO_SKELETON:
                if kp[i, 2] > 0 and kp[j, 2] > 0:
                    cv2.line(img, tuple(int(v) for v in kp[i, :2]), tuple(int(v) for v in kp[j, :2]), (0, 255, 255), 1, cv2.LINE_AA)
        uv, z = project(cam, floor)
        seen = float(in_image(cam, uv, z).mean())
        print(f"{name}: {ms:.1f} ms a frame ({len(states)} frames), drawn at {r._render_camera(cam).resolution}, "
              f"sees {seen:.0%} of the floor, {len(truth.person_ids)} people")
        t = cv2.resize(img, TILE, interpolation=cv2.INTER_AREA)
        cv2.rectangle(t, (0, 0), (TILE[0], 22), (0, 0, 0), -1)
        cv2.putText(t, f"{name}: {seen:.0%} of the floor, {len(truth.person_ids)} people", (6, 16),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(t)
    r.close()
    sim.close()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), np.hstack(tiles), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
