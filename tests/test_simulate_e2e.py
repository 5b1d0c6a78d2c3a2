"""End to end on the tiny store: `storetwin simulate` writes streams, ground truth and a sheet."""
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.cli import main

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny_pick"
    assert main(["simulate", f"scenario={HERE / 'scenarios' / 'tiny_pick.yaml'}", f"out={out}"]) == 0
    return out


def test_run_directory_layout(run_dir: Path):
    for rel in ["store.yaml", "scenario.yaml", "config.yaml", "run.json", "contact_sheet.png", "weights.png",
                "streams/weights.csv", "streams/gates.jsonl", "gt/tracks.npz", "gt/interactions.jsonl",
                "gt/carts.json", "gt/instances.json", "gt/shoppers.json"]:
        assert (run_dir / rel).is_file(), rel
    assert not run_dir.with_name(run_dir.name + ".partial").exists()


def test_videos_hold_every_frame_listed(run_dir: Path):
    for mp4 in sorted((run_dir / "streams").glob("*.mp4")):
        rows = list(csv.DictReader(open(mp4.with_suffix("").with_suffix(".frames.csv"))))
        cap = cv2.VideoCapture(str(mp4))
        n = 0
        while cap.read()[0]:
            n += 1
        assert n == len(rows) > 50
        ts = [float(r["t"]) for r in rows]
        assert ts == sorted(ts)


def test_gate_events_and_true_cart(run_dir: Path):
    gates = [json.loads(line) for line in open(run_dir / "streams/gates.jsonl")]
    assert [(g["kind"], g["account_id"]) for g in gates] == [("enter", "tess"), ("exit", "tess")]
    carts = json.loads((run_dir / "gt/carts.json").read_text())
    assert carts["tess"]["items"] == {"cola_zero_330": 2}
    its = [json.loads(line) for line in open(run_dir / "gt/interactions.jsonl")]
    assert [i["kind"] for i in its] == ["pick", "pick"]
    assert all(gates[0]["t"] < i["t_start"] < i["t_end"] < gates[1]["t"] for i in its)


def test_recorded_weights_show_both_picks(run_dir: Path):
    its = [json.loads(line) for line in open(run_dir / "gt/interactions.jsonl")]
    cell = "U/1/1"  # per_bin cell of the cola_zero bin
    assert all(i["bin"] == cell for i in its)
    t, g = [], []
    for r in csv.DictReader(open(run_dir / "streams/weights.csv")):
        if r["cell_id"] == cell:
            t.append(float(r["t"]))
            g.append(float(r["grams"]))
    t, g = np.array(t), np.array(g)
    before = np.median(g[t < its[0]["t_start"]])
    after = np.median(g[t > its[-1]["t_end"] + 1.5])
    assert before - after == pytest.approx(2 * 350.0, abs=2.0)


def test_ground_truth_tracks_follow_the_shopper(run_dir: Path):
    z = np.load(run_dir / "gt/tracks.npz")
    assert z["keypoints"].shape[1:] == (1, 17, 3)
    present = z["present"][:, 0]
    assert present.any() and not present[-1]
    xy = z["xy"][present, 0]
    speed = np.linalg.norm(np.diff(xy, axis=0), axis=1) / np.diff(z["t"][present])
    assert speed.max() < 1.6, "human walking speed"


def test_frame_truth_has_person_boxes_and_keypoints(run_dir: Path):
    f = np.load(run_dir / "gt/frames/cam_01.npz")
    assert len(f["person_id"]) > 10
    assert f["keypoints"].shape[1:] == (17, 3)
    assert set(np.unique(f["keypoints"][..., 2])) <= {0.0, 1.0, 2.0}
    assert (f["keypoints"][..., 2] == 2).any()
    assert len(f["product_instance"]) > 0


def test_coverage_command_writes_a_floor_plan(tmp_path, capsys):
    png = tmp_path / "plan.png"
    assert main(["coverage", "store=tiny_unit", f"out={png}"]) == 0
    assert cv2.imread(str(png)).shape[0] > 200
    assert "every bin seen by at least" in capsys.readouterr().out


def test_contact_sheet_shows_every_camera(run_dir: Path):
    sheet = cv2.imread(str(run_dir / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] >= 3 * 400  # three cameras side by side


def test_cameras_drawn_in_two_processes_give_the_same_run(run_dir: Path, tmp_path):
    """`jobs=2`: each process simulates the whole scenario and draws half the cameras; the joined
    run directory holds the same files, byte for byte, as one process writes (videos, frame
    indexes, ground truth, contact sheet), and the parts are gone."""
    out = tmp_path / "tiny_pick"
    assert main(["simulate", f"scenario={HERE / 'scenarios' / 'tiny_pick.yaml'}", f"out={out}", "jobs=2"]) == 0
    files = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(list((out / "streams").glob("*.mp4"))) >= 2, "the tiny store has cameras for both processes"
    differ = [str(f) for f in files if f.name not in ("config.yaml", "run.json")
              and (run_dir / f).read_bytes() != (out / f).read_bytes()]
    assert not differ, differ
    a, b = (json.loads((d / "run.json").read_text()) for d in (run_dir, out))
    assert a["messages"] == b["messages"] and len(b["parts_wall_seconds"]) == 2
    assert not list(tmp_path.glob("*partial*"))


def test_simulate_refuses_a_bad_jobs(tmp_path, capsys):
    assert main(["simulate", f"scenario={HERE / 'scenarios' / 'tiny_pick.yaml'}", f"out={tmp_path / 'x'}", "jobs=0"]) == 2
    assert "jobs=0: expected a whole number" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
