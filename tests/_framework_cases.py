"""Random (B, T) cases for the parity tests against the installed verl and TRL.

Each case: log_prob, rollout_log_prob (torch, in the case's dtype), a 0/1 response_mask in a random
dtype with empty rows, log-ratios from 1e-3 up to +-30 (beyond verl's +-20 clamp), and thresholds
drawn both at random and exactly at a realised statistic (the "keep iff <=" boundary).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["DTYPES", "MASK_DTYPES", "random_case", "same_metrics", "boundary_or_random"]

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
MASK_DTYPES = (torch.float32, torch.int64, torch.bool, torch.bfloat16)


def random_case(rng: np.random.Generator, dtype: torch.dtype):
    """(log_prob, rollout_log_prob, response_mask) with at least one valid token."""
    B, T = int(rng.integers(1, 9)), int(rng.integers(1, 17))
    lengths = rng.integers(0, T + 1, B)
    if rng.random() < 0.3:
        lengths[rng.integers(0, B)] = 0  # an empty row
    if lengths.max() == 0:
        lengths[rng.integers(0, B)] = int(rng.integers(1, T + 1))
    m = np.arange(T)[None, :] < lengths[:, None]
    scale = float(rng.choice([1e-3, 0.02, 0.2, 1.0, 5.0, 30.0]))
    lr = np.clip(scale * rng.standard_normal((B, T)), -30.0, 30.0)
    if rng.random() < 0.2:
        lr[rng.integers(0, B), rng.integers(0, T)] = float(rng.choice([-30.0, 30.0, 20.0, -20.0, 0.0]))
    rlp = -rng.uniform(0.01, 5.0, (B, T))
    mask_dtype = MASK_DTYPES[int(rng.integers(0, len(MASK_DTYPES)))]
    lp_t = torch.tensor(np.minimum(rlp + lr, 0.0), dtype=torch.float64).to(dtype)  # log-probs <= 0
    rlp_t = torch.tensor(rlp, dtype=torch.float64).to(dtype)
    return lp_t, rlp_t, torch.from_numpy(m).to(mask_dtype)


def boundary_or_random(rng, values: torch.Tensor, valid: torch.Tensor, lo: float, hi: float) -> float:
    """A threshold: half the time exactly a realised positive value of `values` (a boundary case),
    else log-uniform in [lo, hi]."""
    v = values[valid & (values > 0) & torch.isfinite(values)]
    if v.numel() and rng.random() < 0.5:
        return float(v[int(rng.integers(0, v.numel()))])
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def same_metrics(ours: dict, theirs: dict, rel: float) -> str | None:
    """None when both have the same keys and values within `rel` (NaN == NaN), else a message."""
    theirs = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in theirs.items()}
    if set(ours) != set(theirs):
        return f"keys differ: {sorted(set(ours) ^ set(theirs))}"
    for k, v in theirs.items():
        a = ours[k]
        if (math.isnan(a) and math.isnan(v)) or a == v:
            continue
        if not math.isclose(a, v, rel_tol=rel, abs_tol=rel * 1e-3):
            return f"{k}: ours {a!r}, theirs {v!r}"
    return None
