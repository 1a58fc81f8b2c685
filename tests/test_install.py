"""A non-editable install runs the main job: build a wheel, install it into a fresh venv (system
site-packages for torch and friends), run `trm-bounds figures --quick --only` on an experiment job
from a directory outside the checkout, and check its outputs and manifest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_install_runs_an_experiment_job(tmp_path):
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)

    def run(*cmd, cwd=REPO):
        res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{cmd}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
        return res

    src = tmp_path / "src"  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(REPO / "trm_bounds", src / "trm_bounds", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip_wheel = ("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), ".")
    run(sys.executable, *pip_wheel, cwd=src)
    (wheel,) = wheels.glob("trm_bounds-*.whl")
    run(sys.executable, "-m", "venv", "--system-site-packages", str(venv))
    py = venv / "bin" / "python"
    run(str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel), cwd=work)
    where = run(str(py), "-c", "import trm_bounds; print(trm_bounds.__file__)", cwd=work).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where  # the wheel, not the checkout
    out = work / "o"
    cmd = [str(venv / "bin" / "trm-bounds"), "figures", "--quick", "--no-progress"]
    run(*cmd, "--only", "experiments/error_vs_horizon", "--out", str(out), cwd=work)
    manifest = json.loads((out / "manifest.json").read_text())
    paths = {e["path"] for e in manifest["outputs"]}
    assert {"error_vs_horizon.png", "error_vs_horizon.pdf", "error_vs_horizon.json"} <= paths
    assert {e["job"] for e in manifest["outputs"]} == {"experiments/error_vs_horizon"}
    for p in paths:
        assert (out / p).stat().st_size > 0, p
    bad = subprocess.run(
        [*cmd, "--only", "nope", "--out", str(work / "x")], cwd=work, env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "experiments/train_figures" in bad.stderr and not (work / "x").exists()
