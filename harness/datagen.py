"""`storetwin datagen`: labelled training images from randomised scenarios.

A dataset is made of shards. Each shard simulates ``scenarios_per_shard`` randomised shopping
scenarios (``sim.randomize``) with domain randomisation (lighting and its colour, camera pose,
packaging, the store's textures, clutter, distractors, posters and the world outside the walls,
each camera's exposure, white balance, vignetting, sensor noise and H.264 stream, motion blur;
clothing and body shape come with every drawn shopper),
renders the cameras at a fixed interval, drops near-duplicate frames and writes, under
``<out>/shards/shard_NNNNN/``, the images and one label record per image (``labels.jsonl``). A
shard is written under a temporary name and renamed when complete, so rerunning the same command
only makes the shards that are missing.

The export then builds, from all complete shards (hard links, no copies):

- ``detect/``: an Ultralytics YOLO detection dataset, class 0 = person, then every SKU;
- ``pose/``: an Ultralytics YOLO pose dataset, persons with 17 COCO keypoints; a keypoint hidden
  behind a shelf or a body, or outside the image, has visibility 0;
- ``coco/instances_{train,val}.json``: the same labels as COCO JSON (keypoints with COCO's
  visibility: 0 not in the image, 1 in the image but hidden, 2 visible);
- ``README.md`` (the dataset card: counts per class, seeds, settings) and ``mosaic.jpg``.

Scenarios, not frames, are split between train and val, so the two never share a scenario.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from runtime.store import StoreSpec
from sim.randomize import TripConfig, random_scenario, scenario_to_dict
from sim.simulator import CameraConfig, SimConfig, Simulator
from twin.bodies import COCO_KEYPOINTS, COCO_SKELETON
from twin.camera_effects import (CameraEffectsConfig, FrameEffects, codec_available, draw_camera, draw_frame,
                                 kelvin_rgb)
from twin.camera_effects import apply as apply_camera
from twin.lighting import LightingPreset
from twin.textures import KINDS as TEXTURE_KINDS

FLIP_IDX = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
SHARD_FORMAT = 1


@dataclass(frozen=True)
class Randomisation:
    """Domain randomisation, drawn once per scenario (image effects once per image)."""

    lighting: tuple[str, ...] = ("day", "day", "evening", "flicker")   # drawn uniformly from this list
    light_scale: tuple[float, float] = (0.6, 1.4)      # ceiling and ambient light intensity factor
    light_kelvin: Optional[tuple[float, float]] = (2700.0, 6500.0)   # the lights' colour temperature; None: the preset's colour
    camera_jitter_m: float = 0.04                      # std of each camera's position error
    camera_look_jitter_m: float = 0.12                 # std of its aim point error (≈ 2° at 3 m)
    packaging_jitter: bool = True                      # print colours vary from the catalog's
    planogram_p: float = 0.5                           # share of scenarios whose shelves are restocked at random
    textures: tuple[str, ...] = TEXTURE_KINDS          # kinds drawn for floor, walls and fixtures; empty: the twin's colours
    textures_p: float = 0.8                            # share of those surfaces that get one
    clutter: tuple[int, int] = (0, 8)                  # unlabelled props (boxes, crates, signs)
    distractors: tuple[int, int] = (0, 8)              # textured props: mats, balls, cones in the aisles; bins, boxes, stands
    posters: tuple[int, int] = (0, 6)                  # on the walls' inner faces
    background: bool = True                            # ground, boxes and a colour outside the walls
    noise_sigma: tuple[float, float] = (0.0, 0.0)      # extra Gaussian noise on the rendered image, grey levels
    motion_blur_p: float = 0.3                         # share of images with linear motion blur
    motion_blur_px: tuple[int, int] = (3, 9)           # its length
    jpeg_quality: tuple[int, int] = (80, 95)
    free_views: tuple[int, int] = (1, 3)                # extra cameras anywhere in the store, eye level to ceiling
    free_view_height_m: tuple[float, float] = (1.1, 3.0)  # ... mounted this high
    free_view_hfov_deg: tuple[float, float] = (40.0, 95.0)  # ... with this horizontal field of view
    camera: CameraEffectsConfig = field(default_factory=CameraEffectsConfig)   # each camera's character (twin.camera_effects)

    def __post_init__(self) -> None:
        """One line naming the setting and what is expected (the ``camera`` block checks itself)."""
        bad = [x for x in self.lighting if x not in ("day", "evening", "flicker")]
        if not self.lighting or bad:
            raise ValueError(f"lighting: {bad or '[]'}: expected a list of lighting presets (day, evening, flicker)")
        bad = [x for x in self.textures if x not in TEXTURE_KINDS]
        if bad:
            raise ValueError(f"textures: {bad} are not texture kinds ({', '.join(TEXTURE_KINDS)}); [] for none")

        def rng_(name: str, lo: float, hi: float, integer: bool = False) -> None:
            r = tuple(getattr(self, name))
            ok = len(r) == 2 and all(isinstance(v, int if integer else (int, float)) for v in r) and lo <= r[0] <= r[1] <= hi
            if not ok:
                raise ValueError(f"{name}={list(r)!r}: expected [low, high] with {lo:g} ≤ low ≤ high ≤ {hi:g}"
                                 + (", whole numbers" if integer else ""))

        rng_("light_scale", 0.0, 10.0)
        if self.light_kelvin is not None:
            rng_("light_kelvin", 1667.0, 25000.0)
        for name, hi in (("clutter", 200), ("distractors", 200), ("posters", 100)):
            rng_(name, 0, hi, integer=True)
        rng_("noise_sigma", 0.0, 100.0)
        rng_("free_views", 0, 20, integer=True)
        rng_("free_view_height_m", 0.2, 10.0)
        rng_("free_view_hfov_deg", 10.0, 170.0)
        rng_("motion_blur_px", 1, 99, integer=True)
        rng_("jpeg_quality", 1, 100, integer=True)
        for name in ("textures_p", "motion_blur_p", "planogram_p"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v!r}: expected a probability in [0, 1]")
        for name in ("camera_jitter_m", "camera_look_jitter_m"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v!r}: expected metres in [0, 1]")


@dataclass(frozen=True)
class DatagenConfig:
    store: str = "small_convenience"
    seed: int = 0
    shards: int = 4
    scenarios_per_shard: int = 1
    shoppers: tuple[int, int] = (2, 6)           # per scenario, drawn uniformly (inclusive)
    duration_s: float = 40.0                     # per scenario
    sample_every_s: float = 1.0                  # render each camera at this interval
    cameras: tuple[str, ...] = ()                # empty = all of the store's
    min_shift_px: float = 12.0                   # near-duplicate: nothing moved this far since the camera's last kept frame
    background_p: float = 0.05                   # keep a frame with nobody in it with this probability
    bodies: str = "anny"                         # people: anny (smooth, dressed) | blocks (low-poly segments)
    min_person_pixels: int = 150                 # smaller (or more hidden) people are not labelled
    min_product_pixels: int = 25
    exact_product_masks: bool = True             # product boxes from per-item masks (slower, exact)
    val_fraction: float = 0.2
    product_crops: int = 2                       # products/: crops per image at full resolution (0: none)
    person_zoom: int = 0                         # pose/ train: close-ups per image of one person (0: none)
    crop_px: int = 320                           # their size
    jobs: int = 2                                # shards made at once
    launcher: str = "joblib"                     # joblib (hydra multirun) | ray | serial
    ray_address: Optional[str] = None            # ray: an existing cluster ("auto", "ray://host:10001"); none = start one here
    randomise: Randomisation = field(default_factory=Randomisation)
    trips: TripConfig = field(default_factory=lambda: TripConfig(burst_rate=0.0))  # evenly spread, as the shipped datasets

    def settings_hash(self) -> str:
        """What makes the dataset's content: everything except how it is launched."""
        d = dataclasses.asdict(self)
        for k in ("shards", "jobs", "launcher", "ray_address", "product_crops", "crop_px", "person_zoom"):   # not in the shards
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def classes(store: StoreSpec) -> list[str]:
    """Detection classes: person, then the catalog's SKUs in catalog order."""
    return ["person", *[p.sku for p in store.catalog]]


