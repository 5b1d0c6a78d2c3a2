"""Lighting presets: the store's ceiling lights in daytime, in the evening, and flickering."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyrender

from runtime.store import StoreSpec

CEILING_M = 2.95
GAIN_FLOOR = 0.15   # a flickering light never falls below this share of its intensity


@dataclass(frozen=True)
class LightingPreset:
    name: str
    ambient: float            # ambient term, 0..1
    ceiling_intensity: float  # per ceiling light (pyrender point light, candela-like units)
    colour: tuple[float, float, float]
    sun: float = 0.0          # directional daylight through the windows
    flicker_depth: float = 0.0  # fraction of the intensity that flickers
    flicker_hz: float = 0.0     # the beat a camera sees between mains flicker and its frame rate

    @staticmethod
    def named(name: str) -> "LightingPreset":
        if name not in PRESETS:
            raise ValueError(f"lighting preset '{name}': expected one of {sorted(PRESETS)}")
        return PRESETS[name]

    def gain(self, t_s: float, seed: int = 0) -> float:
        """Multiplier on every light at time ``t_s``: 1 unless the preset flickers."""
        if not self.flicker_depth:
            return 1.0
        phase = (seed % 997) * 0.731
        slow = math.sin(2 * math.pi * self.flicker_hz * t_s + phase)
        # occasional deep dips, as a failing tube gives, deterministic in time and seed
        dip = 1.0 if (math.sin(7.3 * t_s + phase) * math.sin(2.9 * t_s) > 0.85) else 0.0
        return max(GAIN_FLOOR, 1.0 - self.flicker_depth * (0.5 + 0.5 * slow) - 0.5 * dip)


PRESETS = {
    "day": LightingPreset("day", ambient=0.3, ceiling_intensity=14.0, colour=(1.0, 1.0, 0.97), sun=1.5),
    "evening": LightingPreset("evening", ambient=0.03, ceiling_intensity=2.4, colour=(1.0, 0.82, 0.6)),
    "flicker": LightingPreset("flicker", ambient=0.25, ceiling_intensity=13.0, colour=(0.95, 1.0, 1.0),
                              flicker_depth=0.6, flicker_hz=1.7),
}


def light_rig(store: StoreSpec, preset: LightingPreset) -> list[tuple[pyrender.Light, np.ndarray]]:
    """A row of ceiling point lights ~4 m apart down the store's middle, plus daylight when the
    preset has sun. Few lights on purpose: pyrender binds every light per draw call, in Python."""
    W, D = store.floor.width_m, store.floor.depth_m
    nx, ny = max(1, round(W / 4.0)), 1
    out = []
    for i in range(nx):
        for j in range(ny):
            T = np.eye(4)
            T[:3, 3] = [(i + 0.5) * W / nx, (j + 0.5) * D / ny, CEILING_M]
            out.append((pyrender.PointLight(color=np.array(preset.colour), intensity=preset.ceiling_intensity), T))
    if preset.sun:
        T = np.eye(4)
        a = math.radians(50)
        # light travels along -z of its frame: tilt it down towards +y
        T[:3, :3] = [[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]]
        out.append((pyrender.DirectionalLight(color=np.array(preset.colour), intensity=preset.sun), T))
    return out
