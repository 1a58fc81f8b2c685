"""Tests for trm_bounds/figures.py and trm_bounds/_outdir.py: the output folder of `trm-bounds figures`.

Most tests replace the job list by tiny fake jobs (milliseconds); the interrupt tests run the
real `trm-bounds figures --quick --only scaling` in a subprocess and kill it (SIGKILL, SIGINT)
at each step of publishing (the TRM_BOUNDS_PAUSE_AT hook) and at random moments, then check
that the folder is as it was or complete, with a manifest listing exactly the files present.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trm_bounds import _outdir, figures, jobs

REPO = Path(__file__).resolve().parent.parent


def _fake_job(name: str, files: dict[str, str], calls: list | None = None):
    def job(out_dir: Path, quick: bool) -> list[dict]:
        if calls is not None:
            calls.append(name)
        recs = []
        for rel, text in files.items():
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / rel).write_text(text + (" quick" if quick else ""))
            recs.append({"path": rel, "shows": f"{rel} of {name}", "inputs": {"quick": quick}})
        return recs

    return job


@pytest.fixture
def fake_jobs(monkeypatch):
    """Two fake jobs, "a" (a.txt, sub/a2.txt) and "b" (b.txt); returns the list of calls."""
    calls: list[str] = []
    monkeypatch.setattr(
        jobs,
        "JOBS",
        {
            "a": _fake_job("a", {"a.txt": "A", "sub/a2.txt": "A2"}, calls),
            "b": _fake_job("b", {"b.txt": "B"}, calls),
        },
    )
    return calls


def _files(d: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under d."""
    return {p.relative_to(d).as_posix(): figures.sha256(p) for p in sorted(d.rglob("*")) if p.is_file()}


def _assert_manifest_matches_folder(d: Path, unlisted=("README.md",)) -> dict:
    """manifest.json lists exactly the files present (besides itself, the run record and the
    given unlisted files), each with its sha256."""
    manifest = json.loads((d / figures.MANIFEST).read_text())
    present = set(_files(d)) - {figures.MANIFEST, figures.RUN_RECORD, *unlisted}
    listed = {e["path"]: e["sha256"] for e in manifest["outputs"]}
    assert set(listed) == present
    for path, digest in listed.items():
        assert figures.sha256(d / path) == digest, path
    return manifest


def _siblings(d: Path) -> list[str]:
    return sorted(p.name for p in d.parent.iterdir() if p.name.startswith(f".{d.name}."))


# --------------------------------------------------------------------------- fresh run, manifest
def test_fresh_run_manifest_has_sha256_and_no_timings(tmp_path, fake_jobs):
    out = tmp_path / "figs"
    manifest = figures.make_figures(out, quick=True, progress=False)
    assert fake_jobs == ["a", "b"]
    assert [e["path"] for e in manifest["outputs"]] == ["a.txt", "sub/a2.txt", "b.txt"]
    assert manifest["command"] == "trm-bounds figures --quick"  # no --out: no path in a tracked file
    for e in manifest["outputs"]:
        assert "seconds" not in e and e["command"] == f"trm-bounds figures --quick --only {e['job']}"
    assert json.loads((out / figures.MANIFEST).read_text()) == manifest
    _assert_manifest_matches_folder(out)
    record = json.loads((out / figures.RUN_RECORD).read_text())
    assert set(record["job_seconds"]) == {"a", "b"} and all(s >= 0 for s in record["job_seconds"].values())
    assert _siblings(out) == []  # no staging folder left


