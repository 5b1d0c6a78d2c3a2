"""The simulation loop: physics, shoppers, sensors and ground truth on one clock.

``Simulator(store, scenario, config).run()`` yields the sensor messages of DESIGN.md in time order
(frames, weight samples, gate events) — the simulator's live source — and fills ``self.truth``,
the ground truth that only the harness may read.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from runtime.messages import Frame, GateEvent, SensorMessage, WeightSample
from runtime.store import StoreSpec
from sim.groundtruth import GroundTruth
from sim.loadcell import Glitch, LoadCellBank, LoadCellConfig, Offset
from sim.navigation import FloorPlanner
from sim.scenario import Scenario
from sim.shoppers import Interaction, Shopper, ShopperContext
from sim.world import PhysicsWorld
from twin.bodies import sample_shape
from twin.camera_effects import CameraEffectsConfig, FrameEffects, apply as apply_camera, draw_camera, draw_frame
from twin.renderer import SceneState, ShopperView, StoreRenderer


@dataclass(frozen=True)
class CameraConfig:
    render: bool = True          # False: no video at all (weights and gates only, much faster)
    cameras: tuple[str, ...] = ()  # only these cameras; empty = all
    truth: bool = True           # per-frame boxes and keypoints (needs an extra id render)
    masks: str = "persons"       # "all": exact product masks too (slower; training data)
    # Real IP cameras are not synchronised (DESIGN.md, "Time, as a store gives it"). Defaults: the
    # twin's ideal cameras, all exposing together and stamping the store clock exactly.
    clock_offset_s: float = 0.0  # each camera's clock is off the store clock by a fixed amount drawn in ±this
    jitter_s: float = 0.0        # each frame's timestamp jitters uniformly within ±this
    free_run: bool = False       # each camera starts at its own random phase instead of all exposing together
    fps: tuple[float, ...] = ()  # frame rates the store's cameras take in turn (empty: each camera's own fps)
    # Draw only these of the run's cameras (another process draws the others, and the run's
    # folders are joined): every camera's timing, drops and stamps are drawn as in the whole run,
    # so each camera's frames are the whole run's. Empty: all of them.
    draw_only: tuple[str, ...] = ()
    # Draw only the frames a runtime perceiving this many times a second takes (each camera's frame
    # nearest each tick, DESIGN.md "Time, as a store gives it"); the others are neither drawn nor
    # written. 0: every frame. `storetwin run` sets it to the runtime's rate: it reads nothing else.
    perceive_hz: float = 0.0
    bodies: str = "anny"         # "anny": smooth skinned people (twin.people); "blocks": the old low-poly segments
    effects: bool = False        # each camera's character on its frames: sensor noise, exposure and white balance
                                 # that drift, vignetting, an H.264 stream (twin/camera_effects.py's defaults)
    shadows: bool = True         # a contact shadow on the floor under each shopper

    def __post_init__(self) -> None:
        if self.bodies not in ("anny", "blocks"):
            raise ValueError(f"sim.camera.bodies={self.bodies!r}: expected 'anny' or 'blocks'")
        if not isinstance(self.perceive_hz, (int, float)) or isinstance(self.perceive_hz, bool) or self.perceive_hz < 0:
            raise ValueError(f"sim.camera.perceive_hz={self.perceive_hz!r}: expected a rate ≥ 0 (0: every frame)")
        for name in ("clock_offset_s", "jitter_s"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"sim.camera.{name}={v}: expected seconds in [0, 1]")
        if any(not 0 < f <= 120 for f in self.fps):
            raise ValueError(f"sim.camera.fps={list(self.fps)}: expected frame rates in (0, 120]")
        if self.jitter_s and self.fps and self.jitter_s >= 0.5 / max(self.fps):
            raise ValueError(f"sim.camera.jitter_s={self.jitter_s}: expected less than half the fastest camera's "
                             f"frame period ({0.5 / max(self.fps):.3f} s), or the frames' order would change")


@dataclass(frozen=True)
class CameraClock:
    """One camera's timing: when it exposes (``phase_s + seq / fps``) and how its clock stamps it."""

    fps: float
    phase_s: float = 0.0
    offset_s: float = 0.0
    jitter_s: float = 0.0

    def exposure_s(self, seq: int) -> float:
        return self.phase_s + seq / self.fps

    def perceived(self, t_stamp: float, perceive_hz: float) -> bool:
        """Whether a runtime perceiving ``perceive_hz`` times a second takes the frame stamped
        ``t_stamp``: the camera's frame nearest a tick (``k / perceive_hz``) is, the others between
        ticks are not; stamps that jitter widen the reach by the jitter, so every frame the runtime
        could take is drawn. Always true for 0, and for a camera no faster than the ticks."""
        if not perceive_hz or self.fps <= perceive_hz:
            return True
        period = 1.0 / perceive_hz
        off = t_stamp - round(t_stamp / period) * period
        reach = 0.5 / self.fps + self.jitter_s
        return -reach - 1e-9 <= off < reach - 1e-9

    def stamp_s(self, seq: int, rng: np.random.Generator) -> float:
        """The timestamp the camera puts on frame ``seq`` (its own clock, jittered), store seconds."""
        t = self.exposure_s(seq) + self.offset_s
        if self.jitter_s:
            t += float(rng.uniform(-self.jitter_s, self.jitter_s))
        return round(t, 6)


