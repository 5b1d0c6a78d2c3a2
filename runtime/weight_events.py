"""Weight events: settled steps in a load cell's raw readings, and what they can mean.

A shelf scale rings when an item leaves or lands, drifts slowly, and now and then spikes (a knock,
a cable fault). :class:`StepDetector` waits for the reading to settle before it reports a step, so
a spike that returns to the old level is no event and the drift is followed while nothing happens.
Before that, as soon as the new level has held for ``provisional_s`` while the plate still rings,
it offers a provisional step (:attr:`StepDetector.provisional`): enough to publish a cart update
early, which the settled step then confirms or corrects.
Each plate's own noise is learnt while it is still, and sets how still "settled" is and how far a
reading must move to start an event: real plates differ by a factor of ten.
:class:`BinBelief` keeps a running count of what lies in each bin (misplaced items included) and
turns Δgrams into candidate (SKU, quantity) explanations.
"""
from __future__ import annotations

import itertools
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from runtime.config import WeightEventConfig
from runtime.store import StoreSpec


@dataclass(frozen=True)
class WeightEvent:
    """A settled change of one cell: ``delta_g`` < 0 is something taken."""

    cell_id: str
    t_start: float      # when the reading left its settled level
    t_end: float        # when the new level had settled (the event is decided then)
    delta_g: float
    noise_g: float      # spread of the settled readings, for the mass match's tolerance


