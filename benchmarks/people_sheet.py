"""Eight shoppers as the twin draws them (twin/people.py), each from eye level and from a ceiling
camera's height: shapes, clothes and poses (walking, reaching high and low, standing).

    .venv/bin/python benchmarks/people_sheet.py --out docs/img/people.jpg
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pyrender  # noqa: E402
import trimesh  # noqa: E402

from twin.bodies import BodyPose, sample_shape, solve_skeleton  # noqa: E402
from twin.people import body_mesh, shadow_mesh  # noqa: E402

MATERIAL = pyrender.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.2, roughnessFactor=0.8)


def _look(eye: np.ndarray, at: np.ndarray) -> np.ndarray:
    z = eye - at
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    P = np.eye(4)
    P[:3, 0], P[:3, 1], P[:3, 2], P[:3, 3] = x, np.cross(z, x), z, eye
    return P


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("docs/img/people.jpg"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    r = pyrender.OffscreenRenderer(240, 320)
    cols = []
    for i in range(8):
        shape = sample_shape(rng)
        kind = i % 4        # walking, walking, reaching high, reaching low
        target = None if kind < 2 else np.array([0.5 * math.cos(0.4 * i) + 0.1, 0.5 * math.sin(0.4 * i), 1.2 if kind == 2 else 0.4])
        skel = solve_skeleton(shape, BodyPose(x=0, y=0, heading_rad=0.4 * i, walk_phase=i * 0.9,
                                              walk_amount=1.0 if kind < 2 else 0.0, right_hand_target=target))
        V, N, C = body_mesh(shape, skel)
        scene = pyrender.Scene(ambient_light=[0.35] * 3, bg_color=[0.8, 0.8, 0.8, 1])
        scene.add(pyrender.Mesh([pyrender.Primitive(positions=V, normals=N, color_0=C, mode=4, material=MATERIAL)]))
        sv, sf = shadow_mesh(V)
        scene.add(pyrender.Mesh.from_trimesh(trimesh.Trimesh(sv, sf, face_colors=[52, 50, 48, 255], process=False), smooth=False))
        floor = trimesh.creation.box([4, 4, 0.01])
        floor.apply_translation([0, 0, -0.006])
        floor.visual.face_colors = [200, 200, 195, 255]
        scene.add(pyrender.Mesh.from_trimesh(floor, smooth=False))
        col = []
        for eye, at in ((np.array([3.0 * math.cos(0.5), 3.0 * math.sin(0.5), 1.3]), np.array([0, 0, 0.9])),
                        (np.array([1.2, 0.6, 3.0]), np.array([0, 0, 0.6]))):
            P = _look(eye, at)
            cam = scene.add(pyrender.PerspectiveCamera(yfov=0.75), pose=P)
            light = scene.add(pyrender.DirectionalLight(intensity=3.0), pose=P)
            rgb, _ = r.render(scene)
            scene.remove_node(cam)
            scene.remove_node(light)
            col.append(rgb[:, :, ::-1])
        cols.append(np.concatenate(col, axis=0))
    r.delete()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), np.concatenate(cols, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
