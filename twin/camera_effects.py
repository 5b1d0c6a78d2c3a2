"""Cameras like real ones, as effects on a rendered image.

The renderer draws what an ideal camera would see. A store's cameras differ from it, and from
each other: each has its own exposure and white balance (and both wander a little from frame to
frame), its lens darkens the corners, its sensor adds noise that grows with the light it counts
(shot noise) on top of a floor of read noise, and its picture reaches the store's computer as an
H.264 stream, blocky and blurred where the bitrate is short. This module makes those effects.

They work in linear light, as a sensor does: the rendered image is decoded with the renderer's own
gamma (pyrender ends its shader with ``colour^(1/2.2)``), vignetting, exposure and white balance
multiply it, shot and read noise are added (Poisson-Gaussian: variance ``x / full_well_e +
(read_noise_e / full_well_e)²`` for a linear value ``x`` in 0..1), and it is encoded back with the
same gamma. The codec step then sends it through an H.264 encoder and decoder (libx264 and
FFmpeg's decoder, through PyAV) at a drawn quantiser, optionally at a lower stream resolution.
Every effect is photometric: no pixel moves, so labels made from the ideal render stay exact.

Pure numpy and OpenCV (PyAV for the real codec), deterministic for a given ``rng``, with no state
of its own: a camera's character is drawn once (:func:`draw_camera`), each frame's effects from it
(:func:`draw_frame`, drifting from the camera's previous frame), and :func:`apply` does the work.
"""
from __future__ import annotations

import dataclasses
import fractions
import math
from dataclasses import dataclass

import cv2
import numpy as np

REFERENCE_K = 6500.0          # the renderer's white light: a camera balanced for it changes nothing
GAMMA = 2.2                   # the renderer's (pyrender's shader) encoding
CODECS = ("h264", "approx", "none")
DRIFT_KEEP = 0.9              # frame-to-frame drift is an AR(1): this much of the last frame's offset stays


# -- colour temperature ---------------------------------------------------------------------------
_XYZ_TO_LINEAR_SRGB = np.array([[3.2406, -1.5372, -0.4986],
                                [-0.9689, 1.8758, 0.0415],
                                [0.0557, -0.2040, 1.0570]])


def _planck_xy(kelvin: float) -> tuple[float, float]:
    """CIE 1931 chromaticity of a black body (Kim et al.'s cubic fit to the Planckian locus)."""
    t = float(kelvin)
    if t <= 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return x, y


def kelvin_rgb(kelvin: float) -> np.ndarray:
    """Linear-light RGB of a black body at ``kelvin`` (1667–25000 K), relative to one at
    :data:`REFERENCE_K` (which is therefore (1, 1, 1)), scaled so that its largest channel is 1."""
    if not 1667 <= kelvin <= 25000:
        raise ValueError(f"colour temperature {kelvin!r} K: expected 1667–25000 K")

    def rgb(t: float) -> np.ndarray:
        x, y = _planck_xy(t)
        return _XYZ_TO_LINEAR_SRGB @ np.array([x / y, 1.0, (1 - x - y) / y])

    c = rgb(kelvin) / rgb(REFERENCE_K)
    return c / c.max()


def white_balance_gains(kelvin: float) -> np.ndarray:
    """Per-channel gains (R, G, B; green = 1) of a camera that balances its white for a light of
    ``kelvin`` while the scene is lit at :data:`REFERENCE_K`: below it the picture turns bluer,
    above it warmer."""
    w = kelvin_rgb(kelvin)
    return w[1] / w


# -- settings and draws ---------------------------------------------------------------------------
def _check_range(name: str, r, lo: float, hi: float, unit: str = "") -> None:
    r = tuple(r)
    if len(r) != 2 or not all(isinstance(v, (int, float)) for v in r) or not lo <= r[0] <= r[1] <= hi:
        raise ValueError(f"{name}={list(r)!r}: expected [low, high] with {lo:g} ≤ low ≤ high ≤ {hi:g}{unit}")


