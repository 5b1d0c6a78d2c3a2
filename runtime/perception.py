"""Perception models on the edge box: people with 17 keypoints, products.

``load_model(path)`` gives a :class:`Detector` for any of the shipped formats:

- ``.onnx``: ONNX Runtime and numpy only (no torch on the edge box);
- an ``*_openvino_model/`` folder: OpenVINO's runtime, same pre- and post-processing;
- ``.pt``: Ultralytics on torch (the training format; handy on a workstation or a GPU box).

All of them take a BGR frame as the cameras give it and return :class:`Detection` in that frame's
pixels: a box, a score, a class and, for pose models, 17 COCO keypoints (u, v, confidence).

``load_person_model(path)`` is the runtime's person model: any Ultralytics pose model with COCO's
17 keypoints (the project's own, one trained on imported data, a plain ``yolov8n-pose.pt`` or a
YOLO11 / YOLO26 one and their exports), class 0 the person; anything else is refused with one line.
"""
from __future__ import annotations

import ast
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    box: np.ndarray                    # x0, y0, x1, y1 pixels
    score: float
    cls: int
    label: str
    keypoints: np.ndarray | None = None  # 17×3: u, v, confidence (pose models)


class Detector:
    """A detection or pose model; call it on a BGR frame."""

    task: str          # "detect" | "pose"
    names: dict[int, str]
    imgsz: tuple[int, int]
    kpt_shape: tuple[int, int] | None = None   # pose models: (keypoints, values each), as the model says
    overlapped = False  # True: frames given to submit run while the caller goes on (handed on by settled / wait)

    def __call__(self, bgr: np.ndarray) -> list[Detection]:
        raise NotImplementedError

    def submit(self, bgr: np.ndarray, done: Callable[[list[Detection]], None]) -> None:
        """Detect in ``bgr`` and hand the detections to ``done``: at once here; a detector that
        runs several frames at a time (:class:`OpenVinoDetector` with ``streams``) calls it from
        :meth:`wait`, in the order the frames came."""
        done(self(bgr))

    def hand_on(self, detections: list[Detection], done: Callable[[list[Detection]], None]) -> None:
        """Hand ``detections`` found without the model (a still frame's, see :mod:`runtime.motion`)
        to ``done`` in turn: after the frames submitted before them."""
        done(detections)

    def wait(self, upto: int | None = None) -> None:
        """Every frame submitted so far (or the first ``upto`` of :attr:`submitted`) has been handed on."""

    @property
    def submitted(self) -> int:
        """How many frames (and still frames' detections) have been given so far: a mark for :meth:`settled`."""
        return 0

    def settled(self, mark: int) -> bool:
        """Whether the first ``mark`` given have been handed on; hands on, in order, whatever is
        ready, without waiting. (Here everything is handed on as it is given.)"""
        return True


class _FunctionDetector(Detector):
    """Any ``bgr -> list[Detection]`` function as a :class:`Detector` (one frame at a time)."""

    def __init__(self, fn: Callable[[np.ndarray], list[Detection]]):
        self.fn = fn

    def __call__(self, bgr: np.ndarray) -> list[Detection]:
        return self.fn(bgr)


def as_detector(d: Detector | Callable[[np.ndarray], list[Detection]]) -> Detector:
    """``d`` itself, or a plain detection function made a :class:`Detector`."""
    return d if isinstance(d, Detector) else _FunctionDetector(d)


def _literal(v):
    return ast.literal_eval(v) if isinstance(v, str) else v


