"""`storetwin train` and `storetwin evaluate-model`: the project's own perception models.

Models are trained from scratch (an Ultralytics architecture YAML, no downloaded weights) on a
`storetwin datagen` dataset, then shipped in ``models/`` as ``<name>.pt`` and ``<name>.onnx``
with a card ``<name>.md`` that records the commands that made the data and the model, the seeds,
the settings and the scores. ``data`` may also be a list of datasets (datagen's, or COCO data
brought in by `storetwin import`): the model trains on their union. ``init`` starts from given
Ultralytics weights instead of from scratch (a model trained before, or one trained elsewhere).

Ultralytics runs in this process; do not render in the same process (torch's compiler stack and
Mesa's llvmpipe do not share a process well): `storetwin datagen` and `storetwin train` are
separate commands.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional


os.environ.setdefault("YOLO_OFFLINE", "1")   # no update checks, no downloads

TASKS = {"pose": ("yolov8n-pose.yaml", "person_pose"), "detect": ("yolov8n.yaml", "products")}


@dataclass(frozen=True)
class TrainConfig:
    task: str = "pose"                 # pose (person, 17 keypoints) | detect (person + every SKU)
    data: Any = "data/train"           # a `storetwin datagen` (or `storetwin import`) dataset folder, or a list of them
    name: Optional[str] = None         # the model's name in models/; default person_pose / products
    model: Optional[str] = None        # an Ultralytics architecture YAML; default yolov8n(-pose).yaml
    epochs: int = 40
    imgsz: int = 320
    batch: int = 16
    seed: int = 0
    device: str = "auto"               # auto: the first GPU when there is one, else cpu
    workers: int = 2
    patience: int = 100
    optimizer: str = "AdamW"           # Ultralytics' optimizer name, or auto (its own choice; see conf/train.yaml)
    lr0: float = 0.002                 # initial learning rate (ignored by optimizer=auto)
    warmup_epochs: float = 3.0         # Ultralytics' warm-up (a fine-tune from init= wants a short one)
    mosaic: float = 1.0                # share of batches made as 4-image mosaics (people at half the size)
    val: bool = True                   # validate after every epoch (false: only after the last; faster)
    hours: Optional[float] = None      # train for this long instead (epochs then fit the time; Ultralytics' time=)
    cache: bool = False                # keep the decoded images in memory (faster epochs where memory allows)
    resume: bool = False               # continue models/runs/<name> from its last epoch
    export: tuple[str, ...] = ("onnx", "openvino")  # openvino is skipped (and said in the card) where it does not install
    out: str = "models"
    layout: Optional[str] = None       # the dataset folder to train on; default pose/ (pose), products/ (detect)
    init: Optional[str] = None         # Ultralytics weights (.pt) to start from; the architecture comes with them

    @property
    def datasets(self) -> tuple[Path, ...]:
        """The dataset folders: ``data`` itself, or each of its list."""
        return tuple(Path(d) for d in ((self.data,) if isinstance(self.data, str) else self.data))

    @property
    def data_layout(self) -> str:
        return self.layout or default_layout(self.task, self.datasets[0])

    @property
    def model_name(self) -> str:
        return self.name or TASKS[self.task][1]

    @property
    def arch(self) -> str:
        return self.model or TASKS[self.task][0]


def default_layout(task: str, data: Path) -> str:
    """pose/ for pose models; for detection the full-resolution product crops (products/) when the
    dataset has them, else the whole frames (detect/)."""
    if task == "pose":
        return "pose"
    return "products" if (Path(data) / "products" / "data.yaml").is_file() else "detect"


def train_config_from(d: dict) -> TrainConfig:
    from harness.configs import checked_fields, tuples

    cfg = TrainConfig(**tuples(checked_fields(TrainConfig, d)))
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r}: expected one of {sorted(TASKS)}")
    if cfg.hours is not None and not 0 < cfg.hours <= 240:
        raise ValueError(f"hours={cfg.hours}: expected a training time in (0, 240] hours, or null for epochs")
    if cfg.epochs < 1 or cfg.imgsz < 32 or cfg.imgsz % 32 or cfg.batch < 1:
        raise ValueError(f"epochs={cfg.epochs}, imgsz={cfg.imgsz}, batch={cfg.batch}: expected epochs ≥ 1, "
                         "imgsz a multiple of 32, batch ≥ 1")
    bad = [f for f in cfg.export if f not in ("onnx", "openvino")]
    if bad:
        raise ValueError(f"export: {bad}: expected onnx and/or openvino")
    if not (isinstance(cfg.data, str) or (cfg.data and all(isinstance(d, str) for d in cfg.data))):
        raise ValueError(f"data={cfg.data}: expected a dataset folder or a list of them, data=[<folder>,<folder>]")
    if len(set(cfg.datasets)) < len(cfg.datasets):
        raise ValueError(f"data={list(map(str, cfg.datasets))}: a dataset is listed twice")
    for d in cfg.datasets:
        if not (d / cfg.data_layout / "data.yaml").is_file():
            raise ValueError(f"data={d}: expected a `storetwin datagen` or `storetwin import` dataset folder with "
                             f"{cfg.data_layout}/data.yaml")
    if len(cfg.datasets) > 1:
        _union_yaml(cfg.datasets, cfg.data_layout)    # the datasets agree on their classes and keypoints
    if cfg.init is not None:
        _check_init(cfg)
    return cfg


def _check_init(cfg: TrainConfig) -> None:
    """``init`` is an Ultralytics checkpoint of the task trained (and ``model`` is not also given)."""
    init = Path(cfg.init)
    if cfg.model:
        raise ValueError(f"init={init} and model={cfg.model}: the architecture comes with the init weights; "
                         "give one of them")
    if init.suffix != ".pt" or not init.is_file():
        raise ValueError(f"init={init}: expected an Ultralytics weights file (.pt)")
    from ultralytics import YOLO

    try:
        task = YOLO(str(init)).task
    except Exception as e:   # not a checkpoint Ultralytics can read
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"init={init}: not Ultralytics weights ({why})") from None
    if task != cfg.task:
        raise ValueError(f"init={init}: a {task} model; task={cfg.task} needs {cfg.task} weights")


def _union_yaml(datasets: tuple[Path, ...], layout: str) -> dict:
    """One Ultralytics data YAML over several datasets' ``layout`` folders: lists of their train and
    val image folders (absolute), and the classes and keypoints that every one of them must share."""
    import yaml

    union: dict = {"train": [], "val": []}
    first = None
    for d in datasets:
        f = d / layout / "data.yaml"
        y = yaml.safe_load(f.read_text())
        root = Path(y.get("path") or f.parent)
        root = root if root.is_absolute() else (f.parent / root)
        for split in ("train", "val"):
            parts = y.get(split) or []
            union[split] += [str((root / x).resolve()) for x in ([parts] if isinstance(parts, str) else parts)]
        shared = {k: y.get(k) for k in ("names", "kpt_shape")}
        if first is None:
            first = (f, shared)
            union.update({k: v for k, v in y.items() if k not in ("path", "train", "val", "test")})
        elif shared != first[1]:
            raise ValueError(f"data: {f} and {first[0]} differ in their classes or keypoints "
                             f"({shared} against {first[1]}); a model trains on datasets of the same classes")
    return union


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


@dataclass
class TrainResult:
    weights: Path
    onnx: Optional[Path]
    card: Path
    scores: dict
    wall_s: float


def fit(cfg: TrainConfig, command: str = "storetwin train") -> Path:
    """Train from the start into models/runs/<name> (the run folder, returned), recording the command
    and the training time in its storetwin.json. ``train`` ships a finished run (export, scores, card);
    a run made elsewhere (on a GPU machine, say) is shipped here by ``storetwin train ... resume=true``."""
    from ultralytics import YOLO

    run = (Path(cfg.out) / "runs").resolve() / cfg.model_name
    data_yaml = (cfg.datasets[0] / cfg.data_layout / "data.yaml").resolve()
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    if len(cfg.datasets) > 1:   # the union, written in the run folder
        import yaml

        data_yaml = run / "data.yaml"
        data_yaml.write_text(yaml.safe_dump(_union_yaml(cfg.datasets, cfg.data_layout), sort_keys=False))
    meta = run / "storetwin.json"
    t0 = time.perf_counter()
    device = _device(cfg.device)
    info = {"command": command, "train_s": 0.0, "device": device}
    if device != "cpu":
        import torch

        info["device"] = f"{device} ({torch.cuda.get_device_name(0)})"
    else:
        info["device"] = f"cpu ({os.cpu_count()} cores)"
    meta.write_text(json.dumps(info))
    YOLO(cfg.init or cfg.arch).train(data=str(data_yaml), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch, seed=cfg.seed,
                         deterministic=True, device=device, workers=cfg.workers, patience=cfg.patience,
                         optimizer=cfg.optimizer, lr0=cfg.lr0, warmup_epochs=cfg.warmup_epochs, mosaic=cfg.mosaic,
                         val=cfg.val, cache=cfg.cache,
                         **({"time": cfg.hours} if cfg.hours else {}),
                         project=str(run.parent), name=cfg.model_name, exist_ok=True, plots=False, amp=False, verbose=True)
    info["train_s"] = time.perf_counter() - t0
    meta.write_text(json.dumps(info))
    return run


def train(cfg: TrainConfig, command: str = "storetwin train") -> TrainResult:
    from ultralytics import YOLO

    out = Path(cfg.out)
    run = (out / "runs").resolve() / cfg.model_name
    meta = run / "storetwin.json"       # the command that started this run, and its training time so far
    if cfg.resume:
        last = run / "weights" / "last.pt"
        if not last.is_file() or not meta.is_file():
            raise ValueError(f"resume=true: no {last} to resume from; train without resume first")
        info = json.loads(meta.read_text())
        import torch

        finished = torch.load(last, map_location="cpu", weights_only=False).get("epoch", -1) == -1
        if not finished:   # a finished run is only shipped again (export, scores, card)
            t0 = time.perf_counter()
            YOLO(str(last)).train(resume=True)
            info["train_s"] = info.get("train_s", 0.0) + time.perf_counter() - t0
            meta.write_text(json.dumps(info))
    else:
        fit(cfg, command)
        info = json.loads(meta.read_text())
    wall, command = info["train_s"], info["command"]
    best = run / "weights" / "best.pt"
    if not best.is_file():
        best = run / "weights" / "last.pt"
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{cfg.model_name}.pt"
    shutil.copy(best, weights)
    onnx = None
    exported = {}
    for fmt in cfg.export:
        try:
            extra = {"simplify": False} if fmt == "onnx" else {}
            # the person model's OpenVINO export takes any input height and width: the runtime
            # compiles it for each camera's shape at the smallest input that holds the frame
            # (runtime/perception.py OpenVinoDetector); the rest are of fixed shape
            dynamic = fmt == "openvino" and cfg.task == "pose"
            f = YOLO(str(weights)).export(format=fmt, imgsz=cfg.imgsz, dynamic=dynamic, **extra)
            exported[fmt] = str(f)
            if fmt == "onnx":
                onnx = Path(f)
        except Exception as e:  # OpenVINO may not install everywhere: say so in the card
            exported[fmt] = f"failed: {str(e).splitlines()[0]}"
    scores = evaluate(weights, cfg.datasets, cfg.task, cfg.imgsz, splits=("val",), layout=cfg.data_layout)
    if len(cfg.datasets) > 1:   # and each dataset's validation images apart
        keep = ("images", "box_map50", "box_map50_95", "kpt_map50", "kpt_map50_95", "person_ap50", "person_recall")
        scores["per_dataset"] = {str(d): {k: v for k, v in evaluate(weights, d, cfg.task, cfg.imgsz, splits=("val",),
                                                                   layout=cfg.data_layout).items() if k in keep}
                                 for d in cfg.datasets if image_files(d / cfg.data_layout / "images" / "val")}
    scores["sim_to_real"] = sim_to_real(weights, cfg.imgsz)   # the real photographs of people, labelled by hand
    card = write_card(cfg, weights, scores, exported, wall, command, run, device=info.get("device"))
    return TrainResult(weights, onnx, card, scores, wall)


# -- evaluation ------------------------------------------------------------------------------------
def _lookalike_groups(names: dict[int, str], data: Path) -> dict[str, list[str]]:
    """Look-alike groups of the dataset's store (from the dataset's settings)."""
    from harness.paths import store_dir
    from runtime.store import load_store

    try:
        store_name = json.loads((data / "datagen.json").read_text())["settings"]["store"]
        store = load_store(store_dir() / f"{store_name}.yaml")
    except (OSError, KeyError, ValueError):
        return {}
    groups: dict[str, list[str]] = {}
    for p in store.catalog:
        if p.lookalike and p.sku in names.values():
            groups.setdefault(p.lookalike, []).append(p.sku)
    return groups


def model_task(path: Path) -> str:
    """pose or detect, as the model itself says (its name need not)."""
    from runtime.perception import load_model

    return load_model(path).task


def image_files(folder: Path) -> list[Path]:
    """The images in ``folder`` that Ultralytics reads (datagen writes JPEG; an import keeps its files' kind)."""
    suffixes = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
    return sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in suffixes) if Path(folder).is_dir() else []


