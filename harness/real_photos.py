"""The person model on real photographs: the ones with people in them that ship inside installed
packages (Ultralytics' ``assets/``, scikit-image's ``data/``), with people boxed and keypointed by
hand in ``benchmarks/real_photos/people.json`` (COCO keypoints; how they were drawn: the README
beside it). No image is copied into the repository: each is read from its package.

The figures, per photograph and over all of them:

- person recall at IoU ≥ 0.5: labelled people matched to a detection, greedy one to one by IoU
  (the pair of highest IoU first; pairs under ``iou_min`` never), over all labelled people;
- precision: matched detections over all person detections at ``conf``;
- PCK@0.2 of the torso, for pose models: a labelled keypoint (visibility ≥ 1) of a matched person is
  correct when the model's point is within 0.2 × the person's torso of it. The torso is the distance
  from the mid-point of the labelled shoulders to that of the labelled hips (one of a pair when only
  one is labelled); a matched person with no labelled shoulder or no labelled hip (a portrait cut at
  the chest) has no torso and adds nothing to PCK, and is counted as such. Unmatched people add
  nothing to PCK: they count against recall only. Reported by group of keypoints (head, shoulders,
  elbows, wrists, hips, knees, ankles) and pooled over every scored keypoint (``all``).

Ultralytics runs in this process: call it from a command, not from a process that renders.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

LABELS = Path(__file__).resolve().parents[1] / "benchmarks" / "real_photos" / "people.json"

KEYPOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "head": (0, 1, 2, 3, 4), "shoulders": (5, 6), "elbows": (7, 8), "wrists": (9, 10),
    "hips": (11, 12), "knees": (13, 14), "ankles": (15, 16),
}
SHOULDERS, HIPS = (5, 6), (11, 12)


# -- labels -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledPerson:
    """One person drawn by hand: the box of their visible extent (x0, y0, x1, y1 pixels) and the 17
    COCO keypoints as (x, y, v): v 2 visible, 1 hidden but placed, 0 not labelled."""
    box_xyxy: np.ndarray
    keypoints: np.ndarray
    note: str = ""

    def __post_init__(self):
        if self.box_xyxy.shape != (4,) or self.keypoints.shape != (17, 3):
            raise ValueError(f"a person needs a box of 4 numbers and 17 keypoints of 3; got "
                             f"{self.box_xyxy.shape} and {self.keypoints.shape}")

    @property
    def torso_px(self) -> Optional[float]:
        """Mid-shoulders to mid-hips in pixels, from the labelled ones; None without both."""
        sh = [i for i in SHOULDERS if self.keypoints[i, 2] > 0]
        hp = [i for i in HIPS if self.keypoints[i, 2] > 0]
        if not sh or not hp:
            return None
        d = float(np.linalg.norm(self.keypoints[sh, :2].mean(0) - self.keypoints[hp, :2].mean(0)))
        return d if d > 0 else None


@dataclass(frozen=True)
class RealPhoto:
    """A photograph inside an installed package (``package`` is its import name, ``path`` the file
    under the package's folder) and the people labelled in it."""
    file_name: str
    package: str
    path: str
    width: int
    height: int
    sha256: str
    people: tuple[LabelledPerson, ...]

    def locate(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{self.file_name}: package {self.package} is not installed "
                                    "(pip install -e '.[train]')")
        f = Path(list(spec.submodule_search_locations)[0]) / self.path
        if not f.is_file():
            raise FileNotFoundError(f"{self.file_name}: not in the installed {self.package} ({f})")
        return f

    def read(self) -> np.ndarray:
        """The photograph as a BGR image (a grey one as three equal channels), checked to be the one
        labelled: a package that changed the picture would make the labels wrong."""
        import cv2

        f = self.locate()
        data = f.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ValueError(f"{f}: not the photograph that was labelled (its sha256 differs from people.json's)")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None or img.shape[:2] != (self.height, self.width):
            raise ValueError(f"{f}: expected a {self.width}×{self.height} image")
        return img


def load_labels(path: Path | str = LABELS) -> list[RealPhoto]:
    """The labelled photographs of a COCO-keypoints file (with each image's ``package``, ``path``
    and ``sha256``), in the file's order."""
    doc = json.loads(Path(path).read_text())
    by_image: dict[int, list[LabelledPerson]] = {im["id"]: [] for im in doc["images"]}
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        by_image[a["image_id"]].append(LabelledPerson(np.array([x, y, x + w, y + h], float),
                                                      np.array(a["keypoints"], float).reshape(17, 3),
                                                      a.get("note", "")))
    return [RealPhoto(im["file_name"], im["package"], im["path"], im["width"], im["height"], im["sha256"],
                      tuple(by_image[im["id"]])) for im in doc["images"]]


# -- predictions and matching -------------------------------------------------------------------------
@dataclass(frozen=True)
class PersonPredictions:
    """A model's people in one photograph: boxes (N, 4) xyxy, scores (N,), and for a pose model
    keypoints (N, 17, 2) in pixels (None for a detector)."""
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    keypoints: Optional[np.ndarray] = None

    def __post_init__(self):
        n = len(self.boxes_xyxy)
        if self.boxes_xyxy.shape != (n, 4) or self.scores.shape != (n,):
            raise ValueError(f"expected boxes (N, 4) and scores (N,); got {self.boxes_xyxy.shape}, {self.scores.shape}")
        if self.keypoints is not None and self.keypoints.shape != (n, 17, 2):
            raise ValueError(f"expected keypoints (N, 17, 2); got {self.keypoints.shape}")

    @classmethod
    def empty(cls, pose: bool = True) -> "PersonPredictions":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 17, 2)) if pose else None)

    @classmethod
    def from_ultralytics(cls, result, person_class: int) -> "PersonPredictions":
        """The ``person_class`` detections of one Ultralytics ``Results``."""
        cls_ids = result.boxes.cls.cpu().numpy().astype(int)
        keep = cls_ids == person_class
        kp = None
        if getattr(result, "keypoints", None) is not None and result.keypoints.xy is not None:
            kp = result.keypoints.xy.cpu().numpy()[keep].astype(float).reshape(-1, 17, 2)
        return cls(result.boxes.xyxy.cpu().numpy()[keep].astype(float).reshape(-1, 4),
                   result.boxes.conf.cpu().numpy()[keep].astype(float), kp)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), xyxy: (N, M)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy_match(truth_xyxy: np.ndarray, pred_xyxy: np.ndarray, iou_min: float = 0.5) -> list[tuple[int, int]]:
    """One-to-one pairs (truth index, prediction index), the pair of highest IoU first, none under
    ``iou_min``."""
    iou = box_iou(truth_xyxy, pred_xyxy)
    pairs = []
    if iou.size == 0:
        return pairs
    iou = iou.copy()
    while True:
        t, p = np.unravel_index(int(np.argmax(iou)), iou.shape)
        if iou[t, p] < iou_min:
            return sorted(pairs)
        pairs.append((int(t), int(p)))
        iou[t, :] = -1.0
        iou[:, p] = -1.0


