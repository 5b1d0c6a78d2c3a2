"""The load-cell sensor model: what an HX711-class shelf scale reports for a true load.

The physics gives the exact force on each shelf plate at every physics step. A real scale adds a
mechanical response (the plate rings and settles after an impact), drift, noise, a fixed output
rate and quantisation. All of it is configuration on the sensor (``LoadCellConfig``), overridable
from the command line (``sim.loadcell.noise_g=1.0``); faults add glitches and offsets.
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

    def reset(self, true_g: np.ndarray) -> None:
        """Start settled at ``true_g`` (the state after the scale was tared and stocked)."""
        self._y = np.asarray(true_g, dtype=float).copy()
        self._v[:] = 0.0

    def step(self, true_g: np.ndarray, dt_s: float) -> None:
        """Advance the mechanical response by one physics step (semi-implicit Euler)."""
        wn = 2 * np.pi * self.config.settle_hz
        acc = wn * wn * (true_g - self._y) - 2 * self.config.damping * wn * self._v
        self._v += acc * dt_s
        self._y += self._v * dt_s

    def due_samples(self, t_s: float) -> list[tuple[str, float, float]]:
        """The (cell_id, t, grams) readings whose output time has come by ``t_s``."""
        out: list[tuple[str, float, float]] = []
        period = 1.0 / self.config.rate_hz
        while self._next_t <= t_s + 1e-9:
            t = self._next_t
            self._drift += self.rng.normal(0.0, self.config.drift_g_per_sqrt_s * np.sqrt(period), len(self._y))
            g = self._y + self._drift + self.rng.normal(0.0, self.config.noise_g, len(self._y))
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
