"""storetwin compare: the regression gate, on hand-made scorecards."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.compare import GateConfig, compare, load_scorecards


def card(scenario: str, sensing: str = "fused", visits: int = 4, exact: int = 4, tp: int = 8, fp: int = 0,
         fn: int = 0, charge: float = 0.0, misses: int = 0, idsw: int = 0, lat_ms: float = 200.0) -> dict:
    """A scorecard as storetwin run writes it, with 100 true object-frames and one interaction."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"scenario": scenario, "sensing": sensing, "stream_s": 10.0, "wall_s": 10.0,
            "cart": {"visits": visits, "exact": exact, "exact_rate": exact / visits, "tp": tp, "fp": fp, "fn": fn,
                     "precision": p, "recall": r, "f1": f1, "charge_error": charge},
            "tracking": {"mota": 1 - (misses + idsw) / 100, "idf1": 1 - misses / 200, "id_switches": idsw,
                         "num_objects": 100, "num_misses": misses, "num_false_positives": 0,
                         "idtp": 100 - misses, "idfp": 0, "idfn": misses},
            "latency": {"latency_p50_ms": lat_ms, "latency_p95_ms": lat_ms, "latency_max_ms": lat_ms,
                        "delay_p50_s": 0.3, "delay_p95_s": 0.3, "delay_max_s": 0.3, "matched": 1, "unmatched": 0,
                        "interactions": [{"matched": True, "delay_s": 0.3, "latency_ms": lat_ms}]}}


def suite(tmp_path: Path, name: str, cards: list[dict]) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "scorecard.json").write_text(json.dumps({"scenarios": cards, "total": {}}))
    return d


def by_key(criteria) -> dict:
    return {(c.scenario, c.sensing, c.metric): c for c in criteria}


def test_a_lost_exact_receipt_and_a_slower_p95_are_regressions_within_the_gate_is_not() -> None:
    base = {("a", "fused"): card("a"), ("b", "fused"): card("b")}
    cand = {("a", "fused"): card("a", exact=3, tp=7, fn=1, charge=1.99),          # one receipt wrong
            ("b", "fused"): card("b", misses=1, lat_ms=290.0)}                    # MOTA −0.01, p95 +90 ms
    got = by_key(compare(base, cand))
    assert got[("a", "fused", "exact_rate")].status == "regression"
    assert got[("a", "fused", "exact_rate")].candidate == 3 / 4
    assert got[("a", "fused", "f1")].status == "regression"                       # 2·(7/7·7/8)/(1+7/8) = 0.933
    assert got[("a", "fused", "charge_error")].status == "regression"
    assert got[("b", "fused", "mota")].status == "ok"                             # 0.99 ≥ 1.00 − 0.02
    assert got[("b", "fused", "latency_p95_ms")].status == "ok"                   # +90 ≤ 100 ms
    # pooled: 7 exact of 8 visits, against 8 of 8
    assert got[("total", "fused", "exact_rate")].candidate == 7 / 8
    tight = by_key(compare(base, cand, GateConfig(latency_p95_rise_ms=50.0)))
    assert tight[("b", "fused", "latency_p95_ms")].status == "regression"


def test_better_and_missing() -> None:
    base = {("a", "fused"): card("a", exact=3, tp=7, fn=1), ("b", "weight_only"): card("b", "weight_only")}
    got = by_key(compare(base, {("a", "fused"): card("a")}))
    assert got[("a", "fused", "exact_rate")].status == "better"
    assert got[("b", "weight_only", "mota")].status == "missing"


def test_cli_exits_1_on_a_regression_0_without(tmp_path: Path, capsys) -> None:
    a = suite(tmp_path, "A", [card("a"), card("a", "weight_only", exact=2)])
    b = suite(tmp_path, "B", [card("a"), card("a", "weight_only", exact=3)])
    assert main(["compare", f"baseline={a}", f"candidate={b}"]) == 0
    out = capsys.readouterr().out
    assert "PASS: 2 runs compared, 0 regressions" in out and "better" in out
    assert main(["compare", f"baseline={b}", f"candidate={a}"]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    # a run directory with an ablation: scorecard.json plus out-<mode>/scorecard.json
    run = tmp_path / "run"
    (run / "out-weight_only").mkdir(parents=True)
    (run / "scorecard.json").write_text(json.dumps(card("a")))
    (run / "out-weight_only" / "scorecard.json").write_text(json.dumps(card("a", "weight_only", exact=3)))
    assert set(load_scorecards(run)) == {("a", "fused"), ("a", "weight_only")}
    assert main(["compare", f"baseline={a}", f"candidate={run}", "show=all"]) == 0


def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys) -> None:
    a = suite(tmp_path, "A", [card("a")])
    assert main(["compare", f"baseline={a}"]) == 2
    assert "candidate=: expected" in capsys.readouterr().err
    assert main(["compare", f"baseline={a}", f"candidate={tmp_path / 'nothing'}"]) == 2
    assert "no scorecard.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scenarios": [{"scenario": "a"}]}))
    assert main(["compare", f"baseline={a}", f"candidate={bad}"]) == 2
    assert "not a scorecard" in capsys.readouterr().err
    assert main(["compare", f"baseline={a}", f"candidate={a}", "gate.mota_drop=lots"]) == 2
    assert "gate.mota_drop" in capsys.readouterr().err
    with pytest.raises(ValueError):
        load_scorecards(bad)


def test_table_pools_suites_scored_in_parts_and_refuses_a_run_counted_twice(tmp_path: Path, capsys) -> None:
    a = suite(tmp_path, "a", [card("random-s0-k3"), card("random-s1-k3", exact=3, tp=7, fn=1)])
    b = suite(tmp_path, "b", [card("random-s2-k3", exact=2, tp=6, fn=2), card("random-s2-k3", "weight_only")])
    assert main(["table", f"runs=[{a},{b}]", "sensing=fused"]) == 0
    out = capsys.readouterr().out
    assert "fused: 9/12 exact" in out and "weight_only" not in out           # 4 + 3 + 2 of 4 + 4 + 4
    assert "random-s1-k3" in out and "total" in out
    assert main(["table", f"runs=[{a},{a}]"]) == 2                            # the same runs twice
    assert "scored in both" in capsys.readouterr().err
    assert main(["table", f"runs=[{tmp_path / 'nowhere'}]"]) == 2
    # a suite stopped part-way: no scorecard of its own, one per run done
    stopped = tmp_path / "stopped"
    for name in ("random-s3-k3", "random-s4-k3"):
        (stopped / name).mkdir(parents=True)
        (stopped / name / "scorecard.json").write_text(json.dumps(card(name, exact=3, tp=7, fn=1)))
    assert main(["table", f"runs=[{a},{stopped}]"]) == 0
    assert "fused: 13/16 exact" in capsys.readouterr().out