# -- the metric -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhotoScore:
    """One photograph's counts: people labelled and found, person detections, the matched people
    whose keypoints were scored (``pck_people``) and those left out for want of a torso, and per
    keypoint group the labelled keypoints scored (``pck_labelled``) and how many of them the model
    put within α × torso (``pck_correct``); ``matches`` pairs (labelled person, detection)."""
    file_name: str
    people: int
    found: int
    detections: int
    pck_people: int
    matched_without_torso: int
    pck_labelled: dict[str, int]
    pck_correct: dict[str, int]
    matches: tuple[tuple[int, int], ...] = ()


def _ratio(a: int, b: int) -> Optional[float]:
    return a / b if b else None


@dataclass
class RealPhotoMetric:
    """update(photo, predictions) per photograph, then compute(): recall, precision and PCK over
    all of them (counts pooled, not averaged over photographs)."""
    iou_min: float = 0.5
    pck_alpha: float = 0.2
    min_visibility: int = 1            # 2: score only the keypoints labelled as visible
    photos: list[PhotoScore] = field(default_factory=list)

    def __post_init__(self):
        if self.min_visibility not in (1, 2) or not 0 < self.iou_min <= 1 or self.pck_alpha <= 0:
            raise ValueError(f"min_visibility={self.min_visibility}, iou_min={self.iou_min}, pck_alpha={self.pck_alpha}: "
                             "expected 1 or 2, a share in (0, 1] and a positive share of the torso")

    def reset(self) -> None:
        self.photos.clear()

    def update(self, photo: RealPhoto, pred: PersonPredictions) -> PhotoScore:
        truth = np.array([p.box_xyxy for p in photo.people], float).reshape(-1, 4)
        pairs = greedy_match(truth, pred.boxes_xyxy, self.iou_min)
        labelled = dict.fromkeys(KEYPOINT_GROUPS, 0)
        correct = dict.fromkeys(KEYPOINT_GROUPS, 0)
        no_torso = with_torso = 0
        if pred.keypoints is not None:
            for t, p in pairs:
                person = photo.people[t]
                torso = person.torso_px
                scored = person.keypoints[:, 2] >= self.min_visibility
                if not scored.any():
                    continue
                if torso is None:
                    no_torso += 1
                    continue
                with_torso += 1
                dist = np.linalg.norm(pred.keypoints[p] - person.keypoints[:, :2], axis=1)
                for g, idx in KEYPOINT_GROUPS.items():
                    idx = [i for i in idx if scored[i]]
                    labelled[g] += len(idx)
                    correct[g] += int(np.sum(dist[idx] <= self.pck_alpha * torso))
        score = PhotoScore(photo.file_name, len(photo.people), len(pairs), len(pred.boxes_xyxy), with_torso, no_torso,
                           labelled, correct, tuple(pairs))
        self.photos.append(score)
        return score

    def compute(self, pose: bool = True) -> dict:
        """Per photograph and over all: recall, precision, detections and (``pose``) PCK by group
        and pooled (``all``); a share with nothing to count over is None."""
        def figures(scores: list[PhotoScore]) -> dict:
            people, found = sum(s.people for s in scores), sum(s.found for s in scores)
            dets = sum(s.detections for s in scores)
            out = {"people": people, "found": found, "detections": dets,
                   "recall": _ratio(found, people), "precision": _ratio(found, dets)}
            if pose:
                lab = {g: sum(s.pck_labelled[g] for s in scores) for g in KEYPOINT_GROUPS}
                cor = {g: sum(s.pck_correct[g] for s in scores) for g in KEYPOINT_GROUPS}
                pck = {g: _ratio(cor[g], lab[g]) for g in KEYPOINT_GROUPS}
                pck["all"] = _ratio(sum(cor.values()), sum(lab.values()))
                out.update(pck=pck, pck_keypoints=sum(lab.values()),
                           pck_people=sum(s.pck_people for s in scores),
                           matched_without_torso=sum(s.matched_without_torso for s in scores))
            return out

        return {"iou_min": self.iou_min, "pck_alpha": self.pck_alpha, "min_visibility": self.min_visibility,
                **figures(self.photos), "images": {s.file_name: figures([s]) for s in self.photos}}


