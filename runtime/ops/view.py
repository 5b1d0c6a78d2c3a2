"""What the API and the dashboard show now, fed by what the runtime publishes.

:class:`StoreView` keeps the shoppers on the floor (their last track states), the open carts, the
last health line and the recent cart-update delays, and fans every published message out to the
live-stream subscribers (batched every 0.1 s into one message serialised once; one bounded queue
each on the server's event loop: a slow client loses its oldest batches, counted, and never holds
the runtime back). :meth:`publish` is called from the
runtime's thread; readers take :meth:`snapshot`.
"""
from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from dataclasses import asdict

import numpy as np

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.messages import CartUpdate, Receipt, TrackState

LATENCY_EDGES_S = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


class Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int):
        self.loop, self.queue = loop, asyncio.Queue(maxsize)
        self.dropped = 0

    def _put(self, ev: str) -> None:     # on the loop's thread; the event as the JSON text sent
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(ev)


class StoreView:
    """``latency``: ``wall`` (live: when an update was published against when the hand left the
    shelf, on the store clock that is the wall clock) or ``stream`` (a replay: the decision's delay
    in the recording's own time)."""

    def __init__(self, latency: str = "wall", clock: Clock = SYSTEM_CLOCK, queue_size: int = 2000):
        if latency not in ("wall", "stream"):
            raise ValueError(f"latency={latency!r}: expected wall or stream")
        self.latency, self.clock, self.queue_size = latency, clock, queue_size
        self._lock = threading.Lock()
        self._subs: set[Subscriber] = set()
        self._pending: list[dict] = []       # published, not yet sent to the stream's clients
        self._fanning: asyncio.Task | None = None
        self.reset()

    def reset(self, carts: dict[str, dict[str, int]] | None = None, t: float = 0.0) -> None:
        with self._lock:
            self.tracks: dict[int, dict] = {}
            self.carts: dict[str, dict[str, int]] = {a: dict(c) for a, c in (carts or {}).items()}
            self.health: dict = {}
            self.delays: deque = deque(maxlen=5000)
            self.t = t
            self.published = 0
            self.by_type: dict[str, int] = {}

    # -- in ----------------------------------------------------------------------------------------
    def publish(self, msg, fan_out: bool = True) -> dict | None:
        """One message the runtime published (or a health line, a review, a notice as a dict with
        ``type``); what the stream sends for it."""
        wall = self.clock.wall_s()
        with self._lock:
            if isinstance(msg, TrackState):
                d = {"t": msg.t, "track_id": msg.track_id, "account_id": msg.account_id, "x": round(msg.x, 3),
                     "y": round(msg.y, 3), "ended": msg.ended, "hands": [list(h) for h in msg.hands],
                     "skeleton": [list(j) if j is not None else None for j in msg.skeleton]}
                if msg.ended:
                    self.tracks.pop(msg.track_id, None)
                else:
                    self.tracks[msg.track_id] = d
                ev = {"type": "track", "data": d}
                self.t = max(self.t, msg.t)
            elif isinstance(msg, CartUpdate):
                d = {k: v for k, v in asdict(msg).items() if k != "evidence"}
                cart = self.carts.setdefault(msg.account_id, {})
                cart[msg.sku] = cart.get(msg.sku, 0) + msg.delta_qty
                if not cart[msg.sku]:
                    del cart[msg.sku]
                if msg.delta_qty and not msg.settles:     # the item first reaching the cart (provisional or final)
                    self.delays.append(msg.wall_published - msg.t_interaction if self.latency == "wall"
                                       else msg.t_decided - msg.t_interaction)
                ev = {"type": "cart_update", "data": {**d, "cart": dict(cart)}}
                self.t = max(self.t, msg.t_decided)
            elif isinstance(msg, Receipt):
                self.carts.pop(msg.account_id, None)
                ev = {"type": "receipt", "data": asdict(msg)}
                self.t = max(self.t, msg.t_exit)
            elif isinstance(msg, dict) and "type" in msg:
                if msg["type"] == "health":
                    self.health = msg["data"]
                ev = dict(msg)
            else:
                return None
            ev["wall"] = wall
            ev["t"] = self.t
            self.published += 1
            self.by_type[ev["type"]] = self.by_type.get(ev["type"], 0) + 1
            subs = list(self._subs) if fan_out else []
        if subs:
            with self._lock:
                self._pending.append(ev)
        return ev

    async def fan_out(self, period_s: float = 0.1) -> None:
        """On the server's loop while anyone listens: every ``period_s`` what was published meanwhile
        goes to every client as one message, ``{"type": "batch", "events": [...]}``, serialised once
        (a store's dozen shoppers at 10 states a second, to fifty clients, is 6 000 messages a second
        one by one and 500 batched; each event keeps its own ``wall``)."""
        while True:
            await asyncio.sleep(period_s)
            with self._lock:
                pending, self._pending = self._pending, []
                subs = list(self._subs)
            if pending and subs:
                text = json.dumps({"type": "batch", "events": pending}, default=str)
                for s in subs:
                    s._put(text)

    # -- out ---------------------------------------------------------------------------------------
    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscriber:
        """A client of the stream (on ``loop``, the server's, where :meth:`fan_out` runs)."""
        s = Subscriber(loop, self.queue_size)
        with self._lock:
            self._subs.add(s)
        if self._fanning is None or self._fanning.done():
            self._fanning = loop.create_task(self.fan_out())
        return s

    def unsubscribe(self, s: Subscriber) -> None:
        with self._lock:
            self._subs.discard(s)

    @property
    def clients(self) -> int:
        return len(self._subs)

    def latency_histogram(self) -> dict:
        with self._lock:
            d = np.asarray(self.delays, float)
        counts, _ = np.histogram(np.clip(d, 0, LATENCY_EDGES_S[-1]), bins=LATENCY_EDGES_S)
        return {"clock": self.latency, "edges_s": list(LATENCY_EDGES_S), "counts": counts.tolist(), "n": int(d.size),
                "p50_s": round(float(np.percentile(d, 50)), 3) if d.size else None,
                "p95_s": round(float(np.percentile(d, 95)), 3) if d.size else None}

    def snapshot(self) -> dict:
        with self._lock:
            snap = {"t": self.t, "tracks": list(self.tracks.values()),
                    "carts": [{"account_id": a, "items": dict(c)} for a, c in sorted(self.carts.items())],
                    "health": dict(self.health)}
        snap["latency"] = self.latency_histogram()
        return snap
