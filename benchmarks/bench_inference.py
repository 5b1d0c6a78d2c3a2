"""Inference milliseconds per frame of the shipped models, torch (Ultralytics) against ONNX Runtime
(and OpenVINO where its export is shipped), side by side in one run, on real frames of a datagen
dataset at each model's shipped image size, single frames (batch 1), CPU.

    .venv/bin/python benchmarks/bench_inference.py [--models models] [--data data/sc-train] [--json docs/bench_inference.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from runtime.perception import load_model  # noqa: E402


def timed(det, frames, warmup: int = 3) -> dict:
    for f in frames[:warmup]:
        det(f)
    ms = []
    for f in frames:
        t0 = time.perf_counter()
        det(f)
        ms.append((time.perf_counter() - t0) * 1000)
    return {"mean_ms": round(float(np.mean(ms)), 1), "p50_ms": round(float(np.median(ms)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--data", type=Path, default=Path("data/sc-train"))
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    rows = []
    for pt in sorted(a.models.glob("*.pt")):
        sub = "products" if (a.data / "products").is_dir() and pt.stem == "products" else "detect"
        files = sorted((a.data / sub / "images" / "val").glob("*.jpg"))[: a.frames]
        frames = [cv2.imread(str(f)) for f in files]
        variants = [("torch (Ultralytics)", pt), ("ONNX Runtime", pt.with_suffix(".onnx")),
                    ("OpenVINO", pt.parent / f"{pt.stem}_openvino_model")]
        for label, path in variants:
            if not path.exists():
                continue
            det = load_model(path)
            row = {"model": pt.stem, "runtime": label, "imgsz": list(det.imgsz), "frame": list(frames[0].shape[:2]),
                   **timed(det, frames)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if a.json:
        a.json.write_text(json.dumps({"machine": f"{os.cpu_count()} × {platform.machine()}, CPU only", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
