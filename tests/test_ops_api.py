"""The store's API on a real uvicorn server over loopback: tokens and roles on every route, the
review desk's actions (each in the event log, a changed receipt into the outbox as a new version),
the live stream, the tokens file's checks. The event log is what the runtime writes: a visit of
runtime records (cart updates, a flagged receipt) appended by the runtime's own EventLog."""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time

import httpx
import pytest
import websockets
from fastapi.routing import APIRoute
from starlette.routing import WebSocketRoute

from harness.paths import store_dir
from runtime.eventlog import EventLog
from runtime.messages import CartUpdate, Receipt, ReceiptLine, TrackState
from runtime.ops.api import OpsServer, create_app
from runtime.ops.auth import Throttle, Tokens
from runtime.ops.review import ReviewDesk
from runtime.ops.view import StoreView
from runtime.store import SpecError, load_store

STORE = load_store(store_dir() / "tiny_unit.yaml")
TOK = {"pos": "pos-token-0123456789", "operator": "operator-token-0123456789", "admin": "admin-token-0123456789"}
ENV = {"STORETWIN_TOKENS": ",".join(f"{r}-user:{r}:{t}" for r, t in TOK.items())}
# what each route needs: the test fails when a route is added without being listed here
NEEDS = {("GET", "/openapi.json"): "any", ("GET", "/"): "page", ("POST", "/login"): "login",
         ("GET", "/static/{name}"): "read", ("GET", "/api/whoami"): "any", ("GET", "/api/store"): "read",
         ("GET", "/api/state"): "read", ("GET", "/api/carts"): "read", ("GET", "/api/tracks"): "read",
         ("GET", "/api/health"): "read", ("GET", "/api/receipts"): "receipts",
         ("GET", "/api/receipts/{receipt_id}"): "receipts", ("GET", "/api/review"): "review",
         ("GET", "/api/review/{receipt_id}"): "review", ("POST", "/api/review/{receipt_id}/{action}"): "review",
         ("GET", "/api/outbox"): "admin", ("POST", "/api/admin/prune"): "admin", ("POST", "/api/admin/erase"): "admin",
         ("POST", "/api/admin/rollout"): "admin", ("GET", "/api/admin/rollout"): "admin",
         ("POST", "/api/admin/rollout/promote"): "admin", ("POST", "/api/admin/rollout/drop"): "admin", ("POST", "/api/replay/seek"): "read", ("WS", "/api/stream"): "read",
         ("GET", "/healthz"): "none"}
ALLOWED = {"read": {"operator", "admin"}, "review": {"operator", "admin"}, "admin": {"admin"},
           "receipts": {"pos", "operator", "admin"}, "any": {"pos", "operator", "admin"}}


def _visit(log: EventLog, account: str, t0: float, flagged: bool) -> None:
    log.append({"t": t0, "account_id": account, "gate_id": "gate_in", "kind": "enter"}, kind="enter")
    log.append(TrackState(t0 + 1, 7, account, 1.0, 1.0))
    log.append(CartUpdate(account, "cola_zero_330", 2, t0 + 5, t0 + 5.3, 0.0, 0.55,
                          {"cell": "c0", "delta_g": -700.0, "candidates": [{"bin": "A/0/0", "items": [["cola_zero_330", 2]],
                                                                           "residual_g": 3.0}],
                           "trace": [[t0 + 4, 1000.0], [t0 + 5, 300.0]], "near": []}, update_id="u1"))
    lines = (ReceiptLine("cola_zero_330", 2, 0.99),)
    log.append(Receipt(account, t0 + 9, lines, 1.98, flagged=flagged, reason="unsure pick of cola_zero_330" if flagged else ""))


@pytest.fixture()
def ops(tmp_path):
    log = EventLog(tmp_path)
    _visit(log, "tess", 0.0, flagged=True)
    _visit(log, "uma", 20.0, flagged=False)
    log.close()
    view = StoreView()
    desk = ReviewDesk(tmp_path / "events.sqlite", STORE)
    app = create_app(STORE, view, desk, Tokens.from_env(environ=ENV), throttle=Throttle(free_failures=1000))
    server = OpsServer(app, port=0).start()
    yield server, view, desk, app, tmp_path
    server.stop()
    desk.close()


def _routes(app) -> set[tuple[str, str]]:
    out = set()
    for r in app.routes:
        if isinstance(r, APIRoute):
            out |= {(m, r.path) for m in r.methods if m != "HEAD"}
        elif isinstance(r, WebSocketRoute):
            out.add(("WS", r.path))
    return out


def _call(c: httpx.Client, method: str, path: str, token: str | None) -> int:
    url = path.replace("{receipt_id}", "1").replace("{action}", "approve").replace("{name}", "app.js")
    h = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"why": "test", "t": 0.0, "days": 3650, "account_id": "nobody", "settings": {}} if method == "POST" else None
    return c.request(method, url, headers=h, json=body).status_code


