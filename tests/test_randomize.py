"""Randomised scenarios: drawn from a seed, valid, plausible, and written back as scenario files.

Drawing needs no simulation; only the two CLI tests run the (camera-less) simulator, for 8 s of a
one-unit store.
"""
import dataclasses
import json
import math
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.cli import main
from harness.paths import scenarios_dir, store_dir
from harness.simulate import trip_config_from
from runtime.store import StoreSpec, load_store
from sim.randomize import TripConfig, estimate_trip_s, random_scenario, scenario_to_dict
from sim.scenario import Scenario, load_scenario, parse_scenario

HERE = Path(__file__).parent
SCENARIO_FILES = sorted(scenarios_dir().glob("*.yaml")) + sorted((HERE / "scenarios").glob("*.yaml"))


@lru_cache(maxsize=None)
def _store(name: str) -> StoreSpec:
    return load_store(store_dir() / f"{name}.yaml")


def _draw(store: str, seed: int, shoppers: int, duration_s: float, cfg: TripConfig = TripConfig()) -> Scenario:
    return random_scenario(_store(store), store, seed, shoppers, duration_s, cfg, store_dir=store_dir())


def _same(a: Scenario, b: Scenario) -> bool:
    return dataclasses.replace(a, path="") == dataclasses.replace(b, path="")


def _round_trip(sc: Scenario) -> Scenario:
    # through YAML text too, as a run directory's scenario.yaml is written
    text = yaml.safe_dump(scenario_to_dict(sc), sort_keys=False, default_flow_style=None, allow_unicode=True)
    return parse_scenario(yaml.safe_load(text), "<round trip>", store_dir())


# -- determinism -----------------------------------------------------------------------------------
def test_same_seed_same_scenario_other_seed_other_scenario():
    a, b = _draw("small_convenience", 11, 6, 120), _draw("small_convenience", 11, 6, 120)
    assert a == b and a.name == "random-s11-k6" and a.duration_s == 120.0 and a.seed == 11
    assert [s.account for s in a.shoppers] == [f"r11_s{k:02d}" for k in range(6)]
    c = _draw("small_convenience", 12, 6, 120)
    assert c.shoppers != a.shoppers


# -- the file format round trip ------------------------------------------------------------------
@pytest.mark.parametrize("store,seed", [("tiny_unit", 0), ("tiny_unit", 1), ("small_convenience", 2),
                                        ("small_convenience", 3)])
def test_drawn_scenario_round_trips(store: str, seed: int):
    busy = TripConfig(put_back_rate=0.5, wrong_shelf_rate=0.5, wait_rate=0.5, browse_rate=0.4)
    for cfg in (TripConfig(), busy):
        sc = _draw(store, seed, 5, 300, cfg)
        assert _same(_round_trip(sc), sc)


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_scenario_files_round_trip(path: Path):
    sc = load_scenario(path, store_dir())
    assert _same(_round_trip(sc), sc)


def test_round_trip_of_every_fault_kind_and_step_field():
    data = {"name": "all_fields", "store": "tiny_unit", "seed": 4, "lighting": {"preset": "flicker"}, "duration_s": 30,
            "faults": [{"kind": "camera_dropout", "camera": "cam_01", "from_s": 1, "to_s": 2.5},
                       {"kind": "dropped_frames", "rate": 0.2},
                       {"kind": "dropped_frames", "camera": "cam_02", "rate": 0.1},
                       {"kind": "loadcell_glitch", "cell": "U/0/0", "at_s": 3, "grams": -40},
                       {"kind": "loadcell_offset", "cell": "U/1/1", "from_s": 2, "grams": 12.5}],
            "shoppers": [{"account": "ann", "enter_at_s": 0.5, "appearance": {"height_m": 1.6, "top": "red"},
                          "script": [{"pick": {"sku": "cola_zero_330", "qty": 3, "per_reach": 2}},
                                     {"browse": {"sku": "water_still_500", "seconds": 2}},
                                     {"wait": {"seconds": 1.5, "at": [2.0, 1.0]}}, {"wait": {"seconds": 2}},
                                     {"put_back": {"sku": "cola_zero_330", "qty": 2, "bin": "U/0/0"}},
                                     {"browse": {"bin": "U/1/0"}}]}]}
    sc = parse_scenario(data, "<all fields>", store_dir())
    assert _same(_round_trip(sc), sc)
    steps = scenario_to_dict(sc)["shoppers"][0]["script"]
    assert steps[0] == {"pick": {"sku": "cola_zero_330", "qty": 3, "per_reach": 2}}
    assert steps[2] == {"wait": {"seconds": 1.5, "at": [2.0, 1.0]}} and steps[3] == {"wait": {"seconds": 2.0}}
    assert steps[-1] == "exit"