def camera_clocks(store: StoreSpec, cfg: CameraConfig, rng: np.random.Generator) -> dict[str, CameraClock]:
    """Every camera's clock for one run; with the default settings, no draw is made (the cameras
    are the ideal ones: frame ``seq`` of every camera exposed and stamped at ``seq / fps``)."""
    out = {}
    for i, cam in enumerate(store.cameras):
        fps = cfg.fps[i % len(cfg.fps)] if cfg.fps else cam.fps
        phase = float(rng.uniform(0.0, 1.0 / fps)) if cfg.free_run else 0.0
        offset = float(rng.uniform(-cfg.clock_offset_s, cfg.clock_offset_s)) if cfg.clock_offset_s else 0.0
        out[cam.id] = CameraClock(fps, phase, offset, cfg.jitter_s)
    return out


@dataclass(frozen=True)
class SimConfig:
    physics_hz: float = 240.0
    physics_freeze: bool = True   # shelves untouched for 2 s leave the solver until a hand comes (sim/world.py)
    control_hz: float = 60.0
    gt_hz: float = 30.0
    max_duration_s: float = 900.0
    tail_s: float = 1.5           # keep recording this long after the last shopper left
    load_cells: bool = True       # False: no scale readings at all, and the plates' forces are never read
                                  # (datagen wants only what the cameras see)
    loadcell: LoadCellConfig = field(default_factory=LoadCellConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)


