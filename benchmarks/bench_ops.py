"""The store's API under load beside a live store: a live replay (`storetwin live replay=<run>`: the
recording in place of the devices, on the wall clock; ``--source replay``, the default) or the twin
served as a store (`storetwin serve` plays it over RTSP + MQTT into `storetwin live … devices=`;
``--source served``, its servers on the same cores), with ``api_port=``, while one process keeps
``--clients`` WebSocket clients on the live stream and wrk (Debian's HTTP load generator, in C) sends
about ``--rps`` API requests a second over the read routes a point of sale and a dashboard use
(``--rps`` × 0.13 connections, each pausing 0.1 s after every answer).

    .venv/bin/python benchmarks/bench_ops.py run --recorded runs/<suite>/busy_store --clients 50 --rps 200 --out runs/bench-ops
    .venv/bin/python benchmarks/bench_ops.py run --recorded runs/<suite>/busy_store --clients 0 --rps 0 --out runs/bench-ops-idle
    .venv/bin/python benchmarks/bench_ops.py run ... --api-process false      (the API in a thread of the runtime's process)
    .venv/bin/python benchmarks/bench_ops.py run ... --live runtime.perception_hz=2.5   (settings for storetwin live)

Prints and writes ``<out>/bench_ops.json``: the API's answer times (p50 / p95 / p99 / max) and
errors, the requests a second reached, the stream's messages per client and their delay from the
runtime's publication to the client, messages a slow client lost; the runtime's lag behind the
store clock and its busy share (its health lines) and the receipts against the twin's truth and
the recording's own replay. The clients and wrk share the machine's two cores with the runtime (at
``nice -n 10``; in a store they are other machines); the load starts once the API answers (a live
replay: once the replay plays).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TOKEN = "bench-ops-operator-token-0123456789"
os.environ["STORETWIN_TOKENS"] = f"bench:operator:{TOKEN}"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_live import CLI, ENV, Served, exact, receipts, truth  # noqa: E402

import httpx  # noqa: E402

from harness.servers import free_port  # noqa: E402

ROUTES = ("/api/state", "/api/carts", "/api/tracks", "/api/receipts", "/api/health", "/api/review")


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q / 100 * len(xs)))], 4)


async def _listen(url: str, clients: int, seconds: float) -> dict:
    import websockets

    stop = time.time() + seconds
    stats = [{"messages": 0, "events": 0, "delays": [], "closed": None, "connects": 0} for _ in range(clients)]

    async def listen(st: dict):
        while time.time() < stop:
            try:
                async with websockets.connect(url.replace("http", "ws") + "/api/stream", max_size=None,
                                              additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                    st["connects"] += 1
                    while time.time() < stop:
                        try:
                            m = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                        except asyncio.TimeoutError:
                            continue
                        st["messages"] += 1
                        now = time.time()
                        for e in m.get("events", []):
                            st["events"] += 1
                            st["delays"].append(now - e["wall"])
            except Exception as e:      # counted; the client connects again
                st["closed"] = type(e).__name__
                await asyncio.sleep(0.5)

    await asyncio.gather(*(listen(st) for st in stats))
    delays = [d for st in stats for d in st["delays"]]
    return {"clients": clients, "connects": sum(st["connects"] for st in stats),
            "messages_per_client": [st["messages"] for st in stats], "events_per_client": [st["events"] for st in stats],
            "stream_delay_s": {"p50": pct(delays, 50), "p95": pct(delays, 95), "p99": pct(delays, 99), "max": pct(delays, 100)},
            "clients_lost_stream": [st["closed"] for st in stats if st["closed"]]}


WRK_LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], {["Authorization"] = "Bearer %s"})
end
delay = function() return %d end
"""


def wrk(url: str, rps: float, seconds: float, out: Path, pause_s: float = 0.1, answer_s: float = 0.03) -> dict:
    """About ``rps`` requests a second from rps × (pause_s + answer_s) connections, each pausing
    ``pause_s`` after every answer (wrk is closed-loop: answers slower than ``answer_s`` lower the rate
    reached, which is reported)."""
    connections = max(1, round(rps * (pause_s + answer_s)))
    script = out / "load.lua"
    script.write_text(WRK_LUA % (", ".join(f'"{p}"' for p in ROUTES), TOKEN, int(1000 * pause_s)))
    res = subprocess.run(["nice", "-n", "10", "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
                          "--timeout", "10s", "-s", str(script), url], capture_output=True, text=True)
    text = res.stdout
    (out / "wrk.txt").write_text(text + res.stderr)

    def seconds_of(v: str) -> float:
        for unit, k in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
            if v.endswith(unit):
                return round(float(v[: -len(unit)]) * k, 5)
        return float(v)
    dist = {m.group(1): seconds_of(m.group(2)) for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)$", text, re.M)}
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {"connections": connections, "requests": int(total.group(1)) if total else None,
            "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)) if "Requests/sec" in text else None,
            "answer_s": {"p50": dist.get("50"), "p90": dist.get("90"), "p99": dist.get("99"),
                         "max": seconds_of(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text).group(1)) if "Latency" in text else None},
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else None}


