"""The store's API under load beside a live store: `storetwin serve` plays a recording (RTSP + MQTT)
into `storetwin live … api_port=`, while a second process keeps ``--clients`` WebSocket clients on
the live stream and sends ``--rps`` API requests a second (open loop: on a fixed schedule, however
long the answers take) over the read routes a point of sale and a dashboard use.

    .venv/bin/python benchmarks/bench_ops.py run --recorded runs/<suite>/busy_store --clients 50 --rps 200 --out runs/bench-ops
    .venv/bin/python benchmarks/bench_ops.py run --recorded runs/<suite>/busy_store --clients 0 --rps 0 --out runs/bench-ops-idle

Prints and writes ``<out>/bench_ops.json``: the API's answer times (p50 / p95 / p99 / max) and
errors, the requests a second reached, the stream's messages per client and their delay from the
runtime's publication to the client, messages a slow client lost; the runtime's lag behind the
store clock and its busy share (its health lines) and the receipts against the twin's truth and
the recording's own replay. The clients share the machine's two cores with the runtime (at
``nice -n 10``; in a store they are other machines).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TOKEN = "bench-ops-operator-token-0123456789"
os.environ["STORETWIN_TOKENS"] = f"bench:operator:{TOKEN}"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_live import Served, exact, receipts, truth  # noqa: E402

from harness.servers import free_port  # noqa: E402

ROUTES = ("/api/state", "/api/carts", "/api/tracks", "/api/receipts", "/api/health", "/api/review")


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q / 100 * len(xs)))], 4)


async def _load(url: str, clients: int, rps: float, seconds: float) -> dict:
    import httpx
    import websockets

    stop = time.time() + seconds
    ws_stats = [{"messages": 0, "delays": [], "closed": None} for _ in range(clients)]

    async def listen(i: int):
        st = ws_stats[i]
        try:
            async with websockets.connect(url.replace("http", "ws") + "/api/stream", max_size=None,
                                          additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                while time.time() < stop:
                    try:
                        m = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                    except asyncio.TimeoutError:
                        continue
                    st["messages"] += 1
                    if m.get("type") != "snapshot":
                        st["delays"].append(time.time() - m["wall"])
        except Exception as e:      # counted: a client that lost its stream
            st["closed"] = type(e).__name__

    lat: list[float] = []
    codes: dict[str, int] = {}

    async def request(c: httpx.AsyncClient, path: str):
        t = time.perf_counter()
        try:
            r = await c.get(path)
            key = str(r.status_code)
        except httpx.HTTPError as e:
            key = type(e).__name__
        lat.append(time.perf_counter() - t)
        codes[key] = codes.get(key, 0) + 1

    async def requests():
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, limits=limits,
                                     timeout=30) as c:
            tasks, k, t0 = [], 0, time.time()
            while rps > 0 and time.time() < stop:
                due = t0 + k / rps
                await asyncio.sleep(max(0.0, due - time.time()))
                tasks.append(asyncio.create_task(request(c, ROUTES[k % len(ROUTES)])))
                k += 1
            await asyncio.gather(*tasks)
            return k, time.time() - t0

    listeners = [asyncio.create_task(listen(i)) for i in range(clients)]
    sent, span = await requests() if rps > 0 else (0, seconds)
    if rps <= 0:
        await asyncio.sleep(max(0.0, stop - time.time()))
    await asyncio.gather(*listeners)
    delays = [d for s in ws_stats for d in s["delays"]]
    return {"requests": sent, "requests_per_s": round(sent / span, 1) if span else 0, "codes": codes,
            "answer_s": {"p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99), "max": pct(lat, 100)},
            "clients": clients, "messages_per_client": [s["messages"] for s in ws_stats],
            "stream_delay_s": {"p50": pct(delays, 50), "p95": pct(delays, 95), "p99": pct(delays, 99), "max": pct(delays, 100)},
            "clients_closed": [s["closed"] for s in ws_stats if s["closed"]]}


def cmd_load(a) -> dict:
    return asyncio.run(_load(a.url, a.clients, a.rps, a.seconds))


def cmd_run(a) -> dict:
    from harness.serve import recording_s

    run, out = Path(a.recorded), Path(a.out)
    dur = recording_s(run)
    port = free_port()
    s = Served(run, out, [], start_in_s=a.start_in_s, live_args=[f"api_port={port}", "health_s=2"])
    live = s.start_live()
    load = None
    if a.clients or a.rps:
        load = subprocess.Popen(["nice", "-n", "10", sys.executable, __file__, "load", f"--url=http://127.0.0.1:{port}",
                                 f"--clients={a.clients}", f"--rps={a.rps}", f"--seconds={a.start_in_s + dur}",
                                 f"--json={out / 'load.json'}"], stdout=open(out / "load.log", "w"), stderr=subprocess.STDOUT)
    s.finish()
    if load is not None:
        load.wait(timeout=120)
    health = [json.loads(x) for x in (out / "live" / "health.jsonl").read_text().splitlines()]
    playing = [h for h in health if h.get("lag_s") is not None]
    lags, busy = [h["lag_s"] for h in playing], [h["busy"] for h in playing]
    gt, rep, got = truth(run), receipts(run / "out" / "receipts.jsonl"), receipts(out / "live" / "receipts.jsonl")
    res = {"recording": str(run), "duration_s": round(dur, 1), "clients": a.clients, "rps": a.rps,
           "load": json.loads((out / "load.json").read_text()) if load is not None else None,
           "lag_s": {"p50": pct(lags, 50), "p95": pct(lags, 95), "max": pct(lags, 100)},
           "busy": {"p50": pct(busy, 50), "max": pct(busy, 100)},
           "update_delay_p95_s": [h["delay_p95_s"] for h in playing][-1:] or None,
           "visits": len(gt), "exact_live": exact(got, gt), "exact_replay": exact(rep, gt),
           "same_as_replay": sum(got.get(k) == v for k, v in rep.items()), "crashed": live.returncode != 0}
    ld = res["load"] or {}
    print(f"clients {a.clients} rps {a.rps}: answers p50/p95/p99 {ld.get('answer_s')} codes {ld.get('codes')} "
          f"reached {ld.get('requests_per_s')} req/s; stream delay {ld.get('stream_delay_s')}; "
          f"runtime lag {res['lag_s']} busy {res['busy']}; exact {res['exact_live']}/{res['visits']} "
          f"(replay {res['exact_replay']}), same as replay {res['same_as_replay']}", flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--recorded", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--clients", type=int, default=50)
    r.add_argument("--rps", type=float, default=200)
    r.add_argument("--start-in-s", type=float, default=15)
    ld = sub.add_parser("load")
    ld.add_argument("--url", required=True)
    ld.add_argument("--clients", type=int, default=50)
    ld.add_argument("--rps", type=float, default=200)
    ld.add_argument("--seconds", type=float, required=True)
    ld.add_argument("--json")
    a = ap.parse_args()
    res = cmd_run(a) if a.cmd == "run" else cmd_load(a)
    path = Path(a.json) if a.cmd == "load" and a.json else (Path(a.out) / "bench_ops.json" if a.cmd == "run" else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
