"""`storetwin import`: a COCO-keypoints dataset as a training dataset in `storetwin datagen`'s layout.

``import_coco(src, out)`` reads a COCO ``person_keypoints`` JSON (or every such JSON in a folder)
and its images and writes ``<out>/pose/``, the folder `storetwin datagen` writes for the pose task:
``images/{train,val}``, ``labels/{train,val}`` in Ultralytics' pose format (class 0, the box as
normalised cx cy w h, then 17 × (x y v)) and ``data.yaml`` (``kpt_shape [17, 3]``, COCO's
``flip_idx``), with ``import.json`` (how it was made, the counts) and a short ``README.md`` beside
it. `storetwin train` and `storetwin evaluate-model` take it as they take a datagen dataset.

What is kept:

- persons (the category named ``person``, else the only one with keypoints) that are not crowds
  (``iscrowd`` 1) and have at least ``min_keypoints`` labelled keypoints (visibility > 0);
- keypoint visibility as COCO's: 0 not labelled (written ``0 0 0``), 1 labelled but hidden, 2
  visible; Ultralytics trains the position of 1 and 2 alike. A labelled keypoint outside the image
  becomes 0, as datagen writes it;
- images with no person annotation at all, as background images (``background=drop`` leaves them
  out); an image whose persons were all left out (crowds, too few keypoints) is dropped, since it
  shows people nobody labelled and would teach the model that they are background.

The split: a folder holding both a train and a val JSON (``person_keypoints_train2017.json``,
``person_keypoints_val2017.json``) keeps that split; otherwise ``val_fraction`` of each file's
images go to val, chosen by a hash of the image's name (the same on every run, and an image stays
where it was when others are added).

Everything is checked before it is written, the images are copied (or hard-linked) under a
temporary folder beside ``out`` and it is renamed to ``out`` at the end: an error leaves nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin.bodies import COCO_KEYPOINTS

# what Ultralytics reads as images
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def flip_index(names: tuple[str, ...] = COCO_KEYPOINTS) -> list[int]:
    """Each keypoint's mirror image (left ↔ right): Ultralytics' ``flip_idx``."""
    swap = {"left": "right", "right": "left"}
    return [names.index("_".join([swap.get(n.split("_")[0], n.split("_")[0]), *n.split("_")[1:]])) for n in names]


FLIP_IDX = flip_index()


@dataclass(frozen=True)
class ImportConfig:
    val_fraction: float = 0.2     # share of each file's images in val (unless the files come as train and val)
    min_keypoints: int = 1        # persons with fewer labelled keypoints are left out
    background: str = "keep"      # keep | drop: images with no person annotation at all
    link: str = "copy"            # copy | hardlink (copies where the two folders are on different filesystems)

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction={self.val_fraction}: expected a share in [0, 1)")
        if not 0 <= self.min_keypoints <= len(COCO_KEYPOINTS):
            raise ValueError(f"min_keypoints={self.min_keypoints}: expected 0 to {len(COCO_KEYPOINTS)}")
        if self.background not in ("keep", "drop"):
            raise ValueError(f"background={self.background!r}: expected keep or drop")
        if self.link not in ("copy", "hardlink"):
            raise ValueError(f"link={self.link!r}: expected copy or hardlink")


@dataclass(frozen=True)
class Person:
    box_xywh: tuple[float, float, float, float]   # pixels, COCO's x, y (top left), width, height
    keypoints: np.ndarray                         # 17 × 3: u, v (pixels), COCO visibility 0 / 1 / 2


@dataclass(frozen=True)
class SourceImage:
    path: Path          # on disk
    name: str           # its file name in the dataset
    width: int
    height: int
    split: str          # train | val
    persons: tuple[Person, ...]


@dataclass
class ImportResult:
    out: Path
    counts: dict        # split → images, persons, backgrounds
    skipped: dict       # reason → how many persons or images were left out
    wall_s: float


# -- reading the COCO file ---------------------------------------------------------------------------
def annotation_files(src: Path) -> list[Path]:
    """``src`` itself, or the COCO keypoints JSONs of the folder ``src`` (and its ``annotations/``)."""
    src = Path(src)
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise FileNotFoundError(f"src={src}: no such file or folder")
    found = sorted(p for d in (src, src / "annotations") if d.is_dir() for p in d.glob("*.json"))
    keypoint_files = [p for p in found if "keypoints" in p.stem]
    files = keypoint_files or found
    if not files:
        raise FileNotFoundError(f"src={src}: no COCO keypoints JSON in the folder or its annotations/ "
                                "(give the file itself as src=)")
    return files


def _split_in_name(p: Path) -> str | None:
    m = re.search(r"(?:^|[_\-.])(train|val)", p.stem)
    return m.group(1) if m else None


def _field(d: dict, key: str, kind: type | tuple, where: str, path: Path):
    if not isinstance(d, dict) or key not in d:
        raise ValueError(f"{path}: not a COCO keypoints file: {where} has no '{key}'")
    v = d[key]
    if not isinstance(v, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{path}: {where}['{key}'] is a {type(v).__name__}; expected a {names}")
    return v


def person_category(coco: dict, path: Path) -> tuple[int, list[int]]:
    """The person category's id, and for each of COCO's 17 keypoints its index in the file's order."""
    cats = _field(coco, "categories", list, "the file", path)
    with_kps = [c for c in cats if isinstance(c, dict) and isinstance(c.get("keypoints"), list)]
    if not with_kps:
        raise ValueError(f"{path}: not a COCO keypoints file: no category has a 'keypoints' list "
                         "(COCO's person_keypoints files name the 17 keypoints in the person category)")
    named = [c for c in with_kps if str(c.get("name", "")).lower() == "person"]
    if not named and len(with_kps) > 1:
        raise ValueError(f"{path}: {len(with_kps)} categories have keypoints and none is named 'person'")
    cat = (named or with_kps)[0]
    cid = _field(cat, "id", int, f"category {cat.get('name')!r}", path)
    kps = [str(k).lower() for k in cat["keypoints"]]
    if len(kps) != len(COCO_KEYPOINTS):
        raise ValueError(f"{path}: category {cat.get('name')!r} has {len(kps)} keypoints; expected COCO's "
                         f"{len(COCO_KEYPOINTS)} ({', '.join(COCO_KEYPOINTS)})")
    if sorted(kps) != sorted(COCO_KEYPOINTS):
        odd = [k for k in kps if k not in COCO_KEYPOINTS]
        raise ValueError(f"{path}: category {cat.get('name')!r} names keypoints {', '.join(odd)} that are not "
                         f"COCO's ({', '.join(COCO_KEYPOINTS)}); the runtime reads them in COCO's order")
    return cid, [kps.index(k) for k in COCO_KEYPOINTS]


