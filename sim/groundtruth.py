"""Ground truth, for the harness only: where everyone was, what they did, what they carried out.

Written to ``gt/`` in the run directory:

- ``shoppers.json``: per shopper its account and body shape;
- ``tracks.npz``: ``t`` (T), ``present`` (T×S), ``xy`` (T×S×2 floor metres), ``keypoints``
  (T×S×17×3 world metres, COCO order), at ``sim.gt_hz``;
- ``interactions.jsonl``: one true pick / put_back / browse per line (start, end, SKU, bin);
- ``carts.json``: the true cart per account (SKU → quantity) and its total;
- ``gates.jsonl``: the gate events as they happened;
- ``instances.json``: every product item, its SKU, its planogram bin and the bin it ended in;
- ``frames/<camera>.npz``: per rendered frame the person boxes (visible and amodal), 17 keypoints
  (u, v, visibility 0 outside / 1 hidden / 2 visible) and the product boxes, as flat arrays with a
  ``*_frame`` index into ``seq`` / ``t``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runtime.messages import GateEvent
from runtime.store import StoreSpec
from twin.bodies import BodyShape
from twin.renderer import FrameTruth


@dataclass
class _CameraTruth:
    seq: list[int] = field(default_factory=list)
    t: list[float] = field(default_factory=list)
    frames: list[FrameTruth] = field(default_factory=list)


class GroundTruth:
    def __init__(self, store: StoreSpec, instance_skus: list[str], instance_bins: list[str]):
        self.store = store
        self.instance_skus, self.instance_bins = instance_skus, instance_bins
        self.shoppers: list[dict] = []
        self.shapes: list[BodyShape] = []
        self.t: list[float] = []
        self.present: list[np.ndarray] = []
        self.xy: list[np.ndarray] = []
        self.keypoints: list[np.ndarray] = []
        self.interactions: list = []
        self.gate_events: list[GateEvent] = []
        self.cameras: dict[str, _CameraTruth] = {}
        self.final_bins: list[str | None] = []
        self.t_end = 0.0

    def add_shopper(self, index: int, account: str, shape: BodyShape) -> None:
        self.shoppers.append({"index": index, "account": account, "shape": asdict(shape)})
        self.shapes.append(shape)

    def record_tick(self, t: float, shoppers) -> None:
        n = len(shoppers)
        present = np.zeros(n, bool)
        xy = np.full((n, 2), np.nan)
        kp = np.full((n, 17, 3), np.nan)
        for s in shoppers:
            if s.present and s.skeleton is not None:
                present[s.index] = True
                xy[s.index] = s.xy
                kp[s.index] = s.skeleton.keypoints
        self.t.append(t)
        self.present.append(present)
        self.xy.append(xy)
        self.keypoints.append(kp)

    def record_frame(self, camera: str, seq: int, t: float, truth: FrameTruth) -> None:
        c = self.cameras.setdefault(camera, _CameraTruth())
        c.seq.append(seq)
        c.t.append(t)
        c.frames.append(truth)

    def finish(self, t_end: float, instances) -> None:
        self.t_end = t_end
        self.final_bins = [i.bin for i in instances]

    def carts(self) -> dict[str, dict]:
        """True carts per account from the interactions: picks add, put-backs remove."""
        carts: dict[str, dict[str, int]] = {}
        for s in self.shoppers:
            carts.setdefault(s["account"], {})
        for it in sorted(self.interactions, key=lambda i: i.t_end):
            if it.kind in ("pick", "put_back"):
                c = carts.setdefault(it.account, {})
                c[it.sku] = c.get(it.sku, 0) + (1 if it.kind == "pick" else -1)
                if c[it.sku] == 0:
                    del c[it.sku]
        out = {}
        for acc, items in carts.items():
            total = sum(q * self.store.products[s].price for s, q in items.items())
            out[acc] = {"items": dict(sorted(items.items())), "total": round(total, 2)}
        return out

    def write(self, gt_dir: Path) -> None:
        gt_dir = Path(gt_dir)
        (gt_dir / "frames").mkdir(parents=True, exist_ok=True)
        (gt_dir / "shoppers.json").write_text(json.dumps(self.shoppers, indent=1))
        np.savez_compressed(gt_dir / "tracks.npz", t=np.array(self.t), present=np.array(self.present),
                            xy=np.array(self.xy), keypoints=np.array(self.keypoints).astype(np.float32))
        with open(gt_dir / "interactions.jsonl", "w") as f:
            for it in sorted(self.interactions, key=lambda i: i.t_start):
                f.write(json.dumps(it.as_dict()) + "\n")
        with open(gt_dir / "gates.jsonl", "w") as f:
            for ev in self.gate_events:
                f.write(json.dumps(asdict(ev)) + "\n")
        (gt_dir / "carts.json").write_text(json.dumps(self.carts(), indent=1))
        (gt_dir / "instances.json").write_text(json.dumps(
            [{"index": i, "sku": s, "planogram_bin": b, "final_bin": fb}
             for i, (s, b, fb) in enumerate(zip(self.instance_skus, self.instance_bins, self.final_bins))], indent=0))
        for cam, c in self.cameras.items():
            np.savez_compressed(gt_dir / "frames" / f"{cam}.npz", **flatten_frames(c.seq, c.t, c.frames))


def flatten_frames(seq: list[int], t: list[float], frames: list[FrameTruth]) -> dict[str, np.ndarray]:
    def cat(attr: str, shape: tuple) -> np.ndarray:
        parts = [getattr(f, attr) for f in frames]
        return np.concatenate(parts).reshape(shape) if parts else np.zeros(shape)

    return {
        "seq": np.array(seq, dtype=int), "t": np.array(t),
        "person_frame": np.concatenate([np.full(len(f.person_ids), k) for k, f in enumerate(frames)] or [np.zeros(0)]).astype(int),
        "person_id": cat("person_ids", (-1,)).astype(int),
        "person_box": cat("person_boxes", (-1, 4)),
        "person_box_amodal": cat("person_boxes_amodal", (-1, 4)),
        "person_pixels": cat("person_pixels", (-1,)).astype(int),
        "keypoints": cat("keypoints", (-1, 17, 3)).astype(np.float32),
        "product_frame": np.concatenate([np.full(len(f.product_ids), k) for k, f in enumerate(frames)] or [np.zeros(0)]).astype(int),
        "product_instance": cat("product_ids", (-1,)).astype(int),
        "product_box": cat("product_boxes", (-1, 4)).astype(np.float32),
        "product_box_amodal": cat("product_boxes_amodal", (-1, 4)).astype(np.float32),
        "product_pixels": cat("product_pixels", (-1,)).astype(int),
    }


def load_frames(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
