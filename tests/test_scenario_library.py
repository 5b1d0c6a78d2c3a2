"""Every scenario in scenarios/ simulates: a short smoke run by default, whole runs marked slow."""
from collections import Counter
from pathlib import Path

import pytest

from harness.paths import scenarios_dir, store_dir
from runtime.messages import GateEvent, WeightSample
from sim.scenario import load_scenario
from sim.simulator import CameraConfig, SimConfig, Simulator

SCENARIOS = sorted(scenarios_dir().glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_smoke(path: Path):
    sc = load_scenario(path, store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(max_duration_s=3.0, camera=CameraConfig(render=False)))
    msgs = list(sim.run())
    sim.close()
    assert sum(isinstance(m, WeightSample) for m in msgs) >= 3 * 80 * len(sc.spec.load_cells)
    entered = [m.account_id for m in msgs if isinstance(m, GateEvent) and m.kind == "enter"]
    accounts = list(dict.fromkeys(s.account for s in sorted(sc.shoppers, key=lambda s: s.enter_at_s)))
    assert entered == accounts[:len(entered)], "one scan per account (group entry), in order of arrival"


def _scripted_cart(plans) -> dict[str, int]:
    c: Counter = Counter()
    for plan in plans:
        for s in plan.script:
            if s.kind == "pick":
                c[s.sku] += s.qty
            elif s.kind == "put_back":
                c[s.sku] -= s.qty
    return {k: v for k, v in sorted(c.items()) if v}


@pytest.mark.slow
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_whole_run_without_cameras(path: Path):
    sc = load_scenario(path, store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(render=False)))
    msgs = list(sim.run())
    sim.close()
    exits = Counter(m.account_id for m in msgs if isinstance(m, GateEvent) and m.kind == "exit")
    accounts = {s.account for s in sc.shoppers}
    assert exits == Counter(accounts), "every account leaves through the exit, once"
    carts = sim.truth.carts()
    for acc in accounts:
        assert carts[acc]["items"] == _scripted_cart([p for p in sc.shoppers if p.account == acc]), acc
