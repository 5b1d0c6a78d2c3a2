"""Cameras like real ones (twin/camera_effects.py): deterministic for a seed, noise that grows with
the light, corners darker than the centre, white balance that tilts the channels, the codec's 8×8
blocks, nothing moved, and every effect off leaves the image as it was. Small synthetic images."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from twin.camera_effects import (GAMMA, CameraEffectsConfig, FrameEffects, apply, codec_available, draw_camera,
                                 draw_frame, kelvin_rgb, white_balance_gains)

H, W = 96, 128


def _scene(seed: int = 0) -> np.ndarray:
    """A rendered-looking image: smooth shading, a few flat boxes, values across the range."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([30 + 150 * x / W, 60 + 120 * y / H, 90 + 60 * (x + y) / (W + H)], axis=2)
    for _ in range(6):
        x0, y0 = rng.integers(0, W - 20), rng.integers(0, H - 20)
        img[y0:y0 + 20, x0:x0 + 20] = rng.integers(10, 250, 3)
    return img.astype(np.uint8)


def _linear(img: np.ndarray) -> np.ndarray:
    return (img.astype(float) / 255) ** GAMMA


def _blockiness(out: np.ndarray, ideal: np.ndarray) -> float:
    """How much of the error's jumps from pixel to pixel lie on the 8×8 block edges: the mean jump
    of ``out − ideal`` across block edges over the mean jump elsewhere (1: no blocks)."""
    e = out.astype(float).mean(axis=2) - ideal
    dx, dy = np.abs(np.diff(e, axis=1)), np.abs(np.diff(e, axis=0))
    ex, ey = (np.arange(dx.shape[1]) % 8) == 7, (np.arange(dy.shape[0]) % 8) == 7
    return (dx[:, ex].mean() + dy[ey].mean()) / max(dx[:, ~ex].mean() + dy[~ey].mean(), 1e-6)


