"""`storetwin live replay=<run>`: a recorded run stands in for the store's devices on the wall clock,
through the live store as it runs in a store, with its API in a process of its own (the default):
the stream carries the shopper's track states and cart updates while the recording plays, the
receipts are the plain replay's, and the API is served by another process than the runtime's."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

TOKEN = "replay-operator-token-0123456789"


async def _stream(url: str, seconds: float) -> list[dict]:
    import websockets

    got: list[dict] = []
    end = time.time() + seconds
    async with websockets.connect(url.replace("http", "ws") + "/api/stream",
                                  additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        while time.time() < end:
            try:
                m = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
            except (asyncio.TimeoutError, Exception):
                if time.time() >= end:
                    break
                continue
            got.extend(m.get("events", [m]))
            if any(e.get("type") == "receipt" for e in got):
                break
    return got


def test_a_live_replay_serves_its_api_from_another_process(recorded, tmp_path) -> None:
    run, reference = recorded
    out = tmp_path / "live"
    env = {**os.environ, "STORETWIN_TOKENS": f"pos:operator:{TOKEN}"}
    p = subprocess.Popen([sys.executable, "-m", "harness.cli", "live", f"replay={run}", f"out={out}", "api_port=0",
                          "health_s=1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         cwd=Path(__file__).parent.parent)
    try:
        line = ""
        end = time.time() + 120
        while "API and dashboard" not in line and time.time() < end:
            line = p.stdout.readline()
            assert line or p.poll() is None, "storetwin live ended before serving its API"
        url = re.search(r"(http://[\d.]+:\d+)/", line).group(1)
        h = {"Authorization": f"Bearer {TOKEN}"}
        health = httpx.get(f"{url}/api/health", headers=h, timeout=10).json()
        assert health.get("api_pid") and health["api_pid"] != p.pid, "the API answers from a process of its own"
        events = asyncio.run(_stream(url, 60))
        kinds = {e["type"] for e in events}
        assert {"track", "cart_update", "receipt"} <= kinds, kinds
        out_text, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out_text
    got = [json.loads(x) for x in (out / "receipts.jsonl").read_text().splitlines()]
    assert [(r["account_id"], r["lines"]) for r in got] == [(r["account_id"], r["lines"]) for r in reference]
    info = json.loads((out / "run.json").read_text())
    # every frame played reached the runtime, or was dropped by the merge as a live store drops them when behind
    assert info["source"] == "replay" and info["frames_seen"] > 0, info
    assert info["replay"]["frames"] == info["frames_seen"] + sum(info["frames_dropped"].values()), info