def letterbox(bgr: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping the aspect ratio and pad to ``size`` (h, w) with grey, as Ultralytics does."""
    h, w = bgr.shape[:2]
    r = min(size[0] / h, size[1] / w)
    nh, nw = round(h * r), round(w * r)
    img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else bgr
    top, left = (size[0] - nh) / 2, (size[1] - nw) / 2
    img = cv2.copyMakeBorder(img, round(top - 0.1), round(top + 0.1), round(left - 0.1), round(left + 0.1),
                             cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return img, r, (round(left - 0.1), round(top - 0.1))


def decode(pred: np.ndarray, task: str, names: dict[int, str], ratio: float, pad: tuple[float, float],
           shape: tuple[int, int], conf: float, iou: float, max_det: int = 300,
           suppressed: bool = False) -> list[Detection]:
    """YOLOv8 / YOLO11 head output (4 + classes [+ 17·3], N) → detections in the original frame.
    ``suppressed``: the output of an end-to-end model (YOLO26) or one exported with its NMS,
    (N, 6 [+ 17·3]) rows of x0, y0, x1, y1, score, class [, keypoints], already one per object."""
    if suppressed:
        p = pred[pred[:, 4] >= conf][:max_det]
        cls, score, kcol = p[:, 5].astype(int), p[:, 4], 6
        xywh = np.column_stack([p[:, :2], p[:, 2:4] - p[:, :2]])
        idx = np.arange(len(p))
    else:
        p = pred.T                                    # N × C
        nc = len(names)
        scores_all = p[:, 4:4 + nc]
        cls = scores_all.argmax(axis=1)
        score = scores_all[np.arange(len(p)), cls]
        keep = score >= conf
        p, cls, score, kcol = p[keep], cls[keep], score[keep], 4 + nc
        if not len(p):
            return []
        xywh = p[:, :4].copy()
        xywh[:, 0] -= xywh[:, 2] / 2
        xywh[:, 1] -= xywh[:, 3] / 2
        idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), score.tolist(), cls.tolist(), conf, iou)
        idx = np.array(idx, dtype=int).reshape(-1)[:max_det]
    h, w = shape
    out = []
    for i in idx:
        x, y, bw, bh = xywh[i]
        box = np.array([(x - pad[0]) / ratio, (y - pad[1]) / ratio, (x + bw - pad[0]) / ratio, (y + bh - pad[1]) / ratio])
        box = np.clip(box, 0, [w, h, w, h])
        kps = None
        if task == "pose":
            k = p[i, kcol:].reshape(-1, 3).copy()
            k[:, 0] = (k[:, 0] - pad[0]) / ratio
            k[:, 1] = (k[:, 1] - pad[1]) / ratio
            kps = k
        out.append(Detection(box, float(score[i]), int(cls[i]), names[int(cls[i])], kps))
    return out


class _ArrayDetector(Detector):
    """Shared pre- and post-processing for the runtimes that take an NCHW float array."""

    def __init__(self, task: str, names: dict[int, str], imgsz: tuple[int, int], conf: float, iou: float,
                 meta: dict | None = None):
        self.task, self.names, self.imgsz, self.conf, self.iou = task, names, imgsz, conf, iou
        meta = meta or {}
        self.kpt_shape = tuple(_literal(meta["kpt_shape"])) if meta.get("kpt_shape") else None
        # an end-to-end model (YOLO26) or one exported with its NMS gives one row per object
        try:
            args = _literal(meta.get("args") or {})
        except (ValueError, SyntaxError):     # export settings written as something other than a literal
            args = {}
        self.suppressed = str(meta.get("end2end", False)) == "True" or bool(isinstance(args, dict) and args.get("nms"))

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _prepare(self, bgr: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        img, r, pad = letterbox(bgr, self.imgsz)
        return np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0, r, pad

    def __call__(self, bgr: np.ndarray) -> list[Detection]:
        x, r, pad = self._prepare(bgr)
        return decode(self._run(x)[0], self.task, self.names, r, pad, bgr.shape[:2], self.conf, self.iou,
                      suppressed=self.suppressed)


class OnnxDetector(_ArrayDetector):
    def __init__(self, path: Path, conf: float = 0.25, iou: float = 0.5, threads: int = 0):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        names = {int(k): v for k, v in _literal(meta["names"]).items()}
        imgsz = tuple(_literal(meta["imgsz"]))
        super().__init__(meta.get("task", "detect"), names, imgsz, conf, iou, meta)
        self._input = self.session.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: x})[0]


class OpenVinoDetector(_ArrayDetector):
    """OpenVINO on the CPU. Frames given to :meth:`submit` are run while the caller goes on with
    other work, up to ``batch`` in one inference (a tick's cameras together: the network's weights
    are read once for all of them) and ``streams`` inferences at a time (OpenVINO's throughput
    mode, each stream on its own cores); the detections are handed on in the order the frames
    came, by :meth:`wait` at the latest. With ``streams=1, batch=1`` each frame is run as it comes.

    The model takes the letterboxed frame as it is (8-bit BGR, height × width × 3): the conversion
    to the network's float RGB planes is built into the compiled model (OpenVINO's
    PrePostProcessor), where it costs less than in numpy. A model exported with dynamic shapes
    (``storetwin train`` exports the person model so) is compiled for each camera shape it meets at
    the smallest input that holds the frame at the model's size, as Ultralytics predicts: a 640×480
    camera at 320 gives 320×256 instead of 320×320, a fifth fewer pixels through the network. A
    model of fixed shape takes every frame padded to that shape, one frame an inference."""

    MAX_SHAPES = 8     # inputs compiled for at most this many shapes; frames of any other take the model's size

    def __init__(self, folder: Path, conf: float = 0.25, iou: float = 0.5, streams: int = 1, batch: int = 1,
                 fit: bool = True):
        import openvino as ov
        import yaml

        self._xml = next(Path(folder).glob("*.xml"))
        meta = yaml.safe_load((Path(folder) / "metadata.yaml").read_text())
        self._core = ov.Core()
        shape = self._core.read_model(str(self._xml)).inputs[0].partial_shape
        self.dynamic = shape[2].is_dynamic or shape[3].is_dynamic
        self.stride = int(meta.get("stride", 32))
        self.streams = streams
        self.fit = fit          # False: every frame at the model's own size, as a fixed-shape export takes it
        self.batch = batch if shape[0].is_dynamic else 1
        self._compiled: dict[tuple[int, int, int], object] = {}   # (frames, h, w) → compiled model
        self._queues: dict[tuple[int, int, int], object] = {}     # and its queue of inferences
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}   # frame (h, w) → input (h, w)
        self._gathering: dict[tuple[int, int], tuple] = {}         # input (h, w) → the next batch's frames
        self._pending: deque = deque()   # (its batch's output, what hands the frame on), in the order given
        self._given = self._handed = 0
        super().__init__(meta.get("task", "detect"), {int(k): v for k, v in meta["names"].items()},
                         tuple(meta["imgsz"]), conf, iou, meta)

    @property
    def overlapped(self) -> bool:
        return self.streams > 1 or self.batch > 1

    def input_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """The network's input (h, w) for frames of ``frame_hw``."""
        size = self._sizes.get(frame_hw)
        if size is None:
            if not (self.dynamic and self.fit) or len(set(self._sizes.values())) >= self.MAX_SHAPES:
                size = self.imgsz
            else:
                h, w = frame_hw
                r = min(self.imgsz[0] / h, self.imgsz[1] / w)
                s = self.stride
                size = (-(-round(h * r) // s) * s, -(-round(w * r) // s) * s)
            self._sizes[frame_hw] = size
        return size

    def _model(self, n: int, size: tuple[int, int]):
        key = (n, *size)
        got = self._compiled.get(key)
        if got is None:
            import openvino as ov
            from openvino.preprocess import ColorFormat, PrePostProcessor

            model = self._core.read_model(str(self._xml))
            if self.dynamic or n > 1:
                model.reshape([n, 3, *size])
            ppp = PrePostProcessor(model)
            ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")) \
                .set_color_format(ColorFormat.BGR)
            ppp.input().model().set_layout(ov.Layout("NCHW"))
            ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
            model = ppp.build()
            if self.overlapped:
                got = self._core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT",
                                                              "NUM_STREAMS": str(self.streams)})
                queue = self._queues[key] = ov.AsyncInferQueue(got, self.streams)
                queue.set_callback(self._finished)
            else:
                got = self._core.compile_model(model, "CPU")
            self._compiled[key] = got
        return got

    def _prepare(self, bgr: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        img, r, pad = letterbox(bgr, self.input_size(bgr.shape[:2]))
        return np.ascontiguousarray(img)[None], r, pad     # 8-bit BGR: the model converts it

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._model(len(x), x.shape[1:3])(x)[0])

    @staticmethod
    def _finished(request, out: list) -> None:
        out[0] = np.array(request.get_output_tensor(0).data)   # a copy: the request is reused
        out[1].set()

    def submit(self, bgr: np.ndarray, done: Callable[[list[Detection]], None]) -> None:
        if not self.overlapped:
            self._given += 1
            self._handed += 1
            return super().submit(bgr, done)
        x, r, pad = self._prepare(bgr)
        size = x.shape[1:3]
        group = self._gathering.get(size)
        if group is None:   # the batch's frames, and its output once run (and an event that says so)
            group = self._gathering[size] = ([], [None, threading.Event()])
        xs, out = group
        i, shape = len(xs), bgr.shape[:2]
        xs.append(x)
        self._pending.append((out, lambda: done(decode(out[0][i], self.task, self.names, r, pad, shape,
                                                        self.conf, self.iou, suppressed=self.suppressed))))
        self._given += 1
        if len(xs) == self.batch:
            self._launch(size)

    def _launch(self, size: tuple[int, int]) -> None:
        xs, out = self._gathering.pop(size)
        self._model(len(xs), size)
        self._queues[(len(xs), *size)].start_async(xs[0] if len(xs) == 1 else np.concatenate(xs), out)

    def hand_on(self, detections: list[Detection], done: Callable[[list[Detection]], None]) -> None:
        if not self.overlapped or not self._pending:
            self._given += 1
            self._handed += 1
            return done(detections)
        self._pending.append((None, lambda: done(detections)))
        self._given += 1

    @property
    def submitted(self) -> int:
        return self._given

    def settled(self, mark: int) -> bool:
        while self._pending and (self._pending[0][0] is None or self._pending[0][0][0] is not None):
            self._hand_on_first()
        if self._handed >= mark:
            return True
        for size in list(self._gathering):   # what is waited for must be running
            self._launch(size)
        return False

    def _hand_on_first(self) -> None:
        _, hand_on = self._pending.popleft()
        self._handed += 1
        hand_on()

    def wait(self, upto: int | None = None) -> None:
        for size in list(self._gathering):
            self._launch(size)
        while self._pending and (upto is None or self._handed < upto):
            out = self._pending[0][0]
            if out is not None and out[0] is None:
                out[1].wait()
            self._hand_on_first()


