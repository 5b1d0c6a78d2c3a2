"""`storetwin run`: simulate a scenario (or a suite), run the store runtime on its sensor streams,
score the outputs against the ground truth, and write the scorecard and the report.

The runtime gets the run's recorded streams (``source=replay``, the default) or the messages as
the simulation produces them (``source=live``), and the store description — never the simulator's
state. With ``pacing=realtime`` (the default for replay) every message is released at its own
timestamp on the wall clock, so the latency from an interaction to its published cart update is
what a store would see on this machine. Each sensing mode (``sensing=[fused,weight_only]``) runs
the runtime once more on the same streams: an ablation, side by side in one report.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from concurrent import futures
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from harness.metrics import aggregate, format_table, score_run
from harness.paths import home, scenario_path, store_dir
from harness.report import write_report, write_suite_report
from harness.simulate import deal_cameras, join_parts, simulate
from runtime.config import SENSING, RuntimeConfig, runtime_config_from
from runtime.pipeline import Runtime
from runtime.sources import ReplaySource, paced
from runtime.store import load_store
from sim.randomize import TripConfig
from sim.scenario import Scenario
from sim.simulator import CameraConfig, SimConfig

SOURCES, PACINGS, LAUNCHERS = ("replay", "live"), ("realtime", "asfast"), ("joblib", "ray")
FRAMES = ("perceived", "all")


@dataclass(frozen=True)
class RunConfig:
    scenario: str = "single_pick"
    suite: str | tuple[str, ...] | None = None   # "default": every scenario in scenarios/; "random"; or a list of names
    sensing: tuple[str, ...] = ("fused",)  # the first is the run's main mode (out/); others go to out-<mode>/
    source: str = "replay"               # replay: the recorded streams; live: in-process, as simulated
    pacing: str = "realtime"             # realtime: messages released at their timestamps; asfast
    out: str | None = None
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    sim: SimConfig = field(default_factory=lambda: SimConfig(camera=CameraConfig(truth=False)))
    recorded: str | None = None          # runs recorded before (a run or a suite folder): no simulation
    resimulate: str | None = None        # with recorded=: "weights" simulates again without cameras (another
                                         # load-cell model) and takes the recorded camera streams
    random: "RandomSuite | None" = None  # suite=random: the trips it draws
    jobs: int = 1                        # a suite's scenarios simulated and scored this many at a time (processes)
    launcher: str = "joblib"             # jobs>1 or ray: joblib (this machine) | ray (a Ray cluster, or one started here)
    ray_address: str | None = None       # launcher=ray: an existing cluster ("auto", "ray://head:10001"); none = start one here
    split: bool = True                   # side by side: a scenario longer than half a worker's share is simulated in camera parts
    frames: str = "perceived"            # perceived: the cameras draw only the frames the runtime takes; all: every frame

    def __post_init__(self) -> None:
        if self.suite == "random" and self.random is None:
            raise ValueError("suite=random: expected store=, seeds=A..B, shoppers= and duration_s=")
        bad = [s for s in self.sensing if s not in SENSING]
        if bad or not self.sensing:
            raise ValueError(f"sensing={list(self.sensing)}: expected some of {', '.join(SENSING)}")
        if self.source not in SOURCES:
            raise ValueError(f"source={self.source!r}: expected one of {', '.join(SOURCES)}")
        if self.pacing not in PACINGS:
            raise ValueError(f"pacing={self.pacing!r}: expected one of {', '.join(PACINGS)}")
        if self.source == "live" and (len(self.sensing) > 1 or self.pacing == "realtime"):
            raise ValueError("source=live runs one sensing mode as fast as the simulation goes: "
                             "use pacing=asfast and one sensing mode, or source=replay")
        if self.recorded is not None and self.source == "live":
            raise ValueError("recorded= replays recorded streams: it cannot go with source=live")
        if self.resimulate not in (None, "weights"):
            raise ValueError(f"resimulate={self.resimulate!r}: expected weights (or null)")
        if self.resimulate is not None and self.recorded is None:
            raise ValueError("resimulate=weights takes the camera streams of a recorded run: give recorded= too")
        if not isinstance(self.jobs, int) or isinstance(self.jobs, bool) or self.jobs < 1:
            raise ValueError(f"jobs={self.jobs!r}: expected a whole number of at least 1")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher={self.launcher!r}: expected one of {', '.join(LAUNCHERS)}")
        if self.frames not in FRAMES:
            raise ValueError(f"frames={self.frames!r}: expected one of {', '.join(FRAMES)}")
        if not isinstance(self.split, bool):
            raise ValueError(f"split={self.split!r}: expected true or false")
        if self.ray_address is not None and self.launcher != "ray":
            raise ValueError(f"ray_address={self.ray_address} goes with launcher=ray")
        if (self.jobs > 1 or self.launcher == "ray") and self.pacing == "realtime":
            side = f"jobs={self.jobs}" if self.jobs > 1 else "launcher=ray"
            raise ValueError(f"{side} runs scenarios side by side, so each one's latency at real time "
                             "would measure the others: use pacing=asfast, or jobs=1 on joblib")
        if self.recorded is not None and not Path(self.recorded).is_dir():
            raise ValueError(f"recorded={self.recorded}: no such folder (expected a run or suite folder "
                             "written by storetwin run or storetwin simulate)")


    def simulation(self) -> SimConfig:
        """The simulator's settings for this run: with ``frames=perceived`` the cameras draw only the
        frames the runtime takes at ``runtime.perception_hz`` (each camera's frame nearest each
        tick), since the runtime reads no other and the scorer reads the simulator's own truth."""
        if self.frames != "perceived":
            return self.sim
        return replace(self.sim, camera=replace(self.sim.camera, perceive_hz=self.runtime.perception_hz))


