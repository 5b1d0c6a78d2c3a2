"""Scenario files: who enters when, what each shopper does, lighting and faults.

The format is the user-facing contract in DESIGN.md. ``load_scenario(path)`` validates it against
the store it names and raises one ``SpecError`` (file, field, expectation) on anything wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.store import SpecError, StoreSpec, load_store, read_yaml

LIGHTING_PRESETS = ("day", "evening", "flicker")
GROUP_WINDOW_S = 5.0   # shoppers on one account (group entry) pass the entry gate this close together
FAULT_KINDS = ("camera_dropout", "dropped_frames", "loadcell_glitch", "loadcell_offset")


@dataclass(frozen=True)
class Step:
    """One script step: ``pick``, ``put_back``, ``browse``, ``wait`` or ``exit``."""

    kind: str
    sku: str | None = None
    qty: int = 1
    bin: str | None = None
    seconds: float = 0.0
    per_reach: int = 1                     # pick: items taken in one reach (multi-item grab)
    at: tuple[float, float] | None = None  # wait: walk to this floor point (metres) first


@dataclass(frozen=True)
class ShopperPlan:
    account: str
    enter_at_s: float
    appearance: dict
    script: tuple[Step, ...]


@dataclass(frozen=True)
class Fault:
    kind: str
    params: dict


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    store: str
    seed: int
    lighting: str
    shoppers: tuple[ShopperPlan, ...]
    faults: tuple[Fault, ...] = ()
    duration_s: float | None = None
    cameras: dict = field(default_factory=dict)   # camera timing (sim CameraConfig fields), e.g. {jitter_s: 0.02}
    path: str = ""
    spec: StoreSpec | None = field(default=None, compare=False, repr=False)


class _Fields:
    """Reads fields of one mapping, naming ``file`` and the field path in every error."""

    def __init__(self, path: str, where: str, data: Any, allowed: set[str]):
        self.path, self.where = path, where
        if not isinstance(data, dict):
            raise SpecError(path, where or "<top>", "a mapping", data)
        extra = set(data) - allowed
        if extra:
            raise SpecError(path, self._f(sorted(extra)[0]), f"one of {sorted(allowed)}")
        self.data = data

    def _f(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple, default: Any = ..., check=None, expected: str = "") -> Any:
        if key not in self.data:
            if default is ...:
                raise SpecError(self.path, self._f(key), f"a value ({expected or _name(kind)}); the field is missing")
            return default
        v = self.data[key]
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
            raise SpecError(self.path, self._f(key), expected or _name(kind), v)
        if check is not None and not check(v):
            raise SpecError(self.path, self._f(key), expected, v)
        return v


def _name(kind: type | tuple) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "a mapping", list: "a list", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in (kind if isinstance(kind, tuple) else (kind,)))


def _step(path: str, where: str, raw: Any, spec: StoreSpec) -> Step:
    if raw == "exit":
        return Step("exit")
    if not (isinstance(raw, dict) and len(raw) == 1):
        raise SpecError(path, where, "one of 'exit', {pick: …}, {put_back: …}, {browse: …}, {wait: …}", raw)
    kind, body = next(iter(raw.items()))
    w = f"{where}.{kind}"
    if kind in ("pick", "put_back"):
        f = _Fields(path, w, body, {"sku", "qty", "bin"} | ({"per_reach"} if kind == "pick" else set()))
        sku = f.get("sku", str, check=lambda s: s in spec.products, expected=f"a SKU of store '{spec.name}'")
        qty = f.get("qty", int, 1, check=lambda q: 1 <= q <= 20, expected="an integer from 1 to 20")
        b = f.get("bin", str, None, check=lambda b: b in spec.bins, expected=f"a bin of store '{spec.name}' (e.g. {next(iter(spec.bins))})")
        if kind == "pick" and b is None and not spec.bins_of_sku(sku):
            raise SpecError(path, f"{w}.sku", "a SKU the planogram places in some bin", sku)
        per_reach = f.get("per_reach", int, 1, check=lambda n: 1 <= n <= min(qty, 3),
                          expected=f"items per reach, from 1 to {min(qty, 3)} (at most qty and 3)")
        return Step(kind, sku=sku, qty=qty, bin=b, per_reach=per_reach)
    if kind == "browse":
        f = _Fields(path, w, body, {"bin", "sku", "seconds"})
        b = f.get("bin", str, None, check=lambda b: b in spec.bins, expected=f"a bin of store '{spec.name}'")
        sku = f.get("sku", str, None, check=lambda s: bool(spec.bins_of_sku(s)), expected="a SKU the planogram places in some bin")
        if (b is None) == (sku is None):
            raise SpecError(path, w, "exactly one of 'bin' or 'sku'", body)
        return Step("browse", sku=sku, bin=b, seconds=f.get("seconds", float, 1.0, check=lambda s: 0 < s <= 600, expected="seconds in (0, 600]"))
    if kind == "wait":
        f = _Fields(path, w, body, {"seconds", "at"})
        at = f.get("at", list, None, check=lambda a: len(a) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in a)
                   and 0 < a[0] < spec.floor.width_m and 0 < a[1] < spec.floor.depth_m,
                   expected=f"a floor point [x, y] in metres inside the {spec.floor.width_m} × {spec.floor.depth_m} m floor")
        return Step("wait", seconds=f.get("seconds", float, check=lambda s: 0 < s <= 3600, expected="seconds in (0, 3600]"),
                    at=None if at is None else (float(at[0]), float(at[1])))
    raise SpecError(path, where, "one of 'exit', pick, put_back, browse, wait", kind)


def _fault(path: str, where: str, raw: Any, spec: StoreSpec) -> Fault:
    f = _Fields(path, where, raw, {"kind", "camera", "cell", "from_s", "to_s", "at_s", "grams", "duration_s", "rate"})
    kind = f.get("kind", str, check=lambda k: k in FAULT_KINDS, expected=f"one of {list(FAULT_KINDS)}")
    cams = {c.id for c in spec.cameras}
    cam_check = dict(check=lambda c: c in cams, expected=f"a camera of store '{spec.name}' ({', '.join(sorted(cams))})")
    cell_check = dict(check=lambda c: c in spec.load_cells, expected=f"a load cell of store '{spec.name}'")
    time = dict(check=lambda t: t >= 0, expected="a time ≥ 0 in seconds")
    if kind == "camera_dropout":
        p = {"camera": f.get("camera", str, **cam_check), "from_s": f.get("from_s", float, **time), "to_s": f.get("to_s", float, **time)}
        if p["to_s"] <= p["from_s"]:
            raise SpecError(path, f"{where}.to_s", f"a time after from_s ({p['from_s']})", p["to_s"])
    elif kind == "dropped_frames":
        p = {"camera": f.get("camera", str, None, **cam_check),
             "rate": f.get("rate", float, check=lambda r: 0 <= r < 1, expected="a probability in [0, 1)")}
    elif kind == "loadcell_glitch":
        p = {"cell": f.get("cell", str, **cell_check), "at_s": f.get("at_s", float, **time),
             "grams": f.get("grams", float), "duration_s": f.get("duration_s", float, 0.05, check=lambda d: 0 < d <= 10, expected="seconds in (0, 10]")}
    else:
        p = {"cell": f.get("cell", str, **cell_check), "from_s": f.get("from_s", float, **time), "grams": f.get("grams", float)}
    return Fault(kind, p)


def parse_scenario(data: Any, path: str | Path, store_dir: str | Path, spec: StoreSpec | None = None) -> Scenario:
    """Validate a scenario already read into Python objects against the store it names."""
    path = str(path)
    top = _Fields(path, "", data, {"name", "description", "store", "seed", "lighting", "faults", "shoppers", "duration_s",
                                   "cameras"})
    store_name = top.get("store", str)
    store_file = Path(store_dir) / f"{store_name}.yaml"
    if not store_file.is_file():
        known = sorted(p.stem for p in Path(store_dir).glob("*.yaml"))
        raise SpecError(path, "store", f"a store in {store_dir} ({', '.join(known)})", store_name)
    if spec is None:               # (datagen passes its restocked copy of the store)
        spec = load_store(store_file)
    lighting = "day"
    if "lighting" in top.data:
        lf = _Fields(path, "lighting", top.data["lighting"], {"preset"})
        lighting = lf.get("preset", str, check=lambda s: s in LIGHTING_PRESETS, expected=f"one of {list(LIGHTING_PRESETS)}")
    raw_shoppers = top.get("shoppers", list, check=lambda s: len(s) > 0, expected="a non-empty list of shoppers")
    shoppers = []
    for i, raw in enumerate(raw_shoppers):
        w = f"shoppers[{i}]"
        f = _Fields(path, w, raw, {"account", "enter_at_s", "appearance", "script"})
        account = f.get("account", str, check=lambda a: a.strip() != "", expected="an account id")
        enter = f.get("enter_at_s", float, 0.0, check=lambda t: t >= 0, expected="a time ≥ 0 in seconds")
        appearance = f.get("appearance", dict, {})
        _Fields(path, f"{w}.appearance", appearance, {"height_m", "build", "top", "bottom"})
        if "height_m" in appearance:
            _Fields(path, f"{w}.appearance", appearance, {"height_m", "build", "top", "bottom"}).get(
                "height_m", float, check=lambda h: 1.2 <= h <= 2.1, expected="a height in metres from 1.2 to 2.1")
        script_raw = f.get("script", list, check=lambda s: len(s) > 0, expected="a non-empty list of steps")
        script = [_step(path, f"{w}.script[{j}]", s, spec) for j, s in enumerate(script_raw)]
        for j, s in enumerate(script[:-1]):
            if s.kind == "exit":
                raise SpecError(path, f"{w}.script[{j}]", "'exit' only as the last step")
        if script[-1].kind != "exit":
            script.append(Step("exit"))
        carried: dict[str, int] = {}
        for j, s in enumerate(script):
            if s.kind == "pick":
                carried[s.sku] = carried.get(s.sku, 0) + s.qty
            elif s.kind == "put_back":
                if carried.get(s.sku, 0) < s.qty:
                    raise SpecError(path, f"{w}.script[{j}].put_back.qty",
                                    f"at most the {carried.get(s.sku, 0)} of {s.sku} picked before this step", s.qty)
                carried[s.sku] -= s.qty
        shoppers.append(ShopperPlan(account, enter, dict(appearance), tuple(script)))
    first_entry: dict[str, float] = {}
    for i, sp in enumerate(shoppers):
        t0 = first_entry.setdefault(sp.account, sp.enter_at_s)
        if abs(sp.enter_at_s - t0) > GROUP_WINDOW_S:
            raise SpecError(path, f"shoppers[{i}].enter_at_s",
                            f"shoppers sharing account '{sp.account}' are a group that enters on one scan: within "
                            f"{GROUP_WINDOW_S:g} s of its first member ({t0:g} s)", sp.enter_at_s)
    faults = tuple(_fault(path, f"faults[{i}]", raw, spec) for i, raw in enumerate(top.get("faults", list, [])))
    cameras = _camera_timing(path, top.data.get("cameras", {}))
    return Scenario(
        name=top.get("name", str), description=top.get("description", str, ""), store=store_name,
        seed=top.get("seed", int, 0, check=lambda s: s >= 0, expected="an integer ≥ 0"), lighting=lighting,
        shoppers=tuple(shoppers), faults=faults,
        duration_s=top.get("duration_s", float, None, check=lambda d: d > 0, expected="seconds > 0"),
        cameras=cameras, path=path, spec=spec)


def _camera_timing(path: str, raw: Any) -> dict:
    """``cameras:`` — how the scenario's cameras keep time (unsynchronised IP cameras)."""
    f = _Fields(path, "cameras", raw, {"clock_offset_s", "jitter_s", "free_run", "fps"})
    out: dict = {}
    for key in ("clock_offset_s", "jitter_s"):
        if key in f.data:
            out[key] = f.get(key, float, check=lambda v: 0 <= v <= 1, expected="seconds in [0, 1]")
    if "free_run" in f.data:
        out["free_run"] = f.get("free_run", bool)
    if "fps" in f.data:
        fps = f.get("fps", list, check=lambda v: len(v) > 0 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                  and 0 < x <= 120 for x in v),
                    expected="a list of frame rates in (0, 120], taken in turn by the store's cameras")
        out["fps"] = tuple(float(x) for x in fps)
    if out.get("jitter_s") and out.get("fps") and out["jitter_s"] >= 0.5 / max(out["fps"]):
        raise SpecError(path, "cameras.jitter_s", "less than half the fastest camera's frame period", out["jitter_s"])
    return out


def load_scenario(path: str | Path, store_dir: str | Path) -> Scenario:
    return parse_scenario(read_yaml(path), path, store_dir)
