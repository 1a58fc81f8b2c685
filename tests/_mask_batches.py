"""Shared (B, T) batches and hypothesis strategies for the tests of trm_bounds/masks/."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

__all__ = ["random_batch", "small_lr", "small_mask"]


def random_batch(seed=0, B=6, T=12, scale=0.1, empty_row=True):
    rng = np.random.default_rng(seed)
    rlp = -rng.uniform(0.01, 3.0, (B, T))
    lp = np.minimum(rlp + scale * rng.standard_normal((B, T)), 0.0)  # log-probs are <= 0
    lengths = rng.integers(1, T + 1, B)
    if empty_row:
        lengths[0] = 0
    m = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float32)
    return lp, rlp, m


small_lr = arrays(np.float64, (4, 7), elements=st.floats(-1.5, 1.5, allow_nan=False, width=64))
small_mask = arrays(np.int8, (4, 7), elements=st.integers(0, 1))