@dataclass(frozen=True)
class RandomSuite:
    """``suite=random``: one drawn scenario per seed (sim/randomize.py), so targets are measured on
    visits nobody wrote by hand, in any store. The runs are named ``random-s<seed>-k<shoppers>``."""

    store: str
    seeds: tuple[int, ...]
    shoppers: int
    duration_s: float
    trips: TripConfig = field(default_factory=TripConfig)

    def scenarios(self) -> list[Scenario]:
        from sim.randomize import random_scenario

        spec = load_store(store_dir() / f"{self.store}.yaml")
        return [random_scenario(spec, self.store, s, self.shoppers, self.duration_s, self.trips,
                                store_dir=store_dir()) for s in self.seeds]


def parse_seeds(v) -> tuple[int, ...]:
    """``seeds=A..B`` (both included), ``seeds=7`` or ``seeds=[1,5,9]``."""
    if isinstance(v, bool):
        raise ValueError(f"seeds={v!r}: expected A..B (both included), one seed, or a list of seeds")
    if isinstance(v, int):
        v = [v]
    if isinstance(v, str) and ".." in v:
        a, _, b = v.partition("..")
        if a.strip().isdigit() and b.strip().isdigit() and int(a) <= int(b):
            return tuple(range(int(a), int(b) + 1))
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
        if len(set(v)) == len(v):
            return tuple(v)
    raise ValueError(f"seeds={v!r}: expected A..B (both included, A ≤ B), one seed, or a list of distinct seeds ≥ 0")


def run_config_from(cfg: dict) -> RunConfig:
    """Build the run settings from the composed config; one-line errors naming the key."""
    runtime = runtime_config_from(cfg.get("runtime")).with_models_from(home())
    sensing = cfg.get("sensing", "fused")
    sensing = tuple([sensing] if isinstance(sensing, str) else sensing)
    suite = cfg.get("suite")
    suite = tuple(suite) if isinstance(suite, list) else suite
    drawn = None
    if suite == "random":
        from harness.simulate import random_scenario_from

        seeds = parse_seeds(cfg.get("seeds"))
        first = random_scenario_from({**cfg, "seed": seeds[0]})   # checks store, shoppers, duration_s, trips
        drawn = RandomSuite(cfg["store"], seeds, int(cfg["shoppers"]), float(first.duration_s),
                            _trips(cfg.get("trips")))
    return RunConfig(scenario=cfg.get("scenario", "single_pick"), suite=suite, sensing=sensing,
                     source=cfg.get("source", "replay"), pacing=cfg.get("pacing", "realtime"), out=cfg.get("out"),
                     runtime=runtime,
                     recorded=cfg.get("recorded"), resimulate=cfg.get("resimulate"), sim=_sim_config(cfg.get("sim")),
                     random=drawn, jobs=_whole(cfg.get("jobs", 1)), launcher=cfg.get("launcher", "joblib"),
                     ray_address=cfg.get("ray_address"), split=cfg.get("split", True),
                     frames=cfg.get("frames", "perceived"))


