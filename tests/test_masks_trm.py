"""Tests for trm_bounds/masks/trm.py: trm_mask (TRM-Max / TRM-Avg), its verl equivalence and metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _mask_batches import random_batch, small_lr, small_mask
from hypothesis import assume, example, given, note
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trm_bounds.masks import (
    rollout_rejection_mask,
    trm_mask,
)
from trm_bounds.masks.trm import acceptance_metrics, fraction


# --------------------------------------------------------------------------- TRM
def _as_log_probs(lr):
    """(log_prob, rollout_log_prob) <= 0 with difference exactly lr (masks refuse log-probs > 0)."""
    return np.minimum(lr, 0.0), -np.maximum(lr, 0.0)


@given(lr=small_lr, m=small_mask, delta=st.floats(1e-4, 1.0))
@example(lr=np.full((4, 7), 0.2), m=np.ones((4, 7), np.int8), delta=0.5 * 0.2**2)
def test_trm_max_k2_equals_verl_seq_max_k2(lr, m, delta):
    assume(m.any())  # verl refuses a batch without a valid token (tested on its own)
    mask, keep, _ = trm_mask(*_as_log_probs(lr), m, mode="max", max_threshold=delta)
    want, _ = rollout_rejection_mask(lr, m, "seq_max_k2", delta)
    assert mask.dtype == m.dtype
    np.testing.assert_array_equal(mask, want.astype(m.dtype))


@given(
    lr=small_lr,
    m=small_mask,
    d1=st.floats(0.0, 0.5),
    d2=st.floats(0.0, 0.5),
    mode=st.sampled_from(["max", "avg", "max+avg"]),
)
def test_trm_mask_monotone_in_threshold(lr, m, d1, d2, mode):
    lo, hi = sorted((d1, d2))
    _, k_lo, _ = trm_mask(*_as_log_probs(lr), m, mode=mode, max_threshold=lo, avg_threshold=lo)
    _, k_hi, _ = trm_mask(*_as_log_probs(lr), m, mode=mode, max_threshold=hi, avg_threshold=hi)
    note(f"lo={lo} hi={hi} k_lo={k_lo} k_hi={k_hi}")
    assert np.all(~k_lo | k_hi)


kl_arrays = arrays(np.float64, (4, 7), elements=st.floats(0.0, 0.01, allow_nan=False) | st.just(np.inf))


@given(kl=kl_arrays, m=small_mask, delta=st.floats(0.0, 0.01))
@example(kl=np.full((4, 7), 1e-3), m=np.ones((4, 7), np.int8), delta=1e-3)
def test_trm_max_exact_kl_keeps_iff_every_token_within_delta(kl, m, delta):
    lp, rlp = np.zeros((4, 7)), np.zeros((4, 7))
    _, keep, _ = trm_mask(lp, rlp, m, mode="max", max_threshold=delta, exact_kl=kl)
    want = [all(kl[b, t] <= delta for t in range(7) if m[b, t]) for b in range(4)]
    assert keep.tolist() == want
    _, keep, _ = trm_mask(lp, rlp, m, mode="avg", avg_threshold=delta, exact_kl=kl)
    means = [np.mean([kl[b, t] for t in range(7) if m[b, t]]) if m[b].any() else 0.0 for b in range(4)]
    assert keep.tolist() == [bool(x <= delta) for x in means]


def test_trm_mask_empty_rows_all_masked_and_metrics():
    lp, rlp, m = random_batch(seed=5, scale=0.02)
    mask, keep, met = trm_mask(lp, rlp, m, mode="max+avg", max_threshold=1e-3, avg_threshold=1e-3)
    assert keep[0] and mask[0].sum() == 0  # empty row: kept vacuously, nothing in the loss
    _, rs = rollout_rejection_mask(lp - rlp, m, "seq_max_k2,seq_mean_k3", "0.001,0.001")
    for k, v in rs.items():  # verl aliases equal verl's own metrics
        assert met[k] == v
    n_rej = sum(1 for b in range(6) if m[b].any() and not keep[b])
    assert met["trm/seq_masked_fraction"] == pytest.approx(n_rej / 5)
    assert met["trm/acceptance"] == pytest.approx(1 - n_rej / 5)
    z = np.zeros_like(m)
    mask, keep, met = trm_mask(lp, rlp, z, mode="max", max_threshold=0.1)
    assert mask.sum() == 0 and keep.all() and met["trm/num_seqs"] == 0 and met["trm/acceptance"] == 1.0


def test_trm_mask_input_errors_name_the_argument():
    lp, rlp, m = random_batch(seed=6)
    bad = lp.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="log_prob contains NaN"):
        trm_mask(bad, rlp, m, max_threshold=0.1)
    bad = rlp.copy()
    bad[1, 0] = -np.inf
    with pytest.raises(ValueError, match="rollout_log_prob contains -inf"):
        trm_mask(lp, bad, m, max_threshold=0.1)
    bad[1, 0] = np.inf
    with pytest.raises(ValueError, match=r"rollout_log_prob contains \+inf"):
        trm_mask(lp, bad, m, max_threshold=0.1)
    with pytest.raises(ValueError, match="rollout_log_prob has shape"):
        trm_mask(lp, rlp[:, :-1], m, max_threshold=0.1)
    with pytest.raises(ValueError, match="response_mask has shape"):
        trm_mask(lp, rlp, m[:-1], max_threshold=0.1)
    with pytest.raises(ValueError, match="exact_kl has shape"):
        trm_mask(lp, rlp, m, max_threshold=0.1, exact_kl=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="exact_kl must be >= 0"):
        trm_mask(lp, rlp, m, max_threshold=0.1, exact_kl=-np.ones_like(lp))
    with pytest.raises(ValueError, match="max_threshold is required"):
        trm_mask(lp, rlp, m, mode="max")
    with pytest.raises(ValueError, match="avg_threshold"):
        trm_mask(lp, rlp, m, mode="avg", avg_threshold=-1.0)
    with pytest.raises(ValueError, match="max_estimator"):
        trm_mask(lp, rlp, m, max_threshold=0.1, max_estimator="k1")
    with pytest.raises(ValueError, match="log_prob must be a floating-point"):
        trm_mask(lp.astype(np.int64), rlp, m, max_threshold=0.1)
    # padding may hold anything; -inf log_prob at a valid token means rho = 0: rejected
    pad = lp.copy()
    pad[m == 0] = np.nan
    a = trm_mask(pad, rlp, m, max_threshold=0.1)[1]
    assert np.array_equal(a, trm_mask(lp, rlp, m, max_threshold=0.1)[1])
    neg = lp.copy()
    neg[1, 0] = -np.inf
    assert not trm_mask(neg, rlp, m, max_threshold=100.0)[1][1]


def test_acceptance_metrics_count_non_empty_rows_and_valid_tokens():
    valid = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])
    keep = torch.tensor([False, False, True])
    met = acceptance_metrics("x", keep, valid, valid.any(dim=-1))
    assert met == {
        "x/acceptance": 0.5,  # the empty row 1 is neither accepted nor rejected
        "x/seq_masked_fraction": 0.5,
        "x/token_masked_fraction": 2 / 3,
        "x/num_seqs": 2.0,
        "x/num_tokens": 3.0,
    }
    assert fraction(torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.bool)) == 0.0
