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
