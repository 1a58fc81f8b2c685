"""Sample estimators of the token KL from log rho, and their per-sequence aggregates.

docs/theory.md section 7: with log rho_t = log pi_theta(y_t|c_t) - log pi_roll(y_t|c_t) of a sampled
token, unbiased or one-sided estimators of KL(pi_roll || pi_theta)(c_t) are
    k1 = -log rho,  k2 = 1/2 (log rho)^2,  k3 = rho - 1 - log rho   (and |log rho|, v1's writing).
A sequence rule aggregates them over the row's valid tokens (max, mean, sum). Inputs (B, T) as in
`trm_bounds.masks.inputs`; numpy in, numpy out.
"""

from __future__ import annotations

import math

import torch

from .. import divergences
from .inputs import as_float_tensor, as_tensor, check_choice, check_same_shape_2d, to_output, valid_positions

__all__ = ["TOKEN_ESTIMATORS", "SEQUENCE_AGGREGATES", "token_divergence", "sequence_stat", "row_stat"]

TOKEN_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3", "abs_log")
SEQUENCE_AGGREGATES: tuple[str, ...] = ("max", "mean", "sum")


def token_divergence(log_ratio, estimator: str):
    """Per-token sample estimator of KL(pi_roll || pi_theta) from log rho; (B, T) -> (B, T).

        k1 = -log rho,  k2 = 1/2 (log rho)^2,  k3 = rho - 1 - log rho (accurate near rho = 1),
        abs_log = |log rho|

    No clamp here: callers that follow verl clamp log rho to +-SAFETY_BOUND first.
    k2/k1/abs_log keep the input dtype; k3 is computed in float64 (trm_bounds.divergences.k3).
    """
    t, was_numpy = as_float_tensor(log_ratio, "log_ratio")
    check_choice("estimator", estimator, TOKEN_ESTIMATORS)
    if estimator == "abs_log":
        if torch.isnan(t).any():
            raise ValueError("log_ratio contains NaN")
        return to_output(t.abs(), was_numpy)
    return to_output(divergences.SAMPLE_ESTIMATORS[estimator](t, dtype=t.dtype), was_numpy)


def sequence_stat(values, response_mask, agg: str):
    """Per-sequence aggregate over valid tokens; (B, T), (B, T) -> (B,).

        max: max_{t valid} v_t;  mean: (1/T_i) sum_{t valid} v_t;  sum: sum_{t valid} v_t
    with T_i = sum_t response_mask[i, t]. A row with no valid token gives 0 (verl: it passes).
    """
    v, was_numpy = as_float_tensor(values, "values")
    m, _ = as_tensor(response_mask, "response_mask")
    check_same_shape_2d(v, "values", response_mask=m)
    check_choice("agg", agg, SEQUENCE_AGGREGATES)
    return to_output(row_stat(v, valid_positions(m), agg), was_numpy)


def row_stat(v: torch.Tensor, valid: torch.Tensor, agg: str) -> torch.Tensor:
    """`sequence_stat` on validated tensors: v (B, T) float, valid (B, T) bool -> (B,) in v's dtype."""
    if agg == "max":
        if v.shape[-1] == 0:  # T = 0: every row is empty (amax refuses an empty axis)
            return torch.zeros(v.shape[:-1], dtype=v.dtype, device=v.device)
        mx = v.masked_fill(~valid, -math.inf).amax(dim=-1)
        return torch.where(valid.any(dim=-1), mx, torch.zeros((), dtype=v.dtype))
    s = torch.where(valid, v, torch.zeros((), dtype=v.dtype)).sum(dim=-1)
    if agg == "sum":
        return s
    return s / valid.sum(dim=-1).clamp_min(1).to(v.dtype)
