"""The outbox's sender: receipts (and their reviewed versions) to the point-of-sale system by webhook.

The event log writes each delivery into its ``outbox`` table in the same transaction as the receipt
(:func:`runtime.eventlog.enqueue`); a :class:`Deliverer` POSTs what is pending, retries failures with
exponential backoff, and marks what a receiver accepted. Delivery is *at least once*: a receiver
must deduplicate on ``Idempotency-Key``.

**What a receiver gets.** One ``POST`` to the configured URL per delivery attempt:

* body: the payload as compact, key-sorted JSON (UTF-8), e.g. for a receipt
  ``{"account_id":…,"flagged":…,"lines":[{"qty":…,"sku":…,"unit_price":…}],"reason":…,
  "receipt_id":…,"t_exit":…,"total":…,"version":1}``;
* ``Content-Type: application/json``;
* ``Idempotency-Key``: the delivery's key, the same on every retry and after a restart
  (``receipt-<id>-v<version>``); a receiver that has seen it answers 2xx and does nothing else;
* ``X-Storetwin-Kind``: what the payload is (``receipt``, ...);
* ``X-Storetwin-Timestamp``: when this attempt was sent, integer Unix seconds;
* ``X-Storetwin-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed with the shared secret, of the
  bytes ``<timestamp>.`` followed by the raw body (see :func:`sign`).

**Verifying.** Recompute the signature over the raw body bytes as received (before any JSON parsing),
compare in constant time, and reject a timestamp more than a few minutes from your clock, so a
captured request cannot be replayed later (:func:`verify` does all three). Answer any 2xx to accept;
anything else, or no answer within the timeout, is retried later with the same key.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.eventlog import connect

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Storetwin-Timestamp"
SIGNATURE_HEADER = "X-Storetwin-Signature"
KIND_HEADER = "X-Storetwin-Kind"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_MAX_ERROR_CHARS = 200


@dataclass(frozen=True)
class WebhookConfig:
    """Where the point-of-sale webhook is and how to send to it (the secret never shows in a repr)."""

    url: str
    secret: bytes = field(repr=False)
    timeout_s: float = 5.0
    backoff_s: float = 1.0        # delay before the first retry; doubled per failure
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ValueError(f"WebhookConfig.url={self.url!r}: expected a URL starting with http:// or https://")
        if not isinstance(self.secret, bytes) or not self.secret:
            raise ValueError("WebhookConfig.secret: expected non-empty bytes (the shared HMAC key)")
        for name in ("timeout_s", "backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"WebhookConfig.{name}={value!r}: expected a finite number of seconds > 0")
        if self.max_backoff_s < self.backoff_s:
            raise ValueError(f"WebhookConfig.max_backoff_s={self.max_backoff_s!r}: expected >= "
                             f"backoff_s={self.backoff_s!r}")

    @classmethod
    def from_env(cls, url: str, secret_env: str = "STORETWIN_WEBHOOK_SECRET", **settings: float) -> WebhookConfig:
        """The config with its secret read from the environment (secrets stay out of config files);
        ``settings`` are the other fields (``timeout_s=``, ...)."""
        secret = os.environ.get(secret_env, "")
        if not secret:
            raise ValueError(f"environment variable {secret_env} is unset or empty: expected the webhook's "
                             "shared secret")
        return cls(url=url, secret=secret.encode(), **settings)

    def retry_delay_s(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt: ``backoff_s · 2^(attempts-1)``, capped."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** min(max(attempts - 1, 0), 64))


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>``: the timestamp is signed with the
    body so a receiver can refuse old requests without trusting an unsigned header."""
    return "sha256=" + hmac.new(secret, f"{int(timestamp)}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp_header: str, signature_header: str, body: bytes, now_s: float,
           tolerance_s: float = 300) -> bool:
    """Whether a request is authentic and fresh: its signature matches (compared in constant time,
    so timing leaks nothing) and its timestamp is within ``tolerance_s`` of ``now_s`` either way
    (replay protection). Malformed headers are simply False."""
    try:
        timestamp = int(timestamp_header)
    except (TypeError, ValueError):
        return False
    if not math.isfinite(now_s) or abs(now_s - timestamp) > tolerance_s:
        return False
    if not isinstance(signature_header, str):
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), signature_header.encode())


