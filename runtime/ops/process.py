"""The store's API in a process of its own, beside a live store's runtime.

In the runtime's process the API's Python work (answering requests, serialising the live stream for
fifty dashboards) competes with the runtime's for one interpreter lock as well as for the cores, and
a burst of requests puts the runtime behind the store clock. :class:`ApiProcess` starts the API in a
child process instead (``spawn``: nothing of the runtime's state is copied into it), at a lower CPU
priority (``nice``), so the operating system gives the runtime the cores first and the API what is
left:

- what the runtime publishes (track states, cart updates, receipts, health lines) goes to the child
  over a bounded queue (:meth:`publish`, cheap and never blocking: when the child falls behind, the
  newest messages are dropped and counted, the runtime is never held up), where its
  :class:`~runtime.ops.view.StoreView` feeds the live stream and the read routes;
- the child opens the event log itself (SQLite's WAL, or the PostgreSQL server) for receipts, the
  review queue and the outbox, as the review desk always did;
- what must run in the runtime's own thread (privacy jobs, a rollout in shadow, its promotion) the
  child asks of this process over a pipe (:class:`_Calls`); the answer, or the error, comes back.

The child stops when told (:meth:`stop`) or when this process ends (it watches its parent).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from runtime.messages import CartUpdate

log = logging.getLogger(__name__)

# what the child may ask of the live store, by name (each a method of runtime.live.LiveStore)
CALLS = ("privacy_job", "start_rollout", "rollout_status", "promote", "drop")
STOP = "stop"


class ApiProcess:
    """``live``: the live store whose runtime thread answers the child's calls (:data:`CALLS`)."""

    def __init__(self, live, tokens, host: str = "127.0.0.1", port: int = 8080, nice: int = 5,
                 queue_size: int = 20000, start_timeout_s: float = 60.0):
        from runtime.ops.auth import Tokens

        if not isinstance(tokens, Tokens):
            raise TypeError(f"tokens: expected runtime.ops.auth.Tokens, got {type(tokens).__name__}")
        ctx = mp.get_context("spawn")
        self.live = live
        self.dropped = 0                                  # published messages the child could not take in time
        self._feed = ctx.Queue(queue_size)
        self._conn, child = ctx.Pipe()
        self._send_lock = threading.Lock()
        carts = {a: dict(live.runtime.carts.cart(a) or {}) for a in live.runtime.carts.accounts()}
        self.proc = ctx.Process(target=_child, name="storetwin-api", daemon=True,
                                args=(live.store, str(live.dir), str(live.log_where), tokens, host, port, carts,
                                      self._feed, child, nice, os.getpid(), logging.getLogger().level))
        self.proc.start()
        child.close()
        if not self._conn.poll(start_timeout_s):
            self.proc.terminate()
            raise RuntimeError(f"the API process did not start within {start_timeout_s:g} s")
        kind, value = self._conn.recv()
        if kind != "ready":
            self.proc.join(5)
            raise RuntimeError(f"the API process failed to start: {value}")
        self.url = value
        self._answering = threading.Thread(target=self._answer_calls, name="api-calls", daemon=True)
        self._answering.start()

    # -- runtime → API -------------------------------------------------------------------------------
    def publish(self, msg, fan_out: bool = True) -> None:
        """From the runtime's thread: a published message to the API's view (a cart update without its
        evidence, which the view never shows and the event log keeps)."""
        if isinstance(msg, CartUpdate) and msg.evidence:
            msg = replace(msg, evidence={})
        try:
            self._feed.put_nowait(msg)
        except queue.Full:
            self.dropped += 1

    # -- API → runtime -------------------------------------------------------------------------------
    def _answer_calls(self) -> None:
        while True:
            try:
                req = self._conn.recv()
            except (EOFError, OSError):
                return
            # each call on a thread of its own: it waits for the runtime's thread, the next may not
            threading.Thread(target=self._answer, args=req, daemon=True).start()

    def _answer(self, call_id: int, name: str, args: tuple, kw: dict) -> None:
        try:
            if name not in CALLS:
                raise ValueError(f"{name}: not a call the API may make (expected one of {', '.join(CALLS)})")
            out = (call_id, True, getattr(self.live, name)(*args, **kw))
        except Exception as e:     # to the child, which answers the request with it
            out = (call_id, False, _portable(e))
        try:
            with self._send_lock:
                self._conn.send(out)
        except (OSError, EOFError, ValueError):
            pass

    def stop(self, timeout_s: float = 10.0) -> None:
        try:
            self._feed.put(STOP, timeout=1.0)
        except queue.Full:
            pass
        self.proc.join(timeout_s)
        if self.proc.is_alive():
            log.warning("the API process did not stop in %g s: terminated", timeout_s)
            self.proc.terminate()
            self.proc.join(5)
        self._conn.close()
        self._feed.close()
        self._feed.cancel_join_thread()


def _portable(e: Exception) -> Exception:
    """The error itself when it crosses a pipe whole (a ValueError keeps its class: the API answers
    409 or 422 by it), else a RuntimeError with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


class _Calls:
    """In the child: calls to the live store over the pipe, from any of the server's threads."""

    def __init__(self, conn, timeout_s: float = 150.0):
        self.conn, self.timeout_s = conn, timeout_s
        self._lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._next = 0
        threading.Thread(target=self._read, name="api-answers", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                call_id, ok, value = self.conn.recv()
            except (EOFError, OSError):
                for f in list(self._pending.values()):
                    f.set_exception(RuntimeError("the live store has stopped"))
                return
            f = self._pending.pop(call_id, None)
            if f is not None:
                f.set_result(value) if ok else f.set_exception(value)

    def call(self, name: str, *args, **kw):
        f: Future = Future()
        with self._lock:
            self._next += 1
            self._pending[self._next] = f
            self.conn.send((self._next, name, args, kw))
        return f.result(timeout=self.timeout_s)


class _RolloutProxy:
    """The live store's rollout methods, as the API calls them, answered by the runtime's process."""

    def __init__(self, calls: _Calls):
        self._calls = calls

    def start_rollout(self, *a, **kw):
        return self._calls.call("start_rollout", *a, **kw)

    def rollout_status(self):
        return self._calls.call("rollout_status")

    def promote(self, *a, **kw):
        return self._calls.call("promote", *a, **kw)

    def drop(self):
        return self._calls.call("drop")


def _child(store, out_dir: str, log_where: str, tokens, host: str, port: int, carts: dict, feed, conn, nice: int,
           parent_pid: int, level: int) -> None:
    logging.basicConfig(level=level or logging.WARNING, format="%(asctime)s %(levelname)s api: %(message)s")
    try:
        if nice:
            os.nice(nice)
        from runtime.ops.api import open_ops
        from runtime.ops.view import StoreView

        calls = _Calls(conn)
        view = StoreView(latency="wall")
        view.reset(carts=carts)
        where = log_where if "://" in log_where else Path(log_where)
        server, _, desk = open_ops(store, out_dir, tokens, view=view, host=host, port=port,
                                   jobs=lambda name, **kw: calls.call("privacy_job", name, **kw),
                                   rollout=_RolloutProxy(calls), log=where)
    except Exception as e:
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", server.url))
    try:
        while True:
            try:
                msg = feed.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent_pid:     # the live store's process is gone
                    break
                continue
            if isinstance(msg, str) and msg == STOP:
                break
            view.publish(msg)
    finally:
        server.stop()
        desk.close()
