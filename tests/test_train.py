"""`storetwin train` on a tiny generated dataset, and the runtime loading what it ships.

Training and anything torch run in subprocesses, as the commands do: torch's compiler stack and
Mesa's llvmpipe (loaded by the renderer in other tests of this process) must not share a process.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.cli import main
from runtime.perception import OnnxDetector, decode, letterbox, load_model

ENV = {**os.environ, "YOLO_OFFLINE": "1"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    assert main(["datagen", f"out={data}", "store=tiny_unit", "shards=2", "duration_s=10", "shoppers=[1,2]",
                 "seed=3", "jobs=2"]) == 0
    out = {}
    for task, export in (("pose", "[onnx,openvino]"), ("detect", "[onnx]")):
        r = subprocess.run([sys.executable, "-m", "harness.cli", "train", f"task={task}", f"data={data}", "epochs=1",
                            "imgsz=128", "batch=8", "workers=0", f"out={root / 'models'}", "device=cpu", f"export={export}"],
                           capture_output=True, text=True, timeout=900, env=ENV, cwd=Path(__file__).parents[1])
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        out[task] = r.stdout
    return {"root": root, "data": data, "models": root / "models", "stdout": out}


def test_train_ships_weights_onnx_and_a_card(trained):
    m = trained["models"]
    for name, task in (("person_pose", "pose"), ("products", "detect")):
        assert (m / f"{name}.pt").is_file() and (m / f"{name}.onnx").is_file()
        assert (m / f"{name}.pt").stat().st_size < 15e6
        card = (m / f"{name}.md").read_text()
        assert "storetwin datagen" in card and f"storetwin train task={task}" in card
        assert "1 epochs at 128 px" in card and "Sim-to-real" in card
        scores = json.loads((m / f"{name}.scores.json").read_text())
        assert 0.0 <= scores["box_map50"] <= 1.0 and "sim_to_real" in scores
        if task == "pose":
            assert 0.0 <= scores["kpt_map50"] <= 1.0


def test_runtime_loads_the_onnx_models_and_runs_them_on_a_frame(trained):
    img = cv2.imread(str(next((trained["data"] / "detect" / "images" / "train").glob("*.jpg"))))
    for name, task, ncls in (("person_pose", "pose", 1), ("products", "detect", 4)):
        d = load_model(trained["models"] / f"{name}.onnx", conf=0.0)
        assert isinstance(d, OnnxDetector) and d.task == task and len(d.names) == ncls and d.imgsz == (128, 128)
        dets = d(img)
        assert dets, "conf=0: the untrained model still returns its top boxes"
        h, w = img.shape[:2]
        for det in dets:
            assert 0 <= det.box[0] <= det.box[2] <= w and 0 <= det.box[1] <= det.box[3] <= h
            assert (det.keypoints is not None) == (task == "pose")
            if task == "pose":
                assert det.keypoints.shape == (17, 3)


COMPARE = r"""
import json, sys
import cv2, numpy as np, torch
from ultralytics import YOLO
from runtime.perception import OnnxDetector, letterbox, load_model
pt, onnx, image = sys.argv[1:]
img = cv2.imread(image)
o = OnnxDetector(onnx, conf=0.05)
x, r, pad = letterbox(img, o.imgsz)
inp = np.ascontiguousarray(x[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
model = YOLO(pt).model.float().eval()
with torch.no_grad():
    raw_t = model(torch.from_numpy(inp))[0].numpy()
raw_o = o._run(inp)
t = load_model(pt, conf=0.05)
print(json.dumps({"raw_max_abs": float(np.abs(raw_t - raw_o).max()), "raw_scale": float(np.abs(raw_t).max()),
                  "onnx": [d.box.tolist() for d in o(img)[:5]], "torch": [d.box.tolist() for d in t(img)[:5]]}))
"""


def test_runtime_loads_the_openvino_export(trained):
    pytest.importorskip("openvino")
    folder = trained["models"] / "person_pose_openvino_model"
    img = cv2.imread(str(next((trained["data"] / "pose" / "images" / "train").glob("*.jpg"))))
    ov = load_model(folder, conf=0.0, fit=False)   # the ONNX export's fixed square, to compare like with like
    assert ov.dynamic                     # the person model's export takes each camera's shape
    onnx = load_model(trained["models"] / "person_pose.onnx", conf=0.0)
    a, b = ov(img)[:5], onnx(img)[:5]
    assert a and len(a) == len(b)
    for x, y in zip(a, b):
        assert np.abs(x.box - y.box).max() < 2.0 and abs(x.score - y.score) < 0.02


def test_onnx_and_torch_give_the_same_outputs(trained):
    img = next((trained["data"] / "detect" / "images" / "train").glob("*.jpg"))
    m = trained["models"]
    r = subprocess.run([sys.executable, "-c", COMPARE, str(m / "person_pose.pt"), str(m / "person_pose.onnx"), str(img)],
                       capture_output=True, text=True, timeout=300, env=ENV, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["raw_max_abs"] <= 1e-3 * max(1.0, res["raw_scale"]), res
    for a, b in zip(res["onnx"], res["torch"]):
        assert np.abs(np.array(a) - np.array(b)).max() < 3.0, res


def test_resume_after_the_last_epoch_ships_again_without_training(trained):
    m = trained["models"]
    before = (m / "runs" / "person_pose" / "weights" / "last.pt").stat().st_mtime_ns
    r = subprocess.run([sys.executable, "-m", "harness.cli", "train", "task=pose", f"data={trained['data']}", "epochs=1",
                        "imgsz=128", "batch=8", "workers=0", f"out={m}", "device=cpu", "export=[onnx]", "resume=true"],
                       capture_output=True, text=True, timeout=600, env=ENV, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    assert (m / "runs" / "person_pose" / "weights" / "last.pt").stat().st_mtime_ns == before, "no training"
    card = (m / "person_pose.md").read_text()
    assert "resume=true" not in card and "storetwin train task=pose" in card, "the card keeps the command that trained it"


def test_evaluate_model_scores_a_shipped_model_on_a_dataset(trained, tmp_path):
    out = tmp_path / "scores.json"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "evaluate-model", f"model={trained['models'] / 'products.pt'}",
                        f"data={trained['data']}", "imgsz=128", f"json={out}"],
                       capture_output=True, text=True, timeout=600, env=ENV, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(out.read_text())
    assert s["layout"] == "products" and s["splits"] == ["train", "val"] and 0 <= s["box_map50"] <= 1
    assert set(s["lookalike_recall"]) == {"cola_can_330"}, "the tiny store's look-alike pair is reported"
    assert "box mAP50" in r.stdout and "look-alikes cola_can_330" in r.stdout


def test_quantize_ships_an_int8_model_the_runtime_loads(trained):
    """storetwin quantize: NNCF post-training INT8 of the tiny pose model, calibrated on the dataset's
    images; the runtime loads it like the float model, and its boxes are close to the float ones."""
    pytest.importorskip("nncf")
    m = trained["models"]
    r = subprocess.run([sys.executable, "-m", "harness.cli", "quantize", f"model={m / 'person_pose.pt'}",
                        f"data={trained['data']}", "imgsz=128"],
                       capture_output=True, text=True, timeout=900, env=ENV, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    folder = m / "person_pose_int8_openvino_model"
    assert any(folder.glob("*.xml")) and not list(m.glob(".*partial"))
    card = (m / "person_pose_int8.md").read_text()
    assert "storetwin quantize model=" in card and "calibration:" in card
    ops = {op.get_type_name() for op in __import__("openvino").Core().read_model(next(folder.glob("*.xml"))).get_ops()}
    assert "FakeQuantize" in ops or "FakeConvert" in ops, "the graph carries the INT8 quantisation"
    img = cv2.imread(str(next((trained["data"] / "pose" / "images" / "train").glob("*.jpg"))))
    q = load_model(folder, conf=0.0)
    f = load_model(m / "person_pose_openvino_model", conf=0.0)
    assert q.task == "pose" and q.imgsz == f.imgsz
    assert q(img) and f(img)


def test_quantize_refuses_what_it_cannot_use(trained, capsys, tmp_path):
    assert main(["quantize", f"model={trained['models'] / 'person_pose.onnx'}", f"data={trained['data']}"]) == 2
    assert "expected a trained Ultralytics .pt" in capsys.readouterr().err
    assert main(["quantize", f"model={trained['models'] / 'person_pose.pt'}", f"data={tmp_path}"]) == 2
    assert "datagen" in capsys.readouterr().err


def test_decode_maps_letterboxed_boxes_back_to_the_frame():
    img = np.zeros((480, 640, 3), np.uint8)
    x, r, pad = letterbox(img, (320, 320))
    assert x.shape == (320, 320, 3) and r == 0.5 and pad == (0, 40)
    # one box of class 1 at (100, 100)-(200, 160) in the frame → letterboxed centre/size
    cx, cy, w, h = 150 * r + pad[0], 130 * r + pad[1], 100 * r, 60 * r
    pred = np.zeros((4 + 2, 3), np.float32)
    pred[:, 0] = [cx, cy, w, h, 0.1, 0.9]
    pred[:, 1] = [cx + 1, cy, w, h, 0.1, 0.8]     # a duplicate: suppressed
    pred[:, 2] = [10, 10, 4, 4, 0.01, 0.01]       # below the threshold
    dets = decode(pred, "detect", {0: "person", 1: "cola"}, r, pad, img.shape[:2], conf=0.25, iou=0.5)
    assert len(dets) == 1 and dets[0].label == "cola" and np.allclose(dets[0].box, [100, 100, 200, 160], atol=1e-3)


def test_bad_train_settings_are_one_line_errors(tmp_path, capsys):
    for bad in ("task=segment", "imgsz=100", f"data={tmp_path}", "export=[tflite]"):
        assert main(["train", bad]) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), err


def test_evaluate_model_split_is_checked_before_any_work(capsys):
    assert main(["evaluate-model", "model=models/person_pose.pt", "data=tests", "split=test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "split=test" in err[0] and "val" in err[0], err


def test_key_value_commands_name_a_bad_argument_in_one_line(capsys):
    for argv in (["quantize", "models/person_pose.pt"], ["evaluate-model", "model=m.pt", "data=d", "sizes=3"],
                 ["table", "runs"], ["coverage", "shop=tiny_unit"], ["quantize", "data=d"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "usage: storetwin" in err[0], err
        assert (argv[-1].partition("=")[0] in err[0]) or "missing model=" in err[0], err