def _whole(v):
    """A whole number from the command line (``jobs=2``); anything else goes to RunConfig's check as is."""
    try:
        return int(v) if not isinstance(v, bool) and float(v) == int(v) else v
    except (TypeError, ValueError):
        return v


def _trips(trips: dict | None) -> TripConfig:
    from harness.simulate import trip_config_from

    return trip_config_from(trips)


def _sim_config(sim: dict | None) -> SimConfig:
    """The command line's ``sim.*`` settings; the runtime needs the streams and the scorer the true
    tracks, carts and interactions: no per-frame truth (an extra render per frame)."""
    from harness.simulate import sim_config_from

    base = sim_config_from(sim or {})
    return replace(base, camera=replace(base.camera, truth=False))


def run_runtime(run_dir: Path, cfg: RuntimeConfig, pacing: str, out_name: str = "out") -> dict:
    """The runtime on a recorded run's streams; writes ``run_dir/<out_name>/`` and its run.json."""
    store = load_store(run_dir / "store.yaml")
    out = run_dir / out_name
    if out.exists():
        raise FileExistsError(f"{out}: runtime outputs exist already")
    check_frames_fit(run_dir, cfg)
    rt = Runtime(store, cfg, out)
    source = ReplaySource(run_dir, cameras=() if cfg.sensing == "weight_only" else None,
                          weights=cfg.sensing != "vision_only")
    wall_t0 = time.time() + 0.2
    wall_start = time.time()
    stream = paced(source, wall_t0) if pacing == "realtime" else source
    rt.run(stream)
    info = {"pacing": pacing, "wall_t0": wall_t0 if pacing == "realtime" else None, "stream_s": round(rt.t, 3),
            "wall_s": round(time.time() - wall_start, 3), "sensing": cfg.sensing, **rt.stats}
    if source.skipped:   # a damaged recording: what was left out of it, per file
        info["recording_skipped"] = dict(source.skipped)
    (out / "run.json").write_text(json.dumps(info, indent=1))
    return info


def check_frames_fit(run_dir: Path, cfg: RuntimeConfig) -> None:
    """A recording whose cameras drew only the frames of one perception rate serves a runtime at
    that rate or at a whole fraction of it (its ticks are among the recorded ones); any other rate
    would find no frame at most of its ticks, so it is refused, naming both."""
    info = run_dir / "run.json"
    drawn = json.loads(info.read_text()).get("frames_for_perception_hz") if info.is_file() else None
    if not drawn or cfg.sensing == "weight_only":
        return
    ratio = drawn / cfg.perception_hz
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise ValueError(f"{info}: its cameras drew only the frames a runtime at {drawn:g} Hz takes "
                         f"(frames=perceived); runtime.perception_hz={cfg.perception_hz:g} needs others: "
                         "simulate it again with frames=all, or use a rate that divides "
                         f"{drawn:g} Hz")


