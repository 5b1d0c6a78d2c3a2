"""The runtime's settings (runtime/config.py): overrides from mappings and YAML files, one-line errors
that name the key, model paths found next to the settings file, and the CLI's hydra defaults taken
from the same dataclasses."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.paths import home
from runtime.config import (RuntimeConfig, TrackingConfig, as_dict, config_from, load_runtime_config,
                            runtime_config_from)


# -- from a mapping ----------------------------------------------------------------------------------

def test_overrides_build_nested_settings() -> None:
    cfg = runtime_config_from({"perception_hz": 10, "tracking": {"cluster_m": 0.5, "min_hits": 2},
                               "hands": {"product_model": ""}})
    assert cfg.perception_hz == 10.0 and isinstance(cfg.perception_hz, float)   # an int is a number
    assert cfg.tracking.cluster_m == 0.5 and cfg.tracking.min_hits == 2
    assert cfg.hands.product_model == ""
    # everything not overridden keeps its default
    assert cfg.tracking == dataclasses.replace(TrackingConfig(), cluster_m=0.5, min_hits=2)
    assert cfg.weights == RuntimeConfig().weights
    assert cfg.sensing == "fused"
    assert runtime_config_from({}) == RuntimeConfig() == runtime_config_from(None)


@dataclasses.dataclass(frozen=True)
class _Lens:
    distortion: tuple[float, ...] = (0.0, 0.0)
    name: str | None = None


def test_lists_become_tuples_and_their_items_are_checked() -> None:
    lens = config_from(_Lens, {"distortion": [0.1, 0, -0.02]}, "lens.")
    assert lens.distortion == (0.1, 0.0, -0.02) and isinstance(lens.distortion, tuple)
    with pytest.raises(ValueError, match=r"^lens\.distortion\[1\]: expected a number, got 'x'$"):
        config_from(_Lens, {"distortion": [0.1, "x"]}, "lens.")
    assert config_from(_Lens, {"name": None}, "lens.").name is None
    with pytest.raises(ValueError, match=r"^lens\.name: expected a string or null, got 3$"):
        config_from(_Lens, {"name": 3}, "lens.")


def test_an_unknown_key_is_named_in_full() -> None:
    with pytest.raises(ValueError) as e:
        runtime_config_from({"tracking": {"clustr_m": 0.5}})
    assert str(e.value).startswith("runtime.tracking.clustr_m: not a setting")
    assert "cluster_m" in str(e.value)                 # the settings it could have meant
    with pytest.raises(ValueError, match=r"^runtime\.perceptoin_hz: "):
        runtime_config_from({"perceptoin_hz": 5})


@pytest.mark.parametrize("data, message", [
    ({"perception_hz": "fast"}, "runtime.perception_hz: expected a number, got 'fast'"),
    ({"perception_hz": True}, "runtime.perception_hz: expected a number, got True"),
    ({"tracking": {"min_hits": 2.5}}, "runtime.tracking.min_hits: expected an integer, got 2.5"),
    ({"pose_model": 7}, "runtime.pose_model: expected a string, got 7"),
    ({"tracking": 0.5}, "runtime.tracking: expected a mapping of settings, got float"),
])
def test_a_wrong_type_names_the_key_and_the_type(data: dict, message: str) -> None:
    with pytest.raises(ValueError) as e:
        runtime_config_from(data)
    assert str(e.value) == message


def test_checks_of_values_are_one_line_errors() -> None:
    with pytest.raises(ValueError) as e:
        runtime_config_from({"sensing": "eyes"})
    assert str(e.value).startswith("runtime.sensing='eyes': expected one of fused, vision_only, weight_only")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^runtime\.perception_hz=0"):
        runtime_config_from({"perception_hz": 0})
    # tick_window_s must stay below half the perception period: 0.5 / 10 = 0.05 s
    with pytest.raises(ValueError, match=r"^runtime\.tick_window_s=0\.05: "):
        runtime_config_from({"perception_hz": 10, "tick_window_s": 0.05})
    assert runtime_config_from({"perception_hz": 10, "tick_window_s": 0.04}).tick_window_s == 0.04


def test_as_dict_round_trips() -> None:
    assert runtime_config_from(as_dict(RuntimeConfig())) == RuntimeConfig()
    changed = runtime_config_from({"sensing": "weight_only", "identity": {"scan_radius_m": 2.0}})
    assert runtime_config_from(as_dict(changed)) == changed
    d = as_dict(RuntimeConfig())
    assert d["tracking"]["cluster_m"] == TrackingConfig().cluster_m and d["perception_hz"] == 5.0
    assert as_dict(_Lens(distortion=(1.0, 2.0))) == {"distortion": [1.0, 2.0], "name": None}


# -- from a file -------------------------------------------------------------------------------------

def test_load_a_file_with_or_without_a_runtime_key(tmp_path: Path) -> None:
    nested = tmp_path / "nested.yaml"
    nested.write_text("runtime:\n  perception_hz: 10\n  tracking:\n    cluster_m: 0.5\n")
    flat = tmp_path / "flat.yaml"
    flat.write_text("perception_hz: 10\ntracking:\n  cluster_m: 0.5\n")
    for path in (nested, flat):
        cfg = load_runtime_config(path)
        assert cfg.perception_hz == 10.0 and cfg.tracking.cluster_m == 0.5
        assert cfg.tracking.min_hits == TrackingConfig().min_hits
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing differs from the defaults\n")
    assert load_runtime_config(empty).perception_hz == RuntimeConfig().perception_hz


def test_file_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("runtime:\n  tracking:\n    clustr_m: 0.5\n")
    with pytest.raises(ValueError) as e:
        load_runtime_config(path)
    assert str(e.value).startswith(f"{path}: runtime.tracking.clustr_m: not a setting")
    path.write_text("runtime:\n  perception_hz: fast\n")
    with pytest.raises(ValueError) as e:
        load_runtime_config(path)
    assert str(e.value) == f"{path}: runtime.perception_hz: expected a number, got 'fast'"
    path.write_text("runtime: [unclosed\n")
    with pytest.raises(ValueError, match="not YAML"):
        load_runtime_config(path)
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_runtime_config(tmp_path / "nowhere.yaml")


def test_model_paths_are_found_next_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)       # the working folder has no models of its own
    box = tmp_path / "edge"
    (box / "models" / "pose_test_model").mkdir(parents=True)
    path = box / "settings.yaml"
    path.write_text("runtime:\n  pose_model: models/pose_test_model\n"
                    "  hands:\n    product_model: models/no_such_model\n")
    cfg = load_runtime_config(path)
    assert Path(cfg.pose_model) == box / "models" / "pose_test_model"
    assert cfg.hands.product_model == "models/no_such_model"     # found nowhere: left as written
    # an empty path means "no model" and stays empty
    path.write_text("hands:\n  product_model: ''\n")
    assert load_runtime_config(path).hands.product_model == ""


def test_the_shipped_example_finds_the_repo_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)       # from anywhere: the models are found from the file's folder's parents
    cfg = load_runtime_config(home() / "conf" / "runtime" / "example.yaml")
    for model in (cfg.pose_model, cfg.hands.product_model):
        assert Path(model).exists(), model
        assert Path(model).resolve().parent == (home() / "models").resolve()
    assert Path(cfg.pose_model).name == "person_pose_openvino_model"
    assert Path(cfg.hands.product_model).name == "products_openvino_model"


# -- the command line --------------------------------------------------------------------------------

def test_hydra_takes_the_runtime_defaults_from_the_dataclasses() -> None:
    from harness.cli import _compose

    cfg = _compose(["runtime.perception_hz=10"])
    assert cfg["runtime"]["perception_hz"] == 10
    expected = as_dict(RuntimeConfig())
    assert {k: v for k, v in cfg["runtime"].items() if k != "perception_hz"} == \
        {k: v for k, v in expected.items() if k != "perception_hz"}
    assert _compose([])["runtime"] == expected


def test_a_run_config_carries_the_runtime_overrides() -> None:
    from harness.cli import _compose
    from harness.run import run_config_from

    run = run_config_from(_compose(["runtime.perception_hz=10", "runtime.tracking.cluster_m=0.5"]))
    assert run.runtime.perception_hz == 10.0
    assert run.runtime.tracking.cluster_m == 0.5
    assert run.runtime.tracking.min_hits == TrackingConfig().min_hits


@pytest.mark.parametrize("override, named", [("runtime.nope=1", "nope"),
                                             ("runtime.perception_hz=fast", "runtime.perception_hz"),
                                             ("runtime.person_input=round", "runtime.person_input"),
                                             ("runtime.perception_batch=0", "runtime.perception_batch"),
                                             ("runtime.perception_lookahead_s=9", "runtime.perception_lookahead_s"),
                                             ("frames=some", "frames='some'")])
def test_a_bad_runtime_override_is_one_error_line(override: str, named: str, capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    assert main(["run", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
