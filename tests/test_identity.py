"""Gate identity (runtime/identity.py) and attribution (runtime/attribution.py) on hand-made
tracks: an entry scan names the shopper at the gate, a group shares its account, and a weight
event goes to the hand that was in the bin."""
from __future__ import annotations

import numpy as np
import pytest

from harness.paths import store_dir
from runtime.attribution import Attributor
from runtime.config import IdentityConfig, RuntimeConfig
from runtime.identity import GateIdentity
from runtime.store import load_store
from runtime.tracking import WorldTracker
from runtime.weight_events import WeightEvent
from worlds import observation


@pytest.fixture(scope="module")
def store():
    return load_store(store_dir() / "tiny_unit.yaml")


def _walk(tracker: WorldTracker, store, people: dict[int, list], t0: float = 0.0, dt: float = 0.2) -> float:
    """Feed the tracker one tick per step: ``people[person]`` is a list of floor points (None:
    not seen then). Returns the last tick's time."""
    n = max(len(p) for p in people.values())
    t = t0
    for i in range(n):
        t = round(t0 + dt * i, 6)
        obs = [observation(store, t, i, path[i], person=p) for p, path in people.items() if i < len(path) and path[i] is not None]
        tracker.update(t, obs)
    return t


def _identity(store) -> GateIdentity:
    return GateIdentity(store, IdentityConfig(), group_window_s=5.0, walked_m=0.5)


def test_an_entry_scan_names_the_track_at_the_gate_when_it_came(store) -> None:
    tracker, ids = WorldTracker(store), _identity(store)
    # person 0 crosses the entry gate (x 0.85) at about t = 0.4 s; person 1 stands 1.5 m to the side
    path0 = [(0.85, 0.1 + 0.25 * i) for i in range(8)]
    path1 = [(2.5, 1.0)] * 8
    t = _walk(tracker, store, {0: path0, 1: path1})
    ids.entry(0.4, "gate_in", "ann")
    assert ids.update(0.4 + 0.3, tracker) == []            # too soon: the crossing may not be a track yet
    assigned = ids.update(t, tracker)
    ann = next(k for k in tracker.snapshot() if k.account == "ann")
    assert assigned == [(ann.id, "ann")]
    assert float(np.linalg.norm(ann.position_at(0.4) - [0.85, 0.6])) < 0.2


def test_people_right_behind_a_scan_share_its_account_later_ones_do_not(store) -> None:
    tracker, ids = WorldTracker(store), _identity(store)
    walk_in = lambda start: [None] * start + [(0.85, 0.1 + 0.2 * i) for i in range(10)]   # noqa: E731
    # Ann (scanned at 0.2 s), Ben 2 s behind her without a scan (her group); Cy 10 s later, unscanned
    t = _walk(tracker, store, {0: walk_in(0), 1: walk_in(10)})
    ids.entry(0.2, "gate_in", "ann")
    ids.update(1.0, tracker)
    ids.update(t, tracker)
    accounts = sorted(k.account or "-" for k in tracker.snapshot())
    assert accounts == ["ann", "ann"]
    t = _walk(tracker, store, {2: [(0.85, 0.1 + 0.2 * i) for i in range(10)]}, t0=10.0)
    ids.update(t, tracker)
    cy = max(tracker.snapshot(), key=lambda k: k.first_t)
    assert cy.account is None


def test_back_to_back_entries_are_two_accounts_not_a_group(store) -> None:
    """Ann scans at 0.2 s and walks in; Ben comes 1.6 s behind her and is taken into her group as
    he walks up, before his own scan at 2.4 s: a group member is someone who never scans, so his
    scan takes him back and the two tracks carry two accounts."""
    tracker, ids = WorldTracker(store), _identity(store)
    walk_in = lambda start: [None] * start + [(0.85, 0.1 + 0.2 * i) for i in range(12)]   # noqa: E731
    t = 0.0
    ids.entry(0.2, "gate_in", "ann")
    for i in range(20):                                     # one tick at a time, as the runtime runs
        t = _walk(tracker, store, {0: walk_in(0)[i:i + 1], 1: walk_in(8)[i:i + 1]}, t0=0.2 * i)
        if abs(t - 2.4) < 1e-6:
            assert sorted(k.account or "-" for k in tracker.snapshot()) == ["ann", "ann"]   # Ben, in her group
            ids.entry(2.4, "gate_in", "ben")
        ids.update(t, tracker)
    by_start = sorted(tracker.snapshot(), key=lambda k: k.first_t)
    assert [k.account for k in by_start] == ["ann", "ben"]


def test_a_scan_nobody_was_seen_for_is_dropped_and_counted(store) -> None:
    tracker, ids = WorldTracker(store), _identity(store)
    ids.entry(0.0, "gate_in", "ann")
    ids.update(1.0, tracker)
    assert ids.unmatched_scans == 0
    ids.update(IdentityConfig().scan_wait_s + 0.1, tracker)
    assert ids.unmatched_scans == 1