class TorchDetector(Detector):
    def __init__(self, path: Path, conf: float = 0.25, iou: float = 0.5, imgsz: int | None = None):
        from ultralytics import YOLO

        self.model = YOLO(str(path))
        self.task = self.model.task
        self.names = dict(self.model.names)
        kpt = getattr(self.model.model, "kpt_shape", None)
        self.kpt_shape = tuple(kpt) if kpt else None
        a = self.model.ckpt.get("train_args", {}) if getattr(self.model, "ckpt", None) else {}
        s = imgsz or a.get("imgsz", 640)
        self.imgsz = (s, s)
        self.conf, self.iou = conf, iou

    def __call__(self, bgr: np.ndarray) -> list[Detection]:
        r = self.model.predict(bgr, imgsz=self.imgsz[0], conf=self.conf, iou=self.iou, verbose=False, device="cpu")[0]
        boxes = r.boxes.xyxy.cpu().numpy()
        cls = r.boxes.cls.cpu().numpy().astype(int)
        sc = r.boxes.conf.cpu().numpy()
        kps = r.keypoints.data.cpu().numpy() if self.task == "pose" and r.keypoints is not None else None
        return [Detection(b, float(s), int(c), self.names[int(c)], None if kps is None else kps[i])
                for i, (b, s, c) in enumerate(zip(boxes, sc, cls))]


