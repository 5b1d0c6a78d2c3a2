"""`storetwin simulate`: run a scenario in the twin and write its run directory.

The run directory holds the resolved config, the store and scenario files (a scenario drawn at
random or built in code is written out, so it can be re-run), the recorded sensor streams
(``streams/``), the ground truth (``gt/``) and ``contact_sheet.png``. It is written under a
temporary name and renamed when complete, so a failed run leaves nothing half-written.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml
from tqdm import tqdm

from harness.contact_sheet import contact_sheet, draw_truth
from harness.paths import scenario_path, store_dir
from harness.plots import weight_traces
from runtime.messages import Frame, SensorMessage
from runtime.recording import StreamWriter
from runtime.store import load_store
from sim.loadcell import LOADCELL_PRESETS, LoadCellConfig
from sim.randomize import TripConfig, random_scenario, scenario_to_dict
from sim.scenario import Scenario, load_scenario
from sim.simulator import CameraConfig, SimConfig, Simulator


def sim_config_from(cfg: dict) -> SimConfig:
    """Check the ``sim`` config against :class:`SimConfig` (types, known keys) and build it."""
    from omegaconf import OmegaConf

    cfg = dict(cfg or {})
    loadcell = {k: v for k, v in dict(cfg.get("loadcell") or {}).items() if v is not None}   # null: the preset's
    preset = loadcell.pop("preset", "twin")   # a load-cell preset, then any field of it overridden
    if preset not in LOADCELL_PRESETS:
        raise ValueError(f"sim.loadcell.preset={preset!r}: expected one of {', '.join(LOADCELL_PRESETS)}")
    cfg["loadcell"] = loadcell
    base = OmegaConf.structured(replace(SimConfig(), loadcell=LOADCELL_PRESETS[preset]))
    for node in (base, base.loadcell, base.camera):  # frozen dataclasses come read-only
        OmegaConf.set_readonly(node, False)
    merged = OmegaConf.to_container(OmegaConf.merge(base, cfg))
    if isinstance(merged["camera"]["cameras"], str):
        merged["camera"]["cameras"] = [merged["camera"]["cameras"]]
    cam = dict(merged.pop("camera"))
    cam["cameras"] = tuple(cam["cameras"])
    cam["draw_only"] = tuple([cam["draw_only"]] if isinstance(cam["draw_only"], str) else cam["draw_only"])
    cam["fps"] = tuple(float(f) for f in cam["fps"])
    if cam["masks"] not in ("persons", "all"):
        raise ValueError(f"sim.camera.masks={cam['masks']!r}: expected 'persons' or 'all'")
    lc = dict(merged.pop("loadcell"))
    lc["spike_g"] = tuple(float(g) for g in lc["spike_g"])
    return SimConfig(loadcell=LoadCellConfig(**lc), camera=CameraConfig(**cam), **merged)


def trip_config_from(cfg: dict | None) -> TripConfig:
    """Check the ``trips`` config against :class:`TripConfig` (known keys, types, ranges) and build it.
    Every error is one ``ValueError`` line naming ``trips.<field>``."""
    from harness.configs import checked_fields, tuples

    merged = checked_fields(TripConfig, cfg, "trips.")
    try:
        return TripConfig(**tuples(merged))
    except ValueError as e:
        raise ValueError(f"trips.{e}") from None


def random_scenario_from(cfg: dict) -> Scenario:
    """The scenario ``storetwin simulate random=true`` draws: top-level ``store``, ``seed``,
    ``shoppers``, ``duration_s`` and the ``trips`` knobs, each checked with a one-line error."""
    def field(key: str, kind: type | tuple, ok, expected: str):
        v = cfg.get(key)
        if isinstance(v, bool) or not isinstance(v, kind) or not ok(v):
            raise ValueError(f"{key}={v!r}: expected {expected}")
        return v

    store_name = field("store", str, lambda s: s != "", "a store name")
    seed = field("seed", int, lambda s: s >= 0, "an integer ≥ 0")
    shoppers = field("shoppers", int, lambda k: k >= 1, "an integer ≥ 1")
    duration_s = float(field("duration_s", (int, float), lambda d: d > 0, "seconds > 0"))
    trips = trip_config_from(cfg.get("trips"))
    path = Path(store_dir()) / f"{store_name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in Path(store_dir()).glob("*.yaml")))
        raise ValueError(f"store={store_name!r}: expected a store in {store_dir()} ({known})")
    return random_scenario(load_store(path), store_name, seed, shoppers, duration_s, trips, store_dir=store_dir())


@dataclass
class SimulationResult:
    run_dir: Path
    sim_seconds: float
    wall_seconds: float
    counts: dict
    contact_sheet: Path | None


def simulate(scenario: Scenario | str, sim: SimConfig = SimConfig(), out: Path | None = None,
             record_video: bool = True, fourcc: str = "mp4v", make_contact_sheet: bool = True,
             progress: bool = True, resolved_config: dict | None = None,
             consumers: Sequence[Callable[[SensorMessage], object]] = (), jobs: int = 1,
             keep_tiles: bool = False) -> SimulationResult:
    """Run ``scenario`` and write its run directory. ``consumers`` get every sensor message as the
    simulation produces it (the simulator's live source; e.g. ``Runtime.process``): the messages
    only, never the simulator's state. ``jobs`` > 1 draws the cameras in that many processes
    (:func:`simulate_in_parts`; not with ``consumers``, which want one stream)."""
    if jobs > 1 and sim.camera.render:
        if consumers:
            raise ValueError(f"jobs={jobs}: a simulation in parts has no single stream to hand to consumers; use jobs=1")
        return simulate_in_parts(scenario, sim, out, jobs, record_video=record_video, fourcc=fourcc,
                                 make_contact_sheet=make_contact_sheet, progress=progress,
                                 resolved_config=resolved_config)
    if isinstance(scenario, str):
        scenario = load_scenario(scenario_path(scenario), store_dir())
    store = scenario.spec
    out = Path(out) if out else Path("runs") / f"{scenario.name}-{datetime.now():%Y%m%d-%H%M%S}"
    if out.exists():
        raise FileExistsError(f"{out}: run directory exists; choose another out=")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shutil.copy(Path(store_dir()) / f"{scenario.store}.yaml", tmp / "store.yaml")
        if scenario.path and not scenario.path.startswith("<"):
            shutil.copy(scenario.path, tmp / "scenario.yaml")
        else:  # drawn or built in code: write it out, so `storetwin simulate scenario=<this file>` re-runs it
            (tmp / "scenario.yaml").write_text(yaml.safe_dump(scenario_to_dict(scenario), sort_keys=False,
                                                              default_flow_style=None, allow_unicode=True))
        if resolved_config is not None:
            (tmp / "config.yaml").write_text(yaml.safe_dump(resolved_config, sort_keys=False))
        simulator = Simulator(store, scenario, sim)
        # a camera that draws only the frames the runtime takes fills its video at the ticks' rate
        drawn_hz = sim.camera.perceive_hz
        fps = {c: min(clock.fps, drawn_hz) if drawn_hz else clock.fps for c, clock in simulator.clocks.items()}
        writer = StreamWriter(tmp / "streams", video=record_video, fourcc=fourcc, fps=fps)
        best: dict[str, tuple[float, np.ndarray, object, float]] = {}  # per camera: its most telling frame
        t0 = time.perf_counter()
        total = round(simulator.expected_duration_s(), 1)
        bar = tqdm(total=total, unit="sim s", disable=not progress, desc=f"simulate {scenario.name}",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/~{total} sim s [{elapsed}<{remaining}]{postfix}")
        last = 0.0
        try:
            for msg in simulator.run():
                writer.write(msg)
                for consume in consumers:
                    consume(msg)
                if isinstance(msg, Frame) and make_contact_sheet:
                    frames = simulator.truth.cameras.get(msg.camera_id)
                    if frames and frames.seq and frames.seq[-1] == msg.seq:
                        tr = frames.frames[-1]
                        score = float((tr.keypoints[..., 2] == 2).sum()) + 0.1 * len(tr.person_ids)
                        if msg.camera_id not in best or score > best[msg.camera_id][0]:
                            best[msg.camera_id] = (score, msg.image, tr, msg.t)
                if msg.t - last >= 0.5:
                    if msg.t > bar.total:
                        bar.total = round(msg.t + 1.0, 1)
                    bar.update(msg.t - last)
                    last = msg.t
                    bar.set_postfix(shoppers=sum(s.present for s in simulator.shoppers), refresh=False)
        finally:
            bar.close()
            writer.close()
            wall = time.perf_counter() - t0
            simulator.close()
        simulator.truth.write(tmp / "gt")
        # how each camera really kept time (for the evaluator; the runtime sees only the stamps)
        (tmp / "gt" / "camera_clocks.json").write_text(json.dumps(
            {c: {"fps": k.fps, "phase_s": k.phase_s, "offset_s": k.offset_s, "jitter_s": k.jitter_s}
             for c, k in simulator.clocks.items()}, indent=1))
        sheet = None
        if make_contact_sheet and best:
            tiles = [(f"{cam}  t={t:.1f} s", draw_truth(img, tr)) for cam, (_, img, tr, t) in sorted(best.items())]
            sheet = contact_sheet(tiles, tmp / "contact_sheet.png")
            if keep_tiles:   # a part of a run in parts: the joined run's sheet is made of every part's tiles
                np.savez_compressed(tmp / "contact_tiles.npz", **{title: tile for title, tile in tiles})
        summary = {"scenario": scenario.name, "seed": scenario.seed, "sim_seconds": round(simulator.t, 3),
                   "wall_seconds": round(wall, 2), "messages": writer.counts,
                   "shoppers": len(scenario.shoppers), "interactions": len(simulator.truth.interactions)}
        if drawn_hz and sim.camera.render:
            summary["frames_for_perception_hz"] = drawn_hz   # only the frames a runtime at this rate takes
        (tmp / "run.json").write_text(json.dumps(summary, indent=1))
        weight_traces(tmp, tmp / "weights.png")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SimulationResult(out, simulator.t, wall, writer.counts, out / "contact_sheet.png" if sheet else None)


def deal_cameras(cameras: list[str], parts: int) -> list[tuple[str, ...]]:
    """``cameras`` dealt out in turn to ``parts`` shares (each share has some of every view)."""
    k = max(1, min(parts, len(cameras)))
    return [tuple(cameras[j::k]) for j in range(k)]


def simulate_in_parts(scenario: Scenario | str, sim: SimConfig, out: Path | None, jobs: int,
                      record_video: bool = True, fourcc: str = "mp4v", make_contact_sheet: bool = True,
                      progress: bool = True, resolved_config: dict | None = None) -> SimulationResult:
    """``scenario`` simulated in ``jobs`` processes at once, each the whole simulation (physics,
    shoppers, load cells: the same seed, so the same) drawing some of the cameras (dealt out in
    turn), then joined into one run directory: the same files as one process writes, in about
    1/``jobs`` of the wall time when the cameras are most of it."""
    from joblib.externals.loky import ProcessPoolExecutor

    if isinstance(scenario, str):
        scenario = load_scenario(scenario_path(scenario), store_dir())
    out = Path(out) if out else Path("runs") / f"{scenario.name}-{datetime.now():%Y%m%d-%H%M%S}"
    if out.exists():
        raise FileExistsError(f"{out}: run directory exists; choose another out=")
    cams = list(sim.camera.cameras or (c.id for c in scenario.spec.cameras))
    cams = [c for c in cams if not sim.camera.draw_only or c in sim.camera.draw_only]
    shares = deal_cameras(cams, jobs)
    parts = [out.with_name(f"{out.name}.cameras-{j}.partial-run") for j in range(len(shares))]
    for part in parts:     # left by a run that was killed
        shutil.rmtree(part, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        with ProcessPoolExecutor(max_workers=len(shares)) as pool:
            running = [pool.submit(simulate, scenario, replace(sim, camera=replace(sim.camera, draw_only=share)), part,
                                   record_video, fourcc, make_contact_sheet, progress and j == 0, resolved_config,
                                   (), 1, True)
                       for j, (share, part) in enumerate(zip(shares, parts))]
            results = [r.result() for r in running]
        tiles = []
        for part in parts:
            if (part / "contact_tiles.npz").is_file():
                with np.load(part / "contact_tiles.npz") as z:
                    tiles += [(title, z[title]) for title in z.files]
                (part / "contact_tiles.npz").unlink()
        join_parts(parts, out)
    except BaseException:
        for part in parts:
            shutil.rmtree(part, ignore_errors=True)
        raise
    (out / "contact_sheet.png").unlink(missing_ok=True)   # the first part's, of its cameras only
    sheet = contact_sheet(sorted(tiles, key=lambda tile: tile[0]), out / "contact_sheet.png") if tiles else None
    counts = dict(results[0].counts)
    counts["frames"] = sum(r.counts["frames"] for r in results)
    return SimulationResult(out, results[0].sim_seconds, time.perf_counter() - t0, counts, sheet)


SHARED_FILES = ("streams/weights.csv", "streams/gates.jsonl", "gt/carts.json", "gt/interactions.jsonl",
                "gt/instances.json", "gt/shoppers.json", "gt/gates.jsonl")


def join_parts(parts: list[Path], out: Path) -> Path:
    """Join the run folders of a scenario simulated in parts, each drawing some of its cameras
    (:func:`simulate_in_parts`, or a suite's split scenarios) into ``out``; the parts are removed.
    Parts that disagree on what they share are refused."""
    import hashlib

    if out.exists():
        raise FileExistsError(f"{out}: run directory exists; choose another out=")
    base = parts[0]
    for p in parts[1:]:
        for rel in SHARED_FILES:
            a, b = base / rel, p / rel
            if a.exists() != b.exists() or (a.exists() and hashlib.sha1(a.read_bytes()).digest() != hashlib.sha1(b.read_bytes()).digest()):
                raise RuntimeError(f"{p.name}: {rel} differs from {base.name}'s: the parts of a split run must simulate the same store")
    info = json.loads((base / "run.json").read_text())
    walls = [info["wall_seconds"]]
    for p in parts[1:]:
        for f in [*(p / "streams").glob("*.mp4"), *(p / "streams").glob("*.frames.csv"), *(p / "gt" / "frames").glob("*.npz")]:
            shutil.move(str(f), str(base / f.relative_to(p)))
        other = json.loads((p / "run.json").read_text())
        info["messages"]["frames"] += other["messages"]["frames"]
        walls.append(other["wall_seconds"])
        shutil.rmtree(p)
    info["wall_seconds"] = max(walls)
    info["parts_wall_seconds"] = walls
    (base / "run.json").write_text(json.dumps(info, indent=1))
    base.rename(out)
    return out
