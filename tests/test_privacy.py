"""Privacy controls on a real event log: retention keeps the books and drops what watched people
(never an open visit), erasing removes one account everywhere and scrubs its id from others'
evidence, both leave a note, and the JSONL copies follow the database. Also the refusals: a
shopper still in the store, a folder a live runtime holds."""
from __future__ import annotations

import json
import sqlite3

import pytest

from harness.cli import main
from runtime.clock import ManualClock
from runtime.eventlog import EventLog, connect
from runtime.live import hold_folder
from runtime.messages import CartUpdate, Receipt, ReceiptLine, TrackState
from runtime.ops import privacy

DAY = 86400.0
NOW = 1_800_000_000.0


def _visit(log: EventLog, clock: ManualClock, account: str, track: int, near: str | None, close: bool = True) -> None:
    t = clock.wall_s()
    log.append({"t": t, "account_id": account, "gate_id": "gate_in", "kind": "enter"}, kind="enter")
    log.append(TrackState(t + 1, track, None, 1.0, 1.0))          # before the track took the account
    log.append(TrackState(t + 2, track, account, 1.1, 1.0))
    log.append({"t": t + 3, "cell": "c0", "level": 900.0, "noise": 1.0, "bins": {}}, kind="stock")
    ev = {"cell": "c0", "trace": [[t + 2, 1000.0], [t + 3, 650.0]],
          "near": [{"track": track, "account": account}] + ([{"track": 99, "account": near}] if near else [])}
    log.append(CartUpdate(account, "cola", 1, t + 3, t + 3.2, t + 3.3, 0.9, ev, update_id=f"{account}-1"))
    if close:
        log.append(Receipt(account, t + 9, (ReceiptLine("cola", 1, 0.99),), 0.99))


@pytest.fixture()
def log_dir(tmp_path):
    clock = ManualClock(NOW - 40 * DAY)
    log = EventLog(tmp_path, clock=clock)
    _visit(log, clock, "olga", 1, near=None)
    _visit(log, clock, "ines", 2, near=None, close=False)     # still in the store (an open visit)
    clock.now_s = NOW - 1 * DAY
    _visit(log, clock, "noah", 3, near="olga")
    log.close()
    return tmp_path


def _rows(folder, kind=None):
    db = sqlite3.connect(folder / "events.sqlite")
    q = "SELECT kind, account_id, payload FROM events" + (" WHERE kind = ?" if kind else "")
    return [(k, a, json.loads(p)) for k, a, p in db.execute(q, (kind,) if kind else ())]


def test_retention_drops_tracks_notes_and_evidence_but_keeps_receipts_and_open_visits(log_dir) -> None:
    log = EventLog(log_dir)
    removed = privacy.prune(log.db, days=30, now_wall=NOW)
    log.rewrite_copies()
    log.close()
    assert removed["track"] == 3 and removed["enter"] == 1 and removed["evidence"] == 1
    tracks = {(d["track_id"], d["account_id"]) for _, _, d in _rows(log_dir, "track")}
    # olga's (old) went, and every old state of a track nobody was known on; the open visit's stay
    assert tracks == {(2, "ines"), (3, None), (3, "noah")}
    ups = {d["account_id"]: d["evidence"] for _, _, d in _rows(log_dir, "cart_update")}
    assert ups["olga"] == {"pruned": True} and ups["noah"]["trace"] and ups["ines"]["trace"]
    assert sorted(d["account_id"] for _, _, d in _rows(log_dir, "receipt")) == ["noah", "olga"], "the books stay"
    assert len(_rows(log_dir, "stock")) == 1, "each cell's latest level stays for a restart"
    note = _rows(log_dir, "privacy")[0][2]
    assert note["action"] == "prune" and note["removed"] == removed
    copy = [json.loads(x) for x in (log_dir / "tracks.jsonl").read_text().splitlines()]
    assert {(d["track_id"], d["account_id"]) for d in copy} == tracks, "the JSONL copy follows"
    assert EventLog(log_dir).open_carts() == {"ines": {"cola": 1}}, "the open cart is whole"


def test_receipts_go_only_after_their_own_retention(log_dir) -> None:
    db = connect(log_dir / "events.sqlite")
    with pytest.raises(privacy.PrivacyError):
        privacy.prune(db, days=30, now_wall=NOW, receipts_days=10)
    removed = privacy.prune(db, days=30, now_wall=NOW, receipts_days=35)
    assert removed["receipt"] == 1
    assert [d["account_id"] for _, _, d in _rows(log_dir, "receipt")] == ["noah"]


def test_erasing_an_account_removes_it_everywhere_and_scrubs_it_from_others_evidence(log_dir) -> None:
    log = EventLog(log_dir)
    with pytest.raises(privacy.PrivacyError, match="in the store now"):
        privacy.erase(log.db, "ines", by="ops", why="asked", now_wall=NOW)
    with pytest.raises(privacy.PrivacyError, match="why"):
        privacy.erase(log.db, "olga", by="ops", why=" ", now_wall=NOW)
    removed = privacy.erase(log.db, "olga", by="ops", why="asked by email", now_wall=NOW)
    log.rewrite_copies()
    log.close()
    assert removed["tracks"] == 1 and removed["outbox"] == 1 and removed["scrubbed"] == 1
    rows = _rows(log_dir)
    assert not [r for r in rows if "olga" in json.dumps(r)], "no row names her"
    assert not any(d.get("track_id") == 1 for k, _, d in rows if k == "track"), "nor her track before it took her id"
    noah = next(d for k, _, d in rows if k == "cart_update" and d["account_id"] == "noah")
    assert [n["account"] for n in noah["evidence"]["near"]] == ["noah", "erased"]
    note = next(d for k, _, d in rows if k == "privacy")
    assert note["action"] == "erase" and note["by"] == "ops" and "account_sha256" in note and "olga" not in json.dumps(note)
    for name in ("tracks.jsonl", "cart_updates.jsonl", "receipts.jsonl"):
        assert "olga" not in (log_dir / name).read_text(), name
    db = sqlite3.connect(log_dir / "events.sqlite")
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE payload LIKE '%olga%'").fetchone()[0] == 0
    db.close()
    for f in log_dir.glob("events.sqlite*"):     # the bytes too: no freed page or old log frame keeps her id
        assert b"olga" not in f.read_bytes(), f.name


def test_the_command_refuses_a_folder_a_live_runtime_holds_and_works_on_a_stopped_one(log_dir, capsys) -> None:
    lock = hold_folder(log_dir)
    try:
        assert main(["privacy", f"out={log_dir}", "prune_days=30"]) == 2
        assert "a live runtime is running" in capsys.readouterr().err
    finally:
        lock.close()
    assert main(["privacy", f"out={log_dir}", "erase=olga", "why=asked"]) == 0
    assert main(["privacy", f"out={log_dir}", "erase=ines", "why=asked"]) == 2
    assert main(["privacy", f"out={log_dir}", "prune_days=30", "erase=x"]) == 2
