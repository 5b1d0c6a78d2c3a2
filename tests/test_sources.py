"""Merging sensor streams in time order (runtime/sources.py ``merge``), pacing them on a wall clock
(``paced``) and the clocks themselves (runtime/clock.py), on hand-made messages."""
from __future__ import annotations

import time

import numpy as np
import pytest

from runtime.clock import ManualClock, SystemClock
from runtime.messages import Frame, GateEvent, SensorMessage, WeightSample
from runtime.sources import merge, paced

IMAGE = np.zeros((2, 2, 3), dtype=np.uint8)


def _gate(t: float, account: str = "acc") -> GateEvent:
    return GateEvent("gate_in", t, account, "enter")


def _weight(t: float, cell: str = "U/0/0", grams: float = 1000.0) -> WeightSample:
    return WeightSample(cell, t, grams)


def _frame(t: float, seq: int, cam: str = "cam_01") -> Frame:
    return Frame(cam, t, seq, IMAGE)


def _key(m: SensorMessage) -> tuple:
    """What a message is, comparable (a Frame's image is an array: leave it out)."""
    if isinstance(m, Frame):
        return ("frame", m.camera_id, m.t, m.seq)
    if isinstance(m, WeightSample):
        return ("weight", m.cell_id, m.t, m.grams)
    return ("gate", m.gate_id, m.t, m.account_id)


# -- merge -------------------------------------------------------------------------------------------

def test_merge_orders_by_time() -> None:
    frames = [_frame(0.1, 0), _frame(0.2, 1), _frame(0.3, 2)]
    weights = [_weight(0.05), _weight(0.15), _weight(0.25)]
    gates = [_gate(0.12)]
    out = [_key(m) for m in merge([frames, weights, gates])]
    assert [k[2] for k in out] == [0.05, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3]
    assert len(out) == 3 + 3 + 1


def test_at_equal_times_gates_then_weights_then_frames() -> None:
    # the frames' stream comes first in the list: the order at equal times is by kind, not by stream
    frames = [_frame(0.0, 0), _frame(1.0, 1)]
    weights = [_weight(0.0), _weight(0.5), _weight(1.0)]
    gates = [_gate(0.0), _gate(1.0)]
    out = [(k[0], k[2]) for k in map(_key, merge([frames, weights, gates]))]
    assert out == [("gate", 0.0), ("weight", 0.0), ("frame", 0.0),
                   ("weight", 0.5),
                   ("gate", 1.0), ("weight", 1.0), ("frame", 1.0)]


def test_merge_keeps_the_order_within_a_stream_and_then_by_stream() -> None:
    # one load-cell stream with three samples at one time: b, a, c stay b, a, c (not sorted by cell)
    cells = [_weight(0.5, "b"), _weight(0.5, "a"), _weight(0.5, "c")]
    cam_2 = [_frame(0.5, 7, "cam_02")]
    cam_1 = [_frame(0.5, 3, "cam_01")]
    out = [_key(m) for m in merge([cells, cam_2, cam_1])]
    assert out == [("weight", "b", 0.5, 1000.0), ("weight", "a", 0.5, 1000.0), ("weight", "c", 0.5, 1000.0),
                   ("frame", "cam_02", 0.5, 7), ("frame", "cam_01", 0.5, 3)]   # frames: in the streams' order


def test_merge_passes_the_messages_themselves_and_reads_lazily() -> None:
    f = _frame(0.0, 0)
    pulled: list[float] = []

    def weights():
        for t in (0.0, 1.0, 2.0):
            pulled.append(t)
            yield _weight(t)

    out = merge([[f], weights()])
    first, second = next(out), next(out)
    assert first.t == 0.0 and isinstance(first, WeightSample)
    assert second is f
    assert 2.0 not in pulled      # a live source is read as the merge goes, not all at once
    assert list(merge([])) == []
    assert [_key(m) for m in merge([[], [_gate(1.0)]])] == [("gate", "gate_in", 1.0, "acc")]


# -- paced -------------------------------------------------------------------------------------------

def test_paced_releases_each_message_at_its_time_on_the_wall_clock() -> None:
    clock = ManualClock(start_s=100.0)
    msgs = [_gate(0.0), _weight(0.5), _frame(1.25, 0)]
    released: list[tuple[float, float]] = []
    for m in paced(msgs, wall_t0=100.0, clock=clock):
        released.append((m.t, clock.wall_s()))
    assert released == [(0.0, 100.0 + 0.0), (0.5, 100.0 + 0.5), (1.25, 100.0 + 1.25)]


