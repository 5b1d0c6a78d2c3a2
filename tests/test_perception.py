"""The person model on the edge box (runtime/perception.py): each camera's frame through the
shipped OpenVINO model at the smallest input that holds it, converted inside the model."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.paths import store_dir
from runtime.messages import Frame
from runtime.perception import OpenVinoDetector, letterbox, load_model
from sim.scenario import load_scenario
from sim.simulator import CameraConfig, SimConfig, Simulator

HERE = Path(__file__).parent
MODEL = HERE.parent / "models" / "person_pose_openvino_model"
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """The tiny store's cameras while its shopper takes two colas (frames with a person in them)."""
    sc = load_scenario(HERE / "scenarios" / "tiny_pick.yaml", store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(max_duration_s=8.0, camera=CameraConfig(truth=False)))
    try:
        got = [m.image for m in sim.run() if isinstance(m, Frame) and m.seq % 10 == 0 and m.t >= 3.0]
    finally:
        sim.close()
    return got


def test_each_camera_shape_gets_the_smallest_input_that_holds_it() -> None:
    d = load_model(MODEL)
    assert isinstance(d, OpenVinoDetector) and d.dynamic and d.imgsz == (320, 320)
    assert d.input_size((480, 640)) == (256, 320)       # 320 × 240, padded to the stride
    assert d.input_size((720, 1280)) == (192, 320)
    assert d.input_size((640, 480)) == (320, 256)
    assert d.input_size((320, 320)) == (320, 320)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_the_smaller_input_finds_the_people_the_square_one_does(frames: list[np.ndarray]) -> None:
    """Every clear person (score ≥ 0.5) either input finds, the other finds too, in the same place."""
    rect = load_model(MODEL, conf=0.2)
    square = load_model(MODEL, conf=0.2, fit=False)     # every frame at the model's own 320 × 320 (person_input=square)
    assert square.input_size((480, 640)) == (320, 320)
    clear = 0
    for img in frames:
        a, b = rect(img), square(img)
        for mine, theirs in ((a, b), (b, a)):
            for d in (d for d in mine if d.score >= 0.5):
                clear += 1
                best = max(theirs, key=lambda e: _iou(d.box, e.box), default=None)
                assert best is not None and _iou(d.box, best.box) > 0.8 and abs(d.score - best.score) < 0.15
                wrists = d.keypoints[[9, 10], :2] - best.keypoints[[9, 10], :2]
                assert np.abs(wrists).max() < 10.0
    assert clear >= len(frames)


def test_the_conversion_inside_the_model_is_numpys(frames: list[np.ndarray]) -> None:
    """8-bit BGR in, converted by the compiled model, against float RGB planes made in numpy."""
    import openvino as ov

    d = load_model(MODEL)
    img, _, _ = letterbox(frames[0], d.input_size(frames[0].shape[:2]))
    model = ov.Core().read_model(str(next(MODEL.glob("*.xml"))))
    model.reshape([1, 3, *img.shape[:2]])
    plain = ov.Core().compile_model(model, "CPU")
    x = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    want = np.asarray(plain(x)[0])
    got = d._run(np.ascontiguousarray(img)[None])
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-2 * np.abs(want).max()


def test_a_fixed_shape_model_takes_every_frame_padded_to_its_shape(tmp_path: Path, frames: list[np.ndarray]) -> None:
    """A model exported with a fixed input (as the INT8 one is) still loads and runs."""
    folder = HERE.parent / "models" / "person_pose_int8_openvino_model"
    d = load_model(folder)
    assert not d.dynamic and d.input_size((480, 640)) == d.imgsz
    assert isinstance(d(frames[0]), list)


def test_frames_six_to_an_inference_give_each_frame_its_own_detections(frames: list[np.ndarray]) -> None:
    """Submitted frames are run six at a time (a partial batch when waited for) and handed on in
    the order they came, each with the detections it gets alone."""
    one = load_model(MODEL, conf=0.3)
    together = load_model(MODEL, conf=0.3, streams=2, batch=6)
    got: list[tuple[int, list]] = []
    for i, img in enumerate(frames[:9]):                 # one batch of six and one of three
        together.submit(img, lambda dets, i=i: got.append((i, dets)))
    together.wait()
    assert [i for i, _ in got] == list(range(min(9, len(frames))))
    for (i, dets) in got:
        alone = one(frames[i])
        assert len(dets) == len(alone)
        for a, b in zip(dets, alone):
            assert np.abs(a.box - b.box).max() < 0.5 and np.abs(a.keypoints - b.keypoints).max() < 0.5