def test_run_record_and_staging_folders_are_ignored_by_git():
    proc = subprocess.run(
        ["git", "check-ignore", "paper_figures/.run-record.json", ".paper_figures.staging-12-34/"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if proc.returncode == 128:
        pytest.skip("not a git checkout")
    assert proc.stdout.split() == ["paper_figures/.run-record.json", ".paper_figures.staging-12-34/"]


# --------------------------------------------------------------------------- refusing to overwrite
def test_existing_run_is_refused_without_force_before_any_work(tmp_path, fake_jobs):
    out = tmp_path / "figs"
    figures.make_figures(out, progress=False)
    before, fake_jobs[:] = _files(out), []
    for only in (None, ["b"]):
        with pytest.raises(ValueError, match=r"out: .* already holds a figures run .*--force"):
            figures.make_figures(out, only=only, progress=False)
    assert fake_jobs == [] and _files(out) == before and _siblings(out) == []


@pytest.mark.parametrize("kind", ["file", "under_file", "not_figures", "unwritable"])
def test_bad_output_folders_fail_before_any_job_runs(tmp_path, fake_jobs, kind):
    f = tmp_path / "file"
    f.write_text("x")
    out = {
        "file": f,
        "under_file": f / "figs",
        "not_figures": tmp_path,  # non-empty, no manifest.json
        "unwritable": Path("/proc/trm-bounds-figures"),  # procfs: not writable, even for root
    }[kind]
    if kind == "unwritable" and not Path("/proc/self").exists():
        pytest.skip("no /proc")
    with pytest.raises(ValueError, match=r"^out: "):
        figures.make_figures(out, force=True, progress=False)
    assert fake_jobs == [] and f.read_text() == "x"


def test_force_replaces_and_drops_outputs_no_longer_made(tmp_path, fake_jobs, monkeypatch):
    out = tmp_path / "figs"
    figures.make_figures(out, progress=False)
    (out / "README.md").write_text("hand-written")  # a file no manifest lists: kept
    monkeypatch.setitem(jobs.JOBS, "a", _fake_job("a", {"a.txt": "A new"}))
    figures.make_figures(out, force=True, progress=False)
    assert (out / "a.txt").read_text() == "A new" and not (out / "sub" / "a2.txt").exists()
    assert (out / "README.md").read_text() == "hand-written"
    _assert_manifest_matches_folder(out)


def test_only_merges_into_the_manifest(tmp_path, fake_jobs, monkeypatch):
    out = tmp_path / "figs"
    figures.make_figures(out, progress=False)
    b_before = figures.sha256(out / "b.txt")
    monkeypatch.setitem(jobs.JOBS, "a", _fake_job("a", {"a.txt": "A v2"}))
    manifest = figures.make_figures(out, only=["a"], force=True, progress=False)
    assert [e["path"] for e in manifest["outputs"]] == ["a.txt", "b.txt"]  # b kept and listed
    assert figures.sha256(out / "b.txt") == b_before and (out / "a.txt").read_text() == "A v2"
    assert not (out / "sub" / "a2.txt").exists()  # a's old output that a no longer makes
    _assert_manifest_matches_folder(out)


def test_only_with_the_other_mode_is_refused(tmp_path, fake_jobs):
    out = tmp_path / "figs"
    figures.make_figures(out, quick=False, progress=False)
    with pytest.raises(ValueError, match="mix"):
        figures.make_figures(out, quick=True, only=["a"], force=True, progress=False)


def test_resume_runs_only_incomplete_jobs(tmp_path, fake_jobs):
    out = tmp_path / "figs"
    figures.make_figures(out, only=["a"], progress=False)
    fake_jobs[:] = []
    figures.make_figures(out, resume=True, progress=False)
    assert fake_jobs == ["b"]
    (out / "a.txt").write_text("edited")  # sha256 no longer the manifest's: a reruns
    fake_jobs[:] = []
    manifest = figures.make_figures(out, resume=True, progress=False)
    assert fake_jobs == ["a"] and (out / "a.txt").read_text() == "A"
    assert {e["job"] for e in manifest["outputs"]} == {"a", "b"}
    fake_jobs[:] = []
    figures.make_figures(out, resume=True, progress=False)
    assert fake_jobs == []  # nothing left to do
    _assert_manifest_matches_folder(out)


def test_a_failing_job_leaves_the_folder_as_it_was(tmp_path, fake_jobs, monkeypatch):
    out = tmp_path / "figs"
    figures.make_figures(out, progress=False)
    before = _files(out)

    def boom(out_dir, quick):
        (out_dir / "b.txt").write_text("half")
        raise RuntimeError("job failed")

    monkeypatch.setitem(jobs.JOBS, "b", boom)
    with pytest.raises(RuntimeError, match="job failed"):
        figures.make_figures(out, force=True, progress=False)
    assert _files(out) == before and _siblings(out) == []


# --------------------------------------------------------------------------- stale folders, fallback
def test_stale_staging_folders_are_cleaned(tmp_path, fake_jobs):
    out = tmp_path / "figs"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".figs.staging-{dead_pid}-{int(time.time())}-ab12"
    old = tmp_path / f".figs.staging-{os.getpid()}-{int(time.time() - 2 * _outdir.STALE_AFTER_S)}-cd34"
    live = tmp_path / f".figs.staging-{os.getpid()}-{int(time.time())}-ef56"  # a run in progress
    other = tmp_path / f".figsx.staging-{dead_pid}-{int(time.time())}-ab12"  # another folder's
    for d in (stale, old, live, other):
        (d / "x").mkdir(parents=True)
    figures.make_figures(out, progress=False)
    assert not stale.exists() and not old.exists() and live.exists() and other.exists()


def test_fallback_publish_interrupted_between_renames_is_restored(tmp_path, fake_jobs, monkeypatch):
    """Where the atomic exchange is missing, out is moved aside, then the staging folder moved in;
    a kill between the two leaves no out: the next run (clean_stale) puts the old folder back."""
    out = tmp_path / "figs"
    figures.make_figures(out, progress=False)
    before = _files(out)

    class Killed(BaseException):
        pass

    def pause(step):
        if step == "moved-aside":
            raise Killed

    monkeypatch.setattr(_outdir, "_exchange", lambda a, b: False)
    monkeypatch.setattr(_outdir, "_pause_point", pause)
    with pytest.raises(Killed):
        figures.make_figures(out, force=True, progress=False)
    assert not out.exists()  # the state a SIGKILL at that moment leaves
    _outdir.clean_stale(out, now=time.time() + 2 * _outdir.STALE_AFTER_S)  # as a later run would
    assert _files(out) == before and _siblings(out) == []
    monkeypatch.setattr(_outdir, "_pause_point", lambda step: None)
    figures.make_figures(out, force=True, progress=False)  # the fallback path itself publishes
    _assert_manifest_matches_folder(out)


# --------------------------------------------------------------------------- --check
def test_check_names_every_output_that_differs(tmp_path, fake_jobs):
    out = tmp_path / "figs"
    figures.make_figures(out, progress=False)
    before = _files(out)
    res = figures.check_figures(out, progress=False)
    assert res == {"differ": [], "missing": [], "extra": [], "compared": 4}
    (out / "sub" / "a2.txt").write_text("edited")
    assert figures.check_figures(out, progress=False)["differ"] == ["sub/a2.txt"]
    with pytest.raises(ValueError, match="quick"):
        figures.check_figures(out, quick=True, progress=False)
    assert _files(out) == {**before, "sub/a2.txt": figures.sha256(out / "sub" / "a2.txt")}  # not written


# --------------------------------------------------------------------------- interrupts, for real
def _figures_cmd(out: Path) -> list[str]:
    cmd = ["figures", "--quick", "--only", "scaling", "--force", "--no-progress", "--out", str(out)]
    return [sys.executable, "-m", "trm_bounds", *cmd]


def _env(**extra) -> dict:
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def scaling_states(tmp_path_factory):
    """(folder before, its files; files of the complete state) for `--quick --only scaling --force`
    over a folder made by other jobs (so that the two states differ)."""
    base = tmp_path_factory.mktemp("interrupt")
    before = base / "before"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            jobs,
            "JOBS",
            {**jobs.JOBS, "scaling": _fake_job("scaling", {"scaling.csv": "old", "old.txt": "o"})},
        )
        figures.make_figures(before, quick=True, only=["scaling"], progress=False)
    (before / "README.md").write_text("kept")
    done = base / "done"
    shutil.copytree(before, done)
    t0 = time.perf_counter()
    proc = subprocess.run(_figures_cmd(done), env=_env(), capture_output=True, text=True, timeout=300)
    length = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    _assert_manifest_matches_folder(done)
    assert not (done / "old.txt").exists() and (done / "README.md").read_text() == "kept"
    return before, _files(before), _files(done), length


def _state_ok(out: Path, before: dict, done: dict) -> str:
    """'before' or 'done' (the folder is exactly one of them, run record aside), else fail."""
    got = {k: v for k, v in _files(out).items() if k != figures.RUN_RECORD}
    strip = lambda d: {k: v for k, v in d.items() if k != figures.RUN_RECORD}  # noqa: E731
    assert got in (strip(before), strip(done)), sorted(got)
    _assert_manifest_matches_folder(out)
    return "before" if got == strip(before) else "done"


def _fresh_copy(before_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "figs"
    shutil.copytree(before_dir, out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "step, sig", [("staged", signal.SIGKILL), ("staged", signal.SIGINT), ("swapped", signal.SIGKILL)]
)
def test_interrupt_at_each_publish_step(scaling_states, tmp_path, step, sig):
    before_dir, before, done, _ = scaling_states
    out = _fresh_copy(before_dir, tmp_path)
    proc = subprocess.Popen(
        _figures_cmd(out),
        env=_env(TRM_BOUNDS_PAUSE_AT=step),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert line.strip() == f"paused at {step}", line
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    state = _state_ok(out, before, done)
    assert state == ("before" if step == "staged" else "done")
    _outdir.clean_stale(out)  # what the next run does first
    assert _siblings(out) == []


@pytest.mark.slow
def test_interrupt_at_random_moments(scaling_states, tmp_path):
    """SIGKILL, then SIGINT, after a random delay within a run's length: never a broken folder."""
    before_dir, before, done, length = scaling_states
    rng = random.Random(2026)
    for sig in (signal.SIGKILL, signal.SIGINT):
        out = _fresh_copy(before_dir, tmp_path / sig.name)
        proc = subprocess.Popen(
            _figures_cmd(out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.2, 1.0) * length)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        _state_ok(out, before, done)
        _outdir.clean_stale(out)
        assert _siblings(out) == []


def test_a_symlinked_output_folder_stays_a_link(tmp_path, fake_jobs):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    figures.make_figures(link, progress=False)
    figures.make_figures(link, force=True, progress=False)
    assert link.is_symlink() and (real / figures.MANIFEST).is_file()
    _assert_manifest_matches_folder(real)


def test_exchange_swaps_two_folders_atomically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "name").write_text(d.name)
    if not _outdir._exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) not supported here: the fallback publish is used")
    assert (a / "name").read_text() == "b" and (b / "name").read_text() == "a"
