"""The `storetwin` command: `storetwin <command> [key=value ...]` (hydra overrides)."""
from __future__ import annotations

import sys
from pathlib import Path

USAGE = """usage: storetwin <command> [key=value ...]

commands:
  simulate   run a scenario in the twin; writes streams/, gt/ and a contact sheet
             e.g. storetwin simulate scenario=busy_store sim.loadcell.noise_g=1.0
             or draw random shopping trips (store, seed, shoppers, duration_s; trips.* knobs):
             e.g. storetwin simulate random=true store=small_convenience seed=7 shoppers=6 duration_s=90
             the run directory's scenario.yaml re-runs a drawn scenario: scenario=<run>/scenario.yaml
             jobs=2 draws the cameras in two processes (the same files, in about half the time)
  datagen    synthetic training data (YOLO detect + pose, COCO) from randomised scenarios;
             sharded (hydra multirun on joblib, or Ray) and resumable: rerun to finish
             e.g. storetwin datagen out=data/sc-v1 shards=16 jobs=2 duration_s=60
  import     a COCO-keypoints dataset (person_keypoints JSON + images) as a dataset in datagen's pose layout
             e.g. storetwin import src=coco/annotations/person_keypoints_val2017.json out=data/coco-val
  train      train a perception model on a datagen (or imported) dataset, from scratch or from init= weights;
             ships models/<name>.pt, .onnx and a card
             e.g. storetwin train task=pose data=data/sc-train epochs=40 imgsz=416
             e.g. storetwin train task=pose data=[data/sc-train,data/coco-val] init=models/person_pose.pt epochs=10
  evaluate-model
             score a model on a (held-out) datagen dataset: mAP, keypoint mAP, look-alike recall
             e.g. storetwin evaluate-model model=models/person_pose.pt data=data/heldout
             or on the real photographs of people that ship inside installed packages, labelled by
             hand (benchmarks/real_photos): person recall, precision, PCK@0.2 of the torso
             e.g. storetwin evaluate-model model=models/person_pose.pt real=true imgsz=640 sheet=real.jpg
  quantize   an INT8 OpenVINO model beside a trained one (NNCF post-training quantisation,
             calibrated on a datagen dataset's images)
             e.g. storetwin quantize model=models/person_pose.pt data=data/calib
  run        simulate a scenario (or suite=default), run the store runtime on its streams and
             score it: scorecard.json, report.html and a table
             e.g. storetwin run scenario=single_pick
             e.g. storetwin run suite=default sensing=[fused,vision_only,weight_only]
             e.g. storetwin run suite=default recorded=runs/suite-default-<time>   (no simulation)
             e.g. storetwin run suite=random store=corner_shop seeds=0..9 shoppers=3 duration_s=60
                  (one drawn trip per seed: visits nobody wrote by hand, in any store)
  compare    gate a candidate's scorecards against a baseline's; exits 1 on a regression
             e.g. storetwin compare baseline=runs/suite-A candidate=runs/suite-B gate.mota_drop=0.01
  table      one table of several suites' scorecards, pooled into one total (batches of a random suite,
             a suite scored in parts, one stopped early): per scenario, the total, and the delays to the
             first and final update
             e.g. storetwin table runs=[runs/rs-a,runs/rs-b] sensing=fused
  coverage   how many cameras see each bin of a store
             e.g. storetwin coverage store=small_convenience out=plan.png
  serve      the twin as a store: a recorded run played on the wall clock, its cameras as RTSP
             (H.264) streams and its load cells and gates on an MQTT broker, both started here;
             impairments as impair.<key>= (clock_offset_s, jitter_s, frame_drop, dark_camera,
             dark_at_s, dark_for_s, broker_restart_at_s, duplicate, reorder, lose_cells, seed)
             e.g. storetwin serve recorded=runs/x/single_pick devices_out=runs/devices.yaml
  live       the runtime on a store's devices (conf/devices/<store>.yaml) until Ctrl-C or
             SIGTERM; the event log and a health line every few seconds in out=; runtime.* as in run
             e.g. storetwin live store=small_convenience devices=conf/devices/small_convenience.yaml out=runs/live
             with the store's API and dashboard (api_port=, tokens=<secrets file> or STORETWIN_TOKENS) and the
             receipts to the point-of-sale system (webhook=<url>, its secret in STORETWIN_WEBHOOK_SECRET)
             e.g. storetwin live ... api_port=8080 tokens=/etc/storetwin/tokens.yaml webhook=https://pos.local/receipts
             (webhook_carts=true: every cart update to it as well, as it happens)
             the event log on a PostgreSQL server many stores report to (a schema per store): log=postgresql://…
             a live replay (a recorded run in place of the devices, on the wall clock; the store from it):
             e.g. storetwin live replay=runs/x/busy_store out=runs/live-replay api_port=8080
  privacy    retention and erasure on a stopped live store's event log (a running one: its API's
             /api/admin/prune and /api/admin/erase, or live retention_days=)
             e.g. storetwin privacy out=runs/live prune_days=30      e.g. storetwin privacy out=runs/live erase=a17 why="asked"
  dashboard  a recorded run through the store's API and dashboard, with a time slider (reviews are
             kept in <run>/review/, the recording is not written)
             e.g. storetwin dashboard run=runs/suite-default-<time>/busy_store port=8080 speed=1
"""


