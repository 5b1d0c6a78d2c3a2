"""The import directions of DESIGN.md hold (import-linter contracts in pyproject.toml)."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    res = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_runtime_imports_without_simulator_or_renderer():
    code = ("import sys, runtime.messages, runtime.store, runtime.geometry, runtime.recording; "
            "bad = [m for m in ('pybullet', 'pyrender', 'trimesh', 'sim', 'twin', 'harness') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