def test_paced_starts_now_without_wall_t0() -> None:
    clock = ManualClock(start_s=7.0)
    out = [(m.t, clock.wall_s()) for m in paced([_weight(0.0), _weight(2.0)], clock=clock)]
    assert out == [(0.0, 7.0), (2.0, 7.0 + 2.0)]


def test_paced_waits_for_nothing_before_it_is_asked() -> None:
    clock = ManualClock(start_s=0.0)
    stream = paced([_weight(5.0)], wall_t0=0.0, clock=clock)
    assert clock.wall_s() == 0.0      # a generator: no sleeping until the first message is asked for
    next(stream)
    assert clock.wall_s() == 5.0


class CountingClock(ManualClock):
    """A manual clock that remembers what it was asked to sleep."""

    def __init__(self, start_s: float = 0.0):
        super().__init__(start_s)
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        super().sleep(seconds)


def test_a_slow_consumer_gets_a_passed_message_at_once() -> None:
    clock = CountingClock(start_s=10.0)
    stream = paced([_weight(0.0), _weight(0.5), _weight(3.0)], wall_t0=10.0, clock=clock)
    assert next(stream).t == 0.0 and clock.wall_s() == 10.0
    clock.advance(2.0)                # the consumer took 2 s over the first message
    assert next(stream).t == 0.5
    assert clock.wall_s() == 12.0     # due at 10.5, already passed: released at once, no time slept
    assert next(stream).t == 3.0
    assert clock.wall_s() == 13.0     # due at 10 + 3: the clock slept 1 s for it
    assert [s for s in clock.sleeps if s > 0] == [pytest.approx(1.0)]
    assert clock.sleeps[1] == pytest.approx(10.5 - 12.0)   # a negative wait: nothing to sleep


# -- clocks ------------------------------------------------------------------------------------------

def test_manual_clock() -> None:
    clock = ManualClock()
    assert clock.wall_s() == 0.0
    clock.advance(1.5)
    assert clock.wall_s() == 1.5
    clock.sleep(0.25)
    assert clock.wall_s() == 1.5 + 0.25
    clock.sleep(0.0)
    clock.sleep(-3.0)                 # a wait that has passed already does not turn the clock back
    assert clock.wall_s() == 1.75
    assert ManualClock(start_s=42.0).wall_s() == 42.0


def test_system_clock() -> None:
    clock = SystemClock()
    before = time.time()
    now = clock.wall_s()
    assert before <= now <= time.time()
    start = time.monotonic()
    clock.sleep(0.0)
    clock.sleep(-5.0)                 # returns at once
    assert time.monotonic() - start < 0.5
    start = time.monotonic()
    clock.sleep(0.02)
    assert time.monotonic() - start >= 0.02 - 1e-3


# -- damaged recordings ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from pathlib import Path

    from harness.cli import main

    out = tmp_path_factory.mktemp("rec") / "tiny_pick"
    assert main(["simulate", f"scenario={Path(__file__).parent / 'scenarios' / 'tiny_pick.yaml'}", f"out={out}",
                 "contact_sheet=false"]) == 0
    return out


def _damaged(recorded, tmp_path):
    import shutil

    d = tmp_path / "damaged"
    shutil.copytree(recorded, d)
    return d


