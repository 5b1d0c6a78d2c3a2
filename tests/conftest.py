import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
import os

os.environ.setdefault("YOLO_OFFLINE", "1")   # ultralytics: no update checks, no downloads


import json
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def recorded(tmp_path_factory) -> tuple[Path, list[dict]]:
    """tiny_pick simulated once, and the receipts of the runtime replaying it (``root/replay``)."""
    from harness.cli import main

    root = tmp_path_factory.mktemp("live")
    run = root / "tiny_pick"
    assert main(["simulate", f"scenario={HERE / 'scenarios' / 'tiny_pick.yaml'}", f"out={run}"]) == 0
    assert main(["run", "scenario=tiny_pick", f"recorded={run}", "pacing=asfast", f"out={root / 'replay'}"]) == 0
    receipts = [json.loads(x) for x in (root / "replay" / "out" / "receipts.jsonl").read_text().splitlines()]
    return run, receipts
