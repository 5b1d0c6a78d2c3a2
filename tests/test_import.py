"""`storetwin import` on tiny COCO-keypoints sets drawn here (stick figures on a background), training
on the union of two datasets from given weights, and the runtime taking the result as its person model.

Training and anything torch run in subprocesses, as the commands do (see tests/test_train.py).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from harness.cli import main
from harness.coco_import import FLIP_IDX
from runtime.perception import Detector, decode, person_model
from twin.bodies import COCO_KEYPOINTS

ENV = {**os.environ, "YOLO_OFFLINE": "1"}
ROOT = Path(__file__).parents[1]
W, H = 160, 120            # not square: x is divided by the width, y by the height

# A standing figure, COCO's 17 keypoints as (dx, dy) in units of its height from the top centre;
# "left" is the person's left.
FIGURE = np.array([(0, .07), (.025, .05), (-.025, .05), (.05, .06), (-.05, .06), (.11, .2), (-.11, .2),
                   (.15, .36), (-.15, .36), (.17, .5), (-.17, .5), (.07, .52), (-.07, .52), (.08, .74),
                   (-.08, .74), (.09, .96), (-.09, .96)])
LIMBS = [(5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16)]


def figure(cx: float, top: float, height: float) -> tuple[list[float], np.ndarray]:
    """A person's COCO box (x, y, w, h) and keypoints (17 × x, y) at ``cx``, ``top``, ``height`` pixels."""
    kp = np.column_stack([cx + FIGURE[:, 0] * height, top + FIGURE[:, 1] * height])
    return [cx - 0.2 * height, top, 0.4 * height, height], kp


def draw(img: np.ndarray, kp: np.ndarray, colour: tuple[int, int, int]) -> None:
    for a, b in LIMBS:
        cv2.line(img, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]), colour, 2)
    cv2.circle(img, (int(kp[0, 0]), int(kp[0, 1] - 2)), 5, colour, -1)


def person(ann_id: int, image_id: int, box: list[float], kp: np.ndarray, vis: list[int] | None = None,
           **extra) -> dict:
    vis = [2] * 17 if vis is None else vis
    flat = []
    for (u, v), s in zip(kp, vis):
        flat += [round(float(u), 2), round(float(v), 2), s] if s else [0, 0, 0]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": [round(float(b), 2) for b in box],
            "keypoints": flat, "num_keypoints": sum(1 for s in vis if s), "iscrowd": 0,
            "area": box[2] * box[3], **extra}


def coco_set(folder: Path, seed: int, scenes: list[list[dict]], image_dir: str = "images",
             json_name: str = "person_keypoints.json", start_id: int = 1) -> Path:
    """Write ``scenes`` (per image, a list of persons: cx, top, height and optional vis / iscrowd) as
    JPEGs under ``folder/image_dir`` and a COCO keypoints JSON ``folder/annotations/json_name``."""
    rng = np.random.default_rng(seed)
    (folder / image_dir).mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(exist_ok=True)
    images, anns = [], []
    for i, scene in enumerate(scenes):
        iid = start_id + i
        img = np.full((H, W, 3), rng.integers(40, 200, 3), np.uint8)
        img = cv2.add(img, rng.integers(0, 30, (H, W, 3), dtype=np.uint8))
        for p in scene:
            box, kp = figure(p["cx"], p["top"], p["height"])
            draw(img, kp, tuple(int(c) for c in rng.integers(0, 255, 3)))
            extra = {"iscrowd": 1} if p.get("crowd") else {}
            anns.append(person(len(anns) + 100 * iid, iid, box, kp, p.get("vis"), **extra))
        name = f"{seed:02d}_{i:03d}.jpg"
        cv2.imwrite(str(folder / image_dir / name), img)
        images.append({"id": iid, "file_name": name, "width": W, "height": H})
    cats = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS),
             "skeleton": [[16, 14], [14, 12]]},
            {"id": 18, "name": "dog", "supercategory": "animal"}]
    anns.append({"id": 99999, "image_id": start_id, "category_id": 18, "bbox": [1, 1, 5, 5], "iscrowd": 0, "area": 25})
    path = folder / "annotations" / json_name
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": anns, "categories": cats}))
    return path


