"""The runtime's settings: one frozen dataclass per stage, every default and tuning constant here.

``RuntimeConfig`` gathers them. The edge box loads its own: :func:`load_runtime_config` reads a
YAML file of overrides (``runtime:`` keys, as in ``conf/runtime/example.yaml``), checks every key
and type with a one-line error that names it, and resolves the model paths. The harness builds the
same object from its hydra config through :func:`runtime_config_from`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SENSING = ("fused", "vision_only", "weight_only")


@dataclass(frozen=True)
class WeightEventConfig:
    """Step detection on each load cell (``runtime/weight_events.py``) and the mass match."""

    window_s: float = 0.2          # a level is settled when this long a window is flat
    settle_std_g: float = 4.0      # "flat": standard deviation below this
    trigger_g: float = 12.0        # leave the settled level by more than this to start an event
    min_step_g: float = 20.0       # a settled step smaller than this is drift or a glitch
    settle_sigmas: float = 3.0     # on a noisy plate "flat" is this many of its own σ (if more than settle_std_g) ...
    trigger_sigmas: float = 6.0    # ... and an event starts this many σ away (if more than trigger_g)
    noise_alpha: float = 0.05      # how fast a plate's noise estimate follows its still windows
    learn_s: float = 1.0           # a plate never still by settle_std_g this long: level and noise from its readings
    drift_alpha: float = 0.02      # how fast the settled level follows slow drift
    max_event_s: float = 8.0       # give up on an event that never settles (a hand resting on the shelf)
    tol_min_g: float = 8.0         # mass match tolerance: at least this ...
    tol_sigmas: float = 4.0        # ... or this many σ of the settled noise (of both levels) ...
    tol_frac: float = 0.03         # ... plus this share of the step
    mix_penalty: float = 0.5       # an explanation's cost for each further SKU in one reach
    join_s: float = 0.5            # steps on plates one item straddles (the store's straddle) join within this
    settle_frac: float = 0.05      # settled also when the window's σ is below this share of the step (0: off)
    provisional_s: float = 0.1     # a provisional cart update once the new level has held this long (0: none) ...
    provisional_frac: float = 0.15 # ... still to within this share of the step (σ; the plate may still ring)


@dataclass(frozen=True)
class TrackingConfig:
    """Multi-camera tracking on the floor plane (``runtime/tracking.py``)."""

    kpt_conf: float = 0.5         # keypoints below this confidence are not used
    cluster_m: float = 0.6        # floor points of one person from different cameras (close by; a far camera's point is
                                  # unsure along its ray, and there this distance counts in units of that uncertainty)
    view_sd_m: float = 0.10       # a floor point's uncertainty seen from close by (where on the body it lies)
    view_px: float = 3.0          # a keypoint's uncertainty in pixels
    ankle_sd_m: float = 0.05      # how far ankles, shoulders and the top of the head stand from their assumed height
    shoulder_sd_m: float = 0.10   # (0, shoulder_m, head_m) between people: along a camera's ray this is the
    head_sd_m: float = 0.12       # floor point's uncertainty times the ray's run over its drop
    duplicate_m: float = 0.35     # two boxes of one camera this close are one person
    merge_split: bool = True      # two groups of views with no camera in common within cluster_m are one person
    anchor_m: float = 0.5         # a camera's view is given to the confirmed track it fits best within this (in the
                                  # view's uncertainty; 0: off, views are grouped among themselves only): in a crowd,
                                  # two people shoulder to shoulder keep their own views
    anchor_sd_m: float = 0.10     # how surely a track's predicted place is known, for that fit
    anchor_appearance_m: float = 2.0  # metres of that fit one unit of appearance distance costs (the view against the
                                      # track as that camera sees it: own track median 0.17, 95 % under 0.43; the
                                      # nearest other track median 0.51: benchmarks/bench_appearance.py). busy_store IDF1 0.996
    anchor_appearance: float = 0.7    # no view this unlike a track fits it (nor, when it is offered views, an observation)
    anchor_s: float = 0.3         # a track unseen longer than this is given no views (it is found again by matching)
    gate_m: float = 1.0           # largest jump of a track between updates ...
    gate_speed_mps: float = 1.5   # ... plus this much per second since it was last seen
    appearance_weight_m: float = 2.0  # metres of distance one unit of appearance distance costs
    strong_score: float = 0.0     # a person seen by one camera only, less surely than this, is matched to tracks last
                                  # (ByteTrack's second stage; 0: off. 0.5 keeps a faint ghost box from pulling a
                                  # track off its shopper, but cost busy_store 2 exact receipts: off by default)
    min_hits: int = 3             # observations (one of them by two cameras) before a track is published
    entry_min_hits: int = 3       # ... for a track first seen at the entry gate (within entry_m: someone coming in). 2
                                  # spares each shopper's first 0.2 s as a miss (single_pick MOTA 0.976 -> 0.992) but
                                  # let a ghost at the gate take occlusion's first scan (two receipts swapped): 3
    lost_after_s: float = 0.8     # unobserved this long: lost (kept for re-linking)
    forget_after_s: float = 60.0  # lost this long: forgotten
    predict_max_s: float = 0.5    # constant-velocity prediction at most this far ahead
    publish_hz: float = 10.0      # track states a second: each tick's, and between ticks each seen track's
                                  # constant-velocity forecast from it (what a store display shows between measurements);
                                  # at or below the perception rate: the ticks' states only
    merged_s: float = 1.0         # a track hidden in someone else's observation (two people closer than cluster_m) is
                                  # followed by its motion alone for this long after: in a crossing, motion tells two
                                  # people dressed alike apart (elsewhere a track may also be found where it stopped)
    max_speed_mps: float = 2.0    # a velocity estimate is clipped to this per axis
    velocity_gain: float = 0.4    # weight of a new velocity measurement
    position_gain: float = 0.7    # weight of a new position against the prediction
    appearance_gain: float = 0.1  # weight of a new appearance signature
    relink_speed_mps: float = 1.6 # a lost shopper can have walked this fast since
    relink_m: float = 1.0         # ... plus this far
    relink_stale_s: float = 0.3   # a track unseen this long may be continued by a new one ...
    relink_overlap_s: float = 0.2 # ... that started at most this long before it was last seen
    relink_appearance: float = 0.6  # largest appearance distance for a re-link (Bhattacharyya)
    wrist_ray_m: float = 0.12     # two wrist rays closer than this meet in one point
    wrist_max_z_m: float = 2.2    # a triangulated wrist above this is a mismatch
    history_s: float = 6.0        # keep this long a history of positions and wrists
    shoulder_m: float = 1.40      # shoulder height of an average adult, for a floor point from the shoulders
    head_m: float = 1.70          # top of the head, for a floor point from the top of a person box
    entry_m: float = 1.0          # someone first seen this close to the entry gate is coming in (no re-link, no jump onto them)
    deep_m: float = 0.5           # a track farther than entry_m + this from the entry is deeper in the store
    walked_m: float = 0.5         # a track that moved this far is someone walking (not a still false positive)
    exit_m: float = 0.6           # a track unseen for gone_s this close to the exit gate has walked out: not published
    gone_s: float = 0.3


@dataclass(frozen=True)
class HandConfig:
    """Reaches into bins and the product in the hand (``runtime/hands.py``)."""

    product_model: str = "models/products_openvino_model"  # every SKU (.onnx, OpenVINO folder or .pt); '' = none
    product_conf: float = 0.3       # product boxes below this score are not used
    in_bin_m: float = 0.15          # a wrist this close to a bin's volume is in it (the fingers reach past the wrist)
    leave_s: float = 0.6            # out of the bin this long: the reach is over
    look_s: float = 0.8             # what the hand holds: this long before the reach and after it
    clear_m: float = 0.15           # the hand counts as out of the shelf this far from every unit
    held_m: float = 0.15            # a product triangulated this close to the wrist is in the hand
    crop_frac: float = 0.5          # crop side round a wrist, as a share of the frame's larger side
    near_wrist_frac: float = 0.08   # a product box centred this close to the wrist (share of that side) is held
    buffer_s: float = 2.5           # frames kept in memory for looking at hands again


@dataclass(frozen=True)
class IdentityConfig:
    """Entry scans to tracks, and groups (``runtime/identity.py``)."""

    scan_radius_m: float = 1.2      # the one who scanned stood this close to the gate at the scan
    scan_settle_s: float = 0.6      # wait this long after a scan, so the one crossing has become a track
    scan_born_s: float = 3.0        # ... a track first seen at most this long before the scan
    scan_wait_s: float = 4.0        # a scan nobody was found for is dropped after this long
    seen_within_s: float = 1.5      # only tracks seen this recently are at a gate now
    group_radius_m: float = 1.5     # a group member is first seen this close to the entry gate ...
    group_slack_s: float = 1.0      # ... at most this long before its group's scan ...
    group_behind_m: float = 0.2     # ... and behind the one who scanned (people pass a gate in single file): first
                                    # seen no more than this farther from the gate than they were then
    resume_radius_m: float = 2.0    # after a restart, an account goes to the first unnamed track this close to where
    resume_wait_s: float = 30.0     # it was last shown, looked for this long


@dataclass(frozen=True)
class AttributionConfig:
    """Who caused a weight event (``runtime/attribution.py``)."""

    wrist_after_s: float = 0.3      # a wrist seen up to this long after the item left still counts
    concurrent_s: float = 0.5       # events this close in time on different bins are two hands at once ...
    joint_margin_m: float = 0.05    # ... assigned jointly when that fits better by this much (total hand distance)
    sure_m: float = 0.3             # a hand farther than this from the bin makes the attribution less sure ...
    far_factor: float = 0.7         # ... by this factor
    unnamed_factor: float = 0.5     # the hand's track has no account: the nearest named shopper, this much less sure
    alone_factor: float = 0.7       # ... or the only shopper in the store
    wrist_bin_scale_m: float = 0.1  # hand distance that costs one unit between bins of one cell (wrists) ...
    floor_bin_scale_m: float = 0.4  # ... (floor positions)
    beside_free_m: float = 0.1      # a shopper standing up to this far to the side of a bin reaches it freely ...
    beside_gain: float = 1.0        # ... and each metre farther adds this many metres to the hand's distance
    floor_gain: float = 0.1         # a shopper within reach whose hand was not seen: each metre from the bin's front adds this
    unseen_hand_m: float = 0.5      # a shopper within reach whose hand was not seen counts this far off: a hand seen
                                    # near the bin is surer than a body that could have reached it (the pickers' wrists
                                    # land 0-0.55 m from the bin; at 0.15, 5 of the 6 contested charges of busy_store
                                    # that a body with no hand seen won were wrong)


@dataclass(frozen=True)
class FusionConfig:
    """Weight × vision → a decision (``runtime/fusion.py``)."""

    rival_margin: float = 1.0       # cost gap to the next different explanation that makes a decision sure
    provisional_margin: float = 0.4 # a provisional step waits while fewer items fit within this cost gap (a plate
                                    # overshoots: one tea 0.19 behind two on a wandering plate; one can of tomatoes
                                    # 0.68 behind two on a ringing one)
    min_what: float = 0.3           # confidence in what was taken never drops below this
    vision_conf_max: float = 0.95   # a charge from the hand alone is never surer than this
    doubt_who: float = 0.5          # an unexplained change flags the receipt of a shopper this surely at the bin ...
    doubt_mass_frac: float = 0.5    # ... when it weighs at least this share of the lightest product


@dataclass(frozen=True)
class RuntimeConfig:
    sensing: str = "fused"                       # fused | vision_only | weight_only
    pose_model: str = "models/person_pose_openvino_model"  # person boxes and 17 keypoints (.onnx, OpenVINO folder or .pt)
    perception_hz: float = 5.0                   # perception ticks per second: one frame of each camera each
    tick_window_s: float = 0.0                   # a camera's frame joins a tick this close to it; 0: half the slowest camera's period ...
    tick_jitter_s: float = 0.02                  # ... plus this, as IP cameras' stamps jitter by tens of ms
    person_conf: float = 0.35
    perception_streams: int = 1                  # inferences of the person model at a time (OpenVINO's throughput mode with
                                                 # more). Same detections either way. Two streams on two cores ran the model
                                                 # 1.5x faster alone, but a live store on them fell behind: a live replay of
                                                 # busy_store at 2 lag p50 0.86 s, 94 % busy, 418 frames dropped; at 1 lag
                                                 # 0.36 s, 22 %, 157 (docs/BENCHMARKS.md, issue 15 second stop)
    perception_batch: int = 6                    # up to this many of a tick's frames in one inference of the person model
                                                 # (a model exported with a dynamic batch; 1: a frame an inference)
    person_input: str = "fit"                    # fit: each camera's frame at the smallest input of the person model that
                                                 # holds it (320x256 for 640x480); square: at the model's own size (320x320)
    perception_lookahead_s: float = 0.2          # the loop reads this far of the stream ahead of the person model while
                                                 # it runs; ticks, scales and gates are decided in order, at most this late
    motion_threshold: float = 2.0                # a camera's frame goes through the person model only when a 16-px block's
                                                 # mean grey level moved more than this since the last one it saw (0: every frame)
    motion_refresh_s: float = 1.0                # ... and at least this often per camera, moved or not
    review_below: float = 0.6                    # a receipt with a charge less sure than this is flagged
    attribution_window_s: float = 2.0            # look this far before a weight event for the shopper at the bin
    wrist_window_s: float = 0.6                  # and this far before the item left for the hand in the bin
    busy_hand_m: float = 0.3                     # extra distance for a shopper whose hand was busy at another bin then
    reach_m: float = 0.75                        # a shopper standing this close to a bin's front can reach in
    group_window_s: float = 5.0                  # people entering this soon after a scan share its account
    cell_silent_s: float = 1.0                   # a load cell that sent nothing for this long has failed
    held_weight: float = 6.0                     # a product two cameras saw in the hand outweighs this many units of
                                                 # wrist distance (0.6 m: wrists are 0.15–0.6 m off in a crowd)
    weights: WeightEventConfig = field(default_factory=WeightEventConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    hands: HandConfig = field(default_factory=HandConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def __post_init__(self) -> None:
        if self.sensing not in SENSING:
            raise ValueError(f"runtime.sensing={self.sensing!r}: expected one of {', '.join(SENSING)}")
        if self.perception_hz <= 0:
            raise ValueError(f"runtime.perception_hz={self.perception_hz}: expected > 0")
        if not 1 <= self.perception_streams <= 64:
            raise ValueError(f"runtime.perception_streams={self.perception_streams}: expected 1 to 64")
        if self.person_input not in ("fit", "square"):
            raise ValueError(f"runtime.person_input={self.person_input!r}: expected fit or square")
        if not 0 <= self.perception_lookahead_s <= 5:
            raise ValueError(f"runtime.perception_lookahead_s={self.perception_lookahead_s}: expected 0 to 5 seconds")
        if not 1 <= self.perception_batch <= 64:
            raise ValueError(f"runtime.perception_batch={self.perception_batch}: expected 1 to 64")
        if self.motion_threshold < 0 or self.motion_refresh_s <= 0:
            raise ValueError(f"runtime.motion_threshold={self.motion_threshold}, runtime.motion_refresh_s="
                             f"{self.motion_refresh_s}: expected a threshold ≥ 0 (grey levels) and a refresh > 0 s")
        if not 0 <= self.tick_window_s < 0.5 / self.perception_hz:
            raise ValueError(f"runtime.tick_window_s={self.tick_window_s}: expected 0 (auto) or seconds below half "
                             f"the perception period ({0.5 / self.perception_hz:.3f} s)")

    def with_models_from(self, *roots: str | Path) -> "RuntimeConfig":
        """The same settings with relative model paths that are not found from here taken from the
        first of ``roots`` that has them (a store's config folder, the install)."""
        def find(p: str) -> str:
            if not p or Path(p).is_absolute() or Path(p).exists():
                return p
            return next((str(Path(r) / p) for r in roots if (Path(r) / p).exists()), p)

        return dataclasses.replace(self, pose_model=find(self.pose_model),
                                   hands=dataclasses.replace(self.hands, product_model=find(self.hands.product_model)))


# -- loading settings ------------------------------------------------------------------------------

def config_from(cls: type, data: Any, prefix: str = "") -> Any:
    """Build the frozen dataclass ``cls`` from a mapping of overrides (nested mappings for nested
    configs; missing keys keep their defaults). An unknown key or a value of the wrong type raises
    one ``ValueError`` line naming ``<prefix><key>`` and what was expected."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{prefix.rstrip('.') or '<top>'}: expected a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"{prefix}{key}: not a setting (expected one of {', '.join(fields)})")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = config_from(kind, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _checked(value, kind, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ValueError as e:   # __post_init__'s own checks already name the key
        raise ValueError(str(e).splitlines()[0]) from None


def _checked(value: Any, kind: Any, key: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            try:
                return _checked(value, a, key)
            except ValueError:
                pass
        raise ValueError(f"{key}: expected {' or '.join(_kind_name(a) for a in args)}, got {value!r}")
    if kind is type(None):
        if value is None:
            return None
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            inner = args[0] if args else Any
            return tuple(v if inner is Any else _checked(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    else:
        return value
    raise ValueError(f"{key}: expected {_kind_name(kind)}, got {value!r}")


def _kind_name(kind: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(kind, "a list" if typing.get_origin(kind) is tuple else getattr(kind, "__name__", str(kind)))


def runtime_config_from(data: Any, prefix: str = "runtime.") -> RuntimeConfig:
    """``RuntimeConfig`` from a mapping of overrides; one-line errors name ``runtime.<key>``."""
    return config_from(RuntimeConfig, data, prefix)


def load_runtime_config(path: str | Path) -> RuntimeConfig:
    """The edge box's settings from a YAML file: a mapping of overrides, at the top or under
    ``runtime:``; relative model paths are found from the working folder, the file's folder or one
    above it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such settings file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not YAML ({str(e).splitlines()[0]})") from None
    if isinstance(data, dict) and set(data) == {"runtime"}:
        data = data["runtime"]
    try:
        cfg = runtime_config_from(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return cfg.with_models_from(path.parent, *path.resolve().parent.parents)


def as_dict(cfg: Any) -> dict:
    """Plain data of a config (tuples as lists), for writing out or for hydra's defaults."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))
