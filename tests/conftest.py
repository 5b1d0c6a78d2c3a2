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


@pytest.fixture(scope="session")
def put_backs(tmp_path_factory) -> Path:
    """tiny_put_backs simulated and run (fused, and weight_only in ``out-weight_only``) once."""
    from harness.run import RunConfig, run
    from runtime.config import RuntimeConfig

    out = tmp_path_factory.mktemp("rt") / "tiny_put_backs"
    cfg = RunConfig(scenario=str(HERE / "scenarios" / "tiny_put_backs.yaml"), pacing="asfast", out=str(out),
                    sensing=("fused", "weight_only"),
                    runtime=RuntimeConfig(pose_model=str(HERE.parent / "models" / "person_pose.onnx")))
    run(cfg, progress=False)
    return out