def _image_dirs(json_path: Path, images: Path | None) -> list[Path]:
    """Where an image's ``file_name`` is looked for: ``images=`` when given; else beside the JSON,
    in the folder above (COCO's ``annotations/`` sits beside ``train2017/``), in ``images/`` and in
    a folder named for the file's last part (``person_keypoints_train2017`` → ``train2017/``)."""
    if images is not None:
        return [images]
    tail = json_path.stem.rsplit("_", 1)[-1]
    roots = [json_path.parent, json_path.parent.parent]
    return list(dict.fromkeys(d for r in roots for d in (r, r / "images", r / tail, r / "images" / tail)))


def read_coco(path: Path, images: Path | None, cfg: ImportConfig, split: str | None,
              skipped: Counter) -> list[SourceImage]:
    """The images of one COCO keypoints file and the persons kept on each; what is left out is
    counted in ``skipped``. A file that is not COCO keypoints, or lists an image that is not on
    disk, raises one ``ValueError`` naming the file and the field."""
    try:
        coco = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(coco, dict):
        raise ValueError(f"{path}: not a COCO keypoints file: expected an object with images, annotations, categories")
    cid, order = person_category(coco, path)
    imgs = _field(coco, "images", list, "the file", path)
    anns = _field(coco, "annotations", list, "the file", path)
    by_id: dict[int, dict] = {}
    for i, im in enumerate(imgs):
        where = f"images[{i}]"
        iid = _field(im, "id", (int, str), where, path)
        _field(im, "file_name", str, where, path)
        if iid in by_id:
            raise ValueError(f"{path}: {where}: image id {iid} is listed twice")
        by_id[iid] = im
    persons: dict[int, list[Person]] = {iid: [] for iid in by_id}
    with_people: set = set()
    n_kp = len(COCO_KEYPOINTS)
    for i, a in enumerate(anns):
        where = f"annotations[{i}] (id {a.get('id') if isinstance(a, dict) else '?'})"
        if _field(a, "category_id", int, where, path) != cid:
            skipped["annotations of other categories"] += 1
            continue
        iid = _field(a, "image_id", (int, str), where, path)
        if iid not in by_id:
            raise ValueError(f"{path}: {where}: image_id {iid} is not in the file's images")
        with_people.add(iid)
        if a.get("iscrowd", 0):
            skipped["crowds"] += 1
            continue
        bbox = _field(a, "bbox", list, where, path)
        kps = _field(a, "keypoints", list, where, path)
        if len(bbox) != 4 or len(kps) != 3 * n_kp:
            raise ValueError(f"{path}: {where}: expected a bbox of 4 numbers and {3 * n_kp} keypoint values "
                             f"(17 × x, y, v); got {len(bbox)} and {len(kps)}")
        k = np.asarray(kps, dtype=float).reshape(n_kp, 3)[order]
        if not np.isin(k[:, 2], (0, 1, 2)).all():
            raise ValueError(f"{path}: {where}: keypoint visibility {sorted(set(k[:, 2]) - {0, 1, 2})}; expected 0, 1 or 2")
        if int((k[:, 2] > 0).sum()) < cfg.min_keypoints:
            skipped[f"persons with too few keypoints (min_keypoints={cfg.min_keypoints})"] += 1
            continue
        persons[iid].append(Person(tuple(float(v) for v in bbox), k))
    dirs = _image_dirs(Path(path), images)
    out, missing = [], []
    for iid, im in by_id.items():
        if not persons[iid] and iid in with_people:
            skipped["images whose persons were all left out"] += 1
            continue
        if not persons[iid] and cfg.background == "drop":
            skipped["background images (background=drop)"] += 1
            continue
        file = next((d / im["file_name"] for d in dirs if (d / im["file_name"]).is_file()), None)
        if file is None:
            missing.append(im["file_name"])
            continue
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{path}: image {im['file_name']}: expected one of {', '.join(IMAGE_SUFFIXES)}")
        name = im["file_name"].replace("\\", "/").strip("/").replace("/", "__")
        out.append(SourceImage(file, name, int(im.get("width") or 0), int(im.get("height") or 0), split or "",
                               tuple(persons[iid])))
    if missing:
        raise ValueError(f"{path}: {len(missing)} listed image(s) not on disk, e.g. {missing[0]} (looked in "
                         f"{', '.join(str(d) for d in dirs)}; give the folder as images=)")
    if split is None:   # the val_fraction of the file's images with the smallest hashes of their names
        rank = sorted(range(len(out)), key=lambda j: hashlib.sha1(out[j].name.encode()).hexdigest())
        n_val = round(len(out) * cfg.val_fraction)
        if cfg.val_fraction > 0 and len(out) >= 2:
            n_val = max(1, n_val)
        val = set(rank[:n_val])
        out = [dataclasses.replace(s, split="val" if j in val else "train") for j, s in enumerate(out)]
    return out


