"""The scenario suite scorecard: every scenario of scenarios/ through simulate → store runtime →
score, in each sensing mode, with real-time pacing (latency as a store would see it on this
machine). Prints the table and writes a JSON summary (per scenario and in total, per sensing mode).

    .venv/bin/python benchmarks/bench_suite.py --json docs/bench_suite.json [--out runs/suite-bench] [--recorded runs/suite-…]

``--recorded`` runs the runtime on a suite simulated before (no simulation; the same streams).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.metrics import summary_row  # noqa: E402
from harness.run import RunConfig, run, suite_totals  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensing", nargs="+", default=["fused", "vision_only", "weight_only"])
    ap.add_argument("--pacing", default="realtime", choices=["realtime", "asfast"])
    ap.add_argument("--out", type=Path, default=None, help="suite folder (default runs/suite-default-<time>)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--recorded", type=Path, default=None, help="a suite folder simulated before")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(RunConfig(suite="default", sensing=tuple(args.sensing), pacing=args.pacing,
                        out=str(args.out) if args.out else None,
                        recorded=str(args.recorded) if args.recorded else None))
    wall = time.perf_counter() - t0
    print(res.table)
    print(f"suite: {res.out}  report: {res.report}  ({wall / 60:.1f} min)")
    if args.json:
        summary = {"command": " ".join(["benchmarks/bench_suite.py", *sys.argv[1:]]),
                   "machine": f"{platform.machine()}, {os.cpu_count()} cores", "wall_min": round(wall / 60, 1),
                   "recorded": str(args.recorded) if args.recorded else None,
                   "scenarios": [summary_row(c) for c in res.scorecards], "total": suite_totals(res.scorecards)}
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
