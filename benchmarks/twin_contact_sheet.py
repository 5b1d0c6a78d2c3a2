"""The twin's look, old beside new: the same moment of busy_store from the same ceiling cameras with
the first models' low-poly people and with the skinned people, then pictures from a training set
drawn with every randomisation on (textures, distractors, light colour, cameras, free views).

    .venv/bin/python benchmarks/twin_contact_sheet.py --dataset data/looks --out docs/img/twin_old_new.jpg

The dataset: `storetwin datagen out=data/looks shards=1 duration_s=20 shoppers=[4,4] seed=3` (defaults).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from harness.paths import scenario_path, store_dir  # noqa: E402
from sim.scenario import load_scenario  # noqa: E402
from sim.simulator import CameraConfig, SimConfig, Simulator  # noqa: E402
from twin.renderer import StoreRenderer  # noqa: E402

TILE = (400, 300)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    t = cv2.resize(img, TILE, interpolation=cv2.INTER_AREA)
    cv2.rectangle(t, (0, 0), (TILE[0], 20), (0, 0, 0), -1)
    cv2.putText(t, text, (5, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=Path, required=True, help="a storetwin datagen folder drawn with the defaults")
    ap.add_argument("--out", type=Path, default=Path("docs/img/twin_old_new.jpg"))
    ap.add_argument("--at", type=float, default=50.0, help="busy_store's moment, seconds")
    ap.add_argument("--cameras", nargs="+", default=["cam_03", "cam_05", "cam_11"])
    a = ap.parse_args()
    sc = load_scenario(scenario_path("busy_store"), store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(render=False)))
    for m in sim.run():
        if m.t > a.at:
            break
    state = sim.scene_state()
    rows = []
    for bodies, name in (("blocks", "old twin (first models)"), ("anny", "new twin")):
        r = StoreRenderer(sc.spec, [i.sku for i in sim.world.instances], sc.lighting, seed=sc.seed)
        r.bodies = bodies
        r.set_state(state)
        rows.append([_label(r.render(c, masks="none").bgr, f"{name}, busy_store {c}") for c in a.cameras])
    imgs = sorted((a.dataset / "pose" / "images").glob("*/*.jpg"))
    views = [p for p in imgs if "view_" in p.name]
    ceiling = [p for p in imgs if "view_" not in p.name]
    rng = np.random.default_rng(0)
    pick = [ceiling[i] for i in rng.choice(len(ceiling), 2, replace=False)] + ([views[len(views) // 2]] if views else [])
    rows.append([_label(cv2.imread(str(p)), "training image, randomised" + (" (free view)" if "view_" in p.name else ""))
                 for p in pick])
    sheet = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(a.out, sheet.shape)
    sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