# -- running a model --------------------------------------------------------------------------------
def predict(model, photos: list[RealPhoto], imgsz: int, conf: float, device: str) -> Optional[list[PersonPredictions]]:
    """An Ultralytics ``YOLO`` model's people in each photograph; None when it has no person class."""
    person = next((i for i, n in model.names.items() if n == "person"), None)
    if person is None:
        return None
    out = []
    for photo in photos:
        res = model.predict(photo.read(), imgsz=imgsz, conf=conf, device=device, verbose=False)[0]
        out.append(PersonPredictions.from_ultralytics(res, person))
    return out


def evaluate_on_photos(weights: Path | str, imgsz: int = 640, conf: float = 0.25, device: str = "cpu",
                       labels: Path | str = LABELS, sheet: Path | str | None = None, iou_min: float = 0.5,
                       pck_alpha: float = 0.2) -> dict:
    """Run the model on every labelled photograph and score it (``RealPhotoMetric``); with ``sheet``
    also write a contact sheet of the labels and the model's people on each photograph."""
    from ultralytics import YOLO

    photos = load_labels(labels)
    model = YOLO(str(weights))
    base = {"model": str(weights), "imgsz": imgsz, "conf": conf, "photos": [p.file_name for p in photos],
            "labelled_people": sum(len(p.people) for p in photos)}
    preds = predict(model, photos, imgsz, conf, device)
    if preds is None:
        return {**base, "recall": None, "note": "the model has no person class"}
    pose = all(p.keypoints is not None for p in preds)
    metric = RealPhotoMetric(iou_min=iou_min, pck_alpha=pck_alpha)
    for photo, pred in zip(photos, preds):
        metric.update(photo, pred)
    out = {**base, "pose": pose, **metric.compute(pose)}
    if sheet is not None:
        out["sheet"] = str(write_sheet(photos, Path(sheet), preds, metric.photos, title=f"{Path(weights).name} @ {imgsz}"))
    return out


# -- pictures -------------------------------------------------------------------------------------
LABEL_COLOUR, PRED_COLOUR, MISSED_COLOUR = (80, 220, 80), (0, 140, 255), (60, 60, 255)
SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
            (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))


