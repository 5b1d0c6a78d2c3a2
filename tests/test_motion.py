"""Motion gating: the person model skips a camera's frame only when nothing in it moved."""
from __future__ import annotations

import numpy as np
import pytest

from harness.paths import store_dir
from runtime.config import RuntimeConfig
from runtime.messages import Frame
from runtime.motion import MotionGate
from runtime.pipeline import Runtime
from runtime.store import load_store


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, (480, 640, 3), dtype=np.uint8)


def test_a_still_picture_keeps_the_last_detections_and_a_moved_block_does_not() -> None:
    gate = MotionGate(threshold=2.0, refresh_s=1.0)
    img = _frame()
    dets, sent = gate.still("cam", 0.0, img)
    assert dets is None and sent is not None              # nothing seen yet: the model runs
    gate.saw(sent, ["someone"])
    noisy = np.clip(img.astype(int) + np.random.default_rng(1).integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
    assert gate.still("cam", 0.2, noisy)[0] == ["someone"]   # compression-like noise averages out in a block
    arm = img.copy()
    arm[200:216, 300:340] = 255                            # a small bright arm in one 16-px row of blocks
    assert gate.still("cam", 0.4, arm)[0] is None
    assert gate.still("other", 0.4, img)[0] is None        # per camera
    assert gate.still("cam", 1.2, img)[0] is None          # refreshed after refresh_s, still or not
    assert (gate.skipped, gate.passed) == (1, 4)


def test_a_frame_whose_reference_is_still_with_the_model_waits_for_its_detections() -> None:
    gate = MotionGate(threshold=2.0, refresh_s=1.0)
    img = _frame()
    _, sent = gate.still("cam", 0.0, img)               # sent to the model, not back yet
    assert gate.still("cam", 0.2, img, flush=lambda: gate.saw(sent, ["her"]))[0] == ["her"]
    _, sent = gate.still("cam", 1.2, img)               # refresh: sent again
    assert gate.still("cam", 1.4, img, flush=lambda: None)[0] is None   # never came back: the model runs


def test_threshold_zero_sends_every_frame_to_the_model() -> None:
    gate = MotionGate(threshold=0.0, refresh_s=1.0)
    img = _frame()
    for t in (0.0, 0.2, 0.4):
        dets, sent = gate.still("cam", t, img)
        assert dets is None and sent is not None
        gate.saw(sent, [])
    assert gate.skipped == 0


def test_the_runtime_skips_the_model_on_still_frames_only() -> None:
    store = load_store(store_dir() / "tiny_unit.yaml")
    calls = []

    def detector(img):
        calls.append(img)
        return []

    cams = [c.id for c in store.cameras]
    still, moving = _frame(0), [_frame(s) for s in range(1, 40)]
    rt = Runtime(store, RuntimeConfig(motion_threshold=2.0), detector=detector)
    for k in range(10):                                    # 2 s at 5 frames a second
        for i, cam in enumerate(cams):
            img = still if i == 0 else moving[k]
            rt.process(Frame(cam, 0.2 * k + 0.001 * i, k, img))
    rt.finish()
    rt.close()
    frames = rt.stats["frames_processed"]
    # the still camera goes through the model once a second (refresh_s), the others every frame
    assert rt.stats["frames_still"] == rt.motion.skipped > 0
    assert len(calls) == frames - rt.stats["frames_still"]
    assert len([c for c in calls if c is still]) == 2


def test_bad_motion_settings_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="runtime.motion_threshold=-1"):
        RuntimeConfig(motion_threshold=-1)