def scenario_split(index: int, n_scenarios: int, val_fraction: float) -> str:
    """Every k-th scenario is validation (k = 1 / val_fraction); with fewer than k scenarios, the
    last one, so that any dataset of two or more scenarios has both splits."""
    if val_fraction <= 0 or n_scenarios < 2:
        return "train"
    k = max(2, round(1 / val_fraction))
    return "val" if index % k == k - 1 or (n_scenarios < k and index == n_scenarios - 1) else "train"


def scenario_seed(cfg: DatagenConfig, index: int) -> int:
    return cfg.seed * 1_000_003 + index


# -- domain randomisation ------------------------------------------------------------------------
def jitter_cameras(store: StoreSpec, rng: np.random.Generator, pos_m: float, look_m: float) -> StoreSpec:
    """The same store seen by cameras whose mounting is a little off (labels follow the cameras)."""
    if pos_m <= 0 and look_m <= 0:
        return store
    d = store.model_dump()
    for c in d["cameras"]:
        c["position_m"] = list(np.asarray(c["position_m"]) + rng.normal(0, pos_m, 3))
        c["look_at_m"] = list(np.asarray(c["look_at_m"]) + rng.normal(0, look_m, 3))
    return type(store).model_validate(d)


def shuffle_planogram(store: StoreSpec, rng: np.random.Generator) -> StoreSpec:
    """The same shelves restocked at random: every bin of the planogram gets a SKU drawn from a
    shuffled round of the catalog (the next one that fits the bin) with 1–3 facings and 1–3 rows as
    they fit. Each pack is then seen on other shelves, at other heights and by other cameras than
    the store's own planogram puts it, so the product model learns the pack and not where it stands."""
    bins = store.bins
    skus = [p.sku for p in store.catalog]
    queue: list[str] = []
    plan = {}
    for bid in store.planogram:
        b = bins[bid]
        fits = [s for s in skus if store.products[s].size_m[0] <= b.width_m and store.products[s].size_m[1] <= b.unit.depth_m
                and store.products[s].size_m[2] <= b.z1 - b.z0]
        if not fits:
            plan[bid] = store.planogram[bid]
            continue
        if not any(s in fits for s in queue):
            queue += [skus[i] for i in rng.permutation(len(skus))]
        sku = next(s for s in queue if s in fits)
        queue.remove(sku)
        size = store.products[sku].size_m
        facings = min(int(b.width_m // size[0]), int(rng.integers(1, 4)))
        depth = min(int(b.unit.depth_m // size[1]), int(rng.integers(1, 4)))
        plan[bid] = {"sku": sku, "facings": facings, "depth": depth}
    d = store.model_dump()
    d["planogram"] = {k: v if isinstance(v, dict) else v.model_dump() for k, v in plan.items()}
    return type(store).model_validate(d)


def free_views(store: StoreSpec, rng: np.random.Generator, r: Randomisation) -> StoreSpec:
    """The store with a few extra cameras ``view_1`` … placed anywhere on the floor (never inside a
    shelf unit), from eye level to the ceiling, looking across the store at a point 0.6–1.4 m high
    at least 1.5 m away: people seen from the side and the front, as photographs and other stores'
    cameras see them, and not only from the ceiling."""
    n = int(rng.integers(r.free_views[0], r.free_views[1] + 1))
    if n <= 0:
        return store
    W, D = store.floor.width_m, store.floor.depth_m
    units = [(u.world_to_local(), u.width_m / 2 + 0.3, u.depth_m / 2 + 0.3) for u in store.units]

    def free(xy: np.ndarray) -> bool:
        for M, hw, hd in units:
            p = M @ np.array([xy[0], xy[1], 0.0, 1.0])
            if abs(p[0]) < hw and abs(p[1]) < hd:
                return False
        return True

    d = store.model_dump()
    d["cameras"] = list(d["cameras"])
    res = store.cameras[0].resolution     # one GL context per image size: the store's own size
    for k in range(n):
        for _ in range(30):
            eye = np.array([rng.uniform(0.3, W - 0.3), rng.uniform(0.3, D - 0.3)])
            at = np.array([rng.uniform(0.5, W - 0.5), rng.uniform(0.5, D - 0.5)])
            if np.linalg.norm(at - eye) >= 1.5 and free(eye):
                break
        d["cameras"].append({"id": f"view_{k + 1}", "position_m": [*eye, float(rng.uniform(*r.free_view_height_m))],
                             "look_at_m": [*at, float(rng.uniform(0.6, 1.4))], "resolution": list(res),
                             "hfov_deg": float(rng.uniform(*r.free_view_hfov_deg))})
    return type(store).model_validate(d)


def lighting_preset(r: Randomisation, rng: np.random.Generator) -> LightingPreset:
    base = LightingPreset.named(str(rng.choice(list(r.lighting))))
    s = float(rng.uniform(*r.light_scale))
    return dataclasses.replace(base, ceiling_intensity=base.ceiling_intensity * s, ambient=min(1.0, base.ambient * s))


def clutter(store: StoreSpec, rng: np.random.Generator, n: int) -> list:
    """Unlabelled props: cardboard boxes and crates along the walls and at the foot of the shelves,
    and hanging promotion signs. They only occlude; the shoppers' physics does not know them."""
    import trimesh

    W, D = store.floor.width_m, store.floor.depth_m
    props = []
    for _ in range(n):
        kind = rng.choice(["box", "crate", "sign"], p=[0.5, 0.25, 0.25])
        if kind == "sign":
            size = [rng.uniform(0.4, 0.9), 0.01, rng.uniform(0.2, 0.45)]
            xy = [rng.uniform(0.5, W - 0.5), rng.uniform(0.8, D - 0.8)]
            z = rng.uniform(2.0, 2.4)
        else:
            size = [rng.uniform(0.25, 0.6), rng.uniform(0.2, 0.45), rng.uniform(0.15, 0.5)]
            if rng.random() < 0.5 and store.units:   # at the foot of a shelf unit
                u = store.units[int(rng.integers(len(store.units)))]
                n_ = u.front_normal()
                c = u.footprint_xy().mean(axis=0)
                along = np.array([-n_[1], n_[0]])
                xy = c + n_ * (u.depth_m / 2 + size[1] / 2 + 0.02) + along * rng.uniform(-0.7, 0.7) * u.width_m / 2
            else:                                     # along a wall
                side = rng.integers(3)
                t = rng.uniform(0.3, 0.7 * (W if side != 1 else D))
                xy = [[t, D - 0.3], [W - 0.3, t], [0.3, t]][side] if side else [rng.uniform(0.3, W - 0.3), D - 0.3]
            z = size[2] / 2
        m = trimesh.creation.box(extents=size)
        T = np.eye(4)
        yaw = rng.uniform(0, np.pi)
        T[:3, :3] = trimesh.transformations.rotation_matrix(yaw, [0, 0, 1])[:3, :3]
        T[:3, 3] = [xy[0], xy[1], z]
        m.apply_transform(T)
        base = {"box": (170, 130, 85), "crate": (40, 90, 160), "sign": (230, 60, 50)}[kind]
        rgb = np.clip(np.array(base) + rng.normal(0, 25, 3), 0, 255).astype(np.uint8)
        m.visual = trimesh.visual.ColorVisuals(m, face_colors=np.tile([*rgb, 255], (len(m.faces), 1)))
        props.append(m)
    return props


def light_colour(light: LightingPreset, r: Randomisation, rng: np.random.Generator) -> tuple[LightingPreset, float | None]:
    """The preset with its lights' colour (ceiling and daylight) from a colour temperature drawn
    from ``r.light_kelvin``; unchanged when that is None."""
    if r.light_kelvin is None:
        return light, None
    k = float(rng.uniform(*r.light_kelvin))
    return dataclasses.replace(light, colour=tuple(round(float(c), 4) for c in kelvin_rgb(k))), round(k)


@dataclass
class Dressing:
    """One scenario's look of the store (``twin.dressing``): its static meshes (None: the twin's
    own), the textured props to add (the ground outside the walls; the distractors, posters and
    boxes outside as one atlas mesh), the background colour, and what was drawn."""

    static: list | None
    props: list
    background_rgb: np.ndarray | None
    meta: dict


def dress_store(store: StoreSpec, r: Randomisation, look_rng: np.random.Generator,
                prop_rng: np.random.Generator) -> Dressing:
    """Textures from ``look_rng``; distractors, posters and the outside from ``prop_rng``, whose
    draws (placements, and a seed for each one's look) do not depend on the texture settings, so
    the same seed gives the same geometry, and so the same labels, with textures on or off."""
    from twin import dressing as dr

    look = dr.draw_store_look(look_rng, r.textures, r.textures_p) if r.textures and r.textures_p > 0 else {}
    static = dr.dressed_static_meshes(store, look) if look else None
    kinds = r.textures or ("flat",)
    items = dr.distractors(store, prop_rng, int(prop_rng.integers(r.distractors[0], r.distractors[1] + 1)), kinds)
    n_items = len(items)
    n_posters = int(prop_rng.integers(r.posters[0], r.posters[1] + 1))
    items += dr.posters(store, prop_rng, n_posters)
    n_posters = len(items) - n_items
    props, bg = [], None
    if r.background:
        items += dr.background_props(store, prop_rng, kinds)
        props.append(dr.outside_ground(store, np.random.default_rng(prop_rng.integers(2 ** 63)), kinds))
        bg = dr.background_colour(np.random.default_rng(prop_rng.integers(2 ** 63)))
    atlas = dr.atlas_mesh(items)
    if atlas is not None:
        props.append(atlas)
    meta = {"surfaces": {s: v.kind for s, v in look.items()}, "distractors": n_items, "posters": n_posters,
            "background": bool(r.background)}
    return Dressing(static, props, bg, meta)


def degrade(bgr: np.ndarray, r: Randomisation, rng: np.random.Generator) -> tuple[np.ndarray, int, dict]:
    """Sensor effects on the rendered image: motion blur, noise; returns the JPEG quality too."""
    img = bgr
    info: dict = {}
    if rng.random() < r.motion_blur_p:
        n = int(rng.integers(r.motion_blur_px[0], r.motion_blur_px[1] + 1))
        k = np.zeros((n, n), np.float32)
        k[n // 2, :] = 1.0 / n
        ang = float(rng.uniform(0, 180))
        k = cv2.warpAffine(k, cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), ang, 1.0), (n, n))
        img = cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))
        info["motion_blur"] = [n, round(ang, 1)]
    sigma = float(rng.uniform(*r.noise_sigma))
    if sigma > 0:
        # OpenCV's generator, seeded from the image's stream: a frame of Gaussian noise in 32-bit
        # floats in a few milliseconds (numpy's 64-bit normals took a third of a labelled image's time)
        noise = np.empty(img.shape, np.float32)
        cv2.setRNGSeed(int(rng.integers(2 ** 31)))
        cv2.randn(noise.reshape(-1), 0.0, sigma)   # one channel: a scalar sigma fills only the first of three
        noise += img
        img = np.clip(noise, 0, 255, out=noise).astype(np.uint8)
        info["noise_sigma"] = round(sigma, 2)
    return img, int(rng.integers(r.jpeg_quality[0], r.jpeg_quality[1] + 1)), info


# -- labels ----------------------------------------------------------------------------------------
def frame_labels(truth, instance_skus: list[str], w: int, h: int, cfg: DatagenConfig) -> dict:
    """The labels of one rendered frame: visible boxes, keypoints (u, v, visibility 0/1/2)."""
    lim = np.array([w, h, w, h], float)
    persons = []
    for pid, box, pix, kp in zip(truth.person_ids, truth.person_boxes, truth.person_pixels, truth.keypoints):
        box = np.clip(box, 0, lim)
        if pix < cfg.min_person_pixels or box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        persons.append({"id": int(pid), "box": [round(float(v), 1) for v in box],
                        "keypoints": [[round(float(u), 1), round(float(v), 1), int(vis)] for u, v, vis in kp]})
    products = []
    for inst, box, pix in zip(truth.product_ids, truth.product_boxes, truth.product_pixels):
        box = np.clip(box, 0, lim)
        # exact masks count pixels; the depth test counts seen surface samples (of 150) instead
        area = pix if cfg.exact_product_masks else (box[2] - box[0]) * (box[3] - box[1]) * (pix >= 4)
        if area < cfg.min_product_pixels or box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        products.append({"sku": instance_skus[int(inst)], "instance": int(inst), "box": [round(float(v), 1) for v in box]})
    return {"persons": persons, "products": products}


def near_duplicate(a: dict | None, b: dict, min_shift_px: float) -> bool:
    """Nothing moved ``min_shift_px`` between two frames of one camera, and nobody came or went."""
    if a is None:
        return False
    pa = {p["id"]: np.array(p["box"]) for p in a["persons"]}
    pb = {p["id"]: np.array(p["box"]) for p in b["persons"]}
    if set(pa) != set(pb):
        return False
    qa = {p["instance"]: np.array(p["box"]) for p in a["products"]}
    qb = {p["instance"]: np.array(p["box"]) for p in b["products"]}
    if set(qa) != set(qb):
        return False
    moved = [np.abs(pa[k] - pb[k]).max() for k in pa] + [np.abs(qa[k] - qb[k]).max() for k in qa]
    return not moved or max(moved) < min_shift_px


# -- one shard -----------------------------------------------------------------------------------
def shard_dir(out: Path, shard: int) -> Path:
    return Path(out) / "shards" / f"shard_{shard:05d}"


def shard_done(out: Path, shard: int, settings_hash: str) -> bool:
    f = shard_dir(out, shard) / "shard.json"
    return f.is_file() and json.loads(f.read_text()).get("settings_hash") == settings_hash


def generate_shard(cfg: DatagenConfig, out: Path, shard: int, store_dir: Path, progress: bool = True) -> dict:
    """Make one shard (its scenarios, images and labels) unless it is already complete."""
    from tqdm import tqdm

    from runtime.store import load_store
    from twin.renderer import StoreRenderer

    out = Path(out)
    final = shard_dir(out, shard)
    if shard_done(out, shard, cfg.settings_hash()):
        return json.loads((final / "shard.json").read_text())
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    store = base_store = load_store(Path(store_dir) / f"{cfg.store}.yaml")
    n_total = cfg.shards * cfg.scenarios_per_shard
    r = cfg.randomise
    t0 = time.perf_counter()
    records, scen_meta, rendered = [], [], 0
    try:
        for k in range(cfg.scenarios_per_shard):
            g = shard * cfg.scenarios_per_shard + k
            split = scenario_split(g, n_total, cfg.val_fraction)
            rng = np.random.default_rng([cfg.seed, g, 20261125])
            n_shoppers = int(rng.integers(cfg.shoppers[0], cfg.shoppers[1] + 1))
            seed = scenario_seed(cfg, g)
            plan_rng = np.random.default_rng([cfg.seed, g, 20261125, 4])   # a stream of its own, as the look's
            if plan_rng.random() < r.planogram_p:
                store = shuffle_planogram(base_store, plan_rng)
            else:
                store = base_store
            sc = random_scenario(store, cfg.store, seed, n_shoppers, cfg.duration_s, cfg.trips, store_dir=store_dir,
                                own_spec=store is not base_store)
            light = lighting_preset(r, rng)
            sc = dataclasses.replace(sc, lighting=light.name)
            # The store's look, the distractors and the cameras' character each draw from a stream of
            # their own: turning one on or off changes nothing else a seed draws (the labels least of all).
            look_rng, prop_rng, cam_rng = (np.random.default_rng([cfg.seed, g, 20261125, stream]) for stream in (1, 2, 3))
            light, kelvin = light_colour(light, r, look_rng)
            dressing = dress_store(store, r, look_rng, prop_rng)
            cam_store = jitter_cameras(store, rng, r.camera_jitter_m, r.camera_look_jitter_m)
            cams = list(cfg.cameras) or [c.id for c in store.cameras]
            unknown = [c for c in cams if c not in store.camera_by_id]
            if unknown:
                raise ValueError(f"datagen.cameras: {unknown} are not cameras of store '{store.name}'")
            cam_store = free_views(cam_store, rng, r)
            cams += [c.id for c in cam_store.cameras if c.id not in store.camera_by_id]
            sim = Simulator(store, sc, SimConfig(camera=CameraConfig(render=False), load_cells=False))
            skus = [i.sku for i in sim.world.instances]
            renderer = StoreRenderer(cam_store, skus, light, seed=seed,
                                     packaging_rng=np.random.default_rng(seed) if r.packaging_jitter else None,
                                     static_meshes=dressing.static)
            renderer.bodies = cfg.bodies
            n_props = int(rng.integers(r.clutter[0], r.clutter[1] + 1))
            renderer.add_props(clutter(store, rng, n_props))
            for m in dressing.props:        # each its own texture: one node each
                renderer.add_props([m])
            if dressing.background_rgb is not None:
                renderer.set_background(dressing.background_rgb)
            looks = {c: draw_camera(r.camera, cam_rng) for c in cams}
            last_fx: dict[str, FrameEffects] = {}
            last: dict[str, dict] = {}
            next_t = float(rng.uniform(0, cfg.sample_every_s))
            bar = tqdm(total=round(cfg.duration_s), unit="sim s", disable=not progress, leave=False,
                       desc=f"shard {shard} scenario {g}", position=shard % max(cfg.jobs, 1))
            shown = samples = 0
            try:
                for _ in sim.run(every_step=True):
                    if sim.t + 1e-9 < next_t:
                        continue
                    next_t += cfg.sample_every_s
                    samples += 1
                    if int(sim.t) > shown:
                        bar.update(int(sim.t) - shown)
                        shown = int(sim.t)
                        bar.set_postfix(images=len(records), refresh=False)
                    state = sim.scene_state()
                    if not state.shoppers and rng.random() >= cfg.background_p:
                        continue
                    renderer.set_state(state)
                    for cam_id in cams:
                        cam = cam_store.camera_by_id[cam_id]
                        o = renderer.render(cam_id, masks="all" if cfg.exact_product_masks else "persons")
                        rendered += 1
                        lab = frame_labels(renderer.truth(cam_id, state, o), skus, cam.width, cam.height, cfg)
                        if not lab["persons"] and (state.shoppers and rng.random() >= cfg.background_p):
                            continue
                        if near_duplicate(last.get(cam_id), lab, cfg.min_shift_px):
                            continue
                        last[cam_id] = lab
                        img, q, fx = degrade(o.bgr, r, rng)
                        cfx = last_fx[cam_id] = draw_frame(r.camera, looks[cam_id], cam_rng, last_fx.get(cam_id))
                        img = apply_camera(img, cfx)
                        name = f"s{g:05d}_{cam_id}_{round(sim.t * 1000):07d}.jpg"
                        cv2.imwrite(str(tmp / "images" / name), img, [cv2.IMWRITE_JPEG_QUALITY, q])
                        records.append({"file": f"images/{name}", "width": cam.width, "height": cam.height,
                                        "scenario": sc.name, "scenario_index": g, "split": split, "camera": cam_id,
                                        "t": round(sim.t, 3), "effects": {**fx, "jpeg_quality": q, "camera": cfx.as_dict()}, **lab})
            finally:
                bar.close()
                renderer.close()
                sim.close()
            scen_meta.append({"index": g, "seed": seed, "split": split, "shoppers": n_shoppers, "samples": samples,
                              "lighting": dataclasses.asdict(light), "light_kelvin": kelvin, "props": n_props, "restocked": store is not base_store,
                              "look": dressing.meta, "cameras": {c: dataclasses.asdict(v) for c, v in looks.items()},
                              "scenario": scenario_to_dict(sc)})
        with open(tmp / "labels.jsonl", "w") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
        summary = {"format": SHARD_FORMAT, "shard": shard, "settings_hash": cfg.settings_hash(), "scenarios": scen_meta,
                   "images": len(records), "rendered": rendered, "wall_s": round(time.perf_counter() - t0, 2)}
        (tmp / "shard.json").write_text(json.dumps(summary, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


# -- export ----------------------------------------------------------------------------------------
def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _yolo_box(box, w: int, h: int) -> str:
    x0, y0, x1, y1 = box
    return f"{(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"


def _yolo_keypoints(kps, w: int, h: int) -> str:
    parts = []
    for u, v, vis in kps:
        parts.append(f"{u / w:.6f} {v / h:.6f} 2" if vis == 2 else "0 0 0")
    return " ".join(parts)


def load_records(out: Path) -> list[dict]:
    recs = []
    for d in sorted((Path(out) / "shards").glob("shard_?????")):
        with open(d / "labels.jsonl") as f:
            for line in f:
                r = json.loads(line)
                r["path"] = str(d / r["file"])
                recs.append(r)
    return recs


def export(out: Path, cfg: DatagenConfig, store: StoreSpec) -> dict:
    """Build detect/, pose/, coco/, the card and the mosaic from every complete shard."""
    out = Path(out)
    names = classes(store)
    cls_of = {n: i for i, n in enumerate(names)}
    recs = load_records(out)
    # A layout already built from these very shards is left alone (a model may be training on it).
    sig = {"format": SHARD_FORMAT, "settings_hash": cfg.settings_hash(),
           "shards": sorted({Path(r["path"]).parent.parent.name for r in recs})}
    rebuild = any(_export_sig(out / sub) != sig for sub in ("detect", "pose", "coco"))
    if rebuild:
        for sub in ("detect", "pose", "coco"):
            shutil.rmtree(out / sub, ignore_errors=True)
    counts = {s: {"images": 0, "instances": {n: 0 for n in names}, "scenarios": set()} for s in ("train", "val")}
    coco = {s: {"images": [], "annotations": []} for s in ("train", "val")}
    for task in ("detect", "pose"):
        for s in ("train", "val"):
            (out / task / "images" / s).mkdir(parents=True, exist_ok=True)
            (out / task / "labels" / s).mkdir(parents=True, exist_ok=True)
    ann_id = 0
    for i, r in enumerate(recs):
        s, w, h = r["split"], r["width"], r["height"]
        stem = f"{Path(r['path']).parent.parent.name}_{Path(r['file']).stem}"
        det, pose = [], []
        for p in r["persons"]:
            det.append(f"0 {_yolo_box(p['box'], w, h)}")
            pose.append(f"0 {_yolo_box(p['box'], w, h)} {_yolo_keypoints(p['keypoints'], w, h)}")
            counts[s]["instances"]["person"] += 1
        for q in r["products"]:
            det.append(f"{cls_of[q['sku']]} {_yolo_box(q['box'], w, h)}")
            counts[s]["instances"][q["sku"]] += 1
        for task, lines in (("detect", det), ("pose", pose)) if rebuild else ():
            _link(Path(r["path"]), out / task / "images" / s / f"{stem}.jpg")
            (out / task / "labels" / s / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        counts[s]["images"] += 1
        counts[s]["scenarios"].add(r["scenario_index"])
        coco[s]["images"].append({"id": i, "file_name": f"detect/images/{s}/{stem}.jpg", "width": w, "height": h,
                                  "camera": r["camera"], "t": r["t"], "scenario": r["scenario"]})
        for p in r["persons"]:
            x0, y0, x1, y1 = p["box"]
            kp = []
            for u, v, vis in p["keypoints"]:
                kp += [u, v, int(vis)] if vis else [0, 0, 0]
            coco[s]["annotations"].append({"id": ann_id, "image_id": i, "category_id": 0, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                           "area": (x1 - x0) * (y1 - y0), "iscrowd": 0, "keypoints": kp,
                                           "num_keypoints": sum(1 for *_, v in p["keypoints"] if v == 2)})
            ann_id += 1
        for q in r["products"]:
            x0, y0, x1, y1 = q["box"]
            coco[s]["annotations"].append({"id": ann_id, "image_id": i, "category_id": cls_of[q["sku"]],
                                           "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
            ann_id += 1
    cats = [{"id": 0, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS),
             "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}]
    cats += [{"id": cls_of[p.sku], "name": p.sku, "supercategory": "product"} for p in store.catalog]
    (out / "coco").mkdir(exist_ok=True)
    for s in ("train", "val") if rebuild else ():
        (out / "coco" / f"instances_{s}.json").write_text(json.dumps(
            {"info": {"description": f"storetwin synthetic data, store {store.name}", "version": cfg.settings_hash()},
             "images": coco[s]["images"], "annotations": coco[s]["annotations"], "categories": cats}))
    import yaml

    if rebuild:
        (out / "detect" / "data.yaml").write_text(yaml.safe_dump(
            {"train": "images/train", "val": "images/val", "names": dict(enumerate(names))}, sort_keys=False))
        (out / "pose" / "data.yaml").write_text(yaml.safe_dump(
            {"train": "images/train", "val": "images/val", "kpt_shape": [17, 3], "flip_idx": FLIP_IDX,
             "names": {0: "person"}}, sort_keys=False))
    for s in counts:
        counts[s]["scenarios"] = sorted(counts[s]["scenarios"])
    for sub in ("detect", "pose", "coco"):
        (out / sub / "export.json").write_text(json.dumps(sig))
    crops = export_product_crops(out, cfg, store, recs, sig) if cfg.product_crops > 0 else None
    zoom = export_person_zoom(out, cfg, recs)
    return {"counts": counts, "records": recs, "classes": names, "product_crops": crops, "person_zoom": zoom}


def export_person_zoom(out: Path, cfg: DatagenConfig, recs: list[dict]) -> int:
    """Close-ups into ``pose/`` (training split only; ``*_z<k>.jpg``): ``person_zoom`` crops per
    image, each round one person at least 48 px tall, who fills 45–110 % of the crop's height (a crop
    is at least 160 px high: a smaller person fills less of it), or,
    one time in three, round the upper body so that the crop cuts them at the waist as a photograph
    does. Everyone at least a fifth inside is labelled: the box clipped to the crop, keypoints outside
    it unlabelled. The crops are at the camera's resolution, scaled down to at most 640 px wide.
    Written again at each export (the others' files are kept); returns how many."""
    root = Path(out) / "pose"
    for f in (root / "images" / "train").glob("*_z[0-9]*.jpg"):
        f.unlink()
        (root / "labels" / "train" / f"{f.stem}.txt").unlink(missing_ok=True)
    if cfg.person_zoom <= 0 or not (root / "images" / "train").is_dir():
        return 0
    rng = np.random.default_rng([cfg.seed, 5])
    n = 0
    for r in recs:
        tall = [p for p in r["persons"] if p["box"][3] - p["box"][1] >= 48]
        if r["split"] != "train" or not tall:
            continue
        w, h = r["width"], r["height"]
        img = None
        for k in range(cfg.person_zoom):
            b = np.array(tall[int(rng.integers(len(tall)))]["box"], float)
            bw, bh = b[2] - b[0], b[3] - b[1]
            upper = rng.random() < 1 / 3
            ch = min(max(bh * (rng.uniform(0.55, 0.9) if upper else 1.0) / rng.uniform(0.45, 1.1), 160.0), h)
            cw = min(ch * 4 / 3, w)
            ch = min(ch, cw * 3 / 4)
            cy = b[1] + (0.3 if upper else 0.5) * bh + rng.uniform(-0.15, 0.15) * ch
            cx = (b[0] + b[2]) / 2 + rng.uniform(-0.25, 0.25) * cw
            x0 = int(np.clip(cx - cw / 2, 0, w - cw))
            y0 = int(np.clip(cy - ch / 2, 0, h - ch))
            cw, ch = int(cw), int(ch)
            lines = []
            for p in r["persons"]:
                bx = np.array(p["box"], float)
                cb = np.clip(bx - [x0, y0, x0, y0], 0, [cw, ch, cw, ch])
                area = (bx[2] - bx[0]) * (bx[3] - bx[1])
                if (cb[2] - cb[0]) * (cb[3] - cb[1]) < 0.2 * area or cb[2] - cb[0] < 4 or cb[3] - cb[1] < 4:
                    continue
                kps = [(u - x0, v - y0, vis if 0 <= u - x0 < cw and 0 <= v - y0 < ch else 0) for u, v, vis in p["keypoints"]]
                lines.append(f"0 {_yolo_box(cb, cw, ch)} {_yolo_keypoints(kps, cw, ch)}")
            if not lines:
                continue
            if img is None:
                img = cv2.imread(r["path"])
            crop = img[y0:y0 + ch, x0:x0 + cw]
            if cw > 640:
                crop = cv2.resize(crop, (640, round(ch * 640 / cw)), interpolation=cv2.INTER_AREA)
            stem = f"{Path(r['path']).parent.parent.name}_{Path(r['file']).stem}_z{k}"
            cv2.imwrite(str(root / "images" / "train" / f"{stem}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
            (root / "labels" / "train" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
            n += 1
    return n


def _export_sig(folder: Path) -> dict | None:
    f = folder / "export.json"
    return json.loads(f.read_text()) if f.is_file() else None


def export_product_crops(out: Path, cfg: DatagenConfig, store: StoreSpec, recs: list[dict], sig: dict) -> dict:
    """``products/``: a YOLO detection dataset of every SKU on ``crop_px`` crops at the cameras'
    full resolution — one round a hand (a visible wrist) when there is one, the others round a
    random product — so small items stay as many pixels as the camera gives them. A box is kept
    when 60% of it lies in the crop."""
    sig = {**sig, "product_crops": cfg.product_crops, "crop_px": cfg.crop_px}
    root = Path(out) / "products"
    skus = [p.sku for p in store.catalog]
    cls_of = {s: i for i, s in enumerate(skus)}
    counts = {s: {"images": 0, "instances": 0} for s in ("train", "val")}
    if _export_sig(root) == sig:
        for s in counts:
            counts[s]["images"] = len(list((root / "images" / s).glob("*.jpg")))
        return counts
    shutil.rmtree(root, ignore_errors=True)
    for s in ("train", "val"):
        (root / "images" / s).mkdir(parents=True)
        (root / "labels" / s).mkdir(parents=True)
    rng = np.random.default_rng([cfg.seed, 4])
    C = cfg.crop_px
    for r in recs:
        if not r["products"]:
            continue
        w, h, s = r["width"], r["height"], r["split"]
        centres = []
        wrists = [kp[:2] for p in r["persons"] for kp in (p["keypoints"][9], p["keypoints"][10]) if kp[2] == 2]
        if wrists:
            centres.append(np.array(wrists[int(rng.integers(len(wrists)))]) + rng.normal(0, 40, 2))
        while len(centres) < cfg.product_crops:
            b = r["products"][int(rng.integers(len(r["products"])))]["box"]
            centres.append(np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]) + rng.uniform(-C / 3, C / 3, 2))
        img = None
        for k, c in enumerate(centres[: cfg.product_crops]):
            x0 = int(np.clip(c[0] - C / 2, 0, max(w - C, 0)))
            y0 = int(np.clip(c[1] - C / 2, 0, max(h - C, 0)))
            cw, ch = min(C, w), min(C, h)
            lines = []
            for q in r["products"]:
                bx = np.array(q["box"], float)
                area = (bx[2] - bx[0]) * (bx[3] - bx[1])
                cb = np.clip(bx - [x0, y0, x0, y0], 0, [cw, ch, cw, ch])
                if (cb[2] - cb[0]) * (cb[3] - cb[1]) < 0.6 * area or cb[2] - cb[0] < 2 or cb[3] - cb[1] < 2:
                    continue
                lines.append(f"{cls_of[q['sku']]} {_yolo_box(cb, cw, ch)}")
            if not lines:
                continue
            if img is None:
                img = cv2.imread(r["path"])
            stem = f"{Path(r['path']).parent.parent.name}_{Path(r['file']).stem}_c{k}"
            cv2.imwrite(str(root / "images" / s / f"{stem}.jpg"), img[y0:y0 + ch, x0:x0 + cw], [cv2.IMWRITE_JPEG_QUALITY, 95])
            (root / "labels" / s / f"{stem}.txt").write_text("\n".join(lines) + "\n")
            counts[s]["images"] += 1
            counts[s]["instances"] += len(lines)
    import yaml

    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/val",
                                                    "names": dict(enumerate(skus))}, sort_keys=False))
    (root / "export.json").write_text(json.dumps(sig))
    return counts


def mosaic(records: list[dict], path: Path, n: int = 16, seed: int = 0, tile_w: int = 400) -> Path | None:
    """A grid of labelled samples: person boxes and skeletons, product boxes with their SKU."""
    from harness.contact_sheet import contact_sheet

    if not records:
        return None
    rng = np.random.default_rng(seed)
    by_cam: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: (-len(r["persons"]), rng.random())):   # busiest frames first
        by_cam.setdefault(r["camera"], []).append(r)
    pick: list[dict] = []
    while len(pick) < n and any(by_cam.values()):       # round robin over the cameras
        for cam in sorted(by_cam):
            if by_cam[cam] and len(pick) < n:
                pick.append(by_cam[cam].pop(0))
    tiles = []
    for r in pick[:n]:
        img = cv2.imread(r["path"])
        for q in r["products"]:
            x0, y0, x1, y1 = map(int, q["box"])
            cv2.rectangle(img, (x0, y0), (x1, y1), (0, 200, 255), 1)
        for p in r["persons"]:
            x0, y0, x1, y1 = map(int, p["box"])
            cv2.rectangle(img, (x0, y0), (x1, y1), (60, 255, 60), 2)
            kp = p["keypoints"]
            for a, b in COCO_SKELETON:
                if kp[a][2] == 2 and kp[b][2] == 2:
                    cv2.line(img, tuple(map(int, kp[a][:2])), tuple(map(int, kp[b][:2])), (255, 80, 80), 2)
            for u, v, vis in kp:
                if vis == 2:
                    cv2.circle(img, (int(u), int(v)), 3, (255, 255, 255), -1)
        tiles.append((f"{r['camera']} {r['scenario']} t={r['t']:.0f}s {r['split']}", img))
    return contact_sheet(tiles, path, tile_w=tile_w)


def write_card(out: Path, cfg: DatagenConfig, store: StoreSpec, exported: dict, shards: list[dict], command: str) -> Path:
    c = exported["counts"]
    lines = [f"# storetwin synthetic dataset — store `{store.name}`", "",
             "Made by `storetwin datagen` from randomised shopping scenarios in the store twin. Every label "
             "comes from the simulator's state and the renderer's instance masks of the very frame; nothing "
             "was labelled by hand.", "",
             "## Reproduce", "", "```", command, "```", "",
             f"Settings hash `{cfg.settings_hash()}`; base seed {cfg.seed}; scenario seed = seed × 1000003 + "
             "scenario index.", "",
             "## Contents", "",
             "| split | scenarios | images | persons | product boxes |", "| --- | ---: | ---: | ---: | ---: |"]
    for s in ("train", "val"):
        inst = c[s]["instances"]
        lines.append(f"| {s} | {len(c[s]['scenarios'])} | {c[s]['images']} | {inst['person']} | "
                     f"{sum(v for k, v in inst.items() if k != 'person')} |")
    if exported.get("person_zoom"):
        lines += ["", f"`pose/images/train/*_z<k>.jpg`: {exported['person_zoom']} close-ups of people (person_zoom="
                  f"{cfg.person_zoom} a frame; a third cut at the waist), labelled from the same frames."]
    pc = exported.get("product_crops")
    if pc:
        lines += ["", f"`products/`: {pc['train']['images']} train and {pc['val']['images']} val crops of "
                  f"{cfg.crop_px} px at full resolution (round hands and products), "
                  f"{pc['train']['instances'] + pc['val']['instances']} SKU boxes."]
    lines += ["", "Layouts: `detect/` (YOLO detection, class 0 person + one class per SKU), `pose/` (YOLO pose, "
              "17 COCO keypoints; visibility 0 = hidden behind a shelf or a body, or outside the image; 2 = visible), "
              "`coco/instances_{train,val}.json` (COCO; keypoint visibility 0 outside the image, 1 hidden, 2 visible; "
              "`file_name` relative to this folder). Train and val never share a scenario.", "",
              "![labelled samples](mosaic.jpg)", "",
              "## Instances per class", "", "| class | look-alike group | train | val |", "| --- | --- | ---: | ---: |"]
    for name in exported["classes"]:
        group = store.products[name].lookalike if name in store.products else ""
        lines.append(f"| {name} | {group or ''} | {c['train']['instances'][name]} | {c['val']['instances'][name]} |")
    lines += ["", "## Scenarios", "", "| index | split | seed | shoppers | lighting | props | textures | distractors, posters |",
              "| ---: | --- | ---: | ---: | --- | ---: | --- | ---: |"]
    for sh in shards:
        for s in sh["scenarios"]:
            L = s["lighting"]
            look = s.get("look", {})
            kelvin = f" {s['light_kelvin']} K" if s.get("light_kelvin") else ""
            lines.append(f"| {s['index']} | {s['split']} | {s['seed']} | {s['shoppers']} | {L['name']} "
                         f"×{L['ceiling_intensity'] / LightingPreset.named(L['name']).ceiling_intensity:.2f}{kelvin} | {s['props']} | "
                         f"{', '.join(f'{k} {v}' for k, v in look.get('surfaces', {}).items()) or '—'} | "
                         f"{look.get('distractors', 0)}, {look.get('posters', 0)} |")
    wall = sum(s["wall_s"] for s in shards)
    lines += ["", "## Settings", "", "```json", json.dumps(dataclasses.asdict(cfg), indent=1, default=str), "```", "",
              f"Made in {wall:.0f} s of shard time ({sum(s['images'] for s in shards)} images kept of "
              f"{sum(s['rendered'] for s in shards)} rendered)."]
    p = Path(out) / "README.md"
    p.write_text("\n".join(lines) + "\n")
    return p


# -- the whole job: shards (joblib via hydra multirun, Ray, or one by one), then the export ----------
def datagen_config_from(d: dict) -> DatagenConfig:
    """Check a ``datagen`` config (types, known keys) against :class:`DatagenConfig` and build it."""
    from harness.configs import checked_fields, tuples

    merged = tuples(checked_fields(DatagenConfig, {k: v for k, v in d.items() if k not in ("out", "shard", "hydra")}))
    rnd = tuples(merged["randomise"])
    try:
        camera = CameraEffectsConfig(**tuples(rnd.pop("camera")))
    except ValueError as e:
        raise ValueError(f"randomise.camera.{e}") from None
    try:
        randomise = Randomisation(**rnd, camera=camera)
    except ValueError as e:
        raise ValueError(f"randomise.{e}") from None
    why = codec_available(camera.codec)
    if why:
        raise ValueError(f"randomise.camera.codec={camera.codec}: {why}; or codec=approx (a stand-in) or none")
    cfg = DatagenConfig(**{**merged, "randomise": randomise, "trips": TripConfig(**tuples(merged["trips"]))})
    if cfg.shards < 1 or cfg.scenarios_per_shard < 1:
        raise ValueError(f"shards={cfg.shards}, scenarios_per_shard={cfg.scenarios_per_shard}: expected ≥ 1")
    if not 1 <= cfg.shoppers[0] <= cfg.shoppers[1]:
        raise ValueError(f"shoppers={list(cfg.shoppers)}: expected [low, high] with 1 ≤ low ≤ high")
    if cfg.launcher not in ("joblib", "ray", "serial"):
        raise ValueError(f"launcher={cfg.launcher!r}: expected joblib, ray or serial")
    if cfg.duration_s <= 0 or cfg.sample_every_s <= 0:
        raise ValueError("duration_s and sample_every_s: expected seconds > 0")
    if not 0 <= cfg.val_fraction < 1:
        raise ValueError(f"val_fraction={cfg.val_fraction}: expected a fraction in [0, 1)")
    return cfg


def _shard_job(c) -> int:
    """One hydra multirun job: the config composed from conf/datagen.yaml with ``shard=N``."""
    from harness.paths import store_dir

    out, shard = Path(c.out), int(c.shard)
    settings = json.loads((out / "datagen.json").read_text())["settings"]   # checked by run_datagen
    generate_shard(datagen_config_from(settings), out, shard, store_dir())
    return shard


def _launch_joblib(out: Path, missing: list[int], jobs: int) -> None:
    """The missing shards as one hydra multirun sweep over ``shard`` on the joblib launcher; each
    job reads the dataset's settings from ``<out>/datagen.json``."""
    import sys

    import hydra
    from hydra.core.global_hydra import GlobalHydra

    from harness.paths import conf_dir

    GlobalHydra.instance().clear()
    argv = ["storetwin-datagen", "--multirun", f"out={out}", f"shard={','.join(map(str, missing))}",
            "hydra/launcher=joblib", f"hydra.launcher.n_jobs={min(jobs, len(missing))}",
            f"hydra.sweep.dir={out / '.multirun'}", "hydra.sweep.subdir=${hydra.job.num}",
            "hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    app = hydra.main(config_path=str(conf_dir()), config_name="datagen", version_base="1.3")(_shard_job)
    saved = sys.argv
    sys.argv = argv
    try:
        app()
    except SystemExit as e:   # hydra reports a failed job and exits; we report the missing shards instead
        if e.code not in (0, None):
            pass
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()


def _ray_shard(cfg: DatagenConfig, out: str, shard: int, store_dir: str) -> int:
    generate_shard(cfg, Path(out), shard, Path(store_dir), progress=False)
    return shard


def _launch_ray(cfg: DatagenConfig, out: Path, missing: list[int], store_dir: Path) -> None:
    """The missing shards as Ray tasks, one CPU each, on ``ray_address`` (or a local instance)."""
    import ray
    from tqdm import tqdm

    started = not ray.is_initialized()
    if started:
        ray.init(address=cfg.ray_address, num_cpus=None if cfg.ray_address else cfg.jobs,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(_ray_shard)
        pending = [task.remote(cfg, str(out), s, str(store_dir)) for s in missing]
        with tqdm(total=len(pending), unit="shard", desc="datagen on ray") as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        ray.get(ref)
                    except Exception as e:  # a failed shard stays missing; the others go on
                        bar.write(f"a shard failed: {str(e).splitlines()[0]}")
                    bar.update(1)
    finally:
        if started:
            ray.shutdown()


@dataclass
class DatagenResult:
    out: Path
    made: list[int]
    skipped: list[int]
    counts: dict
    card: Path
    mosaic: Path | None
    wall_s: float


def run_datagen(cfg: DatagenConfig, out: Path, command: str = "storetwin datagen") -> DatagenResult:
    """Make every missing shard, then export. The dataset folder remembers its settings: rerunning
    with the same settings finishes it; other settings need another folder."""
    from harness.paths import store_dir
    from runtime.store import load_store

    out = Path(out).resolve()
    store_file = store_dir() / f"{cfg.store}.yaml"
    if not store_file.is_file():
        known = ", ".join(sorted(p.stem for p in store_dir().glob("*.yaml")))
        raise ValueError(f"store={cfg.store!r}: expected a store in {store_dir()} ({known})")
    store = load_store(store_file)
    cams = [c for c in cfg.cameras if c not in store.camera_by_id]
    if cams:
        raise ValueError(f"cameras: {cams} are not cameras of store '{store.name}'")
    manifest = out / "datagen.json"
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if old.get("settings_hash") != cfg.settings_hash() or old.get("shards") != cfg.shards:
            raise FileExistsError(f"{out}: a dataset made with other settings (or shard count) is there; "
                                  "rerun with the same settings to finish it, or choose another out=")
    out.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"settings_hash": cfg.settings_hash(), "shards": cfg.shards,
                                    "settings": dataclasses.asdict(cfg), "command": command}, indent=1, default=str))
    t0 = time.perf_counter()
    missing = [s for s in range(cfg.shards) if not shard_done(out, s, cfg.settings_hash())]
    skipped = [s for s in range(cfg.shards) if s not in missing]
    if missing:
        if cfg.launcher == "serial" or (cfg.launcher == "joblib" and cfg.jobs <= 1 and len(missing) == 1):
            for s in missing:
                generate_shard(cfg, out, s, store_dir())
        elif cfg.launcher == "joblib":
            _launch_joblib(out, missing, cfg.jobs)
        else:
            _launch_ray(cfg, out, missing, store_dir())
    still = [s for s in range(cfg.shards) if not shard_done(out, s, cfg.settings_hash())]
    if still:
        raise RuntimeError(f"{out}: shards {still} failed (see the messages above); rerun the same command "
                           "to make only those")
    shards = [json.loads((shard_dir(out, s) / "shard.json").read_text()) for s in range(cfg.shards)]
    exported = export(out, cfg, store)
    mos = mosaic(exported["records"], out / "mosaic.jpg", seed=cfg.seed)
    card = write_card(out, cfg, store, exported, shards, command)
    return DatagenResult(out, missing, skipped, exported["counts"], card, mos, time.perf_counter() - t0)