def load_model(path: str | Path, conf: float = 0.25, iou: float = 0.5, streams: int = 1, batch: int = 1,
               fit: bool = True) -> Detector:
    """A detector for ``path``: ``.onnx``, an OpenVINO model folder (through :meth:`Detector.submit`,
    up to ``batch`` frames an inference, ``streams`` inferences at a time; with ``fit`` each frame at
    the smallest input that holds it, where the export allows), or an Ultralytics ``.pt``."""
    path = Path(path)
    if not path.exists():    # before Ultralytics sees the name: it would download a model it knows by name
        raise FileNotFoundError(f"{path}: no such model file")
    if path.is_dir() and any(path.glob("*.xml")):
        return OpenVinoDetector(path, conf, iou, streams, batch, fit)
    if path.suffix == ".onnx":
        return OnnxDetector(path, conf, iou)
    if path.suffix == ".pt":
        return TorchDetector(path, conf, iou)
    raise ValueError(f"{path}: expected a .onnx file, an OpenVINO model folder or an Ultralytics .pt")


def person_model(d: Detector, path: str | Path = "the person model") -> Detector:
    """``d`` checked as the runtime's person model: a pose model with COCO's 17 keypoints, each with a
    confidence (``kpt_shape`` [17, 3]). A model with no class named ``person`` (one built from an
    architecture file names its class ``0``) has class 0 taken as the person, as COCO's pose models
    have it. Anything else raises one ``ValueError`` line."""
    if d.task != "pose":
        raise ValueError(f"{path}: a {d.task} model; the person model must be an Ultralytics pose model with COCO's "
                         "17 keypoints (class 0 person)")
    if d.kpt_shape is None:
        raise ValueError(f"{path}: a pose model that does not say its keypoints (no kpt_shape in its metadata); "
                         "export it again with Ultralytics")
    if tuple(d.kpt_shape) != (17, 3):
        raise ValueError(f"{path}: a pose model with kpt_shape {list(d.kpt_shape)}; the person model needs COCO's "
                         "17 keypoints with a confidence each (kpt_shape [17, 3])")
    if "person" not in d.names.values():
        shown = ", ".join(list(d.names.values())[:3]) + (", …" if len(d.names) > 3 else "")
        log.warning("%s: no class named person (%d classes: %s): class 0 is taken as the person",
                    path, len(d.names), shown)
        d.names = {**d.names, 0: "person"}
    return d


def load_person_model(path: str | Path, conf: float = 0.25, iou: float = 0.5, streams: int = 1, batch: int = 1,
                      fit: bool = True) -> Detector:
    """:func:`load_model` for the runtime's person model, checked by :func:`person_model`."""
    return person_model(load_model(path, conf, iou, streams, batch, fit), path)