def draw_photo(photo: RealPhoto, pred: Optional[PersonPredictions] = None, score: Optional[PhotoScore] = None,
               px: float = 1.0) -> np.ndarray:
    """The photograph with its labels (green: boxes, skeletons, keypoints filled when visible and
    hollow when placed behind something; a missed person's box red) and the model's people (orange,
    with their scores); lines ``px`` times their width at full size (the image is to be shrunk by px)."""
    import cv2

    img = photo.read()
    found = {t for t, _ in (score.matches if score else ())}
    line, r = max(1, round(2 * px)), max(2, round(3 * px))
    for i, person in enumerate(photo.people):
        x0, y0, x1, y1 = person.box_xyxy.astype(int)
        colour = MISSED_COLOUR if score is not None and i not in found else LABEL_COLOUR
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colour, line)
        k = person.keypoints
        for a, b in SKELETON:
            if k[a, 2] > 0 and k[b, 2] > 0:
                cv2.line(img, tuple(k[a, :2].astype(int)), tuple(k[b, :2].astype(int)), LABEL_COLOUR, line, cv2.LINE_AA)
        for x, y, v in k:
            if v > 0:
                cv2.circle(img, (int(x), int(y)), r, LABEL_COLOUR, -1 if v == 2 else line, cv2.LINE_AA)
    if pred is not None:
        for j, (box, s) in enumerate(zip(pred.boxes_xyxy, pred.scores)):
            x0, y0, x1, y1 = box.astype(int)
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), PRED_COLOUR, line)
            cv2.putText(img, f"{s:.2f}", (x0 + 3, y0 + 8 * line + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * line,
                        PRED_COLOUR, line, cv2.LINE_AA)
            if pred.keypoints is not None:
                k = pred.keypoints[j]
                for a, b in SKELETON:
                    cv2.line(img, tuple(k[a].astype(int)), tuple(k[b].astype(int)), PRED_COLOUR, max(1, line - 1), cv2.LINE_AA)
                for x, y in k:
                    cv2.circle(img, (int(x), int(y)), r, PRED_COLOUR, -1, cv2.LINE_AA)
    return img


def write_sheet(photos: list[RealPhoto], out: Path, preds: Optional[list[PersonPredictions]] = None,
                scores: Optional[list[PhotoScore]] = None, title: str = "", tile_w: int = 480, columns: int = 2,
                jpeg_quality: int = 90) -> Path:
    """One contact sheet of the photographs with their labels (and a model's people when given):
    a JPEG when ``out`` ends in .jpg."""
    from harness.contact_sheet import contact_sheet

    preds = preds or [None] * len(photos)
    scores = scores or [None] * len(photos)
    tiles = []
    for photo, pred, score in zip(photos, preds, scores):
        name = photo.file_name + (f": {score.found} of {score.people} found, {score.detections} detections"
                                  if score is not None else f" ({photo.package}): {len(photo.people)} people")
        tiles.append((f"{title}  {name}" if title else name, draw_photo(photo, pred, score, photo.width / tile_w)))
    out.parent.mkdir(parents=True, exist_ok=True)
    return contact_sheet(tiles, out, columns=columns, tile_w=tile_w, jpeg_quality=jpeg_quality)


def card_lines(r: dict, synthetic: bool = True) -> list[str]:
    """The model card's lines on the real photographs (``evaluate_on_photos``' result); ``synthetic``:
    the model was trained on the twin's renders alone."""
    if r.get("recall") is None:
        return ["Not measured: the model has no person class, and no real photographs of this catalog's "
                "products exist to test it on."]
    per = "; ".join(f"{k}: {v['found']} of {v['people']} found, {v['detections']} detections"
                    for k, v in r["images"].items())
    lines = [f"Person recall on real photographs that ship inside installed packages ({', '.join(f'`{p}`' for p in r['photos'])}; "
             f"{r['people']} people boxed by hand, `benchmarks/real_photos/`; IoU ≥ {r['iou_min']}, confidence "
             f"≥ {r['conf']}, {r['imgsz']} px): **{r['recall']:.2f}**, precision "
             + (f"{r['precision']:.2f}" if r["precision"] is not None else "n/a (no detections)") + f". {per}."]
    if r.get("pose"):
        pck = r["pck"]
        if pck["all"] is None:
            lines.append(f"Keypoints (PCK@{r['pck_alpha']} of the torso): n/a, no labelled person with a torso found.")
        else:
            lines.append(f"Keypoints of the people found (PCK@{r['pck_alpha']} of the torso, {r['pck_keypoints']} labelled "
                         f"keypoints of {r['pck_people']} people): **{pck['all']:.2f}**; "
                         + ", ".join(f"{g} {v:.2f}" if v is not None else f"{g} n/a"
                                     for g, v in pck.items() if g != "all") + ".")
    lines.append("The model has only ever seen rendered people: this is the honest gap to real cameras." if synthetic else
                 "The model was not trained on the twin's renders alone (imported data or initial weights, above).")
    return lines
