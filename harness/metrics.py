"""Scoring a run against its ground truth: carts, tracking, latency.

Pure functions on plain data (``cart_metrics``, ``tracking_metrics``, ``latency_metrics``,
``aggregate``, ``format_table``) plus one loader (``load_run``) and ``score_run``, which ties them
to a run directory and writes ``scorecard.json``. Each metric returns a result dataclass with
``as_dict()``; a scorecard is the JSON-ready dict that ``score_run`` returns, and suites pool
scorecards with ``aggregate``.

Clocks: ``t_*`` / ``*_s`` are stream seconds (the store clock); ``wall_*`` is ``time.time()``;
latency in ``*_ms`` is wall-clock, decision delay in ``*_s`` is stream time.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.store import StoreSpec, load_store

HYP_T_EPS_S = 1e-6  # slack on the hypothesis window edges, so rows stamped exactly on the grid count


# ----------------------------------------------------------------------------------------- carts


@dataclass(frozen=True)
class AccountResult:
    """One account's receipt against its true cart. ``visit`` is False for a receipt of an account
    that never shopped (such rows are reported but not counted in visits / exact)."""

    account: str
    visit: bool
    exact: bool
    reason: str
    true_items: dict[str, int]
    charged_items: dict[str, int]
    true_total: float
    charged_total: float
    charge_error: float
    flagged: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CartMetrics:
    """Exact-receipt rate, unit-level precision / recall / F1 and charge error (money)."""

    visits: int
    exact: int
    exact_rate: float | None
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    charge_error: float
    receipts: int
    flagged: int
    accounts: list[AccountResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prf1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1 over units; both are 1.0 only when nothing was charged and nothing was
    true, a 0/0 otherwise reads 0.0."""
    empty = tp + fp + fn == 0
    precision = tp / (tp + fp) if tp + fp else (1.0 if empty else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if empty else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _clean(items: dict[str, int]) -> dict[str, int]:
    return {sku: int(q) for sku, q in sorted(items.items()) if int(q) != 0}


def _value(items: dict[str, int], prices: dict[str, float]) -> float:
    return float(sum(q * prices[sku] for sku, q in items.items()))


def _diff_text(true: dict[str, int], charged: dict[str, int]) -> str:
    missing = [f"{s}×{true.get(s, 0) - charged.get(s, 0)}" for s in sorted(true.keys() | charged.keys())
               if true.get(s, 0) > charged.get(s, 0)]
    extra = [f"{s}×{charged.get(s, 0) - true.get(s, 0)}" for s in sorted(true.keys() | charged.keys())
             if charged.get(s, 0) > true.get(s, 0)]
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"extra {', '.join(extra)}"] if extra else [])
    return "; ".join(parts)


def cart_metrics(true_carts: dict[str, dict[str, int]], receipts: dict[str, dict[str, int]],
                 prices: dict[str, float], flagged: dict[str, str] | None = None) -> CartMetrics:
    """Score receipts (account → {sku: qty}) against true carts over the union of accounts.

    A true account with no receipt is never exact ("no receipt"); zero quantities are dropped before
    comparing. Units: tp = Σ min(true, charged), fp = Σ max(charged − true, 0), fn = Σ max(true −
    charged, 0) per (account, sku). Charge error = Σ |charged total − true total|, priced with
    ``prices``. ``flagged`` maps an account to the reason its receipt was flagged."""
    flagged = flagged or {}
    rows: list[AccountResult] = []
    tp = fp = fn = exact = 0
    charge_error = 0.0
    for account in sorted(true_carts.keys() | receipts.keys()):
        visit = account in true_carts
        true = _clean(true_carts.get(account, {}))
        has_receipt = account in receipts
        charged = _clean(receipts.get(account, {}))
        for sku in true.keys() | charged.keys():
            t, c = max(true.get(sku, 0), 0), max(charged.get(sku, 0), 0)
            tp += min(t, c)
            fp += max(c - t, 0)
            fn += max(t - c, 0)
        if not has_receipt:
            ok, reason = False, "no receipt"
        elif not visit and charged:
            ok, reason = False, "no such visit; " + _diff_text(true, charged)
        else:
            ok = charged == true
            reason = "" if ok else _diff_text(true, charged)
        exact += int(ok and visit)
        true_total, charged_total = _value(true, prices), _value(charged, prices)
        err = abs(charged_total - true_total)
        charge_error += err
        rows.append(AccountResult(account, visit, ok, reason, true, charged, true_total, charged_total, err,
                                  flagged.get(account)))
    visits = len(true_carts)
    precision, recall, f1 = prf1(tp, fp, fn)
    return CartMetrics(visits=visits, exact=exact, exact_rate=exact / visits if visits else None, tp=tp, fp=fp, fn=fn,
                       precision=precision, recall=recall, f1=f1, charge_error=charge_error, receipts=len(receipts),
                       flagged=sum(1 for a in flagged if a in receipts), accounts=rows)