# -- writing the dataset ---------------------------------------------------------------------------------
def yolo_pose_line(p: Person, width: int, height: int) -> str | None:
    """One Ultralytics pose label: ``0 cx cy w h`` then 17 × ``x y v``, all normalised to the
    image; None for a box with no area inside the image."""
    x, y, w, h = p.box_xywh
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    parts = [f"0 {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} {(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"]
    for u, v, vis in p.keypoints:
        inside = 0 <= u <= width and 0 <= v <= height
        parts.append(f"{u / width:.6f} {v / height:.6f} {int(vis)}" if vis > 0 and inside else "0 0 0")
    return " ".join(parts)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not an image that can be read ({str(e).splitlines()[0]})") from None


def _place(src: Path, dst: Path, link: str) -> None:
    if link == "hardlink":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def import_coco(src: str | Path, out: str | Path, images: str | Path | None = None, cfg: ImportConfig = ImportConfig(),
                command: str = "storetwin import", progress: bool = True) -> ImportResult:
    """Write ``out`` (which must not exist) from the COCO keypoints file(s) at ``src``."""
    from tqdm import tqdm
    import yaml

    t0 = time.perf_counter()
    out = Path(out).resolve()
    if out.exists():
        raise FileExistsError(f"out={out}: already exists; choose another out= or remove it")
    img_dir = Path(images) if images is not None else None
    if img_dir is not None and not img_dir.is_dir():
        raise FileNotFoundError(f"images={img_dir}: no such folder")
    files = annotation_files(Path(src))
    splits = {f: _split_in_name(f) for f in files}
    by_name = set(splits.values()) >= {"train", "val"}   # the files come as train and val: keep their split
    skipped: Counter = Counter()
    todo: list[SourceImage] = []
    names: set[str] = set()
    for f in files:
        for s in read_coco(f, img_dir, cfg, splits[f] if by_name and splits[f] else None, skipped):
            if s.name in names:     # the same file name from two JSONs
                s = dataclasses.replace(s, name=f"{f.stem}__{s.name}")
            names.add(s.name)
            todo.append(s)
    if not any(s.persons for s in todo):
        raise ValueError(f"src={src}: no person left to import (kept {len(todo)} background images; "
                         f"left out: {dict(skipped) or 'nothing'})")
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)      # a run that was killed
    counts = {s: {"images": 0, "persons": 0, "backgrounds": 0} for s in ("train", "val")}
    try:
        for s in ("train", "val"):
            (tmp / "pose" / "images" / s).mkdir(parents=True)
            (tmp / "pose" / "labels" / s).mkdir(parents=True)
        for im in tqdm(todo, desc="import", unit="image", disable=not progress):
            w, h = _image_size(im.path)
            if (im.width, im.height) not in ((w, h), (0, 0)):
                raise ValueError(f"{im.path}: {w}×{h} pixels; its COCO file says {im.width}×{im.height}")
            lines = [ln for ln in (yolo_pose_line(p, w, h) for p in im.persons) if ln is not None]
            skipped["persons with an empty box"] += len(im.persons) - len(lines)
            stem = Path(im.name).stem
            _place(im.path, tmp / "pose" / "images" / im.split / f"{stem}{im.path.suffix.lower()}", cfg.link)
            (tmp / "pose" / "labels" / im.split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            c = counts[im.split]
            c["images"] += 1
            c["persons"] += len(lines)
            c["backgrounds"] += not lines
        (tmp / "pose" / "data.yaml").write_text(yaml.safe_dump(
            {"train": "images/train", "val": "images/val", "kpt_shape": [17, 3], "flip_idx": FLIP_IDX,
             "names": {0: "person"}}, sort_keys=False))
        skipped = {k: v for k, v in skipped.items() if v}
        manifest = {"command": command, "sources": [str(f.resolve()) for f in files],
                    "images": str(img_dir.resolve()) if img_dir else None,
                    "split": "from the files' names (train, val)" if by_name else f"val_fraction {cfg.val_fraction}",
                    "settings": dataclasses.asdict(cfg), "counts": counts, "skipped": skipped}
        (tmp / "import.json").write_text(json.dumps(manifest, indent=1))
        (tmp / "README.md").write_text(_card(manifest))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ImportResult(out, counts, skipped, time.perf_counter() - t0)


def _card(m: dict) -> str:
    c = m["counts"]
    lines = ["# Imported COCO-keypoints dataset", "",
             "Made by `storetwin import` from " + ", ".join(f"`{s}`" for s in m["sources"]) + "; the pose layout "
             "of `storetwin datagen` (`pose/`: Ultralytics pose labels, class 0 person, 17 COCO keypoints with COCO's "
             "visibility: 0 not labelled, 1 hidden, 2 visible).", "",
             "```", m["command"], "```", "",
             f"Split: {m['split']}.", "",
             "| split | images | persons | background images |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {s} | {c[s]['images']} | {c[s]['persons']} | {c[s]['backgrounds']} |" for s in ("train", "val")]
    if m["skipped"]:
        lines += ["", "Left out: " + "; ".join(f"{k}: {v}" for k, v in m["skipped"].items()) + "."]
    return "\n".join(lines) + "\n"
