"""The store's HTTP API and dashboard (FastAPI, served by uvicorn beside ``storetwin live`` or a
replay).

Routes (every one but ``/healthz`` needs a token: ``Authorization: Bearer <token>``, or the cookie
the dashboard's sign-in sets; a wrong or missing one gets 401, a role without the permission 403):

* ``GET /api/store`` the floor plan; ``GET /api/state`` tracks, open carts, health and the latency
  histogram at once; ``GET /api/carts``, ``/api/tracks``, ``/api/health``;
* ``GET /api/receipts[?since_id=]``, ``GET /api/receipts/{id}`` (role ``pos`` too);
* ``GET /api/review`` the queue, ``GET /api/review/{id}`` a receipt's evidence,
  ``POST /api/review/{id}/{approve|change|refund}`` with ``{"why", "sku", "qty"}``;
* ``GET /api/outbox`` what the point-of-sale system has and has not been sent (admin);
* ``WS /api/stream`` a snapshot, then every track state, cart update, receipt, review and health
  line as it is published (JSON ``{"type", "data", "wall", "t"}``);
* ``POST /api/replay/seek`` ``{"t"}`` (a replay only); ``GET /openapi.json`` the schema; ``GET /``
  the dashboard (its assets from the package, no CDN).
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from importlib import resources
from typing import Callable

from fastapi import Depends, FastAPI, Form, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from runtime.eventlog import connect
from runtime.ops.auth import Principal, Throttle, Tokens
from runtime.ops.review import ReviewDesk, ReviewError
from runtime.ops.view import StoreView
from runtime.store import StoreSpec

COOKIE = "storetwin_token"
STATIC = resources.files("runtime.ops") / "static"
LOGIN_HTML = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>storetwin: sign in</title>
<style>body{font-family:system-ui,sans-serif;background:#111820;color:#dde;display:grid;place-items:center;height:100vh}
form{background:#1b2530;padding:2em;border-radius:8px}input{display:block;margin:.6em 0;padding:.5em;width:22em}</style></head>
<body><form method="post" action="/login"><h2>storetwin: {store}</h2><label>API token
<input id="token" name="token" type="password" autocomplete="current-password" autofocus></label>
<button id="signin" type="submit">Sign in</button><p>{note}</p></form></body></html>"""


class _Cache:
    """Answers kept for ``ttl_s`` (the store's state moves at 10 states a second: a point of sale and
    fifty dashboards asking hundreds of times a second get the same bytes, made once), dropped at
    once when a review or a privacy job changes what they show."""

    def __init__(self, ttl_s: float = 0.1):
        import time

        self.ttl_s, self._now, self._data, self._lock = ttl_s, time.monotonic, {}, threading.Lock()
        self._generation = 0

    def json(self, key, make: Callable) -> Response:
        now = self._now()
        with self._lock:
            hit, gen = self._data.get(key), self._generation
        if hit is None or now - hit[0] >= self.ttl_s:
            hit = (now, json.dumps(make(), default=str).encode())
            with self._lock:
                if self._generation == gen:     # made before a change that cleared the cache: not kept
                    self._data[key] = hit
        return Response(content=hit[1], media_type="application/json")

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._generation += 1


class Action(BaseModel):
    why: str = Field(min_length=1, description="why: written to the event log with the action")
    sku: str | None = None
    qty: int | None = Field(default=None, ge=0)


class Seek(BaseModel):
    t: float = Field(ge=0)


class Prune(BaseModel):
    days: float = Field(gt=0, description="drop track states, notes and evidence older than this")
    receipts_days: float | None = Field(default=None, gt=0, description="receipts too, older than this (none: kept)")


class Rollout(BaseModel):
    settings: dict = Field(description='the candidate: runtime settings over the live ones, e.g. {"pose_model": "models/new.onnx"}')
    min_receipts: int = Field(default=5, ge=1, description="visits compared before it may be promoted")
    max_lost: int = Field(default=0, ge=0, description="receipts it may lose (differ on) and still be promoted")
    auto: bool = Field(default=True, description="promote or drop as soon as the comparison decides")


class Promote(BaseModel):
    force: bool = False


class Erase(BaseModel):
    account_id: str = Field(min_length=1)
    why: str = Field(min_length=1)


