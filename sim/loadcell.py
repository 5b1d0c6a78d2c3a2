"""The load-cell sensor model: what an HX711-class shelf scale reports for a true load.

The physics gives the exact force on each shelf plate at every physics step. A real scale adds a
mechanical response (the plate rings and settles after an impact), drift, noise, a fixed output
rate and quantisation. All of it is configuration on the sensor (``LoadCellConfig``), overridable
from the command line (``sim.loadcell.noise_g=1.0``); faults add glitches and offsets.

Real store shelves are messier than that, and two presets say how much (``sim.loadcell.preset``):

- ``twin`` (the default): the clean plates above, the same for every cell.
- ``real_shelf``: calibrated to published readings of a real autonomous store's smart shelves
  (348 plates, 60 readings a second). Each plate has its own noise: σ log-normal round a median of
  1 g with 90 % of plates under 4 g (a log spread of 1.08), which leaves about 3 % of plates at
  σ ≈ 8 g and more; spikes of 100–200 g; after a pick or a put-back the level wanders by about
  ±20 g (σ 10 g) for a second before it settles; a step leaks 1.5 % onto the neighbouring plates of its
  shelf (the published 1–2 %). How often the spikes come is not published: one a minute per
  plate here, an assumption.

Items that sit across two plates are the store's to declare (``straddle`` on a shelf level of the
store file): the share of a bin's load that rests on each neighbour goes there, with every preset.
The extra draws of ``real_shelf`` come from a stream of their own, so ``twin`` runs read exactly as
they did before it existed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LoadCellConfig:
    """Defaults of a 5 kg bar cell behind an HX711 at its 80 samples/s setting."""

    rate_hz: float = 80.0
    noise_g: float = 0.5          # white noise, standard deviation
    drift_g_per_sqrt_s: float = 0.02  # random-walk drift of the zero point
    quantum_g: float = 0.1        # resolution of one output step
    settle_hz: float = 6.0        # natural frequency of the plate on its cell
    damping: float = 0.35         # damping ratio of that response
    capacity_g: float = 20000.0   # readings clip here
    noise_spread: float = 0.0     # per-plate noise: σ = noise_g · exp(N(0, noise_spread)) (0: every plate noise_g)
    spike_per_min: float = 0.0    # spikes per plate per minute ...
    spike_g: tuple[float, float] = (100.0, 200.0)   # ... this large (either sign), one reading long
    wander_g: float = 0.0         # after a step the level wanders by about this much (σ) ...
    wander_s: float = 1.0         # ... dying out over this long
    crosstalk: float = 0.0        # share of a plate's load change that shows on each neighbour of its shelf

    def __post_init__(self) -> None:
        for name in ("rate_hz", "settle_hz", "capacity_g", "wander_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"sim.loadcell.{name}={getattr(self, name)}: expected > 0")
        for name in ("noise_g", "drift_g_per_sqrt_s", "quantum_g", "noise_spread", "spike_per_min", "wander_g", "damping"):
            if getattr(self, name) < 0:
                raise ValueError(f"sim.loadcell.{name}={getattr(self, name)}: expected ≥ 0")
        if not 0 <= self.crosstalk < 0.5:
            raise ValueError(f"sim.loadcell.crosstalk={self.crosstalk}: expected a share in [0, 0.5)")
        if len(self.spike_g) != 2 or not 0 <= self.spike_g[0] <= self.spike_g[1]:
            raise ValueError(f"sim.loadcell.spike_g={list(self.spike_g)}: expected [low, high] grams, 0 ≤ low ≤ high")

    @property
    def messy(self) -> bool:
        """Whether any of the real-shelf effects is on (they draw from their own stream)."""
        return bool(self.noise_spread or self.spike_per_min or self.wander_g or self.crosstalk)


LOADCELL_PRESETS: dict[str, LoadCellConfig] = {
    "twin": LoadCellConfig(),
    # published smart-shelf plates (see the module's notes): 60 Hz, σ median 1 g, 90 % < 4 g,
    # spikes 100–200 g, ±20 g for a second after a step, 1–2 % onto the neighbours
    "real_shelf": LoadCellConfig(rate_hz=60.0, noise_g=1.0, noise_spread=1.08, spike_per_min=1.0,
                                 spike_g=(100.0, 200.0), wander_g=20.0, wander_s=1.0, crosstalk=0.015),
}


@dataclass(frozen=True)
class Glitch:
    """A transient spike of ``grams`` on one cell (a knock, a cable fault)."""

    cell: str
    at_s: float
    grams: float
    duration_s: float = 0.05


@dataclass(frozen=True)
class Offset:
    """A step in a cell's zero point from ``from_s`` on (e.g. a re-seated plate)."""

    cell: str
    from_s: float
    grams: float


