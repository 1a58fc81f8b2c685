"""The error-vs-horizon study as independent seeded tasks (trm_bounds.studies.error_vs_horizon
through trm_bounds.taskpool): the same JSON in-process, on a process pool and on Ray; resume."""

from __future__ import annotations

import json

import pytest

from trm_bounds.studies import error_vs_horizon as study
from trm_bounds.taskpool import run_tasks, task_file

CFG = study._config(quick=True)


def _final_json(tasks: list[dict], done: list[dict], tmp_path) -> bytes:
    """The study's error_vs_horizon.json made from these task results (no figures)."""
    results = {t["key"]: r for t, r in zip(tasks, done)}
    sweep = study.horizon_sweep(CFG, results)
    m = study.delta_T_map(CFG, results)
    rr = study.random_ratios(CFG, results)
    tmp_path.mkdir(parents=True, exist_ok=True)
    study.write_tables(sweep, m, rr, CFG, tmp_path)
    return (tmp_path / study.RESULTS_JSON).read_bytes()


def test_tasks_are_unique_json_ready_and_cover_every_part():
    tasks = study.make_tasks(CFG)
    assert len({t["key"] for t in tasks}) == len(tasks)
    assert {t["part"] for t in tasks} == {"sweep", "map", "random"}
    assert json.loads(json.dumps(tasks)) == tasks
    n_random = CFG["random_pairs"] // len(CFG["random_T"]) * len(CFG["random_T"])
    assert sum(len(t["pairs"]) for t in tasks if t["part"] == "random") == n_random
    # the random draws are made once, in a fixed order: the same tasks every time
    assert json.dumps(study.make_tasks(CFG)) == json.dumps(tasks)


def test_in_process_and_a_process_pool_give_the_same_json(tmp_path):
    tasks = study.make_tasks(CFG)
    local = run_tasks(study.run_task, tasks, progress=False)
    pooled = run_tasks(study.run_task, tasks, workers=2, progress=False)
    assert json.dumps(pooled, sort_keys=True) == json.dumps(local, sort_keys=True)
    assert _final_json(tasks, pooled, tmp_path / "a") == _final_json(tasks, local, tmp_path / "b")


def test_an_interrupted_run_resumes_with_only_the_missing_tasks(tmp_path, monkeypatch):
    tasks = study.make_tasks(CFG)
    full = _final_json(tasks, run_tasks(study.run_task, tasks, progress=False), tmp_path / "full")
    cache = tmp_path / "cache"
    first = tasks[::3]  # the tasks that finished before the interruption
    run_tasks(study.run_task, first, cache_dir=cache, progress=False)
    assert sorted(p.name for p in cache.glob("*.json")) == sorted(f"{t['key']}.json" for t in first)

    ran = []
    real = study.run_task

    def counting(task):
        ran.append(task["key"])
        return real(task)

    monkeypatch.setattr(study, "run_task", counting)
    study.run_study(tmp_path / "out", quick=True, progress=False, cache_dir=cache)
    assert sorted(ran) == sorted(t["key"] for t in tasks if t not in first)  # only the rest ran
    assert all(task_file(cache, t["key"]).exists() for t in tasks)
    assert (tmp_path / "out" / study.RESULTS_JSON).read_bytes() == full


def test_a_cache_of_another_configuration_is_refused_not_reused(tmp_path):
    quick = [t for t in study.make_tasks(CFG) if t["key"] == "sweep_last2_dense_T4"]
    run_tasks(study.run_task, quick, cache_dir=tmp_path, progress=False)
    other = [{**quick[0], "seeds": quick[0]["seeds"] + 1}]  # the same key, another task
    with pytest.raises(ValueError, match="different task"):
        run_tasks(study.run_task, other, cache_dir=tmp_path, progress=False)
    task_file(tmp_path, quick[0]["key"]).write_text("{truncated")
    with pytest.raises(ValueError, match="cannot be read"):
        run_tasks(study.run_task, quick, cache_dir=tmp_path, progress=False)


@pytest.mark.slow
def test_a_local_ray_instance_gives_the_same_json(tmp_path, local_ray):
    tasks = study.make_tasks(CFG)
    local = run_tasks(study.run_task, tasks, progress=False)
    remote = run_tasks(study.run_task, tasks, ray="auto", progress=False)
    assert json.dumps(remote, sort_keys=True) == json.dumps(local, sort_keys=True)
    assert _final_json(tasks, remote, tmp_path / "ray") == _final_json(tasks, local, tmp_path / "local")
