"""The sensor boundary: the only messages that reach the runtime, and the ones it publishes.

One frozen record per message. Times are seconds on the store clock (``t``) unless a name says
``wall``; masses are grams.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One camera image: H×W×3 uint8, BGR as OpenCV gives it."""

    camera_id: str
    t: float
    seq: int
    image: np.ndarray


@dataclass(frozen=True, slots=True)
class WeightSample:
    """One raw, noisy reading of one load cell."""

    cell_id: str
    t: float
    grams: float


@dataclass(frozen=True, slots=True)
class GateEvent:
    """A QR scan at a gate; ``kind`` is ``enter`` or ``exit``."""

    gate_id: str
    t: float
    account_id: str
    kind: Literal["enter", "exit"]


SensorMessage = Union[Frame, WeightSample, GateEvent]


def gate_key(g: GateEvent) -> tuple:
    """A gate scan's identity: the same scan delivered twice (QoS 1, a restart) has the same key."""
    return (g.gate_id, g.account_id, g.kind, round(g.t, 3))


@dataclass(frozen=True, slots=True)
class TrackState:
    """A shopper on the floor plane, metres (with the wrists triangulated at a tick, ``hands``, and
    the skeleton, ``skeleton``).
    ``ended``: the track is no longer shown from ``t`` on
    (the shopper walked out, or was lost; ``x``, ``y`` where it was last shown). A track that comes
    back (found again) is shown again by its next state."""

    t: float
    track_id: int
    account_id: str | None
    x: float
    y: float
    confidence: float = 1.0
    ended: bool = False
    hands: tuple = ()          # the wrists seen at this state's tick, (x, y, z) metres: a display draws the arms
    skeleton: tuple = ()       # the 17 joints (COCO order) at this tick, (x, y, z) metres or None where not found


@dataclass(frozen=True, slots=True)
class CartUpdate:
    """One change to a shopper's cart; the sum of every update's ``delta_qty`` is the cart.

    ``stage`` is ``provisional`` for an update published before the weight settled, ``final``
    otherwise. A final update that ``settles`` a provisional one (by its ``update_id``) either
    confirms it (``delta_qty`` 0) or takes it back (the opposite delta), and a correction follows
    as an update of its own. The receipt is always the final state."""

    account_id: str
    sku: str
    delta_qty: int
    t_interaction: float
    t_decided: float
    wall_published: float
    confidence: float
    evidence: dict = field(default_factory=dict)
    stage: Literal["provisional", "final"] = "final"
    update_id: str = ""
    settles: str = ""


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    sku: str
    qty: int
    unit_price: float


@dataclass(frozen=True, slots=True)
class Receipt:
    account_id: str
    t_exit: float
    lines: tuple[ReceiptLine, ...]
    total: float
    flagged: bool = False
    reason: str = ""

