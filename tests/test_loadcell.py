"""Analytic checks of the shelf scales: picking k items of mass m moves that cell by k·m."""
import math
from dataclasses import replace

import numpy as np
import pytest

from harness.paths import store_dir
from runtime.store import load_store
from sim.loadcell import Glitch, LoadCellBank, LoadCellConfig
from sim.world import QUIET_S, PhysicsWorld


@pytest.fixture(scope="module")
def store():
    return load_store(store_dir() / "tiny_unit.yaml")


def _run(world, bank, seconds):
    """Step physics and the scale; return {cell: [grams, ...]} of the samples in that window."""
    out: dict[str, list[float]] = {}
    n = round(seconds / world.dt_s)
    for _ in range(n):
        world.step()
        _run.t += world.dt_s
        bank.step(world.cell_loads_g(), world.dt_s)
        for cid, _, g in bank.due_samples(_run.t):
            out.setdefault(cid, []).append(g)
    return out


def _bound(cfg: LoadCellConfig, n: int, span_s: float) -> float:
    """Five standard deviations of the difference of two window medians, plus one quantum."""
    median_sd = 1.2533 * cfg.noise_g / math.sqrt(n)
    drift_sd = cfg.drift_g_per_sqrt_s * math.sqrt(span_s)
    return 5 * math.sqrt(2 * median_sd ** 2 + drift_sd ** 2) + cfg.quantum_g


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pick_k_items_changes_reading_by_k_m_and_put_back_restores(store, k):
    world = PhysicsWorld(store)
    cfg = LoadCellConfig()
    bank = LoadCellBank(world.cell_ids, cfg, np.random.default_rng(k))
    bank.reset(world.cell_loads_g())
    _run.t = 0.0
    bin_id = "U/1/0"
    cell = store.bins[bin_id].cell_id
    items = world.items_in_bin(bin_id)[:k]
    mass_g = store.products[world.instances[items[0]].sku].mass_g

    _run(world, bank, 0.5)
    before = np.median(_run(world, bank, 1.0)[cell])
    slots = []
    for i in items:
        slots.append(np.array([*world.instances[i].slot_xy, store.bins[bin_id].z0]))
        world.grasp(i)
        world.carry(i, np.array([0.0, -3.0, 1.0]))
    _run(world, bank, 1.5)  # the plate rings, then settles
    window = _run(world, bank, 1.0)[cell]
    after = np.median(window)
    bound = _bound(cfg, len(window), 2.5)
    assert abs((before - after) - k * mass_g) <= bound, (before, after, k * mass_g, bound)

    for i, s in zip(items, slots):
        world.release(i, bin_id, s)
    _run(world, bank, 1.5)
    restored = np.median(_run(world, bank, 1.0)[cell])
    assert abs(restored - before) <= _bound(cfg, len(window), 5.0), (before, restored)
    # the neighbouring cell did not move
    other = store.bins["U/1/1"].cell_id
    assert other != cell
    world.close()


def test_true_load_is_the_stocked_mass(store):
    world = PhysicsWorld(store)
    loads = dict(zip(world.cell_ids, world.cell_loads_g()))
    for cid, cell in store.load_cells.items():
        expected = sum(store.products[world.instances[i].sku].mass_g for b in cell.bins for i in world.items_in_bin(b))
        assert loads[cid] == pytest.approx(expected, rel=1e-3, abs=0.5)
    world.close()


def test_put_back_impact_rings_then_settles(store):
    world = PhysicsWorld(store)
    cfg = LoadCellConfig(noise_g=0.0, drift_g_per_sqrt_s=0.0)
    bank = LoadCellBank(world.cell_ids, cfg, np.random.default_rng(0))
    bank.reset(world.cell_loads_g())
    _run.t = 0.0
    bin_id = "U/0/1"
    cell = store.bins[bin_id].cell_id
    i = world.items_in_bin(bin_id)[0]
    slot = np.array([*world.instances[i].slot_xy, store.bins[bin_id].z0])
    world.grasp(i)
    world.carry(i, np.array([0.0, -3.0, 1.0]))
    base = np.median(_run(world, bank, 1.0)[cell])
    world.release(i, bin_id, slot)
    trace = np.array(_run(world, bank, 2.0)[cell])
    m = store.products[world.instances[i].sku].mass_g
    assert trace.max() > base + m * 1.05, "an impact overshoots the final reading"
    assert abs(trace[-10:].mean() - (base + m)) < 1.0, "and settles to it"
    world.close()