# -- plausibility ------------------------------------------------------------------------------------
def _picked_and_put_back(sc: Scenario):
    """Per shopper: the running cart never goes negative; yields every put-back step."""
    for plan in sc.shoppers:
        cart: Counter = Counter()
        for step in plan.script:
            if step.kind == "pick":
                cart[step.sku] += step.qty
            elif step.kind == "put_back":
                assert cart[step.sku] >= step.qty, (plan.account, step)
                cart[step.sku] -= step.qty
                yield step


def test_wrong_shelf_rate_respected_and_bins_hold_another_sku():
    cfg = TripConfig(put_back_rate=0.5, wrong_shelf_rate=0.3)
    store = _store("small_convenience")
    put_backs = [s for seed in range(40) for s in _picked_and_put_back(_draw("small_convenience", seed, 10, 900, cfg))]
    wrong = [s for s in put_backs if s.bin is not None]
    assert all(store.planogram[s.bin].sku != s.sku for s in wrong)
    n = len(put_backs)
    assert n > 200
    assert abs(len(wrong) / n - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n), (len(wrong), n)   # 4 standard errors


def test_no_put_backs_or_no_wrong_shelf_when_the_rates_are_zero():
    none = [s for seed in range(5)
            for s in _picked_and_put_back(_draw("tiny_unit", seed, 8, 600, TripConfig(put_back_rate=0.0)))]
    assert none == []
    right = [s for seed in range(5) for s in _picked_and_put_back(
        _draw("tiny_unit", seed, 8, 600, TripConfig(put_back_rate=0.6, wrong_shelf_rate=0.0)))]
    assert right and all(s.bin is None for s in right)


@pytest.mark.parametrize("store,duration_s", [("tiny_unit", 8), ("tiny_unit", 25), ("small_convenience", 30),
                                              ("small_convenience", 90)])
def test_every_trip_starts_in_time_fits_and_picks_placed_skus(store: str, duration_s: float):
    spec = _store(store)
    for seed in range(8):
        sc = _draw(store, seed, 6, duration_s)
        enters = [p.enter_at_s for p in sc.shoppers]
        assert enters == sorted(enters) and all(0 <= t < duration_s for t in enters)
        for plan in sc.shoppers:
            steps = plan.script
            assert steps[-1].kind == "exit" and len(steps) >= 2
            fallback = len(steps) == 2 and steps[0].kind == "browse"   # nothing fits: one short browse
            assert fallback or plan.enter_at_s + estimate_trip_s(spec, steps) <= duration_s + 1e-9, (seed, plan)
            assert all(spec.bins_of_sku(s.sku) for s in steps if s.kind == "pick")
        list(_picked_and_put_back(sc))


def test_long_runs_fit_whole_trips_and_baskets_look_like_a_convenience_store():
    scs = [_draw("small_convenience", seed, 10, 900) for seed in range(30)]
    items = [sum(s.qty for s in p.script if s.kind == "pick") for sc in scs for p in sc.shoppers]
    assert 1.8 < sum(items) / len(items) < 3.4, sum(items) / len(items)
    assert max(items) <= 8 * 3
    lighting = Counter(sc.lighting for sc in scs)
    assert lighting["day"] > lighting["evening"] + lighting["flicker"]


def test_shoppers_never_take_more_than_the_shelves_hold():
    spec = _store("tiny_unit")   # 22 items on 4 bins; 30 shoppers would take about 78
    sc = _draw("tiny_unit", 5, 30, 900, TripConfig(put_back_rate=0.0))
    taken = Counter()
    for plan in sc.shoppers:
        for s in plan.script:
            if s.kind == "pick":
                taken[s.sku] += s.qty
    stock = Counter()
    for f in spec.planogram.values():
        stock[f.sku] += f.facings * f.depth
    assert taken and all(taken[k] <= stock[k] for k in taken), (taken, stock)