def run_scenario(scenario: str | Scenario, cfg: RunConfig, out: Path, progress: bool = True) -> list[dict]:
    """Simulate one scenario (a name, a file or a drawn :class:`Scenario`) into ``out``, run the
    runtime in every sensing mode, score each; the scorecards (the main mode's first)."""
    modes = [replace(cfg.runtime, sensing=s) for s in cfg.sensing]
    name = scenario.name if isinstance(scenario, Scenario) else Path(scenario).stem
    live = None
    if cfg.source == "live":
        from harness.paths import scenario_path as _sp
        from sim.scenario import load_scenario

        sc = scenario if isinstance(scenario, Scenario) else load_scenario(_sp(scenario), store_dir())
        live = Runtime(load_store(store_dir() / f"{sc.store}.yaml"), modes[0], out.with_name(out.name + ".live"))
        t0 = time.time()
    if cfg.recorded is not None and cfg.resimulate == "weights":
        run_dir = _resimulated_weights(Path(cfg.recorded), name, out, cfg.sim, progress)
    elif cfg.recorded is not None:
        run_dir = _from_recorded(Path(cfg.recorded), name, out)
    else:
        run_dir = simulate(scenario, cfg.simulation(), out=out, make_contact_sheet=False, progress=progress,
                           consumers=[live.process] if live else ()).run_dir
    if live is None:
        return _score(run_dir, cfg)
    cards = []
    for i, mode in enumerate(modes):
        name = "out" if i == 0 else f"out-{mode.sensing}"
        live.run([])
        (out.with_name(out.name + ".live")).rename(out / name)
        info = {"pacing": "asfast", "wall_t0": None, "stream_s": round(live.t, 3),
                "wall_s": round(time.time() - t0, 3), "sensing": mode.sensing, "source": "live", **live.stats}
        (out / name / "run.json").write_text(json.dumps(info, indent=1))
        card = score_run(run_dir, out_name=name)
        write_report(run_dir, card)
        cards.append(card)
    return cards


def _score(run_dir: Path, cfg: RunConfig) -> list[dict]:
    """The runtime on a run folder's recorded streams in every sensing mode, each scored."""
    cards = []
    for i, mode in enumerate(replace(cfg.runtime, sensing=s) for s in cfg.sensing):
        name = "out" if i == 0 else f"out-{mode.sensing}"
        run_runtime(run_dir, mode, cfg.pacing, name)
        card = score_run(run_dir, out_name=name)
        write_report(run_dir, card)
        cards.append(card)
    return cards


def _from_recorded(root: Path, name: str, out: Path) -> Path:
    """A new run directory over a recorded run's streams and ground truth (linked, not copied), so
    the runtime can be run again, with other models or settings, without simulating again."""
    src = _recorded_src(root, name)
    if not ((src / "streams").is_dir() and (src / "gt").is_dir()):
        raise FileNotFoundError(f"recorded={root}: no recorded run of {name} (expected {root / name}/streams/ and gt/)")
    if out.exists():
        raise FileExistsError(f"{out}: exists; choose another out=")
    out.mkdir(parents=True)
    for part in ("streams", "gt"):
        (out / part).symlink_to((src / part).resolve(), target_is_directory=True)
    for f in ("store.yaml", "scenario.yaml", "run.json"):
        if (src / f).is_file():
            shutil.copy2(src / f, out / f)
    return out


def _recorded_src(root: Path, name: str) -> Path:
    """The recorded run of ``name`` in ``recorded=root`` (a run folder, or a suite's)."""
    return root if (root / "streams").is_dir() and (root / "gt").is_dir() else root / name


def _resimulated_weights(root: Path, name: str, out: Path, sim: SimConfig, progress: bool) -> Path:
    """The recorded run simulated again without cameras (``sim``'s load-cell model, say
    ``real_shelf``), with the recorded camera streams linked in. The shoppers, physics, gates and
    truth do not depend on the cameras, nor the frames on the load cells (the load-cell model draws
    from its own random streams), so this is the run a full simulation with ``sim`` would give; the
    truth of both is compared to make sure, and a mismatch (another scenario, another simulator)
    is an error, with nothing left behind."""
    from sim.scenario import load_scenario

    src = root if (root / "streams").is_dir() and (root / "gt").is_dir() else root / name
    if not ((src / "streams").is_dir() and (src / "scenario.yaml").is_file()):
        raise FileNotFoundError(f"recorded={root}: no recorded run of {name} (expected {root / name}/streams/ and scenario.yaml)")
    cams = sorted(src.glob("streams/*.frames.csv"))
    if not cams:
        raise FileNotFoundError(f"recorded={src}: no camera streams to take (streams/*.frames.csv)")
    scenario = load_scenario(src / "scenario.yaml", store_dir())
    run_dir = simulate(scenario, replace(sim, camera=replace(sim.camera, render=False)), out=out,
                       make_contact_sheet=False, progress=progress).run_dir
    differ = [f.name for f in sorted((src / "gt").glob("*")) if f.is_file()
              and (not (run_dir / "gt" / f.name).is_file() or (run_dir / "gt" / f.name).read_bytes() != f.read_bytes())]
    if differ:
        shutil.rmtree(run_dir)
        raise RuntimeError(f"recorded={src}: simulated again, its truth differs ({', '.join(differ)}): "
                           "not the same scenario and simulator, so its camera streams do not fit")
    drawn = json.loads((src / "run.json").read_text()).get("frames_for_perception_hz") if (src / "run.json").is_file() else None
    if drawn:   # the camera streams taken are those of the recording, drawn for that rate
        info = json.loads((run_dir / "run.json").read_text())
        (run_dir / "run.json").write_text(json.dumps({**info, "frames_for_perception_hz": drawn}, indent=1))
    for csv in cams:
        cam = csv.name[: -len(".frames.csv")]
        for f in [csv, *src.glob(f"streams/{cam}.*")]:
            if not (run_dir / "streams" / f.name).exists():
                (run_dir / "streams" / f.name).symlink_to(f.resolve())
    return run_dir