def _ws(url: str, headers: dict) -> int | str:
    async def go():
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=5) as ws:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                return msg["type"]
        except websockets.ConnectionClosed as e:
            return e.rcvd.code if e.rcvd else -1
    return asyncio.run(go())


def test_every_route_but_liveness_wants_a_token_and_the_right_role(ops) -> None:
    server, _, _, app, _ = ops
    assert _routes(app) == set(NEEDS), "a route without a declared permission (add it to NEEDS)"
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for (method, path), need in sorted(NEEDS.items()):
            if method == "WS":
                ws_url = server.url.replace("http", "ws") + path
                assert _ws(ws_url, {}) == 4401
                assert _ws(ws_url, {"Authorization": "Bearer not-a-token-at-all"}) == 4401
                assert _ws(ws_url, {"Authorization": f"Bearer {TOK['pos']}"}) == 4403
                assert _ws(ws_url, {"Authorization": f"Bearer {TOK['operator']}"}) == "snapshot"
                continue
            if need == "none":
                assert _call(c, method, path, None) == 200
                continue
            if need == "login":     # the sign-in form takes the token in its body
                assert c.post(path, data={"token": "wrong-token-0123456789"}).status_code == 401
                ok = c.post(path, data={"token": TOK["operator"]}, follow_redirects=False)
                assert ok.status_code == 303 and "storetwin_token" in ok.headers["set-cookie"]
                continue
            assert _call(c, method, path, None) == 401, (method, path)
            assert _call(c, method, path, "wrong-token-0123456789") == 401, (method, path)
            if need == "page":
                assert _call(c, method, path, TOK["operator"]) == 200
                continue
            for role, token in TOK.items():
                code = _call(c, method, path, token)
                if role in ALLOWED[need]:
                    assert code in (200, 404), (method, path, role, code)   # 404: a replay route on the live store
                else:
                    assert code == 403, (method, path, role, code)


def test_a_cookie_from_the_sign_in_opens_the_page_and_the_api(ops) -> None:
    server = ops[0]
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/").status_code == 401 and "Sign in" in c.get("/").text
        c.post("/login", data={"token": TOK["operator"]})
        assert c.get("/").status_code == 200 and "/static/app.js" in c.get("/").text
        assert c.get("/static/app.js").status_code == 200
        assert c.get("/static/..%2Fapi.py").status_code == 404
        assert c.get("/api/whoami").json() == {"name": "operator-user", "role": "operator"}


def test_review_actions_are_logged_and_a_changed_receipt_goes_out_again_as_a_new_version(ops) -> None:
    server, _, _, _, folder = ops
    h = {"Authorization": f"Bearer {TOK['operator']}"}
    with httpx.Client(base_url=server.url, headers=h, timeout=10) as c:
        queue = c.get("/api/review").json()
        assert [r["account_id"] for r in queue] == ["tess"], "only the flagged receipt waits"
        rid = queue[0]["receipt_id"]
        ev = c.get(f"/api/review/{rid}").json()
        assert [u["sku"] for u in ev["updates"]] == ["cola_zero_330"]
        assert ev["updates"][0]["evidence"]["trace"] and ev["updates"][0]["evidence"]["candidates"]
        assert c.post(f"/api/review/{rid}/change", json={"why": " ", "sku": "cola_zero_330", "qty": 1}).status_code == 422
        assert c.post(f"/api/review/{rid}/change", json={"why": "x", "sku": "no_such_sku", "qty": 1}).status_code == 422
        assert c.post(f"/api/review/{rid}/shrug", json={"why": "x"}).status_code == 404
        assert c.post("/api/review/9999/approve", json={"why": "x"}).status_code == 404
        r = c.post(f"/api/review/{rid}/change", json={"why": "one can went back", "sku": "cola_zero_330", "qty": 1}).json()
        assert (r["version"], r["total"], r["status"]) == (2, 0.99, "reviewed")
        assert c.get("/api/review").json() == []
        r = c.post(f"/api/review/{rid}/refund", json={"why": "customer called"}).json()
        assert (r["version"], r["lines"], r["total"]) == (3, [], 0)
        r = c.post(f"/api/review/{rid}/approve", json={"why": "fine now"}).json()
        assert r["version"] == 3, "approving changes nothing"
        assert [x["action"] for x in r["reviews"]] == ["change", "refund", "approve"]
        assert {x["by"] for x in r["reviews"]} == {"operator-user"}
        assert [x["why"] for x in r["reviews"]] == ["one can went back", "customer called", "fine now"]
        out = c.get("/api/outbox", headers={"Authorization": f"Bearer {TOK['admin']}"}).json()
    keys = sorted(x["key"] for x in out["pending"])
    assert keys == sorted([f"receipt-{rid}-v1", f"receipt-{rid}-v2", f"receipt-{rid}-v3", keys[-1]]) and len(keys) == 4
    db = sqlite3.connect(folder / "events.sqlite")
    v2 = json.loads(db.execute("SELECT payload FROM outbox WHERE key = ?", (f"receipt-{rid}-v2",)).fetchone()[0])
    assert v2["lines"] == [{"sku": "cola_zero_330", "qty": 1, "unit_price": 0.99}] and v2["by"] == "operator-user"