def test_trip_config_checks_its_values():
    for bad in (dict(put_back_rate=1.5), dict(browse_rate=1.0), dict(qty_weights=()), dict(basket_weights=(0, 0)),
                dict(lighting_weights=(1.0, 1.0)), dict(browse_seconds=(3.0, 1.0)), dict(arrival_window=0.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TripConfig(**bad)
    with pytest.raises(ValueError, match="shoppers"):
        _draw("tiny_unit", 0, 0, 10)


def test_config_yaml_trips_are_the_trip_config_defaults():
    cfg = yaml.safe_load((store_dir().parent / "config.yaml").read_text())
    assert trip_config_from(cfg["trips"]) == TripConfig()
    assert cfg["random"] is False and (store_dir() / f"{cfg['store']}.yaml").is_file()


# -- the command line ----------------------------------------------------------------------------------
FAST = ["sim.camera.render=false", "video.record=false", "contact_sheet=false"]


def test_cli_random_run_writes_a_scenario_that_runs_again(tmp_path: Path):
    out = tmp_path / "drawn"
    args = ["random=true", "store=tiny_unit", "seed=3", "shoppers=2", "duration_s=8"]
    assert main(["simulate", *args, *FAST, f"out={out}"]) == 0
    saved = load_scenario(out / "scenario.yaml", store_dir())
    assert _same(saved, _draw("tiny_unit", 3, 2, 8))
    assert yaml.safe_load((out / "config.yaml").read_text())["store"] == "tiny_unit"
    again = tmp_path / "again"
    assert main(["simulate", f"scenario={out / 'scenario.yaml'}", *FAST, f"out={again}"]) == 0
    assert (again / "scenario.yaml").read_text() == (out / "scenario.yaml").read_text()
    assert (again / "streams/gates.jsonl").read_text() == (out / "streams/gates.jsonl").read_text()


@pytest.mark.parametrize("override,field", [("trips.put_back_rate=banana", "trips.put_back_rate"),
                                            ("trips.nope=1", "trips.nope"), ("+trips.nope=1", "trips.nope"),
                                            ("trips.wrong_shelf_rate=2", "trips.wrong_shelf_rate"),
                                            ("store=no_such_store", "store"), ("shoppers=0", "shoppers"),
                                            ("duration_s=0", "duration_s")])
def test_cli_bad_random_settings_give_one_line_and_write_nothing(tmp_path: Path, capsys, override: str, field: str):
    out = tmp_path / "run"
    assert main(["simulate", "random=true", "store=tiny_unit", override, *FAST, f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err, err
    assert list(tmp_path.iterdir()) == []


def test_arrivals_come_in_bursts_at_the_door_when_asked():
    spec = load_store(store_dir() / "small_convenience.yaml")
    every = random_scenario(spec, "small_convenience", 5, 6, 300.0, TripConfig(burst_rate=1.0), store_dir=store_dir())
    gaps = np.diff([sp.enter_at_s for sp in every.shoppers])
    assert np.all((gaps >= 1.4) & (gaps <= 4.1)), gaps          # each right behind the one before
    spread = random_scenario(spec, "small_convenience", 5, 6, 300.0, TripConfig(burst_rate=0.0), store_dir=store_dir())
    assert np.diff([sp.enter_at_s for sp in spread.shoppers]).max() > 4.1   # uniform over 150 s: not one burst
    with pytest.raises(ValueError, match="burst_gap_s"):
        TripConfig(burst_gap_s=(3.0, 1.0))


def test_a_random_suite_runs_one_drawn_trip_per_seed_and_runs_again_from_its_recording(tmp_path: Path):
    out, again = tmp_path / "suite", tmp_path / "again"
    args = ["suite=random", "store=tiny_unit", "seeds=0..1", "shoppers=1", "duration_s=16", "sensing=weight_only",
            "pacing=asfast", "sim.camera.render=false", "video.record=false"]
    assert main(["run", *args, f"out={out}"]) == 0
    cards = json.loads((out / "scorecard.json").read_text())["scenarios"]
    assert [c["scenario"] for c in cards] == ["random-s0-k1", "random-s1-k1"]
    for seed in (0, 1):   # each run holds its drawn trip, which re-runs as a file
        assert _same(load_scenario(out / f"random-s{seed}-k1" / "scenario.yaml", store_dir()),
                     _draw("tiny_unit", seed, 1, 16))
    assert main(["run", *args, f"recorded={out}", f"out={again}"]) == 0
    for seed in (0, 1):   # each drew one pick of one item, and the recording gives the same receipt again
        lines = lambda root: [json.loads(r)["lines"] for r in  # noqa: E731
                              (root / f"random-s{seed}-k1" / "out" / "receipts.jsonl").read_text().splitlines()]
        assert len(lines(out)) == 1 and sum(ln["qty"] for ln in lines(out)[0]) == 1
        assert lines(again) == lines(out)


@pytest.mark.parametrize("override,field", [("seeds=9..3", "seeds"), ("seeds=a..b", "seeds"), ("shoppers=0", "shoppers"),
                                            ("store=nowhere", "store")])
def test_bad_random_suite_settings_give_one_line_and_write_nothing(tmp_path: Path, capsys, override: str, field: str):
    args = ["suite=random", "store=tiny_unit", "seeds=0..1", "shoppers=1", "duration_s=8", override]
    assert main(["run", *args, f"out={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {field}=") and "\n" not in err, err
    assert not (tmp_path / "x").exists()