def receipts_by_account(rows: list[dict]) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """Receipt rows (receipts.jsonl) → (account → {sku: qty}, account → flag reason). Several
    receipts of one account add up."""
    carts: dict[str, dict[str, int]] = {}
    flags: dict[str, str] = {}
    for r in rows:
        cart = carts.setdefault(r["account_id"], {})
        for line in r.get("lines", []):
            cart[line["sku"]] = cart.get(line["sku"], 0) + int(line["qty"])
        if r.get("flagged"):
            reason = str(r.get("reason") or "flagged")
            flags[r["account_id"]] = f"{flags[r['account_id']]}; {reason}" if r["account_id"] in flags else reason
    return carts, flags


# -------------------------------------------------------------------------------------- tracking


@dataclass(frozen=True)
class TrackingMetrics:
    """CLEAR-MOT and identity metrics on the floor plane. Rates are None when undefined (no gt)."""

    mota: float | None
    motp_m: float | None
    idf1: float | None
    id_switches: int
    num_frames: int
    num_objects: int
    num_matches: int
    num_misses: int
    num_false_positives: int
    idtp: int
    idfp: int
    idfn: int
    rate_hz: float
    max_dist_m: float
    hota: float | None = None      # HOTA = mean over α of √(DetA·AssA) (TrackEval), similarity 1 − d / max_dist_m
    deta: float | None = None
    assa: float | None = None
    hota_parts: dict[str, list[float]] | None = None   # TrackEval's per-α sums, for pooling a suite

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def tracking_metrics(gt_t: np.ndarray, gt_present: np.ndarray, gt_xy: np.ndarray, hyp_rows: list[dict],
                     rate_hz: float = 10.0, max_dist_m: float = 0.5, hold_s: float = 0.5,
                     floor_m: tuple[float, float] | None = None) -> TrackingMetrics:
    """MOTA / MOTP / IDF1 / ID switches with motmetrics, on a ``rate_hz`` grid from the first to the
    last time any shopper is present. At each grid time: gt = shoppers present at the nearest gt
    tick (ids = shopper index); hypotheses = each track's latest row with t in (grid − window,
    grid], window = max(1/rate_hz, hold_s): a published track state holds until the runtime's next
    update, as a store display would show it, or until a state that says it ``ended``; pairs
    farther than ``max_dist_m`` cannot match.
    ``motp_m`` is the mean matched distance in metres. With ``floor_m`` (width, depth) a shopper
    counts only while on the store's floor: walking up to the entry gate outside is not tracked."""
    import motmetrics as mm

    gt_t = np.asarray(gt_t, dtype=float)
    gt_present = np.asarray(gt_present, dtype=bool).reshape(len(gt_t), -1)
    gt_xy = np.asarray(gt_xy, dtype=float).reshape(len(gt_t), -1, 2)
    if floor_m is not None:
        x, y = gt_xy[..., 0], gt_xy[..., 1]
        gt_present = gt_present & (x >= 0) & (x <= floor_m[0]) & (y >= 0) & (y <= floor_m[1])
    dt_s = 1.0 / rate_hz
    hold = max(dt_s, hold_s)
    any_present = gt_present.any(axis=1)
    if any_present.any():
        t0, t1 = gt_t[any_present][0], gt_t[any_present][-1]
        grid = t0 + np.arange(int(math.floor((t1 - t0) * rate_hz + 1e-9)) + 1) * dt_s
    else:
        grid = np.empty(0)

    tracks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    by_track: dict[int, list[dict]] = {}
    for r in hyp_rows:
        by_track.setdefault(int(r["track_id"]), []).append(r)
    for tid, rows in by_track.items():
        rows = sorted(rows, key=lambda r: r["t"])
        tracks[tid] = (np.array([r["t"] for r in rows], float), np.array([[r["x"], r["y"]] for r in rows], float),
                       np.array([bool(r.get("ended", False)) for r in rows]))

    acc = mm.MOTAccumulator(auto_id=True)
    frames: list[tuple[np.ndarray, np.ndarray, list[int], np.ndarray]] = []
    for g in grid:
        k = int(np.searchsorted(gt_t, g))
        if k == len(gt_t) or (k > 0 and g - gt_t[k - 1] <= gt_t[k] - g):
            k -= 1
        oids = np.flatnonzero(gt_present[k])
        o_xy = gt_xy[k, oids]
        hids, h_xy = [], []
        for tid, (ts, xy, ended) in tracks.items():
            i = int(np.searchsorted(ts, g + HYP_T_EPS_S, side="right")) - 1
            if i >= 0 and ts[i] > g - hold + HYP_T_EPS_S and not ended[i]:
                hids.append(tid)
                h_xy.append(xy[i])
        h_xy = np.array(h_xy, float).reshape(-1, 2)
        frames.append((oids, o_xy, hids, h_xy))
        if len(oids) and hids:
            d2 = mm.distances.norm2squared_matrix(o_xy, h_xy, max_d2=max_dist_m ** 2)
        else:
            d2 = np.empty((len(oids), len(hids)))
        acc.update(oids.tolist(), hids, d2)

    names = ["mota", "idf1", "num_switches", "num_frames", "num_objects", "num_matches", "num_misses",
             "num_false_positives", "idtp", "idfp", "idfn"]
    if len(grid):
        s = mm.metrics.create().compute(acc, metrics=names, name="run").iloc[0]
        ev = acc.mot_events
        d2m = ev.loc[ev.Type.isin(["MATCH", "SWITCH"]), "D"].to_numpy(float)
        d2m = d2m[np.isfinite(d2m)]
        motp_m = float(np.sqrt(d2m).mean()) if len(d2m) else None
    else:
        s = {n: (float("nan") if n in ("mota", "idf1") else 0) for n in names}
        motp_m = None
    hota = hota_parts(frames, max_dist_m) if len(grid) else None
    return TrackingMetrics(mota=_finite(s["mota"]), motp_m=motp_m, idf1=_finite(s["idf1"]),
                           id_switches=int(s["num_switches"]), num_frames=int(s["num_frames"]),
                           num_objects=int(s["num_objects"]), num_matches=int(s["num_matches"]),
                           num_misses=int(s["num_misses"]), num_false_positives=int(s["num_false_positives"]),
                           idtp=int(s["idtp"]), idfp=int(s["idfp"]), idfn=int(s["idfn"]),
                           rate_hz=float(rate_hz), max_dist_m=float(max_dist_m),
                           **(hota_summary(hota) if hota is not None else {}), hota_parts=hota)