def test_the_stream_sends_a_snapshot_then_each_update_as_it_is_published(ops) -> None:
    server, view, *_ = ops
    url = server.url.replace("http", "ws") + "/api/stream"

    async def go():
        async with websockets.connect(url, open_timeout=5) as ws:
            await ws.send(json.dumps({"token": TOK["operator"]}))     # a client that cannot set a header
            assert json.loads(await ws.recv())["type"] == "snapshot"
            sent = time.time()
            view.publish(CartUpdate("tess", "cola_zero_330", 1, 3.0, 3.2, sent, 0.9))
            view.publish(TrackState(3.3, 7, "tess", 1.0, 2.0, hands=((1.2, 2.1, 1.0),)))
            msg = json.loads(await asyncio.wait_for(ws.recv(), 2.0))
            return msg, time.time() - sent
    msg, delay_s = asyncio.run(go())
    assert msg["type"] == "batch" and [e["type"] for e in msg["events"]] == ["cart_update", "track"], msg
    assert msg["events"][0]["data"]["cart"] == {"cola_zero_330": 1} and msg["events"][1]["data"]["hands"] == [[1.2, 2.1, 1.0]]
    assert delay_s < 1.0
    end = time.time() + 3
    while view.clients and time.time() < end:
        time.sleep(0.05)
    assert view.clients == 0, "the client went away: unsubscribed"


def test_openapi_schema_is_published_behind_a_token(ops) -> None:
    server = ops[0]
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/openapi.json").status_code == 401
        paths = c.get("/openapi.json", headers={"Authorization": f"Bearer {TOK['pos']}"}).json()["paths"]
    assert {"/api/receipts", "/api/review/{receipt_id}/{action}", "/api/state", "/healthz"} <= set(paths)


def test_repeated_wrong_tokens_are_slowed_down() -> None:
    now = [0.0]
    th = Throttle(free_failures=3, window_s=60, first_delay_s=0.25, max_delay_s=2.0, clock=lambda: now[0])
    delays = [th.failed("10.0.0.9") for _ in range(7)]
    assert delays == [0, 0, 0, 0.25, 0.5, 1.0, 2.0]
    assert th.failed("10.0.0.8") == 0, "per client"
    now[0] = 61.0
    assert th.failed("10.0.0.9") == 0, "failures older than the window are forgotten"


def test_a_slowed_client_waits_on_the_real_server(tmp_path) -> None:
    EventLog(tmp_path).close()
    desk = ReviewDesk(tmp_path / "events.sqlite", STORE)
    app = create_app(STORE, StoreView(), desk, Tokens.from_env(environ=ENV),
                     throttle=Throttle(free_failures=2, first_delay_s=0.3))
    server = OpsServer(app, port=0).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for _ in range(2):
                assert c.get("/api/carts", headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 401
            t = time.perf_counter()
            assert c.get("/api/carts", headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 401
            assert time.perf_counter() - t >= 0.3
            assert c.get("/api/carts", headers={"Authorization": f"Bearer {TOK['operator']}"}).status_code == 200
    finally:
        server.stop()
        desk.close()


def test_tokens_file_is_checked(tmp_path, monkeypatch) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text("tokens:\n  - {name: till, role: pos, token_env: TILL_TOKEN}\n"
                 "  - {name: ana, role: operator, sha256: " + "a" * 64 + "}\n")
    monkeypatch.setenv("TILL_TOKEN", "till-token-0123456789")
    t = Tokens.from_file(f)
    assert t.check("till-token-0123456789").role == "pos" and t.check("till-token-012345678") is None
    f.write_text("tokens:\n  - {name: ops, role: admin, token: admin-token-0123456789}\n")
    os.chmod(f, 0o644)
    with pytest.raises(SpecError, match="chmod 600"):
        Tokens.from_file(f)
    os.chmod(f, 0o600)
    assert Tokens.from_file(f).check("admin-token-0123456789").role == "admin"
    f.write_text("tokens:\n  - {name: x, role: boss, token: admin-token-0123456789}\n")
    with pytest.raises(SpecError, match=r"tokens\[0\]"):
        Tokens.from_file(f)
    f.write_text("tokens:\n  - {name: x, role: pos, token: short}\n")
    with pytest.raises(SpecError, match="at least 16"):
        Tokens.from_file(f)
    with pytest.raises(ValueError, match="name:role:token"):
        Tokens.from_env(environ={"STORETWIN_TOKENS": "just-a-token"})
    with pytest.raises(ValueError, match="no API tokens"):
        Tokens.from_env(environ={})
