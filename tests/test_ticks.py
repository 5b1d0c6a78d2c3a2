"""Which frames go through perception and when a perception tick closes (runtime/ticks.py).

Ticks lie at T_k = k / perception_hz; each camera gives a tick the one frame nearest T_k within the
window; a tick closes when every delivering camera has given it a frame, or once the stream passes
T_k + window. The builder is driven as the runtime drives it: at every message, first ``due(t)``,
then, for a frame, ``select``."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.messages import WeightSample
from runtime.ticks import FrameRef, Tick, TickBuilder


def _run(builder: TickBuilder, stream: list) -> tuple[list[tuple[float | None, Tick]], list[FrameRef]]:
    """Feed a time-ordered stream of FrameRefs and other messages. Returns the closed ticks, each with
    the stream time of the message that closed it (None: closed by ``flush``), and the frames chosen."""
    closed: list[tuple[float | None, Tick]] = []
    chosen: list[FrameRef] = []
    for msg in stream:
        closed += [(msg.t, tick) for tick in builder.due(msg.t)]
        if isinstance(msg, FrameRef) and builder.select(msg) is not None:
            chosen.append(msg)
    closed += [(None, tick) for tick in builder.flush()]
    return closed, chosen


def _probe(t: float) -> WeightSample:
    """A message of another sensor: it only moves the stream on."""
    return WeightSample("U/0/0", t, 1000.0)


def _cams(tick: Tick) -> list[str]:
    return sorted(f.camera_id for f in tick.frames)


# -- synchronised cameras ----------------------------------------------------------------------------

def test_synchronised_cameras_give_every_other_frame() -> None:
    """Two 10 fps cameras in step, perception at 5 Hz (ticks 0.2 s apart): the frames on the ticks
    (0.2, 0.4, …) are chosen, those between (0.1, 0.3, …) are not. The stream starts at 0.1 s."""
    builder = TickBuilder({"a": 10, "b": 10}, perception_hz=5)
    stream = [FrameRef(cam, n, n / 10) for n in range(1, 11) for cam in ("a", "b")]
    closed, chosen = _run(builder, stream)
    assert sorted({f.t for f in chosen}) == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert [(tick.index, tick.t, _cams(tick)) for _, tick in closed] == [
        (1, 0.2, ["a", "b"]), (2, 0.4, ["a", "b"]), (3, 0.6, ["a", "b"]), (4, 0.8, ["a", "b"]), (5, 1.0, ["a", "b"])]
    for _, tick in closed:
        assert [f.t for f in tick.frames] == [tick.t, tick.t]
        assert [f.seq for f in tick.frames] == [round(tick.t * 10)] * 2
    # each tick closes on the first message after its last camera's frame: a's next frame, 0.1 s on
    assert [t for t, _ in closed] == [0.3, 0.5, 0.7, 0.9, None]
    assert builder.late == 0


def test_both_cameras_join_one_tick_object() -> None:
    builder = TickBuilder({"a": 10, "b": 10}, perception_hz=5)
    builder.select(FrameRef("a", 0, 0.1))
    builder.select(FrameRef("b", 0, 0.1))
    assert builder.due(0.2) == []
    tick_a = builder.select(FrameRef("a", 1, 0.2))
    assert builder.due(0.2) == []               # b is delivering and has not given its frame yet
    tick_b = builder.select(FrameRef("b", 1, 0.2))
    assert tick_a is tick_b and (tick_a.index, tick_a.t) == (1, 0.2)
    assert tick_a.frames == [FrameRef("a", 1, 0.2), FrameRef("b", 1, 0.2)]
    assert builder.due(0.2) == [tick_a]         # complete: closes at the next message, whatever its time


def test_the_first_tick_waits_for_every_camera_at_that_instant() -> None:
    builder = TickBuilder({"a": 10, "b": 10}, perception_hz=5)
    stream = [FrameRef(cam, n, n / 10) for n in range(0, 3) for cam in ("a", "b")]
    closed, _ = _run(builder, stream)
    assert [(tick.t, _cams(tick)) for _, tick in closed] == [(0.0, ["a", "b"]), (0.2, ["a", "b"])]
    assert builder.late == 0


# -- unsynchronised cameras --------------------------------------------------------------------------

def _camera_times(offset_s: float, fps: float, first: int, last: int, rng: np.random.Generator) -> list[float]:
    """Frame stamps ``offset + n / fps`` for n in first…last, each with up to ±3 ms of jitter."""
    return [offset_s + n / fps + float(rng.uniform(-0.003, 0.003)) for n in range(first, last + 1)]


def test_unsynchronised_cameras_give_each_tick_their_nearest_frame() -> None:
    """Camera a: 10 fps, 30 ms late (frames near 0.13, 0.23, …). Camera b: 15 fps with frames near
    T_k − 0.04 and T_k + 0.0267 for every tick (b's offset 0.16 − 2/15 s): both within the 0.05 s
    window, but the later is nearer and must be the one chosen although the earlier comes first."""
    rng = np.random.default_rng(0)
    b_offset = 0.16 - 2 / 15
    times = {"a": _camera_times(0.03, 10, 1, 20, rng), "b": _camera_times(b_offset, 15, 1, 30, rng)}
    stream = sorted((FrameRef(cam, n, t) for cam, ts in times.items() for n, t in enumerate(ts, start=1)),
                    key=lambda f: f.t)
    builder = TickBuilder({"a": 10, "b": 15}, perception_hz=5)
    assert builder.window_s == pytest.approx(0.5 / 10)     # half the slowest camera's period
    closed, _ = _run(builder, stream)

    ticks = [tick for _, tick in closed]
    assert [tick.t for tick in ticks] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0]
    for tick in ticks:
        assert _cams(tick) == ["a", "b"]                    # exactly one frame of each camera
        for f in tick.frames:
            assert abs(f.t - tick.t) <= 0.05
            nearest = min(times[f.camera_id], key=lambda t: abs(t - tick.t))
            assert f.t == nearest
    # by hand, tick 0.4: a's frame n = 4 (0.03 + 4/10 = 0.43); b's n = 6 (0.0267 + 6/15 = 0.4267), not
    # n = 5 (0.0267 + 5/15 = 0.36), which came first and was within the window too
    tick_04 = ticks[1]
    assert {f.camera_id: f.seq for f in tick_04.frames} == {"a": 4, "b": 6}
    assert builder.late == 0


# -- dark cameras, flush, late frames ----------------------------------------------------------------

def test_a_camera_gone_dark_holds_a_tick_up_only_until_the_watermark() -> None:
    """a and b deliver until 0.5 s, then b goes dark; a goes on to 1.6 s. Probes at T + 0.04 and
    T + 0.06 after each tick T ≥ 0.6 show when it closes: after T + window (0.05 s) while b may
    still come back, at once when b has been quiet for quiet_after_s = 1 s (from 1.5 s on)."""
    builder = TickBuilder({"a": 10, "b": 10}, perception_hz=5, quiet_after_s=1.0)
    frames = [FrameRef(cam, n, n / 10) for n in range(1, 6) for cam in ("a", "b")]
    frames += [FrameRef("a", n, n / 10) for n in range(6, 17)]
    probes = [_probe(t) for t in (0.64, 0.66, 0.84, 0.86, 1.04, 1.06, 1.24, 1.26, 1.44, 1.46, 1.64, 1.66)]
    closed, _ = _run(builder, sorted(frames + probes, key=lambda m: m.t))
    assert [(t, tick.t, _cams(tick)) for t, tick in closed] == [
        (0.3, 0.2, ["a", "b"]), (0.5, 0.4, ["a", "b"]),
        (0.66, 0.6, ["a"]), (0.86, 0.8, ["a"]), (1.06, 1.0, ["a"]), (1.26, 1.2, ["a"]), (1.46, 1.4, ["a"]),
        (1.64, 1.6, ["a"])]   # 1.64 − 0.5 ≥ 1 s: b is no longer delivering, a alone completes the tick


def test_flush_closes_every_open_tick_in_order() -> None:
    builder = TickBuilder({"a": 10, "b": 10}, perception_hz=5)
    t1 = builder.select(FrameRef("a", 2, 0.2))
    t2 = builder.select(FrameRef("a", 4, 0.4))
    assert builder.flush() == [t1, t2]
    assert t1.frames == [FrameRef("a", 2, 0.2)] and t2.frames == [FrameRef("a", 4, 0.4)]
    assert builder.flush() == [] and builder.due(100.0) == []
    assert builder.select(FrameRef("b", 2, 0.2)) is None      # their ticks were flushed: late
    assert builder.select(FrameRef("b", 4, 0.4)) is None
    assert builder.late == 2


def test_a_frame_for_a_closed_tick_is_late() -> None:
    builder = TickBuilder({"a": 10, "b": 10}, perception_hz=5)
    builder.select(FrameRef("a", 1, 0.1))
    builder.select(FrameRef("b", 1, 0.1))
    tick = builder.select(FrameRef("a", 2, 0.2))
    assert builder.due(0.26) == [tick]                        # 0.26 > 0.2 + 0.05: the watermark closed it
    assert builder.select(FrameRef("b", 2, 0.2)) is None      # b's frame for 0.2 arrives after that
    assert builder.late == 1
    assert tick.frames == [FrameRef("a", 2, 0.2)]
    # b's next frames are not late: one between ticks (left out, not counted), one for the next tick
    assert builder.select(FrameRef("b", 3, 0.3)) is None
    assert builder.select(FrameRef("b", 4, 0.4)) is not None
    assert builder.late == 1


def test_a_camera_gives_a_tick_one_frame_only() -> None:
    builder = TickBuilder({"a": 30}, perception_hz=5)         # window 0.5 / 30 ≈ 0.0167 s
    assert builder.select(FrameRef("a", 6, 0.2)) is not None
    assert builder.select(FrameRef("a", 7, 0.2 + 1 / 30)) is None   # next frame: outside the window
    assert builder.select(FrameRef("a", 8, 0.2)) is None      # a second frame stamped on the tick
    assert builder.late == 0


# -- the window --------------------------------------------------------------------------------------

def test_the_default_window_is_half_the_slowest_camera_period() -> None:
    assert TickBuilder({"a": 10, "b": 10}, perception_hz=5).window_s == pytest.approx(0.5 / 10)
    assert TickBuilder({"a": 10, "b": 25}, perception_hz=5).window_s == pytest.approx(0.5 / 10)
    assert TickBuilder({"a": 30}, perception_hz=5).window_s == pytest.approx(0.5 / 30)
    # never half a tick period or more: 5 fps cameras at 10 Hz perception stop short of 0.5 / 10
    w = TickBuilder({"a": 5}, perception_hz=10).window_s
    assert w < 0.5 / 10 and w == pytest.approx(0.5 / 10, abs=1e-5)


def test_an_explicit_window() -> None:
    builder = TickBuilder({"a": 10, "b": 10}, perception_hz=5, window_s=0.02)
    assert builder.window_s == 0.02
    assert builder.select(FrameRef("a", 1, 0.23)) is None     # 0.03 from the tick: outside 0.02
    assert builder.select(FrameRef("b", 1, 0.19)) is not None  # 0.01 from it: inside
    assert builder.due(0.215) == []                           # 0.215 < 0.2 + 0.02: a may still come
    assert [t.t for t in builder.due(0.225)] == [0.2]         # the watermark passed: closed without a


@pytest.mark.parametrize("phase_s", [0.0, 0.06, 0.09, 0.13, 0.19])
def test_a_camera_slower_than_the_store_file_says_still_serves_every_tick(phase_s: float) -> None:
    """The store file says 10 fps (window 0.07 s); the cameras send 5 fps, stamped at a phase of
    their own clock's making (a live store: epoch stamps): after the first frames show their real
    period, every 5 Hz tick gets each camera's nearest frame, whatever the phase."""
    b = TickBuilder({"cam_01": 10.0, "cam_02": 10.0}, perception_hz=5.0, jitter_s=0.02)
    t0 = 1_796_000_000.0 + phase_s
    stream = [FrameRef(c, i, t0 + 0.2 * i) for i in range(50) for c in ("cam_01", "cam_02")]
    closed, chosen = _run(b, stream)
    ticks = [tick for _, tick in closed if tick.index * 0.2 > t0 + 1.0]     # once the period is learnt
    assert len(ticks) >= 40 and all(len(t.frames) == 2 for t in ticks[:-1])
    assert len(chosen) >= 2 * 45 and b.late == 0


def test_cameras_at_their_nominal_rate_keep_the_nominal_window() -> None:
    b = TickBuilder({"cam_01": 10.0}, perception_hz=5.0, jitter_s=0.02)
    _run(b, [FrameRef("cam_01", i, 0.1 * i + 0.003 * (i % 3)) for i in range(40)])
    assert b._window("cam_01") == b.window_s == pytest.approx(0.07)
