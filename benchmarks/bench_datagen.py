"""Datagen throughput on `small_convenience`: labelled images per second, per core, for the same
dataset made one shard at a time and with two shards at once (hydra multirun, joblib), and the
cost of exact per-item product masks.

    .venv/bin/python benchmarks/bench_datagen.py [--shards 2] [--duration-s 30] [--only joblib] [--json docs/bench_datagen.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.datagen import datagen_config_from, run_datagen  # noqa: E402


def one(label: str, settings: dict, cores: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench_datagen_")) / "ds"
    try:
        t0 = time.perf_counter()
        res = run_datagen(datagen_config_from(settings), out)
        wall = time.perf_counter() - t0
        shards = [json.loads(p.read_text()) for p in sorted((out / "shards").glob("*/shard.json"))]
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    images = sum(s["images"] for s in shards)
    rendered = sum(s["rendered"] for s in shards)
    labels = sum(sum(c["instances"].values()) for c in res.counts.values())
    row = {"run": label, "cores": cores, "wall_s": round(wall, 1), "images": images, "rendered": rendered,
           "labels": labels, "images_per_s": round(images / wall, 2), "images_per_s_per_core": round(images / wall / cores, 2),
           "rendered_per_s": round(rendered / wall, 2), "sim_s": settings["shards"] * settings["duration_s"]}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--duration-s", type=float, default=30.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", choices=["serial", "joblib", "depth"], action="append",
                    help="run only these of the three ways (default: all)")
    a = ap.parse_args()
    base = {"store": "small_convenience", "seed": 0, "shards": a.shards, "duration_s": a.duration_s, "shoppers": [3, 5]}
    ways = {"serial": ("one shard at a time", {**base, "launcher": "serial"}, 1),
            "joblib": ("two shards at once (joblib)", {**base, "launcher": "joblib", "jobs": 2}, 2),
            "depth": ("one at a time, product boxes by depth test", {**base, "launcher": "serial", "exact_product_masks": False}, 1)}
    rows = [one(*ways[k]) for k in (a.only or ways)]
    if a.json:
        a.json.write_text(json.dumps({"machine": f"{os.cpu_count()} × {platform.machine()}", "settings": base,
                                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