def direct_jobs(desk: ReviewDesk, lock: threading.Lock) -> Callable:
    """Privacy jobs on the desk's own connection (a replay, or a stopped store: no runtime writes)."""
    from runtime.ops import privacy

    def run(name: str, **kw) -> dict:
        with lock:
            return getattr(privacy, name)(desk.db, now_wall=desk.clock.wall_s(), **kw)
    return run


def create_app(store: StoreSpec, view: StoreView, desk: ReviewDesk, tokens: Tokens, replay=None,
               throttle: Throttle | None = None, jobs: Callable | None = None, rollout=None) -> FastAPI:
    """``replay``: a :class:`runtime.ops.replay.LogReplay` when the API serves a recorded run;
    ``jobs(name, **kw)``: runs a privacy job (:mod:`runtime.ops.privacy`) where the event log's writer
    is (a live store's runtime thread); by default on the desk's connection. ``rollout``: the live store
    (:class:`runtime.live.LiveStore`: start_rollout, rollout_status, promote, drop), none in a replay."""
    throttle = throttle or Throttle()
    app = FastAPI(title=f"storetwin: {store.name}", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()     # the desk's connection is shared by the server's worker threads
    jobs = jobs or direct_jobs(desk, lock)

    def token_of(headers, cookies) -> str | None:
        h = headers.get("authorization", "")
        if h.lower().startswith("bearer "):
            return h[7:].strip()
        return cookies.get(COOKIE)

    async def who(request: Request) -> Principal:
        p = tokens.check(token_of(request.headers, request.cookies))
        client = request.client.host if request.client else "?"
        if p is None:
            delay = throttle.failed(client)
            if delay:
                await asyncio.sleep(delay)
            raise HTTPException(401, "a valid API token is required", headers={"WWW-Authenticate": "Bearer"})
        throttle.succeeded(client)
        return p

    def need(permission: str) -> Callable:
        async def check(p: Principal = Depends(who)) -> Principal:
            if not p.may(permission):
                raise HTTPException(403, f"role {p.role} may not do this (needs {permission})")
            return p
        return check

    def desk_call(fn, *a, **kw):
        with lock:
            try:
                return fn(*a, **kw)
            except ReviewError as e:
                raise HTTPException(e.status, str(e)) from None

    until = (lambda: replay.t) if replay is not None else (lambda: None)
    cache = _Cache(0.1)

    @app.get("/healthz", tags=["liveness"])
    def healthz() -> dict:
        """Liveness: the server answers. No token."""
        return {"ok": True}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: Principal = Depends(who)) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/", include_in_schema=False)
    def dashboard(request: Request):
        if tokens.check(token_of(request.headers, request.cookies)) is None:
            return HTMLResponse(LOGIN_HTML.replace("{store}", store.name).replace("{note}", ""), status_code=401)
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, token: str = Form("")):
        p = tokens.check(token)
        client = request.client.host if request.client else "?"
        if p is None:
            delay = throttle.failed(client)
            if delay:
                await asyncio.sleep(delay)
            return HTMLResponse(LOGIN_HTML.replace("{store}", store.name).replace("{note}", "That token is not known."),
                                status_code=401)
        throttle.succeeded(client)
        r = RedirectResponse("/", status_code=303)
        r.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return r

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str, _: Principal = Depends(need("read"))):
        f = STATIC / name
        if "/" in name or name.startswith(".") or not f.is_file():
            raise HTTPException(404, f"no asset {name}")
        kind = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}.get(name.rsplit(".", 1)[-1], "text/plain")
        return FileResponse(str(f), media_type=kind)

    @app.get("/api/whoami", tags=["auth"])
    def whoami(p: Principal = Depends(who)) -> dict:
        return {"name": p.name, "role": p.role}

    @app.get("/api/store", tags=["store"])
    def store_plan(_: Principal = Depends(need("read"))) -> dict:
        """The floor plan: floor, shelf units (footprints), gates, cameras, the catalog."""
        return plan(store, replay)

    @app.get("/api/state", tags=["store"], response_class=JSONResponse)
    def state(_: Principal = Depends(need("read"))):
        """Tracks, open carts, health, the latency histogram and the queue's length at once."""
        return cache.json("state", lambda: {**view.snapshot(), "queue": len(desk_call(desk.queue, until_t=until()))})

    @app.get("/api/carts", tags=["store"], response_class=JSONResponse)
    def carts(_: Principal = Depends(need("read"))):
        return cache.json("carts", lambda: view.snapshot()["carts"])

    @app.get("/api/tracks", tags=["store"], response_class=JSONResponse)
    def tracks(_: Principal = Depends(need("read"))):
        return cache.json("tracks", lambda: view.snapshot()["tracks"])

    @app.get("/api/health", tags=["store"], response_class=JSONResponse)
    def health(_: Principal = Depends(need("read"))):
        def make():
            s = view.snapshot()
            return {**s["health"], "latency": s["latency"], "stream_clients": view.clients, "published": dict(view.by_type),
                    "api_pid": os.getpid()}
        return cache.json("health", make)

    @app.get("/api/receipts", tags=["receipts"], response_class=JSONResponse)
    def receipts(since_id: int = 0, _: Principal = Depends(need("receipts"))):
        return cache.json(("receipts", since_id), lambda: desk_call(desk.receipts, since_id=since_id, until_t=until()))

    @app.get("/api/receipts/{receipt_id}", tags=["receipts"])
    def receipt(receipt_id: int, _: Principal = Depends(need("receipts"))) -> dict:
        return desk_call(desk.receipt, receipt_id)

    @app.get("/api/review", tags=["review"], response_class=JSONResponse)
    def queue(_: Principal = Depends(need("review"))):
        return cache.json("review", lambda: desk_call(desk.queue, until_t=until()))

    @app.get("/api/review/{receipt_id}", tags=["review"])
    def evidence(receipt_id: int, _: Principal = Depends(need("review"))) -> dict:
        return desk_call(desk.evidence, receipt_id)

    @app.post("/api/review/{receipt_id}/{action}", tags=["review"])
    def act(receipt_id: int, action: str, body: Action, p: Principal = Depends(need("review"))) -> dict:
        r = desk_call(desk.act, receipt_id, action, by=p.name, why=body.why, sku=body.sku, qty=body.qty)
        cache.clear()
        view.publish({"type": "review", "data": {"receipt_id": receipt_id, "action": action, "by": p.name,
                                                 "receipt": {k: v for k, v in r.items() if k not in ("versions", "reviews")}}})
        return r

    @app.get("/api/outbox", tags=["receipts"])
    def outbox(_: Principal = Depends(need("admin"))) -> dict:
        with lock:
            rows = desk.db.execute("SELECT key, kind, attempts, created_wall, next_wall, delivered_wall, last_error "
                                   "FROM outbox ORDER BY seq").fetchall()
        cols = ("key", "kind", "attempts", "created_wall", "next_wall", "delivered_wall", "last_error")
        items = [dict(zip(cols, r)) for r in rows]
        return {"pending": [i for i in items if i["delivered_wall"] is None],
                "delivered": [i for i in items if i["delivered_wall"] is not None]}

    @app.post("/api/admin/prune", tags=["privacy"])
    def prune(body: Prune, p: Principal = Depends(need("admin"))) -> dict:
        """Apply the retention now (what goes: runtime.ops.privacy)."""
        from runtime.ops.privacy import PrivacyError

        try:
            return {"removed": jobs("prune", days=body.days, receipts_days=body.receipts_days), "by": p.name}
        except PrivacyError as e:
            raise HTTPException(422, str(e)) from None
        finally:
            cache.clear()

    @app.post("/api/admin/erase", tags=["privacy"])
    def erase(body: Erase, p: Principal = Depends(need("admin"))) -> dict:
        """Erase one account's data (refused while the shopper is in the store)."""
        from runtime.ops.privacy import PrivacyError

        try:
            return {"removed": jobs("erase", account=body.account_id, by=p.name, why=body.why), "by": p.name}
        except PrivacyError as e:
            raise HTTPException(422, str(e)) from None
        finally:
            cache.clear()

    def live_only():
        if rollout is None:
            raise HTTPException(404, "not a live store: a rollout needs a running runtime")
        return rollout

    def rolled(fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except ValueError as e:
            raise HTTPException(409, str(e).splitlines()[0]) from None

    @app.post("/api/admin/rollout", tags=["rollout"])
    def rollout_start(body: Rollout, _: Principal = Depends(need("admin"))) -> dict:
        """A candidate model or settings in shadow on the live messages, compared receipt by receipt."""
        return rolled(live_only().start_rollout, body.settings, body.min_receipts, body.max_lost, body.auto)

    @app.get("/api/admin/rollout", tags=["rollout"])
    def rollout_status(_: Principal = Depends(need("admin"))) -> dict:
        return rolled(live_only().rollout_status)

    @app.post("/api/admin/rollout/promote", tags=["rollout"])
    def rollout_promote(body: Promote, _: Principal = Depends(need("admin"))) -> dict:
        return rolled(live_only().promote, body.force)

    @app.post("/api/admin/rollout/drop", tags=["rollout"])
    def rollout_drop(_: Principal = Depends(need("admin"))) -> dict:
        return rolled(live_only().drop)

    @app.post("/api/replay/seek", tags=["replay"])
    def seek(body: Seek, _: Principal = Depends(need("read"))) -> dict:
        if replay is None:
            raise HTTPException(404, "not a replay: the live store cannot be moved in time")
        replay.seek(body.t)
        cache.clear()
        return {"t": replay.t, "duration_s": replay.duration_s}

    @app.websocket("/api/stream")
    async def stream(ws: WebSocket):
        await ws.accept()
        given = token_of(ws.headers, ws.cookies)
        p = tokens.check(given)
        if given is None:     # no header or cookie (a client that cannot set them): the first message
            try:
                first = json.loads(await asyncio.wait_for(ws.receive_text(), 2.0))
                p = tokens.check(str(first.get("token", "")))
            except (asyncio.TimeoutError, ValueError, AttributeError, WebSocketDisconnect):
                p = None
        if p is None or not p.may("read"):
            await ws.close(code=4401 if p is None else 4403)
            return
        sub = view.subscribe(asyncio.get_running_loop())

        async def pump():
            await ws.send_text(json.dumps({"type": "snapshot", "data": view.snapshot(), "wall": view.clock.wall_s()},
                                          default=str))
            while True:
                await ws.send_text(await sub.queue.get())

        async def listen():     # a client that goes away is noticed at once, not at the next message
            while True:
                await ws.receive_text()

        tasks = [asyncio.create_task(pump()), asyncio.create_task(listen())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            view.unsubscribe(sub)

    return app


def plan(store: StoreSpec, replay=None) -> dict:
    import numpy as np

    units = []
    for u in store.units:
        yaw = np.radians(u.yaw_deg)
        w, d = u.size_m[0], u.size_m[1]
        local = np.array([[-w / 2, -d / 2], [w / 2, -d / 2], [w / 2, d / 2], [-w / 2, d / 2]])
        rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        corners = local @ rot.T + np.asarray(u.position_m)
        units.append({"id": u.id, "corners": np.round(corners, 3).tolist()})
    return {"name": store.name, "currency": store.currency,
            "floor": {"width_m": store.floor.width_m, "depth_m": store.floor.depth_m}, "units": units,
            "gates": [{"id": g.id, "kind": g.kind, "a": list(g.a_m), "b": list(g.b_m)} for g in store.gates],
            "cameras": [{"id": c.id, "x": c.position_m[0], "y": c.position_m[1]} for c in store.cameras],
            "catalog": {p.sku: {"name": p.name, "price": p.price} for p in store.catalog},
            "replay": None if replay is None else {"duration_s": replay.duration_s}}


class OpsServer:
    """uvicorn in a thread of its own, on a socket bound before it starts (``port=0``: any free one)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8080):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_ping_interval=20, lifespan="off"))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                        name="ops-api")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> "OpsServer":
        import time

        self._thread.start()
        end = time.monotonic() + timeout_s
        while not self.server.started:
            if time.monotonic() > end or not self._thread.is_alive():
                raise RuntimeError(f"the API server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=5.0)
        self.sock.close()


def open_ops(store: StoreSpec, log_dir, tokens: Tokens, view: StoreView | None = None, replay=None, host="127.0.0.1",
             port: int = 8080, clock=None, jobs: Callable | None = None, rollout=None,
             log=None) -> tuple[OpsServer, StoreView, ReviewDesk]:
    """The API over the event log in ``log_dir`` (created if new), or at ``log`` (a SQLite file or a
    PostgreSQL URL), started."""
    from pathlib import Path

    from runtime.clock import SYSTEM_CLOCK

    clock = clock or SYSTEM_CLOCK
    db = log or Path(log_dir) / "events.sqlite"
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    connect(db, store.name).close()
    view = view or StoreView(clock=clock)
    desk = ReviewDesk(db, store, clock=clock)
    server = OpsServer(create_app(store, view, desk, tokens, replay=replay, jobs=jobs, rollout=rollout), host, port).start()
    return server, view, desk


