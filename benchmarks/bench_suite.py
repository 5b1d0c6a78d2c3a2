"""The scenario suite scorecard: every scenario of scenarios/ through simulate → store runtime →
score, in each sensing mode, and the whole suite side by side in one report. Prints the tables and
writes a JSON summary (per scenario and in total, per sensing mode).

    .venv/bin/python benchmarks/bench_suite.py --json docs/bench_suite.json [--out runs/suite-bench]
        [--recorded runs/suite-…] [--sensing fused vision_only weight_only] [--asfast vision_only weight_only]

The modes run with real-time pacing (latency as a store would see it on this machine) unless
``--asfast`` names them: those run as fast as the machine goes, for their accuracy only (their
latency is then not a store's). ``--recorded`` runs the runtime on a suite simulated before (no
simulation; the same streams for every mode).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.metrics import summary_row  # noqa: E402
from harness.report import write_suite_report  # noqa: E402
from harness.run import RunConfig, run, suite_totals, tables  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensing", nargs="+", default=["fused", "vision_only", "weight_only"])
    ap.add_argument("--asfast", nargs="*", default=[], help="modes to run as fast as the machine goes")
    ap.add_argument("--out", type=Path, default=None, help="suite folder (default runs/suite-bench-<time>)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--recorded", type=Path, default=None, help="a suite folder simulated before")
    args = ap.parse_args()
    root = args.out or Path("runs") / f"suite-bench-{datetime.now():%Y%m%d-%H%M%S}"
    t0 = time.perf_counter()
    recorded = str(args.recorded) if args.recorded else None
    cards: list[dict] = []
    groups = [("realtime", [m for m in args.sensing if m not in args.asfast]),
              ("asfast", [m for m in args.sensing if m in args.asfast])]
    for pacing, modes in groups:
        if not modes:
            continue
        res = run(RunConfig(suite="default", sensing=tuple(modes), pacing=pacing, out=str(root / pacing),
                            recorded=recorded))
        recorded = recorded or str(root / pacing)      # later groups replay the same streams
        for c in res.scorecards:
            c["pacing"] = pacing
        cards += res.scorecards
    wall = time.perf_counter() - t0
    report = write_suite_report(root / "report.html", cards)
    print(tables(cards))
    print(f"suite: {root}  report: {report}  ({wall / 60:.1f} min)")
    if args.json:
        summary = {"command": " ".join(["benchmarks/bench_suite.py", *sys.argv[1:]]),
                   "machine": f"{platform.machine()}, {os.cpu_count()} cores", "wall_min": round(wall / 60, 1),
                   "pacing": {m: ("asfast" if m in args.asfast else "realtime") for m in args.sensing},
                   "scenarios": [summary_row(c) for c in cards], "total": suite_totals(cards)}
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
