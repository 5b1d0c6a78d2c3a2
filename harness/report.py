"""Self-contained HTML reports: one per run (floor plane, carts, latency, errors, numbers) and one
per suite (scorecards side by side per sensing mode). Pictures are matplotlib PNGs embedded as
base64, so a report is a single file that can be mailed or archived."""
from __future__ import annotations

import base64
import io
import json
import os
from html import escape
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness.metrics import RunData, aggregate, fmt, load_run, outputs_dir, summary_row, table_cells  # noqa: E402

CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}tr.bad td{background:#fdd}tr.total td{font-weight:bold;background:#f4f4f4}
pre{background:#f6f6f6;padding:6px;font-size:12px;overflow-x:auto}h2{border-bottom:1px solid #ccc}"""


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None, left: int = 1,
           raw: bool = False) -> str:
    """An HTML table; the first ``left`` columns are left-aligned; cells escaped unless ``raw``."""
    def cell(j: int, v: str) -> str:
        return f'<td{" class=l" if j < left else ""}>{v if raw else escape(v)}</td>'

    out = ["<table>", "<tr>" + "".join(f'<th{" class=l" if j < left else ""}>{escape(h)}</th>'
                                       for j, h in enumerate(header)) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(cell(j, v) for j, v in enumerate(r)) + "</tr>")
    return "\n".join(out + ["</table>"])


def _page(title: str, body: list[str]) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n<h1>{escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")


def floor_figure(run: RunData) -> str:
    """Floor, shelf units and gates; true trajectories dashed, runtime tracks solid."""
    store = run.store
    W, D = store.floor.width_m, store.floor.depth_m
    fig, ax = plt.subplots(figsize=(9, 9 * D / W + 0.8))
    ax.add_patch(plt.Rectangle((0, 0), W, D, fill=False, lw=2, color="0.3"))
    for u in store.units:
        c = u.footprint_xy()
        ax.fill(c[:, 0], c[:, 1], color="0.85", ec="0.4")
        ax.text(*c.mean(axis=0), u.id, ha="center", va="center", fontsize=10, color="0.3")
    for g in store.gates:
        a, b = np.array(g.a_m), np.array(g.b_m)
        ax.plot([a[0], b[0]], [a[1], b[1]], lw=5, color="green" if g.kind == "entry" else "red")
        ax.text(*(a + b) / 2 + [0, 0.12], g.id, ha="center", fontsize=8)
    colours = plt.get_cmap("tab10")
    account_of = {int(s["index"]): s["account"] for s in run.shoppers}
    for s in range(run.gt_present.shape[1]):
        xy = np.where(run.gt_present[:, s, None], run.gt_xy[:, s], np.nan)
        if np.isnan(xy).all():
            continue
        ax.plot(xy[:, 0], xy[:, 1], "--", color=colours(s % 10), lw=1.5, label=f"true {s}: {account_of.get(s, '?')}")
    by_track: dict[int, list[dict]] = {}
    for r in run.track_rows:
        if not r.get("ended"):
            by_track.setdefault(int(r["track_id"]), []).append(r)
    for k, (tid, rows) in enumerate(sorted(by_track.items())):
        rows.sort(key=lambda r: r["t"])
        accounts = [r["account_id"] for r in rows if r.get("account_id")]
        acct = max(set(accounts), key=accounts.count) if accounts else "?"
        ax.plot([r["x"] for r in rows], [r["y"] for r in rows], "-", color=colours((k + 5) % 10), lw=1,
                alpha=0.8, label=f"track {tid} → {acct}")
    ax.set_aspect("equal")
    ax.set_xlim(-0.3, W + 0.3)
    ax.set_ylim(-0.3, D + 0.3)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title("floor: true trajectories dashed, runtime tracks solid", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def latency_figure(latency: dict[str, Any]) -> str:
    """Histograms of wall latency (ms) when measured, else of decision delay (stream s): to the
    first cart update and to the final one."""
    ms = [m["latency_ms"] for m in latency["interactions"] if m.get("latency_ms") is not None]
    key, label = ("latency_ms", "latency (ms, wall)") if ms else ("delay_s", "decision delay (s, stream)")
    final = [m[key] for m in latency["interactions"] if m.get(key) is not None]
    first = [m[f"first_{key}"] for m in latency["interactions"] if m.get(f"first_{key}") is not None]
    if not final:
        return "<p>No matched interactions.</p>"
    fig, ax = plt.subplots(figsize=(6, 3))
    bins = np.histogram_bin_edges(first + final, bins=min(30, max(5, len(final))))
    if first:
        ax.hist(first, bins=bins, color="orange", alpha=0.6, ec="white", label="first update")
    ax.hist(final, bins=bins, color="steelblue", alpha=0.6, ec="white", label="final update")
    ax.legend()
    ax.set_xlabel(label)
    ax.set_ylabel("interactions")
    return _png(fig)


def _carts_section(cart: dict[str, Any]) -> list[str]:
    out = ["<h2>Receipts vs true carts</h2>"]
    for a in cart["accounts"]:
        status = "exact" if a["exact"] else f"NOT exact: {a['reason']}"
        flag = f"; flagged: {a['flagged']}" if a.get("flagged") else ""
        visit = "" if a["visit"] else " (no such visit)"
        out.append(f"<h3>{escape(a['account'])}{escape(visit)}</h3><p>{escape(status + flag)}; charged "
                   f"{a['charged_total']:.2f}, true {a['true_total']:.2f}</p>")
        skus = sorted(a["true_items"].keys() | a["charged_items"].keys())
        rows = [[s, str(a["true_items"].get(s, 0)), str(a["charged_items"].get(s, 0))] for s in skus]
        classes = ["bad" if r[1] != r[2] else "" for r in rows]
        out.append(_table(["sku", "true qty", "charged qty"], rows, classes) if rows else "<p>empty cart, empty receipt</p>")
    return out


def _errors_section(run: RunData, cart: dict[str, Any]) -> list[str]:
    out = ["<h2>Errors</h2>"]
    n = 0
    for a in cart["accounts"]:
        for sku in sorted(a["true_items"].keys() | a["charged_items"].keys()):
            t, c = a["true_items"].get(sku, 0), a["charged_items"].get(sku, 0)
            if t == c:
                continue
            n += 1
            what = f"missed {t - c}" if t > c else f"charged {c - t} too many"
            out.append(f"<h3>{escape(a['account'])} / {escape(sku)}: {escape(what)} (true {t}, charged {c})</h3>")
            ups = [u for u in run.updates if u.get("account_id") == a["account"] and u["sku"] == sku]
            out.append(f"<p>cart updates ({len(ups)}):</p>")
            for u in ups:
                out.append("<pre>" + escape(json.dumps(u, indent=2, sort_keys=True, default=str)) + "</pre>")
            xs = [x for x in run.interactions if x["account"] == a["account"] and x["sku"] == sku]
            rows = [[x["kind"], str(x.get("shopper", "")), str(x.get("bin", "")), f"{x['t_start']:.2f}",
                     f"{x['t_end']:.2f}"] for x in xs]
            out.append(_table(["kind", "shopper", "bin", "t_start s", "t_end s"], rows, left=3) if rows
                       else "<p>no true interactions of this account and SKU</p>")
    if n == 0:
        out.append("<p>None: every unit charged correctly.</p>")
    return out


def _numbers_section(scorecard: dict[str, Any]) -> list[str]:
    rows: list[list[str]] = []
    for key in ("scenario", "sensing", "pacing", "stream_s", "wall_s", "real_time_factor"):
        if key in scorecard:
            v = scorecard[key]
            rows.append([key, fmt(v, ".3f") if isinstance(v, float) else fmt(v, "s")])
    for group in ("cart", "tracking", "latency"):
        for k, v in (scorecard.get(group) or {}).items():
            if isinstance(v, (list, dict)):
                continue
            rows.append([f"{group}.{k}", fmt(v, ".4g") if isinstance(v, float) else fmt(v, "s")])
    return ["<h2>Scorecard</h2>", _table(["metric", "value"], rows)]


def write_report(run_dir: Path, scorecard: dict[str, Any]) -> Path:
    """Write ``report.html`` for one scored run (beside its scorecard.json) and return its path."""
    run_dir = Path(run_dir)
    out_name = scorecard.get("out", "out")
    run = load_run(run_dir, out_name)
    s = summary_row(scorecard)
    head = (f"{s['exact']}/{s['visits']} exact receipts, item F1 {fmt(s['f1'], '.3f')}, MOTA {fmt(s['mota'], '.3f')}, "
            f"IDF1 {fmt(s['idf1'], '.3f')}, latency p95 {fmt(s.get('first_latency_p95_ms'), '.0f')} ms to the first "
            f"cart update, {fmt(s['latency_p95_ms'], '.0f')} ms to the final one")
    lat = scorecard["latency"]
    lat_rows = [[m["kind"], m["account"], m["sku"], f"{m['t_end_s']:.2f}", "yes" if m["matched"] else "NO",
                 fmt(m.get("first_delay_s"), ".3f"), fmt(m.get("delay_s"), ".3f"), fmt(m.get("first_latency_ms"), ".0f"),
                 fmt(m.get("latency_ms"), ".0f")] for m in lat["interactions"]]
    body = [f"<p>{escape(head)}</p>",
            "<h2>Floor plane</h2>", floor_figure(run),
            *_carts_section(scorecard["cart"]),
            "<h2>Latency</h2>", latency_figure(lat),
            _table(["kind", "account", "sku", "t_end s", "matched", "first delay s", "final delay s", "first ms", "final ms"], lat_rows,
                   ["" if r[4] == "yes" else "bad" for r in lat_rows], left=3),
            *_errors_section(run, scorecard["cart"]),
            *_numbers_section(scorecard)]
    path = outputs_dir(run_dir, out_name) / "report.html"
    path.write_text(_page(f"storetwin run: {scorecard.get('scenario', run_dir.name)} ({scorecard.get('sensing', '')})", body))
    return path


def write_suite_report(path: Path, scorecards: list[dict[str, Any]]) -> Path:
    """One HTML page for a suite: the scorecard table with a total row, a pivot of scenario ×
    sensing mode (exact, F1, MOTA, latency p95) and links to each run's report.html."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def link(sc: dict[str, Any], text: str) -> str:
        if not sc.get("run_dir"):
            return escape(text)
        href = os.path.relpath(outputs_dir(Path(sc["run_dir"]), sc.get("out", "out")) / "report.html", path.parent.resolve())
        return f'<a href="{escape(Path(href).as_posix())}">{escape(text)}</a>'

    cells = table_cells(scorecards)
    rows = [[escape(c) for c in r] + [link(sc, "report") if sc.get("run_dir") else ""]
            for r, sc in zip(cells[1:-1], scorecards)]
    rows.append([escape(c) for c in cells[-1]] + [""])
    main = _table(cells[0] + ["report"], rows, [""] * (len(rows) - 1) + ["total"], left=2, raw=True)

    scenarios = list(dict.fromkeys(str(sc.get("scenario")) for sc in scorecards))
    sensings = list(dict.fromkeys(str(sc.get("sensing")) for sc in scorecards))
    by_key = {(str(sc.get("scenario")), str(sc.get("sensing"))): sc for sc in scorecards}
    metrics = [("exact", None), ("F1", ("f1", ".3f")), ("MOTA", ("mota", ".3f")), ("lat p95 ms", ("latency_p95_ms", ".0f"))]
    head1 = "<tr><th class=l rowspan=2>scenario</th>" + "".join(
        f"<th colspan={len(metrics)}>{escape(m)}</th>" for m in sensings) + "</tr>"
    head2 = "<tr>" + "".join(f"<th>{escape(name)}</th>" for _ in sensings for name, _ in metrics) + "</tr>"
    body_rows = []
    for scen in scenarios + ["total"]:
        tds = [f"<td class=l>{escape(scen)}</td>"]
        for mode in sensings:
            if scen == "total":
                group = [sc for sc in scorecards if str(sc.get("sensing")) == mode]
                sc, r = None, aggregate(group)
            else:
                sc = by_key.get((scen, mode))
                r = summary_row(sc) if sc else None
            for name, spec in metrics:
                if r is None:
                    v = "–"
                elif spec is None:
                    txt = f"{r['exact']}/{r['visits']}"
                    v = link(sc, txt) if sc is not None else escape(txt)
                else:
                    v = escape(fmt(r[spec[0]], spec[1]))
                tds.append(f"<td>{v}</td>")
        body_rows.append(f"<tr{' class=total' if scen == 'total' else ''}>" + "".join(tds) + "</tr>")
    pivot = "<table>\n" + head1 + "\n" + head2 + "\n" + "\n".join(body_rows) + "\n</table>"
    body = ["<h2>Scenarios by sensing mode</h2>", pivot, "<h2>All runs</h2>", main]
    path.write_text(_page("storetwin suite scorecard", body))
    return path
