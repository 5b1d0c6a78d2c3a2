"""Unsynchronised cameras in the twin (sim/simulator.py): per-camera clock offset, timestamp
jitter, free-running exposure phase and rate, from the sim settings or a scenario's cameras:."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.paths import store_dir
from runtime.messages import Frame
from runtime.store import load_store
from sim.scenario import load_scenario
from sim.simulator import CameraConfig, SimConfig, Simulator, camera_clocks

HERE = Path(__file__).parent


def test_default_cameras_are_the_ideal_ones_and_draw_nothing() -> None:
    store = load_store(store_dir() / "tiny_unit.yaml")
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    clocks = camera_clocks(store, CameraConfig(), rng)
    assert rng.bit_generator.state == state            # no draw: every other random stream is as before
    assert {c: (k.fps, k.phase_s, k.offset_s, k.jitter_s) for c, k in clocks.items()} == {
        c.id: (c.fps, 0.0, 0.0, 0.0) for c in store.cameras}
    assert [clocks["cam_01"].exposure_s(s) for s in (0, 1, 5)] == [0.0, 0.1, 0.5]


def test_offsets_phases_and_rates_are_drawn_within_their_bounds() -> None:
    store = load_store(store_dir() / "tiny_unit.yaml")
    cfg = CameraConfig(clock_offset_s=0.06, jitter_s=0.02, free_run=True, fps=(10.0, 15.0))
    clocks = camera_clocks(store, cfg, np.random.default_rng(3))
    assert [k.fps for k in clocks.values()] == [10.0, 15.0, 10.0]          # taken in turn
    assert all(abs(k.offset_s) <= 0.06 and 0 <= k.phase_s < 1 / k.fps for k in clocks.values())
    assert len({k.offset_s for k in clocks.values()}) == 3                 # each camera its own
    k = clocks["cam_02"]
    rng = np.random.default_rng(1)
    stamps = [k.stamp_s(s, rng) - k.exposure_s(s) - k.offset_s for s in range(200)]
    assert max(abs(x) for x in stamps) <= 0.02 + 1e-6 and np.std(stamps) > 0.005
    assert camera_clocks(store, cfg, np.random.default_rng(3)) == clocks   # the same seed, the same cameras


def test_bad_camera_timing_is_one_line() -> None:
    with pytest.raises(ValueError, match="sim.camera.jitter_s"):
        CameraConfig(jitter_s=2.0)
    with pytest.raises(ValueError, match="sim.camera.fps"):
        CameraConfig(fps=(0.0,))


def test_the_scenario_sets_camera_timing_and_frames_carry_their_cameras_stamps() -> None:
    sc = load_scenario(HERE / "scenarios" / "tiny_pick.yaml", store_dir())
    sc = replace(sc, cameras={"clock_offset_s": 0.05, "jitter_s": 0.01, "free_run": True, "fps": (10.0, 15.0)})
    sim = Simulator(sc.spec, sc, SimConfig(max_duration_s=1.0, camera=CameraConfig(truth=False)))
    try:
        frames = [m for m in sim.run() if isinstance(m, Frame)]
    finally:
        sim.close()
    per_cam = {c: [f for f in frames if f.camera_id == c] for c in sim.clocks}
    # every camera at its own rate: the exposures phase + seq / fps within the second simulated
    assert {c: len(v) for c, v in per_cam.items()} == {
        c: int(np.floor((1.0 - k.phase_s) * k.fps + 1e-9)) + 1 for c, k in sim.clocks.items()}
    assert [k.fps for k in sim.clocks.values()] == [10.0, 15.0, 10.0]
    for c, fs in per_cam.items():
        k = sim.clocks[c]
        assert [f.seq for f in fs] == list(range(len(fs)))
        for f in fs:   # each frame stamped on its camera's clock: exposure + offset ± jitter
            assert abs(f.t - (k.exposure_s(f.seq) + k.offset_s)) <= 0.01 + 1e-6
    # the cameras no longer expose together
    assert len({round(fs[0].t, 3) for fs in per_cam.values()}) == 3


def _frames(sc, camera: CameraConfig, seconds: float = 2.0) -> list[Frame]:
    sim = Simulator(sc.spec, sc, SimConfig(max_duration_s=seconds, camera=camera))
    try:
        return [m for m in sim.run() if isinstance(m, Frame)]
    finally:
        sim.close()


@pytest.mark.parametrize("timing", [{}, {"clock_offset_s": 0.05, "free_run": True, "fps": (10.0, 15.0)}],
                         ids=["ideal", "free-running"])
def test_drawing_the_perceived_frames_draws_those_the_runtime_takes(timing: dict) -> None:
    """`storetwin run` draws only the frames a runtime at its perception rate takes: those are
    exactly the frames the runtime's tick schedule picks from every frame, with the same pixels."""
    from runtime.ticks import FrameRef, TickBuilder

    sc = load_scenario(HERE / "scenarios" / "tiny_pick.yaml", store_dir())
    sc = replace(sc, cameras=timing) if timing else sc
    every = _frames(sc, CameraConfig(truth=False))
    ticks = TickBuilder({c.id: c.fps for c in sc.spec.cameras}, 5.0)
    taken = [f for f in every if ticks.select(FrameRef(f.camera_id, f.seq, f.t)) is not None]
    drawn = _frames(sc, CameraConfig(truth=False, perceive_hz=5.0))
    assert 0 < len(drawn) < 0.75 * len(every)
    assert [(f.camera_id, f.seq, f.t) for f in drawn] == [(f.camera_id, f.seq, f.t) for f in taken]
    for a, b in zip(drawn, taken):   # llvmpipe may differ by a level between draws
        assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 2


def test_jittered_stamps_draw_every_frame_the_runtime_could_take() -> None:
    from runtime.ticks import FrameRef, TickBuilder

    sc = load_scenario(HERE / "scenarios" / "tiny_pick.yaml", store_dir())
    sc = replace(sc, cameras={"jitter_s": 0.03, "free_run": True})
    cam = CameraConfig(truth=False, render=True)
    every = _frames(sc, cam)
    drawn = {(f.camera_id, f.seq) for f in _frames(sc, replace(cam, perceive_hz=5.0))}
    ticks = TickBuilder({c.id: c.fps for c in sc.spec.cameras}, 5.0, jitter_s=0.03)
    taken = {(f.camera_id, f.seq) for f in every if ticks.select(FrameRef(f.camera_id, f.seq, f.t)) is not None}
    assert taken <= drawn < {(f.camera_id, f.seq) for f in every}


def test_bad_perceive_rate_is_one_line() -> None:
    with pytest.raises(ValueError, match="sim.camera.perceive_hz"):
        CameraConfig(perceive_hz=-1.0)
