"""Inference milliseconds per frame of the shipped models, torch (Ultralytics) against ONNX Runtime
(and OpenVINO, float and INT8, where they are shipped), side by side in one run, on real frames of a datagen
dataset at each model's shipped image size (OpenVINO: the smallest input that holds the frame, for
a model of dynamic shape), single frames (batch 1), CPU; and OpenVINO as the runtime runs the person
model (two inferences at a time, six frames an inference), and at its square size, per frame of wall time.

    .venv/bin/python benchmarks/bench_inference.py [--models models] [--data data/sc-train] [--json docs/bench_inference.json]
    .venv/bin/python benchmarks/bench_inference.py --data runs/<run>   # a run's recorded frames, person model only
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


def video_frames(streams: Path, n: int) -> list[np.ndarray]:
    """``n`` frames spread over every camera's video of a run."""
    videos = sorted(streams.glob("*.mp4"))
    out = []
    for v in videos:
        cap = cv2.VideoCapture(str(v))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for k in range(max(1, n // len(videos))):
            cap.set(cv2.CAP_PROP_POS_FRAMES, (k + 1) * total // (n // len(videos) + 1))
            ok, f = cap.read()
            if ok:
                out.append(f)
        cap.release()
    return out


def timed_streams(det, frames, warmup: int = 3) -> dict:
    """Frames a second through ``submit`` (several frames at a time): milliseconds per frame of wall
    time over the whole batch (no per-frame latency: frames overlap)."""
    for f in frames[:max(warmup, 2 * getattr(det, "batch", 1))]:   # a full batch compiled before timing
        det.submit(f, lambda d: None)
    det.wait()
    t0 = time.perf_counter()
    for f in frames:
        det.submit(f, lambda d: None)
    det.wait()
    ms = (time.perf_counter() - t0) * 1000 / len(frames)
    return {"mean_ms": round(ms, 1), "p50_ms": None, "p95_ms": None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--data", type=Path, default=Path("data/sc-train"))
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    rows = []
    for pt in sorted(a.models.glob("*.pt")):
        if (a.data / "streams").is_dir():
            # a run directory: its cameras' recorded frames (whole frames: the person model only)
            if pt.stem != "person_pose":
                continue
            frames = video_frames(a.data / "streams", a.frames)
        else:
            sub = "products" if (a.data / "products").is_dir() and pt.stem == "products" else "detect"
            files = sorted((a.data / sub / "images" / "val").glob("*.jpg"))[: a.frames]
            frames = [cv2.imread(str(f)) for f in files]
        variants = [("torch (Ultralytics)", pt), ("ONNX Runtime", pt.with_suffix(".onnx")),
                    ("OpenVINO", pt.parent / f"{pt.stem}_openvino_model"),
                    ("OpenVINO INT8", pt.parent / f"{pt.stem}_int8_openvino_model")]   # storetwin quantize
        for label, path in variants:
            if not path.exists():
                continue
            det = load_model(path)
            size = det.input_size(frames[0].shape[:2]) if hasattr(det, "input_size") else det.imgsz
            row = {"model": pt.stem, "runtime": label, "imgsz": list(size), "frame": list(frames[0].shape[:2]),
                   **timed(det, frames)}
            print(json.dumps(row), flush=True)
            rows.append(row)
            if not label.startswith("OpenVINO"):
                continue
            # the runtime's way: two inferences at a time (runtime.perception_streams), each of up
            # to six frames (runtime.perception_batch), each camera at the smallest input that
            # holds it; and the same at the model's square size, for comparison
            ways = [(2, 1, False), (2, 6, False), (2, 1, True), (2, 6, True)] if det.dynamic else [(2, 1, False)]
            for streams, batch, square in ways:
                det = load_model(path, streams=streams, batch=batch, fit=not square)
                name = f"{label}, {streams} streams" + (f", {det.batch} a batch" if det.batch > 1 else "")
                row = {"model": pt.stem, "runtime": name, "imgsz": list(det.input_size(frames[0].shape[:2])),
                       "frame": list(frames[0].shape[:2]), **timed_streams(det, frames)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    if a.json:
        a.json.write_text(json.dumps({"machine": f"{os.cpu_count()} × {platform.machine()}, CPU only", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
