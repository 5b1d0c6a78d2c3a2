"""Shoppers do what their scripts say, faults do what they name; tiny store, seconds of sim time."""
import numpy as np

from harness.paths import store_dir
from runtime.messages import Frame, GateEvent, WeightSample
from sim.scenario import parse_scenario
from sim.simulator import CameraConfig, SimConfig, Simulator

NO_CAMERAS = SimConfig(camera=CameraConfig(render=False))


def _scenario(script, **extra):
    d = {"name": "t", "store": "tiny_unit", "seed": 3, "shoppers": [{"account": "sam", "script": script}], **extra}
    return parse_scenario(d, "scenarios/t.yaml", store_dir())


def _run(sc, cfg=NO_CAMERAS):
    sim = Simulator(sc.spec, sc, cfg)
    msgs = list(sim.run())
    sim.close()
    return sim, msgs


def _cell_trace(msgs, cell):
    w = [(m.t, m.grams) for m in msgs if isinstance(m, WeightSample) and m.cell_id == cell]
    return np.array(w)


def test_wrong_shelf_put_back_lands_in_the_other_bin():
    sc = _scenario([{"pick": {"sku": "crisps_salted_150", "qty": 1}},
                    {"put_back": {"sku": "crisps_salted_150", "qty": 1, "bin": "U/0/1"}}, "exit"])
    sim, msgs = _run(sc)
    its = sim.truth.interactions
    assert [(i.kind, i.bin) for i in its] == [("pick", "U/0/0"), ("put_back", "U/0/1")]
    assert its[1].planogram_bin == "U/0/0" != its[1].bin
    moved = its[0].instance
    assert sim.world.instances[moved].bin == "U/0/1" and sim.world.instances[moved].home_bin == "U/0/0"
    assert sim.truth.carts()["sam"]["items"] == {}
    mass = sc.spec.products["crisps_salted_150"].mass_g
    tr = _cell_trace(msgs, "U/0/1")
    before = np.median(tr[tr[:, 0] < its[1].t_start, 1])
    after = np.median(tr[tr[:, 0] > its[1].t_end + 1.5, 1])
    assert abs((after - before) - mass) < 2.0


def test_browse_takes_nothing_and_moves_no_cell():
    sc = _scenario([{"browse": {"bin": "U/1/0", "seconds": 1.5}}, "exit"])
    sim, msgs = _run(sc)
    assert [i.kind for i in sim.truth.interactions] == ["browse"]
    assert sim.truth.carts()["sam"]["items"] == {}
    tr = _cell_trace(msgs, "U/1/0")
    assert abs(np.median(tr[:80, 1]) - np.median(tr[-80:, 1])) < 1.0


def test_gate_events_bracket_the_visit_in_time_order():
    sim, msgs = _run(_scenario([{"pick": {"sku": "water_still_500", "qty": 1}}, "exit"]))
    ts = [m.t for m in msgs]
    assert ts == sorted(ts)
    gates = [m for m in msgs if isinstance(m, GateEvent)]
    assert [(g.kind, g.account_id) for g in gates] == [("enter", "sam"), ("exit", "sam")]
    it = sim.truth.interactions[0]
    assert gates[0].t < it.t_start < it.t_end < gates[1].t


def test_loadcell_glitch_and_offset_faults_show_in_the_stream():
    sc = _scenario(["exit"], faults=[{"kind": "loadcell_glitch", "cell": "U/0/0", "at_s": 2.0, "grams": 900},
                                     {"kind": "loadcell_offset", "cell": "U/1/1", "from_s": 3.0, "grams": -250}])
    _, msgs = _run(sc)
    g = _cell_trace(msgs, "U/0/0")
    assert g[(g[:, 0] >= 2.0) & (g[:, 0] < 2.05), 1].min() > np.median(g[:, 1]) + 800
    o = _cell_trace(msgs, "U/1/1")
    assert np.median(o[o[:, 0] < 3.0, 1]) - np.median(o[o[:, 0] > 3.0, 1]) == __import__("pytest").approx(250, abs=2)


def test_camera_dropout_and_dropped_frames():
    sc = _scenario(["exit"], faults=[{"kind": "camera_dropout", "camera": "cam_01", "from_s": 1.0, "to_s": 2.0},
                                     {"kind": "dropped_frames", "camera": "cam_02", "rate": 0.3}])
    cfg = SimConfig(max_duration_s=4.0, camera=CameraConfig(cameras=("cam_01", "cam_02"), truth=False))
    _, msgs = _run(sc, cfg)
    f1 = [m.t for m in msgs if isinstance(m, Frame) and m.camera_id == "cam_01"]
    assert not any(1.0 <= t < 2.0 for t in f1) and len(f1) == 41 - 10
    f2 = [m.seq for m in msgs if isinstance(m, Frame) and m.camera_id == "cam_02"]
    assert 0.5 * 41 < len(f2) < 0.9 * 41 and f2 == sorted(f2)