def test_glitch_is_a_transient(store):
    world = PhysicsWorld(store)
    cell = world.cell_ids[0]
    cfg = LoadCellConfig(noise_g=0.0, drift_g_per_sqrt_s=0.0)
    bank = LoadCellBank(world.cell_ids, cfg, np.random.default_rng(0), glitches=[Glitch(cell, 0.5, 800.0, 0.05)])
    bank.reset(world.cell_loads_g())
    _run.t = 0.0
    trace = np.array(_run(world, bank, 1.0)[cell])
    assert trace.max() - np.median(trace) == pytest.approx(800.0, abs=1.0)
    assert (trace > np.median(trace) + 100).sum() <= 5
    world.close()


def test_a_carried_item_passes_through_other_bins_without_touching_them(store):
    """A held item is out of physics: sweeping it through the neighbouring bins moves no cell."""
    world = PhysicsWorld(store)
    base = []
    for _ in range(24):
        world.step()
        base.append(world.cell_loads_g())
    before = np.mean(base, axis=0)  # the solver's contact forces cycle over a few steps
    i = world.items_in_bin("U/0/0")[0]
    world.grasp(i)
    start, end = world.pose(i)[:3, 3], store.bins["U/1/1"].centre_world()
    moved = []
    for k in range(240):
        world.carry(i, start + (end - start) * k / 239)
        world.step()
        m = world.cell_loads_g() - before
        m[world.cell_ids.index("U/0/0")] = 0.0  # the one it left
        moved.append(m)
    moved = np.array(moved)
    # the contact solver jitters by a few grams under tall bottles; an item ploughing through
    # a bin would push by hundreds to thousands
    assert np.abs(moved).max() < 10.0
    assert np.abs(moved.mean(axis=0)).max() < 0.5
    assert np.allclose(world.pose(i)[:3, 3], end)
    world.close()


# ------------------------------------------------------------------------------ real store shelves

def _synthetic(bank: LoadCellBank, true_at, seconds: float, dt: float = 1 / 240) -> dict[str, np.ndarray]:
    """Feed ``true_at(t)`` (true loads) for ``seconds``; {cell: [[t, grams], ...]}."""
    out: dict[str, list] = {}
    bank.reset(true_at(0.0))
    for k in range(round(seconds / dt)):
        bank.step(true_at(k * dt), dt)
        for cid, t, g in bank.due_samples(k * dt):
            out.setdefault(cid, []).append((t, g))
    return {c: np.array(v) for c, v in out.items()}


def test_the_twin_preset_reads_as_the_sensor_model_always_did() -> None:
    """``twin`` draws nothing more: same seed, same readings as the plain noise + drift formula."""
    from sim.loadcell import LOADCELL_PRESETS

    cfg = LOADCELL_PRESETS["twin"]
    assert cfg == LoadCellConfig() and not cfg.messy
    bank = LoadCellBank(["a", "b"], cfg, np.random.default_rng(3), neighbours={"a": ("b",), "b": ("a",)})
    got = _synthetic(bank, lambda t: np.array([500.0, 800.0]), 0.1)
    rng, drift, ref = np.random.default_rng(3), np.zeros(2), []
    for _ in range(len(got["a"])):
        drift += rng.normal(0.0, cfg.drift_g_per_sqrt_s * np.sqrt(1 / cfg.rate_hz), 2)
        ref.append(np.round((np.array([500.0, 800.0]) + drift + rng.normal(0.0, cfg.noise_g, 2)) / cfg.quantum_g) * cfg.quantum_g)
    assert np.allclose(np.stack([got["a"][:, 1], got["b"][:, 1]], 1), ref)


