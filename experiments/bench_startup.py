"""Benchmark: start-up time of `trm-bounds bounds`, a numpy formula, against `python -c pass`.

Measures, in one run, on this checkout (PYTHONPATH points at it, so an editable install
elsewhere does not stand in for it), the wall-clock seconds of whole processes:
- ``python -c pass`` (the interpreter alone: the floor);
- ``python -m trm_bounds bounds --T 4096 --delta 1e-4 --json``;
- ``trm-bounds bounds ...`` (the console script), if one is on PATH;
each run `--repeats` times after one warm-up, and the heavy libraries (torch, sympy,
matplotlib, scipy) that `bounds` imported, from ``python -X importtime``, with their
cumulative import seconds. The target is under 0.5 s: the CLI imports only the command it
runs, and `bounds` needs numpy only.

Prints one JSON object: the command, median seconds per variant, each variant's ratio to
``python -c pass``, the heavy modules imported, and whether the median is under the target.

    python experiments/bench_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOUNDS_ARGS = ["bounds", "--T", "4096", "--delta", "1e-4", "--json"]
HEAVY = ("torch", "sympy", "matplotlib", "scipy")
TARGET_SECONDS = 0.5


def _env() -> dict[str, str]:
    """The environment of every timed process: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _median_seconds(cmd: list[str], repeats: int) -> float:
    """Median wall-clock seconds of `repeats` runs of `cmd` (after one untimed warm-up)."""
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, check=True)
        if i:  # the first run warms the file-system cache
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def heavy_imports(cmd_args: list[str]) -> dict[str, float]:
    """{heavy top-level module: cumulative import seconds} for `python -X importtime <args>`."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd_args],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    found = {}
    for line in proc.stderr.splitlines():  # "import time: self [us] | cumulative | name"
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() in HEAVY:
            found[parts[2].strip()] = int(parts[1]) / 1e6
    return found


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7, help="timed runs per variant (median reported)")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats must be >= 1, got {a.repeats}")

    variants = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -m trm_bounds bounds": [sys.executable, "-m", "trm_bounds", *BOUNDS_ARGS],
    }
    script = shutil.which("trm-bounds")
    if script is not None:
        variants["trm-bounds bounds (console script)"] = [script, *BOUNDS_ARGS]
    seconds = {name: _median_seconds(cmd, a.repeats) for name, cmd in variants.items()}
    floor = seconds["python -c pass"]
    module_s = seconds["python -m trm_bounds bounds"]
    out = {
        "command": "trm-bounds " + " ".join(BOUNDS_ARGS),
        "checkout": str(REPO),
        "console_script": script,
        "repeats": a.repeats,
        "median_seconds": seconds,
        "ratio_to_python_c_pass": {name: s / floor for name, s in seconds.items()},
        "heavy_modules_imported": heavy_imports(["-m", "trm_bounds", *BOUNDS_ARGS]),
        "target_seconds": TARGET_SECONDS,
        "under_target": module_s < TARGET_SECONDS,
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