def _compose(overrides: list[str], config_name: str = "config"):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hydra.core.config_store import ConfigStore

    from harness.paths import conf_dir
    from runtime.config import RuntimeConfig, as_dict

    # the runtime's defaults are written once, in its dataclasses: hydra gets them from there
    ConfigStore.instance().store(name="runtime_defaults", node={"runtime": as_dict(RuntimeConfig())})

    # `store=NAME` names a file in conf/store/, a folder hydra takes for a config group (and would
    # refuse to override as a value): set that key after composing instead.
    stores = [o.split("=", 1)[1] for o in overrides if o.startswith("store=")]
    overrides = [o for o in overrides if not o.startswith("store=")]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    if stores:
        cfg.store = stores[-1]
    return OmegaConf.to_container(cfg, resolve=True)


def cmd_simulate(overrides: list[str]) -> int:
    from harness.simulate import random_scenario_from, sim_config_from, simulate

    cfg = _compose(overrides)
    sim = sim_config_from(cfg["sim"])  # fail before anything starts
    if not isinstance(cfg.get("random"), bool):
        raise ValueError(f"random={cfg.get('random')!r}: expected true or false")
    jobs = cfg.get("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r}: expected a whole number of processes, 1 or more")
    scenario = random_scenario_from(cfg) if cfg["random"] else cfg["scenario"]
    res = simulate(scenario, sim, out=cfg.get("out"),
                   record_video=cfg["video"]["record"], fourcc=cfg["video"]["fourcc"],
                   make_contact_sheet=cfg["contact_sheet"], resolved_config=cfg, jobs=jobs)
    print(f"run directory: {res.run_dir}")
    print(f"  simulated {res.sim_seconds:.1f} s in {res.wall_seconds:.1f} s wall "
          f"({res.sim_seconds / max(res.wall_seconds, 1e-9):.2f} sim s per wall s); "
          f"{res.counts['frames']} frames, {res.counts['weights']} weight samples, {res.counts['gates']} gate events")
    if res.contact_sheet:
        print(f"  contact sheet: {res.contact_sheet}")
    if (res.run_dir / "weights.png").exists():
        print(f"  load cells:    {res.run_dir / 'weights.png'}")
    return 0


def cmd_run(overrides: list[str]) -> int:
    from harness.run import run, run_config_from

    cfg = run_config_from(_compose(overrides))   # fail before anything starts
    res = run(cfg)
    print(res.table)
    print(f"run directory: {res.out}")
    print(f"report: {res.report}")
    return 0


def _key_values(overrides: list[str], allowed: set[str], usage: str, required: tuple[str, ...] = ()) -> dict[str, str]:
    """The ``key=value`` arguments of a command that takes no Hydra config, checked: one line
    naming the bad argument, then the usage, when one has no ``=``, is not known or is missing."""
    args: dict[str, str] = {}
    for o in overrides:
        key, eq, value = o.partition("=")
        if not eq or key not in allowed:
            raise ValueError(f"{o!r}: expected one of {', '.join(sorted(allowed))} as key=value; usage: {usage}")
        args[key] = value
    missing = [k for k in required if not args.get(k)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}=; usage: {usage}")
    return args


