"""Walking paths: round the shelves, through the gates, and round people standing still."""
import numpy as np
import pytest

from harness.paths import store_dir
from runtime.store import load_store
from sim.navigation import FloorPlanner
from sim.scenario import parse_scenario
from sim.shoppers import STAND_OFF_M
from sim.simulator import CameraConfig, SimConfig, Simulator


@pytest.fixture(scope="module")
def planner():
    return FloorPlanner(load_store(store_dir() / "small_convenience.yaml"))


def _dense(path, step=0.02):
    pts = [path[0]]
    for a, b in zip(path, path[1:]):
        n = max(1, int(np.linalg.norm(b - a) / step))
        pts += [a + (b - a) * k / n for k in range(1, n + 1)]
    return np.array(pts)


def test_paths_stay_on_free_floor_and_pass_the_gates(planner):
    out, inside = planner.gate_points(planner.store.gate("entry"))
    goal = planner.store.bins["C/2/1"].centre_world()[:2] + planner.store.bins["C/2/1"].unit.front_normal() * 0.65
    path = planner.plan(out, goal)
    assert all(planner.is_free(p) for p in _dense(path))
    assert np.linalg.norm(path[-1] - planner.nearest_free(goal)) < 1e-9


def test_paths_go_round_someone_standing_in_the_way(planner):
    a, b = np.array([1.4, 2.0]), np.array([1.4, 4.4])   # along the left aisle
    person = np.array([1.4, 3.2])
    direct = _dense(planner.plan(a, b))
    assert np.linalg.norm(direct - person, axis=1).min() < 0.2
    around = _dense(planner.plan(a, b, avoid=[person]))
    assert np.linalg.norm(around - person, axis=1).min() >= 0.45 - planner.res


def test_two_shoppers_at_one_bin_keep_apart():
    d = {"name": "t", "store": "tiny_unit", "seed": 4, "shoppers": [
        {"account": "a", "enter_at_s": 0.0, "script": [{"pick": {"sku": "cola_zero_330", "qty": 2}}, {"wait": {"seconds": 4}}, "exit"]},
        {"account": "b", "enter_at_s": 1.5, "script": [{"pick": {"sku": "cola_zero_330", "qty": 1}}, "exit"]}]}
    sc = parse_scenario(d, "scenarios/t.yaml", store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(render=False)))
    list(sim.run())
    sim.close()
    xy, present = np.array(sim.truth.xy), np.array(sim.truth.present)
    both = present.all(axis=1)
    assert both.sum() > 60
    assert np.linalg.norm(xy[both, 0] - xy[both, 1], axis=1).min() > 0.35
    assert sim.truth.carts()["a"]["items"] == {"cola_zero_330": 2} and sim.truth.carts()["b"]["items"] == {"cola_zero_330": 1}


def test_with_every_place_at_a_bin_taken_a_shopper_stands_where_there_is_most_room():
    """Three shoppers wait in front of one bin (before it and half a metre to either side) and a
    fourth comes for it: nobody is left to stand in anyone's place (two bodies in one spot are
    something no camera could tell apart, and no store has). People walking past each other are
    another matter (they give way a while, then squeeze by): only people standing count here."""
    pick = {"pick": {"sku": "cola_zero_330", "qty": 1}}
    d = {"name": "t", "store": "tiny_unit", "seed": 4, "shoppers": [
        {"account": a, "enter_at_s": t, "script": [pick, {"wait": {"seconds": w}}, "exit"]}
        for a, t, w in (("a", 0.0, 9.0), ("b", 1.5, 7.0), ("c", 3.0, 5.0), ("d", 4.5, 0.5))]}
    sc = parse_scenario(d, "scenarios/t.yaml", store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(render=False)))
    list(sim.run())
    sim.close()
    xy, present = np.array(sim.truth.xy), np.array(sim.truth.present)
    b = sc.spec.bins["U/1/1"]                         # the cans' bin, and where one stands before it
    stand = b.centre_world()[:2] + b.unit.front_normal() * (b.unit.depth_m / 2 + STAND_OFF_M)
    still = np.zeros(present.shape, bool)               # not walking: moved under 2 cm in the last 0.2 s
    k = max(1, int(round(0.2 / (sim.truth.t[1] - sim.truth.t[0]))))
    still[k:] = np.linalg.norm(xy[k:] - xy[:-k], axis=-1) < 0.02
    inside = present & still & (np.linalg.norm(xy - stand, axis=-1) < 1.0)
    closest = min(np.linalg.norm(xy[both, i] - xy[both, j], axis=1).min()
                  for i in range(4) for j in range(i + 1, 4) if (both := inside[:, i] & inside[:, j]).any())
    assert closest > 0.3
    assert all(sim.truth.carts()[a]["items"] == {"cola_zero_330": 1} for a in "abcd")
