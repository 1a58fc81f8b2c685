"""Tests of trm_bounds._tree_kernel: the optional fused CPU kernel of the exact tree engine.

The kernel must give the torch level-by-level path's numbers (to ~1e-14 relative: only the
summation order differs) whatever the number of threads; tests/test_engine_reference.py
holds both paths to outputs recorded before the kernel existed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trm_bounds import _tree_kernel
from trm_bounds.adversarial import adversarial_pair
from trm_bounds.exact import exact_quantities

needs_numba = pytest.mark.skipif(_tree_kernel.numba is None, reason="numba not installed (extra 'fast')")


@given(n_rows=st.integers(1, 5000), leaves=st.integers(1, 2**14))
def test_task_bounds_partition_rows_into_small_tasks(n_rows, leaves):
    b = _tree_kernel.task_bounds(n_rows, leaves)
    assert b[0] == 0 and b[-1] == n_rows and np.all(np.diff(b) >= 1)
    per = np.diff(b)
    # every task holds <= TASK_LEAVES leaves, or one row when a row alone is bigger
    assert np.all((per * leaves <= _tree_kernel.TASK_LEAVES) | (per == 1))


def test_available_follows_the_switch(monkeypatch):
    monkeypatch.setenv("TRM_BOUNDS_JIT", "0")
    assert not _tree_kernel.available()
    monkeypatch.setenv("TRM_BOUNDS_JIT", "1")
    assert _tree_kernel.available() == (_tree_kernel.numba is not None)


def _numbers(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _numbers(v, f"{prefix}.{k}")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _numbers(v, f"{prefix}[{i}]")
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield prefix, float(d)


@needs_numba
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["dense", "sparse", "near_det", "zeros_roll",
                                                            "zeros_theta", "extreme", "small_delta"]),
       T=st.integers(1, 7), threads=st.sampled_from(["1", "2", "3"]))
def test_kernel_equals_torch_path(monkeypatch, seed, kind, T, threads):
    # monkeypatch is shared across examples: every example sets both variables it reads
    lr, lt, R, pp = adversarial_pair(np.random.default_rng(seed), kind, 2, 2, T)
    monkeypatch.setenv("TRM_BOUNDS_JIT", "0")
    ref = exact_quantities(lr, lt, R, pp, chunk_leaves=8)
    monkeypatch.setenv("TRM_BOUNDS_JIT", "1")
    monkeypatch.setenv("TRM_BOUNDS_THREADS", threads)
    new = exact_quantities(lr, lt, R, pp)
    a, b = dict(_numbers(new)), dict(_numbers(ref))
    assert a.keys() == b.keys()
    for k in b:
        x, y = a[k], b[k]
        if math.isinf(y) or math.isnan(y):
            assert x == y or (math.isnan(x) and math.isnan(y)), k
        else:
            assert abs(x - y) <= 1e-12 * abs(y) + 1e-15, (k, x, y)


@needs_numba
@pytest.mark.parametrize("jit", ["0", "1"])
def test_eps_counts_contexts_only_pi_theta_reaches(monkeypatch, jit):
    """eps = max TV over contexts reachable under either policy: context "1" has pi_roll = 0 and
    pi_theta = 1/2, and its TV (= 1) is the largest; roll-reachable rows alone would give 1/2."""
    monkeypatch.setenv("TRM_BOUNDS_JIT", jit)
    h = math.log(0.5)
    lr = [np.array([[[0.0, -np.inf]]]), np.array([[[0.0, -np.inf], [0.0, -np.inf]]])]
    lt = [np.array([[[h, h]]]), np.array([[[0.0, -np.inf], [-np.inf, 0.0]]])]
    q = exact_quantities(lr, lt, np.array([[0.0, 0.0, 0.0, 1.0]]), np.ones(1))
    assert q["eps"] == 1.0 and q["delta"] == math.inf and not q["abs_continuous"]
    assert q["J_theta"] == 0.5 and q["error"] == 0.5
