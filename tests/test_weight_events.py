"""Load-cell step detection and the bin belief, on synthetic readings with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from harness.paths import store_dir
from runtime.store import load_store
from runtime.config import WeightEventConfig
from runtime.weight_events import BinBelief, StepDetector, WeightEvent, mass_tolerance_g

RATE_HZ = 80.0


def _readings(level_g, seconds: float, seed: int = 0, noise_g: float = 0.5) -> list[tuple[float, float]]:
    """``level_g(t)`` sampled at 80 Hz with white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    return [(float(ti), float(level_g(ti) + rng.normal(0, noise_g))) for ti in t]


def _ringing_step(t0: float, before: float, after: float, hz: float = 6.0, damping: float = 0.35):
    """The plate's damped response to a step at ``t0`` (as the simulator's load-cell model)."""
    wn = 2 * np.pi * hz
    wd = wn * np.sqrt(1 - damping ** 2)

    def level(t: float) -> float:
        if t < t0:
            return before
        s = t - t0
        return after + (before - after) * np.exp(-damping * wn * s) * np.cos(wd * s)
    return level


def _events(readings, cell: str = "c", config: WeightEventConfig = WeightEventConfig()) -> list[WeightEvent]:
    det = StepDetector(cell, config)
    return [e for t, g in readings if (e := det.update(t, g)) is not None]


def test_a_pick_is_one_settled_step() -> None:
    ev = _events(_readings(_ringing_step(2.0, 2100.0, 1750.0), 5.0))
    assert len(ev) == 1
    e = ev[0]
    assert e.delta_g == pytest.approx(-350.0, abs=0.02 * 350)   # weighed while the last of the ringing dies
    assert 1.95 <= e.t_start <= 2.1                 # the departure is found within a few samples
    assert 2.0 < e.t_end < 2.0 + 0.4                # decided once settled to 5 % of the step
    strict = _events(_readings(_ringing_step(2.0, 2100.0, 1750.0), 5.0), config=WeightEventConfig(settle_frac=0.0))
    assert strict[0].delta_g == pytest.approx(-350.0, abs=3.0) and strict[0].t_end > e.t_end   # still: later, closer


def test_a_glitch_that_returns_and_slow_drift_are_no_events() -> None:
    spike = lambda t: 1500.0 + (180.0 if 2.0 <= t < 2.2 else 0.0)   # noqa: E731
    assert _events(_readings(spike, 5.0)) == []
    drift = lambda t: 1500.0 + 4.0 * t                              # 4 g/s: 20 g over the run  # noqa: E731
    assert _events(_readings(drift, 5.0)) == []


def test_a_lasting_offset_is_an_event_no_product_explains() -> None:
    store = load_store(store_dir() / "tiny_unit.yaml")
    ev = _events(_readings(lambda t: 1000.0 + (35.0 if t >= 2.0 else 0.0), 4.0), "U/0/1")
    assert len(ev) == 1 and ev[0].delta_g == pytest.approx(35.0, abs=3.0)
    assert BinBelief(store).candidates(ev[0], ["U/0/1"]) == []      # lightest SKU is 160 g


def test_candidates_from_the_belief_and_the_cart() -> None:
    store = load_store(store_dir() / "tiny_unit.yaml")
    belief = BinBelief(store)
    assert belief.counts["U/1/0"]["cola_classic_330"] == 3 * 2      # facings × depth
    two_cans = WeightEvent("U/1", 0.0, 1.0, -700.5, 1.0)
    best = belief.candidates(two_cans, ["U/1/0", "U/1/1"])
    # both look-alikes explain 700 g equally: the weight alone cannot tell them apart
    assert {c.items for c in best[:2]} == {(("cola_classic_330", 2),), (("cola_zero_330", 2),)}
    # a wrong-shelf put-back: crisps land in the water bin; the belief then holds them there
    put = WeightEvent("U/0/1", 0.0, 1.0, +161.0, 1.0)
    c = belief.candidates(put, ["U/0/1"], put_skus=["crisps_salted_150", "water_still_500"])
    assert c[0].items == (("crisps_salted_150", 1),)
    # no more put back than the shopper carries, and nothing from an empty cart (no credit below zero)
    two_crisps = WeightEvent("U/0/1", 0.0, 1.0, +322.0, 1.0)
    assert [c.items for c in belief.candidates(two_crisps, ["U/0/1"], put_skus={"crisps_salted_150": 1})] == []
    assert belief.candidates(two_crisps, ["U/0/1"], put_skus={"crisps_salted_150": 2})[0].items == (("crisps_salted_150", 2),)
    assert belief.candidates(put, ["U/0/1"], put_skus={}) == []
    assert belief.candidates(put, ["U/0/1"])[0].items == (("crisps_salted_150", 1),), "nobody's cart known: any SKU"
    belief.apply("U/0/1", "crisps_salted_150", +1)
    take = WeightEvent("U/0/1", 5.0, 6.0, -159.0, 1.0)
    assert belief.candidates(take, ["U/0/1"])[0].items == (("crisps_salted_150", 1),)