def cmd_coverage(overrides: list[str]) -> int:
    from harness.paths import store_dir
    from runtime.geometry import coverage
    from runtime.store import load_store

    from harness.plots import floor_plan

    args = _key_values(overrides, {"store", "out"}, "storetwin coverage [store=small_convenience] [out=coverage_<store>.png]")
    name = args.get("store", "small_convenience")
    store = load_store(store_dir() / f"{name}.yaml")
    png = floor_plan(store, Path(args.get("out", f"coverage_{name}.png")))
    cov = coverage(store)
    worst = min(len(v) for v in cov.values())
    for bid, cams in cov.items():
        flag = "" if len(cams) >= 2 else "   <-- fewer than 2"
        print(f"{bid:10s} {len(cams)}  {', '.join(cams)}{flag}")
    print(f"{len(cov)} bins; every bin seen by at least {worst} cameras")
    print(f"floor plan: {png}")
    return 0 if worst >= 2 else 1


def cmd_datagen(overrides: list[str]) -> int:
    from harness.datagen import datagen_config_from, run_datagen

    cfg = _compose(overrides, "datagen")
    dg = datagen_config_from(cfg)   # fail before anything starts
    res = run_datagen(dg, Path(cfg["out"]), command=" ".join(["storetwin datagen", *overrides]))
    print(f"dataset: {res.out}")
    print(f"  shards made {len(res.made)}, already complete {len(res.skipped)}; {res.wall_s:.0f} s")
    for split, c in res.counts.items():
        n_prod = sum(v for k, v in c["instances"].items() if k != "person")
        print(f"  {split:5s}: {len(c['scenarios'])} scenarios, {c['images']} images, "
              f"{c['instances']['person']} persons, {n_prod} product boxes")
    print(f"  YOLO detect: {res.out / 'detect' / 'data.yaml'}")
    print(f"  YOLO pose:   {res.out / 'pose' / 'data.yaml'}")
    print(f"  COCO:        {res.out / 'coco'}")
    print(f"  card: {res.card}   samples: {res.mosaic}")
    return 0


IMPORT_USAGE = ("storetwin import src=<COCO keypoints JSON, or a folder of them> out=<new dataset folder> "
                "[images=<image folder>] [val_fraction=0.2] [min_keypoints=1] [background=keep|drop] [link=copy|hardlink]")


def cmd_import(overrides: list[str]) -> int:
    from harness.coco_import import ImportConfig, import_coco

    args = _key_values(overrides, {"src", "out", "images", "val_fraction", "min_keypoints", "background", "link"},
                       IMPORT_USAGE, required=("src", "out"))
    nums = _numbers(args, {"val_fraction": float, "min_keypoints": int}, IMPORT_USAGE)
    cfg = ImportConfig(**nums, **{k: args[k] for k in ("background", "link") if k in args})
    res = import_coco(args["src"], args["out"], args.get("images"), cfg,
                      command=" ".join(["storetwin import", *overrides]))
    print(f"dataset: {res.out}  ({res.wall_s:.0f} s)")
    for split, c in res.counts.items():
        print(f"  {split:5s}: {c['images']} images, {c['persons']} persons, {c['backgrounds']} background images")
    if res.skipped:
        print("  left out: " + "; ".join(f"{k}: {v}" for k, v in res.skipped.items()))
    print(f"  YOLO pose: {res.out / 'pose' / 'data.yaml'}")
    return 0


def cmd_train(overrides: list[str]) -> int:
    from harness.train import train, train_config_from

    cfg = train_config_from(_compose(overrides, "train"))   # fail before anything starts
    res = train(cfg, command=" ".join(["storetwin train", *overrides]))
    s = res.scores
    print(f"model: {res.weights}  ({res.weights.stat().st_size / 1e6:.1f} MB)  onnx: {res.onnx}")
    print(f"  trained in {res.wall_s / 60:.1f} min; box mAP50 {s['box_map50']:.3f}, mAP50-95 {s['box_map50_95']:.3f}"
          + (f", keypoint mAP50 {s['kpt_map50']:.3f}" if "kpt_map50" in s else ""))
    print(f"  card: {res.card}")
    return 0


