"""`trm-bounds figures`: regenerate every figure and table the project makes, with a manifest.

A *job* makes some outputs in a directory and returns one record per output::

    def job(out_dir: pathlib.Path, quick: bool) -> list[dict]:
        # each dict: {"path": <relative to out_dir>, "shows": "what it shows",
        #             "inputs": {...parameters...}}
        ...

Jobs come from two places:
- library jobs registered in `JOBS` below (the scaling figure, the paper tables, ...);
- every `experiments/*.py` (beside the package, in a source checkout) that defines
  ``figures_job(out_dir, quick)``. Its `main(argv)` stays the stand-alone entry point.

All outputs are first written to a staging directory and moved into `out` only when every
job succeeded, so a failure never leaves a half-written set. `manifest.json` lists each
output with its path, what it shows, the command and inputs that made it, the package
version and the seconds its job took.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from ._outputs import FIGURES_DIR_ENV

Job = Callable[[Path, bool], list[dict]]

JOBS: dict[str, Job] = {}
EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"


def register_job(name: str) -> Callable[[Job], Job]:
    """Decorator: add a library job to `trm-bounds figures` under `name`."""

    def deco(fn: Job) -> Job:
        if name in JOBS:
            raise ValueError(f"figure job {name!r} is already registered")
        JOBS[name] = fn
        return fn

    return deco


def _library_jobs() -> dict[str, Job]:
    # importing the report layers registers their jobs
    from . import report  # noqa: F401

    try:
        from . import paper  # noqa: F401
    except ImportError as exc:  # pragma: no cover - paper module not present yet
        if "paper" not in str(exc):
            raise
    return dict(JOBS)


def _experiment_jobs(experiments_dir: Path = EXPERIMENTS_DIR) -> dict[str, Job]:
    jobs: dict[str, Job] = {}
    if not experiments_dir.is_dir():
        return jobs
    for path in sorted(experiments_dir.glob("*.py")):
        if path.name.startswith(("_", "bench_")):
            continue
        text = path.read_text()
        if "def figures_job(" not in text:
            continue
        spec = importlib.util.spec_from_file_location(f"trm_bounds_experiments_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        jobs[f"experiments/{path.stem}"] = module.figures_job
    return jobs


def all_jobs() -> dict[str, Job]:
    """Every job `trm-bounds figures` runs, in order: library jobs, experiments, and the paper
    tables and audit last (the audit reads the measurements the experiments just wrote)."""
    lib = _library_jobs()
    last = {name: lib.pop(name) for name in ("paper_tables",) if name in lib}
    return {**lib, **_experiment_jobs(), **last}


@contextlib.contextmanager
def _figures_dir_env(stage: str):
    """Point `trm_bounds._outputs` at the staging directory while the jobs run."""
    old = os.environ.get(FIGURES_DIR_ENV)
    os.environ[FIGURES_DIR_ENV] = stage
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(FIGURES_DIR_ENV, None)
        else:
            os.environ[FIGURES_DIR_ENV] = old


def _run_job(job: Job, stage: Path, quick: bool, quiet: bool) -> list[dict]:
    """Run one job; with `quiet`, its stderr (the jobs' own tqdm bars) is held back unless it fails."""
    if not quiet:
        return job(stage, quick)
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            return job(stage, quick)
    except BaseException:
        sys.stderr.write(held.getvalue())
        raise


def make_figures(
    out: Path, quick: bool = False, only: list[str] | None = None, progress: bool = True
) -> dict:
    """Run every job (or those named in `only`), write outputs and `manifest.json` into `out`.

    Returns the manifest (a dict). Raises ValueError for an unknown job name before running any.
    """
    from . import __version__

    jobs = all_jobs()
    if only:
        unknown = [n for n in only if n not in jobs]
        if unknown:
            raise ValueError(f"only: unknown job(s) {unknown}; known: {', '.join(jobs)}")
        jobs = {n: jobs[n] for n in only}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "trm-bounds figures" + (" --quick" if quick else "") + f" --out {out}"
    entries = []
    with tempfile.TemporaryDirectory(prefix=".figures-", dir=out.parent) as tmp, _figures_dir_env(tmp):
        stage = Path(tmp)
        bar = tqdm(jobs.items(), desc="figures", unit="job", disable=not progress)
        for name, job in bar:
            bar.set_postfix_str(name)
            t0 = time.perf_counter()
            records = _run_job(job, stage, quick, quiet=not progress)
            seconds = time.perf_counter() - t0
            for rec in records:
                if not (stage / rec["path"]).exists():
                    raise RuntimeError(f"job {name} reported {rec['path']} but did not write it")
                entries.append(
                    {
                        "path": rec["path"],
                        "shows": rec["shows"],
                        "job": name,
                        "command": rec.get("command", command),
                        "inputs": rec.get("inputs", {}),
                        "version": __version__,
                        "seconds": round(seconds, 3),
                    }
                )
        manifest = {"command": command, "version": __version__, "quick": quick, "outputs": entries}
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for src in sorted(stage.rglob("*")):
            if src.is_file():
                dst = out / src.relative_to(stage)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(src), dst)
    return manifest