def test_real_shelf_plates_are_as_noisy_as_the_published_ones() -> None:
    """300 idle plates: σ median ≈ 1 g, 90 % under about 4 g, a few at 8 g and more."""
    from sim.loadcell import LOADCELL_PRESETS

    cfg = LOADCELL_PRESETS["real_shelf"]
    cells = [f"p{i:03d}" for i in range(300)]
    bank = LoadCellBank(cells, replace(cfg, spike_per_min=0.0), np.random.default_rng(0))
    trace = _synthetic(bank, lambda t: np.full(300, 1000.0), 2.0)
    sd = np.array([trace[c][:, 1].std() for c in cells])
    assert 0.8 < np.median(sd) < 1.3
    assert 3.0 < np.percentile(sd, 90) < 5.5
    assert 0.01 < np.mean(sd > 8.0) < 0.08
    assert np.allclose(sorted(bank.noise_sigma_g.values()), np.sort(sd), rtol=0.25, atol=0.15)


def test_a_step_wanders_leaks_and_splits_over_straddled_plates() -> None:
    """A 105 g snack that rests 17 % on its left plate and 24 % on its right leaves all three; a
    300 g can elsewhere leaks 1.5 % onto each neighbour; the level wanders for about a second."""
    from sim.loadcell import LOADCELL_PRESETS

    cfg = replace(LOADCELL_PRESETS["real_shelf"], noise_spread=0.0, spike_per_min=0.0)
    cells = [f"c{i}" for i in range(8)]
    beside = {c: tuple(x for x in (f"c{i - 1}", f"c{i + 1}") if x in cells) for i, c in enumerate(cells)}
    bank = LoadCellBank(cells, cfg, np.random.default_rng(1), straddle={"c1": {"c0": 0.17, "c2": 0.24}}, neighbours=beside)
    picked = np.array([0, -105.0, 0, 0, 0, -300.0, 0, 0])
    trace = _synthetic(bank, lambda t: 1000.0 + picked * (t >= 1.5), 5.0)
    step = {c: np.median(v[v[:, 0] > 4.0, 1]) - np.median(v[(v[:, 0] > 0.5) & (v[:, 0] < 1.45), 1]) for c, v in trace.items()}
    leak = 0.015 * 105
    assert step["c0"] == pytest.approx(-105 * 0.17 - leak, abs=1.5)
    assert step["c1"] == pytest.approx(-105 * 0.59, abs=1.5)
    assert step["c2"] == pytest.approx(-105 * 0.24 - leak, abs=1.5)
    assert step["c4"] == pytest.approx(-300 * 0.015, abs=1.0) and step["c6"] == pytest.approx(-4.5, abs=1.0)
    assert step["c5"] == pytest.approx(-300.0 * (1 - 0.0), abs=1.5)
    after, calm = (trace["c5"][(trace["c5"][:, 0] > a) & (trace["c5"][:, 0] < b), 1] for a, b in ((1.7, 2.5), (4.0, 5.0)))
    assert after.std() > 3 * calm.std() and np.ptp(after) > 20.0   # it wanders after the step, then settles


def test_a_store_says_which_bins_straddle_and_bad_shares_are_one_line_errors(tmp_path) -> None:
    import yaml

    from runtime.store import SpecError

    raw = yaml.safe_load((store_dir() / "tiny_unit.yaml").read_text())
    raw["units"][0]["shelves"][1]["straddle"] = {1: [0.2, 0.0]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    s = load_store(tmp_path / "s.yaml")
    assert s.straddles == {"U/1/1": {"U/1/0": 0.2}}
    assert s.cell_neighbours["U/1/0"] == ("U/1/1",)
    raw["units"][0]["shelves"][1]["straddle"] = {1: [0.0, 0.3]}           # bin 1 is the last: no right neighbour
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match="straddle"):
        load_store(tmp_path / "s.yaml")