HIDDEN = [2] * 17
HIDDEN[9], HIDDEN[15] = 1, 0          # left wrist labelled but hidden, left ankle not labelled

# set A: every case the import decides on
SCENES_A = [
    [{"cx": 50, "top": 10, "height": 90, "vis": HIDDEN}, {"cx": 115, "top": 20, "height": 80}],   # 2 persons
    [{"cx": 70, "top": 15, "height": 95}, {"cx": 130, "top": 5, "height": 100, "crowd": True}],   # a crowd left out
    [{"cx": 40, "top": 10, "height": 90, "vis": [0] * 17}, {"cx": 110, "top": 12, "height": 92}],  # 0 keypoints: left out
    [{"cx": 80, "top": 10, "height": 100, "crowd": True}],      # only a crowd: the image is dropped
    [],                                                          # nobody: a background image
    [{"cx": 150, "top": 30, "height": 100}],                     # runs off the right and bottom edges: clipped
]


def scenes_b(n: int, seed: int) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    return [[{"cx": float(rng.uniform(35, 125)), "top": float(rng.uniform(5, 20)), "height": float(rng.uniform(80, 100))}]
            for _ in range(n)]


def labels(folder: Path) -> dict[str, list[np.ndarray]]:
    """Each label file of an imported dataset (by file stem) as arrays of its rows."""
    out = {}
    for split in ("train", "val"):
        for f in (folder / "pose" / "labels" / split).glob("*.txt"):
            out[f.stem] = [np.array(ln.split(), float) for ln in f.read_text().splitlines()]
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("import")
    src_a = coco_set(root / "coco_a", 1, SCENES_A)
    out_a = root / "data" / "coco_a"
    assert main(["import", f"src={src_a}", f"out={out_a}", "val_fraction=0.34"]) == 0
    # set B as COCO itself comes: annotations/ with a train and a val file beside train2017/ and val2017/
    coco_set(root / "coco_b", 2, scenes_b(6, 2), "train2017", "person_keypoints_train2017.json")
    coco_set(root / "coco_b", 3, scenes_b(3, 3), "val2017", "person_keypoints_val2017.json", start_id=50)
    out_b = root / "data" / "coco_b"
    assert main(["import", f"src={root / 'coco_b'}", f"out={out_b}", "link=hardlink"]) == 0
    return {"root": root, "src_a": src_a, "a": out_a, "b": out_b}


def test_labels_are_normalised_boxes_and_keypoints_with_coco_visibility(imported):
    coco = json.loads(imported["src_a"].read_text())
    got = labels(imported["a"])
    assert set(got) == {"01_000", "01_001", "01_002", "01_004", "01_005"}, "01_003 shows only a crowd: dropped"
    rows = got["01_000"]
    assert len(rows) == 2 and all(len(r) == 5 + 17 * 3 for r in rows)
    a = coco["annotations"][0]                     # the first person of the first image
    x, y, w, h = a["bbox"]
    row = next(r for r in rows if abs(r[1] - (x + w / 2) / W) < 1e-5)
    assert row[0] == 0
    assert np.allclose(row[1:5], [(x + w / 2) / W, (y + h / 2) / H, w / W, h / H], atol=1e-6)
    kp = np.array(a["keypoints"], float).reshape(17, 3)
    k = row[5:].reshape(17, 3)
    assert np.allclose(k[:, 0], np.where(kp[:, 2] > 0, kp[:, 0] / W, 0), atol=1e-6)
    assert np.allclose(k[:, 1], np.where(kp[:, 2] > 0, kp[:, 1] / H, 0), atol=1e-6)
    assert k[9, 2] == 1 and k[15].tolist() == [0, 0, 0] and k[0, 2] == 2, "COCO's 0 / 1 / 2 kept"
    assert len(got["01_001"]) == 1, "the crowd next to the person is left out"
    assert len(got["01_002"]) == 1, "the person with no labelled keypoint is left out"
    assert got["01_004"] == [], "an image with nobody in it stays, as a background image"
    edge = got["01_005"][0]                        # box 130…170 × 30…130 clipped to the 160 × 120 image
    assert np.allclose(edge[1:5], [(130 + 160) / 2 / W, (30 + 120) / 2 / H, 30 / W, 90 / H], atol=1e-6)
    ek = edge[5:].reshape(17, 3)
    assert (ek[:, :2] <= 1).all() and ek[16].tolist() == [0, 0, 0], "a keypoint outside the image is not labelled"


