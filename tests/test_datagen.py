"""`storetwin datagen`: datasets that Ultralytics loads, labels inside the image, hidden keypoints
at visibility 0, train and val never sharing a scenario, and resuming that makes only what is
missing. Tiny store, short scenarios."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.cli import main
from harness.datagen import (DatagenConfig, datagen_config_from, degrade, near_duplicate, run_datagen,
                             scenario_split, Randomisation)

ARGS = ["store=tiny_unit", "shards=3", "duration_s=12", "shoppers=[1,2]", "seed=5", "jobs=2"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dg") / "ds"
    assert main(["datagen", f"out={out}", *ARGS]) == 0
    return out


def _lines(p: Path) -> list[list[float]]:
    return [[float(x) for x in line.split()] for line in p.read_text().splitlines() if line.strip()]


def test_layout_and_both_splits(dataset: Path):
    for task in ("detect", "pose"):
        d = yaml.safe_load((dataset / task / "data.yaml").read_text())
        assert d["train"] == "images/train" and d["val"] == "images/val"
        for split in ("train", "val"):
            imgs = sorted((dataset / task / "images" / split).glob("*.jpg"))
            labels = sorted((dataset / task / "labels" / split).glob("*.txt"))
            assert imgs and [p.stem for p in imgs] == [p.stem for p in labels]
    names = yaml.safe_load((dataset / "detect" / "data.yaml").read_text())["names"]
    assert names[0] == "person" and len(names) == 1 + 4
    pose = yaml.safe_load((dataset / "pose" / "data.yaml").read_text())
    assert pose["kpt_shape"] == [17, 3] and sorted(pose["flip_idx"]) == list(range(17))
    for f in ("README.md", "mosaic.jpg", "coco/instances_train.json", "coco/instances_val.json"):
        assert (dataset / f).is_file(), f


def test_train_and_val_never_share_a_scenario(dataset: Path):
    scen = {s: {p.name.split("_s")[1].split("_")[0] for p in (dataset / "detect" / "images" / s).glob("*.jpg")}
            for s in ("train", "val")}
    assert scen["train"] and scen["val"] and not scen["train"] & scen["val"]
    coco = {s: json.loads((dataset / "coco" / f"instances_{s}.json").read_text()) for s in ("train", "val")}
    assert not {i["scenario"] for i in coco["train"]["images"]} & {i["scenario"] for i in coco["val"]["images"]}


def test_labels_stay_inside_the_image(dataset: Path):
    n = 0
    for p in (dataset / "detect" / "labels").rglob("*.txt"):
        for cls, cx, cy, w, h in _lines(p):
            assert w > 0 and h > 0
            assert 0 <= cx - w / 2 + 1e-6 and cx + w / 2 <= 1 + 1e-6 and 0 <= cy - h / 2 + 1e-6 and cy + h / 2 <= 1 + 1e-6
            n += 1
    for p in (dataset / "pose" / "labels").rglob("*.txt"):
        for row in _lines(p):
            assert len(row) == 5 + 17 * 3 and row[0] == 0
            kp = np.array(row[5:]).reshape(17, 3)
            assert set(kp[:, 2]) <= {0.0, 2.0}
            vis = kp[kp[:, 2] == 2]
            assert ((vis[:, :2] >= 0) & (vis[:, :2] <= 1)).all()
            cx, cy, w, h = row[1:5]   # a visible keypoint lies on the person, so in the box
            assert ((vis[:, 0] >= cx - w / 2 - 0.01) & (vis[:, 0] <= cx + w / 2 + 0.01)).all()
    assert n > 20


def test_hidden_keypoints_have_visibility_zero(dataset: Path):
    """A keypoint the renderer found hidden (behind a shelf or a body: the pixel shows something
    else) is exported with visibility 0 and no position, in the pose dataset."""
    hidden = shown = 0
    for shard in sorted((dataset / "shards").glob("shard_*")):
        for line in (shard / "labels.jsonl").read_text().splitlines():
            rec = json.loads(line)
            stem = f"{shard.name}_{Path(rec['file']).stem}"
            split = rec["split"]
            rows = _lines(dataset / "pose" / "labels" / split / f"{stem}.txt")
            assert len(rows) == len(rec["persons"])
            for row, person in zip(rows, rec["persons"]):
                kp = np.array(row[5:]).reshape(17, 3)
                for (u, v, vis), (ku, kv, kvis) in zip(person["keypoints"], kp):
                    if vis == 1:
                        hidden += 1
                        assert kvis == 0 and ku == 0 and kv == 0
                    elif vis == 2:
                        shown += 1
                        assert kvis == 2 and abs(ku * rec["width"] - u) < 0.01 and abs(kv * rec["height"] - v) < 0.01
    assert hidden > 0 and shown > 0


def test_the_scene_is_sampled_on_schedule_through_each_scenario(dataset: Path):
    """Every ``sample_every_s`` of simulated time the scene is looked at (then rendered, or skipped
    as empty), from start to end, whatever messages the simulation makes meanwhile."""
    every = DatagenConfig().sample_every_s
    for p in sorted((dataset / "shards").glob("*/shard.json")):
        for sc in json.loads(p.read_text())["scenarios"]:
            d = sc["scenario"]["duration_s"]
            assert abs(sc["samples"] - d / every) <= 1.5, (p.parent.name, sc["samples"], d / every)


def test_rerun_makes_only_the_missing_shards_and_the_same_labels(dataset: Path, tmp_path: Path):
    out = tmp_path / "ds"
    shutil.copytree(dataset, out)
    before = (out / "shards" / "shard_00001" / "labels.jsonl").read_text()
    kept = (out / "shards" / "shard_00000" / "labels.jsonl").stat().st_mtime_ns
    shutil.rmtree(out / "shards" / "shard_00001")
    cfg = datagen_config_from({k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in ARGS)})
    res = run_datagen(cfg, out)
    assert res.made == [1] and res.skipped == [0, 2]
    assert (out / "shards" / "shard_00001" / "labels.jsonl").read_text() == before, "same seed, same labels"
    assert (out / "shards" / "shard_00000" / "labels.jsonl").stat().st_mtime_ns == kept
    # other settings in the same folder are refused, and nothing is touched
    assert main(["datagen", f"out={out}", *ARGS[:-1], "duration_s=13"]) == 2


def test_bad_settings_are_one_line_errors_and_write_nothing(tmp_path: Path, capsys):
    for bad, key in (("randomise.noise_sigma=banana", "noise_sigma"), ("launcher=slurm", "launcher"),
                     ("cameras=[cam_99]", "cameras"), ("shoppers=[3,1]", "shoppers"), ("nope=1", "nope"),
                     ("randomise.textures=[marble]", "randomise.textures"), ("randomise.posters=[3,1]", "randomise.posters"),
                     ("randomise.light_kelvin=[100,200]", "randomise.light_kelvin"),
                     ("randomise.textures_p=1.5", "randomise.textures_p"),
                     ("randomise.camera.vignetting=[0.5,0.2]", "randomise.camera.vignetting"),
                     ("randomise.camera.codec=mpeg2", "randomise.camera.codec"),
                     ("randomise.camera.full_well_e=[0,5000]", "randomise.camera.full_well_e"),
                     ("randomise.camera.lens=fisheye", "randomise.camera.lens"),
                     ("randomise.free_views=[2,1]", "randomise.free_views")):
        assert main(["datagen", f"out={tmp_path / 'x'}", "store=tiny_unit", bad]) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and key in err[0], (bad, err)
    assert not (tmp_path / "x").exists()


LOOKS_OFF = {"textures": [], "light_kelvin": None,
             "camera": {"exposure": [1, 1], "exposure_drift": 0, "white_balance_k": [6500, 6500], "white_balance_drift_k": 0,
                        "vignetting": [0, 0], "full_well_e": [0, 0], "read_noise_e": [0, 0], "codec": "none",
                        "stream_scale": [1, 1]}}


def test_textures_light_colour_and_camera_effects_change_pixels_not_labels(tmp_path: Path):
    """The same seed with the store's textures, the lights' colour and the cameras' effects on and
    off: every label file the same, the pixels not. (Distractors, posters and the world outside
    stay on in both: they are geometry, drawn from their own stream.)"""
    import cv2

    base = {"store": "tiny_unit", "shards": 1, "duration_s": 6, "shoppers": [1, 1], "seed": 7, "launcher": "serial",
            "product_crops": 0, "randomise": {"textures_p": 1.0, "distractors": [3, 3], "posters": [2, 2]}}
    on = run_datagen(datagen_config_from(base), tmp_path / "on")
    off = run_datagen(datagen_config_from({**base, "randomise": {**base["randomise"], **LOOKS_OFF}}), tmp_path / "off")
    assert on.counts["train"]["images"] == off.counts["train"]["images"] > 0
    files = sorted(p.relative_to(tmp_path / "on") for p in (tmp_path / "on").rglob("labels/*/*.txt"))
    assert files == sorted(p.relative_to(tmp_path / "off") for p in (tmp_path / "off").rglob("labels/*/*.txt"))
    for f in files:
        assert (tmp_path / "on" / f).read_text() == (tmp_path / "off" / f).read_text(), f
    recs = [[json.loads(line) for line in (d / "shards" / "shard_00000" / "labels.jsonl").read_text().splitlines()]
            for d in (tmp_path / "on", tmp_path / "off")]
    strip = [[{k: v for k, v in r.items() if k != "effects"} for r in rs] for rs in recs]
    assert strip[0] == strip[1]
    assert recs[1][0]["effects"]["camera"]["codec"] == "none" and recs[0][0]["effects"]["camera"]["codec"] == "h264"
    for a, b in zip(*recs):
        ia, ib = (cv2.imread(str(d / "shards" / "shard_00000" / r["file"])) for d, r in ((tmp_path / "on", a), (tmp_path / "off", b)))
        assert np.abs(ia.astype(int) - ib).mean() > 5
    sc = json.loads((tmp_path / "on" / "shards" / "shard_00000" / "shard.json").read_text())["scenarios"][0]
    assert len(sc["look"]["surfaces"]) == 5 and 2700 <= sc["light_kelvin"] <= 6500 and sc["look"]["distractors"] == 3


TRAIN_ONE_BATCH = """
import sys
from ultralytics import YOLO
data, model, project, name = sys.argv[1:]
YOLO(model).train(data=data, epochs=1, imgsz=128, batch=8, workers=0, device="cpu", plots=False, val=False,
                  amp=False, project=project, name=name, verbose=False, fraction=0.25)