@dataclass(frozen=True)
class CameraEffectsConfig:
    """How a camera's character is drawn (ranges drawn uniformly, once per camera) and how much it
    drifts from frame to frame. Each effect has an off value, given with its field."""

    exposure: tuple[float, float] = (0.75, 1.3)
    """Gain on linear light (exposure time × analogue gain), drawn log-uniformly; [1, 1]: off."""
    exposure_drift: float = 0.03
    """Frame-to-frame wander of the exposure: std of its log; 0: off."""
    white_balance_k: tuple[float, float] = (4500.0, 8000.0)
    """The colour temperature the camera balances its white for (the scene's white is 6500 K);
    [6500, 6500]: off."""
    white_balance_drift_k: float = 150.0
    """Frame-to-frame wander of the white balance, std in kelvin; 0: off."""
    vignetting: tuple[float, float] = (0.0, 0.35)
    """Share of the light lost in the image's corners (falling off with the squared radius); [0, 0]: off."""
    full_well_e: tuple[float, float] = (3000.0, 30000.0)
    """Photo-electrons a pixel counts at white, drawn log-uniformly: fewer means more shot noise
    (std √(x·full_well)/full_well); [0, 0]: no sensor noise at all."""
    read_noise_e: tuple[float, float] = (1.0, 6.0)
    """Read noise in electrons (std), the noise floor in the dark; [0, 0]: off."""
    codec: str = "h264"
    """h264: a real encoder round trip (libx264 key frame, FFmpeg's decoder; needs PyAV);
    approx: a stand-in (the stream scale's blur, then JPEG's 8×8 DCT quantisation at a quality from
    codec_qp: qp 20 → 90 … qp 45 → 20); none: off."""
    codec_qp: tuple[int, int] = (22, 38)
    """H.264 quantiser, drawn per frame (higher: fewer bits, more blocking and blur)."""
    stream_scale: tuple[float, float] = (0.7, 1.0)
    """The stream's resolution as a share of the image's, drawn per camera (a substream scaled back
    up: blur); [1, 1]: off."""

    def __post_init__(self) -> None:
        _check_range("exposure", self.exposure, 0.05, 20.0)
        if self.exposure[0] <= 0:
            raise ValueError(f"exposure={list(self.exposure)!r}: expected gains > 0")
        _check_range("white_balance_k", self.white_balance_k, 1667.0, 25000.0, " K")
        _check_range("vignetting", self.vignetting, 0.0, 0.95)
        _check_range("full_well_e", self.full_well_e, 0.0, 1e7, " electrons")
        if self.full_well_e[0] == 0 < self.full_well_e[1]:
            raise ValueError(f"full_well_e={list(self.full_well_e)!r}: expected both > 0 (drawn "
                             "log-uniformly), or [0, 0] for no sensor noise")
        _check_range("read_noise_e", self.read_noise_e, 0.0, 1e4, " electrons")
        _check_range("codec_qp", self.codec_qp, 0, 51)
        _check_range("stream_scale", self.stream_scale, 0.1, 1.0)
        for name, top in (("exposure_drift", 1.0), ("white_balance_drift_k", 5000.0)):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= top:
                raise ValueError(f"{name}={v!r}: expected a number in [0, {top:g}]")
        if self.codec not in CODECS:
            raise ValueError(f"codec={self.codec!r}: expected one of {', '.join(CODECS)}")

    @staticmethod
    def off() -> "CameraEffectsConfig":
        """Every effect off: :func:`apply` returns the image unchanged."""
        return CameraEffectsConfig(exposure=(1.0, 1.0), exposure_drift=0.0, white_balance_k=(REFERENCE_K, REFERENCE_K),
                                   white_balance_drift_k=0.0, vignetting=(0.0, 0.0), full_well_e=(0.0, 0.0),
                                   read_noise_e=(0.0, 0.0), codec="none", stream_scale=(1.0, 1.0))


@dataclass(frozen=True)
class CameraLook:
    """One camera's character, drawn once: what its frames wander around."""

    exposure: float
    white_balance_k: float
    vignetting: float
    full_well_e: float
    read_noise_e: float
    stream_scale: float


@dataclass(frozen=True)
class FrameEffects:
    """The effects applied to one frame (all plain numbers, so a dataset can record them)."""

    exposure: float = 1.0
    white_balance_k: float = REFERENCE_K
    vignetting: float = 0.0
    full_well_e: float = 0.0         # 0: no sensor noise
    read_noise_e: float = 0.0
    codec: str = "none"
    codec_qp: int = 28
    stream_scale: float = 1.0
    noise_seed: int = 0

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def _log_uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    lo, hi = float(r[0]), float(r[1])
    return lo if lo == hi else float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(r[0]) if r[0] == r[1] else float(rng.uniform(r[0], r[1]))