def test_a_damaged_recording_is_replayed_but_its_bad_lines(recorded, tmp_path, caplog) -> None:
    """Garbage appended to weights.csv, readings no scale sends (NaN, a hundred tonnes, time going
    back), a gate line that is not JSON, garbage bytes: each is left out with its file and line, and
    every other message is replayed as from the clean recording."""
    import logging

    from runtime.sources import ReplaySource

    clean = [_key(m) for m in ReplaySource(recorded)]
    d = _damaged(recorded, tmp_path)
    w = d / "streams" / "weights.csv"
    lines = w.read_text().splitlines()
    cell = lines[1].split(",")[1] if lines[0].startswith("t,") else None
    header = lines[0].split(",")
    row = dict(zip(header, lines[200].split(",")))

    def line(**kw):
        return ",".join(str({**row, **kw}[k]) for k in header)

    n = len(lines)
    lines[200:200] = [line(grams="nan"), line(grams="1e8"), line(t="0.0"), "1.2,garbage"]
    lines.append("garbage")
    w.write_text("\n".join(lines) + "\n")
    with open(w, "ab") as f:
        f.write(b"\xff\xfe\x00junk\n")
    g = d / "streams" / "gates.jsonl"
    g.write_text("{not json\n" + g.read_text() + '{"gate_id": "g", "t": "soon"}\n')
    src = ReplaySource(d)
    logging.getLogger("runtime.sources").disabled = False   # a library loaded by an earlier test may disable existing loggers
    with caplog.at_level(logging.WARNING, logger="runtime.sources"):
        got = [_key(m) for m in src]
    assert got == clean
    assert src.skipped["weights.csv"] == 6 and src.skipped["gates.jsonl"] == 2
    said = caplog.text
    assert f"{w}:201: " in said and "expected finite numbers" in said and "garbage" in said
    assert f"{g}:1: " in said
    assert cell is not None and n > 201


def test_a_video_that_ends_early_is_replayed_up_to_where_it_ends(recorded, tmp_path, caplog) -> None:
    import logging

    import cv2

    from runtime.sources import ReplaySource

    d = _damaged(recorded, tmp_path)
    cam = sorted((d / "streams").glob("*.mp4"))[0]
    cap = cv2.VideoCapture(str(cam))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    keep = len(frames) // 2
    out = cv2.VideoWriter(str(cam), cv2.VideoWriter_fourcc(*"mp4v"), 10, frames[0].shape[1::-1])
    for img in frames[:keep]:
        out.write(img)
    out.release()
    clean = [_key(m) for m in ReplaySource(recorded)]
    src = ReplaySource(d)
    logging.getLogger("runtime.sources").disabled = False   # a library loaded by an earlier test may disable existing loggers
    with caplog.at_level(logging.WARNING, logger="runtime.sources"):
        got = [_key(m) for m in src]
    mine = [k for k in got if k[0] == "frame" and k[1] == cam.stem]
    assert len(mine) == keep and src.skipped[cam.name] == len(frames) - keep
    assert [k for k in got if not (k[0] == "frame" and k[1] == cam.stem)] == \
           [k for k in clean if not (k[0] == "frame" and k[1] == cam.stem)], "every other stream whole"
    assert f"{cam}: ends after {keep} frames" in caplog.text


def test_storetwin_run_replays_a_damaged_recording_and_says_what_it_left_out(recorded, tmp_path) -> None:
    import json

    from harness.cli import main

    d = _damaged(recorded, tmp_path)
    with open(d / "streams" / "weights.csv", "a") as f:
        f.write("garbage\n")
    out = tmp_path / "replayed"
    assert main(["run", "scenario=tiny_pick", f"recorded={d}", "pacing=asfast", f"out={out}"]) == 0
    runs = [json.loads(p.read_text()) for p in out.rglob("out/run.json")]
    assert [r["recording_skipped"] for r in runs] == [{"weights.csv": 1}]


# -- live merge --------------------------------------------------------------------------------------

def test_live_merge_holds_each_message_for_the_lateness_bound_then_releases_in_time_order() -> None:
    from runtime.sources import LiveMerge

    clock = ManualClock(start_s=10.0)
    m = LiveMerge(lateness_s=0.3, clock=clock)
    m.put(_frame(10.0, 0))
    m.put(_weight(9.95))
    m.put(_gate(10.0))
    assert m.poll() == [] and m.depth == 3, "nothing is released before the bound has passed"
    clock.advance(0.26)
    assert [_key(x)[0] for x in m.poll()] == ["weight"], "9.95 + 0.3 has passed, 10.0 + 0.3 not yet"
    clock.advance(0.05)
    assert [_key(x)[0] for x in m.poll()] == ["gate", "frame"], "at equal times: gates, then frames"


def test_a_quiet_stream_holds_the_others_up_by_the_bound_only() -> None:
    from runtime.sources import LiveMerge

    clock = ManualClock(start_s=0.0)
    m = LiveMerge(lateness_s=0.2, clock=clock)
    got = []
    for k in range(50):      # the gate never speaks; the scale does, every 0.1 s
        m.put(_weight(clock.now_s))
        clock.advance(0.1)
        got += m.poll()
    assert len(got) >= 47 and all(a.t <= b.t for a, b in zip(got, got[1:]))
    assert m.late == 0


