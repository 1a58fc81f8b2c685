"""Tests for trm_bounds/masks/estimators.py: k1/k2/k3/|log rho| per token, per-sequence aggregates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _mask_batches import small_mask
from hypothesis import example, given, note
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trm_bounds.masks import sequence_stat, token_divergence
from trm_bounds.masks.estimators import row_stat


@given(x=arrays(np.float64, (20,), elements=st.floats(-30, 30, allow_nan=False)))
@example(x=np.array([1e-12, -1e-12, 0.0, 20.0, -20.0, np.log(0.01), np.log(100.0)] + [0.5] * 13))
def test_k2_symmetric_and_k3_nonnegative(x):
    np.testing.assert_array_equal(token_divergence(x, "k2"), token_divergence(-x, "k2"))
    assert (token_divergence(x, "k3") >= 0).all()
    assert (token_divergence(x.astype(np.float32), "k3") >= 0).all()


def test_k2_k3_published_values():
    # THEORY.md C16 prints k2(0.01) = k2(100) = 10.6 and k3(0.01) = 3.6; closed forms to rounding
    k2 = token_divergence(np.log([0.01, 100.0]), "k2")
    assert k2.tolist() == pytest.approx([0.5 * math.log(100.0) ** 2] * 2, rel=1e-15, abs=0)
    k3 = float(token_divergence(np.log([0.01]), "k3")[0])
    assert k3 == pytest.approx(0.01 - 1.0 - math.log(0.01), rel=1e-15, abs=0)
    assert [round(float(x), 1) for x in k2] == [10.6, 10.6] and round(k3, 1) == 3.6


def _slow_sequence_stat(v, m, agg):
    """One row at a time over the valid tokens (Python floats); an empty row gives 0."""
    out = []
    for row, mrow in zip(v, m):
        vals = [float(x) for x, keep in zip(row, mrow) if keep]
        if not vals:
            out.append(0.0)
        else:
            out.append({"max": max(vals), "sum": math.fsum(vals), "mean": math.fsum(vals) / len(vals)}[agg])
    return out


@given(
    v=arrays(np.float64, (4, 7), elements=st.floats(-50, 50, allow_nan=False)),
    m=small_mask,
    agg=st.sampled_from(["max", "mean", "sum"]),
)
@example(v=np.full((4, 7), -3.0), m=np.zeros((4, 7), np.int8), agg="max")  # empty rows give 0, not -inf
def test_sequence_stat_matches_a_loop_over_valid_tokens(v, m, agg):
    padded = np.where(m > 0, v, np.nan)  # padding may hold anything
    got = sequence_stat(padded, m, agg)
    want = _slow_sequence_stat(v, m, agg)
    note(f"got={got} want={want}")
    assert got.tolist() == pytest.approx(want, rel=1e-14, abs=1e-12)
    t = torch.from_numpy(v)
    assert torch.equal(row_stat(t, torch.from_numpy(m) > 0, agg), sequence_stat(t, torch.from_numpy(m), agg))


def test_estimator_and_aggregate_errors_name_the_argument():
    lr = np.zeros((2, 3))
    with pytest.raises(ValueError, match="^estimator must be one of 'k1', 'k2', 'k3', 'abs_log'"):
        token_divergence(lr, "k4")
    with pytest.raises(ValueError, match="^log_ratio contains NaN"):
        token_divergence(np.array([[0.0, np.nan]]), "abs_log")
    with pytest.raises(ValueError, match="^agg must be one of"):
        sequence_stat(lr, np.ones((2, 3)), "median")
    with pytest.raises(ValueError, match="^response_mask has shape"):
        sequence_stat(lr, np.ones((2, 4)), "max")
    assert token_divergence(np.array([[-0.5, 2.0]]), "abs_log").tolist() == [[0.5, 2.0]]
    assert token_divergence(np.array([[-0.5, 2.0]]), "k1").tolist() == [[0.5, -2.0]]
