"""taskpool's background runs (trm-bounds figures starts the training runs first) and the job order."""

from __future__ import annotations

import os
import time

import pytest

from trm_bounds import taskpool


def square(task: dict) -> dict:
    """A seeded task: the result depends only on the task."""
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
    monkeypatch.setitem(jobs.BACKGROUND, "experiments/train_figures", lambda quick: started.append(quick))
    sel = figures._select(None)
    order = [n for n, _ in figures._start_background(sel, True)]
    assert started == [True]
    assert sorted(order) == sorted(sel) and order[-1] == "paper_tables"
    assert order[-2] == "experiments/train_figures"
    started.clear()
    alone = figures._select(["experiments/train_figures"])
    assert [n for n, _ in figures._start_background(alone, False)] == ["experiments/train_figures"]
    assert started == []  # nothing else to overlap with: the job runs its tasks itself