def test_a_noisy_plate_learns_its_noise_and_still_sees_a_pick_in_time() -> None:
    """A plate with σ = 8 g (a few real plates are) and a spike of 150 g: the default settle test
    (σ < 4 g) would never call it still, and it would see nothing at all. It learns its own noise,
    ignores the spike, and reports the 350 g pick within half a second of the drop."""
    rng = np.random.default_rng(4)
    det = StepDetector("c", WeightEventConfig())
    events = []
    for k in range(int(6.0 * 60)):
        t = k / 60
        g = 1000.0 + rng.normal(0.0, 8.0) - 350.0 * min(max((t - 3.0) / 0.15, 0.0), 1.0)
        if k == 100:
            g += 150.0                                 # a spike
        ev = det.update(t, g)
        if ev is not None:
            events.append(ev)
    assert det.noise == pytest.approx(8.0, rel=0.35)
    assert len(events) == 1
    ev = events[0]
    assert ev.delta_g == pytest.approx(-350.0, abs=mass_tolerance_g(WeightEventConfig(), ev.delta_g, ev.noise_g))
    assert 2.9 < ev.t_start < 3.2 and ev.t_end < 3.15 + 0.5


def test_a_quiet_plate_keeps_the_default_thresholds() -> None:
    """σ 0.5 g: 3σ and 6σ lie below settle_std_g and trigger_g, which therefore still decide."""
    rng = np.random.default_rng(5)
    det = StepDetector("c", WeightEventConfig())
    for k in range(120):
        det.update(k / 80, 1000.0 + rng.normal(0.0, 0.5))
    assert det.noise is not None and det.noise < 1.0
    assert det.update(1.5, 1000.0 + 10.0) is None and not det.busy     # 10 g: below trigger_g (12 g)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_pick_on_a_wandering_plate_is_decided_within_half_a_second_at_its_mass(seed: int) -> None:
    """A real plate after an impact: it rings, then its level wanders (σ 10 g, dying out over a
    second) before it settles; 60 readings a second, σ 1 g. The can's step is weighed once the
    reading holds within 5 % of the step, not after the wander has died away."""
    rng = np.random.default_rng(seed)
    rate, t0 = 60.0, 2.0
    ring = _ringing_step(t0, 2000.0, 1650.0)
    wander, out = 0.0, []
    for k in range(int(5.0 * rate)):
        t = k / rate
        if t >= t0:   # Ornstein-Uhlenbeck, 0.3 s time constant, σ 10 g fading over 1 s
            fade = max(0.0, 1.0 - (t - t0) / 1.0)
            wander += -wander / 0.3 / rate + 10.0 * np.sqrt(2 / 0.3 / rate) * rng.normal()
            out.append((t, ring(t) + fade * wander + rng.normal(0, 1.0)))
        else:
            out.append((t, ring(t) + rng.normal(0, 1.0)))
    (ev,) = _events(out)
    assert ev.t_end - t0 < 0.5 and abs(ev.delta_g + 350.0) < mass_tolerance_g(WeightEventConfig(), ev.delta_g, ev.noise_g)
    late = _events(out, config=WeightEventConfig(settle_frac=0.0))
    assert late and late[0].t_end > ev.t_end