def draw_camera(cfg: CameraEffectsConfig, rng: np.random.Generator) -> CameraLook:
    """One camera's character. A range whose ends are equal draws nothing from ``rng``."""
    fw = 0.0 if cfg.full_well_e[1] == 0 else _log_uniform(rng, cfg.full_well_e)
    return CameraLook(exposure=_log_uniform(rng, cfg.exposure), white_balance_k=_uniform(rng, cfg.white_balance_k),
                      vignetting=_uniform(rng, cfg.vignetting), full_well_e=fw,
                      read_noise_e=_uniform(rng, cfg.read_noise_e), stream_scale=_uniform(rng, cfg.stream_scale))


def draw_frame(cfg: CameraEffectsConfig, look: CameraLook, rng: np.random.Generator,
               last: FrameEffects | None = None) -> FrameEffects:
    """One frame's effects: the camera's look, its exposure and white balance drifted from the
    camera's ``last`` frame (an AR(1) around the look, so they wander but stay near it)."""
    keep = DRIFT_KEEP if last is not None else 0.0
    step = math.sqrt(1 - keep ** 2)
    log_e0 = math.log(look.exposure)
    log_e = log_e0 + keep * ((math.log(last.exposure) - log_e0) if last else 0.0)
    if cfg.exposure_drift > 0:
        log_e += float(rng.normal(0.0, cfg.exposure_drift)) * step
    wb = look.white_balance_k + keep * ((last.white_balance_k - look.white_balance_k) if last else 0.0)
    if cfg.white_balance_drift_k > 0:
        wb += float(rng.normal(0.0, cfg.white_balance_drift_k)) * step
    qp = int(rng.integers(cfg.codec_qp[0], cfg.codec_qp[1] + 1)) if cfg.codec != "none" else cfg.codec_qp[0]
    seed = int(rng.integers(2 ** 31)) if look.full_well_e > 0 else 0
    return FrameEffects(exposure=math.exp(log_e), white_balance_k=float(np.clip(wb, 1667.0, 25000.0)),
                        vignetting=look.vignetting, full_well_e=look.full_well_e, read_noise_e=look.read_noise_e,
                        codec=cfg.codec, codec_qp=qp, stream_scale=look.stream_scale, noise_seed=seed)


# -- the effects ----------------------------------------------------------------------------------
_DECODE = ((np.arange(256) / 255.0) ** GAMMA).astype(np.float32)                     # byte → linear
_ENCODE_STEPS = 1 << 16                                                              # over √linear: fine in the dark
_ENCODE = np.clip(np.rint(((np.arange(_ENCODE_STEPS) / (_ENCODE_STEPS - 1)) ** 2) ** (1 / GAMMA) * 255), 0, 255).astype(np.uint8)


def _vignette(h: int, w: int, strength: float) -> np.ndarray:
    """H×W gain: 1 at the centre, 1 − strength in the corners, falling with the squared radius."""
    y = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / ((h - 1) / 2 or 1)
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / ((w - 1) / 2 or 1)
    r2 = (y[:, None] ** 2 + x[None, :] ** 2) / 2.0
    return 1.0 - np.float32(strength) * r2


