"""A contact sheet: one frame of every camera with its ground truth drawn on it."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from twin.bodies import COCO_SKELETON

PERSON_COLOURS = [(0, 200, 255), (255, 120, 0), (0, 255, 0), (255, 0, 255), (255, 255, 0), (0, 0, 255),
                  (128, 255, 128), (255, 128, 128), (128, 128, 255), (200, 200, 0)]


def draw_truth(img: np.ndarray, truth, products: bool = True, sku_of=None) -> np.ndarray:
    """Draw person boxes, skeletons (hidden keypoints hollow) and product boxes on a BGR image."""
    out = img.copy()
    if products:
        for i, box in zip(truth.product_ids, truth.product_boxes):
            x0, y0, x1, y1 = box.astype(int)
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (180, 180, 180), 1)
    for pid, box, kps in zip(truth.person_ids, truth.person_boxes, truth.keypoints):
        col = PERSON_COLOURS[int(pid) % len(PERSON_COLOURS)]
        x0, y0, x1, y1 = box.astype(int)
        if x1 > x0:
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), col, 2)
            cv2.putText(out, f"P{pid}", (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1, cv2.LINE_AA)
        for a, b in COCO_SKELETON:
            if kps[a, 2] > 0 and kps[b, 2] > 0:
                cv2.line(out, tuple(kps[a, :2].astype(int)), tuple(kps[b, :2].astype(int)), col, 1, cv2.LINE_AA)
        for u, v, vis in kps:
            if vis == 2:
                cv2.circle(out, (int(u), int(v)), 3, col, -1, cv2.LINE_AA)
            elif vis == 1:
                cv2.circle(out, (int(u), int(v)), 3, col, 1, cv2.LINE_AA)
    return out


def contact_sheet(tiles: list[tuple[str, np.ndarray]], path: Path, columns: int = 4, tile_w: int = 480,
                  jpeg_quality: int = 95) -> Path:
    """Tile labelled BGR images into one picture (PNG, or JPEG at ``jpeg_quality`` when ``path`` ends
    in .jpg)."""
    if not tiles:
        raise ValueError("no camera frames to put on a contact sheet")
    rows = []
    scaled = []
    for name, img in tiles:
        h, w = img.shape[:2]
        t = cv2.resize(img, (tile_w, int(h * tile_w / w)), interpolation=cv2.INTER_AREA)
        cv2.rectangle(t, (0, 0), (tile_w, 22), (0, 0, 0), -1)
        cv2.putText(t, name, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        scaled.append(t)
    th = max(t.shape[0] for t in scaled)
    blank = np.zeros((th, tile_w, 3), np.uint8)
    for r in range(0, len(scaled), columns):
        row = scaled[r:r + columns]
        row = [np.pad(t, ((0, th - t.shape[0]), (0, 0), (0, 0))) for t in row] + [blank] * (columns - len(row))
        rows.append(np.concatenate(row, axis=1))
    sheet = np.concatenate(rows, axis=0)
    path = Path(path)
    cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    return path