def suite_scenarios(suite: str | tuple[str, ...] | list[str]) -> list[str]:
    """The scenarios of a suite: ``default`` (every scenario in scenarios/) or a list of names."""
    every = sorted(p.stem for p in scenario_path("single_pick").parent.glob("*.yaml"))
    if isinstance(suite, (list, tuple)):
        unknown = [s for s in suite if s not in every]
        if unknown or not suite:
            raise ValueError(f"suite={list(suite)}: expected names of scenarios in scenarios/ ({', '.join(every)})")
        return list(suite)
    if suite != "default":
        raise ValueError(f"suite={suite!r}: expected 'default' (every scenario in scenarios/), 'random' "
                         "(with store=, seeds=A..B, shoppers=, duration_s=) or a list of scenario names")
    return every


@dataclass
class RunResult:
    out: Path
    scorecards: list[dict]
    table: str
    report: Path


def run(cfg: RunConfig, progress: bool = True) -> RunResult:
    """One scenario, or a suite (one run directory per scenario under the suite's folder)."""
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    if cfg.suite:
        scenarios = cfg.random.scenarios() if cfg.suite == "random" else suite_scenarios(cfg.suite)
        names = [s.name if isinstance(s, Scenario) else s for s in scenarios]
        if cfg.recorded is not None:   # before anything is written
            for name in names:
                check_frames_fit(_recorded_src(Path(cfg.recorded), name), cfg.runtime)
        label = (f"random-{cfg.random.store}" if cfg.suite == "random"
                 else cfg.suite if isinstance(cfg.suite, str) else "custom")
        root = Path(cfg.out) if cfg.out else Path("runs") / f"suite-{label}-{stamp}"
        if root.exists():
            raise FileExistsError(f"{root}: exists; choose another out=")
        root.mkdir(parents=True)
        cards: list[dict] = []
        if cfg.launcher == "ray":
            cards = _on_ray(names, scenarios, cfg, root, progress)
        elif cfg.jobs > 1 and (len(names) > 1 or camera_shares(names, scenarios, cfg, cfg.jobs)):
            cards = _side_by_side(names, scenarios, cfg, root, progress)
        else:
            for i, (name, scenario) in enumerate(zip(names, scenarios)):
                if progress:
                    print(f"[{i + 1}/{len(names)}] {name}", flush=True)
                cards += run_scenario(scenario, cfg, root / name, progress)
        report = write_suite_report(root / "report.html", cards)
        (root / "scorecard.json").write_text(json.dumps({"scenarios": cards, "total": suite_totals(cards)}, indent=1))
        return RunResult(root, cards, tables(cards), report)
    name = Path(cfg.scenario).stem
    if cfg.recorded is not None:
        check_frames_fit(_recorded_src(Path(cfg.recorded), name), cfg.runtime)
    out = Path(cfg.out) if cfg.out else Path("runs") / f"{name}-{stamp}"
    cards = run_scenario(cfg.scenario, cfg, out, progress)
    report = out / "report.html"
    if len(cards) > 1:
        report = write_suite_report(out / "ablation.html", cards)
    return RunResult(out, cards, tables(cards), report)