def body_bytes(payload: dict) -> bytes:
    """The exact bytes sent for ``payload``: compact, key-sorted JSON, so a retry sends the same body."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


class Deliverer:
    """Sends an event log's pending outbox rows to one webhook; one deliverer per log.

    It holds its own connection to the log (a SQLite file, or a PostgreSQL URL with ``store`` naming
    its schema) and HTTP client. Use :meth:`deliver_due` directly (tests, a
    one-shot flush) or :meth:`start` a background thread that calls it every ``poll_s`` seconds, or
    at once after :meth:`notify`.
    """

    def __init__(self, db_path: str | Path, webhook: WebhookConfig, clock: Clock = SYSTEM_CLOCK,
                 poll_s: float = 0.2, store: str | None = None):
        if not math.isfinite(poll_s) or poll_s <= 0:
            raise ValueError(f"poll_s={poll_s!r}: expected a finite number of seconds > 0")
        self.webhook = webhook
        self.clock = clock
        self.poll_s = poll_s
        self._db = connect(db_path, store)     # a SQLite file, or a PostgreSQL URL (``store``: its schema)
        self._client = httpx.Client(timeout=webhook.timeout_s)
        self._db_lock = threading.Lock()      # the connection: one statement sequence at a time
        self._pass_lock = threading.Lock()    # one delivery pass at a time
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_closes = False           # stop() timed out: the thread closes on its way out
        self._closed = False

    def deliver_due(self) -> int:
        """One pass: POST every undelivered row whose ``next_wall`` has come, in ``seq`` order, and
        return how many a receiver accepted (2xx).

        A failure (non-2xx, connection error, timeout) counts an attempt, keeps the error in
        ``last_error`` and schedules the row ``backoff_s · 2^(attempts-1)`` later (capped); it does
        not hold back the rows after it. Each row's outcome is committed before the next is sent, so a
        restart never resends an accepted row, except when the process dies between a receiver's 2xx
        and that commit: then the row is sent again under the same ``Idempotency-Key``, which the
        receiver deduplicates.
        """
        if self._closed:
            raise RuntimeError("Deliverer is stopped: its connection and client are closed")
        with self._pass_lock:
            with self._db_lock:
                rows = self._db.execute(
                    "SELECT seq, key, kind, payload, attempts FROM outbox "
                    "WHERE delivered_wall IS NULL AND next_wall <= ? ORDER BY seq",
                    (self.clock.wall_s(),)).fetchall()
            delivered = 0
            for seq, key, kind, payload, attempts in rows:
                if self._stopping.is_set():
                    break
                delivered += self._send(seq, key, kind, payload, attempts + 1)
            return delivered

    def _send(self, seq: int, key: str, kind: str, payload: str, attempts: int) -> int:
        """Send one row and commit its outcome; 1 if accepted."""
        now_s = self.clock.wall_s()
        timestamp = int(now_s)
        body = body_bytes(json.loads(payload))
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: key,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.webhook.secret, timestamp, body),
            KIND_HEADER: kind,
        }
        error: str | None
        try:
            response = self._client.post(self.webhook.url, content=body, headers=headers)
            error = None if response.is_success else f"HTTP {response.status_code}"
        except (httpx.HTTPError, OSError) as e:
            error = f"{type(e).__name__}: {e}"[:_MAX_ERROR_CHARS]
        done_s = self.clock.wall_s()
        with self._db_lock:
            if error is None:
                self._db.execute("UPDATE outbox SET attempts = ?, delivered_wall = ?, last_error = NULL WHERE seq = ?",
                                 (attempts, done_s, seq))
            else:
                self._db.execute("UPDATE outbox SET attempts = ?, last_error = ?, next_wall = ? WHERE seq = ?",
                                 (attempts, error, done_s + self.webhook.retry_delay_s(attempts), seq))
            self._db.commit()
        if error is not None:
            log.warning("outbox %s: attempt %d failed (%s)", key, attempts, error)
        return int(error is None)

    def pending(self) -> list[dict]:
        """Undelivered rows in ``seq`` order: key, kind, attempts, next_wall, last_error."""
        return self._rows("SELECT key, kind, attempts, next_wall, last_error FROM outbox "
                          "WHERE delivered_wall IS NULL ORDER BY seq")

    def delivered(self) -> list[dict]:
        """Delivered rows in ``seq`` order: key, kind, attempts, delivered_wall."""
        return self._rows("SELECT key, kind, attempts, delivered_wall FROM outbox "
                          "WHERE delivered_wall IS NOT NULL ORDER BY seq")

    def _rows(self, sql: str) -> list[dict]:
        with self._db_lock:
            cur = self._db.execute(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def start(self) -> Deliverer:
        """Deliver in a daemon thread until :meth:`stop`; an error in a pass is logged, not fatal."""
        if self._thread is not None:
            raise RuntimeError("Deliverer already started")
        self._thread = threading.Thread(target=self._run, name="outbox-deliverer", daemon=True)
        self._thread.start()
        return self

    def notify(self) -> None:
        """Something was enqueued: run a pass now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.deliver_due()
            except Exception:
                log.exception("outbox delivery pass failed; retrying in %.3g s", self.poll_s)
            self._wake.wait(self.poll_s)
            self._wake.clear()
        if self._thread_closes:
            self._close()

    def stop(self, timeout_s: float = 5) -> None:
        """End the thread (after the row it is sending) and close the client and the connection. If
        the thread outlives ``timeout_s`` (a send still waiting on its timeout), it closes them itself
        when it ends."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("outbox deliverer still sending after %.3g s; it closes when done", timeout_s)
                self._thread_closes = True
                if thread.is_alive():     # else it ended before seeing the flag: close here
                    return
        self._close()

    def _close(self) -> None:
        with self._db_lock:
            if self._closed:
                return
            self._closed = True
            self._client.close()
            self._db.close()

    def __enter__(self) -> Deliverer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
