"""Rollout without downtime, on a live replay: a recorded run is fed to a running LiveStore through
its merge at the wall clock's pace (as its devices would), a candidate is pushed through the API and
shadows the live runtime; one that would lose a receipt is dropped, one that is as good is promoted
while a shopper is still in the store, and the store's carts carry on across the swap (every
receipt as the plain replay gives it)."""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from harness.paths import store_dir
from runtime.config import RuntimeConfig
from runtime.devices import Broker, Devices
from runtime.live import LiveStore
from runtime.ops.auth import Tokens
from runtime.sources import ReplaySource, paced
from runtime.store import load_store

HERE = Path(__file__).parent
STORE = load_store(store_dir() / "tiny_unit.yaml")
ADMIN = "admin-token-for-the-rollout"
H = {"Authorization": f"Bearer {ADMIN}"}


def _lines(receipts: list[dict]) -> list[tuple]:
    return sorted((r["account_id"], tuple(sorted((ln["sku"], ln["qty"]) for ln in r["lines"]))) for r in receipts)


def _live_replay(run: Path, out: Path, candidate: dict) -> tuple[LiveStore, dict]:
    """The recording through a live store, with ``candidate`` pushed at the start; the rollout's
    status at the end."""
    live = LiveStore(STORE, Devices("none", Broker(), {}, cells="none", gates="none"), out, RuntimeConfig(),
                     lateness_s=0.3, health_s=1.0)
    url = live.serve_api(Tokens.from_env(environ={"STORETWIN_TOKENS": f"ops:admin:{ADMIN}"}), port=0)
    th = threading.Thread(target=live.run, daemon=True)
    th.start()
    try:
        r = httpx.post(f"{url}/api/admin/rollout", headers=H, json=candidate, timeout=120)
        assert r.status_code == 200, r.text
        wall0 = time.time() + 0.5
        for m in paced(ReplaySource(run), wall_t0=wall0):      # the store clock is the wall clock
            live.merge.put(dataclasses.replace(m, t=m.t + wall0))
        end = time.time() + 15
        while time.time() < end and (live.shadow is not None or live.merge.depth):
            time.sleep(0.2)
        time.sleep(1.0)
        status = httpx.get(f"{url}/api/admin/rollout", headers=H, timeout=30).json()
    finally:
        live.stop()
        th.join(60)
    return live, status


def test_a_candidate_that_would_lose_a_receipt_is_dropped(recorded, tmp_path) -> None:
    run, reference = recorded
    live, status = _live_replay(run, tmp_path / "live", {"settings": {"weights.min_step_g": 100000.0},
                                                        "min_receipts": 1})
    last = status["history"][-1]
    assert last["action"] == "drop" and last["why"] == "it would lose a receipt", last
    assert last["comparison"]["lost"] == 1 and last["comparison"]["visits"][0]["candidate"] == [], last
    assert live.cfg.weights.min_step_g == RuntimeConfig().weights.min_step_g, "the live settings stay"
    got = [json.loads(x) for x in (tmp_path / "live" / "receipts.jsonl").read_text().splitlines()]
    assert _lines(got) == _lines(reference), "the store went on as before"


def test_a_candidate_as_good_is_promoted_and_the_carts_carry_on_across_the_swap(put_backs, tmp_path) -> None:
    run = put_backs
    reference = [json.loads(x) for x in (run / "out" / "receipts.jsonl").read_text().splitlines()]
    assert {r["account_id"] for r in reference} == {"uma", "vic"}
    live, status = _live_replay(run, tmp_path / "live", {"settings": {"review_below": 0.5}, "min_receipts": 1})
    promoted = [h for h in status["history"] if h["action"] == "promote"]
    assert len(promoted) == 1 and promoted[0]["comparison"]["verdict"] == "pass", status
    assert [v["account_id"] for v in promoted[0]["comparison"]["visits"]] == ["uma"]
    assert live.cfg.review_below == 0.5 and status["config"]["review_below"] == 0.5
    got = [json.loads(x) for x in (tmp_path / "live" / "receipts.jsonl").read_text().splitlines()]
    assert _lines(got) == _lines(reference), "every receipt as the plain replay gives it"
    db = sqlite3.connect(tmp_path / "live" / "events.sqlite")
    swap = db.execute("SELECT seq FROM events WHERE kind = 'rollout' AND payload LIKE '%promote%'").fetchone()[0]
    after = db.execute("SELECT kind, account_id FROM events WHERE seq > ? AND kind IN ('cart_update', 'receipt')",
                       (swap,)).fetchall()
    assert ("receipt", "vic") in after, "vic, in the store at the swap, is charged by the promoted runtime"
    entered = db.execute("SELECT seq FROM events WHERE kind = 'enter' AND account_id = 'vic'").fetchone()[0]
    assert entered < swap