def test_late_messages_are_counted_and_delivered_or_dropped_by_policy() -> None:
    from runtime.sources import LiveMerge

    for policy, kept in (("deliver", 1), ("drop", 0)):
        clock = ManualClock(start_s=5.0)
        m = LiveMerge(lateness_s=0.1, late=policy, clock=clock)
        m.put(_weight(4.8))
        assert [x.t for x in m.poll()] == [4.8]
        m.put(_weight(4.5))       # older than what was already released
        m.put(_weight(4.95))
        out = m.poll()
        assert m.late == 1 and [x.t for x in out] == [4.5][:kept], policy
        assert m.depth == 1, "the on-time one waits for its own bound"
        m.close()
        assert [x.t for x in m.poll()] == [4.95]
    with pytest.raises(ValueError, match="late='keep'"):
        LiveMerge(late="keep")


def test_the_learnt_bound_follows_the_streams_delays_within_its_limits() -> None:
    """A camera whose frames start arriving 0.6 s after their stamps: with a fixed bound they are
    late; with a learnt one the bound rises to cover them (and no further than its ceiling), then
    comes back down slowly once they are on time again."""
    from runtime.sources import LiveMerge

    def play(m: LiveMerge, clock: ManualClock, delay: float, seconds: float) -> list:
        out = []
        for _ in range(int(seconds * 10)):       # a reading on time and a frame ``delay`` late, every 0.1 s
            m.put(_weight(clock.now_s))
            m.put(_frame(clock.now_s - delay, 0))
            clock.advance(0.1)
            out += m.poll()
        return out

    fixed_clock, learnt_clock = ManualClock(start_s=100.0), ManualClock(start_s=100.0)
    fixed = LiveMerge(lateness_s=0.2, clock=fixed_clock)
    learnt = LiveMerge(lateness_s=0.2, clock=learnt_clock, max_lateness_s=1.0)
    play(fixed, fixed_clock, 0.6, 20)
    play(learnt, learnt_clock, 0.6, 20)
    assert fixed.late > 150 and fixed.lateness_s == 0.2
    assert learnt.late_by["cam_01"] <= 10, "late only until the first second's delays were learnt"
    assert 0.6 <= learnt.lateness_s <= 0.7 and learnt.delay_q["cam_01"] >= 0.59
    assert play(learnt, learnt_clock, 0.6, 5) and learnt.late == learnt.late_by["cam_01"]
    high = learnt.lateness_s
    play(learnt, learnt_clock, 0.0, 12)         # on time again: the old delays age out, the bound sinks
    assert 0.2 <= learnt.lateness_s < high
    capped_clock = ManualClock(start_s=100.0)
    capped = LiveMerge(lateness_s=0.2, clock=capped_clock, max_lateness_s=0.4)
    play(capped, capped_clock, 3.0, 5)
    assert capped.lateness_s == 0.4, "never above the ceiling, however late a stream"
    with pytest.raises(ValueError, match="max_lateness_s=0.1"):
        LiveMerge(lateness_s=0.2, max_lateness_s=0.1)


def test_live_merge_from_reader_threads_ends_when_closed() -> None:
    """Real threads and the real clock: two devices push, one goes quiet; iteration yields every
    message in order and ends once closed."""
    import threading

    from runtime.sources import LiveMerge

    m = LiveMerge(lateness_s=0.25)   # far above a thread's scheduling delay on a busy machine
    t0 = time.time()

    def device(make, n, every):
        for k in range(n):
            m.put(make(time.time()))
            time.sleep(every)

    threads = [threading.Thread(target=device, args=(_weight, 20, 0.01)),
               threading.Thread(target=device, args=(_gate, 2, 0.0))]
    for th in threads:
        th.start()
    got = []
    reader = threading.Thread(target=lambda: got.extend(m))
    reader.start()
    for th in threads:
        th.join()
    m.close()
    reader.join(timeout=5)
    assert not reader.is_alive() and len(got) == 22
    assert all(a.t <= b.t for a, b in zip(got, got[1:])) and got[0].t >= t0