def test_the_hand_in_the_bin_is_charged_not_the_nearest_body(store) -> None:
    """Ben stands nearer the unit, but Ann's wrist was in bin U/1/1 when the can left."""
    cfg = RuntimeConfig()
    tracker = WorldTracker(store)
    b = store.bins["U/1/1"]
    hand_in, hand_out = b.centre_world(), b.centre_world() + np.array([0.0, -0.6, 0.0])
    for i, t in enumerate((4.6, 4.8, 5.0)):
        tracker.update(t, [observation(store, t, i, (hand_in[0] + 0.3, 1.8), hand_in, person=0),
                           observation(store, t, i, (hand_in[0] - 0.3, 2.2), hand_out, person=1)])
    for k, a in zip(tracker.snapshot(), ("ann", "ben")):
        tracker.assign(k.id, a)
    att = Attributor(store, cfg).weight_event(WeightEvent("U/1/1", 5.0, 5.4, -350.0, 1.0), tracker.snapshot(), ["ann", "ben"])
    assert (att.account, att.method) == ("ann", "wrist")
    assert att.distance_m == 0.0 and att.hand_m["ben"] == pytest.approx(0.6 - b.LIP_M - b.unit.depth_m / 2, abs=1e-6)
    # sure: Ben's hand was 0.35 m farther (margin ≥ 0.49 → 0.5 + margin, capped at 0.99)
    assert att.confidence == pytest.approx(min(0.99, 0.5 + att.hand_m["ben"]))


def test_with_no_hand_seen_the_shopper_in_front_of_the_bin_is_charged(store) -> None:
    """No camera saw a wrist. Ann stands 0.35 m in front of bin U/1/1, Ben 0.6 m out and 0.35 m to
    its side: both could have reached in. Ann, in front of it, is charged (they used to tie, and
    the older track won)."""
    cfg = RuntimeConfig()
    tracker = WorldTracker(store)
    b = store.bins["U/1/1"]
    n, along = b.unit.front_normal()[:2], np.array([-b.unit.front_normal()[1], b.unit.front_normal()[0]])
    ann, ben = b.front_xy() + 0.35 * n, b.front_xy() + 0.6 * n + (b.width_m / 2 + 0.35) * along
    for i, t in enumerate((4.6, 4.8, 5.0)):
        tracker.update(t, [observation(store, t, i, ben, person=1), observation(store, t, i, ann, person=0)])
    for k, a in zip(tracker.snapshot(), ("ben", "ann")):
        tracker.assign(k.id, a)
    att = Attributor(store, cfg).weight_event(WeightEvent("U/1/1", 5.0, 5.4, -350.0, 1.0), tracker.snapshot(), ["ann", "ben"])
    assert (att.account, att.method) == ("ann", "floor")
    assert att.hand_m["ben"] - att.hand_m["ann"] > 0.2


def test_two_hands_at_once_are_assigned_jointly_even_when_the_busy_hand_split_them(store) -> None:
    """A can leaves U/1/1 and, 0.4 s later, one leaves U/1/0. Ann's hand was nearest the first
    (0.49 against Ben's 0.50 m) and she was charged; for the second her hand (0.17 m) is busy, so
    Ben's (0.28 m) wins. Together, Ben–U/1/1 and Ann–U/1/0 (0.67 m) fit better than the charges one
    at a time (0.77 m): the first moves to Ben and Ann takes the second."""
    from runtime.attribution import Attribution, Charged, Move

    at = Attributor(store, RuntimeConfig())
    prev = Charged(1, 5.0, ("U/1/1",), "ann", {"ann": 0.49, "ben": 0.50})
    att = Attribution("ben", 0.6, "wrist", 7, 0.28, hand_m={"ann": 0.17, "ben": 0.28})
    ev = WeightEvent("U/1/0", 5.4, 5.8, -350.0, 1.0)
    assert at.concurrent(ev, att, "ben", [prev], {"ann", "ben"}) == ("ann", [Move(1, "ann", "ben", 5.4)])
    # a joint assignment no better than the margin leaves the charges as they were
    close = Attribution("ben", 0.6, "wrist", 7, 0.28, hand_m={"ann": 0.25, "ben": 0.28})
    assert at.concurrent(ev, close, "ben", [prev], {"ann", "ben"}) == ("ben", [])


def test_without_cameras_the_only_shopper_pays_and_several_make_a_guess(store) -> None:
    at = Attributor(store, RuntimeConfig(sensing="weight_only"))
    ev = WeightEvent("U/1/1", 5.0, 5.4, -350.0, 1.0)
    alone = at.weight_event(ev, None, ["ann"])
    assert (alone.account, alone.confidence, alone.method) == ("ann", 1.0, "only shopper")
    two = at.weight_event(ev, None, ["ann", "ben"])
    assert (two.account, two.confidence, two.method) == ("ann", 1 / 2, "guess")


