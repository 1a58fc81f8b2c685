"""Tests for trm_bounds/masks/loss.py: masked_policy_loss, verl's four modes and two denominators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _mask_batches import random_batch

from trm_bounds.masks import (
    LOSS_AGG_MODES,
    masked_policy_loss,
)


# --------------------------------------------------------------------------- loss
def _slow_loss(L, m, keep, mode, normalize, factor=None):
    B, T = L.shape
    kept = [[bool(m[b, t]) and bool(keep[b]) for t in range(T)] for b in range(B)]
    den_tok = [[bool(m[b, t]) for t in range(T)] for b in range(B)] if normalize == "total" else kept
    num = [sum(L[b, t] for t in range(T) if kept[b][t]) for b in range(B)]
    if mode == "token-sum":
        return sum(num)
    if mode == "token-mean":
        return sum(num) / max(1, sum(map(sum, den_tok)))
    if mode == "seq-mean-token-mean":
        num = [num[b] / max(1, sum(den_tok[b])) for b in range(B)]
    n_seq = B if normalize == "total" else sum(any(r) for r in kept)
    out = sum(num) / max(1, n_seq)
    return out / (factor or T) if mode == "seq-mean-token-sum-norm" else out


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize("normalize", ["total", "kept"])
def test_masked_policy_loss_matches_slow_twin(mode, normalize):
    lp, rlp, m = random_batch(seed=12)
    L = np.random.default_rng(0).standard_normal(m.shape)
    keep = np.array([True, False, True, True, False, True])
    got = masked_policy_loss(L, m, keep, loss_agg_mode=mode, normalize=normalize)
    assert float(got) == pytest.approx(_slow_loss(L, m, keep, mode, normalize), rel=1e-12)
    got = masked_policy_loss(L, m, keep, loss_agg_mode=mode, normalize=normalize, loss_scale_factor=7)
    assert float(got) == pytest.approx(_slow_loss(L, m, keep, mode, normalize, 7), rel=1e-12)


def test_masked_policy_loss_total_vs_kept_by_hand_and_gradient():
    L = torch.tensor([[1.0, 1.0], [4.0, 4.0]], requires_grad=True)
    m = torch.ones(2, 2)
    keep = torch.tensor([True, False])
    assert masked_policy_loss(L, m, keep, normalize="total").item() == pytest.approx(0.5)  # 2 / 4 tokens
    assert masked_policy_loss(L, m, keep, normalize="kept").item() == pytest.approx(1.0)  # 2 / 2 tokens
    assert masked_policy_loss(L, m, keep, loss_agg_mode="seq-mean-token-sum").item() == pytest.approx(1.0)
    out = masked_policy_loss(L, m, keep)
    out.backward()
    assert L.grad.tolist() == [[0.25, 0.25], [0.0, 0.0]]
    nan = torch.tensor([[1.0, float("nan")], [1.0, 1.0]])
    assert masked_policy_loss(nan, torch.tensor([[1, 0], [1, 1]]), None).item() == pytest.approx(1.0)
    assert masked_policy_loss(L, m, torch.zeros(2, dtype=torch.bool), normalize="kept").item() == 0.0
    with pytest.raises(ValueError, match="seq_keep must have shape"):
        masked_policy_loss(L, m, torch.ones(3))
    with pytest.raises(ValueError, match="normalize"):
        masked_policy_loss(L, m, keep, normalize="batch")
    with pytest.raises(ValueError, match="loss_agg_mode"):
        masked_policy_loss(L, m, keep, loss_agg_mode="sum")