class StepDetector:
    """One cell's step detector. Feed readings in time order; ``update`` returns a finished event."""

    def __init__(self, cell_id: str, config: WeightEventConfig = WeightEventConfig()):
        self.cell_id, self.cfg = cell_id, config
        self.level: float | None = None
        self._buf: deque[tuple[float, float]] = deque()
        self._start: float | None = None     # t the reading left the level, while an event is open
        self.small: deque[WeightEvent] = deque(maxlen=4)   # settled steps below min_step_g (a straddling item's share)
        self.noise: float | None = None      # the plate's own noise (σ of a still window), learnt while it is still
        self._first_t: float | None = None
        self._startup: list[float] = []
        self.provisional: WeightEvent | None = None   # the open event's early estimate, once (take it with take_provisional)
        self._offered = False
        self._offer_after = -np.inf          # no provisional step before this (one was declined)
        self._refine = False                 # the level was taken before the reading was still

    def restore(self, level: float, noise: float | None) -> None:
        """The settled level and noise written to the event log before a restart: a step that
        happened while the runtime was down is found against it."""
        self.level, self.noise = float(level), (None if noise is None else float(noise))
        self._startup = []

    def decline(self, t: float) -> None:
        """The provisional step explained nothing (a wandering plate read it too far off): offer
        another once ``provisional_s`` more of readings have come."""
        if self._start is not None:
            self._offered, self._offer_after = False, t + self.cfg.provisional_s

    def take_provisional(self) -> WeightEvent | None:
        """The open event's provisional step, if one was offered since the last call."""
        p, self.provisional = self.provisional, None
        return p

    @property
    def busy(self) -> bool:
        """The reading has left its level and not settled again yet."""
        return self._start is not None

    def update(self, t: float, grams: float) -> WeightEvent | None:
        # plain Python over the window's dozen values: numpy's per-call overhead would dominate at
        # 80 readings a second on every cell of a store
        cfg = self.cfg
        buf = self._buf
        buf.append((t, grams))
        while buf and buf[0][0] < t - cfg.window_s:
            buf.popleft()
        w = [g for _, g in buf]
        n = len(w)
        mean = sum(w) / n
        std = (sum([(g - mean) ** 2 for g in w]) / n) ** 0.5     # a list, not a generator: faster, same sum
        # a plate's own noise sets how still "settled" is: real plates differ (σ 1 g to 8 g and more)
        settle = max(cfg.settle_std_g, cfg.settle_sigmas * self.noise) if self.noise is not None else cfg.settle_std_g
        flat = n >= 5 and std < settle and (max(w) - min(w)) < 4 * settle
        if self.level is None:
            self._first_t = t if self._first_t is None else self._first_t
            self._startup.append(grams)
            if flat:
                self.level = mean
            elif t - self._first_t >= cfg.learn_s and len(self._startup) >= 10:
                # never still by the default measure: a noisy plate. Its level and noise from the
                # readings so far (median and MAD, which a spike does not move)
                xs = sorted(self._startup)
                med = xs[len(xs) // 2]
                self.level = med
                self.noise = 1.4826 * sorted(abs(x - med) for x in xs)[len(xs) // 2]
            if self.level is not None:
                self._startup = []   # only the start-up needs them
            return None
        if self._start is None:
            recent = sorted(w[-3:])[len(w[-3:]) // 2]
            trigger = max(cfg.trigger_g, cfg.trigger_sigmas * self.noise) if self.noise is not None else cfg.trigger_g
            if abs(recent - self.level) > trigger:
                self._start = buf[-3][0] if n >= 3 else t
                self._offered, self._offer_after = False, -np.inf
            elif flat and self._refine:     # weighed before it was still: the still level now
                self.level, self._refine = mean, False
            elif flat:
                self.level += cfg.drift_alpha * (mean - self.level)
                self.noise = std if self.noise is None else self.noise + cfg.noise_alpha * (std - self.noise)
            return None
        self._refine = False
        if not flat and cfg.settle_frac > 0 and n >= 5 and buf[0][0] >= self._start:
            # still wandering or ringing, but within settle_frac of a step as large as an event's:
            # settled enough to weigh it (a real plate wanders ±20 g for a second after an impact);
            # the level is taken again once the reading is still
            d = abs(mean - self.level)
            loose = max(settle, cfg.settle_frac * d)
            flat = self._refine = d >= cfg.min_step_g and std < loose and (max(w) - min(w)) < 4 * loose
        if flat and buf[0][0] >= self._start:   # the flat window lies wholly after the departure
            delta = mean - self.level
            start, self.level, self._start = self._start, mean, None
            self.provisional = None
            if abs(delta) < cfg.min_step_g:
                if abs(delta) >= cfg.trigger_g:   # kept a while: a neighbour's step may want it
                    self.small.append(WeightEvent(self.cell_id, start, t, delta, std))
                return None   # a glitch that returned, or drift
            return WeightEvent(self.cell_id, start, t, delta, std)
        if t - self._start > cfg.max_event_s and flat:
            self.level, self._start = mean, None
            self.provisional = None
            return None
        if not self._offered and cfg.provisional_s > 0:
            self._offer(t, settle)
        return None

    def offset(self, t: float) -> tuple[float, float] | None:
        """While an event is open: how far the last ``provisional_s`` of readings lie from the level
        (mean, spread); None when nothing moves or the reading left too lately to say."""
        if self._start is None or self.level is None:
            return None
        g = [x for tt, x in self._buf if tt >= max(t - self.cfg.provisional_s, self._start)]
        if len(g) < 2:
            return None
        mean = sum(g) / len(g)
        return mean - self.level, (sum((x - mean) ** 2 for x in g) / len(g)) ** 0.5

    def _offer(self, t: float, settle: float) -> None:
        """The provisional step: the last ``provisional_s`` of readings, all after the departure,
        hold within ``provisional_frac`` of the step (the plate may still ring) and the step is as
        large as an event's."""
        cfg = self.cfg
        q = [(tt, g) for tt, g in self._buf if tt >= t - cfg.provisional_s]
        if len(q) < 4 or q[0][0] < self._start or t < self._offer_after:
            return
        g = [x for _, x in q]
        mean = sum(g) / len(g)
        std = (sum((x - mean) ** 2 for x in g) / len(g)) ** 0.5
        delta = mean - self.level
        if abs(delta) >= cfg.min_step_g and std < max(settle, cfg.provisional_frac * abs(delta)):
            self.provisional = WeightEvent(self.cell_id, self._start, t, delta, std)
            self._offered = True


@dataclass(frozen=True)
class Candidate:
    """One explanation of a weight event: these items from (or into) this bin."""

    bin_id: str
    items: tuple[tuple[str, int], ...]     # (sku, qty) — qty > 0 taken or put, sign from the event
    residual_g: float                      # |Δ| − Σ qty·mass

    @property
    def qty(self) -> int:
        return sum(q for _, q in self.items)


def mass_tolerance_g(cfg: WeightEventConfig, delta_g: float, noise_g: float) -> float:
    """How far a step may be from the items' mass and still be them: ``tol_sigmas`` σ of the
    settled noise of both levels plus ``tol_frac`` of the step, at least ``tol_min_g``."""
    return max(cfg.tol_min_g, cfg.tol_sigmas * noise_g * np.sqrt(2) + cfg.tol_frac * abs(delta_g))


def explanation_cost(c: Candidate, tol_g: float, mix_penalty: float) -> float:
    """How well a candidate explains a step by itself: the mass residual in tolerances, and each
    further SKU in one reach."""
    return c.residual_g / tol_g + mix_penalty * (len(c.items) - 1)


@dataclass
class BinBelief:
    """What the runtime believes lies in each bin: planogram stock at the start, then every decided
    event applied. Misplaced items (wrong-shelf put-backs) are counted in the bin they went to."""

    store: StoreSpec
    cfg: WeightEventConfig = field(default_factory=WeightEventConfig)
    counts: dict[str, Counter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.counts:
            for bid, f in self.store.planogram.items():
                self.counts[bid] = Counter({f.sku: f.facings * f.depth})

    def apply(self, bin_id: str, sku: str, qty: int) -> None:
        """``qty`` > 0 put into the bin, < 0 taken out."""
        c = self.counts.setdefault(bin_id, Counter())
        c[sku] = max(c[sku] + qty, 0)

    def candidates(self, event: WeightEvent, bins: list[str], put_skus: dict[str, int] | list[str] | None = None,
                   max_qty: int = 4, tol_g: float | None = None) -> list[Candidate]:
        """Explanations of ``event`` on ``bins`` (those its cell carries), best first.

        A removal is explained by items that the belief says lie in one of the bins; a put-back by
        ``put_skus`` (what the shopper carries: SKU → how many, or a list of SKUs; empty: nothing,
        so no put-back of theirs explains it) or, when nobody's cart is known (None), any SKU of the
        catalog. Tolerance: :func:`mass_tolerance_g`."""
        mass = {p.sku: p.mass_g for p in self.store.catalog}
        dg = abs(event.delta_g)
        tol = tol_g if tol_g is not None else mass_tolerance_g(self.cfg, event.delta_g, event.noise_g)
        out: list[Candidate] = []
        for bid in bins:
            if event.delta_g < 0:
                stock = {s: n for s, n in self.counts.get(bid, Counter()).items() if n > 0}
            else:
                if isinstance(put_skus, dict):
                    stock = {s: n for s, n in put_skus.items() if n > 0 and s in mass}
                else:
                    stock = {s: max_qty for s in (list(mass) if put_skus is None else put_skus)}
            skus = sorted(stock)
            for k in (1, 2):   # one SKU, or a mix of two in one reach
                for combo in itertools.combinations(skus, k):
                    for qs in itertools.product(*[range(1, min(stock[s], max_qty) + 1) for s in combo]):
                        if sum(qs) > max_qty:
                            continue
                        r = abs(dg - sum(q * mass[s] for s, q in zip(combo, qs)))
                        if r <= tol:
                            out.append(Candidate(bid, tuple(zip(combo, qs)), r))
        out.sort(key=lambda c: (explanation_cost(c, tol, self.cfg.mix_penalty), c.qty))
        return out


class PlateJoiner:
    """One item's step over every plate it rests on. A store says which bins hold items that sit
    across two plates (``straddle``); such an item leaves a step on each, and each alone explains
    nothing. Events on plates joined that way are held until none of those plates is still
    moving (at most ``join_s`` after the last settled), then given on as one event: the sum of
    the steps, on the plate that moved most. A neighbour whose share was too small to make a step
    of its own adds the share the store declares for it."""

    def __init__(self, store: StoreSpec, detector, join_s: float = 0.5):
        self.store, self.detector, self.join_s = store, detector, join_s   # detector: cell → its StepDetector
        links: dict[str, set[str]] = {}
        for a, shares in store.straddles.items():
            for b in shares:
                links.setdefault(a, set()).add(b)
                links.setdefault(b, set()).add(a)
        self.group: dict[str, frozenset[str]] = {}
        for c in links:
            if c in self.group:
                continue
            seen, todo = set(), [c]
            while todo:
                x = todo.pop()
                if x not in seen:
                    seen.add(x)
                    todo.extend(links[x] - seen)
            for x in seen:
                self.group[x] = frozenset(seen)
        self._pending: dict[frozenset[str], list[WeightEvent]] = {}

    def joins(self, cell_id: str) -> bool:
        return cell_id in self.group

    def key(self, cell_id: str) -> str:
        """What a cart's provisional update of this cell is kept under: its group of joined plates
        (one item, one provisional), or the cell itself."""
        return "+".join(sorted(self.group[cell_id])) if cell_id in self.group else cell_id

    def idle(self, cell_id: str) -> bool:
        """None of the cell's joined plates moves, and none has a step waiting to be joined."""
        group = self.group[cell_id]
        return group not in self._pending and not any(self.detector(c).busy for c in group)

    def provisional(self, ev: WeightEvent) -> WeightEvent:
        """A provisional step of one of the joined plates, over the whole item: with the offset of
        every other plate of the group that moves now, and the declared share of those that do not."""
        group = self.group[ev.cell_id]
        by_cell, noise2 = {ev.cell_id: ev.delta_g}, ev.noise_g ** 2
        for c in sorted(group - {ev.cell_id}):
            off = self.detector(c).offset(ev.t_end)
            if off is not None and off[0] * ev.delta_g > 0:
                by_cell[c] = off[0]
                noise2 += off[1] ** 2
        return WeightEvent(max(by_cell, key=lambda c: abs(by_cell[c])), ev.t_start, ev.t_end,
                           self._total(group, by_cell), float(np.sqrt(noise2)))

    def _total(self, group: frozenset[str], by_cell: dict[str, float]) -> float:
        """The item's whole step from the steps seen, with the declared shares of plates that made none."""
        total = sum(by_cell.values())
        for c, shares in self.store.straddles.items():
            if c in by_cell:
                rest = 1.0 - sum(shares.values())
                total += sum(by_cell[c] * s / rest for o, s in shares.items() if o in group and o not in by_cell)
        return total

    def add(self, ev: WeightEvent) -> None:
        self._pending.setdefault(self.group[ev.cell_id], []).append(ev)

    def ready(self, t: float) -> list[WeightEvent]:
        """The joined events whose plates have all settled by ``t``."""
        out = []
        for group, evs in list(self._pending.items()):
            if any(self.detector(c).busy for c in group) and t - max(e.t_end for e in evs) < self.join_s:
                continue
            del self._pending[group]
            out.append(self._joined(group, evs))
        return out

    def _joined(self, group: frozenset[str], evs: list[WeightEvent]) -> WeightEvent:
        t0 = min(e.t_start for e in evs)
        have = {e.cell_id for e in evs}
        for c in sorted(group - have):     # shares too small for an event of their own, but settled
            small = [e for e in self.detector(c).small if abs(e.t_start - t0) <= self.join_s and e.delta_g * evs[0].delta_g > 0]
            if small:
                evs.append(small[-1])
                self.detector(c).small.remove(small[-1])
        by_cell: dict[str, float] = {}
        for e in evs:
            by_cell[e.cell_id] = by_cell.get(e.cell_id, 0.0) + e.delta_g
        total = self._total(group, by_cell)
        owner = max(by_cell, key=lambda c: abs(by_cell[c]))
        noise = float(np.sqrt(sum(e.noise_g ** 2 for e in evs)))
        return WeightEvent(owner, t0, max(e.t_end for e in evs), total, noise)