@dataclass
class LoadCellBank:
    """All load cells of a store, vectorised. Feed the true load every physics step with
    :meth:`step`; read the scale's output with :meth:`due_samples`."""

    cell_ids: list[str]
    config: LoadCellConfig
    rng: np.random.Generator
    glitches: list[Glitch] = field(default_factory=list)
    offsets: list[Offset] = field(default_factory=list)
    straddle: dict[str, dict[str, float]] = field(default_factory=dict)   # cell → {neighbour: share of its load}
    neighbours: dict[str, tuple[str, ...]] = field(default_factory=dict)  # cell → the cells beside it on its shelf

    WANDER_AFTER_G = 5.0   # a load change this large starts the wander

    def __post_init__(self) -> None:
        n = len(self.cell_ids)
        self._index = {c: i for i, c in enumerate(self.cell_ids)}
        self._y = np.zeros(n)       # plate response, grams
        self._v = np.zeros(n)       # its rate of change
        self._drift = np.zeros(n)
        self._next_t = 0.0
        for f in [*self.glitches, *self.offsets]:
            if f.cell not in self._index:
                raise KeyError(f.cell)
        c = self.config
        # what each plate feels of the true loads: its own share of them, what straddling items
        # rest on it, and what leaks from the plates beside it
        self._mix = np.eye(n)
        for cell, shares in self.straddle.items():
            for other, share in shares.items():
                self._mix[self._index[other], self._index[cell]] += share
                self._mix[self._index[cell], self._index[cell]] -= share
        if c.crosstalk:
            leak = np.zeros((n, n))
            for cell, beside in self.neighbours.items():
                for other in beside:
                    leak[self._index[other], self._index[cell]] = c.crosstalk
            self._mix = self._mix + leak
        self._mixed = not np.array_equal(self._mix, np.eye(n))
        self._sigma = np.full(n, c.noise_g)
        self._messy = None
        if c.messy:
            self._messy = np.random.default_rng(self.rng.bit_generator.seed_seq.spawn(1)[0])
            if c.noise_spread:
                self._sigma = c.noise_g * np.exp(self._messy.normal(0.0, c.noise_spread, n))
        self._wander = np.zeros(n)              # the level's wander, grams (shown only after a step)
        self._since_step = np.full(n, np.inf)   # seconds since each plate's load last moved
        self._last_true: np.ndarray | None = None

    @property
    def noise_sigma_g(self) -> dict[str, float]:
        """Each plate's white-noise σ, grams."""
        return {c: float(self._sigma[i]) for c, i in self._index.items()}

    def reset(self, true_g: np.ndarray) -> None:
        """Start settled at ``true_g`` (the state after the scale was tared and stocked)."""
        true_g = self._mix @ np.asarray(true_g, dtype=float) if self._mixed else np.asarray(true_g, dtype=float)
        self._y = true_g.copy()
        self._v[:] = 0.0
        self._last_true = true_g.copy()

    def step(self, true_g: np.ndarray, dt_s: float) -> None:
        """Advance the mechanical response by one physics step (semi-implicit Euler)."""
        if self._mixed:
            true_g = self._mix @ np.asarray(true_g, dtype=float)
        if self.config.wander_g:
            if self._last_true is None:
                self._last_true = np.array(true_g, dtype=float)
            # an item left or landed (the load moved from where it last rested): the plate wanders a while
            moved = np.abs(true_g - self._last_true) > self.WANDER_AFTER_G
            self._since_step[moved] = 0.0
            self._last_true[moved] = true_g[moved]
        wn = 2 * np.pi * self.config.settle_hz
        acc = wn * wn * (true_g - self._y) - 2 * self.config.damping * wn * self._v
        self._v += acc * dt_s
        self._y += self._v * dt_s

    def due_samples(self, t_s: float) -> list[tuple[str, float, float]]:
        """The (cell_id, t, grams) readings whose output time has come by ``t_s``."""
        out: list[tuple[str, float, float]] = []
        period = 1.0 / self.config.rate_hz
        c = self.config
        while self._next_t <= t_s + 1e-9:
            t = self._next_t
            self._drift += self.rng.normal(0.0, self.config.drift_g_per_sqrt_s * np.sqrt(period), len(self._y))
            if c.noise_spread:   # plates of their own noise: the same draws, scaled per plate
                g = self._y + self._drift + self.rng.normal(0.0, 1.0, len(self._y)) * self._sigma
            else:
                g = self._y + self._drift + self.rng.normal(0.0, self.config.noise_g, len(self._y))
            if self._messy is not None:
                g = g + self._messy_part(period)
            for o in self.offsets:
                if t >= o.from_s:
                    g[self._index[o.cell]] += o.grams
            for gl in self.glitches:
                if gl.at_s <= t < gl.at_s + gl.duration_s:
                    g[self._index[gl.cell]] += gl.grams
            q = self.config.quantum_g
            g = np.clip(np.round(g / q) * q, -self.config.capacity_g, self.config.capacity_g)
            out.extend((cid, round(t, 6), float(g[i])) for i, cid in enumerate(self.cell_ids))
            self._next_t = round(self._next_t + period, 9)
        return out

    def _messy_part(self, period: float) -> np.ndarray:
        """One reading's real-shelf extras: the wander after a step, and spikes."""
        c, rng, n = self.config, self._messy, len(self._y)
        out = np.zeros(n)
        if c.wander_g:
            # an Ornstein-Uhlenbeck wander (correlation time a tenth of wander_s) of σ wander_g / 2
            # (so ±wander_g) for wander_s after the step, then dying out within a fifth of that
            tau = c.wander_s / 10
            a = np.exp(-period / tau)
            self._since_step += period
            env = np.where(self._since_step < c.wander_s, 1.0, np.exp(-(self._since_step - c.wander_s) * 5 / c.wander_s))
            self._wander = a * self._wander + np.sqrt(1 - a * a) * 0.5 * c.wander_g * rng.normal(0.0, 1.0, n)
            out += env * self._wander
        if c.spike_per_min:
            hit = rng.random(n) < c.spike_per_min / 60.0 * period
            if hit.any():
                out[hit] += rng.uniform(*c.spike_g, int(hit.sum())) * rng.choice((-1.0, 1.0), int(hit.sum()))
        return out