def test_layout_yaml_and_manifest_are_what_train_reads(imported):
    a, b = imported["a"], imported["b"]
    y = yaml.safe_load((a / "pose" / "data.yaml").read_text())
    assert y["kpt_shape"] == [17, 3] and y["names"] == {0: "person"} and y["train"] == "images/train"
    assert y["flip_idx"] == FLIP_IDX == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    m = json.loads((a / "import.json").read_text())
    assert m["command"].startswith("storetwin import src=") and m["counts"]["train"]["images"] + m["counts"]["val"]["images"] == 5
    assert m["skipped"] == {"crowds": 2, "persons with too few keypoints (min_keypoints=1)": 1, "annotations of other categories": 1,
                            "images whose persons were all left out": 1}
    assert m["counts"]["val"]["images"] == round(5 * 0.34), "val_fraction of the kept images"
    for split in ("train", "val"):      # every image has its label file, and the other way round
        imgs = {p.stem for p in (a / "pose" / "images" / split).glob("*.jpg")}
        assert imgs == {p.stem for p in (a / "pose" / "labels" / split).glob("*.txt")}
    # set B kept COCO's own split from its files' names, and hard-linked its images
    assert len(list((b / "pose" / "images" / "train").glob("*.jpg"))) == 6
    assert len(list((b / "pose" / "images" / "val").glob("*.jpg"))) == 3
    assert next((b / "pose" / "images" / "val").glob("*.jpg")).stat().st_nlink == 2
    assert "train, val" in json.loads((b / "import.json").read_text())["split"]


def test_keypoints_listed_in_another_order_come_out_in_cocos(tmp_path):
    src = coco_set(tmp_path / "c", 4, [[{"cx": 80, "top": 10, "height": 100}]])
    coco = json.loads(src.read_text())
    order = list(range(17))[::-1]              # the file names them backwards, and lists them so
    coco["categories"][0]["keypoints"] = [COCO_KEYPOINTS[i] for i in order]
    kp = np.array(coco["annotations"][0]["keypoints"]).reshape(17, 3)
    coco["annotations"][0]["keypoints"] = kp[order].reshape(-1).tolist()
    src.write_text(json.dumps(coco))
    assert main(["import", f"src={src}", f"out={tmp_path / 'out'}", "val_fraction=0"]) == 0
    row = labels(tmp_path / "out")["04_000"][0]
    assert np.allclose(row[5:].reshape(17, 3)[:, 0], kp[:, 0] / W, atol=1e-6), "nose first, right ankle last"


