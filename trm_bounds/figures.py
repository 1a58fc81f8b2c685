"""`trm-bounds figures`: regenerate every figure and table the project makes, with a manifest.

The jobs and their order are listed once, in `trm_bounds.jobs.JOBS` (a job makes some
outputs in a directory and returns one record per output; see there). All of them live in
the package, so an installed wheel runs the same jobs as a source checkout.

All outputs are first written to a staging directory and moved into `out` only when every
job succeeded, so a failure never leaves a half-written set. `manifest.json` lists each
output with its path, what it shows, the command and inputs that made it, the package
version and the seconds its job took.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from .audit.outputs import FIGURES_DIR_ENV

if TYPE_CHECKING:
    from .jobs import Job

__all__ = ["make_figures", "all_jobs"]


def all_jobs() -> dict[str, Job]:
    """Every job `trm-bounds figures` runs, in order (`trm_bounds.jobs.JOBS`, a copy).

    Imported here, not at the top: the jobs pull in torch, sympy and matplotlib, which
    `import trm_bounds.figures` alone should not.
    """
    from .jobs import JOBS

    return dict(JOBS)


@contextlib.contextmanager
def _figures_dir_env(stage: str):
    """Point `trm_bounds.audit.outputs` at the staging directory while the jobs run."""
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
