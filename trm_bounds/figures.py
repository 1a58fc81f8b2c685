"""`trm-bounds figures`: regenerate every figure and table the project makes, with a manifest.

The jobs and their order are listed once, in `trm_bounds.jobs.JOBS` (a job makes some
outputs in a directory and returns one record per output; see there). All of them live in
the package, so an installed wheel runs the same jobs as a source checkout.

The output folder (`trm_bounds._outdir` does the folder work):

- checked before any job runs: a folder that cannot be written, or one that holds earlier
  results (a manifest.json) without --force / --resume, is refused with a one-line error;
  a non-empty folder without manifest.json is never used (it is not a figures folder);
- the run is staged in a sibling folder, which then replaces the output folder in one
  atomic rename: an interrupt at any moment (SIGINT or SIGKILL) leaves the folder as it was
  or complete, and `manifest.json` always lists exactly the outputs present;
- `--only` and `--resume` merge: the other jobs' outputs (and any file no manifest lists,
  such as a README) are carried over unchanged, and the manifest lists all of them.

`manifest.json` lists every output with its path, what it shows, the job, the command and
inputs that made it, the package version and its sha256, and holds nothing that changes
from run to run (no timings, dates or absolute paths): timings and the library versions go
to the untracked run record `.run-record.json` beside it. `check_figures` regenerates a
copy of a folder and names every output whose bytes differ (`trm-bounds figures --check`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from . import _outdir, taskpool
from .audit import outputs

if TYPE_CHECKING:
    from .jobs import Job

__all__ = ["make_figures", "check_figures", "all_jobs", "MANIFEST", "RUN_RECORD"]

MANIFEST = "manifest.json"
RUN_RECORD = ".run-record.json"  # untracked (.gitignore): timings, versions, date of the last run


def all_jobs() -> dict[str, Job]:
    """Every job `trm-bounds figures` runs, in order (`trm_bounds.jobs.JOBS`, a copy).

    Imported here, not at the top: the jobs pull in torch, sympy and matplotlib, which
    `import trm_bounds.figures` alone should not.
    """
    from .jobs import JOBS

    return dict(JOBS)


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


# Modules the workers of each background job (`jobs.BACKGROUND`) run, named here so that the CLI
# can start the fork server importing them before it imports the jobs (`prestart_background`);
# tests hold this table to jobs.BACKGROUND.
BACKGROUND_MODULES = {
    "experiments/train_figures": ("trm_bounds.studies.training", "torch._dynamo"),
    "experiments/tightness_sweep": ("trm_bounds.studies.tightness",),
}


def prestart_background(only: list[str] | None) -> None:
    """`taskpool.prestart` the modules of the background jobs a run with `only` will start (none
    when it runs a single job: a lone job runs in this process)."""
    names = [n for n in BACKGROUND_MODULES if only is None or n in only]
    if names and (only is None or len(only) > 1):
        taskpool.prestart(tuple(dict.fromkeys(m for n in names for m in BACKGROUND_MODULES[n])))


def _start_background(
    jobs: dict[str, Job], quick: bool
) -> tuple[list[tuple[str, Job]], dict[str, str | None]]:
    """Start the background part of every selected job that has one (`trm_bounds.jobs.BACKGROUND`)
    when other jobs run too. Returns (the (name, job) pairs in the order to run them, {job name:
    its background run's taskpool name} for the jobs started): the jobs without background work
    first, then those with it (their workers had the most time), and "paper_tables" last (it
    reads the other jobs' measurements); `_run_order` may move a finished background job ahead.
    Outputs and manifest order do not depend on the order (tests check)."""
    from .jobs import BACKGROUND

    started = [n for n in jobs if n in BACKGROUND] if len(jobs) > 1 else []
    waits = {name: BACKGROUND[name](quick) for name in started}
    last = [n for n in jobs if n == "paper_tables"]
    first = [n for n in jobs if n not in started and n not in last]
    return [(n, jobs[n]) for n in first + started + last], waits


def _run_order(order: list[tuple[str, Job]], waits: dict[str, str | None], quick: bool):
    """Yield ("run", name, job) for every job of `order`, and ("prepare", name, hook) for work done
    ahead. In `order`, except: when the next job waits on a background run still going, a job whose
    background run has finished goes first; when none has, the `jobs.PREPARE` hook of a later job
    that waits on nothing runs meanwhile (once), instead of leaving this process idle."""
    from .jobs import PREPARE

    def done(name: str) -> bool:
        return name not in waits or waits[name] is None or taskpool.background_done(waits[name])

    pending, prepared = list(order), set()
    while pending:
        if not done(pending[0][0]):
            ready = next((p for p in pending if p[0] in waits and done(p[0])), None)
            if ready is not None:
                pending.remove(ready)
                yield ("run", *ready)
                continue
            ahead = [n for n, _ in pending if n in PREPARE and n not in waits and n not in prepared]
            if ahead:
                prepared.add(ahead[0])
                yield "prepare", ahead[0], PREPARE[ahead[0]]
                continue
        yield ("run", *pending.pop(0))


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(out: Path) -> dict | None:
    """The manifest of folder `out`, or None when it has none; ValueError naming out if unreadable."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("outputs"), list):
            raise ValueError("no 'outputs' list")
    except (ValueError, OSError) as exc:
        raise ValueError(f"out: {path} cannot be read ({exc}); pass --force to replace the folder") from None
    return manifest


def complete_jobs(out: Path, manifest: dict) -> set[str]:
    """Jobs whose every listed output is in `out` with the manifest's sha256."""
    by_job: dict[str, bool] = {}
    for e in manifest["outputs"]:
        p = Path(out) / e["path"]
        ok = p.is_file() and e.get("sha256") == sha256(p)
        by_job[e["job"]] = by_job.get(e["job"], True) and ok
    return {job for job, ok in by_job.items() if ok}


def _base_command(quick: bool) -> str:
    return "trm-bounds figures" + (" --quick" if quick else "")


def _select(only: list[str] | None) -> dict[str, Job]:
    jobs = all_jobs()
    if only:
        unknown = [n for n in only if n not in jobs]
        if unknown:
            raise ValueError(f"only: unknown job(s) {unknown}; known: {', '.join(jobs)}")
        jobs = {n: jobs[n] for n in jobs if n in only}  # always in JOBS order
    return jobs


def _plan(out: Path, jobs: dict, quick: bool, only, force: bool, resume: bool) -> tuple[dict, dict | None]:
    """(jobs to run, the folder's manifest or None), checked before any work (ValueError naming
    the option otherwise)."""
    if force and resume:
        raise ValueError("force: --force and --resume exclude each other")
    _outdir.check_target(out, "out")
    _outdir.check_target(out, "out", parent_only=True)  # the staging folder sits beside out
    old = None
    if out.is_dir() and any(out.iterdir()):
        try:
            old = read_manifest(out)
        except ValueError:
            if not force:
                raise
            old = {"quick": quick, "outputs": []}  # --force: treat it as a run with nothing listed
        if old is None:
            raise ValueError(
                f"out: {out} is a non-empty folder without {MANIFEST} (not a figures folder); "
                "choose a new or empty folder"
            )
    if old is None:
        return jobs, None
    n = len(old["outputs"])
    if (only or resume) and bool(old.get("quick")) != quick:
        kind = "--quick" if old.get("quick") else "a full (not --quick)"
        raise ValueError(
            f"out: {out} holds {kind} run; merging {'--only' if only else '--resume'} jobs "
            f"{'with' if quick else 'without'} --quick into it would mix the two "
            "(rerun everything with --force, or use another --out)"
        )
    if resume:
        done = complete_jobs(out, old)
        return {k: v for k, v in jobs.items() if k not in done}, old
    if not force:
        raise ValueError(
            f"out: {out} already holds a figures run ({MANIFEST}, {n} outputs); pass --force to replace "
            f"{'those jobs' if only else 'it'}, --resume to run only jobs whose outputs are missing or "
            "changed, --check to compare a fresh run with it, or --out to use another folder"
        )
    return jobs, old


def make_figures(
    out: Path,
    quick: bool = False,
    only: list[str] | None = None,
    progress: bool = True,
    *,
    force: bool = False,
    resume: bool = False,
) -> dict:
    """Run every job (or those named in `only`), publish outputs and `manifest.json` into `out`.

    A folder holding an earlier run is replaced only with `force`; with `resume` only the
    selected jobs whose outputs are missing or changed (per the manifest's sha256) run; with
    `only` or `resume` the other jobs' outputs stay and the manifest lists them too.
    Returns the manifest (a dict). Raises ValueError before running anything for an unknown
    job name or an output folder that cannot or may not be written.
    """
    from . import __version__

    out = Path(out)
    out = out.resolve() if out.is_symlink() else out  # replace the folder, not the link to it
    jobs, old = _plan(out, _select(only), quick, only, force, resume)
    if old is not None and not jobs:  # --resume with every job complete
        return old
    stage = _outdir.staging_dir(out)
    try:
        measured_in = (stage, out) if out.is_dir() else (stage,)
        new, seconds = [], {}
        with outputs.reading_measurements(measured_in, label="this folder"), contextlib.ExitStack() as stack:
            order, waits = _start_background(jobs, quick)
            bar = tqdm(total=len(order), desc="figures", unit="job", disable=not progress)
            stack.callback(bar.close)
            for kind, name, job in _run_order(order, waits, quick):
                bar.set_postfix_str(name if kind == "run" else f"{name} (ahead)")
                t0 = time.perf_counter()
                if kind == "prepare":
                    job(quick)
                    seconds[name] = round(time.perf_counter() - t0, 3)
                    continue
                records = _run_job(job, stage, quick, quiet=not progress)
                seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
                bar.update(1)
                for rec in records:
                    path = stage / rec["path"]
                    if not path.is_file():
                        raise RuntimeError(f"job {name} reported {rec['path']} but did not write it")
                    new.append(
                        {
                            "path": rec["path"],
                            "shows": rec["shows"],
                            "job": name,
                            "command": rec.get("command", f"{_base_command(quick)} --only {name}"),
                            "inputs": rec.get("inputs", {}),
                            "version": __version__,
                            "sha256": sha256(path),
                        }
                    )
        carried = _carry_over(out, stage, old, ran=set(jobs), full=not (only or resume))
        entries = _ordered(new + carried)
        manifest = {
            "command": _base_command(quick),
            "version": __version__,
            "quick": quick,
            "outputs": entries,
        }
        _write_run_record(stage, out, manifest, seconds)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        taskpool.cancel_background()
        shutil.rmtree(stage, ignore_errors=True)
        raise
    try:
        _outdir.publish_dir(stage, out)
    finally:  # interrupted before the swap: the new run; after it: the old folder
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def _carry_over(out: Path, stage: Path, old: dict | None, ran: set[str], full: bool) -> list[dict]:
    """Link into `stage` every file of `out` the new run keeps; return the manifest entries kept.

    Kept: entries of jobs that did not run (for a full run: none) whose file is still there,
    and every file no manifest lists (a README). Dropped: the old outputs of the jobs that
    ran, the old manifest and run record.
    """
    if old is None or not out.is_dir():
        return []
    keep = [e for e in old["outputs"] if not full and e["job"] not in ran and (out / e["path"]).is_file()]
    listed = {e["path"] for e in old["outputs"]} | {MANIFEST, RUN_RECORD}
    kept_paths = {e["path"] for e in keep}
    for src in sorted(p for p in out.rglob("*") if p.is_file() or p.is_symlink()):
        rel = src.relative_to(out).as_posix()
        if (rel in listed and rel not in kept_paths) or (stage / rel).exists():
            continue
        dst = stage / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    return keep


def _ordered(entries: list[dict]) -> list[dict]:
    """Entries in JOBS order (a job's own order kept); entries of unknown jobs last."""
    order = {name: i for i, name in enumerate(all_jobs())}
    return sorted(entries, key=lambda e: order.get(e["job"], len(order)))


def _write_run_record(stage: Path, out: Path, manifest: dict, seconds: dict) -> None:
    """The untracked record of this run: when, how long each job took, which library versions."""
    import importlib.metadata as md

    old = {}
    with contextlib.suppress(OSError, ValueError):
        old = json.loads((out / RUN_RECORD).read_text()).get("job_seconds", {})
    versions = {}
    for lib in ("numpy", "torch", "matplotlib", "scipy", "sympy", "numba"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[lib] = md.version(lib)
    record = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": manifest["command"],
        "job_seconds": {**old, **seconds},
        "ran": sorted(seconds),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }
    (stage / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")


def check_figures(
    out: Path, quick: bool = False, only: list[str] | None = None, progress: bool = True
) -> dict:
    """Regenerate a copy of folder `out` (its jobs, or those in `only`) in a temporary folder and
    compare: {"differ": [...], "missing": [...], "extra": [...], "compared": int}.

    differ: outputs (and manifest.json) whose bytes changed; missing: made now but not in `out`;
    extra: listed in `out`'s manifest but no longer made. `out` itself is never written.
    """
    out = Path(out)
    committed = read_manifest(out)
    if committed is None:
        raise ValueError(f"out: {out} holds no {MANIFEST} to check against")
    if bool(committed.get("quick")) != quick:
        raise ValueError(
            f"quick: {out} holds a {'--quick' if committed.get('quick') else 'full'} run; check it "
            f"{'with' if committed.get('quick') else 'without'} --quick"
        )
    _select(only)  # unknown job names: before any work
    with tempfile.TemporaryDirectory(prefix="trm-bounds-check-") as tmp:
        copy = Path(tmp) / out.name
        shutil.copytree(out, copy, symlinks=True)
        (copy / RUN_RECORD).unlink(missing_ok=True)
        old = read_manifest(copy)
        new = make_figures(copy, quick=quick, only=only, progress=progress, force=True)
        old_paths = {e["path"] for e in old["outputs"]} | {MANIFEST}
        new_paths = {e["path"] for e in new["outputs"]} | {MANIFEST}
        compared = sorted(old_paths & new_paths)
        differ = [p for p in compared if not (out / p).is_file() or sha256(out / p) != sha256(copy / p)]
        return {
            "differ": differ,
            "missing": sorted(new_paths - old_paths),
            "extra": sorted(old_paths - new_paths),
            "compared": len(compared),
        }
