"""`storetwin compare`: gate a candidate's scorecards against a baseline's.

Either side is what ``storetwin run`` wrote: a suite folder (its ``scorecard.json`` holds every
scenario), a run directory (``scorecard.json`` and, for an ablation, ``out-<mode>/scorecard.json``)
or a ``scorecard.json`` file. Every (scenario, sensing mode) of the baseline, and each mode's
total, is judged metric by metric; a metric that got worse by more than the gate allows is a
regression, and so is a scenario the candidate did not run. The command exits 1 on any regression.

The usual loop: run the suite once (the baseline), run it again on the very same streams with the
candidate model or settings (``storetwin run suite=default recorded=<baseline> runtime.… out=…``),
and compare the two.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.metrics import aggregate, fmt, summary_row


@dataclass(frozen=True)
class GateConfig:
    exact_rate_drop: float = 0.0       # any lost exact receipt is a regression
    f1_drop: float = 0.01
    charge_error_rise: float = 0.01    # money
    mota_drop: float = 0.02
    idf1_drop: float = 0.02
    hota_drop: float = 0.02
    id_switches_rise: int = 1
    latency_p95_rise_ms: float = 100.0


# metric, the gate field that bounds it, +1 when higher is better / −1 when lower is better
METRICS: tuple[tuple[str, str, int], ...] = (
    ("exact_rate", "exact_rate_drop", +1), ("f1", "f1_drop", +1), ("charge_error", "charge_error_rise", -1),
    ("mota", "mota_drop", +1), ("idf1", "idf1_drop", +1), ("hota", "hota_drop", +1), ("id_switches", "id_switches_rise", -1),
    ("latency_p95_ms", "latency_p95_rise_ms", -1),
)


@dataclass(frozen=True)
class Criterion:
    """One metric of one scenario and mode: what the baseline had, what the candidate has, how much
    worse it may get, and the verdict (``ok``, ``better``, ``regression``, ``missing``)."""

    scenario: str
    sensing: str
    metric: str
    baseline: float | None
    candidate: float | None
    allowed: float
    status: str


def load_scorecards(path: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every scorecard under ``path``, by (scenario, sensing mode)."""
    p = Path(path)
    files = [p] if p.is_file() else [p / "scorecard.json", *sorted(p.glob("out-*/scorecard.json"))]
    if not p.exists() or not files[0].is_file():
        raise FileNotFoundError(f"{p}: no scorecard.json (expected a suite folder, a run directory or a "
                                "scorecard.json written by storetwin run)")
    cards: list[dict] = []
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{f}: not a scorecard ({e})") from None
        found = data.get("scenarios", [data]) if isinstance(data, dict) else None
        if not isinstance(found, list) or not all(isinstance(c, dict) and "cart" in c for c in found):
            raise ValueError(f"{f}: not a scorecard (expected 'cart' per scenario, or a suite's 'scenarios')")
        cards += found
    return {(str(c.get("scenario")), str(c.get("sensing", "fused"))): c for c in cards}


def compare(baseline: dict[tuple[str, str], dict], candidate: dict[tuple[str, str], dict],
            gate: GateConfig = GateConfig()) -> list[Criterion]:
    """Judge every metric of every baseline scenario and mode, and each mode's pooled total."""
    rows: list[tuple[str, str, dict | None, dict | None]] = []
    for (scenario, mode), card in sorted(baseline.items()):
        other = candidate.get((scenario, mode))
        rows.append((scenario, mode, summary_row(card), summary_row(other) if other else None))
    for mode in sorted({m for _, m in baseline}):
        both = [k for k in baseline if k[1] == mode and k in candidate]
        if both:
            rows.append(("total", mode, aggregate([baseline[k] for k in both]), aggregate([candidate[k] for k in both])))
    out = []
    for scenario, mode, b, c in rows:
        for metric, limit, sign in METRICS:
            allowed = float(getattr(gate, limit))
            bv = b.get(metric) if b else None
            cv = c.get(metric) if c else None
            if c is None:
                status = "missing"
            elif bv is None or cv is None:
                status = "ok" if bv is None else "regression"   # a figure the candidate no longer has
            else:
                worse = (bv - cv) * sign
                status = "regression" if worse > allowed + 1e-9 else ("better" if worse < -1e-9 else "ok")
            out.append(Criterion(scenario, mode, metric, bv, cv, allowed, status))
    return out


def format_verdict(criteria: list[Criterion], show: str = "changed") -> str:
    """A table of the criteria (``changed``: those that moved; ``all``) and a closing line."""
    shown = [c for c in criteria if show == "all" or c.status != "ok"]
    head = ("scenario", "sensing", "metric", "baseline", "candidate", "allowed", "verdict")
    cells = [head] + [(c.scenario, c.sensing, c.metric, fmt(c.baseline, ".4g"), fmt(c.candidate, ".4g"),
                       f"{c.allowed:g}", c.status) for c in shown]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "-" * len(lines[0]))
    bad = [c for c in criteria if c.status in ("regression", "missing")]
    better = [c for c in criteria if c.status == "better"]
    runs = len({(c.scenario, c.sensing) for c in criteria if c.scenario != "total"})
    lines.append(f"{'REGRESSION' if bad else 'PASS'}: {runs} runs compared, {len(bad)} regressions, "
                 f"{len(better)} improvements")
    return "\n".join(lines) if shown else lines[-1]