EVALUATE_USAGE = ("storetwin evaluate-model model=models/<name>.pt data=<datagen or imported dataset> [imgsz=320] [task=pose|detect] "
                  "[layout=pose|products|detect] [split=all|val|train] [json=out.json]; or model=... real=true [imgsz=320] [conf=0.25] "
                  "[sheet=<contact sheet .jpg>] [json=out.json]")


def cmd_evaluate_model(overrides: list[str]) -> int:
    import json

    from harness.train import evaluate

    args = _key_values(overrides, {"model", "data", "imgsz", "task", "json", "layout", "real", "conf", "sheet", "split"},
                       EVALUATE_USAGE, ("model",))
    model = Path(args["model"])
    if not (model.is_file() or (model.is_dir() and any(model.glob("*.xml")))):
        raise ValueError(f"model={model}: expected an Ultralytics .pt, a .onnx file or an OpenVINO model folder")
    if args.get("real", "false") not in ("true", "false"):
        raise ValueError(f"real={args['real']}: expected true or false")
    if args.get("real") == "true":
        if {"data", "task", "layout", "split"} & args.keys():
            raise ValueError("real=true scores the model on the labelled photographs: data=, task=, layout= and split= do not "
                             "go with it; run the two apart")
        return _evaluate_on_photos(model, args)
    if "sheet" in args or "conf" in args:
        raise ValueError(f"sheet= and conf= go with real=true; usage: {EVALUATE_USAGE}")
    split = args.get("split", "all")
    if split not in ("all", "val", "train"):
        raise ValueError(f"split={split}: expected all (a held-out dataset, the default), val (a training set's "
                         f"validation scenarios) or train")
    splits = ("train", "val") if split == "all" else (split,)
    if not args.get("data"):
        raise ValueError(f"missing data= (a datagen or imported dataset, or real=true); usage: {EVALUATE_USAGE}")
    data = Path(args["data"])
    from harness.train import default_layout, model_task

    task = args.get("task") or model_task(model)
    layout = args.get("layout") or default_layout(task, data)
    if not (data / layout / "data.yaml").is_file():
        raise ValueError(f"data={data}: expected a `storetwin datagen` or `storetwin import` dataset folder with "
                         f"{layout}/data.yaml")
    s = evaluate(model, data, task, int(args.get("imgsz", 320)), splits=splits, layout=layout)
    print(f"{model} on {data} ({', '.join(s['splits'])}; {s['images']} images)")
    rows = [("box mAP50", s["box_map50"]), ("box mAP50-95", s["box_map50_95"])]
    rows += [("keypoint mAP50", s["kpt_map50"]), ("keypoint mAP50-95", s["kpt_map50_95"])] if "kpt_map50" in s else []
    rows += [("person AP50", s["person_ap50"]), ("person recall", s["person_recall"])] if "person_ap50" in s else []
    for k, v in rows:
        print(f"  {k:18s} {v:.3f}")
    for g, skus in s.get("lookalike_recall", {}).items():
        print(f"  look-alikes {g}: " + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} n/a" for k, v in skus.items()))
    if "json" in args:
        Path(args["json"]).write_text(json.dumps(s, indent=1))
    return 0


def _evaluate_on_photos(model: Path, args: dict[str, str]) -> int:
    import json

    from harness.real_photos import KEYPOINT_GROUPS, evaluate_on_photos
    from harness.train import _device

    nums = _numbers(args, {"imgsz": int, "conf": float}, EVALUATE_USAGE)
    imgsz, conf = nums.get("imgsz", 320), nums.get("conf", 0.25)
    if imgsz < 32 or imgsz % 32 or not 0 <= conf <= 1:
        raise ValueError(f"imgsz={imgsz}, conf={conf}: expected imgsz a multiple of 32 and conf in [0, 1]")
    r = evaluate_on_photos(model, imgsz=imgsz, conf=conf, device=_device("auto"), sheet=args.get("sheet"))
    print(f"{model} on {len(r['photos'])} real photographs ({', '.join(r['photos'])}; {r['labelled_people']} people "
          f"labelled by hand), {imgsz} px, confidence ≥ {conf}")
    if r["recall"] is None:
        print(f"  {r['note']}")
    else:
        share = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"  person recall      {share(r['recall'])}  ({r['found']} of {r['people']} at IoU ≥ {r['iou_min']})")
        print(f"  precision          {share(r['precision'])}  ({r['detections']} person detections)")
        if r["pose"]:
            print(f"  {'PCK@' + str(r['pck_alpha']) + ' torso':18s} {share(r['pck']['all'])}  ({r['pck_keypoints']} keypoints of "
                  f"{r['pck_people']} people found: " + ", ".join(f"{g} {share(r['pck'][g])}" for g in KEYPOINT_GROUPS) + ")")
        for name, v in r["images"].items():
            print(f"  {name}: {v['found']} of {v['people']} found, {v['detections']} detections")
    if r.get("sheet"):
        print(f"  contact sheet: {r['sheet']}")
    if "json" in args:
        Path(args["json"]).write_text(json.dumps(r, indent=1))
    return 0


