"""The API beside a running LiveStore: privacy jobs run by the runtime's own thread (its event log,
its JSONL copies), a shopper in the store cannot be erased, and a second runtime on the same folder
is refused. The store is fed through its merge, as its devices would (gate scans on the wall clock)."""
from __future__ import annotations

import threading
import time

import httpx
import pytest

from harness.paths import store_dir
from runtime.config import RuntimeConfig
from runtime.devices import Broker, Devices
from runtime.live import LiveStore
from runtime.messages import GateEvent
from runtime.ops.auth import Tokens
from runtime.store import load_store

STORE = load_store(store_dir() / "tiny_unit.yaml")
ADMIN = "admin-token-0123456789"


def _wait(what, timeout_s: float):
    end = time.time() + timeout_s
    while time.time() < end:
        v = what()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s")


def test_privacy_jobs_run_in_the_live_runtime_and_a_second_runtime_is_refused(tmp_path) -> None:
    devices = Devices("none", Broker(), {}, cells="none", gates="none")
    live = LiveStore(STORE, devices, tmp_path, RuntimeConfig(sensing="weight_only"), lateness_s=0.05, health_s=0.5)
    with pytest.raises(RuntimeError, match="a live runtime is running"):
        LiveStore(STORE, devices, tmp_path, RuntimeConfig(sensing="weight_only"))
    url = live.serve_api(Tokens.from_env(environ={"STORETWIN_TOKENS": f"ops:admin:{ADMIN}"}), port=0)
    th = threading.Thread(target=live.run, kwargs={"duration_s": 30}, daemon=True)
    th.start()
    h = {"Authorization": f"Bearer {ADMIN}"}
    try:
        now = time.time()
        for g in (GateEvent("gate_in", now, "olga", "enter"), GateEvent("gate_out", now + 0.1, "olga", "exit"),
                  GateEvent("gate_in", now + 0.2, "ines", "enter")):
            live.merge.put(g)
        rs = _wait(lambda: httpx.get(f"{url}/api/receipts", headers=h).json(), 10)
        assert [r["account_id"] for r in rs] == ["olga"]
        assert _wait(lambda: httpx.get(f"{url}/api/health", headers=h).json().get("wall"), 5), "health lines reach the API"
        r = httpx.post(f"{url}/api/admin/erase", headers=h, json={"account_id": "ines", "why": "asked"})
        assert r.status_code == 422 and "in the store now" in r.json()["detail"]
        r = httpx.post(f"{url}/api/admin/erase", headers=h, json={"account_id": "olga", "why": "asked"})
        assert r.status_code == 200 and r.json()["removed"]["own"] >= 2, r.text
        assert httpx.get(f"{url}/api/receipts", headers=h).json() == []
        assert "olga" not in (tmp_path / "receipts.jsonl").read_text(), "the runtime wrote its copies again"
        r = httpx.post(f"{url}/api/admin/prune", headers=h, json={"days": 30})
        assert r.status_code == 200 and "track" in r.json()["removed"]
    finally:
        live.stop()
        th.join(20)
    assert not th.is_alive()
    assert (tmp_path / "receipts.jsonl").read_text() == "", "nothing of her came back at the stop"
    LiveStore(STORE, devices, tmp_path, RuntimeConfig(sensing="weight_only"))   # the folder is free again
