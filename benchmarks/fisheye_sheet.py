"""Overhead fisheye cameras in the twin: one moment of busy_store from the middle of the ceiling,
through a pinhole of 100° and through fisheyes of 110° and 125° across (equidistant), the ground
truth's skeletons drawn on each; and what each costs to render.

    .venv/bin/python benchmarks/fisheye_sheet.py --out docs/img/fisheye.jpg

Prints the mean render time per frame (``masks="persons"``, as the simulator renders) of the
moment drawn ``--frames`` times by each camera in turn, and the share of the store's floor each
camera sees.
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
    ap.add_argument("--frames", type=int, default=10, help="renders a camera for the timing")
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
    for m in sim.run():
        if m.t > a.at:
            break
    state = sim.scene_state()
    r = StoreRenderer(spec, [i.sku for i in sim.world.instances], sc.lighting, seed=sc.seed)
    grid = np.stack(np.meshgrid(np.linspace(0.05, W - 0.05, 80), np.linspace(0.05, D - 0.05, 60)), -1).reshape(-1, 2)
    floor = np.concatenate([grid, np.zeros((len(grid), 1))], axis=1)
    # the render alone, of one moment drawn again and again, the cameras in turn (the first render
    # after the scene changes also uploads what moved, whichever camera comes first)
    r.set_state(state)
    for cam in spec.cameras:
        r.render(cam.id, masks="persons")            # each camera's kept view of what does not move
    spent = {c.id: 0.0 for c in spec.cameras}
    for _ in range(a.frames):
        for cam in spec.cameras:
            t0 = time.perf_counter()
            r.render(cam.id, masks="persons")
            spent[cam.id] += time.perf_counter() - t0
    tiles = []
    for k, name in enumerate(rigs):
        cam = spec.cameras[k]
        ms = 1000 * spent[cam.id] / a.frames
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
        print(f"{name}: {ms:.1f} ms a frame ({a.frames} renders), drawn at {r._render_camera(cam).resolution}, "
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