def hota_parts(frames: list[tuple[np.ndarray, np.ndarray, list[int], np.ndarray]], max_dist_m: float) -> dict[str, list[float]]:
    """HOTA's per-α sums (TrackEval's ``HOTA_TP``, ``HOTA_FN``, ``HOTA_FP``, ``AssA``, ``AssRe``,
    ``AssPr``, ``LocA``, α = 0.05 … 0.95) for one run. ``frames``: per grid time, the shoppers
    present (ids, floor xy) and the hypotheses (ids, floor xy). On the floor plane the similarity
    of a shopper and a track is ``max(0, 1 − d / max_dist_m)``: at α = 0.5 a match must lie within
    half of ``max_dist_m``, so HOTA, unlike MOTA, rewards tracks that are where the shopper is."""
    from trackeval.metrics import HOTA

    gt_ids = {g: i for i, g in enumerate(sorted({int(o) for f in frames for o in f[0]}))}
    hyp_ids = {h: i for i, h in enumerate(sorted({int(h) for f in frames for h in f[2]}))}
    data: dict[str, Any] = {"gt_ids": [], "tracker_ids": [], "similarity_scores": [],
                            "num_gt_ids": len(gt_ids), "num_tracker_ids": len(hyp_ids)}
    for oids, o_xy, hids, h_xy in frames:
        data["gt_ids"].append(np.array([gt_ids[int(o)] for o in oids], int))
        data["tracker_ids"].append(np.array([hyp_ids[int(h)] for h in hids], int))
        d = np.linalg.norm(np.asarray(o_xy, float)[:, None, :] - np.asarray(h_xy, float)[None, :, :], axis=-1) \
            if len(oids) and len(hids) else np.zeros((len(oids), len(hids)))
        data["similarity_scores"].append(np.clip(1.0 - d / max_dist_m, 0.0, 1.0))
    data["num_gt_dets"] = sum(len(x) for x in data["gt_ids"])
    data["num_tracker_dets"] = sum(len(x) for x in data["tracker_ids"])
    res = HOTA().eval_sequence(data)
    return {k: [float(v) for v in np.atleast_1d(res[k])] for k in HOTA_PARTS}


