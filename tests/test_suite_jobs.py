"""A suite's scenarios side by side (``jobs=N``): the same scorecards and receipts as one at a time."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main

SUITE = ["suite=random", "store=tiny_unit", "seeds=0..2", "shoppers=1", "duration_s=16", "sensing=weight_only",
         "pacing=asfast", "sim.camera.render=false", "video.record=false"]
WALL = ("wall_s", "real_time_factor", "run_dir")     # how long it took and where: not results


def _results(x):
    if isinstance(x, dict):
        return {k: _results(v) for k, v in x.items() if k not in WALL}
    if isinstance(x, list):
        return [_results(v) for v in x]
    return x


def test_a_suite_run_two_at_a_time_scores_as_one_at_a_time(tmp_path: Path, capsys):
    serial, side = tmp_path / "serial", tmp_path / "side"
    assert main(["run", *SUITE, f"out={serial}"]) == 0
    capsys.readouterr()
    assert main(["run", *SUITE, "jobs=2", f"out={side}"]) == 0
    assert "2 at a time" in capsys.readouterr().err      # its progress bar: the scenarios went to two processes
    a = json.loads((serial / "scorecard.json").read_text())
    b = json.loads((side / "scorecard.json").read_text())
    assert [c["scenario"] for c in b["scenarios"]] == ["random-s0-k1", "random-s1-k1", "random-s2-k1"]   # the suite's order
    assert _results(b) == _results(a)
    for name in ("random-s0-k1", "random-s1-k1", "random-s2-k1"):
        assert (side / name / "out" / "receipts.jsonl").read_text() == (serial / name / "out" / "receipts.jsonl").read_text()
        assert (side / name / "gt" / "carts.json").read_text() == (serial / name / "gt" / "carts.json").read_text()


@pytest.mark.parametrize("override,says", [("pacing=realtime", "pacing=asfast"), ("jobs=0", "jobs=0"),
                                           ("jobs=two", "jobs='two'")])
def test_bad_jobs_give_one_line_and_write_nothing(tmp_path: Path, capsys, override: str, says: str):
    out = tmp_path / "x"
    args = [a for a in SUITE if not a.startswith("pacing=")] + (["jobs=2"] if override.startswith("pacing") else [])
    assert main(["run", *args, override, f"out={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not out.exists()


def test_a_suite_on_a_local_ray_instance_scores_as_one_at_a_time(tmp_path: Path, capsys):
    """launcher=ray: the scenarios go to Ray tasks (here on an instance started for the run), and
    come back with the scorecards and receipts a serial run gives."""
    pytest.importorskip("ray")
    two = [a for a in SUITE if not a.startswith("seeds=")] + ["seeds=0..1"]
    serial, on_ray = tmp_path / "serial", tmp_path / "ray"
    assert main(["run", *two, f"out={serial}"]) == 0
    capsys.readouterr()
    assert main(["run", *two, "launcher=ray", "jobs=2", f"out={on_ray}"]) == 0
    assert "suite on ray" in capsys.readouterr().err
    assert _results(json.loads((on_ray / "scorecard.json").read_text())) == \
        _results(json.loads((serial / "scorecard.json").read_text()))
    for name in ("random-s0-k1", "random-s1-k1"):
        assert (on_ray / name / "out" / "receipts.jsonl").read_text() == (serial / name / "out" / "receipts.jsonl").read_text()


def test_ray_address_without_launcher_ray_is_refused(tmp_path: Path, capsys):
    assert main(["run", *SUITE, "ray_address=auto", f"out={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "launcher=ray" in err[0], err
    assert not (tmp_path / "x").exists()


def test_side_by_side_scenarios_start_longest_first():
    """A suite's time is at least its longest scenario's, so that one starts first: the default
    suite's busy store (twelve shoppers, three minutes) and then its long dwell lead the order."""
    from harness.run import _longest_first, expected_work, suite_scenarios

    names = suite_scenarios("default")
    order = _longest_first(names, names)
    assert sorted(order) == list(range(len(names)))
    assert [names[i] for i in order[:2]] == ["busy_store", "long_dwell"]
    assert all(expected_work(names[a]) >= expected_work(names[b]) for a, b in zip(order, order[1:]))