"""


@pytest.mark.parametrize("task,model", [("detect", "yolov8n.yaml"), ("pose", "yolov8n-pose.yaml")])
def test_ultralytics_loads_and_trains_one_batch(dataset: Path, tmp_path: Path, task: str, model: str):
    """Both YOLO datasets load in Ultralytics and a from-scratch model takes a training step on
    them. (In its own process, as `storetwin train` runs: torch's compiler stack and Mesa's
    llvmpipe, loaded by the renderer, must not share a process.)"""
    r = subprocess.run([sys.executable, "-c", TRAIN_ONE_BATCH, str(dataset / task / "data.yaml"), model, str(tmp_path), task],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "YOLO_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / task / "weights" / "last.pt").is_file()


def test_ray_launcher_on_a_local_instance(tmp_path: Path):
    """The same shards on Ray (an instance the test starts here) as with the default launcher."""
    pytest.importorskip("ray")
    cfg = datagen_config_from({"store": "tiny_unit", "shards": 2, "duration_s": 6, "shoppers": [1, 1], "seed": 9,
                               "launcher": "ray", "jobs": 2})
    res = run_datagen(cfg, tmp_path / "ray")
    assert res.made == [0, 1] and res.counts["train"]["images"] + res.counts["val"]["images"] > 0
    serial = run_datagen(datagen_config_from({**{"store": "tiny_unit", "shards": 2, "duration_s": 6, "shoppers": [1, 1],
                                                   "seed": 9}, "launcher": "serial"}), tmp_path / "serial")
    for s in (0, 1):
        a = (tmp_path / "ray" / "shards" / f"shard_0000{s}" / "labels.jsonl").read_text()
        b = (tmp_path / "serial" / "shards" / f"shard_0000{s}" / "labels.jsonl").read_text()
        assert a == b
    assert serial.made == [0, 1]


def test_scenario_split_has_both_splits_and_is_stable():
    for n in range(2, 30):
        splits = [scenario_split(i, n, 0.2) for i in range(n)]
        assert "val" in splits and "train" in splits
    assert [scenario_split(i, 10, 0.2) for i in range(10)].count("val") == 2
    assert scenario_split(0, 1, 0.2) == "train"


def test_near_duplicates():
    a = {"persons": [{"id": 0, "box": [10, 10, 50, 90]}], "products": [{"instance": 3, "box": [1, 1, 5, 5]}]}
    b = {"persons": [{"id": 0, "box": [14, 10, 54, 90]}], "products": [{"instance": 3, "box": [1, 1, 5, 5]}]}
    c = {"persons": [{"id": 0, "box": [30, 10, 70, 90]}], "products": [{"instance": 3, "box": [1, 1, 5, 5]}]}
    d = {"persons": [{"id": 0, "box": [14, 10, 54, 90]}, {"id": 1, "box": [0, 0, 9, 9]}], "products": b["products"]}
    assert near_duplicate(a, b, 12) and not near_duplicate(a, c, 12) and not near_duplicate(a, d, 12)
    assert not near_duplicate(None, a, 12)


def test_degrade_blurs_and_adds_noise_but_keeps_the_frame():
    rng = np.random.default_rng(0)
    img = np.zeros((60, 80, 3), np.uint8)
    img[20:40, 30:50] = 255
    out, q, fx = degrade(img, Randomisation(motion_blur_p=1.0, noise_sigma=(3.0, 3.0)), rng)
    assert out.shape == img.shape and out.dtype == np.uint8 and 80 <= q <= 95
    assert "motion_blur" in fx and fx["noise_sigma"] == 3.0
    assert np.abs(out.astype(int) - img).mean() > 1.0


def test_domain_randomisation_moves_cameras_a_little_and_keeps_props_on_the_floor():
    from harness.datagen import clutter, jitter_cameras, lighting_preset
    from harness.paths import store_dir
    from runtime.store import load_store

    store = load_store(store_dir() / "small_convenience.yaml")
    rng = np.random.default_rng(1)
    j = jitter_cameras(store, rng, 0.04, 0.12)
    for a, b in zip(store.cameras, j.cameras):
        angle = np.degrees(np.arccos(np.clip((np.trace(a.R @ b.R.T) - 1) / 2, -1, 1)))
        assert 0 < angle < 10 and np.linalg.norm(np.subtract(a.position_m, b.position_m)) < 0.3
    props = clutter(store, rng, 12)
    assert len(props) == 12
    for m in props:
        lo, hi = m.bounds
        assert lo[0] > -0.05 and lo[1] > -0.05 and hi[0] < store.floor.width_m + 0.05 and hi[1] < store.floor.depth_m + 0.05
        assert lo[2] > -1e-6 and hi[2] < 2.6
    lights = {lighting_preset(Randomisation(), np.random.default_rng(s)).name for s in range(40)}
    assert lights == {"day", "evening", "flicker"}


def test_restocked_shelves_hold_every_sku_in_bins_it_fits_and_scenarios_follow_them():
    from harness.datagen import shuffle_planogram
    from harness.paths import store_dir
    from runtime.store import load_store, parse_store
    from sim.randomize import TripConfig, random_scenario

    store = load_store(store_dir() / "small_convenience.yaml")
    a = shuffle_planogram(store, np.random.default_rng(3))
    assert a.model_dump() == shuffle_planogram(store, np.random.default_rng(3)).model_dump()   # the seed decides
    parse_store(a.model_dump(), "restocked")            # the store file's own checks: every pack fits its bin
    assert set(a.planogram) == set(store.planogram)
    moved = sum(a.planogram[b].sku != store.planogram[b].sku for b in store.planogram)
    assert moved > 0.8 * len(store.planogram)
    assert {f.sku for f in a.planogram.values()} == {p.sku for p in store.catalog}   # 63 bins, 53 SKUs: all of them
    sc = random_scenario(a, "small_convenience", 11, 3, 30.0, TripConfig(), store_dir=store_dir(), own_spec=True)
    assert sc.spec is a      # the simulator stocks and shops the restocked shelves, not the file's


def test_product_crops_keep_full_resolution_and_every_box_inside(dataset: Path):
    import cv2

    d = yaml.safe_load((dataset / "products" / "data.yaml").read_text())
    assert list(d["names"].values()) == ["cola_classic_330", "cola_zero_330", "water_still_500", "crisps_salted_150"]
    imgs = sorted((dataset / "products" / "images" / "train").glob("*.jpg"))
    assert imgs
    for p in imgs[:40]:
        h, w = cv2.imread(str(p)).shape[:2]
        assert w <= 320 and h <= 320
        rows = _lines(dataset / "products" / "labels" / "train" / f"{p.stem}.txt")
        assert rows
        for cls, cx, cy, bw, bh in rows:
            assert 0 <= cls < 4 and 0 <= cx - bw / 2 + 1e-6 and cx + bw / 2 <= 1 + 1e-6 and cy + bh / 2 <= 1 + 1e-6


def test_person_close_ups_in_training_only_with_their_labels(dataset: Path, tmp_path: Path):
    """person_zoom=2: close-ups into pose/ train (not val), every label normalised, visible keypoints
    inside their crop; the same export with person_zoom=0 takes them away again."""
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds, symlinks=True)
    assert main(["datagen", f"out={ds}", *ARGS, "person_zoom=2"]) == 0
    zoom = sorted((ds / "pose" / "images" / "train").glob("*_z[0-9]*.jpg"))
    assert zoom, "close-ups were made"
    assert not list((ds / "pose" / "images" / "val").glob("*_z[0-9]*.jpg"))
    import cv2

    tallest = []
    for img in zoom:
        rows = _lines(ds / "pose" / "labels" / "train" / f"{img.stem}.txt")
        assert rows
        h, w = cv2.imread(str(img)).shape[:2]
        for row in rows:
            assert row[0] == 0 and all(0.0 <= v <= 1.0 for v in row[1:5])
            kps = np.array(row[5:]).reshape(17, 3)
            assert all(0.0 <= u <= 1.0 and 0.0 <= v <= 1.0 for u, v, vis in kps if vis == 2)
        tallest.append(max(row[4] for row in rows))
        assert w <= 640
    frames = [max(r[4] for r in _lines(p)) for p in (ds / "pose" / "labels" / "train").glob("*.txt")
              if "_z" not in p.stem and _lines(p)]
    assert np.mean(tallest) > 1.5 * np.mean(frames)      # people are larger in a close-up than in the frames
    assert "close-ups of people" in (ds / "README.md").read_text()
    assert main(["datagen", f"out={ds}", *ARGS]) == 0
    assert not list((ds / "pose" / "images" / "train").glob("*_z[0-9]*.jpg"))