def _one_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "import:" not in ln]   # not the progress bar
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_bad_input_is_one_line_naming_file_and_field_and_leaves_nothing(tmp_path, capsys):
    good = coco_set(tmp_path / "c", 5, [[{"cx": 60, "top": 10, "height": 90}], [{"cx": 90, "top": 10, "height": 90}]])
    coco = json.loads(good.read_text())
    bad = tmp_path / "bad"
    bad.mkdir()

    def variant(name: str, change) -> Path:
        d = json.loads(json.dumps(coco))
        change(d)
        (bad / name).write_text(json.dumps(d))
        return bad / name

    cases = [
        (tmp_path / "nowhere.json", ["nowhere.json", "no such file"]),
        (variant("no_annotations.json", lambda d: d.pop("annotations")), ["no_annotations.json", "'annotations'"]),
        (variant("detect.json", lambda d: [c.pop("keypoints", None) for c in d["categories"]]),
         ["detect.json", "'keypoints'"]),
        (variant("kp15.json", lambda d: d["categories"][0].update(keypoints=list(COCO_KEYPOINTS[:15]))),
         ["kp15.json", "15 keypoints", "17"]),
        (variant("missing_image.json", lambda d: d["images"].append({**d["images"][0], "id": 7, "file_name": "gone.jpg"})),
         ["missing_image.json", "gone.jpg", "not on disk"]),
    ]
    for src, words in cases:
        out = tmp_path / "out"
        assert main(["import", f"src={src}", f"out={out}", f"images={good.parent.parent / 'images'}"]) == 2, src
        err = _one_error(capsys)
        assert all(w in err for w in words), (words, err)
        assert not out.exists() and not list(tmp_path.glob(".out*")), "nothing half-written"
    # a broken image is found while the others are being copied: the partial folder goes too
    (good.parent.parent / "images" / "05_001.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert main(["import", f"src={good}", f"out={out}"]) == 2
    assert "05_001.jpg" in _one_error(capsys)
    assert not out.exists() and not list(tmp_path.glob(".out*")), "nothing half-written"
    # and an existing dataset is never written over
    out.mkdir()
    assert main(["import", f"src={good}", f"out={out}"]) == 2 and "already exists" in _one_error(capsys)


def test_bad_data_lists_and_init_weights_are_one_line_errors(imported, tmp_path, capsys):
    import shutil

    a, b = imported["a"], imported["b"]
    other = tmp_path / "other"                  # a dataset of other classes
    shutil.copytree(b, other)
    y = yaml.safe_load((other / "pose" / "data.yaml").read_text())
    (other / "pose" / "data.yaml").write_text(yaml.safe_dump({**y, "names": {0: "shopper"}}))
    for args, words in (([f"data=[{a},{tmp_path}]"], [str(tmp_path), "pose/data.yaml"]),
                        ([f"data=[{a},{a}]"], ["listed twice"]),
                        ([f"data=[{a},{other}]"], ["differ in their classes"]),
                        ([f"data={a}", f"init={tmp_path / 'none.pt'}"], ["none.pt", ".pt"]),
                        ([f"data={a}", f"init={a / 'README.md'}"], ["README.md", ".pt"]),
                        ([f"data={a}", f"init={tmp_path / 'w.pt'}", "model=yolov8s-pose.yaml"], ["give one of them"])):
        assert main(["train", *args]) == 2, args
        err = _one_error(capsys)
        assert all(w in err for w in words), (words, err)


class _Fake(Detector):
    def __init__(self, task, names, kpt_shape):
        self.task, self.names, self.kpt_shape = task, names, kpt_shape


def test_person_model_takes_any_coco_pose_model_and_refuses_others():
    d = person_model(_Fake("pose", {0: "0"}, (17, 3)))
    assert d.names == {0: "person"}, "class 0 of a model built from an architecture file is the person"
    assert person_model(_Fake("pose", {0: "person", 1: "dog"}, (17, 3))).names == {0: "person", 1: "dog"}
    for fake, words in ((_Fake("detect", {0: "person"}, None), "a detect model"),
                        (_Fake("pose", {0: "person"}, (5, 3)), "kpt_shape [5, 3]"),
                        (_Fake("pose", {0: "person"}, (17, 2)), "kpt_shape [17, 2]"),
                        (_Fake("pose", {0: "person"}, None), "does not say its keypoints")):
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            person_model(fake, "m.onnx")


def test_decode_takes_an_end_to_end_output():
    """YOLO26 (or an export with its NMS): rows of x0, y0, x1, y1, score, class, 17 × (x, y, conf)."""
    r, pad = 0.5, (0, 40)
    rows = np.zeros((3, 6 + 51), np.float32)
    rows[0, :6] = [50, 90, 100, 120, 0.9, 0]
    rows[0, 6:] = np.tile([75, 100, 0.8], 17)
    rows[1, :6] = [10, 50, 20, 60, 0.1, 0]       # below the threshold
    dets = decode(rows, "pose", {0: "person"}, r, pad, (480, 640), conf=0.25, iou=0.5, suppressed=True)
    assert len(dets) == 1 and np.allclose(dets[0].box, [100, 100, 200, 160])
    assert dets[0].keypoints.shape == (17, 3) and np.allclose(dets[0].keypoints[0], [150, 120, 0.8])


RUNTIME = r"""
import json, sys
import cv2, torch
from ultralytics import YOLO
from runtime.perception import load_person_model
pt, detect_pt, last, image = sys.argv[1:]
args = torch.load(last, map_location="cpu", weights_only=False)["train_args"]
YOLO("yolov8n.yaml").save(detect_pt)        # a detection model, untrained: not a person model
d = load_person_model(pt, conf=0.0)
dets = d(cv2.imread(image))
try:
    load_person_model(detect_pt)
    refused = ""
except ValueError as e:
    refused = str(e)
print(json.dumps({"task": d.task, "names": d.names, "n": len(dets), "labels": sorted({x.label for x in dets}),
                  "kpts": list(dets[0].keypoints.shape) if dets else None, "refused": refused,
                  "init": args["model"], "data": args["data"]}))
"""


def _storetwin(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout,
                       env=ENV, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def test_train_from_init_on_two_datasets_and_the_runtime_runs_the_result(imported, tmp_path):
    """Tiny weights trained on one imported set, then trained further on the union of both; the card
    names both datasets and the init weights, and the runtime's person-model path runs the result."""
    a, b, models = imported["a"], imported["b"], tmp_path / "models"
    common = ["task=pose", "epochs=1", "imgsz=64", "batch=4", "workers=0", "device=cpu", "export=[]", "val=false",
              f"out={models}"]
    _storetwin("train", *common, f"data={b}", "name=first")
    init = models / "first.pt"
    _storetwin("train", *common, f"data=[{a},{b}]", f"init={init}", "name=second")
    card = (models / "second.md").read_text()
    assert f"`{a}/pose`" in card and f"`{b}/pose`" in card and "imported by `storetwin import`" in card
    assert f"initial weights: `{init}`" in card and "trained further" in card and "no real images" not in card
    assert card.count("storetwin import src=") == 2 and f"data=[{a},{b}]" in card
    run = models / "runs" / "second"
    union = yaml.safe_load((run / "data.yaml").read_text())
    assert union["train"] == [str(a / "pose" / "images" / "train"), str(b / "pose" / "images" / "train")]
    assert union["kpt_shape"] == [17, 3] and union["flip_idx"] == FLIP_IDX
    scores = json.loads((models / "second.scores.json").read_text())
    assert set(scores["per_dataset"]) == {str(a), str(b)} and scores["images"] == sum(
        v["images"] for v in scores["per_dataset"].values())
    # the runtime's person-model path runs it, and refuses a detection model
    image = next((a / "pose" / "images" / "train").glob("*.jpg"))
    r = subprocess.run([sys.executable, "-c", RUNTIME, str(models / "second.pt"), str(tmp_path / "detect.pt"),
                        str(run / "weights" / "last.pt"), str(image)],
                       capture_output=True, text=True, timeout=120, env=ENV, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["task"] == "pose" and res["names"] == {"0": "person"} and res["n"] > 0
    assert res["labels"] == ["person"] and res["kpts"] == [17, 3]
    assert "a detect model" in res["refused"]
    assert res["init"] == str(init) and res["data"] == str(run / "data.yaml"), "trained from the init weights, on the union"