def test_a_long_scenario_is_simulated_in_camera_parts_with_a_serial_runs_results(tmp_path: Path, capsys):
    """Side by side, a scenario longer than half a worker's share of the suite is simulated in
    parts, each drawing some of its cameras, then joined and scored: every camera's frames
    (index and video), the load cells, gates and ground truth, the receipts and the scorecards are
    those of simulating it whole."""
    from harness.run import RunConfig, camera_shares

    two = ["suite=random", "store=tiny_unit", "seeds=0..1", "shoppers=1", "duration_s=8", "pacing=asfast"]
    serial, parts = tmp_path / "serial", tmp_path / "parts"
    assert main(["run", *two, f"out={serial}"]) == 0
    assert main(["run", *two, "jobs=2", f"out={parts}"]) == 0
    capsys.readouterr()
    names = ["random-s0-k1", "random-s1-k1"]
    for name in names:
        a, b = serial / name, parts / name
        run = json.loads((b / "run.json").read_text())
        assert len(run["parts_wall_seconds"]) == 2, "simulated in two parts"
        assert not list(parts.glob(f"{name}.cameras-*")), "the parts were joined"
        assert json.loads((a / "run.json").read_text())["messages"] == run["messages"]
        for rel in ["streams/weights.csv", "streams/gates.jsonl", "gt/carts.json", "gt/interactions.jsonl",
                    *[f"streams/cam_0{k}.frames.csv" for k in (1, 2, 3)], "out/receipts.jsonl"]:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), (name, rel)
        for k in (1, 2, 3):
            assert (b / "streams" / f"cam_0{k}.mp4").stat().st_size > 0
    assert _results(json.loads((parts / "scorecard.json").read_text())) == \
        _results(json.loads((serial / "scorecard.json").read_text()))
    # a suite of one scenario on two workers: split too
    one = tmp_path / "one"
    assert main(["run", *[a for a in two if not a.startswith("seeds=")], "seeds=0..0", "jobs=2", f"out={one}"]) == 0
    capsys.readouterr()
    assert len(json.loads((one / "random-s0-k1" / "run.json").read_text())["parts_wall_seconds"]) == 2
    assert (one / "random-s0-k1" / "out" / "receipts.jsonl").read_bytes() == \
        (serial / "random-s0-k1" / "out" / "receipts.jsonl").read_bytes()
    # the rule: none split on one worker, nor with split=false, nor a scenario that is a small part of the suite
    cfg = RunConfig(suite=("a",), pacing="asfast", jobs=2)
    assert camera_shares(["busy_store", "single_pick"], ["busy_store", "single_pick"], cfg, 1) == {}
    assert camera_shares(["busy_store", "single_pick"], ["busy_store", "single_pick"], replace(cfg, split=False), 2) == {}
    shares = camera_shares(["busy_store", "single_pick"], ["busy_store", "single_pick"], cfg, 2)
    assert list(shares) == [0] and sorted(c for part in shares[0] for c in part) == [f"cam_{k:02d}" for k in range(1, 13)]


def test_drawing_a_camera_the_run_does_not_have_is_refused(tmp_path: Path, capsys):
    out = tmp_path / "x"
    assert main(["simulate", "scenario=single_pick", "sim.camera.draw_only=[cam_99]", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sim.camera.draw_only" in err[0] and "cam_99" in err[0], err
    assert not out.exists() and not out.with_name("x.partial").exists()


def test_drawing_only_the_perceived_frames_keeps_the_receipts(tmp_path: Path, capsys):
    """`storetwin run` draws only the frames the runtime takes (frames=perceived, the default):
    half of a 10 fps camera's at 5 Hz, with the receipts of drawing every frame; the recording
    then refuses a runtime rate whose ticks it has no frames for, in one line, writing nothing."""
    one = ["suite=random", "store=tiny_unit", "seeds=0..0", "shoppers=1", "duration_s=8", "pacing=asfast"]
    every, perceived = tmp_path / "all", tmp_path / "perceived"
    assert main(["run", *one, "frames=all", f"out={every}"]) == 0
    assert main(["run", *one, f"out={perceived}"]) == 0
    capsys.readouterr()
    a, b = every / "random-s0-k1", perceived / "random-s0-k1"
    ra, rb = json.loads((a / "run.json").read_text()), json.loads((b / "run.json").read_text())
    assert "frames_for_perception_hz" not in ra and rb["frames_for_perception_hz"] == 5.0
    assert 0 < rb["messages"]["frames"] <= ra["messages"]["frames"] // 2 + 3
    assert (a / "out" / "receipts.jsonl").read_text() == (b / "out" / "receipts.jsonl").read_text()
    assert json.loads((b / "out" / "run.json").read_text())["frames_processed"] == \
        json.loads((a / "out" / "run.json").read_text())["frames_processed"]
    again = tmp_path / "again"
    assert main(["run", *one, f"recorded={perceived}", "runtime.perception_hz=10", f"out={again}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runtime.perception_hz=10" in err[0] and "frames=all" in err[0], err
    assert not again.exists()
    assert main(["run", *one, f"recorded={perceived}", "runtime.perception_hz=2.5", f"out={tmp_path / 'slower'}"]) == 0