def cmd_quantize(overrides: list[str]) -> int:
    from harness.train import quantize

    args = _key_values(overrides, {"model", "data", "split", "fraction", "imgsz", "layout"},
                       "storetwin quantize model=models/<name>.pt data=<datagen dataset> "
                       "[split=train] [fraction=1.0] [imgsz=<the model's>] [layout=pose|products|detect]", ("model", "data"))
    model = Path(args["model"])
    if model.suffix != ".pt" or not model.is_file():
        raise ValueError(f"model={model}: expected a trained Ultralytics .pt file")
    try:
        fraction = float(args.get("fraction", 1.0))
        imgsz = int(args["imgsz"]) if "imgsz" in args else None
    except ValueError:
        raise ValueError(f"fraction={args.get('fraction')}, imgsz={args.get('imgsz')}: expected a number in (0, 1] "
                         "and a whole number of pixels") from None
    res = quantize(model, Path(args["data"]), args.get("split", "train"), fraction, imgsz, args.get("layout"),
                   command=" ".join(["storetwin quantize", *overrides]))
    print(f"INT8 model: {res.folder}  (calibrated on {res.images} images in {res.wall_s:.0f} s)")
    print(f"  card: {res.card}")
    return 0


def cmd_compare(overrides: list[str]) -> int:
    from harness.compare import GateConfig, compare, format_verdict, load_scorecards
    from harness.configs import checked_fields

    cfg = _compose(overrides)
    for key in ("baseline", "candidate"):
        if not cfg.get(key):
            raise ValueError(f"{key}=: expected a suite folder, a run directory or a scorecard.json")
    gate = GateConfig(**checked_fields(GateConfig, cfg.get("gate"), "gate."))
    show = cfg.get("show", "changed")
    if show not in ("changed", "all"):
        raise ValueError(f"show={show!r}: expected changed or all")
    criteria = compare(load_scorecards(cfg["baseline"]), load_scorecards(cfg["candidate"]), gate)
    print(format_verdict(criteria, show))
    return 1 if any(c.status in ("regression", "missing") for c in criteria) else 0


def cmd_table(overrides: list[str]) -> int:
    from harness.compare import load_scorecards
    from harness.metrics import fmt
    from harness.run import suite_totals, tables

    args = _key_values(overrides, {"runs", "sensing"},
                       "storetwin table runs=[<suite folder or run directory>,...] [sensing=fused]", ("runs",))
    found: dict[tuple[str, str], str] = {}
    cards = []
    paths = []
    for path in (Path(p.strip()) for p in args["runs"].strip("[]").split(",") if p.strip()):
        # a suite stopped before its end has no scorecard of its own: its runs' scorecards
        parts = sorted(path.glob("*/scorecard.json")) if path.is_dir() and not (path / "scorecard.json").exists() else []
        paths += [q.parent for q in parts] or [path]
    for path in paths:
        for key, card in load_scorecards(path).items():
            if key in found:
                raise ValueError(f"runs=: {key[0]} ({key[1]}) is scored in both {found[key]} and {path}; "
                                 "a pooled total counts each run once")
            found[key] = path
            cards.append(card)
    if args.get("sensing"):
        cards = [c for c in cards if str(c.get("sensing", "fused")) == args["sensing"]]
        if not cards:
            raise ValueError(f"sensing={args['sensing']}: no scorecard of that mode under runs=")
    print(tables(cards))
    for mode, t in suite_totals(cards).items():
        print(f"{mode}: {t['exact']}/{t['visits']} exact; delay to the first update p50/p95 "
              f"{fmt(t['first_delay_p50_s'], '.2f')}/{fmt(t['first_delay_p95_s'], '.2f')} s, to the final "
              f"{fmt(t['delay_p50_s'], '.2f')}/{fmt(t['delay_p95_s'], '.2f')} s ({t['matched']} interactions matched, "
              f"{t['unmatched']} not)")
    return 0


