"""Every store and scenario file loads; a bad file gives one clear error naming file and field."""
from pathlib import Path

import pytest
import yaml

from harness.paths import scenarios_dir, store_dir
from runtime.geometry import coverage
from runtime.store import SpecError, load_store, parse_store
from sim.scenario import load_scenario, parse_scenario

STORES = sorted(store_dir().glob("*.yaml"))
SCENARIOS = sorted(scenarios_dir().glob("*.yaml"))


@pytest.mark.parametrize("path", STORES, ids=lambda p: p.stem)
def test_store_loads_and_every_bin_is_seen_twice(path: Path):
    store = load_store(path)
    cov = coverage(store)
    assert all(len(cams) >= 2 for cams in cov.values()), {b: c for b, c in cov.items() if len(c) < 2}


def test_small_convenience_is_a_real_store():
    s = load_store(store_dir() / "small_convenience.yaml")
    assert 7 <= s.floor.width_m <= 9 and 5 <= s.floor.depth_m <= 7
    assert len(s.units) >= 4 and len(s.catalog) >= 40 and len(s.cameras) >= 8
    groups: dict[str, set] = {}
    for p in s.catalog:
        if p.lookalike:
            groups.setdefault(p.lookalike, set()).add((p.size_m, p.shape, p.colour, p.mass_g))
    assert len(groups) >= 3
    assert all(len(v) == 1 for v in groups.values()), "look-alikes differ only by label colour"
    assert {u.load_cells for u in s.units} >= {"per_bin", "per_shelf"}
    assert {p.sku for p in s.catalog} == {f.sku for f in s.planogram.values()}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_loads(path: Path):
    sc = load_scenario(path, store_dir())
    assert sc.name == path.stem and sc.description
    assert all(s.script[-1].kind == "exit" for s in sc.shoppers)


def _store_dict():
    return yaml.safe_load((store_dir() / "tiny_unit.yaml").read_text())


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["floor"].update(width_m="wide"), "floor.width_m"),
    (lambda d: d["catalog"][0].pop("mass_g"), "catalog[0].mass_g"),
    (lambda d: d["catalog"][0].update(colour="red"), "catalog[0].colour"),
    (lambda d: d["planogram"].update({"U/9/9": {"sku": d["catalog"][0]["sku"]}}), "planogram.U/9/9"),
    (lambda d: d["planogram"][next(iter(d["planogram"]))].update(sku="no_such_sku"), ".sku"),
    (lambda d: d["cameras"][0].update(fps=0), "cameras[0].fps"),
    (lambda d: d["units"][0].update(load_cells="per_aisle"), "units[0].load_cells"),
    (lambda d: d["units"][0].update(position_m=[-1.0, 1.0]), "units[0].position_m"),
    (lambda d: d["units"].append({**d["units"][0], "id": "V"}), "units[1].position_m"),
    (lambda d: d["gates"][0].update(a_m=[1.0, 1.0]), "gates[0]"),
    (lambda d: [p for p in d["catalog"] if p.get("lookalike")][1].update(colour="#123456"), ".colour"),
])
def test_bad_store_names_file_and_field(mutate, field):
    d = _store_dict()
    mutate(d)
    with pytest.raises(SpecError) as e:
        parse_store(d, "conf/store/broken.yaml")
    assert str(e.value).startswith("conf/store/broken.yaml: field '")
    assert field in e.value.field


def _scenario_dict():
    return {"name": "t", "store": "tiny_unit", "seed": 1,
            "shoppers": [{"account": "a", "script": [{"pick": {"sku": "cola_zero_330", "qty": 1}}, "exit"]}]}


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(store="no_store"), "store"),
    (lambda d: d.update(seed=-1), "seed"),
    (lambda d: d.update(colour="blue"), "colour"),
    (lambda d: d["shoppers"][0]["script"][0]["pick"].update(sku="caviar"), "shoppers[0].script[0].pick.sku"),
    (lambda d: d["shoppers"][0]["script"][0]["pick"].update(qty=0), "shoppers[0].script[0].pick.qty"),
    (lambda d: d["shoppers"][0]["script"].insert(0, "dance"), "shoppers[0].script[0]"),
    (lambda d: d["shoppers"][0]["script"].insert(1, {"put_back": {"sku": "cola_zero_330", "qty": 2}}),
     "shoppers[0].script[1].put_back.qty"),
    (lambda d: d.update(faults=[{"kind": "camera_dropout", "camera": "cam_99", "from_s": 1, "to_s": 2}]), "faults[0].camera"),
    (lambda d: d.update(lighting={"preset": "disco"}), "lighting.preset"),
    (lambda d: d["shoppers"][0].pop("account"), "shoppers[0].account"),
    (lambda d: d["shoppers"][0]["script"][0]["pick"].update(per_reach=2), "shoppers[0].script[0].pick.per_reach"),
    (lambda d: d["shoppers"][0]["script"].insert(0, {"wait": {"seconds": 2, "at": [9.0, 1.0]}}), "shoppers[0].script[0].wait.at"),
    (lambda d: d["shoppers"].append({"account": "a", "enter_at_s": 9.0, "script": ["exit"]}), "shoppers[1].enter_at_s"),
    (lambda d: d.update(cameras={"jitter_s": -0.1}), "cameras.jitter_s"),
    (lambda d: d.update(cameras={"fps": [10, 0]}), "cameras.fps"),
    (lambda d: d.update(cameras={"skew": 1}), "cameras.skew"),
    (lambda d: d.update(cameras={"fps": [30], "jitter_s": 0.02}), "cameras.jitter_s"),
])
def test_bad_scenario_names_file_and_field(mutate, field):
    d = _scenario_dict()
    parse_scenario(d, "scenarios/t.yaml", store_dir())  # the unmutated one is fine
    mutate(d)
    with pytest.raises(SpecError) as e:
        parse_scenario(d, "scenarios/t.yaml", store_dir())
    assert str(e.value).startswith("scenarios/t.yaml: field '")
    assert e.value.field == field


def test_cli_reports_bad_scenario_in_one_line(tmp_path, capsys):
    from harness.cli import main

    bad = tmp_path / "bad.yaml"
    d = _scenario_dict()
    d["shoppers"][0]["enter_at_s"] = "soon"
    bad.write_text(yaml.safe_dump(d))
    assert main(["simulate", f"scenario={bad}", f"out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "shoppers[0].enter_at_s" in err[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


@pytest.mark.parametrize("override, words", [
    ("sim.loadcell.noise_g=abc", "sim.loadcell.noise_g"),
    ("sim.loadcel.noise_g=1", "sim.loadcel.noise_g"),
    ("scenario=no_such_scenario", "no_such_scenario.yaml"),
    ("sim.camera.cameras=[cam_99]", "cam_99"),
])
def test_cli_rejects_bad_overrides_before_starting(tmp_path, capsys, override, words):
    from harness.cli import main

    assert main(["simulate", override, f"out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not any(tmp_path.iterdir())


def test_readme_scenario_example_is_valid():
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```yaml\n(name: .*?)```", readme, re.S).group(1)
    sc = parse_scenario(yaml.safe_load(block), "README.md", store_dir())
    assert sc.faults and sc.lighting != "day"
