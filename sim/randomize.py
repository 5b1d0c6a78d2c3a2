"""Randomised scenarios: plausible shopping trips drawn from a seed, so a suite can be any size.

``random_scenario(store, store_name, seed, shoppers, duration_s, store_dir=...)`` draws who enters
when and what each shopper does, writes it as the plain data of a scenario file (DESIGN.md,
"Scenario files") and validates it with :func:`sim.scenario.parse_scenario`, so a drawn scenario
obeys exactly the rules a hand-written one does. ``scenario_to_dict`` writes any scenario back to
that format, so a drawn suite can be saved and re-run as files.

Each trip is cut to fit ``duration_s`` with a rough time estimate (:func:`estimate_trip_s`); the
scenario's ``duration_s`` is a hard stop, so a shopper whose estimate was too hopeful is simply
still in the store when the run ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.store import StoreSpec
from sim.navigation import FloorPlanner
from sim.scenario import LIGHTING_PRESETS, Scenario, Step, parse_scenario

# The trip-time estimate: straight lines lengthened for detours, at a slowish walk.
WALK_MPS = 1.1          # the simulator draws each shopper's speed from 1.0–1.35 m/s
DETOUR = 1.3            # paths round shelf units are longer than straight lines
STEP_OVERHEAD_S = 1.0   # turning to face the shelf, stepping aside for others
ITEM_S = 2.2            # one reach per item picked or put back (reach, grasp, retract, basket)
BROWSE_REACH_S = 1.4    # reach and retract around the browse's own seconds
ENTRY_WALK_M = 2.4      # from outside the entry gate to just inside it


@dataclass(frozen=True)
class TripConfig:
    """How random shopping trips are drawn. Defaults describe a convenience store's top-up trips."""

    basket_weights: tuple[float, ...] = (0.10, 0.32, 0.25, 0.15, 0.09, 0.05, 0.025, 0.01, 0.005)
    """Relative chance of picking k = 0, 1, 2, … distinct SKUs (mean ≈ 2.1 SKUs, ≈ 2.6 items)."""
    qty_weights: tuple[float, ...] = (0.82, 0.14, 0.04)
    """Relative chance that one pick takes 1, 2, 3, … items of its SKU."""
    browse_rate: float = 0.2
    """Chance that the next step is a browse rather than the next pick (geometric: p/(1-p) per pick)."""
    browse_seconds: tuple[float, float] = (1.0, 4.0)
    """A browse touches the shelf for a time drawn uniformly from this range."""
    put_back_rate: float = 0.12
    """Share of picked items that are put back later in the trip."""
    wrong_shelf_rate: float = 0.1
    """Share of put-backs that go into a bin of another SKU (preferably on the unit at hand)."""
    wait_rate: float = 0.05
    """Chance that the shopper stands still after a step (phone, list, thinking)."""
    wait_seconds: tuple[float, float] = (2.0, 6.0)
    """A wait lasts a time drawn uniformly from this range."""
    arrival_window: float = 0.5
    """Shoppers enter in the first this fraction of the run."""
    burst_rate: float = 0.3
    """Chance that a shopper comes in right behind the one before (``burst_gap_s`` later), as stores
    see arrivals: bursts at the door, not evenly spread. The others arrive at uniform times. 0 gives
    the evenly spread arrivals of earlier versions (datagen keeps those, so its datasets reproduce)."""
    burst_gap_s: tuple[float, float] = (1.5, 4.0)
    """Seconds between two shoppers of a burst (uniform range): a second scan a moment after the first."""
    lighting_weights: tuple[float, float, float] = (0.8, 0.15, 0.05)
    """Relative chance of the lighting presets day, evening, flicker."""

    def __post_init__(self) -> None:
        for name in ("browse_rate", "put_back_rate", "wrong_shelf_rate", "wait_rate", "burst_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v!r}: expected a probability in [0, 1]")
        if self.browse_rate >= 1.0:
            raise ValueError(f"browse_rate={self.browse_rate!r}: expected a probability below 1 "
                             "(at 1 browsing never ends)")
        for name, n in (("basket_weights", None), ("qty_weights", None), ("lighting_weights", len(LIGHTING_PRESETS))):
            w = tuple(getattr(self, name))
            if not w or any(x < 0 for x in w) or sum(w) <= 0 or (n is not None and len(w) != n):
                raise ValueError(f"{name}={list(w)!r}: expected {n or 'one or more'} weights ≥ 0, not all zero"
                                 + (f" ({', '.join(LIGHTING_PRESETS)})" if n else ""))
        for name, top in (("browse_seconds", 600.0), ("wait_seconds", 3600.0), ("burst_gap_s", 600.0)):
            r = tuple(getattr(self, name))
            if len(r) != 2 or not 0 < r[0] <= r[1] <= top:
                raise ValueError(f"{name}={list(r)!r}: expected [low, high] seconds with 0 < low ≤ high ≤ {top:g}")
        if not 0.0 < self.arrival_window <= 1.0:
            raise ValueError(f"arrival_window={self.arrival_window!r}: expected a fraction in (0, 1]")