def test_the_command_line_picks_a_preset_and_overrides_its_keys() -> None:
    from harness.cli import _compose
    from harness.simulate import sim_config_from
    from sim.loadcell import LOADCELL_PRESETS

    assert sim_config_from(_compose([])["sim"]).loadcell == LOADCELL_PRESETS["twin"]
    assert sim_config_from(_compose(["sim.loadcell.preset=real_shelf"])["sim"]).loadcell == LOADCELL_PRESETS["real_shelf"]
    noisier = sim_config_from(_compose(["sim.loadcell.preset=real_shelf", "sim.loadcell.noise_g=2.0"])["sim"]).loadcell
    assert noisier.noise_g == 2.0 and noisier.rate_hz == LOADCELL_PRESETS["real_shelf"].rate_hz


def test_a_still_shelf_leaves_the_solver_keeping_its_load_and_poses(store):
    """A shelf nobody touched for QUIET_S is frozen: its plates read what the solved world's read
    (less the solver's jitter of a few grams), its items lie where they lay; a hand thaws it."""
    solved, frozen = PhysicsWorld(store, freeze=False), PhysicsWorld(store)

    def mean_loads(seconds):
        out = []
        for _ in range(round(seconds / solved.dt_s)):
            for w in (solved, frozen):
                w.step()
            out.append([solved.cell_loads_g(), frozen.cell_loads_g()])
        return np.mean(out, axis=0)

    mean_loads(QUIET_S + 0.5)
    assert frozen.frozen_shelves() == [("U", 0), ("U", 1)] and solved.frozen_shelves() == []
    a, b = mean_loads(0.5)
    assert np.abs(a - b).max() < 1.0
    assert np.abs(frozen.poses() - solved.poses()).max() < 1e-3

    bin_id = "U/1/0"
    i = frozen.items_in_bin(bin_id)[0]
    slot = np.array([*frozen.instances[i].slot_xy, store.bins[bin_id].z0])
    for w in (solved, frozen):
        w.grasp(i)
        w.carry(i, np.array([0.0, -3.0, 1.0]))
    assert frozen.frozen_shelves() == [("U", 0)], "the hand thawed the upper shelf"
    mean_loads(1.0)
    a, b = mean_loads(0.5)
    assert np.abs(a - b).max() < 1.0
    k = frozen.cell_ids.index(store.bins[bin_id].cell_id)
    assert b[k] == pytest.approx(5 * store.products[frozen.instances[i].sku].mass_g, abs=1.0)
    for w in (solved, frozen):
        w.release(i, bin_id, slot)
    mean_loads(QUIET_S + 0.5)
    assert frozen.frozen_shelves() == [("U", 0), ("U", 1)]
    a, b = mean_loads(0.5)
    assert np.abs(a - b).max() < 1.0
    assert b[k] == pytest.approx(6 * store.products[frozen.instances[i].sku].mass_g, abs=1.0)
    solved.close()
    frozen.close()


def test_a_simulation_without_load_cells_moves_the_same_and_sends_no_readings() -> None:
    """`sim.load_cells=false` (datagen): the same shoppers, items and ground truth as with scales,
    and not one weight sample."""
    from pathlib import Path

    from runtime.messages import WeightSample
    from sim.scenario import load_scenario
    from sim.simulator import CameraConfig, SimConfig, Simulator

    sc = load_scenario(Path(__file__).parent / "scenarios" / "tiny_pick.yaml", store_dir())
    runs = []
    for cells in (True, False):
        sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(render=False), load_cells=cells))
        weights = sum(isinstance(m, WeightSample) for m in sim.run())
        runs.append((weights, sim.t, sim.truth.interactions, [sim.world.pose(i.index).round(9).tolist() for i in sim.world.instances]))
        sim.close()
    (w_on, t_on, inter_on, poses_on), (w_off, t_off, inter_off, poses_off) = runs
    assert w_on > 0 and w_off == 0
    assert t_on == t_off and inter_on == inter_off and len(inter_on) > 0
    assert poses_on == poses_off
