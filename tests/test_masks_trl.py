"""Tests for trm_bounds/masks/trl.py: TRL's vLLM importance-sampling modes and off-policy sequence mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _mask_batches import random_batch

from trm_bounds.masks import (
    TRL_IS_MODES,
    masked_policy_loss,
    off_policy_sequence_mask,
    sequence_mask,
    vllm_importance_sampling_ratio,
)


# --------------------------------------------------------------------------- TRL
def _slow_trl(lp, rlp, m, mode, lo, hi):
    B, T = lp.shape
    d = [[(lp[b, t] - rlp[b, t]) if m[b, t] else 0.0 for t in range(T)] for b in range(B)]
    if mode.startswith("sequence"):
        r = [[math.exp(sum(row))] for row in d]
    else:
        r = [[math.exp(x) for x in row] for row in d]
    out = []
    for row in r:
        new = []
        for x in row:
            if mode.endswith("truncate"):
                x = x if lo is None else max(x, lo)
                x = x if hi is None else min(x, hi)
            elif (lo is not None and x < lo) or (hi is not None and x > hi):
                x = 0.0
            new.append(x)
        out.append(new)
    return np.array(out)


@pytest.mark.parametrize("mode", TRL_IS_MODES)
@pytest.mark.parametrize("clip", [(None, 3.0), (0.5, 5.0), (0.5, None)])
def test_trl_importance_sampling_modes(mode, clip):
    lp, rlp, m = random_batch(seed=4, scale=0.6)
    got = vllm_importance_sampling_ratio(lp, rlp, m, mode, *clip)
    assert got.shape == ((6, 1) if mode.startswith("sequence") else (6, 12))
    np.testing.assert_allclose(got, _slow_trl(lp, rlp, m, mode, *clip), rtol=1e-12)


def test_trl_sequence_modes_use_the_product_without_clamp():
    lp = np.log(np.array([[2.0, 2.0], [1.0, 0.5]])) - 1.0  # log-probs <= 0, rollout's are -1
    m = np.ones((2, 2))
    r = vllm_importance_sampling_ratio(lp, np.full((2, 2), -1.0), m, "sequence_mask", None, 3.0)
    np.testing.assert_allclose(r, [[0.0], [0.5]])  # 2 * 2 = 4 > 3 masked
    r = vllm_importance_sampling_ratio(lp, np.full((2, 2), -1.0), m, "sequence_truncate", None, 3.0)
    np.testing.assert_allclose(r, [[3.0], [0.5]])
    r = vllm_importance_sampling_ratio(
        np.zeros((1, 3)), np.full((1, 3), -10.0), np.ones((1, 3)), "sequence_truncate", None, 1e20
    )
    assert r[0, 0] == pytest.approx(math.exp(30.0))  # no +-20 clamp in TRL
    with pytest.raises(ValueError, match="mode"):
        vllm_importance_sampling_ratio(lp, lp, m, "geometric")
    with pytest.raises(ValueError, match="clip_min and clip_max"):
        vllm_importance_sampling_ratio(lp, lp, m, "token_truncate", None, None)


def test_trl_off_policy_sequence_mask():
    lp = np.array([[-1.0, -1.0], [-1.0, -1.0], [-1.0, 0.0]])
    rlp = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # mean k1 = 1, 1, 0.5 (row 2: one valid token)
    m = np.array([[1, 1], [1, 1], [1, 0]])
    keep = off_policy_sequence_mask(np.array([1.0, -1.0, -1.0]), lp, rlp, m, threshold=0.9)
    assert keep.tolist() == [[True], [False], [False]]
    keep = off_policy_sequence_mask(np.array([1.0, -1.0, -1.0]), lp, rlp, m, threshold=1.0)
    assert keep.tolist() == [[True], [True], [True]]


def test_trl_sequence_mask_with_total_normalisation_is_trl_dapo():
    # TRL: per_token_loss * ratio, divided by all active tokens (mask never edited)
    lp, rlp, m = random_batch(seed=13, scale=0.3)
    L = np.random.default_rng(1).standard_normal(m.shape)
    ratio = vllm_importance_sampling_ratio(lp, rlp, m, "sequence_mask", None, 3.0)
    trl = float((L * ratio * m).sum() / m.sum())
    res = sequence_mask("seq-mis", lp, rlp, m, high=3.0)
    ours = masked_policy_loss(L * res.weights, m, res.seq_keep, normalize="total")
    assert float(ours) == pytest.approx(trl, rel=1e-12)