HOTA_PARTS = ("HOTA_TP", "HOTA_FN", "HOTA_FP", "AssA", "AssRe", "AssPr", "LocA")


def hota_summary(parts: dict[str, list[float]] | list[dict[str, list[float]]]) -> dict[str, float | None]:
    """HOTA, DetA and AssA (means over α) from one run's per-α sums, or several runs' pooled
    as TrackEval pools sequences (sums of counts, AssA and LocA weighted by true positives)."""
    from trackeval.metrics import HOTA

    runs = [parts] if isinstance(parts, dict) else list(parts)
    if not runs:
        return {"hota": None, "deta": None, "assa": None}
    res = HOTA().combine_sequences({str(i): {k: np.asarray(r[k], float) for k in HOTA_PARTS} for i, r in enumerate(runs)})
    if not sum(float(np.sum(r["HOTA_TP"]) + np.sum(r["HOTA_FN"]) + np.sum(r["HOTA_FP"])) for r in runs):
        return {"hota": None, "deta": None, "assa": None}
    return {k: float(np.mean(res[f])) for k, f in (("hota", "HOTA"), ("deta", "DetA"), ("assa", "AssA"))}


# --------------------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class InteractionMatch:
    """One true pick / put-back and the cart update that answered it, if any."""

    kind: str
    account: str
    sku: str
    t_start_s: float
    t_end_s: float
    matched: bool
    update_index: int | None = None     # in :func:`settled_updates`
    delay_s: float | None = None        # to the final update (stream s)
    latency_ms: float | None = None     # to the final update (wall ms)
    first_delay_s: float | None = None  # to the first update that had it right (a provisional one, later confirmed)
    first_latency_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LatencyMetrics:
    """Decision delay (stream s, t_decided − t_end) and published latency (wall ms, under real-time
    pacing) over matched interactions, to the final cart update and to the first one (a provisional
    update that was later confirmed); percentiles are None when nothing matched."""

    matched: int
    unmatched: int
    unused_updates: int
    delay_p50_s: float | None
    delay_p95_s: float | None
    delay_max_s: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None
    window_s: float
    interactions: list[InteractionMatch] = field(default_factory=list)
    first_delay_p50_s: float | None = None
    first_delay_p95_s: float | None = None
    first_latency_p50_ms: float | None = None
    first_latency_p95_ms: float | None = None
    first_latency_max_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentiles(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """p50, p95 (numpy linear) and max; all None for no values."""
    if not values:
        return None, None, None
    p50, p95 = np.percentile(np.asarray(values, float), [50, 95])
    return float(p50), float(p95), float(max(values))


def settled_updates(updates: list[dict]) -> list[dict]:
    """The cart updates as they stood once everything had settled, each with the time it was first
    published (``first_t_decided``, ``first_wall``): a provisional update that its settled decision
    confirmed counts from its own publication and is final at the confirmation; one that was taken
    back is dropped with its take-back; one never settled (the stream ended) stands as it is."""
    settlers = {u["settles"]: u for u in updates if u.get("settles")}
    out = []
    for u in updates:
        if u.get("settles"):
            continue
        first = {"first_t_decided": u["t_decided"], "first_wall": u.get("wall_published")}
        if u.get("stage") == "provisional":
            s = settlers.get(u.get("update_id"))
            if s is not None and int(s["delta_qty"]) != 0:
                continue                       # taken back: the correction is an update of its own
            if s is not None:
                u = {**u, "t_decided": s["t_decided"], "wall_published": s.get("wall_published")}
        out.append({**u, **first})
    return out


def latency_metrics(interactions: list[dict], updates: list[dict], wall_t0: float | None,
                    window_s: float = 3.0) -> LatencyMetrics:
    """Match true picks (+1) / put-backs (−1) to cart updates of the same account, SKU and sign,
    among the :func:`settled_updates`.

    Greedy in time order: interactions by end time, each takes the earliest (by t_interaction)
    update with capacity left whose t_interaction lies in [t_start − window_s, t_end + window_s]
    and that was decided after the interaction began (an earlier decision was about something
    else); an update of |delta_qty| = k absorbs up to k interactions. Browses are ignored."""
    sign_of = {"pick": 1, "put_back": -1}
    updates = settled_updates(updates)
    order = sorted(range(len(updates)), key=lambda i: (updates[i]["t_interaction"], i))
    capacity = {i: abs(int(updates[i]["delta_qty"])) for i in order}
    true = sorted((x for x in interactions if x["kind"] in sign_of), key=lambda x: (x["t_end"], x["t_start"]))
    results: list[InteractionMatch] = []
    for x in true:
        sign = sign_of[x["kind"]]
        lo, hi = x["t_start"] - window_s, x["t_end"] + window_s
        hit = next((i for i in order if capacity[i] > 0 and updates[i].get("account_id") == x["account"]
                    and updates[i]["sku"] == x["sku"] and int(np.sign(updates[i]["delta_qty"])) == sign
                    and lo <= updates[i]["t_interaction"] <= hi and updates[i]["t_decided"] >= x["t_start"]), None)
        base = dict(kind=x["kind"], account=x["account"], sku=x["sku"], t_start_s=float(x["t_start"]),
                    t_end_s=float(x["t_end"]))
        if hit is None:
            results.append(InteractionMatch(**base, matched=False))
            continue
        capacity[hit] -= 1
        u = updates[hit]
        latency_ms = first_ms = None
        if wall_t0 is not None and u.get("wall_published") is not None:
            latency_ms = (float(u["wall_published"]) - (wall_t0 + float(x["t_end"]))) * 1000.0
            first_ms = (float(u["first_wall"]) - (wall_t0 + float(x["t_end"]))) * 1000.0
        results.append(InteractionMatch(**base, matched=True, update_index=hit,
                                        delay_s=float(u["t_decided"]) - float(x["t_end"]), latency_ms=latency_ms,
                                        first_delay_s=float(u["first_t_decided"]) - float(x["t_end"]),
                                        first_latency_ms=first_ms))
    delays = [r.delay_s for r in results if r.delay_s is not None]
    lats = [r.latency_ms for r in results if r.latency_ms is not None]
    d50, d95, dmax = percentiles(delays)
    l50, l95, lmax = percentiles(lats)
    f50, f95, _ = percentiles([r.first_delay_s for r in results if r.first_delay_s is not None])
    fl50, fl95, flmax = percentiles([r.first_latency_ms for r in results if r.first_latency_ms is not None])
    unused = sum(1 for i in order if capacity[i] == abs(int(updates[i]["delta_qty"])) and capacity[i] > 0)
    n_matched = sum(r.matched for r in results)
    return LatencyMetrics(matched=n_matched, unmatched=len(results) - n_matched, unused_updates=unused,
                          delay_p50_s=d50, delay_p95_s=d95, delay_max_s=dmax, latency_p50_ms=l50,
                          latency_p95_ms=l95, latency_max_ms=lmax, window_s=float(window_s), interactions=results,
                          first_delay_p50_s=f50, first_delay_p95_s=f95, first_latency_p50_ms=fl50,
                          first_latency_p95_ms=fl95, first_latency_max_ms=flmax)


# ------------------------------------------------------------------------------------ scorecards


def make_scorecard(scenario: str, sensing: str, cart: CartMetrics, tracking: TrackingMetrics | None,
                   latency: LatencyMetrics, stream_s: float | None = None, wall_s: float | None = None,
                   **extra: Any) -> dict[str, Any]:
    """The JSON-ready scorecard of one run (what ``score_run`` writes and ``aggregate`` pools)."""
    rtf = stream_s / wall_s if stream_s is not None and wall_s else None
    return {"scenario": scenario, "sensing": sensing, **extra, "stream_s": stream_s, "wall_s": wall_s,
            "real_time_factor": rtf, "cart": cart.as_dict(),
            "tracking": tracking.as_dict() if tracking is not None else None, "latency": latency.as_dict()}


def summary_row(sc: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one scorecard, flat (the keys ``aggregate`` also returns)."""
    c, t, lat = sc["cart"], sc.get("tracking") or {}, sc["latency"]
    return {"scenario": sc.get("scenario"), "sensing": sc.get("sensing"), "visits": c["visits"], "exact": c["exact"],
            "exact_rate": c["exact_rate"], "tp": c["tp"], "fp": c["fp"], "fn": c["fn"], "precision": c["precision"],
            "recall": c["recall"], "f1": c["f1"], "charge_error": c["charge_error"], "mota": t.get("mota"),
            "idf1": t.get("idf1"), "hota": t.get("hota"), "id_switches": t.get("id_switches"), "latency_p50_ms": lat["latency_p50_ms"],
            "latency_p95_ms": lat["latency_p95_ms"], "latency_max_ms": lat["latency_max_ms"],
            "delay_p50_s": lat["delay_p50_s"], "delay_p95_s": lat["delay_p95_s"], "delay_max_s": lat["delay_max_s"],
            "first_latency_p50_ms": lat.get("first_latency_p50_ms"), "first_latency_p95_ms": lat.get("first_latency_p95_ms"),
            "first_delay_p50_s": lat.get("first_delay_p50_s"), "first_delay_p95_s": lat.get("first_delay_p95_s"),
            "matched": lat["matched"], "unmatched": lat["unmatched"], "real_time_factor": sc.get("real_time_factor")}


def aggregate(scorecards: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool scorecards of a suite: summed visits / exact / units / charge error (micro P/R/F1),
    MOTA = 1 − Σ(misses + fp + idsw) / Σobjects, IDF1 = 2Σidtp / (2Σidtp + Σidfp + Σidfn), latency
    percentiles over all matched interactions pooled, RTF = Σstream_s / Σwall_s."""
    carts = [sc["cart"] for sc in scorecards]
    tracks = [sc["tracking"] for sc in scorecards if sc.get("tracking")]
    visits, exact = sum(c["visits"] for c in carts), sum(c["exact"] for c in carts)
    tp, fp, fn = (sum(c[k] for c in carts) for k in ("tp", "fp", "fn"))
    precision, recall, f1 = prf1(tp, fp, fn)
    objects = sum(t["num_objects"] for t in tracks)
    errors = sum(t["num_misses"] + t["num_false_positives"] + t["id_switches"] for t in tracks)
    idtp, idfp, idfn = (sum(t[k] for t in tracks) for k in ("idtp", "idfp", "idfn"))
    pooled = [m for sc in scorecards for m in sc["latency"]["interactions"] if m["matched"]]
    d50, d95, dmax = percentiles([m["delay_s"] for m in pooled if m["delay_s"] is not None])
    l50, l95, lmax = percentiles([m["latency_ms"] for m in pooled if m["latency_ms"] is not None])
    f50, f95, _ = percentiles([m["first_delay_s"] for m in pooled if m.get("first_delay_s") is not None])
    fl50, fl95, _ = percentiles([m["first_latency_ms"] for m in pooled if m.get("first_latency_ms") is not None])
    stream = [sc.get("stream_s") for sc in scorecards]
    wall = [sc.get("wall_s") for sc in scorecards]
    rtf = sum(stream) / sum(wall) if scorecards and None not in stream and None not in wall and sum(wall) else None
    sensings = sorted({str(sc.get("sensing")) for sc in scorecards})
    return {"scenario": "total", "sensing": sensings[0] if len(sensings) == 1 else "all", "runs": len(scorecards),
            "visits": visits, "exact": exact, "exact_rate": exact / visits if visits else None,
            "tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1,
            "charge_error": sum(c["charge_error"] for c in carts),
            "mota": 1 - errors / objects if objects else None,
            "idf1": 2 * idtp / (2 * idtp + idfp + idfn) if (2 * idtp + idfp + idfn) else None,
            "hota": hota_summary([t["hota_parts"] for t in tracks if t.get("hota_parts")])["hota"],
            "id_switches": sum(t["id_switches"] for t in tracks),
            "latency_p50_ms": l50, "latency_p95_ms": l95, "latency_max_ms": lmax,
            "delay_p50_s": d50, "delay_p95_s": d95, "delay_max_s": dmax,
            "first_latency_p50_ms": fl50, "first_latency_p95_ms": fl95, "first_delay_p50_s": f50, "first_delay_p95_s": f95,
            "matched": len(pooled), "unmatched": sum(sc["latency"]["unmatched"] for sc in scorecards),
            "real_time_factor": rtf}


TABLE_COLUMNS: list[tuple[str, str, str]] = [
    # (header, summary_row key, format)
    ("scenario", "scenario", "s"), ("sensing", "sensing", "s"), ("visits", "visits", "d"), ("exact", "exact", "d"),
    ("item F1", "f1", ".3f"), ("charge err", "charge_error", ".2f"), ("MOTA", "mota", ".3f"), ("IDF1", "idf1", ".3f"),
    ("HOTA", "hota", ".3f"), ("IDsw", "id_switches", "d"), ("1st p95 ms", "first_latency_p95_ms", ".0f"),
    ("lat p50 ms", "latency_p50_ms", ".0f"), ("lat p95 ms", "latency_p95_ms", ".0f"),
    ("RTF", "real_time_factor", ".2f"),
]


def fmt(value: Any, spec: str) -> str:
    """One table cell; "–" for None."""
    if value is None:
        return "–"
    return str(value) if spec == "s" else format(value, spec)


def table_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Header plus one row of cells per scorecard and a final "total" row (``aggregate``)."""
    flat = [summary_row(sc) for sc in rows] + [aggregate(rows)]
    return [[h for h, _, _ in TABLE_COLUMNS]] + [[fmt(r[k], f) for _, k, f in TABLE_COLUMNS] for r in flat]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of scorecards with a "total" row."""
    cells = table_cells(rows)
    widths = [max(len(r[j]) for r in cells) for j in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in cells]
    rule = "-" * len(lines[0])
    return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


# ---------------------------------------------------------------------------------------- loader


@dataclass
class RunData:
    """Everything scoring and the report read from a run directory."""

    run_dir: Path
    scenario: str
    store: StoreSpec
    true_carts: dict[str, dict[str, int]]
    shoppers: list[dict]
    gt_t: np.ndarray
    gt_present: np.ndarray
    gt_xy: np.ndarray
    interactions: list[dict]
    track_rows: list[dict]
    updates: list[dict]
    receipt_rows: list[dict]
    run_info: dict[str, Any]

    @property
    def prices(self) -> dict[str, float]:
        return {sku: p.price for sku, p in self.store.products.items()}


def _need(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"run file missing: {path}")
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file (blank lines skipped); a missing file raises FileNotFoundError."""
    with open(_need(path)) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_run(run_dir: Path, out_name: str = "out") -> RunData:
    """Read gt/, the runtime's outputs (``out/``, or ``out-<sensing>/`` of an ablation) and
    store.yaml of a run; any missing file → FileNotFoundError naming it."""
    run_dir = Path(run_dir)
    gt, out = run_dir / "gt", run_dir / out_name
    carts = json.loads(_need(gt / "carts.json").read_text())
    shoppers = json.loads(_need(gt / "shoppers.json").read_text())
    with np.load(_need(gt / "tracks.npz")) as z:
        gt_t, present, xy = np.asarray(z["t"], float), np.asarray(z["present"], bool), np.asarray(z["xy"], float)
    interactions = read_jsonl(gt / "interactions.jsonl")
    store = load_store(_need(run_dir / "store.yaml"))
    track_rows = read_jsonl(out / "tracks.jsonl")
    updates = read_jsonl(out / "cart_updates.jsonl")
    receipt_rows = read_jsonl(out / "receipts.jsonl")
    run_info = json.loads(_need(out / "run.json").read_text())
    meta = run_dir / "run.json"
    scenario = json.loads(meta.read_text()).get("scenario") if meta.is_file() else None
    return RunData(run_dir=run_dir, scenario=str(scenario or run_dir.name), store=store,
                   true_carts={a: {s: int(q) for s, q in c.get("items", {}).items()} for a, c in carts.items()},
                   shoppers=shoppers, gt_t=gt_t, gt_present=present, gt_xy=xy, interactions=interactions,
                   track_rows=track_rows, updates=updates, receipt_rows=receipt_rows, run_info=run_info)


def outputs_dir(run_dir: Path, out_name: str = "out") -> Path:
    """Where a run's scorecard and report go: the run directory for its main runtime outputs
    (``out/``), the outputs' own folder for another sensing mode's (``out-<sensing>/``)."""
    return Path(run_dir) if out_name == "out" else Path(run_dir) / out_name


def score_run(run_dir: Path, rate_hz: float = 10.0, max_dist_m: float = 0.5, window_s: float = 3.0,
              out_name: str = "out") -> dict[str, Any]:
    """Score one run's runtime outputs, write ``scorecard.json`` (see :func:`outputs_dir`) and
    return the scorecard."""
    run = load_run(Path(run_dir), out_name)
    charged, flags = receipts_by_account(run.receipt_rows)
    cart = cart_metrics(run.true_carts, charged, run.prices, flags)
    tracking = tracking_metrics(run.gt_t, run.gt_present, run.gt_xy, run.track_rows, rate_hz, max_dist_m,
                                floor_m=(run.store.floor.width_m, run.store.floor.depth_m))
    info = run.run_info
    wall_t0 = info.get("wall_t0") if info.get("pacing", "realtime") == "realtime" else None
    latency = latency_metrics(run.interactions, run.updates, wall_t0, window_s)
    sc = make_scorecard(run.scenario, str(info.get("sensing", "fused")), cart, tracking, latency,
                        stream_s=info.get("stream_s"), wall_s=info.get("wall_s"),
                        run_dir=str(run.run_dir.resolve()), pacing=info.get("pacing"))
    sc["out"] = out_name
    (outputs_dir(run.run_dir, out_name) / "scorecard.json").write_text(json.dumps(sc, indent=1))
    return sc