# -- the time estimate -----------------------------------------------------------------------------
def _step_point(store: StoreSpec, step: Step) -> np.ndarray | None:
    b = step.bin
    if b is None and step.sku is not None:
        b = (store.bins_of_sku(step.sku) or [None])[0]
    return None if b is None else store.bins[b].centre_world()[:2]


def _walk_s(a: np.ndarray, b: np.ndarray) -> float:
    return DETOUR * float(np.linalg.norm(b - a)) / WALK_MPS


def _step_s(store: StoreSpec, step: Step, pos: np.ndarray) -> tuple[float, np.ndarray]:
    """Seconds one (non-exit) step takes from ``pos``, and where it leaves the shopper."""
    if step.kind == "wait":
        if step.at is None:
            return step.seconds, pos
        at = np.array(step.at)
        return _walk_s(pos, at) + step.seconds, at
    goal = _step_point(store, step)
    if goal is None:
        return 0.0, pos
    t = _walk_s(pos, goal) + STEP_OVERHEAD_S
    if step.kind == "browse":
        t += BROWSE_REACH_S + step.seconds
    else:  # pick / put_back: one reach per item (a multi-item grab takes several in one reach)
        t += ITEM_S * (-(-step.qty // step.per_reach) if step.kind == "pick" else step.qty)
    return t, goal


class _Estimator:
    """The rough trip-time estimate, with the gate points worked out once per store."""

    def __init__(self, store: StoreSpec):
        planner = FloorPlanner(store)
        self.store = store
        self.inside = planner.gate_points(store.gate("entry"))[1]
        self.exit_out = planner.gate_points(store.gate("exit"))[0]

    def exit_s(self, pos: np.ndarray) -> float:
        return _walk_s(pos, self.exit_out) + STEP_OVERHEAD_S

    def trip_s(self, script: tuple[Step, ...] | list[Step]) -> float:
        t, pos = ENTRY_WALK_M / WALK_MPS, self.inside
        for step in script:
            if step.kind == "exit":
                break
            dt, pos = _step_s(self.store, step, pos)
            t += dt
        return t + self.exit_s(pos)


def estimate_trip_s(store: StoreSpec, script: tuple[Step, ...] | list[Step]) -> float:
    """Rough seconds from reaching the entry gate to passing the exit gate: straight-line walks
    (×1.3 for detours) at 1.1 m/s, 1 s per step to settle, 2.2 s per reach for an item picked or
    put back, browse and wait seconds. It errs long; crowding can still make a trip slower."""
    return _Estimator(store).trip_s(script)


# -- drawing ---------------------------------------------------------------------------------------
def _weights(w: tuple[float, ...]) -> np.ndarray:
    a = np.asarray(w, dtype=float)
    return a / a.sum()


def _seconds(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return max(0.1, round(float(rng.uniform(lo_hi[0], lo_hi[1])), 1))


def _wrong_bins(store: StoreSpec, sku: str) -> list[str]:
    """Bins that hold another SKU and have room for ``sku`` (its width and height)."""
    w, _, h = store.products[sku].size_m
    return [bid for bid, f in store.planogram.items()
            if f.sku != sku and w <= store.bins[bid].width_m and h <= store.bins[bid].z1 - store.bins[bid].z0]


def _draw_trip(rng: np.random.Generator, store: StoreSpec, cfg: TripConfig, stock: dict[str, int],
               est: _Estimator, budget_s: float) -> list[Step]:
    """One shopper's steps (without the final exit), cut to fit ``budget_s``."""
    bins = sorted(store.planogram)

    def browse() -> Step:
        return Step("browse", bin=bins[int(rng.integers(len(bins)))], seconds=_seconds(rng, cfg.browse_seconds))

    n_skus = int(rng.choice(len(cfg.basket_weights), p=_weights(cfg.basket_weights)))
    available = [s for s in sorted(stock) if stock[s] > 0]
    chosen = [available[i] for i in rng.permutation(len(available))[:n_skus]]
    base: list[Step] = []
    for sku in chosen:
        while rng.random() < cfg.browse_rate:
            base.append(browse())
        qty = min(1 + int(rng.choice(len(cfg.qty_weights), p=_weights(cfg.qty_weights))), stock[sku])
        base.append(Step("pick", sku=sku, qty=qty))
    if not chosen:  # a visit without a purchase still looks at something
        base.append(browse())
        while rng.random() < cfg.browse_rate:
            base.append(browse())
    with_waits: list[Step] = []
    for step in base:
        with_waits.append(step)
        if rng.random() < cfg.wait_rate:
            with_waits.append(Step("wait", seconds=_seconds(rng, cfg.wait_seconds)))
    # put-backs: some of each pick's items, somewhere after the pick
    n = len(with_waits)
    keyed = [(float(i), step) for i, step in enumerate(with_waits)]
    for i, step in enumerate(with_waits):
        if step.kind == "pick":
            back = int(rng.binomial(step.qty, cfg.put_back_rate))
            if back:
                keyed.append((i + (n - i) * (1.0 - rng.random()), Step("put_back", sku=step.sku, qty=back)))
    ordered = [s for _, s in sorted(keyed, key=lambda ks: ks[0])]
    # wrong-shelf put-backs: into a bin of another SKU, preferably on the unit the shopper stands at
    unit_here: str | None = None
    script: list[Step] = []
    for step in ordered:
        if step.kind == "put_back" and rng.random() < cfg.wrong_shelf_rate:
            cands = _wrong_bins(store, step.sku)
            near = [b for b in cands if store.bins[b].unit.id == unit_here]
            pool = near or cands
            if pool:
                step = Step("put_back", sku=step.sku, qty=step.qty, bin=pool[int(rng.integers(len(pool)))])
        b = step.bin or (store.bins_of_sku(step.sku)[0] if step.sku else None)
        if b is not None:
            unit_here = store.bins[b].unit.id
        script.append(step)
    # cut to the time budget: the trip ends at the first step after which the exit is out of reach
    t, pos = ENTRY_WALK_M / WALK_MPS, est.inside
    kept: list[Step] = []
    for step in script:
        dt, nxt = _step_s(store, step, pos)
        if t + dt + est.exit_s(nxt) > budget_s:
            break
        kept.append(step)
        t, pos = t + dt, nxt
    if not kept:  # nothing fits: a short look at the bin that makes the shortest trip
        secs = max(0.1, round(cfg.browse_seconds[0], 1))
        kept = [min((Step("browse", bin=b, seconds=secs) for b in bins), key=lambda s: est.trip_s([s]))]
    for step in kept:
        if step.kind == "pick":
            stock[step.sku] -= step.qty
    return kept


def _arrivals(rng: np.random.Generator, cfg: TripConfig, shoppers: int, latest: float) -> np.ndarray:
    """Entry times (0.1 s steps, sorted): uniform in [0, latest], except that each shopper after the
    first follows the one before by ``burst_gap_s`` with chance ``burst_rate`` (a burst at the door)."""
    t = np.sort(rng.uniform(0.0, latest, size=shoppers))
    if cfg.burst_rate > 0:  # no extra draws at 0: earlier seeds give earlier scenarios
        behind = rng.random(shoppers) < cfg.burst_rate
        gaps = rng.uniform(cfg.burst_gap_s[0], cfg.burst_gap_s[1], size=shoppers)
        for k in range(1, shoppers):
            if behind[k]:
                t[k] = min(t[k - 1] + gaps[k], max(latest, t[k - 1]))
        t = np.sort(t)
    return np.floor(t * 10) / 10


def _step_dict(step: Step) -> dict | str:
    if step.kind == "exit":
        return "exit"
    body: dict = {}
    if step.kind in ("pick", "put_back"):
        body = {"sku": step.sku, "qty": step.qty}
        if step.bin is not None:
            body["bin"] = step.bin
        if step.kind == "pick" and step.per_reach != 1:
            body["per_reach"] = step.per_reach
    elif step.kind == "browse":
        body = {"bin": step.bin} if step.bin is not None else {"sku": step.sku}
        body["seconds"] = step.seconds
    elif step.kind == "wait":
        body = {"seconds": step.seconds}
        if step.at is not None:
            body["at"] = [float(step.at[0]), float(step.at[1])]
    else:
        raise ValueError(f"unknown step kind {step.kind!r}")
    return {step.kind: body}


def scenario_to_dict(scenario: Scenario) -> dict:
    """The scenario as the plain data of a scenario file (DESIGN.md), ready for ``yaml.safe_dump``;
    ``parse_scenario`` of it gives back an equal scenario (``path`` aside)."""
    out: dict = {"name": scenario.name}
    if scenario.description:
        out["description"] = scenario.description
    out.update(store=scenario.store, seed=scenario.seed, lighting={"preset": scenario.lighting})
    if scenario.faults:
        out["faults"] = [{"kind": f.kind, **{k: v for k, v in f.params.items() if v is not None}}
                         for f in scenario.faults]
    shoppers = []
    for sp in scenario.shoppers:
        d: dict = {"account": sp.account, "enter_at_s": float(sp.enter_at_s)}
        if sp.appearance:
            d["appearance"] = dict(sp.appearance)
        d["script"] = [_step_dict(s) for s in sp.script]
        shoppers.append(d)
    out["shoppers"] = shoppers
    if scenario.duration_s is not None:
        out["duration_s"] = float(scenario.duration_s)
    if scenario.cameras:
        out["cameras"] = {k: list(v) if isinstance(v, tuple) else v for k, v in scenario.cameras.items()}
    return out


def random_scenario(store: StoreSpec, store_name: str, seed: int, shoppers: int, duration_s: float,
                    cfg: TripConfig = TripConfig(), *, store_dir: str | Path, own_spec: bool = False) -> Scenario:
    """``shoppers`` plausible trips in ``store`` (``conf/store/<store_name>.yaml`` under ``store_dir``),
    all entering within ``cfg.arrival_window`` of ``duration_s`` and each cut to fit it; the same
    seed gives the same scenario. Shoppers never pick more of a SKU than the shelves hold in all.
    ``own_spec``: the scenario keeps ``store`` itself (a restocked copy) rather than the file's."""
    if shoppers < 1:
        raise ValueError(f"shoppers={shoppers!r}: expected at least 1")
    if not duration_s > 0:
        raise ValueError(f"duration_s={duration_s!r}: expected seconds > 0")
    if seed < 0:
        raise ValueError(f"seed={seed!r}: expected an integer ≥ 0")
    rng = np.random.default_rng(seed)
    est = _Estimator(store)
    stock: dict[str, int] = {}
    for f in store.planogram.values():
        stock[f.sku] = stock.get(f.sku, 0) + f.facings * f.depth
    lighting = LIGHTING_PRESETS[int(rng.choice(len(LIGHTING_PRESETS), p=_weights(cfg.lighting_weights)))]
    # late arrivals should still have time for the shortest trip, when the run is long enough for one
    shortest = min(est.trip_s([Step("browse", bin=b, seconds=cfg.browse_seconds[0])]) for b in store.planogram)
    latest = cfg.arrival_window * duration_s
    if duration_s - shortest > 0:
        latest = min(latest, duration_s - shortest)
    enters = _arrivals(rng, cfg, shoppers, latest)
    plans = []
    for k, t0 in enumerate(enters):
        script = _draw_trip(rng, store, cfg, stock, est, duration_s - float(t0))
        plans.append({"account": f"r{seed}_s{k:02d}", "enter_at_s": float(t0),
                      "script": [_step_dict(s) for s in script] + ["exit"]})
    steps = [s for p in plans for s in p["script"] if s != "exit"]
    count = lambda kind: sum(kind in s for s in steps)  # noqa: E731
    items = sum(s["pick"]["qty"] for s in steps if "pick" in s)
    wrong = sum(1 for s in steps if "put_back" in s and "bin" in s["put_back"])
    n = lambda k, word: f"{k} {word}{'s' * (k != 1)}"  # noqa: E731
    data = {
        "name": f"random-s{seed}-k{shoppers}",
        "description": (f"{n(shoppers, 'random shopper')} in {store_name} over {duration_s:g} s (seed {seed}): "
                        f"{n(count('pick'), 'pick')} of {n(items, 'item')}, {n(count('put_back'), 'put-back')} "
                        f"({wrong} on a wrong shelf), {n(count('browse'), 'browse')}, {n(count('wait'), 'wait')}; "
                        f"{lighting} lighting."),
        "store": store_name, "seed": int(seed), "lighting": {"preset": lighting},
        "shoppers": plans, "duration_s": float(duration_s),
    }
    return parse_scenario(data, path=f"<random seed={seed}>", store_dir=store_dir, spec=store if own_spec else None)
