"""The event log and the outbox on a real PostgreSQL server (Debian's, started here on loopback):
two stores' runtimes report to one server (a schema each), a restarted runtime resumes from it, the
API reads it and writes its reviews there, the outbox delivers from it, and an erasure works there
as on SQLite. Weight-only runs of the recorded tiny_put_backs keep it quick."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from harness.paths import store_dir
from harness.servers import free_port
from runtime.config import RuntimeConfig
from runtime.logdb import LogDB
from runtime.ops import privacy
from runtime.ops.api import open_ops
from runtime.ops.auth import Tokens
from runtime.ops.outbox import Deliverer, WebhookConfig
from runtime.pipeline import Runtime
from runtime.sources import ReplaySource
from runtime.store import load_store

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
pytestmark = pytest.mark.skipif(not BIN, reason="Debian's postgresql (make installs it)")
STORE = load_store(store_dir() / "tiny_unit.yaml")
OTHER = STORE.model_copy(update={"name": "tiny_unit_two"})
TOKEN = "operator-token-for-postgres"


@pytest.fixture(scope="module")
def pg_url():
    """A PostgreSQL server of its own, on a free loopback port, trust auth for the storetwin user."""
    root = Path(tempfile.mkdtemp(prefix="storetwin-pg-"))
    data, port = root / "data", free_port()
    as_pg: list[str] = []
    if os.geteuid() == 0:      # initdb refuses root: the server runs as the postgres user
        shutil.chown(root, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    bin_ = BIN[-1]
    subprocess.run([*as_pg, f"{bin_}/initdb", "-D", str(data), "-U", "storetwin", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, f"{bin_}/pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://storetwin@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, f"{bin_}/pg_ctl", "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _weights_and_gates(run: Path) -> list:
    return list(ReplaySource(run, cameras=()))


def _receipts(db: LogDB) -> list[tuple]:
    rows = db.execute("SELECT payload FROM events WHERE kind = 'receipt' ORDER BY seq").fetchall()
    return sorted((d["account_id"], tuple(sorted((ln["sku"], ln["qty"]) for ln in d["lines"])))
                  for d in (json.loads(p) for (p,) in rows))


def test_two_stores_report_to_one_server_and_a_restart_resumes_from_it(put_backs, pg_url, tmp_path) -> None:
    msgs = _weights_and_gates(put_backs)
    cfg = RuntimeConfig(sensing="weight_only")
    Runtime(STORE, cfg, tmp_path / "sqlite").run(msgs)
    reference = _receipts(LogDB(tmp_path / "sqlite" / "events.sqlite"))
    assert {a for a, _ in reference} == {"uma", "vic"}
    Runtime(STORE, cfg, tmp_path / "a", log_url=pg_url).run(msgs)
    # the other store stops half way (uma has left, vic is in the store) and is started again
    half = next(i for i, m in enumerate(msgs) if getattr(m, "account_id", "") == "vic" and m.kind == "enter") + 1
    rt = Runtime(OTHER, cfg, tmp_path / "b", log_url=pg_url)
    for m in msgs[:half]:
        rt.process(m)
    rt.close()
    rt = Runtime(OTHER, cfg, tmp_path / "b", log_url=pg_url, restore=True)
    rt.run(msgs[half:])
    one, two = LogDB(pg_url, STORE.name), LogDB(pg_url, OTHER.name)
    assert (one.schema, two.schema) == ("store_tiny_unit", "store_tiny_unit_two")
    assert _receipts(one) == reference and _receipts(two) == reference, "each store's own schema, the same receipts"
    got = [json.loads(x) for x in (tmp_path / "a" / "receipts.jsonl").read_text().splitlines()]
    assert len(got) == 2, "the JSONL copies stay beside the runtime"
    assert two.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 2, "one delivery per receipt"


class _Till(BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self):
        self.got.append((self.headers["Idempotency-Key"], json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_the_api_reads_reviews_and_delivers_from_postgres(put_backs, pg_url, tmp_path) -> None:
    store = STORE.model_copy(update={"name": "tiny_unit_api"})
    Runtime(store, RuntimeConfig(sensing="weight_only", review_below=1.01), tmp_path, log_url=pg_url).run(
        _weights_and_gates(put_backs))
    server, _, desk = open_ops(store, tmp_path, Tokens.from_env(environ={"STORETWIN_TOKENS": f"ana:operator:{TOKEN}"}),
                               port=0, log=pg_url)
    till = ThreadingHTTPServer(("127.0.0.1", 0), _Till)
    _Till.got = []
    threading.Thread(target=till.serve_forever, daemon=True).start()
    try:
        h = {"Authorization": f"Bearer {TOKEN}"}
        queue = httpx.get(f"{server.url}/api/review", headers=h).json()
        assert {r["account_id"] for r in queue} == {"uma", "vic"}, "flagged (review_below above 1)"
        rid = next(r["receipt_id"] for r in queue if r["account_id"] == "vic")
        r = httpx.post(f"{server.url}/api/review/{rid}/refund", headers=h, json={"why": "returned at the door"}).json()
        assert (r["version"], r["total"], r["status"]) == (2, 0, "reviewed")
        d = Deliverer(pg_url, WebhookConfig(f"http://127.0.0.1:{till.server_port}/r", b"secret"), store=store.name)
        assert d.deliver_due() == 3 and d.deliver_due() == 0
        d.stop()
        assert sorted(k for k, _ in _Till.got) == sorted([f"receipt-{r['receipt_id']}-v1" for r in queue]
                                                         + [f"receipt-{rid}-v2"])
    finally:
        till.shutdown()
        server.stop()
        desk.close()
    db = LogDB(pg_url, store.name)
    removed = privacy.erase(db, "vic", by="ops", why="asked", now_wall=0.0)
    assert removed["own"] >= 3 and removed["receipt_events"] == 2
    left = db.execute("SELECT payload FROM events").fetchall()
    assert not [p for (p,) in left if '"vic"' in p]
    with pytest.raises(ValueError, match="no password in the URL"):
        LogDB(pg_url.replace("storetwin@", "storetwin:hunter2@"), store.name)