def expected_work(scenario: str | Scenario) -> float:
    """A rough measure of what simulating and scoring a scenario costs, to start the longest
    first when scenarios run side by side (a suite's time is at least its longest scenario's):
    camera-seconds of video, more for each shopper in them. Its duration is the scenario's own,
    or its last shopper's entry plus a few seconds per step and the scripted waits."""
    from sim.scenario import load_scenario

    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario_path(scenario), store_dir())
    duration = sc.duration_s or max(
        (p.enter_at_s + sum(6.0 + (st.seconds if st.kind in ("wait", "browse") else 0.0) for st in p.script)
         for p in sc.shoppers), default=0.0)
    cameras = len(sc.spec.cameras) if sc.spec is not None else 1
    return duration * cameras * (1.0 + 0.25 * len(sc.shoppers))


def _longest_first(names: list[str], scenarios: list) -> list[int]:
    work = [expected_work(sc) for sc in scenarios]
    return sorted(range(len(names)), key=lambda i: (-work[i], i))


def camera_shares(names: list[str], scenarios: list, cfg: RunConfig, workers: int) -> dict[int, list[tuple[str, ...]]]:
    """Which scenarios of a suite run on ``workers`` are simulated in parts, each part drawing some
    of the cameras (``sim.camera.draw_only``), and the parts. A suite's time is at least its
    longest scenario's however many workers there are, so a scenario that alone is more than half
    of one worker's share of the suite is split, into as many parts as that takes (at most one per
    worker and per camera). Cameras are dealt out in turn, so each part has some of every view."""
    if workers < 2 or not cfg.split or cfg.recorded is not None or cfg.source != "replay" or not cfg.sim.camera.render:
        return {}
    from sim.scenario import load_scenario

    work = [expected_work(sc) for sc in scenarios]
    half_share = sum(work) / workers / 2
    out = {}
    for i, sc in enumerate(scenarios):
        k = min(workers, math.ceil(work[i] / half_share)) if half_share else 1
        if k < 2:
            continue
        sc = sc if isinstance(sc, Scenario) else load_scenario(scenario_path(sc), store_dir())
        cams = list(cfg.sim.camera.cameras or (c.id for c in sc.spec.cameras))
        k = min(k, len(cams))
        if k > 1:
            out[i] = deal_cameras(cams, k)
    return out


def _side_by_side(names: list[str], scenarios: list, cfg: RunConfig, root: Path, progress: bool) -> list[dict]:
    """A suite's scenarios ``cfg.jobs`` at a time, each in a process of its own (joblib's loky
    processes, as datagen makes shards), the longest started first, the longest split by cameras
    (:func:`camera_shares`); every scenario is seeded by itself and a split one's parts draw
    what the whole run draws, so the scorecards are a serial run's (wall times aside). The cards
    in the suite's order."""
    from joblib.externals.loky import ProcessPoolExecutor   # its own pool: joblib's shared one is datagen's

    def wait(running):
        done, _ = futures.wait(list(running), return_when=futures.FIRST_COMPLETED)
        return next(iter(done))

    with ProcessPoolExecutor(max_workers=cfg.jobs) as pool:
        return _schedule(names, scenarios, cfg, root, cfg.jobs, pool.submit, wait, lambda f: f.result(),
                         f"suite, {cfg.jobs} at a time", progress)


