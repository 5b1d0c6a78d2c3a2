"""The `storetwin` command: `storetwin <command> [key=value ...]` (hydra overrides)."""
from __future__ import annotations

import sys
from pathlib import Path

USAGE = """usage: storetwin <command> [key=value ...]

commands:
  simulate   run a scenario in the twin; writes streams/, gt/ and a contact sheet
             e.g. storetwin simulate scenario=busy_store sim.loadcell.noise_g=1.0
  coverage   how many cameras see each bin of a store
             e.g. storetwin coverage store=small_convenience out=plan.png
"""


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from harness.paths import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def cmd_simulate(overrides: list[str]) -> int:
    from harness.simulate import sim_config_from, simulate

    cfg = _compose(overrides)
    sim_config_from(cfg["sim"])  # fail before anything starts
    res = simulate(cfg["scenario"], sim_config_from(cfg["sim"]), out=cfg.get("out"),
                   record_video=cfg["video"]["record"], fourcc=cfg["video"]["fourcc"],
                   make_contact_sheet=cfg["contact_sheet"], resolved_config=cfg)
    print(f"run directory: {res.run_dir}")
    print(f"  simulated {res.sim_seconds:.1f} s in {res.wall_seconds:.1f} s wall "
          f"({res.sim_seconds / max(res.wall_seconds, 1e-9):.2f} sim s per wall s); "
          f"{res.counts['frames']} frames, {res.counts['weights']} weight samples, {res.counts['gates']} gate events")
    if res.contact_sheet:
        print(f"  contact sheet: {res.contact_sheet}")
    if (res.run_dir / "weights.png").exists():
        print(f"  load cells:    {res.run_dir / 'weights.png'}")
    return 0


def cmd_coverage(overrides: list[str]) -> int:
    from harness.paths import store_dir
    from runtime.geometry import coverage
    from runtime.store import load_store

    from harness.plots import floor_plan

    args = dict(o.split("=", 1) for o in overrides)
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


COMMANDS = {"simulate": cmd_simulate, "coverage": cmd_coverage}


def main(argv: list[str] | None = None) -> int:
    from runtime.store import SpecError

    argv = sys.argv[1:] if argv is None else argv
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
        if isinstance(e, (HydraException, OmegaConfBaseException, FileExistsError, ValueError)):
            print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