def cmd_load(a) -> dict:
    return asyncio.run(_listen(a.url, a.clients, a.seconds))


def cmd_run(a) -> dict:
    from harness.serve import recording_s

    run, out = Path(a.recorded), Path(a.out)
    dur = recording_s(run)
    port = free_port()
    out.mkdir(parents=True, exist_ok=True)
    live_args = [f"api_port={port}", "health_s=2", f"api_process={a.api_process}", *a.live]
    url = f"http://127.0.0.1:{port}"
    if a.source == "served":
        s = Served(run, out, [], start_in_s=a.start_in_s, live_args=live_args)
        started = time.time()     # serve has encoded its cameras; the play starts start_in_s from now
        live = s.start_live()
    else:                         # a live replay: the recording in place of the devices, no servers
        s = None
        live = subprocess.Popen([*CLI, "live", f"replay={run}", f"out={out / 'live'}", *live_args], env=ENV,
                                stdout=open(out / "live-0.log", "w"), stderr=subprocess.STDOUT)
    for _ in range(1200):     # the live store loads its models, then answers
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    if s is None:             # the replay starts a second after the models are warm: its first health line
        while live.poll() is None:
            try:
                h = httpx.get(url + "/api/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()
                if h.get("lag_s") is not None:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        started, a.start_in_s = time.time(), 0.0
    # the load ends 3 s before the play (after it the store stops and every request would fail)
    left = max(10.0, a.start_in_s + dur - (time.time() - started) - 3.0)
    listen = load = None
    if a.clients:
        listen = subprocess.Popen(["nice", "-n", "10", sys.executable, __file__, "load", f"--url={url}",
                                   f"--clients={a.clients}", f"--seconds={left}", f"--json={out / 'stream.json'}"],
                                  stdout=open(out / "load.log", "w"), stderr=subprocess.STDOUT)
    if a.rps:
        import threading

        box: dict = {}
        load = threading.Thread(target=lambda: box.update(wrk(url, a.rps, left, out)))
        load.start()
    if s is not None:
        s.finish()
    else:
        live.wait(timeout=dur + 600)
    if listen is not None:
        listen.wait(timeout=120)
    if load is not None:
        load.join(timeout=120)
    health = [json.loads(x) for x in (out / "live" / "health.jsonl").read_text().splitlines()]
    playing = [h for h in health if h.get("lag_s") is not None]
    lags, busy = [h["lag_s"] for h in playing], [h["busy"] for h in playing]
    gt, rep, got = truth(run), receipts(run / "out" / "receipts.jsonl"), receipts(out / "live" / "receipts.jsonl")
    res = {"recording": str(run), "source": a.source, "api_process": a.api_process, "duration_s": round(dur, 1),
           "clients": a.clients, "rps": a.rps, "live": a.live,
           "http": box if a.rps else None,
           "stream": json.loads((out / "stream.json").read_text()) if a.clients else None,
           "lag_s": {"p50": pct(lags, 50), "p95": pct(lags, 95), "max": pct(lags, 100)},
           "busy": {"p50": pct(busy, 50), "max": pct(busy, 100)},
           "update_delay_p95_s": [h["delay_p95_s"] for h in playing][-1:] or None,
           "visits": len(gt), "exact_live": exact(got, gt), "exact_replay": exact(rep, gt),
           "same_as_replay": sum(got.get(k) == v for k, v in rep.items()), "crashed": live.returncode != 0}
    ld, st = res["http"] or {}, res["stream"] or {}
    print(f"clients {a.clients} rps {a.rps}: answers {ld.get('answer_s')} non-2xx {ld.get('non_2xx')} errors "
          f"{ld.get('socket_errors')} reached {ld.get('requests_per_s')} req/s; stream delay {st.get('stream_delay_s')} "
          f"events/client {sorted(st.get('events_per_client', [0]))[len(st.get('events_per_client', [0])) // 2]}; "
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
    r.add_argument("--source", choices=("replay", "served"), default="replay",
                   help="replay: storetwin live replay= (the recording in place of the devices, on the wall clock); "
                        "served: storetwin serve's RTSP cameras and MQTT cells (their servers on these cores too)")
    r.add_argument("--api-process", choices=("true", "false"), default="true",
                   help="the API in a process of its own (the default) or in a thread of the runtime's")
    r.add_argument("--live", nargs="*", default=[], help="more settings for storetwin live, e.g. runtime.perception_hz=2.5")
    ld = sub.add_parser("load")
    ld.add_argument("--url", required=True)
    ld.add_argument("--clients", type=int, default=50)
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