def test_same_seed_same_image_other_seed_other_image():
    cfg = CameraEffectsConfig(codec="approx")
    img = _scene()

    def frame(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return apply(img, draw_frame(cfg, draw_camera(cfg, rng), rng))

    assert np.array_equal(frame(1), frame(1))
    assert not np.array_equal(frame(1), frame(2))


@pytest.mark.skipif(codec_available("h264") is not None, reason="PyAV with libx264 not installed")
def test_h264_round_trip_is_deterministic_and_keeps_the_picture():
    img = _scene()
    fx = FrameEffects(codec="h264", codec_qp=30)
    a, b = apply(img, fx), apply(img, fx)
    assert np.array_equal(a, b) and a.shape == img.shape
    assert 0 < np.abs(a.astype(int) - img).mean() < 6


def test_sensor_noise_grows_with_the_light():
    """Shot noise: in linear light its variance is the signal over the full well, so it grows with
    brightness (after the gamma of the picture the dark parts still look noisier: that is the read
    noise and the gamma's steep foot, as in a real camera's pictures)."""
    fw = 1000.0
    levels = [40, 90, 150, 210, 245]
    img = np.concatenate([np.full((64, 64, 3), v, np.uint8) for v in levels], axis=1)
    out = apply(img, FrameEffects(full_well_e=fw, read_noise_e=0.0, noise_seed=4))
    var = [(_linear(out[:, 64 * k:64 * (k + 1)])).var() for k in range(len(levels))]
    assert all(a < b for a, b in zip(var, var[1:])), var
    for v, level in zip(var[1:], levels[1:]):         # Poisson: variance = signal / full well
        signal = (level / 255) ** GAMMA
        assert 0.7 < v / (signal / fw) < 1.3, (level, v, signal / fw)


def test_read_noise_is_a_floor_in_the_dark():
    img = np.zeros((64, 64, 3), np.uint8)
    assert np.array_equal(apply(img, FrameEffects(full_well_e=1000.0, read_noise_e=0.0, noise_seed=1)), img)
    out = apply(img, FrameEffects(full_well_e=1000.0, read_noise_e=5.0, noise_seed=1))
    assert out.mean() > 1 and out.std() > 1


def test_vignetting_darkens_the_corners_not_the_centre():
    img = np.full((H, W, 3), 128, np.uint8)
    out = apply(img, FrameEffects(vignetting=0.3)).astype(float)
    c = out[H // 2 - 4:H // 2 + 4, W // 2 - 4:W // 2 + 4]
    assert np.abs(c - 128).max() <= 1
    corners = [out[:3, :3], out[:3, -3:], out[-3:, :3], out[-3:, -3:]]
    expected = 128 * 0.7 ** (1 / GAMMA)                  # 30% of the light lost, seen through the gamma
    for k in corners:
        assert abs(k.mean() - expected) < 2, (k.mean(), expected)
    edge_middle = out[H // 2, 0].mean()
    assert expected < edge_middle < 128


def test_white_balance_tilts_the_channels_and_exposure_scales_them():
    grey = np.full((32, 32, 3), 120, np.uint8)
    cool = apply(grey, FrameEffects(white_balance_k=4000.0)).reshape(-1, 3).mean(axis=0)    # B, G, R
    warm = apply(grey, FrameEffects(white_balance_k=9000.0)).reshape(-1, 3).mean(axis=0)
    assert cool[0] > cool[1] + 5 and cool[2] < cool[1] - 5           # balanced for a warm light: bluer
    assert warm[2] > warm[1] + 5 and warm[0] < warm[1] - 5           # for a cold one: warmer
    assert abs(cool[1] - 120) <= 1 and abs(warm[1] - 120) <= 1        # green is the reference
    assert np.allclose(white_balance_gains(6500.0), 1.0) and np.allclose(kelvin_rgb(6500.0), 1.0)
    r, g, b = kelvin_rgb(2700.0)
    assert r > g > b
    brighter = apply(grey, FrameEffects(exposure=1.5)).mean()
    assert abs(brighter - 120 * 1.5 ** (1 / GAMMA)) < 1.5


@pytest.mark.parametrize("codec", ["h264", "approx"])
def test_codec_leaves_8x8_blocks_on_a_gradient(codec: str):
    if codec_available(codec):
        pytest.skip(codec_available(codec))
    y, x = np.mgrid[0:H, 0:W]
    ideal = 40 + 170 * (x + 0.6 * y) / (W + 0.6 * H)
    grad = np.repeat(ideal[..., None], 3, axis=2).astype(np.uint8)
    assert abs(_blockiness(grad, ideal) - 1) < 0.1
    out = apply(grad, FrameEffects(codec=codec, codec_qp=44))
    assert _blockiness(out, ideal) > 1.5, _blockiness(out, ideal)
    assert np.abs(out.astype(int) - grad).mean() < 8       # blocky, still the same picture
    fine = apply(grad, FrameEffects(codec=codec, codec_qp=18))
    assert _blockiness(fine, ideal) < _blockiness(out, ideal)


ON = {"exposure": 1.3, "white_balance_k": 5000.0, "vignetting": 0.3, "full_well_e": 3000.0, "codec": "approx",
      "stream_scale": 0.6}


@pytest.mark.parametrize("name", sorted(ON))
def test_each_effect_changes_the_image_and_off_leaves_it(name: str):
    img = _scene(3)
    assert not np.array_equal(apply(img, FrameEffects(**{name: ON[name]}, noise_seed=2)), img)
    off = FrameEffects(**{k: v for k, v in ON.items() if k != name}, noise_seed=2)
    on = dataclasses.replace(off, **{name: ON[name]})
    assert not np.array_equal(apply(img, on), apply(img, off))
    assert np.array_equal(apply(img, FrameEffects()), img)


def test_everything_off_in_the_settings_draws_the_identity():
    cfg = CameraEffectsConfig.off()
    rng = np.random.default_rng(0)
    look = draw_camera(cfg, rng)
    img = _scene(1)
    last = None
    for _ in range(3):
        last = draw_frame(cfg, look, rng, last)
        assert np.array_equal(apply(img, last), img)


def test_nothing_moves():
    """Labels made from the ideal render stay right: a bright square's edges stay where they were
    under every effect, the codec's and a lower stream resolution's included."""
    img = np.full((H, W, 3), 40, np.uint8)
    img[30:60, 50:90] = 220
    fx = FrameEffects(exposure=1.2, white_balance_k=5500.0, vignetting=0.2, full_well_e=20000.0, read_noise_e=2.0,
                      codec="approx", codec_qp=30, stream_scale=0.7, noise_seed=3)
    out = apply(img, fx).astype(float).mean(axis=2)
    bright = out > (out.max() + out.min()) / 2
    ys, xs = np.nonzero(bright)
    assert abs(ys.min() - 30) <= 1 and abs(ys.max() - 59) <= 1 and abs(xs.min() - 50) <= 1 and abs(xs.max() - 89) <= 1


def test_drift_wanders_near_the_camera_s_own_values():
    cfg = CameraEffectsConfig(codec="none")
    rng = np.random.default_rng(5)
    look = draw_camera(cfg, rng)
    last, exp, wb = None, [], []
    for _ in range(300):
        last = draw_frame(cfg, look, rng, last)
        exp.append(np.log(last.exposure / look.exposure))
        wb.append(last.white_balance_k - look.white_balance_k)
    assert 0.015 < np.std(exp) < 0.06 and abs(np.mean(exp)) < 0.03
    assert 60 < np.std(wb) < 300
    assert abs(np.corrcoef(exp[:-1], exp[1:])[0, 1] - 0.9) < 0.1          # it drifts: frames follow each other


@pytest.mark.parametrize("bad,key", [({"vignetting": (0.5, 0.2)}, "vignetting"), ({"codec": "mpeg2"}, "codec"),
                                     ({"white_balance_k": (500.0, 6500.0)}, "white_balance_k"),
                                     ({"full_well_e": (0.0, 1000.0)}, "full_well_e"), ({"exposure_drift": -1}, "exposure_drift"),
                                     ({"codec_qp": (30, 60)}, "codec_qp")])
def test_bad_settings_name_the_key(bad: dict, key: str):
    with pytest.raises(ValueError, match=f"^{key}="):
        CameraEffectsConfig(**bad)


def _frames(effects: bool, until_s: float = 2.0):
    from harness.paths import store_dir
    from runtime.messages import Frame
    from sim.scenario import load_scenario
    from sim.simulator import CameraConfig, SimConfig, Simulator

    sc = load_scenario(Path(__file__).parent / "scenarios" / "tiny_pick.yaml", store_dir())
    sim = Simulator(sc.spec, sc, SimConfig(camera=CameraConfig(effects=effects), load_cells=False))
    frames = []
    try:
        for m in sim.run():
            if m.t > until_s:
                break
            if isinstance(m, Frame):
                frames.append(m)
        truth = {c: [fr.person_boxes.tolist() for fr in v.frames] for c, v in sim.truth.cameras.items()}
    finally:
        sim.close()
    return frames, truth


def test_the_simulator_gives_its_cameras_a_character_when_asked():
    """sim.camera.effects=true: the same frames at the same times with the same truth, other pixels
    (each camera its own look), and the same pixels on a second run of the scenario."""
    plain, truth0 = _frames(False)
    real, truth1 = _frames(True)
    again, _ = _frames(True)
    assert [(f.camera_id, f.seq, f.t) for f in plain] == [(f.camera_id, f.seq, f.t) for f in real]
    assert truth0 == truth1
    diff = [float(np.abs(a.image.astype(int) - b.image.astype(int)).mean()) for a, b in zip(plain, real)]
    assert min(diff) > 0.5
    assert all(np.array_equal(a.image, b.image) for a, b in zip(real, again))
    means = {}
    for f in real:
        means.setdefault(f.camera_id, []).append(f.image.reshape(-1, 3).mean(axis=0))
    looks = [np.mean(v, axis=0) for v in means.values()]
    assert len(looks) >= 2 and np.ptp(np.array(looks), axis=0).max() > 1.0   # cameras differ from each other
