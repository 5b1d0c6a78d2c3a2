"""Hands at the shelf (runtime/hands.py): reaches from triangulated wrists, the product in the hand
from two cameras that agree in 3-D, and the charges the runtime makes from them where no scale
decides (vision_only, a silent cell).

The product model here is a stand-in that reads the image only: it reports a can wherever it finds
a pure red marker painted into the frame, as a real model reports what it sees."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.paths import store_dir
from runtime.geometry import project
from runtime.config import HandConfig
from runtime.hands import HandWatch, Reach
from runtime.messages import GateEvent, WeightSample
from runtime.perception import Detection, Detector
from runtime.config import RuntimeConfig
from runtime.pipeline import Runtime
from runtime.store import load_store
from runtime.tracking import WorldTracker
from worlds import observation

MARK = (0, 0, 255)   # BGR pure red


class MarkerProducts(Detector):
    """A product model stand-in: a ``sku`` box round every red marker in the image."""

    task, names, imgsz = "detect", {0: "cola_zero_330"}, (320, 320)

    def __init__(self, sku: str = "cola_zero_330"):
        self.sku = sku

    def __call__(self, bgr: np.ndarray) -> list[Detection]:
        ys, xs = np.nonzero(np.all(bgr == MARK, axis=2))
        if not len(xs):
            return []
        c = np.array([xs.mean(), ys.mean()])
        return [Detection(np.r_[c - 4, c + 4], 0.9, 0, self.sku)]


@pytest.fixture(scope="module")
def store():
    return load_store(store_dir() / "tiny_unit.yaml")


def _frame(store, cam_id: str, point: np.ndarray | None) -> np.ndarray:
    cam = store.camera_by_id[cam_id]
    img = np.full((cam.height, cam.width, 3), 90, np.uint8)
    if point is not None:
        uv, _ = project(cam, point[None])
        u, v = np.round(uv[0]).astype(int)
        img[v - 2:v + 3, u - 2:u + 3] = MARK
    return img


def _hand_path(store, bin_id: str) -> list[tuple[float, np.ndarray]]:
    """A wrist 0.45 m in front of a bin, into it (t 1.0–1.6 s) and back out."""
    b = store.bins[bin_id]
    inside = b.centre_world()
    out = inside + np.array([0.0, -0.45, 0.0])      # the tiny unit faces −y
    ts = np.round(np.arange(0.0, 3.01, 0.2), 3)
    return [(float(t), inside if 1.0 <= t <= 1.6 else out) for t in ts]


def _feed(store, hands: HandWatch, tracker: WorldTracker, path, held_from_s: float | None,
          held_until_s: float = float("inf"), marked: tuple[str, ...] = ("cam_01", "cam_02"),
          stand_xy: np.ndarray | None = None) -> list[Reach]:
    """Give the watcher each tick: the two shelf cameras' frames (a marker at the wrist in the
    ``marked`` cameras from ``held_from_s`` on: the can in the hand), and the tracker the person
    standing 0.3 m behind where the wrist starts, seen by both cameras."""
    reaches = []
    stand = path[0][1][:2] + np.array([0.0, -0.3]) if stand_xy is None else stand_xy
    for t, w in path:
        ob = observation(store, t, int(round(t * 10)), stand, w)
        for v in ob.views:
            held = held_from_s is not None and held_from_s <= t < held_until_s and v.camera_id in marked
            hands.frame(v.frame, _frame(store, v.camera_id, w if held else None))
        tracker.update(t, [ob])
        reaches += hands.update(t, tracker.snapshot())
    return reaches


def test_a_wrist_in_a_bin_is_one_reach_that_ends_when_the_hand_has_left(store) -> None:
    hands = HandWatch(store, HandConfig(), None)
    reaches = _feed(store, hands, WorldTracker(store), _hand_path(store, "U/1/1"), None)
    assert reaches == [Reach(1, "U/1/1", 1.0, 1.6)]
    assert hands.bins_at(store.bins["U/0/0"].centre_world()) == ["U/0/0"]
    assert hands.bins_at(np.array([2.0, 1.0, 1.0])) == []


def test_the_held_product_is_surer_when_two_cameras_agree_at_the_wrist(store) -> None:
    hands, tracker = HandWatch(store, HandConfig(), MarkerProducts()), WorldTracker(store)
    _feed(store, hands, tracker, _hand_path(store, "U/1/1"), held_from_s=0.0)
    k = tracker.track(1)
    assert hands.held(k, 1.8, 2.4) == {"cola_zero_330": 1.0}     # 0.9 + 0.9, capped
    assert hands.held(k, 1.0, 1.6) == {}              # the wrist is in the shelf then: not looked at
    assert HandWatch(store, HandConfig(), None).held(k, 1.8, 2.4) == {}   # no product model
    # the same marker seen by one camera only: its own score
    one, tracker1 = HandWatch(store, HandConfig(), MarkerProducts()), WorldTracker(store)
    _feed(store, one, tracker1, _hand_path(store, "U/1/1"), held_from_s=0.0, marked=("cam_01",))
    assert one.held(tracker1.track(1), 1.8, 2.4) == {"cola_zero_330": 0.9}
    assert one.held(tracker1.track(1), 1.8, 2.4, min_views=2) == {}


def _runtime(store, sensing: str, tmp_path: Path, sku: str = "cola_zero_330") -> Runtime:
    rt = Runtime(store, RuntimeConfig(sensing=sensing), tmp_path / sensing, detector=lambda img: [],
                 products_detector=MarkerProducts(sku))
    rt.process(GateEvent("gate_in", 0.0, "ann", "enter"))
    return rt


def _reach_through(rt: Runtime, store, bin_id: str, weights_g: float | None = None, **held) -> list:
    """Move Ann's wrist into ``bin_id`` and out, as the perception loop would report it (the cell
    reading ``weights_g`` all along, if given), and let the runtime decide each reach."""
    ups = []
    path = _hand_path(store, bin_id)
    stand = path[0][1][:2] + np.array([0.0, -0.3])
    for t, w in path:
        if weights_g is not None:
            rt.process(WeightSample(bin_id, t, weights_g))
        for r in _feed(store, rt.hands, rt.tracker, [(t, w)], stand_xy=stand, **held):
            ups += rt.reach(r, t)
        rt.tracker.assign(1, "ann")      # the entry scan named her
    return ups


def test_vision_only_charges_the_product_seen_in_the_hand_after_a_reach(store, tmp_path: Path) -> None:
    rt = _runtime(store, "vision_only", tmp_path)
    ups = _reach_through(rt, store, "U/1/1", held_from_s=1.8)
    assert [(u.account_id, u.sku, u.delta_qty) for u in ups] == [("ann", "cola_zero_330", 1)]
    assert ups[0].evidence["method"] == "vision" and ups[0].evidence["bin"] == "U/1/1"
    assert rt.fusion.belief.counts["U/1/1"]["cola_zero_330"] == 5
    (receipt,) = rt.process(GateEvent("gate_out", 3.5, "ann", "exit"))
    assert [(ln.sku, ln.qty) for ln in receipt.lines] == [("cola_zero_330", 1)]
    rt.close()


def test_a_reach_with_an_empty_hand_is_a_browse_and_a_working_scale_keeps_the_decision(store, tmp_path: Path) -> None:
    rt = _runtime(store, "vision_only", tmp_path)
    ups = _reach_through(rt, store, "U/1/1", held_from_s=None)
    assert ups == []
    rt.close()
    # fused, with the cell reporting: the reach is left to the weight events, whatever the hand holds
    fused = _runtime(store, "fused", tmp_path)
    assert _reach_through(fused, store, "U/1/1", weights_g=2100.0, held_from_s=1.8) == []
    fused.close()


def test_a_silent_cell_leaves_the_charge_to_the_hand_and_flags_it(store, tmp_path: Path) -> None:
    rt = _runtime(store, "fused", tmp_path)
    for i in range(40):                                # settled at 2.1 kg, then the cell goes silent
        rt.process(WeightSample("U/1/1", i / 80, 2100.0 + (i % 3)))
    ups = _reach_through(rt, store, "U/1/1", held_from_s=1.8)
    assert [(u.sku, u.delta_qty, u.evidence["scale"]) for u in ups] == [("cola_zero_330", 1, "silent")]
    # the cell comes back reading one can less: the hands charged that can already
    back = [u for i in range(40) for u in rt.process(WeightSample("U/1/1", 3.0 + i / 80, 1750.0 + (i % 3)))]
    assert back == []
    (receipt,) = rt.process(GateEvent("gate_out", 3.6, "ann", "exit"))
    assert [(ln.sku, ln.qty) for ln in receipt.lines] == [("cola_zero_330", 1)]
    assert receipt.flagged and "load cell U/1/1 silent" in receipt.reason
    rt.close()


def test_vision_only_takes_a_put_back_off_the_cart(store, tmp_path: Path) -> None:
    """The can is in the hand on the way to the bin and not on the way back: a put-back, into the
    bin the hand was in (here another product's bin: a wrong-shelf put-back the belief keeps)."""
    rt = _runtime(store, "vision_only", tmp_path)
    rt.carts.restore({"ann": {"cola_zero_330": 1}})     # charged earlier in the visit
    ups = _reach_through(rt, store, "U/0/1", held_from_s=0.0, held_until_s=1.0)
    assert [(u.sku, u.delta_qty, u.evidence["bin"]) for u in ups] == [("cola_zero_330", -1, "U/0/1")]
    assert rt.fusion.belief.counts["U/0/1"]["cola_zero_330"] == 1
    rt.close()


def _shelf_of_equals(tmp_path: Path):
    """tiny_unit with one load cell per shelf, its upper shelf holding two products that weigh the
    same and look nothing alike: a 110 g deodorant beside a 110 g pack of batteries."""
    import yaml

    raw = yaml.safe_load((store_dir() / "tiny_unit.yaml").read_text())
    raw["catalog"] += [
        {"sku": "deo_110", "name": "Deodorant 150 ml", "size_m": [0.05, 0.05, 0.16], "mass_g": 110, "price": 2.49,
         "shape": "bottle", "colour": "#2a9d8f", "label_colour": "#ffffff"},
        {"sku": "batteries_110", "name": "Batteries AA 4-pack", "size_m": [0.09, 0.03, 0.13], "mass_g": 110,
         "price": 4.99, "shape": "box", "colour": "#222222", "label_colour": "#f4a261"}]
    raw["units"][0]["load_cells"] = "per_shelf"
    raw["planogram"]["U/1/0"] = {"sku": "deo_110", "facings": 3, "depth": 2}
    raw["planogram"]["U/1/1"] = {"sku": "batteries_110", "facings": 3, "depth": 2}
    (tmp_path / "equals.yaml").write_text(yaml.safe_dump(raw))
    return load_store(tmp_path / "equals.yaml")


def test_items_of_equal_mass_on_one_cell_are_told_apart_by_what_the_hand_holds(tmp_path: Path) -> None:
    """Ann's wrist is tracked in the deodorant bin (one bin off) while 110 g leave the shelf's one
    cell; the cameras see batteries in her hand as it comes out. The mass cannot tell the two
    apart and the wrist points at the wrong one: the hand decides, and she pays for batteries."""
    store = _shelf_of_equals(tmp_path)
    assert store.bins["U/1/0"].cell_id == store.bins["U/1/1"].cell_id == "U/1"
    rt = _runtime(store, "fused", tmp_path, sku="batteries_110")
    inside = store.bins["U/1/0"].centre_world()
    out = inside + np.array([0.0, -0.45, 0.0])
    stand = out[:2] + np.array([0.0, -0.3])
    ups = []
    for k in range(int(3.0 * 80) + 1):
        t = round(k / 80, 4)
        lift = min(max((t - 1.0) / 0.3, 0.0), 1.0)                 # lifted over 0.3 s from 1.0 s
        ups += rt.process(WeightSample("U/1", t, 2000.0 - 110.0 * lift + 0.3 * (k % 3)))
        if k % 16 == 0:                                              # a perception tick every 0.2 s
            w = inside if 0.8 <= t <= 1.2 else out
            _feed(store, rt.hands, rt.tracker, [(t, w)], held_from_s=1.4, stand_xy=stand)
            rt.tracker.assign(1, "ann")
    (receipt,) = rt.process(GateEvent("gate_out", 3.5, "ann", "exit"))
    assert [(ln.sku, ln.qty) for ln in receipt.lines] == [("batteries_110", 1)]
    final = [u for u in ups if u.stage == "final" and u.delta_qty]
    assert final and final[-1].evidence["held"] == {"batteries_110": 1.0}
    rt.close()


@pytest.mark.parametrize("store_name", ["small_convenience", "corner_shop"])
def test_the_bins_at_a_point_are_those_within_reach_of_their_volume_nearest_first(store_name):
    """bins_at weighs every bin at once; it must say what each bin's own distance_to says."""
    store = load_store(store_dir() / f"{store_name}.yaml")
    watch = HandWatch(store, HandConfig(), None)
    rng = np.random.default_rng(3)
    # points round the bins' fronts, where hands are, and anywhere in the store
    fronts = np.array([b.centre_world() for b in store.bins.values()])
    pts = np.concatenate([fronts[rng.integers(len(fronts), size=1500)] + rng.normal(0, 0.15, (1500, 3)),
                          rng.uniform([0, 0, 0], [store.floor.width_m, store.floor.depth_m, 2.2], (500, 3))])
    inside = 0
    for p in pts:
        dist = sorted((b.distance_to(p), bid) for bid, b in store.bins.items())
        expected = [bid for d, bid in dist if d <= watch.cfg.in_bin_m]
        assert watch.bins_at(p) == expected
        inside += bool(expected)
    assert inside > 500    # most points near the fronts are at some bin