SERVE_USAGE = ("storetwin serve recorded=<run folder> [scenario=<name in a suite folder>] [rtsp_port=8554] "
               "[broker_port=1883] [prefix=store] [start_in_s=2] [repeat=1] [batch_s=0.1] [linger_s=3] "
               "[devices_out=<devices.yaml>] [report=<serve.json>] "
               "[impair.<key>=<value> ...]")


def _numbers(args: dict[str, str], kinds: dict[str, type], usage: str) -> dict:
    """The given ones of ``kinds`` (key → int or float) read from ``args``, or a one-line error."""
    out = {}
    for k, conv in kinds.items():
        if k in args:
            try:
                out[k] = conv(args[k])
            except ValueError:
                what = "a whole number" if conv is int else "seconds" if k.endswith("_s") else "a number"
                raise ValueError(f"{k}={args[k]}: expected {what}; usage: {usage}") from None
    return out


def cmd_serve(overrides: list[str]) -> int:
    from harness.serve import Impairments, serve

    plain = [o for o in overrides if not o.startswith("impair.")]
    args = _key_values(plain, {"recorded", "scenario", "rtsp_port", "broker_port", "prefix", "start_in_s", "devices_out",
                               "report", "repeat", "batch_s", "linger_s"}, SERVE_USAGE, required=("recorded",))
    impair = Impairments.from_strings(_key_values([o[len("impair."):] for o in overrides if o.startswith("impair.")],
                                                  {f for f in Impairments.__dataclass_fields__}, SERVE_USAGE))
    run = Path(args["recorded"]) / args["scenario"] if args.get("scenario") else Path(args["recorded"])
    nums = _numbers(args, {"rtsp_port": int, "broker_port": int, "start_in_s": float, "repeat": int, "batch_s": float,
                           "linger_s": float}, SERVE_USAGE)
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    res = serve(run, prefix=args.get("prefix", "store"), impair=impair, devices_out=args.get("devices_out"),
                report=args.get("report"), stop=stop, **nums)
    print(f"served {sum(c['frames_sent'] for c in res['cameras'].values())} frames on {len(res['cameras'])} cameras, "
          f"{res['broker']['published']} MQTT messages")
    return 0


LIVE_USAGE = ("storetwin live (store=<name or store file> devices=<devices.yaml> | replay=<recorded run>) "
              "out=<folder> [duration_s=<s>] [lateness_s=0.3] [max_lateness_s=<s: learn the bound up to this>] [health_s=5] [api_port=<port>] "
              "[api_host=127.0.0.1] [api_process=true] [tokens=<secrets file>] [webhook=<url>] [webhook_carts=false] [retention_days=<d>] "
              "[log=postgresql://user@host/db (password in PGPASSWORD)] [runtime.<key>=<value> ...]")
PRIVACY_USAGE = ("storetwin privacy out=<a stopped live store's folder> (prune_days=<d> [receipts_days=<d>] | "
                 "erase=<account id> why=<text>)")


def cmd_privacy(overrides: list[str]) -> int:
    from runtime.eventlog import EventLog
    from runtime.live import hold_folder
    from runtime.ops import privacy

    args = _key_values(overrides, {"out", "prune_days", "receipts_days", "erase", "why"}, PRIVACY_USAGE, required=("out",))
    nums = _numbers(args, {"prune_days": float, "receipts_days": float}, PRIVACY_USAGE)
    folder = Path(args["out"])
    if not (folder / "events.sqlite").is_file():
        raise FileNotFoundError(f"{folder}: no events.sqlite (out= is a live store's folder)")
    if ("prune_days" in nums) == ("erase" in args):
        raise ValueError(f"expected one of prune_days= and erase=; usage: {PRIVACY_USAGE}")
    lock = hold_folder(folder)     # refused while a live runtime writes it: use its API then
    try:
        log_ = EventLog(folder)
        try:
            import time

            if "erase" in args:
                removed = privacy.erase(log_.db, args["erase"], by="storetwin privacy", why=args.get("why", ""),
                                        now_wall=time.time())
            else:
                removed = privacy.prune(log_.db, nums["prune_days"], time.time(), nums.get("receipts_days"))
            log_.rewrite_copies()
        finally:
            log_.close()
    except privacy.PrivacyError as e:
        raise ValueError(str(e)) from None
    finally:
        lock.close()
    print(f"privacy: removed {removed} in {folder}")
    return 0
