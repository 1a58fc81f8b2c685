"""The exact engine's fused pass (issue 16): the second-order value E_roll[Z] computed inside the
engine's backward pass, and the level value checks done inside the kernel's pass.

The fused second-order value must equal the independent `second_order_tree` (a separate numpy
level loop) on every kind of random pair, on both routes (numba kernel, torch level by level)
and with the split level inside the tree (TASK_LEAVES / chunk_leaves small). The in-kernel
checks must raise exactly the message `validate_pair_arrays` raises, for a bad level below
the split level, before anything is returned.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trm_bounds import _tree_kernel
from trm_bounds.adversarial import ADVERSARIAL_KINDS, adversarial_pair
from trm_bounds.exact import exact_quantities
from trm_bounds.pair import validate_pair_arrays
from trm_bounds.second_order import second_order_tree

needs_numba = pytest.mark.skipif(not _tree_kernel.available(), reason="numba kernel not available")
_MASK = {"rule": "max+avg", "delta": 0.05, "delta_avg": 0.02}


def _second_order_matches(out, lr, lt, pp):
    ref = second_order_tree(lr, lt, pp)
    if out["abs_continuous"]:
        got = out["bounds"]["second_order"]
        assert math.isfinite(got) and got >= 0.0
        assert abs(got - ref) <= 1e-12 * abs(ref) + 1e-300, (got, ref)
    else:
        assert "second_order" not in out["bounds"]
        assert any("second_order is not reported" in n for n in out["notes"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(ADVERSARIAL_KINDS), T=st.integers(1, 6),
       V=st.integers(2, 3), P=st.integers(1, 3), task=st.sampled_from([2, 8, 2**12]),
       jit=st.sampled_from(["0", "1"]), extras=st.booleans())  # fmt: skip
def test_fused_second_order_equals_second_order_tree(monkeypatch, seed, kind, T, V, P, task, jit, extras):
    lr, lt, R, pp = adversarial_pair(np.random.default_rng(seed), kind, P, V, T)
    monkeypatch.setenv("TRM_BOUNDS_JIT", jit)  # both set on every example (monkeypatch is shared)
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", task)
    kw = {"baseline": 0.4, "mask": _MASK} if extras else {}
    out = exact_quantities(lr, lt, R, pp, chunk_leaves=task, **kw)
    _second_order_matches(out, lr, lt, pp)


def test_fused_second_order_near_deterministic_and_one_level(monkeypatch):
    rng = np.random.default_rng(5)
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", 4)
    for T in (1, 2, 5):
        lr, lt, R, pp = adversarial_pair(rng, "near_det", 2, 2, T)
        out = exact_quantities(lr, lt, R, pp)
        _second_order_matches(out, lr, lt, pp)
    # identical policies: W > 0 nowhere, E_roll[Z] = 0 exactly
    lr, _, R, pp = adversarial_pair(rng, "dense", 1, 3, 4)
    assert exact_quantities(lr, lr, R, pp)["bounds"]["second_order"] == 0.0


def _pair(T=6, V=2, P=2, seed=0):
    lr, lt, R, pp = adversarial_pair(np.random.default_rng(seed), "dense", P, V, T)
    return [np.array(x) for x in lr], [np.array(x) for x in lt], np.array(R), np.array(pp)


def _spoil(x: np.ndarray, how: str) -> None:
    """Make one row of level x invalid in place (last row: inside the last task)."""
    row = x[-1, -1]
    if how == "nan":
        row[0] = np.nan
    elif how == "posinf":
        row[1] = np.inf
    elif how == "positive":
        row[0] = 0.25
    elif how == "sum":  # rows sum to 1 + 1e-6
        row[:] = np.log(np.exp(row) * (1.0 + 1e-6))
    elif how == "sum_tiny":  # 1 + 5e-9: inside the 1e-8 tolerance, no error
        row[:] = np.log(np.exp(row) * (1.0 + 5e-9))


@needs_numba
@pytest.mark.parametrize("how", ["nan", "posinf", "positive", "sum"])
@pytest.mark.parametrize("side,k", [("roll", 5), ("theta", 4), ("roll", 0)])
def test_in_kernel_checks_raise_the_validation_message(monkeypatch, how, side, k):
    monkeypatch.setenv("TRM_BOUNDS_JIT", "1")
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", 4)  # T = 6, V = 2: split level s = 4
    lr, lt, R, pp = _pair()
    _spoil((lr if side == "roll" else lt)[k], how)
    with pytest.raises(ValueError) as full:
        validate_pair_arrays(lr, lt, R, pp)
    assert f"logp_{side}_{k + 1}" in str(full.value)
    calls = []
    real = _tree_kernel.call
    monkeypatch.setattr(_tree_kernel, "call", lambda *a: (calls.append(a[0]), real(*a))[1])
    with pytest.raises(ValueError) as fused:
        exact_quantities(lr, lt, R, pp)
    assert str(fused.value) == str(full.value)
    assert calls, "the kernel route was not taken"


@needs_numba
def test_in_kernel_checks_keep_the_level_order_and_tolerance(monkeypatch):
    monkeypatch.setenv("TRM_BOUNDS_JIT", "1")
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", 4)
    lr, lt, R, pp = _pair()
    _spoil(lt[1], "nan")  # above the split level (checked by the full check)
    _spoil(lr[5], "sum")  # below it: logp_roll comes first, as in validate_pair_arrays
    with pytest.raises(ValueError, match=r"^logp_roll_6: rows do not sum to 1 \(max \|sum-1\| = 1e-06\)$"):
        exact_quantities(lr, lt, R, pp)
    lr, lt, R, pp = _pair()
    _spoil(lr[5], "sum_tiny")
    _spoil(lt[4], "sum_tiny")
    out = exact_quantities(lr, lt, R, pp)  # within tolerance: no error, same numbers as validated up front
    assert out == exact_quantities(lr, lt, R, pp, validate=False)
    validate_pair_arrays(lr, lt, R, pp)  # the full check agrees: no error


@needs_numba
def test_validate_false_skips_the_in_kernel_checks(monkeypatch):
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", 4)
    lr, lt, R, pp = _pair()
    _spoil(lr[5], "sum")
    out = exact_quantities(lr, lt, R, pp, validate=False)  # the caller vouches for the input
    assert math.isfinite(out["error"])
    with pytest.raises(ValueError, match="^logp_roll_6: rows do not sum to 1"):
        exact_quantities(lr, lt, R, pp)