def _photometric(bgr: np.ndarray, fx: FrameEffects) -> np.ndarray:
    """Vignetting, exposure, white balance and sensor noise, in linear light; a byte image back.
    Unchanged pixels come back as they were (the encoding's steps are finer than a byte's)."""
    h, w = bgr.shape[:2]
    lin = cv2.LUT(bgr, _DECODE.reshape(1, 256))                              # H×W×3 float32
    gains = np.float32(fx.exposure) * white_balance_gains(fx.white_balance_k)[::-1].astype(np.float32)   # B, G, R
    if fx.vignetting > 0:
        lin *= _vignette(h, w, fx.vignetting)[..., None] * gains
    elif not np.allclose(gains, 1.0):
        lin *= gains
    if fx.full_well_e > 0:
        np.clip(lin, 0.0, 1.0, out=lin)                                      # the pixel is full
        sd = lin * np.float32(1.0 / fx.full_well_e) + np.float32((fx.read_noise_e / fx.full_well_e) ** 2)
        np.sqrt(sd, out=sd)
        noise = np.empty(lin.shape, np.float32)
        cv2.setRNGSeed(fx.noise_seed)
        cv2.randn(noise.reshape(-1), 0.0, 1.0)   # OpenCV's generator, fast; one channel (a scalar std
                                                  # for a 3-channel array would fill only the first)
        noise *= sd
        lin += noise
    np.clip(lin, 0.0, 1.0, out=lin)
    np.sqrt(lin, out=lin)
    lin *= np.float32(_ENCODE_STEPS - 1)
    lin += np.float32(0.5)
    return _ENCODE[lin.astype(np.uint16)]


def _h264_round_trip(bgr: np.ndarray, qp: int) -> np.ndarray:
    """One frame through libx264 (a key frame at quantiser ``qp``, one thread: deterministic) and
    FFmpeg's H.264 decoder. Colour goes to 4:2:0 YUV and back with OpenCV (BT.601), as a camera's
    stream carries it."""
    import av

    h, w = bgr.shape[:2]
    ph, pw = h + h % 2, w + w % 2               # 4:2:0 needs even sizes
    img = cv2.copyMakeBorder(bgr, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE) if (ph, pw) != (h, w) else bgr
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
    enc.time_base = fractions.Fraction(1, 10)
    enc.thread_count = 1
    enc.options = {"preset": "veryfast", "tune": "zerolatency", "qp": str(int(qp)), "threads": "1"}
    frame = av.VideoFrame.from_ndarray(cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2YUV_I420), format="yuv420p")
    packets = [*enc.encode(frame), *enc.encode(None)]
    dec = av.CodecContext.create("h264", "r")
    dec.thread_count = 1
    frames = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    if len(frames) != 1:
        raise RuntimeError(f"H.264 round trip: {len(frames)} frames decoded from one")
    out = cv2.cvtColor(frames[0].to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    return out[:h, :w]


def _approx_round_trip(bgr: np.ndarray, qp: int) -> np.ndarray:
    """Not a codec: JPEG's 8×8 DCT quantisation at a quality that falls as ``qp`` rises (qp 20 → 90,
    qp 45 → 20), the block artefacts of a short bitrate without H.264's prediction and deblocking."""
    q = int(round(np.interp(qp, [20, 45], [90, 20])))
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _stream(bgr: np.ndarray, fx: FrameEffects) -> np.ndarray:
    """The picture as the stream carries it: at the stream's resolution, through the codec, and
    scaled back to the image's size (blur)."""
    h, w = bgr.shape[:2]
    img = bgr
    small = fx.stream_scale < 1.0
    if small:
        sw, sh = max(16, int(round(w * fx.stream_scale / 2)) * 2), max(16, int(round(h * fx.stream_scale / 2)) * 2)
        img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    if fx.codec == "h264":
        img = _h264_round_trip(img, fx.codec_qp)
    elif fx.codec == "approx":
        img = _approx_round_trip(img, fx.codec_qp)
    if small:
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    return img


def apply(bgr: np.ndarray, fx: FrameEffects) -> np.ndarray:
    """``bgr`` (H×W×3 uint8) as the camera ``fx`` describes would give it; a new array. With every
    effect off (``FrameEffects()``) the pixels are the same."""
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"an image of {bgr.dtype} {bgr.shape}: expected H×W×3 uint8")
    photometric = (fx.exposure != 1.0 or fx.white_balance_k != REFERENCE_K or fx.vignetting > 0 or fx.full_well_e > 0)
    img = _photometric(bgr, fx) if photometric else bgr.copy()
    if fx.codec != "none" or fx.stream_scale < 1.0:
        img = _stream(img, fx)
    return img


def codec_available(codec: str) -> str | None:
    """None when ``codec`` can run here, else why not (one line)."""
    if codec != "h264":
        return None
    try:
        import av

        av.codec.Codec("libx264", "w")
    except Exception as e:   # PyAV missing, or built without libx264
        return f"the h264 codec needs PyAV with libx264 (pip install av; `make` installs it): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None
