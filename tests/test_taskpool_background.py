"""taskpool's background runs (trm-bounds figures starts the training runs first) and the job order."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from trm_bounds import taskpool


def square(task: dict) -> dict:
    """A seeded task: the result depends only on the task."""
    if task.get("pid_dir"):
        Path(task["pid_dir"], f"{os.getpid()}.pid").touch()
    if task.get("fail"):
        raise RuntimeError(f"task {task['key']} failed")
    if task.get("sleep"):
        time.sleep(task["sleep"])
    return {"x": task["x"], "sq": task["x"] ** 2, "pid_is_worker": os.getpid() != task["parent"]}


def _tasks(n: int, **extra) -> list[dict]:
    return [{"key": f"t{i}", "x": i, "parent": os.getpid(), **extra} for i in range(n)]


def test_background_run_returns_what_run_tasks_returns_from_worker_processes():
    tasks = _tasks(5)
    taskpool.start_background("bg-same", square, tasks, workers=2)
    assert taskpool.has_background("bg-same")
    got = taskpool.collect_background("bg-same")
    assert not taskpool.has_background("bg-same")
    assert [r["sq"] for r in got] == [0, 1, 4, 9, 16]
    assert all(r["pid_is_worker"] for r in got)  # even workers=1 would use a process, not a thread
    inproc = taskpool.run_tasks(square, tasks, progress=False)
    assert [r["sq"] for r in inproc] == [r["sq"] for r in got]
    assert not any(r["pid_is_worker"] for r in inproc)


def test_background_errors_reach_the_collector_and_names_are_unique():
    taskpool.start_background("bg-err", square, [*_tasks(2), {"key": "bad", "x": 0, "parent": 0, "fail": True}],
                              workers=1)  # fmt: skip
    with pytest.raises(ValueError, match="already started"):
        taskpool.start_background("bg-err", square, _tasks(1), workers=1)
    with pytest.raises(RuntimeError, match="task bad failed"):
        taskpool.collect_background("bg-err")
    with pytest.raises(KeyError):
        taskpool.collect_background("never-started")
    with pytest.raises(ValueError, match="key"):
        taskpool.start_background("bg-badkey", square, [{"x": 1}], workers=1)


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a terminated child not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to see the workers")
def test_cancel_background_terminates_the_worker_processes(tmp_path):
    taskpool.start_background("bg-kill", square, _tasks(2, sleep=60, pid_dir=str(tmp_path)), workers=2)
    deadline = time.time() + 60
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    taskpool.cancel_background()
    deadline = time.time() + 10
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)  # terminated, not left sleeping for a minute


def test_cancel_background_after_the_run_finished_is_quiet():
    """A finished, uncollected run (its pool shut down) is dropped without error."""
    taskpool.start_background("bg-done", square, _tasks(2), workers=1)
    deadline = time.time() + 60
    while taskpool._background["bg-done"][0].is_alive() and time.time() < deadline:
        time.sleep(0.1)
    taskpool.cancel_background()
    assert not taskpool.has_background("bg-done")


def test_cancel_background_stops_the_workers_promptly():
    taskpool.start_background("bg-cancel", square, _tasks(4, sleep=30), workers=2)
    time.sleep(3)  # the workers are up and sleeping
    t0 = time.perf_counter()
    taskpool.cancel_background()
    assert time.perf_counter() - t0 < 10
    assert not taskpool.has_background("bg-cancel")


def test_figures_runs_background_jobs_after_the_others_and_paper_tables_last(monkeypatch):
    from trm_bounds import figures, jobs

    started = []
    for name in ("experiments/train_figures", "experiments/tightness_sweep"):
        monkeypatch.setitem(
            jobs.BACKGROUND, name, lambda quick, n=name: started.append((n, quick)) or f"bg {n}"
        )
    sel = figures._select(None)
    order, waits = figures._start_background(sel, True)
    order = [n for n, _ in order]
    assert started == [("experiments/train_figures", True), ("experiments/tightness_sweep", True)]
    assert waits == {n: f"bg {n}" for n, _ in started}
    assert sorted(order) == sorted(sel) and order[-1] == "paper_tables"
    assert order[-3:-1] == ["experiments/train_figures", "experiments/tightness_sweep"]
    started.clear()
    alone = figures._select(["experiments/train_figures"])
    order, waits = figures._start_background(alone, False)
    assert [n for n, _ in order] == ["experiments/train_figures"] and waits == {}
    assert started == []  # nothing else to overlap with: the job runs its tasks itself
    two = figures._select(["experiments/train_figures", "scaling"])
    order, waits = figures._start_background(two, False)
    assert [n for n, _ in order] == ["scaling", "experiments/train_figures"]
    assert started == [("experiments/train_figures", False)]  # one other job is enough to overlap with


def test_run_order_takes_finished_background_jobs_first_and_prepares_while_waiting(monkeypatch):
    """_run_order: the given order while nothing waits; a job whose background run is still going
    yields to a later one whose run has finished; when none has, a later job's PREPARE hook runs
    (once) before this process blocks; jobs without a taskpool name never wait."""
    from trm_bounds import figures, jobs

    done = {"bg a": False, "bg b": False}
    monkeypatch.setattr(taskpool, "background_done", lambda name: done[name])
    monkeypatch.setattr(jobs, "PREPARE", {"last": "hook"})
    order = [("x", "job x"), ("a", "job a"), ("b", "job b"), ("c", "job c"), ("last", "job last")]
    waits = {"a": "bg a", "b": "bg b", "c": None}
    seen = []
    for kind, name, job in figures._run_order(order, waits, quick=True):
        seen.append((kind, name))
        if (kind, name) == ("prepare", "last"):
            assert job == "hook"
            done["bg b"] = True  # b finishes while the hook runs; a is still going
        if (kind, name) == ("run", "b"):
            done["bg a"] = True
    assert seen == [
        ("run", "x"),
        ("run", "c"),  # started, but with no run to wait on: ready at once
        ("prepare", "last"),
        ("run", "b"),
        ("run", "a"),
        ("run", "last"),
    ]
    done.update({"bg a": False, "bg b": False})  # nothing finishes: one prepare, then wait in order
    got = list(itertools.islice(figures._run_order(order, waits, quick=True), 10))
    assert [(k, n) for k, n, _ in got] == [
        ("run", "x"),
        ("run", "c"),
        ("prepare", "last"),
        ("run", "a"),
        ("run", "b"),
        ("run", "last"),
    ]
    done.update({"bg a": True, "bg b": True})  # all finished: the order as given, nothing prepared
    assert [n for _, n, _ in figures._run_order(order, waits, quick=True)] == ["x", "a", "b", "c", "last"]


def test_background_done_is_true_only_after_the_run(monkeypatch):
    assert taskpool.background_done("never-started")
    taskpool.start_background("bg-doneflag", square, _tasks(1, sleep=2), workers=1)
    assert not taskpool.background_done("bg-doneflag")
    deadline = time.time() + 60
    while not taskpool.background_done("bg-doneflag") and time.time() < deadline:
        time.sleep(0.1)
    assert taskpool.background_done("bg-doneflag")
    assert [r["sq"] for r in taskpool.collect_background("bg-doneflag")] == [0]
    assert taskpool.background_done("bg-doneflag")  # collected: nothing running under that name


def test_cache_files_hold_their_task_resume_and_refuse_another_task(tmp_path):
    """cache_dir/<key>.json = {"task", "result"} (sorted keys); a rerun loads instead of running;
    a file written for another task under the same key, or an unreadable one, is a ValueError."""
    import json

    tasks = _tasks(3)
    first = taskpool.run_tasks(square, tasks, cache_dir=tmp_path / "c", progress=False)
    path = taskpool.task_file(tmp_path / "c", "t1")
    assert path == tmp_path / "c" / "t1.json"
    saved = json.loads(path.read_text())
    assert saved == {"task": tasks[1], "result": first[1]}
    assert path.read_text() == json.dumps(saved, sort_keys=True)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["t0.json", "t1.json", "t2.json"]
    saved["result"]["sq"] = -1  # a resumed run reads the file, it does not recompute
    path.write_text(json.dumps(saved))
    again = taskpool.run_tasks(square, tasks, cache_dir=tmp_path / "c", progress=False)
    assert [r["sq"] for r in again] == [0, -1, 4]
    other = [{**t, "x": t["x"] + 10} for t in tasks]
    with pytest.raises(
        ValueError,
        match=r"t0\.json holds the result of a different task under key 't0' "
        r"\(another configuration\?\): use another cache folder or delete it$",
    ):
        taskpool.run_tasks(square, other, cache_dir=tmp_path / "c", progress=False)
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="different task"):
        taskpool.run_tasks(square, tasks, cache_dir=tmp_path / "c", progress=False)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"^cache_dir: .*t1\.json cannot be read \(.*\); delete it"):
        taskpool.run_tasks(square, tasks, cache_dir=tmp_path / "c", progress=False)


def test_add_arguments_gives_workers_ray_and_cache():
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser()
    taskpool.add_arguments(ap, "my_cache")
    d = ap.parse_args([])
    assert (d.workers, d.ray, d.cache) == (1, None, None)
    a = ap.parse_args(["--workers", "3", "--ray", "auto", "--cache", "x/y"])
    assert (a.workers, a.ray, a.cache) == (3, "auto", Path("x/y"))
    text = " ".join(ap.format_help().split())
    assert "OUT/my_cache" in text and "(default 1: in-process)" in text
    assert "'auto' (the cluster `ray start` made on this node" in text
    assert "(ray://HEAD:10001 or HEAD:6379)" in text


def test_background_run_uses_a_worker_process_even_with_one_worker_and_draws_no_bar(capsys):
    """workers=1 still runs on a spawned process (the caller's thread keeps the CPU), silently."""
    taskpool.start_background("bg-one", square, _tasks(2), workers=1)
    got = taskpool.collect_background("bg-one")
    assert [r["sq"] for r in got] == [0, 1] and all(r["pid_is_worker"] for r in got)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_start_background_refuses_bad_workers_before_starting(workers):
    with pytest.raises(ValueError, match="^workers must be an integer >= 1"):
        taskpool.start_background("bg-bad-workers", square, _tasks(1), workers=workers)
    assert not taskpool.has_background("bg-bad-workers")


def test_prestart_table_names_each_background_job_and_what_its_workers_import(monkeypatch):
    """figures.BACKGROUND_MODULES (read by the CLI before it imports the jobs) stays in step with
    jobs.BACKGROUND, and prestart_background starts the fork server only when a run overlaps jobs."""
    from trm_bounds import figures, jobs
    from trm_bounds.studies import training

    assert set(figures.BACKGROUND_MODULES) == set(jobs.BACKGROUND)
    mods = figures.BACKGROUND_MODULES["experiments/train_figures"]
    assert training.run_one.__module__ in mods and set(training.PRELOAD) <= set(mods)
    calls = []
    monkeypatch.setattr(taskpool, "prestart", lambda modules: calls.append(modules))
    every = tuple(dict.fromkeys(m for n in figures.BACKGROUND_MODULES for m in figures.BACKGROUND_MODULES[n]))
    figures.prestart_background(None)
    figures.prestart_background(["experiments/train_figures"])  # alone: runs in-process, no pool
    figures.prestart_background(["scaling", "paper_tables"])  # no background job selected
    figures.prestart_background(["scaling", "experiments/train_figures"])
    assert calls == [every, mods]
    assert "trm_bounds.studies.tightness" in every


_PRELOAD_SCRIPT = """
import os, sys
from trm_bounds import taskpool

def loaded(task):
    return {"loaded": task["module"] in sys.modules, "worker": os.getpid() != task["parent"]}

if __name__ == "__main__":
    assert "colorsys" not in sys.modules
    print(taskpool._context(loaded, ("colorsys",)).get_start_method())
    out = taskpool.run_tasks(loaded, [{"key": "a", "module": "colorsys", "parent": os.getpid()}],
                             processes=True, progress=False, preload=("colorsys",))
    print(out[0]["loaded"], out[0]["worker"])
"""


def test_pool_workers_start_with_the_preloaded_modules(tmp_path):
    """Workers fork from a server that imported the preload list: the module is there before the
    task imports anything (colorsys: a stdlib module nothing here imports). In a fresh interpreter,
    whose fork server starts with this list."""
    import multiprocessing
    import subprocess
    import sys

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server on this platform (spawned workers import on demand)")
    script = tmp_path / "preload_check.py"
    script.write_text(_PRELOAD_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["forkserver", "True", "True"]
