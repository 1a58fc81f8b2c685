"""Tests for trm_bounds/tightness_search.py, trm_bounds/taskpool.py and trm_bounds/studies/tightness.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import trm_bounds.refined  # noqa: F401 - the *_refined keys
from trm_bounds.chain import chain_quantities, chain_to_tree, evaluate_chain_file
from trm_bounds.exact import evaluate_pair_file, exact_quantities
from trm_bounds.studies import tightness as study
from trm_bounds.taskpool import run_tasks, task_file
from trm_bounds.tightness_search import (
    _to_pair,
    chain_terms,
    parity_chain,
    search_trees,
    structure_transition,
    theta_logits,
    torch_bounds,
    tree_terms,
    tree_transition,
)


@pytest.mark.parametrize("structure", ["random8", "mod2", "last2", "sat4"])
@pytest.mark.parametrize("fixed, target", [("delta", 1e-2), ("eps", 0.05)])
def test_differentiable_dp_matches_the_chain_engine_and_holds_the_divergence(structure, fixed, target):
    gen = torch.Generator().manual_seed(3)
    tr = structure_transition(structure, 5)
    S, T = tr.shape[0], 37
    z = torch.randn(2, S, generator=gen, dtype=torch.float64)
    c = torch.randn(2, S, generator=gen, dtype=torch.float64)
    r = torch.rand(2, S, generator=gen, dtype=torch.float64)
    zt = theta_logits(z, c, fixed, target)
    q = chain_terms(z, zt, r, torch.as_tensor(tr), T)
    b = torch_bounds(q, T)
    for n in range(2):
        d = chain_quantities(_to_pair(z[n], zt[n], r[n], tr, T))
        assert float(q[fixed][n]) == pytest.approx(target, rel=1e-9)  # max over all states = target
        assert d[fixed] <= target * (1 + 1e-9)  # over reachable states: at most the target
        assert float(q["error"][n]) == pytest.approx(d["error"], rel=1e-9, abs=1e-15)
        assert float(q["surrogate"][n]) == pytest.approx(d["surrogate"], rel=1e-9, abs=1e-15)
        assert float(q["dkl_seq"][n]) == pytest.approx(d["dkl_seq"], rel=1e-9, abs=1e-15)
        assert q["dbar"][n].numpy() == pytest.approx(np.array(d["dbar"]), rel=1e-9, abs=1e-15)
        assert float(q["second_order"][n]) == pytest.approx(d["bounds"]["second_order"], rel=1e-9, abs=1e-15)
        if d[fixed] == pytest.approx(target, rel=1e-9):  # same divergence: same bound formulas
            for k in ("pm_kl", "coupling", "adaptive_star", "linear_dbar", "mix_kl"):
                assert float(b[k][n]) == pytest.approx(d["bounds"][k], rel=1e-9, abs=1e-15), k


@pytest.mark.parametrize("T", [1, 3, 6])
def test_the_tree_dp_equals_the_chain_dp_on_the_tree_and_the_exact_engine(T):
    gen = torch.Generator().manual_seed(T)
    n_int = 2**T - 1
    z = torch.randn(2, n_int, generator=gen, dtype=torch.float64)
    zt = theta_logits(z, torch.randn(2, n_int, generator=gen, dtype=torch.float64), "eps", 0.05)
    r = torch.rand(2, 2**T, generator=gen, dtype=torch.float64)
    q = tree_terms(z, zt, r, T)
    pad = torch.zeros(2, 2**T, dtype=torch.float64)  # the leaves' rows: never used within T steps
    rc = torch.cat([torch.zeros(2, n_int, dtype=torch.float64), r], 1)
    c = chain_terms(
        torch.cat([z, pad], 1), torch.cat([zt, pad], 1), rc, torch.as_tensor(tree_transition(T)), T
    )
    for k in q:
        assert q[k].numpy() == pytest.approx(c[k].numpy(), rel=1e-10, abs=1e-15), k
    for n in range(2):
        tree = chain_to_tree(
            _to_pair(torch.cat([z[n], pad[n]]), torch.cat([zt[n], pad[n]]), rc[n], tree_transition(T), T)
        )
        d = exact_quantities(
            [tree[f"logp_roll_{t}"] for t in range(1, T + 1)],
            [tree[f"logp_theta_{t}"] for t in range(1, T + 1)],
            tree["reward"],
            tree["prompt_probs"],
        )
        assert float(q["error"][n]) == pytest.approx(d["error"], rel=1e-9, abs=1e-15)
        assert float(q["eps"][n]) == pytest.approx(0.05, rel=1e-9) and d["eps"] <= 0.05 * (1 + 1e-9)
        assert q["dbar"][n].numpy() == pytest.approx(np.array(d["dbar"]), rel=1e-9, abs=1e-15)
    with pytest.raises(ValueError, match="2\\^T - 1"):
        tree_terms(z[:, :-1], zt[:, :-1], r, T)


def test_the_tree_search_reaches_large_T_and_improves_on_its_start():
    T = 10
    start = search_trees(T, "delta", 1e-4, seed=1, restarts=2, iters=0, objectives=("abs_error",))
    found = search_trees(T, "delta", 1e-4, seed=1, restarts=2, iters=15, objectives=("abs_error",))
    assert found[0].S == 2 ** (T + 1) - 1 and found[0].T == T
    err = lambda p: abs(chain_quantities(p)["error"])  # noqa: E731
    assert max(map(err, found)) > max(map(err, start))


def test_gradients_flow_through_the_kl_root_and_the_dp():
    tr = torch.as_tensor(structure_transition("mod2", 0))
    z = torch.tensor([[0.3, -0.7]], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([[0.9, -0.4]], dtype=torch.float64, requires_grad=True)
    r = torch.tensor([[0.1, 0.8]], dtype=torch.float64, requires_grad=True)

    def f(z, c, r):
        return chain_terms(z, theta_logits(z, c, "delta", 1e-3), r, tr, 12)["error"].sum()

    assert torch.autograd.gradcheck(f, (z, c, r), eps=1e-6, atol=1e-8)


def test_parity_chain_has_the_closed_form_error_and_tree_transition_is_the_tree():
    T, e = 64, 5e-3
    d = chain_quantities(parity_chain(T, e))
    assert d["eps"] == pytest.approx(e) and d["delta"] == pytest.approx(-math.log1p(-e))
    assert d["error"] == pytest.approx((1 - (1 - 2 * e) ** T) / 2 - T * e, rel=1e-12)
    assert abs(d["error"]) >= T * e - 0.5
    tr = tree_transition(3)
    assert tr.shape == (15, 2) and tr[0].tolist() == [1, 2] and tr[6].tolist() == [13, 14]
    with pytest.raises(ValueError, match="e must"):
        parity_chain(4, 0.0)


def _small_tasks():
    cfg = dict(trees=[2], chains=[16], structures=["random8"], seeds=1, restarts=4, iters=4)
    return study.make_tasks(cfg)


def test_every_saved_instance_re_evaluates_to_its_ratio_and_no_bound_is_violated(tmp_path):
    results = run_tasks(study.run_task, _small_tasks(), progress=False)
    recs, errs = study.records(results, tmp_path)
    assert {r["fixed"] for r in recs} == {"delta", "eps"} and {r["T"] for r in recs} == {2, 16}
    assert {"unified", "unified_refined", "second_order", "adaptive_tv_refined"} <= {r["bound"] for r in recs}
    for r in recs:
        path = tmp_path / r["instance"]
        d = evaluate_chain_file(path) if r["kind"] == "chain" else evaluate_pair_file(path)
        assert d["error"] == r["error"] and d["bounds"][r["bound"]] == r["bound_value"]
        assert r["verdict"] in ("holds", "attained within rounding"), r
    # the tight pair of refined.py is found at T = 2: refined adaptive TV attained
    top = max(r["ratio"] for r in recs if r["bound"] == "adaptive_tv_refined" and r["T"] == 2)
    assert top == pytest.approx(1.0, rel=1e-9)
    assert study.exponents(errs, fit_from=2)[0]["worst_abs_error_slope"] > 0


def test_taskpool_caches_each_task_resumes_and_pools_agree(tmp_path):
    tasks = [t for t in _small_tasks() if t["T"] == 16][:3]
    first = run_tasks(study.run_task, tasks, cache_dir=tmp_path, progress=False)
    assert all(task_file(tmp_path, t["key"]).exists() for t in tasks)
    marker = json.loads(task_file(tmp_path, tasks[0]["key"]).read_text())
    assert marker["task"] == tasks[0]  # each file holds its task beside the result
    marker["result"]["resumed"] = True
    task_file(tmp_path, tasks[0]["key"]).write_text(json.dumps(marker))
    again = run_tasks(study.run_task, tasks, cache_dir=tmp_path, progress=False)
    assert again[0].get("resumed") is True  # loaded, not rerun
    pooled = run_tasks(study.run_task, tasks, workers=2, progress=False)
    assert json.dumps(pooled, sort_keys=True) == json.dumps(first, sort_keys=True)
    with pytest.raises(ValueError, match="unique"):
        run_tasks(study.run_task, tasks + tasks[:1], progress=False)
    with pytest.raises(ValueError, match="key"):
        run_tasks(study.run_task, [{"T": 2}], progress=False)


@pytest.mark.slow
def test_a_small_sweep_on_a_local_ray_instance_gives_the_same_json(local_ray):
    tasks = [t for t in _small_tasks() if t["T"] == 16][:2]
    local = run_tasks(study.run_task, tasks, progress=False)
    remote = run_tasks(study.run_task, tasks, ray="auto", progress=False)
    assert json.dumps(remote, sort_keys=True) == json.dumps(local, sort_keys=True)


def test_figures_job_collects_the_background_search_instead_of_searching_again(tmp_path, monkeypatch):
    """`trm-bounds figures` starts the search on worker processes (start_background); figures_job
    then writes the same files as an in-process run, without running a task itself."""
    from trm_bounds import taskpool

    small = dict(trees=[2], chains=[16], structures=["random8"], seeds=1, restarts=4, iters=4)
    monkeypatch.setattr(study, "config", lambda quick, heavy=False: small)
    name = study.start_background(quick=True)
    assert taskpool.has_background(name)
    real_run_tasks = taskpool.run_tasks
    monkeypatch.setattr(
        taskpool, "run_tasks", lambda *a, **k: pytest.fail("figures_job ran the search again")
    )
    recs = study.figures_job(tmp_path / "bg", quick=True)
    assert not taskpool.has_background(name)
    monkeypatch.setattr(taskpool, "run_tasks", real_run_tasks)
    again = study.figures_job(tmp_path / "here", quick=True)  # nothing started: searches in-process
    assert [r["path"] for r in recs] == [r["path"] for r in again]
    for r in recs:  # figures too: the same bytes on every run
        assert (tmp_path / "bg" / r["path"]).read_bytes() == (tmp_path / "here" / r["path"]).read_bytes(), r