def test_a_ghost_beside_the_one_who_scanned_joins_no_group(store) -> None:
    """Ann scans and walks in; a ghost of her (a second floor point 0.9 m to her side, as a camera
    that placed her wrong gives) appears as she does and walks with her. People pass a gate in
    single file: the ghost is beside her, not behind, so it is no group member. Ben, 2 s behind
    her without a scan, is."""
    tracker, ids = WorldTracker(store), _identity(store)
    ann = [(0.85, 0.1 + 0.2 * i) for i in range(12)]
    ghost = [None] + [(x + 0.9, y + 0.4) for x, y in ann[1:8]]
    ben = [None] * 10 + [(0.85, 0.1 + 0.2 * i) for i in range(10)]
    ids.entry(0.2, "gate_in", "ann")
    t = 0.0
    for i in range(20):
        t = _walk(tracker, store, {0: ann[i:i + 1], 1: ghost[i:i + 1], 2: ben[i:i + 1]}, t0=0.2 * i)
        ids.update(t, tracker)
    by_start = sorted(tracker.snapshot(), key=lambda k: k.first_t)
    assert [k.account for k in by_start] == ["ann", None, "ann"]
    assert float(np.linalg.norm(by_start[1].first_xy - [1.75, 0.8])) < 0.2      # the ghost, named by nobody


def test_a_ghost_seen_before_the_one_who_scanned_joins_no_group(store) -> None:
    """A far camera places Ann, still outside, on the gate line 0.35 m to her side, 0.6 s before
    the cameras over the gate see her; the ghost then walks in with her. Its first point is as near
    the gate as hers, but it was seen before her: it was ahead of her in the file, and nobody walks
    ahead of the one who scans for the group. It joins no group."""
    tracker, ids = WorldTracker(store), _identity(store)
    ann = [None] * 3 + [(0.85, 0.05 + 0.2 * i) for i in range(12)]
    ghost = [(1.2, 0.0), (1.2, 0.05), (1.2, 0.1)] + [(x + 0.9, y + 0.4) for x, y in ann[3:9]]
    ids.entry(0.7, "gate_in", "ann")
    t = 0.0
    for i in range(15):
        t = _walk(tracker, store, {0: ann[i:i + 1], 1: ghost[i:i + 1]}, t0=0.2 * i)
        ids.update(t, tracker)
    by_start = sorted(tracker.snapshot(), key=lambda k: k.first_t)
    assert [k.account for k in by_start] == [None, "ann"]


def test_two_back_to_back_entries_give_two_exact_receipts(store, tmp_path) -> None:
    """Ann scans at 0.2 s, Ben 1.6 s behind her at 1.8 s; each walks up to the shelf, Ann takes a
    bag of crisps (U/0/0, 160 g) and Ben a bottle of water (U/0/1, 520 g), and they leave. The
    runtime gets the gate scans, the people as the cameras see them and the load cells: two
    receipts, one item each, on the right account."""
    import json

    from runtime.config import HandConfig
    from runtime.messages import GateEvent, WeightSample
    from runtime.pipeline import Runtime

    rt = Runtime(store, RuntimeConfig(hands=HandConfig(product_model="")), tmp_path / "out", detector=lambda img: [])
    walk = lambda x: [(0.85 + (x - 0.85) * min(i / 10, 1.0), 0.1 + 0.21 * min(i, 10)) for i in range(40)]  # noqa: E731
    people = {0: [None] * 0 + walk(2.25), 1: [None] * 8 + walk(1.75)}
    bins = {0: "U/0/0", 1: "U/0/1"}
    reach = {0: (3.0, 3.6), 1: (4.6, 5.2)}          # wrist in the bin; the item leaves halfway
    mass = {"U/0/0": 160.0, "U/0/1": 520.0}
    level = {"U/0/0": 4 * 160.0 + 300, "U/0/1": 6 * 520.0 + 300}
    scans = [(0.2, "ann"), (1.8, "ben")]
    for k in range(int(8.0 * 80)):
        t = round(k / 80, 4)
        while scans and scans[0][0] <= t:
            ts, who = scans.pop(0)
            rt.process(GateEvent("gate_in", ts, who, "enter"))
        for p, b in bins.items():
            gone = t >= sum(reach[p]) / 2
            rt.process(WeightSample(b, t, level[b] - mass[b] * gone + 0.3 * (k % 3)))
        if k % 16 == 0:                                  # a perception tick every 0.2 s
            i = k // 16
            obs = []
            for p, path in people.items():
                if i < len(path) and path[i] is not None:
                    wrist = store.bins[bins[p]].centre_world() if reach[p][0] <= t <= reach[p][1] else None
                    obs.append(observation(store, t, i, path[i], wrist, person=p))
            rt.tracker.update(t, obs)
            rt.identity.update(t, rt.tracker)
    rt.process(GateEvent("gate_out", 8.1, "ann", "exit"))
    rt.process(GateEvent("gate_out", 8.3, "ben", "exit"))
    rt.close()
    receipts = {r["account_id"]: {ln["sku"]: ln["qty"] for ln in r["lines"]}
                for r in map(json.loads, (tmp_path / "out" / "receipts.jsonl").read_text().splitlines())}
    assert receipts == {"ann": {"crisps_salted_150": 1}, "ben": {"water_still_500": 1}}