def _on_ray(names: list[str], scenarios: list, cfg: RunConfig, root: Path, progress: bool) -> list[dict]:
    """A suite's scenarios as Ray tasks, one CPU each (as datagen's shards): on the cluster at
    ``ray_address``, or on a Ray instance started here with ``jobs`` CPUs, the longest first and
    split by cameras as side by side. Each task writes its run folder under the suite's folder,
    so on a cluster ``out=`` must be storage every node sees. A scenario that fails stops the
    suite with its error, after the tasks under way have finished."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=cfg.ray_address, num_cpus=None if cfg.ray_address else cfg.jobs,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        workers = max(1, int(ray.cluster_resources().get("CPU", cfg.jobs)))
        remote = {}

        def submit(fn, *args):
            if fn not in remote:
                remote[fn] = ray.remote(num_cpus=1, max_retries=0)(fn)
            return remote[fn].remote(*args)

        def wait(running):
            return ray.wait(list(running), num_returns=1)[0][0]

        return _schedule(names, scenarios, cfg, root.resolve(), workers, submit, wait, ray.get, "suite on ray", progress)
    finally:
        if started:
            ray.shutdown()


def _schedule(names, scenarios, cfg: RunConfig, root: Path, workers: int, submit, wait, result, desc: str,
              progress: bool) -> list[dict]:
    """Run a suite's tasks on ``workers`` slots: each scenario whole (simulated, run and scored),
    or its camera parts and then the join that scores it, which goes ahead of the scenarios still
    waiting. Longest first. A failure stops new tasks; the ones under way finish, then it is raised."""
    from collections import deque

    from tqdm import tqdm

    shares = camera_shares(names, scenarios, cfg, workers)
    parts = {i: [root / f"{names[i]}.cameras-{k}" for k in range(len(c))] for i, c in shares.items()}
    queue: deque = deque()
    for i in _longest_first(names, scenarios):
        if i in shares:
            queue.extend((_simulate_part, i, scenarios[i], cfg, parts[i][k], shares[i][k]) for k in range(len(shares[i])))
        else:
            queue.append((_one, i, scenarios[i], cfg, root / names[i]))
    left = {i: len(c) for i, c in shares.items()}
    per: dict[int, list[dict]] = {}
    running: dict = {}
    failed: list[tuple[str, BaseException]] = []
    with tqdm(total=len(names), desc=desc, unit="scenario", disable=not progress) as bar:
        while running or (queue and not failed):
            while queue and not failed and len(running) < workers:
                task = queue.popleft()
                running[submit(*task)] = task
            handle = wait(running)
            task = running.pop(handle)
            i = task[1]
            try:
                _, cards = result(handle)
            except Exception as e:  # noqa: BLE001 - raised below with the scenario's name
                failed.append((names[i], e))
                continue
            if task[0] is _simulate_part:
                left[i] -= 1
                if not left[i]:
                    queue.appendleft((_join_parts, i, scenarios[i], cfg, root / names[i], parts[i]))
                continue
            per[i] = cards
            bar.set_postfix_str(names[i])
            bar.update()
    if len(failed) == 1 and not desc.endswith("ray"):
        raise failed[0][1]
    if failed:
        raise RuntimeError("; ".join(f"scenario {n} failed{' on ray' if desc.endswith('ray') else ''}: "
                                     f"{str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
                                     for n, e in failed))
    return [c for i in range(len(names)) for c in per[i]]


def _one(i: int, scenario, cfg: RunConfig, out: Path) -> tuple[int, list[dict]]:
    return i, run_scenario(scenario, cfg, out, progress=False)


def _simulate_part(i: int, scenario, cfg: RunConfig, out: Path, cameras: tuple[str, ...]) -> tuple[int, None]:
    """One part of a split scenario: the whole simulation, drawing only ``cameras``."""
    sim = cfg.simulation()
    sim = replace(sim, camera=replace(sim.camera, draw_only=tuple(cameras)))
    simulate(scenario, sim, out=out, make_contact_sheet=False, progress=False)
    return i, None


def _join_parts(i: int, scenario, cfg: RunConfig, out: Path, parts: list[Path]) -> tuple[int, list[dict]]:
    """The parts of a split scenario as one run folder ``out`` (each camera's video, index and
    ground truth from the part that drew it; the load cells, gates and ground truth they all
    share from the first, after checking that they agree), then run and scored."""
    join_parts(parts, out)
    return i, _score(out, cfg)


def tables(cards: list[dict]) -> str:
    """One table per sensing mode, each with its own total."""
    modes = list(dict.fromkeys(c.get("sensing", "fused") for c in cards))
    return "\n\n".join(format_table([c for c in cards if c.get("sensing", "fused") == m]) for m in modes)


def suite_totals(cards: list[dict]) -> dict:
    """The suite's totals, per sensing mode."""
    modes = list(dict.fromkeys(c.get("sensing", "fused") for c in cards))
    return {m: aggregate([c for c in cards if c.get("sensing", "fused") == m]) for m in modes}