DASHBOARD_USAGE = ("storetwin dashboard run=<run folder (with out/events.sqlite)> [port=8080] [host=127.0.0.1] [speed=1] "
                   "[start_s=0] [tokens=<secrets file>] [duration_s=<stop after, wall seconds>]")


def _tokens(path: str | None):
    """The API's tokens: a secrets file, else STORETWIN_TOKENS, else one admin token made for this
    session (printed once)."""
    import os
    import secrets

    from runtime.ops.auth import Tokens

    if path:
        return Tokens.from_file(path), None
    if os.environ.get("STORETWIN_TOKENS", "").strip():
        return Tokens.from_env(), None
    token = secrets.token_urlsafe(24)
    return Tokens.from_env(environ={"STORETWIN_TOKENS": f"admin:admin:{token}"}), token


def cmd_dashboard(overrides: list[str]) -> int:
    import signal
    import threading

    from runtime.ops.api import open_ops
    from runtime.ops.replay import LogReplay, review_copy
    from runtime.ops.view import StoreView
    from runtime.store import load_store

    args = _key_values(overrides, {"run", "port", "host", "speed", "start_s", "tokens", "duration_s"}, DASHBOARD_USAGE,
                       required=("run",))
    nums = _numbers(args, {"port": int, "speed": float, "start_s": float, "duration_s": float}, DASHBOARD_USAGE)
    run = Path(args["run"])
    log_file, store_file = run / "out" / "events.sqlite", run / "store.yaml"
    if not log_file.is_file():
        raise FileNotFoundError(f"{run}: no out/events.sqlite (run= wants one scenario's run folder)")
    store = load_store(store_file if store_file.is_file() else Path(args.get("store", "")))
    tokens, made = _tokens(args.get("tokens"))
    view = StoreView(latency="stream")
    view.publish({"type": "health", "data": {"mode": f"replay of {run}"}}, fan_out=False)
    replay = LogReplay(log_file, view, speed=nums.get("speed", 1.0), start_s=nums.get("start_s", 0.0))
    review_dir = run / "review"
    review_copy(log_file, review_dir)
    server, _, desk = open_ops(store, review_dir, tokens, view=view, replay=replay, host=args.get("host", "127.0.0.1"),
                               port=nums.get("port", 8080))
    replay.start()
    print(f"dashboard: {server.url}/  ({replay.duration_s:.0f} s of {run.name} at {replay.speed:g}× real time; "
          f"reviews in {review_dir})")
    if made:
        print(f"sign in with this session's admin token: {made}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait(nums.get("duration_s"))
    replay.stop()
    server.stop()
    desk.close()
    return 0


def cmd_live(overrides: list[str]) -> int:
    import signal

    from harness.paths import store_dir
    from runtime.config import runtime_config_from
    from runtime.devices import Broker, Devices, load_devices
    from runtime.live import LiveStore
    from runtime.store import load_store

    plain = [o for o in overrides if not o.startswith("runtime.")]
    args = _key_values(plain, {"store", "devices", "replay", "out", "duration_s", "lateness_s", "max_lateness_s",
                               "health_s", "api_port", "api_host", "api_process", "tokens", "webhook", "webhook_carts",
                               "retention_days",
                               "log"}, LIVE_USAGE)
    missing = [k for k in (("out",) if args.get("replay") else ("store", "devices", "out")) if not args.get(k)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}=; usage: {LIVE_USAGE}")
    cfg = runtime_config_from(_compose([o for o in overrides if o.startswith("runtime.")])["runtime"])
    replay = Path(args["replay"]) if args.get("replay") else None
    if replay is not None:     # a live replay: the recording in place of the devices, its own store file
        if "devices" in args:
            raise ValueError("live: replay= and devices= both given: a live replay takes no devices")
        if not (replay / "store.yaml").is_file():
            raise FileNotFoundError(f"replay={replay}: no store.yaml there (expected a recorded run's folder)")
        store_file = replay / "store.yaml"
    else:
        store_file = Path(args["store"]) if args["store"].endswith((".yaml", ".yml")) else store_dir() / f"{args['store']}.yaml"
    store = load_store(store_file)
    if replay is not None and args.get("store") and Path(args["store"]).stem != store.name:
        raise ValueError(f"live: store={args['store']} but replay={replay} is of store {store.name}")
    devices = load_devices(args["devices"], store) if replay is None else Devices("replay", Broker(), {}, cells="none",
                                                                                  gates="none")
    webhook_carts = args.get("webhook_carts", "false").lower()
    if webhook_carts not in ("true", "false") or (webhook_carts == "true" and not args.get("webhook")):
        raise ValueError(f"live: webhook_carts={args['webhook_carts']}: expected true or false, with webhook=<url>")
    api_process = args.get("api_process", "true").lower()
    if api_process not in ("true", "false"):
        raise ValueError(f"live: api_process={args['api_process']}: expected true or false")
    nums = _numbers(args, {**dict.fromkeys(("duration_s", "lateness_s", "max_lateness_s", "health_s", "retention_days"),
                                           float), "api_port": int}, LIVE_USAGE)
    webhook = None
    if args.get("webhook"):     # checked before anything starts
        from runtime.ops.outbox import WebhookConfig

        webhook = WebhookConfig.from_env(args["webhook"])
    tokens, made = _tokens(args.get("tokens")) if "api_port" in nums else (None, None)
    live = LiveStore(store, devices, args["out"], cfg, lateness_s=nums.get("lateness_s", 0.3),
                     max_lateness_s=nums.get("max_lateness_s"), health_s=nums.get("health_s", 5.0),
                     retention_days=nums.get("retention_days"), log_url=args.get("log"),
                     outbox=("receipt", "cart_update") if webhook_carts == "true" else ("receipt",))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: live.stop())
    if tokens is not None:
        url = live.serve_api(tokens, host=args.get("api_host", "127.0.0.1"), port=nums["api_port"],
                             process=api_process == "true")
        print(f"API and dashboard: {url}/" + (f"  (this session's admin token: {made})" if made else ""), flush=True)
    if webhook is not None:
        live.deliver_to(webhook)
    live.open()
    if replay is not None:
        live.play(replay)
    summary = live.run(duration_s=nums.get("duration_s"))
    print(f"live: {summary['wall_s']:.0f} s; frames {summary['frames_seen']}; "
          f"MQTT messages {summary['mqtt']['received'] if summary['mqtt'] else 0}; event log in {args['out']}")
    return 0


COMMANDS = {"table": cmd_table, "simulate": cmd_simulate, "coverage": cmd_coverage, "datagen": cmd_datagen,
            "import": cmd_import, "train": cmd_train, "evaluate-model": cmd_evaluate_model, "quantize": cmd_quantize,
            "run": cmd_run, "compare": cmd_compare, "serve": cmd_serve, "live": cmd_live,
            "dashboard": cmd_dashboard, "privacy": cmd_privacy}


def main(argv: list[str] | None = None) -> int:
    from runtime.store import SpecError

    import logging
    import os

    argv = sys.argv[1:] if argv is None else argv
    # the runtime's notes (what it left out and why) on stderr; STORETWIN_LOG=INFO or DEBUG for more
    logging.basicConfig(level=os.environ.get("STORETWIN_LOG", "WARNING").upper(),
                        format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help", "help") or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help", "help") else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help", "help") else 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # hydra override errors and the like: one line, not a traceback
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
            print(f"error: sim.{e.full_key}: {str(getattr(e, 'msg', e)).splitlines()[0]}", file=sys.stderr)
            return 2
        if isinstance(e, (HydraException, OmegaConfBaseException, FileExistsError, FileNotFoundError, ValueError,
                          RuntimeError)):
            print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