class Simulator:
    def __init__(self, store: StoreSpec, scenario: Scenario, config: SimConfig = SimConfig()):
        self.store, self.scenario, self.config = store, scenario, config
        seeds = np.random.SeedSequence(scenario.seed).spawn(5)
        # one stream per component, so that adding a draw to one never shifts another
        self._rng_shoppers, rng_cells, self._rng_faults, self._rng_clocks, _ = (np.random.default_rng(s) for s in seeds)
        self.world = PhysicsWorld(store, timestep_s=1.0 / config.physics_hz, freeze=config.physics_freeze,
                                  sense=config.load_cells)
        self.planner = FloorPlanner(store)
        self.truth = GroundTruth(store, [i.sku for i in self.world.instances], [i.home_bin for i in self.world.instances])
        self._pending: list[SensorMessage] = []
        self._gate_passes: dict[tuple[str, str], int] = {}
        self._group_size: dict[str, int] = {}
        for plan in scenario.shoppers:
            self._group_size[plan.account] = self._group_size.get(plan.account, 0) + 1
        self.t = 0.0
        faults = scenario.faults
        self.cells = LoadCellBank(
            self.world.cell_ids, config.loadcell, rng_cells,
            glitches=[Glitch(**f.params) for f in faults if f.kind == "loadcell_glitch"],
            offsets=[Offset(**f.params) for f in faults if f.kind == "loadcell_offset"],
            straddle=store.straddles, neighbours=store.cell_neighbours)
        ctx = ShopperContext(store, self.world, self.planner, 1.0 / config.control_hz,
                             self._on_gate, self._on_interaction, lambda: self.t, lambda: self.shoppers)
        self.shoppers: list[Shopper] = []
        for i, plan in enumerate(scenario.shoppers):
            shape = sample_shape(self._rng_shoppers, plan.appearance)
            speed = float(self._rng_shoppers.uniform(1.0, 1.35))
            self.shoppers.append(Shopper(i, plan, shape, ctx, speed))
            self.truth.add_shopper(i, plan.account, shape)
        cams = config.camera.cameras or tuple(c.id for c in store.cameras)
        unknown = [c for c in cams if c not in store.camera_by_id]
        if unknown:
            raise ValueError(f"sim.camera.cameras: {unknown} are not cameras of store '{store.name}' "
                             f"({', '.join(sorted(store.camera_by_id))})")
        self.camera_ids = list(cams)
        outside = [c for c in config.camera.draw_only if c not in self.camera_ids]
        if outside:
            raise ValueError(f"sim.camera.draw_only: {outside} are not among the run's cameras ({', '.join(self.camera_ids)})")
        self._drawn = set(config.camera.draw_only or self.camera_ids)
        cam_cfg = config.camera
        if scenario.cameras:   # the scenario's own camera timing wins over the command line's
            cam_cfg = replace(cam_cfg, **scenario.cameras)
        self.clocks = camera_clocks(store, cam_cfg, self._rng_clocks)
        self.renderer = None
        if config.camera.render and self.camera_ids:
            self.renderer = StoreRenderer(store, [i.sku for i in self.world.instances], scenario.lighting,
                                          seed=scenario.seed)
            self.renderer.bodies = cam_cfg.bodies
            self.renderer.shadows = cam_cfg.shadows
        # Each camera's character (cam_cfg.effects): drawn from a stream of its own, per camera and
        # scenario seed, so a run split between processes by cameras gives each camera's frames as
        # the whole run does.
        self._fx_cfg = CameraEffectsConfig() if cam_cfg.effects else None
        self._fx: dict[str, tuple] = {}
        if self._fx_cfg is not None:
            for k, c in enumerate(store.cameras):
                rng = np.random.default_rng([scenario.seed, 20261204, k])
                self._fx[c.id] = (draw_camera(self._fx_cfg, rng), rng)
        self._fx_last: dict[str, FrameEffects] = {}
        self._dropouts = [f.params for f in faults if f.kind == "camera_dropout"]
        self._drop_rate = {c: 0.0 for c in self.camera_ids}
        for f in faults:
            if f.kind == "dropped_frames":
                for c in ([f.params["camera"]] if f.params["camera"] else self.camera_ids):
                    self._drop_rate[c] = f.params["rate"]

    # -- callbacks from shoppers --------------------------------------------------------------
    def _on_gate(self, gate_id: str, t: float, account: str, kind: str) -> None:
        # A group (shoppers sharing an account) scans once: the gate reports the first member in
        # and the last member out.
        passed = self._gate_passes.setdefault((account, kind), 0) + 1
        self._gate_passes[(account, kind)] = passed
        if (kind == "enter" and passed > 1) or (kind == "exit" and passed < self._group_size[account]):
            return
        ev = GateEvent(gate_id, round(t, 6), account, kind)  # type: ignore[arg-type]
        self._pending.append(ev)
        self.truth.gate_events.append(ev)

    def _on_interaction(self, it: Interaction) -> None:
        self.truth.interactions.append(it)

    # -- state for the cameras ----------------------------------------------------------------
    def scene_state(self) -> SceneState:
        poses = self.world.poses()
        visible = np.array([p[2, 3] > -1.0 for p in poses], dtype=bool)
        views = [ShopperView(s.index, s.shape, s.skeleton, s.basket_position(), s.pose.heading_rad, bool(s.held))
                 for s in self.shoppers if s.present and s.skeleton is not None]
        return SceneState(self.t, poses, visible, views)

    def expected_duration_s(self) -> float:
        """A rough forecast of the run's length (for progress bars): straight-line walks at the
        shoppers' speeds, the scripted waits and the reach motions."""
        from sim.shoppers import GRASP_S, REACH_S, RETRACT_S, TO_BASKET_S

        if self.scenario.duration_s:
            return self.scenario.duration_s
        end = 0.0
        for sh in self.shoppers:
            _, pos = self.planner.gate_points(self.store.gate("entry"))
            t = sh.plan.enter_at_s + 2.4 / sh.speed_mps
            for step in sh.plan.script:
                if step.kind == "wait":
                    if step.at is not None:
                        t += 1.3 * float(np.linalg.norm(np.array(step.at) - pos)) / sh.speed_mps
                        pos = np.array(step.at)
                    t += step.seconds
                    continue
                if step.kind == "exit":
                    goal = self.planner.gate_points(self.store.gate("exit"))[0]
                else:
                    b = step.bin or (self.store.bins_of_sku(step.sku) or [None])[0]
                    if b is None:
                        continue
                    goal = self.store.bins[b].centre_world()[:2]
                t += 1.3 * float(np.linalg.norm(goal - pos)) / sh.speed_mps + 1.0
                pos = goal
                per = {"pick": REACH_S + GRASP_S + RETRACT_S + TO_BASKET_S, "put_back": TO_BASKET_S + REACH_S + RETRACT_S + 0.1,
                       "browse": REACH_S + RETRACT_S + step.seconds}.get(step.kind, 0.0)
                t += per * ({"pick": -(-step.qty // step.per_reach), "browse": 1}.get(step.kind, step.qty))
            end = max(end, t)
        return min(end + self.config.tail_s, self.config.max_duration_s)

    def _camera_down(self, cam: str, t: float) -> bool:
        return any(d["camera"] == cam and d["from_s"] <= t < d["to_s"] for d in self._dropouts)

    # -- the loop -------------------------------------------------------------------------------
    def finished(self) -> bool:
        return all(s.done for s in self.shoppers)

    def run(self, every_step: bool = False) -> Iterator[SensorMessage | None]:
        """The sensor messages in time order. ``every_step``: also ``None`` after each physics step
        that made none, for a caller that looks at the scene on a schedule of its own (datagen,
        whose simulation has no load cells and so few messages)."""
        cfg = self.config
        dt = 1.0 / cfg.physics_hz
        ctrl_every = max(1, round(cfg.physics_hz / cfg.control_hz))
        gt_every = max(1, round(cfg.physics_hz / cfg.gt_hz))
        clocks = self.clocks
        next_frame = {c: 0 for c in self.camera_ids}
        if cfg.load_cells:
            self.cells.reset(self.world.cell_loads_g())
        end_t = self.scenario.duration_s or cfg.max_duration_s
        t_done = None
        step = 0
        while self.t <= end_t + 1e-9:
            if step % ctrl_every == 0:
                for s in self.shoppers:
                    s.tick()
            if step % gt_every == 0:
                self.truth.record_tick(self.t, self.shoppers)
            if cfg.load_cells:
                self.cells.step(self.world.cell_loads_g(), dt)
                for cid, t, g in self.cells.due_samples(self.t):
                    self._pending.append(WeightSample(cid, t, g))
            due = [c for c in self.camera_ids if clocks[c].exposure_s(next_frame[c]) <= self.t + 1e-9]
            if due and self.renderer is not None:
                state = self.scene_state()
                self.renderer.set_state(state)
                for c in due:
                    seq = next_frame[c]
                    t_exposed = round(clocks[c].exposure_s(seq), 6)
                    next_frame[c] += 1
                    if self._camera_down(c, t_exposed) or self._rng_faults.random() < self._drop_rate[c]:
                        continue
                    # the stamp is drawn for every frame made, drawn here or not, so each camera's
                    # stamps are the whole run's
                    t_stamp = clocks[c].stamp_s(seq, self._rng_clocks) if clocks[c].jitter_s or clocks[c].offset_s \
                        else t_exposed
                    if c not in self._drawn or not clocks[c].perceived(t_stamp, cfg.camera.perceive_hz):
                        continue    # another process draws it, or no runtime tick would take it
                    out = self.renderer.render(c, masks=cfg.camera.masks if cfg.camera.truth else "none")
                    if cfg.camera.truth:   # the truth is of the moment of exposure, whatever the stamp says
                        self.truth.record_frame(c, seq, t_exposed, self.renderer.truth(c, state, out))
                    img = out.bgr
                    if c in self._fx:
                        look, rng = self._fx[c]
                        fx = draw_frame(self._fx_cfg, look, rng, self._fx_last.get(c))
                        self._fx_last[c] = fx
                        img = apply_camera(img, fx)
                    self._pending.append(Frame(c, t_stamp, seq, img))
            if self._pending:
                self._pending.sort(key=lambda m: m.t)
                yield from self._pending
                self._pending = []
            elif every_step:
                yield None
            if self.scenario.duration_s is None and self.finished():
                t_done = self.t if t_done is None else t_done
                if self.t >= t_done + cfg.tail_s:
                    break
            self.world.step()
            step += 1
            self.t = round(step * dt, 9)
        self.truth.finish(self.t, self.world.instances)

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        self.world.close()