def evaluate(weights: Path, data: Path | tuple[Path, ...], task: str, imgsz: int,
             splits: tuple[str, ...] = ("train", "val"), batch: int = 16, layout: str | None = None) -> dict:
    """Score a model on a `storetwin datagen` (or `storetwin import`) dataset, or on several
    together (by default all of it: a held-out dataset made from other seeds, or another store,
    is unseen as a whole)."""
    import tempfile

    import yaml
    from ultralytics import YOLO

    datas = [Path(d).resolve() for d in (data if isinstance(data, (list, tuple)) else [data])]
    layout = layout or default_layout(task, datas[0])
    src = yaml.safe_load((datas[0] / layout / "data.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        y = {**src, "path": str(datas[0] / layout), "train": "images/train",
             "val": [str(d / layout / "images" / s) for d in datas for s in splits]}
        dy = Path(tmp) / "data.yaml"
        dy.write_text(yaml.safe_dump(y, sort_keys=False))
        model = YOLO(str(weights))
        m = model.val(data=str(dy), imgsz=imgsz, batch=batch, device=_device("auto"), plots=False, verbose=False,
                      project=tmp, name="val", workers=0)
    names = m.names
    out = {"data": str(datas[0]) if len(datas) == 1 else [str(d) for d in datas], "layout": layout,
           "splits": list(splits), "imgsz": imgsz,
           "images": sum(len(image_files(d / layout / "images" / sp)) for d in datas for sp in splits),
           "box_map50": float(m.box.map50), "box_map50_95": float(m.box.map)}
    if task == "pose":
        out.update(kpt_map50=float(m.pose.map50), kpt_map50_95=float(m.pose.map))
    per_class = {}
    for k, ci in enumerate(m.box.ap_class_index):
        p, r, ap50, ap = m.box.class_result(k)
        per_class[names[int(ci)]] = {"precision": round(float(p), 4), "recall": round(float(r), 4),
                                     "ap50": round(float(ap50), 4), "ap50_95": round(float(ap), 4)}
    out["per_class"] = per_class
    if "person" in per_class:
        out["person_ap50"] = per_class["person"]["ap50"]
        out["person_recall"] = per_class["person"]["recall"]
    groups = {g: skus for d in datas for g, skus in _lookalike_groups(names, d).items()}
    if groups:
        out["lookalike_recall"] = {g: {s: per_class.get(s, {}).get("recall") for s in skus} for g, skus in groups.items()}
    return out


def sim_to_real(weights: Path, imgsz: int, conf: float = 0.25, sheet: Path | None = None) -> dict:
    """Person recall (IoU ≥ 0.5), precision and PCK@0.2 of the torso on the real photographs of
    people that ship inside installed packages, labelled by hand (``harness/real_photos.py``)."""
    from harness.real_photos import evaluate_on_photos

    return evaluate_on_photos(weights, imgsz=imgsz, conf=conf, device=_device("auto"), sheet=sheet)


# -- the card ---------------------------------------------------------------------------------------
def _dataset_lines(data: Path, layout: str) -> tuple[str, str]:
    """The command that made a dataset, and the card's line about it (datagen's settings and
    seeds, or what `storetwin import` brought in)."""
    if (data / "import.json").is_file():
        m = json.loads((data / "import.json").read_text())
        c = m.get("counts", {})
        n = {k: sum(v.get(k, 0) for v in c.values()) for k in ("images", "persons")}
        return m.get("command", "# (storetwin import)"), (
            f"- data: `{data}/{layout}`, imported by `storetwin import` from "
            + ", ".join(f"`{s}`" for s in m.get("sources", [])) + f": {c.get('train', {}).get('images', 0)} train and "
            f"{c.get('val', {}).get('images', 0)} val images, {n['persons']} persons")
    dg = json.loads((data / "datagen.json").read_text()) if (data / "datagen.json").is_file() else {}
    settings = dg.get("settings", {})
    n = settings.get("shards", 0) * settings.get("scenarios_per_shard", 1)
    seeds = f"{settings.get('seed')} (scenario seeds {settings.get('seed', 0) * 1_000_003} … " \
            f"{settings.get('seed', 0) * 1_000_003 + max(n - 1, 0)})" if settings else "unknown"
    return dg.get("command", "# (dataset made outside storetwin datagen)"), (
        f"- data: `{data}/{layout}`, store `{settings.get('store')}`, base seed {seeds}, settings hash "
        f"`{dg.get('settings_hash')}`")


def _epochs_done(run: Path) -> int | None:
    """Epochs the run trained (rows of its results.csv), or None where it has none."""
    f = run / "results.csv"
    if not f.is_file():
        return None
    return max(0, len([ln for ln in f.read_text().splitlines() if ln.strip()]) - 1)


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_card(cfg: TrainConfig, weights: Path, scores: dict, exported: dict, wall_s: float, command: str,
               run: Path, device: str | None = None) -> Path:
    made = [_dataset_lines(d, cfg.data_layout) for d in cfg.datasets]
    imported = [d for d in cfg.datasets if (d / "import.json").is_file()]
    synthetic = not imported and cfg.init is None     # what the twin rendered, and nothing else
    size_mb = weights.stat().st_size / 1e6
    s = scores
    what = "Person pose (17 COCO keypoints)" if cfg.task == "pose" else "Products (every SKU)" \
        if cfg.data_layout == "products" else "Products (every SKU) and persons"
    start = f"Ultralytics `{cfg.arch}` trained from scratch" if cfg.init is None else \
        f"Ultralytics weights `{cfg.init}` trained further"
    on = "on synthetic images of the store twin" if not imported else "on imported COCO-keypoints data" \
        if len(imported) == len(cfg.datasets) else "on synthetic images of the store twin and imported COCO-keypoints data"
    lines = [f"# {cfg.model_name}", "",
             f"{what}: {start} {on}." + (" No pretrained weights, no real images." if synthetic else ""), "",
             "| file | size |", "| --- | ---: |", f"| `{weights.name}` | {size_mb:.1f} MB |"]
    for fmt, f in exported.items():
        p = Path(f)
        lines.append(f"| `{p.name}` ({fmt}) | " + (f"{_size_mb(p):.1f} MB |" if p.exists() else f"{f} |"))
    lines += ["", "## How it was made", "", "```bash", *dict.fromkeys(c for c, _ in made), command, "```", "",
              *(line for _, line in made)]
    if cfg.init is not None:
        init = Path(cfg.init)
        lines.append(f"- initial weights: `{init}` (sha256 `{_sha256(init)[:16]}`)"
                     + (f"; their card: `{init.with_suffix('.md')}`" if init.with_suffix(".md").is_file() else ""))
    done = _epochs_done(run)
    epochs = f"{done} epochs in the {cfg.hours} h given" if cfg.hours and done else f"{done or cfg.epochs} epochs"
    lines += [f"- training: {epochs} at {cfg.imgsz} px, batch {cfg.batch}, seed {cfg.seed}, optimizer "
              f"{cfg.optimizer}" + ("" if cfg.optimizer == "auto" else f" at lr0 {cfg.lr0}") + f", device "
              f"{device or _device(cfg.device)}, {wall_s / 60:.1f} min wall",
              "", "## Scores (measured after training, on the dataset's validation scenarios)" if len(cfg.datasets) == 1
              else f"## Scores (measured after training, on the {len(cfg.datasets)} datasets' validation images together)",
              "", "| metric | value |", "| --- | ---: |",
              f"| box mAP50 | {s['box_map50']:.3f} |", f"| box mAP50-95 | {s['box_map50_95']:.3f} |"]
    if "kpt_map50" in s:
        lines += [f"| keypoint mAP50 | {s['kpt_map50']:.3f} |", f"| keypoint mAP50-95 | {s['kpt_map50_95']:.3f} |"]
    if "person_ap50" in s:
        lines += [f"| person AP50 | {s['person_ap50']:.3f} |", f"| person recall | {s['person_recall']:.3f} |"]
    if s.get("lookalike_recall"):
        lines += ["", "Recall of look-alike SKUs (same pack, different label):", "", "| group | SKU | recall |",
                  "| --- | --- | ---: |"]
        for g, skus in s["lookalike_recall"].items():
            lines += [f"| {g} | {sku} | {f'{r:.3f}' if r is not None else 'n/a'} |" for sku, r in skus.items()]
    if s.get("per_dataset"):
        pose = cfg.task == "pose"
        lines += ["", "Each dataset's validation images apart:", "",
                  "| dataset | images | box mAP50 |" + (" keypoint mAP50 |" if pose else ""),
                  "| --- | ---: | ---: |" + (" ---: |" if pose else "")]
        lines += [f"| `{d}` | {v['images']} | {v['box_map50']:.3f} |" + (f" {v['kpt_map50']:.3f} |" if pose else "")
                  for d, v in s["per_dataset"].items()]
    from harness.real_photos import card_lines

    lines += ["", "## Sim-to-real", "", *card_lines(s["sim_to_real"], synthetic)]
    lines += ["", "## Compare a new model with this one", "", "```bash",
              f"storetwin evaluate-model model=models/{weights.name} data=<a held-out datagen dataset>"]
    if s["sim_to_real"].get("recall") is not None:
        lines += [f"storetwin evaluate-model model=models/{weights.name} real=true imgsz={cfg.imgsz} sheet=real_photos.jpg"]
    lines += ["```", "",
              f"Training run (ignored by git): `{run}`."]
    card = weights.with_suffix(".md")
    card.write_text("\n".join(lines) + "\n")
    (weights.with_suffix(".scores.json")).write_text(json.dumps(scores, indent=1))
    return card


def _size_mb(p: Path) -> float:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6
    return p.stat().st_size / 1e6


# -- post-training INT8 quantisation ------------------------------------------------------------------

@dataclass
class QuantizeResult:
    folder: Path
    card: Path
    images: int
    wall_s: float


def quantize(weights: Path, data: Path, split: str = "train", fraction: float = 1.0, imgsz: int | None = None,
             layout: str | None = None, command: str = "storetwin quantize") -> QuantizeResult:
    """An INT8 OpenVINO model next to ``weights`` (``<name>_int8_openvino_model/``): OpenVINO's NNCF
    post-training quantisation through Ultralytics' exporter, calibrated on ``split`` of a
    `storetwin datagen` dataset (twin images, never the data it will be scored on). The float model
    and its card stay as they are; a card of its own says how the INT8 one was made."""
    import shutil
    import tempfile
    import time

    import yaml
    from ultralytics import YOLO

    weights, data = Path(weights), Path(data).resolve()
    task = model_task(weights)
    layout = layout or default_layout(task, data)
    src_yaml = data / layout / "data.yaml"
    if not src_yaml.is_file():
        raise ValueError(f"data={data}: expected a `storetwin datagen` dataset folder with {layout}/data.yaml")
    images = image_files(data / layout / "images" / split)
    if not images:
        raise ValueError(f"split={split}: no images in {data / layout / 'images' / split}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction}: expected a share of the split's images in (0, 1]")
    scores = weights.with_suffix(".scores.json")
    imgsz = imgsz or (json.loads(scores.read_text()).get("imgsz") if scores.is_file() else None) or 320
    final = weights.parent / f"{weights.stem}_int8_openvino_model"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        src = yaml.safe_load(src_yaml.read_text())
        dy = Path(tmp) / "data.yaml"
        dy.write_text(yaml.safe_dump({**src, "path": str(data / layout), "train": f"images/{split}",
                                      "val": f"images/{split}"}, sort_keys=False))
        shutil.copy(weights, Path(tmp) / weights.name)   # Ultralytics writes the export beside the weights
        made = Path(YOLO(str(Path(tmp) / weights.name)).export(format="openvino", int8=True, data=str(dy),
                                                                  imgsz=imgsz, fraction=fraction, batch=1))
        staged = weights.parent / f".{final.name}.partial"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(made, staged)
    shutil.rmtree(final, ignore_errors=True)
    staged.rename(final)                                  # nothing half-written under the final name
    wall = time.perf_counter() - t0
    n = max(1, round(len(images) * fraction))
    dg = json.loads((data / "datagen.json").read_text()) if (data / "datagen.json").is_file() else {}
    card = weights.parent / f"{weights.stem}_int8.md"
    card.write_text("\n".join([
        f"# {weights.stem} (INT8)", "",
        f"`{final.name}/`: `{weights.name}` quantised to 8-bit integers after training (OpenVINO NNCF, through "
        f"Ultralytics' exporter), {_size_mb(final):.1f} MB. Same inputs and outputs as the float OpenVINO model; "
        f"the runtime takes it with `runtime.{'pose_model' if task == 'pose' else 'hands.product_model'}=models/{final.name}`.",
        "", "## How it was made", "", "```bash", dg.get("command", "# (dataset made outside storetwin datagen)"),
        command, "```", "",
        f"- calibration: {n} images of `{data.name}/{layout}/images/{split}` at {imgsz} px "
        f"(store `{dg.get('settings', {}).get('store')}`, settings hash `{dg.get('settings_hash')}`), {wall:.0f} s wall",
        "- its speed and accuracy beside the float model: `docs/BENCHMARKS.md`, \"INT8\"", ""]))
    return QuantizeResult(final, card, n, wall)
