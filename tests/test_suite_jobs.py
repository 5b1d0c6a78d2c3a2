"""A suite's scenarios side by side (``jobs=N``): the same scorecards and receipts as one at a time."""
from __future__ import annotations

import json
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
