"""The POS outbox against real HTTP receivers on 127.0.0.1: signing, retries with backoff, restarts."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import pytest

from runtime.clock import ManualClock
from runtime.eventlog import EventLog
from runtime.messages import Receipt, ReceiptLine
from runtime.ops.outbox import Deliverer, WebhookConfig, sign, verify

SECRET = b"test-secret"
START_WALL_S = 1_700_000_000.0


@dataclass
class Request:
    key: str
    kind: str
    timestamp: str
    signature: str
    content_type: str
    body: bytes


@dataclass
class Receiver:
    """A POS webhook: answers ``statuses`` in turn (then 200), checks every signature, and accepts
    each idempotency key once."""

    now_s: Callable[[], float]
    statuses: list[int] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    accepted: list[tuple[str, dict]] = field(default_factory=list)
    bad_signatures: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, req: Request) -> int:
        expected = "sha256=" + hmac.new(SECRET, req.timestamp.encode() + b"." + req.body, hashlib.sha256).hexdigest()
        ok = verify(SECRET, req.timestamp, req.signature, req.body, now_s=self.now_s()) and hmac.compare_digest(
            expected, req.signature)
        with self.lock:
            self.requests.append(req)
            if not ok:
                self.bad_signatures += 1
                return 401
            status = self.statuses.pop(0) if self.statuses else 200
            if status == 200 and req.key not in {k for k, _ in self.accepted}:
                self.accepted.append((req.key, json.loads(req.body)))
            return status


def serve(receiver: Receiver, port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = receiver.handle(Request(
                key=self.headers["Idempotency-Key"], kind=self.headers["X-Storetwin-Kind"],
                timestamp=self.headers["X-Storetwin-Timestamp"], signature=self.headers["X-Storetwin-Signature"],
                content_type=self.headers["Content-Type"], body=body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/pos/receipts"
    return server


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    servers: list[ThreadingHTTPServer] = []

    def make(now_s: Callable[[], float], statuses: list[int] | None = None) -> Receiver:
        receiver = Receiver(now_s=now_s, statuses=list(statuses or []))
        servers.append(serve(receiver))
        return receiver

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def receipt(account: str = "acct-1") -> Receipt:
    return Receipt(account_id=account, t_exit=42.5, lines=(ReceiptLine(sku="milk-1l", qty=2, unit_price=1.25),),
                   total=2.5)


def log_receipt(tmp_path, clock: ManualClock, msg: Receipt) -> int:
    """Append ``msg`` through the event log (which enqueues it) and return its receipt id."""
    log = EventLog(tmp_path, clock=clock)
    log.append(msg)
    log.flush()
    (receipt_id,) = log.db.execute("SELECT max(seq) FROM events WHERE kind = 'receipt'").fetchone()
    log.close()
    return receipt_id


def webhook(url: str) -> WebhookConfig:
    return WebhookConfig(url=url, secret=SECRET, timeout_s=2.0, backoff_s=1.0, max_backoff_s=60.0)


def test_receipt_delivered_once_signed_and_verifiable(tmp_path, receivers):
    clock = ManualClock(START_WALL_S)
    pos = receivers(clock.wall_s)
    msg = receipt()
    receipt_id = log_receipt(tmp_path, clock, msg)

    deliverer = Deliverer(tmp_path / "events.sqlite", webhook(pos.url), clock=clock)
    try:
        assert deliverer.deliver_due() == 1
        (req,) = pos.requests
        assert pos.bad_signatures == 0
        assert req.key == f"receipt-{receipt_id}-v1"
        assert req.kind == "receipt"
        assert req.content_type == "application/json"
        assert req.timestamp == str(int(START_WALL_S))
        assert json.loads(req.body) == {"receipt_id": receipt_id, "version": 1, **asdict(msg),
                                        "lines": [{"sku": "milk-1l", "qty": 2, "unit_price": 1.25}]}
        assert req.body == json.dumps(json.loads(req.body), separators=(",", ":"), sort_keys=True).encode()
        assert pos.accepted == [(req.key, json.loads(req.body))]
        assert deliverer.pending() == []
        assert deliverer.delivered() == [{"key": req.key, "kind": "receipt", "attempts": 1,
                                          "delivered_wall": START_WALL_S}]

        assert deliverer.deliver_due() == 0
        assert len(pos.requests) == 1
    finally:
        deliverer.stop()

    now_s = START_WALL_S
    assert verify(SECRET, req.timestamp, req.signature, req.body, now_s)
    assert not verify(SECRET, req.timestamp, req.signature, req.body.replace(b"2.5", b"0.5"), now_s)   # tampered
    assert not verify(b"other-secret", req.timestamp, req.signature, req.body, now_s)
    assert not verify(SECRET, req.timestamp, req.signature, req.body, now_s + 301)      # stale: a replay
    assert not verify(SECRET, req.timestamp, req.signature, req.body, now_s - 301)      # from the future
    assert verify(SECRET, req.timestamp, req.signature, req.body, now_s + 300)
    assert not verify(SECRET, "not-a-number", req.signature, req.body, now_s)
    assert not verify(SECRET, req.timestamp, "sha256=zz", req.body, now_s)
    assert sign(SECRET, 1, b"{}") == "sha256=" + hmac.new(SECRET, b"1.{}", hashlib.sha256).hexdigest()


def test_failures_back_off_then_deliver_once_under_one_key(tmp_path, receivers):
    clock = ManualClock(START_WALL_S)
    pos = receivers(clock.wall_s, statuses=[500, 500])
    receipt_id = log_receipt(tmp_path, clock, receipt())
    config = webhook(pos.url)

    with Deliverer(tmp_path / "events.sqlite", config, clock=clock) as deliverer:
        assert deliverer.deliver_due() == 0
        (row,) = deliverer.pending()
        assert row == {"key": f"receipt-{receipt_id}-v1", "kind": "receipt", "attempts": 1,
                       "next_wall": START_WALL_S + config.backoff_s, "last_error": "HTTP 500"}

        assert deliverer.deliver_due() == 0           # not due yet: nothing is sent
        assert len(pos.requests) == 1
        clock.advance(config.backoff_s * 0.5)
        assert deliverer.deliver_due() == 0
        assert len(pos.requests) == 1

        clock.advance(config.backoff_s * 0.5)         # now exactly due
        assert deliverer.deliver_due() == 0
        (row,) = deliverer.pending()
        assert row["attempts"] == 2
        assert row["next_wall"] == clock.wall_s() + 2 * config.backoff_s   # doubled
        assert len(pos.requests) == 2

        clock.advance(2 * config.backoff_s)
        assert deliverer.deliver_due() == 1
        assert deliverer.pending() == []
        assert [d["attempts"] for d in deliverer.delivered()] == [3]

    assert len(pos.requests) == 3
    assert {r.key for r in pos.requests} == {f"receipt-{receipt_id}-v1"}
    assert len({r.body for r in pos.requests}) == 1
    assert len(pos.accepted) == 1
    assert pos.bad_signatures == 0


def test_failed_row_does_not_block_later_rows(tmp_path, receivers):
    clock = ManualClock(START_WALL_S)
    pos = receivers(clock.wall_s, statuses=[503])
    first = log_receipt(tmp_path, clock, receipt("acct-1"))
    second = log_receipt(tmp_path, clock, receipt("acct-2"))

    with Deliverer(tmp_path / "events.sqlite", webhook(pos.url), clock=clock) as deliverer:
        assert deliverer.deliver_due() == 1
        assert [r.key for r in pos.requests] == [f"receipt-{first}-v1", f"receipt-{second}-v1"]   # seq order
        assert [p["key"] for p in deliverer.pending()] == [f"receipt-{first}-v1"]
        assert [d["key"] for d in deliverer.delivered()] == [f"receipt-{second}-v1"]


def test_restart_delivers_pending_row_exactly_once(tmp_path, receivers):
    clock = ManualClock(START_WALL_S)
    receipt_id = log_receipt(tmp_path, clock, receipt())
    key = f"receipt-{receipt_id}-v1"
    with socket.socket() as s:                        # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]

    down = Deliverer(tmp_path / "events.sqlite", webhook(f"http://127.0.0.1:{dead_port}/pos"), clock=clock)
    assert down.deliver_due() == 0
    (row,) = down.pending()
    assert row["key"] == key and row["attempts"] == 1
    assert row["last_error"].startswith("ConnectError")
    down.stop()

    pos = receivers(clock.wall_s)
    clock.advance(60.0)
    restarted = Deliverer(tmp_path / "events.sqlite", webhook(pos.url), clock=clock)
    assert restarted.deliver_due() == 1
    restarted.stop()
    assert [r.key for r in pos.requests] == [key]
    assert [k for k, _ in pos.accepted] == [key]

    clock.advance(60.0)
    with Deliverer(tmp_path / "events.sqlite", webhook(pos.url), clock=clock) as third:
        assert third.deliver_due() == 0
        assert [d["attempts"] for d in third.delivered()] == [2]
    assert len(pos.requests) == 1


def test_background_thread_delivers_on_notify(tmp_path, receivers):
    clock = ManualClock(START_WALL_S)
    pos = receivers(clock.wall_s)
    log = EventLog(tmp_path, clock=clock)
    # a poll far longer than the test: only notify() can wake the thread in time
    deliverer = Deliverer(tmp_path / "events.sqlite", webhook(pos.url), clock=clock, poll_s=60.0).start()
    try:
        for n in (1, 2):
            log.append(receipt(f"acct-{n}"))
            log.flush()
            deliverer.notify()
            deadline = time.monotonic() + 3.0
            while len(pos.accepted) < n and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(pos.accepted) == n
    finally:
        deliverer.stop()
        log.close()
    assert [body["account_id"] for _, body in pos.accepted] == ["acct-1", "acct-2"]
    with pytest.raises(RuntimeError, match="stopped"):
        deliverer.deliver_due()


def test_webhook_config_validation(monkeypatch):
    with pytest.raises(ValueError, match=r"url=.*http:// or https://"):
        WebhookConfig(url="ftp://pos.example", secret=SECRET)
    with pytest.raises(ValueError, match=r"secret: expected non-empty bytes"):
        WebhookConfig(url="https://pos.example/hook", secret=b"")
    with pytest.raises(ValueError, match=r"timeout_s=0"):
        WebhookConfig(url="https://pos.example/hook", secret=SECRET, timeout_s=0)
    with pytest.raises(ValueError, match=r"backoff_s=-1"):
        WebhookConfig(url="https://pos.example/hook", secret=SECRET, backoff_s=-1)
    assert "test-secret" not in repr(WebhookConfig(url="https://pos.example/hook", secret=SECRET))

    monkeypatch.delenv("STORETWIN_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ValueError, match="STORETWIN_WEBHOOK_SECRET"):
        WebhookConfig.from_env("https://pos.example/hook")
    monkeypatch.setenv("STORETWIN_WEBHOOK_SECRET", "")
    with pytest.raises(ValueError, match="STORETWIN_WEBHOOK_SECRET"):
        WebhookConfig.from_env("https://pos.example/hook")
    monkeypatch.setenv("STORETWIN_WEBHOOK_SECRET", "s3cret")
    config = WebhookConfig.from_env("https://pos.example/hook", timeout_s=1.5)
    assert config.secret == b"s3cret" and config.timeout_s == 1.5


def test_backoff_is_capped():
    config = WebhookConfig(url="https://pos.example/hook", secret=SECRET, backoff_s=1.0, max_backoff_s=60.0)
    assert [config.retry_delay_s(n) for n in (1, 2, 3, 6, 7, 5000)] == [1.0, 2.0, 4.0, 32.0, 60.0, 60.0]


def test_cart_updates_go_to_the_pos_too_when_asked_in_order_without_their_evidence(tmp_path, receivers):
    from runtime.messages import CartUpdate

    clock = ManualClock(START_WALL_S)
    pos = receivers(clock.wall_s)
    log = EventLog(tmp_path, clock=clock, outbox=("receipt", "cart_update"))
    up = CartUpdate(account_id="acct-1", sku="milk-1l", delta_qty=2, t_interaction=40.0, t_decided=40.4,
                    wall_published=START_WALL_S, confidence=0.9, evidence={"trace": [[40.0, 812.0]] * 50},
                    update_id="u1")
    log.append(up)
    log.append(receipt())
    log.close()
    deliverer = Deliverer(tmp_path / "events.sqlite", webhook(pos.url), clock=clock)
    try:
        assert deliverer.deliver_due() == 2
    finally:
        deliverer.stop()
    assert pos.bad_signatures == 0
    assert [r.kind for r in pos.requests] == ["cart_update", "receipt"], "in the order they were logged"
    (key, body), _ = pos.accepted
    assert key.startswith("cart-update-") and body["update_id"] == "u1" and body["delta_qty"] == 2
    assert "evidence" not in body, "the numbers of the change, not its evidence"

    plain = tmp_path / "plain"
    log = EventLog(plain, clock=clock)        # by default receipts only
    log.append(up)
    log.close()
    assert Deliverer(plain / "events.sqlite", webhook(pos.url), clock=clock).pending() == []
    with pytest.raises(ValueError, match="outbox="):
        EventLog(tmp_path / "bad", outbox=("track",))
