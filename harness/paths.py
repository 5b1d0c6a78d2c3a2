"""Where the project's configs, stores and scenarios live (``STORETWIN_HOME`` overrides)."""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("STORETWIN_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[1]


def conf_dir() -> Path:
    return home() / "conf"


def store_dir() -> Path:
    return conf_dir() / "store"


def scenarios_dir() -> Path:
    return home() / "scenarios"


def scenario_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    return scenarios_dir() / f"{name_or_path}.yaml"
