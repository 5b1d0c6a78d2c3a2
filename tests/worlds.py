"""Hand-made inputs for driving one runtime stage at a time: people seen by cameras, as the
perception step would report them (views with floor points, wrists in pixels and appearance),
built from world points of a tiny store. Nothing here is simulator state: it is what a camera and
a pose model would say."""
from __future__ import annotations

import numpy as np

from runtime.geometry import project
from runtime.store import StoreSpec
from runtime.ticks import FrameRef
from runtime.tracking import Observation, PersonView

CAMS = ("cam_01", "cam_02")


def appearance(i: int) -> np.ndarray:
    """A clothing-colour signature of its own for person ``i`` (64 bins, one lit)."""
    a = np.full(64, 1e-3, np.float32)
    a[(7 * i) % 64] = 1.0
    return a / a.sum()


def observation(store: StoreSpec, t: float, seq: int, floor_xy, wrist=None, person: int = 0,
                cams: tuple[str, ...] = CAMS) -> Observation:
    """One person at one tick, seen by ``cams``; the wrist (world xyz) seen by each of them."""
    views = []
    for cam_id in cams:
        uv = None
        if wrist is not None:
            uv = project(store.camera_by_id[cam_id], np.asarray(wrist, float)[None])[0][0]
        views.append(PersonView(FrameRef(cam_id, seq, t), np.asarray(floor_xy, float), 0.9, [uv, None], appearance(person)))
    return Observation(t, np.asarray(floor_xy, float), views, [np.asarray(wrist, float)] if wrist is not None else [])
