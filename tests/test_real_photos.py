"""The hand-labelled real photographs (benchmarks/real_photos/people.json) and the figures scored on
them: the label file loads as COCO keypoints and every photograph is found in its package; recall,
precision and PCK on hand-made predictions, written as arithmetic; the shipped person model run
through the command (in a subprocess: torch does not share a process with the renderer's tests)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.real_photos import (KEYPOINT_GROUPS, LABELS, LabelledPerson, PersonPredictions, RealPhoto,
                                 RealPhotoMetric, box_iou, greedy_match, load_labels)

ROOT = Path(__file__).parents[1]
COCO_KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle"]


# -- the label file ---------------------------------------------------------------------------------
def test_the_label_file_is_coco_keypoints_with_17_points_and_boxes_inside_the_images():
    doc = json.loads(LABELS.read_text())
    assert [c["name"] for c in doc["categories"]] == ["person"]
    assert doc["categories"][0]["keypoints"] == COCO_KEYPOINTS
    images = {im["id"]: im for im in doc["images"]}
    assert len(images) == len(doc["images"]) and {im["file_name"] for im in images.values()} == {
        "bus.jpg", "zidane.jpg", "astronaut.png", "camera.png"}
    ids = [a["id"] for a in doc["annotations"]]
    assert len(set(ids)) == len(ids)
    for a in doc["annotations"]:
        im = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert a["category_id"] == 1 and a["iscrowd"] == 0 and w > 0 and h > 0
        assert 0 <= x and 0 <= y and x + w <= im["width"] and y + h <= im["height"], (im["file_name"], a["bbox"])
        assert a["area"] == w * h
        k = np.array(a["keypoints"], float).reshape(17, 3)        # 51 numbers: x, y, v for each of 17
        assert set(k[:, 2]) <= {0, 1, 2} and a["num_keypoints"] == int((k[:, 2] > 0).sum())
        assert np.all(k[k[:, 2] == 0, :2] == 0), "an unlabelled keypoint is (0, 0, 0), as in COCO"
        on = k[k[:, 2] > 0]
        assert np.all((on[:, 0] >= x) & (on[:, 0] <= x + w) & (on[:, 1] >= y) & (on[:, 1] <= y + h)), \
            f"{im['file_name']} person {a['id']}: a keypoint outside the person's box"
    assert len(doc["annotations"]) == 8


def test_every_photograph_is_found_in_its_installed_package_and_is_the_one_labelled():
    photos = load_labels()
    assert {p.package for p in photos} == {"ultralytics", "skimage"}
    for p in photos:
        f = p.locate()
        assert f.is_file() and p.package in f.parts, f
        img = p.read()                                          # checks the SHA-256 and the size
        assert img.shape == (p.height, p.width, 3) and img.dtype == np.uint8
        assert not (ROOT / "benchmarks" / "real_photos" / p.file_name).exists(), "no photograph copied here"


def test_a_photograph_that_is_not_the_one_labelled_is_refused():
    p = load_labels()[0]
    other = RealPhoto(p.file_name, p.package, p.path, p.width, p.height, "0" * 64, p.people)
    with pytest.raises(ValueError, match="not the photograph that was labelled"):
        other.read()
    with pytest.raises(FileNotFoundError, match="not installed"):
        RealPhoto("x.jpg", "no_such_package_here", "x.jpg", 1, 1, "", ()).locate()


# -- the figures on hand-made predictions -------------------------------------------------------------
def _person(x0: float, y0: float, torso: float = 100.0, width: float = 80.0) -> LabelledPerson:
    """A standing person whose box starts at (x0, y0), all 17 keypoints labelled as visible:
    shoulders 50 px below the top of the box and the hips ``torso`` px below them."""
    cx = x0 + width / 2
    k = np.zeros((17, 3))
    k[:, 2] = 2
    k[0, :2] = (cx, y0 + 20)
    k[1, :2], k[2, :2], k[3, :2], k[4, :2] = (cx + 5, y0 + 15), (cx - 5, y0 + 15), (cx + 10, y0 + 18), (cx - 10, y0 + 18)
    sh, hp = y0 + 50, y0 + 50 + torso
    k[5, :2], k[6, :2] = (cx + 25, sh), (cx - 25, sh)
    k[7, :2], k[8, :2] = (cx + 30, sh + 50), (cx - 30, sh + 50)
    k[9, :2], k[10, :2] = (cx + 30, sh + 95), (cx - 30, sh + 95)
    k[11, :2], k[12, :2] = (cx + 15, hp), (cx - 15, hp)
    k[13, :2], k[14, :2] = (cx + 15, hp + 60), (cx - 15, hp + 60)
    k[15, :2], k[16, :2] = (cx + 15, hp + 120), (cx - 15, hp + 120)
    return LabelledPerson(np.array([x0, y0, x0 + width, hp + 130]), k)


def _photo(*people: LabelledPerson) -> RealPhoto:
    return RealPhoto("tiny.jpg", "tiny", "tiny.jpg", 1000, 1000, "", tuple(people))


def _perfect(photo: RealPhoto) -> PersonPredictions:
    return PersonPredictions(np.array([p.box_xyxy for p in photo.people]), np.ones(len(photo.people)),
                             np.array([p.keypoints[:, :2] for p in photo.people]))


def test_torso_is_mid_shoulders_to_mid_hips_and_missing_without_a_shoulder_or_a_hip():
    p = _person(0, 0, torso=100)
    assert p.torso_px == pytest.approx(100)
    k = p.keypoints.copy()
    k[6, 2] = 0                                  # one shoulder: the other's own distance to mid-hips
    assert LabelledPerson(p.box_xyxy, k).torso_px == pytest.approx(np.hypot(25, 100))
    k[11:13, 2] = 0                              # no hip: a portrait cut at the chest
    assert LabelledPerson(p.box_xyxy, k).torso_px is None


def test_perfect_predictions_give_recall_precision_and_pck_of_one():
    photo = _photo(_person(0, 0), _person(300, 100))
    m = RealPhotoMetric()
    m.update(photo, _perfect(photo))
    r = m.compute()
    assert (r["recall"], r["precision"], r["found"], r["detections"]) == (1.0, 1.0, 2, 2)
    assert r["pck"] == dict.fromkeys([*KEYPOINT_GROUPS, "all"], 1.0)
    assert r["pck_keypoints"] == 2 * 17 and r["pck_people"] == 2
    assert r["images"]["tiny.jpg"]["recall"] == 1.0


def test_the_shipped_labels_scored_against_themselves_give_one():
    """Every labelled person with a torso and keypoints counts; the rest only for recall."""
    m = RealPhotoMetric()
    photos = load_labels()
    for photo in photos:
        m.update(photo, _perfect(photo))
    r = m.compute()
    with_torso = [p for ph in photos for p in ph.people if p.torso_px is not None]
    assert r["recall"] == 1.0 and r["precision"] == 1.0 and r["pck"]["all"] == 1.0
    assert r["pck_people"] == len(with_torso) == 4          # the three walkers of bus.jpg and the cameraman
    assert r["pck_keypoints"] == sum(int((p.keypoints[:, 2] > 0).sum()) for p in with_torso) == 16 + 16 + 7 + 11
    assert r["matched_without_torso"] == 3                   # the portraits: zidane.jpg's two, the astronaut


def test_a_box_shifted_by_half_its_width_is_missed():
    photo = _photo(_person(0, 0))
    pred = _perfect(photo)
    w = photo.people[0].box_xyxy[2] - photo.people[0].box_xyxy[0]
    shifted = PersonPredictions(pred.boxes_xyxy + [w / 2, 0, w / 2, 0], pred.scores, pred.keypoints)
    assert box_iou(photo.people[0].box_xyxy, shifted.boxes_xyxy)[0, 0] == pytest.approx((w / 2) / (w + w / 2))  # 1/3
    m = RealPhotoMetric()
    s = m.update(photo, shifted)
    assert (s.found, s.detections) == (0, 1)
    r = m.compute()
    assert r["recall"] == 0.0 and r["precision"] == 0.0 and r["pck"]["all"] is None and r["pck_keypoints"] == 0


def test_a_keypoint_03_torso_away_is_wrong_and_01_torso_away_is_right():
    photo = _photo(_person(0, 0, torso=100))
    pred = _perfect(photo)
    kp = pred.keypoints.copy()
    kp[0, 9] += (0.3 * 100, 0)                   # left wrist 30 px off: wrong
    kp[0, 10] += (0, 0.1 * 100)                  # right wrist 10 px off: right
    kp[0, 0] += (0.3 * 100 * 0.6, 0.3 * 100 * 0.8)  # nose 30 px off, diagonally: wrong
    kp[0, 15] += (0.2 * 100 - 1e-6, 0)           # left ankle just inside 0.2 torso: right
    m = RealPhotoMetric()
    m.update(photo, PersonPredictions(pred.boxes_xyxy, pred.scores, kp))
    pck = m.compute()["pck"]
    assert pck["wrists"] == 1 / 2 and pck["head"] == 4 / 5 and pck["ankles"] == 1.0 and pck["knees"] == 1.0
    assert pck["all"] == pytest.approx((17 - 2) / 17)


def test_unmatched_people_count_against_recall_only_and_extra_detections_against_precision():
    a, b, c = _person(0, 0), _person(300, 0), _person(600, 0)
    photo = _photo(a, b, c)
    pred = _perfect(_photo(a, b))                # c is not found
    far = PersonPredictions(np.array([[900, 900, 950, 990]]), np.array([0.9]), np.zeros((1, 17, 2)))
    both = PersonPredictions(np.vstack([pred.boxes_xyxy, far.boxes_xyxy]), np.r_[pred.scores, far.scores],
                             np.vstack([pred.keypoints, far.keypoints]))
    m = RealPhotoMetric()
    m.update(photo, both)
    r = m.compute()
    assert r["recall"] == 2 / 3 and r["precision"] == 2 / 3
    assert r["pck"]["all"] == 1.0 and r["pck_keypoints"] == 2 * 17 and r["pck_people"] == 2


def test_matching_is_one_to_one_highest_iou_first():
    truth = np.array([[0, 0, 100, 100], [10, 0, 110, 100]], float)
    pred = np.array([[10, 0, 110, 100]], float)  # IoU 1 with the second, 0.82 with the first
    assert greedy_match(truth, pred) == [(1, 0)]
    pred2 = np.array([[10, 0, 110, 100], [0, 0, 100, 100]], float)
    assert greedy_match(truth, pred2) == [(0, 1), (1, 0)]
    assert greedy_match(truth, np.zeros((0, 4))) == [] and greedy_match(np.zeros((0, 4)), pred) == []


def test_a_detector_without_keypoints_gets_recall_and_precision_only():
    photo = _photo(_person(0, 0))
    m = RealPhotoMetric()
    m.update(photo, PersonPredictions(_perfect(photo).boxes_xyxy, np.ones(1)))
    r = m.compute(pose=False)
    assert r["recall"] == 1.0 and "pck" not in r


# -- the shipped model, through the command -----------------------------------------------------------
def test_the_shipped_person_model_on_the_real_photographs(tmp_path):
    """It was trained on rendered people only and finds few real ones: the figures are computed and
    in range, and the contact sheet is written."""
    out, sheet = tmp_path / "real.json", tmp_path / "real.jpg"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "evaluate-model", "model=models/person_pose.pt", "real=true",
                        "imgsz=320", f"json={out}", f"sheet={sheet}"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "YOLO_OFFLINE": "1"}, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(out.read_text())
    assert s["pose"] and s["people"] == 8 and s["imgsz"] == 320 and s["conf"] == 0.25
    assert set(s["images"]) == {"bus.jpg", "zidane.jpg", "astronaut.png", "camera.png"}
    assert 0 <= s["found"] <= s["people"] and s["recall"] == s["found"] / s["people"]
    assert s["precision"] is None or 0 <= s["precision"] <= 1
    assert s["detections"] == sum(v["detections"] for v in s["images"].values())
    for v in s["pck"].values():
        assert v is None or 0 <= v <= 1
    assert "person recall" in r.stdout and "PCK@0.2 torso" in r.stdout
    img = cv2.imread(str(sheet))
    assert img is not None and img.shape[1] == 2 * 480
