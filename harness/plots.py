"""Pictures a person would rather look at than read: the store's floor plan with camera coverage,
and the load-cell traces of a run with its true interactions marked."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from runtime.geometry import coverage  # noqa: E402
from runtime.store import StoreSpec  # noqa: E402


def floor_plan(store: StoreSpec, path: Path) -> Path:
    """Top view: units with each bin's camera count, cameras with their view direction, gates."""
    cov = coverage(store)
    fig, ax = plt.subplots(figsize=(9, 9 * store.floor.depth_m / store.floor.width_m + 0.6))
    ax.add_patch(plt.Rectangle((0, 0), store.floor.width_m, store.floor.depth_m, fill=False, lw=2, color="0.3"))
    cmap = {0: "#d73027", 1: "#fc8d59", 2: "#91cf60", 3: "#1a9850"}
    for u in store.units:
        c = u.footprint_xy()
        ax.fill(c[:, 0], c[:, 1], color="0.85", ec="0.4")
        n = u.front_normal()
        ax.annotate("", xy=u.position_m + n * (u.depth_m / 2 + 0.25), xytext=u.position_m + n * u.depth_m / 2,
                    arrowprops=dict(arrowstyle="->", color="0.4"))
        ax.text(*(np.array(u.position_m) - n * u.depth_m * 0.2), u.id, ha="center", va="center", fontsize=12, weight="bold", color="0.3")
        # bins of the bottom shelf along the front, coloured by how many cameras see the worst bin of that column
        cols: dict[int, int] = {}
        for b in store.bins.values():
            if b.unit.id == u.id:
                cols[b.index] = min(cols.get(b.index, 99), len(cov[b.id]))
        for j, k in cols.items():
            b = next(b for b in store.bins.values() if b.unit.id == u.id and b.index == j)
            p = b.centre_world()[:2] + n * (u.depth_m / 2 - 0.08)
            ax.scatter(*p, s=120, color=cmap.get(min(k, 3)), ec="k", zorder=3)
            ax.text(*p, str(k), ha="center", va="center", fontsize=7, zorder=4)
    for cam in store.cameras:
        pos = np.array(cam.position_m[:2])
        d = np.array(cam.look_at_m[:2]) - pos
        ax.scatter(*pos, marker="s", color="navy", zorder=5)
        if np.linalg.norm(d) > 1e-6:
            ax.annotate("", xy=pos + d / np.linalg.norm(d) * 0.6, xytext=pos, arrowprops=dict(arrowstyle="->", color="navy"))
        ax.text(pos[0] + 0.08, pos[1] + 0.08, cam.id, fontsize=7, color="navy")
    for g in store.gates:
        a, b = np.array(g.a_m), np.array(g.b_m)
        ax.plot([a[0], b[0]], [a[1], b[1]], lw=5, color="green" if g.kind == "entry" else "red")
        ax.text(*(a + b) / 2 + [0, 0.15], g.kind, ha="center", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(-0.5, store.floor.width_m + 0.5)
    ax.set_ylim(-0.5, store.floor.depth_m + 0.5)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    worst = min(len(v) for v in cov.values())
    ax.set_title(f"{store.name}: {len(store.bins)} bins, {len(store.cameras)} cameras; dots: cameras seeing the "
                 f"least-seen bin of each column (min {worst})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def weight_traces(run_dir: Path, path: Path, max_cells: int = 8) -> Path | None:
    """The recorded readings of the cells that true picks and put-backs touched, interactions shaded."""
    run_dir = Path(run_dir)
    its = [json.loads(line) for line in open(run_dir / "gt" / "interactions.jsonl")]
    from runtime.store import load_store

    store = load_store(run_dir / "store.yaml")
    cells = []
    for it in its:
        c = store.bins[it["bin"]].cell_id
        if c is not None and c not in cells:
            cells.append(c)
    cells = cells[:max_cells]
    if not cells:
        return None
    traces: dict[str, list[tuple[float, float]]] = {c: [] for c in cells}
    with open(run_dir / "streams" / "weights.csv") as f:
        for row in csv.DictReader(f):
            if row["cell_id"] in traces:
                traces[row["cell_id"]].append((float(row["t"]), float(row["grams"])))
    fig, axes = plt.subplots(len(cells), 1, figsize=(10, 1.8 * len(cells) + 0.6), sharex=True, squeeze=False)
    colours = {"pick": "tab:red", "put_back": "tab:green", "browse": "tab:blue"}
    for ax, c in zip(axes[:, 0], cells):
        tr = np.array(traces[c])
        ax.plot(tr[:, 0], tr[:, 1], lw=0.8, color="k")
        for it in its:
            if store.bins[it["bin"]].cell_id == c:
                ax.axvspan(it["t_start"], it["t_end"], color=colours[it["kind"]], alpha=0.3)
                ax.text(it["t_end"], ax.get_ylim()[1], f" {it['kind']} {it['sku'] or ''} ({it['account']})",
                        fontsize=7, va="top", color=colours[it["kind"]])
        ax.set_ylabel(f"{c}\ngrams", fontsize=8)
    axes[-1, 0].set_xlabel("t (s, store clock)")
    fig.suptitle("load cells touched by true interactions (shaded: reach start → item leaves/lands)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def tick_timeline(run_dir: Path, path: Path, t0: float, t1: float, perception_hz: float = 5.0,
                  jitter_s: float = 0.02) -> Path:
    """How the runtime's ticks gather unsynchronised cameras: each camera's frame stamps (from
    ``streams/<camera>.frames.csv``) between ``t0`` and ``t1``, the ticks with their windows, and
    the frame of each camera that each tick took (``runtime.ticks.TickBuilder`` run on the stamps)."""
    from runtime.store import load_store
    from runtime.ticks import FrameRef, TickBuilder

    run_dir = Path(run_dir)
    store = load_store(run_dir / "store.yaml")
    stamps: dict[str, list[tuple[int, float]]] = {}
    for cam in store.cameras:
        f = run_dir / "streams" / f"{cam.id}.frames.csv"
        if f.is_file():
            with open(f, newline="") as fh:
                stamps[cam.id] = [(int(r["seq"]), float(r["t"])) for r in csv.DictReader(fh)]
    refs = sorted((FrameRef(c, s, t) for c, rows in stamps.items() for s, t in rows), key=lambda r: r.t)
    builder = TickBuilder({c.id: c.fps for c in store.cameras}, perception_hz, jitter_s=jitter_s)
    chosen: set[tuple[str, int]] = set()
    ticks = []
    for ref in refs:
        ticks += builder.due(ref.t)
        builder.select(ref)
    ticks += builder.flush()
    for tick in ticks:
        chosen |= {(f.camera_id, f.seq) for f in tick.frames}
    cams = sorted(stamps)
    fig, ax = plt.subplots(figsize=(11, 0.35 * len(cams) + 1.4))
    for tick in ticks:
        if t0 - 0.1 <= tick.t <= t1 + 0.1:
            ax.axvspan(tick.t - builder.window_s, tick.t + builder.window_s, color="#cfe8f5", lw=0)
            ax.axvline(tick.t, color="#1e6fd9", lw=0.8)
    for y, c in enumerate(cams):
        rows = [(s, t) for s, t in stamps[c] if t0 <= t <= t1]
        ax.scatter([t for _, t in rows], [y] * len(rows), s=14, color="0.6", zorder=2)
        took = [t for s, t in rows if (c, s) in chosen]
        ax.scatter(took, [y] * len(took), s=34, color="#d62828", zorder=3)
    ax.set_yticks(range(len(cams)), cams, fontsize=8)
    ax.set_xlim(t0, t1)
    ax.set_xlabel("store clock, s (each frame at its camera's stamp)")
    ax.set_title(f"perception ticks at {perception_hz:g} Hz (blue; shaded: ± {builder.window_s * 1000:.0f} ms), "
                 "every frame (grey), the frame each tick took (red)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
