"""TRL, re-implemented exactly: vLLM importance-sampling ratios and off-policy sequence masking.

Twins of TRL GRPOTrainer's ``vllm_importance_sampling_mode`` correction and of its
``get_off_policy_mask`` (DeepSeek-V3.2 Off-Policy Sequence Masking, OPSM); ECOSYSTEM.md section 2.
Inputs (B, T) as in `trm_bounds.masks.inputs`: ``log_prob``, ``rollout_log_prob`` of the sampled
tokens and a 0/1 ``response_mask``; numpy in, numpy out. TRL never edits the completion mask: its
ratios multiply the per-token loss, whose denominator stays the whole batch.
Checked against the installed trl 1.16.0 (tests/test_frameworks_trl.py): NaN sampling log-probs
(tokens vLLM could not score) give ratio 1 there (``nan_policy="ratio_one"``; the default here
raises), ``clip_min >= clip_max`` is refused, OPSM returns the mask's dtype.
"""

from __future__ import annotations

import math

import torch

from .._validate import check_nonneg_finite
from .inputs import (
    as_float_tensor,
    as_tensor,
    check_choice,
    check_compute_dtype,
    check_same_shape_2d,
    prepare_inputs,
    to_output,
    valid_positions,
)

__all__ = [
    "TRL_IS_MODES",
    "NAN_POLICIES",
    "vllm_importance_sampling_ratio",
    "vllm_is_ratio_metrics",
    "off_policy_sequence_mask",
]

TRL_IS_MODES: tuple[str, ...] = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")
NAN_POLICIES: dict[str, str] = {
    "raise": "NaN in a log-prob at a valid position raises ValueError (the default)",
    "ratio_one": "log rho = 0 (ratio 1, no correction) where either log-prob is NaN, as TRL 1.16",
}


def _nan_to_ratio_one(log_prob, rollout_log_prob, compute_dtype):
    """TRL's nan_to_num(d, nan=0): where either log-prob is NaN, both become 0 (so log rho = 0)."""
    lp, _ = as_float_tensor(log_prob, "log_prob", compute_dtype)
    rlp, _ = as_float_tensor(rollout_log_prob, "rollout_log_prob", compute_dtype)
    check_same_shape_2d(lp, "log_prob", rollout_log_prob=rlp)
    nan = torch.isnan(lp) | torch.isnan(rlp)
    zero = torch.zeros((), dtype=lp.dtype)
    return torch.where(nan, zero, lp), torch.where(nan, zero.to(rlp.dtype), rlp)


def vllm_importance_sampling_ratio(
    log_prob,
    rollout_log_prob,
    response_mask,
    mode: str = "sequence_mask",
    clip_min: float | None = None,
    clip_max: float | None = 3.0,
    *,
    nan_policy: str = "raise",
    compute_dtype: str = "float32",
):
    """TRL GRPOTrainer's vLLM importance-sampling correction (``vllm_importance_sampling_mode``).

        d_t = (log_prob - rollout_log_prob) * mask            (log rho, no clamp)
        token_*:    ratio (B, T) = exp(d_t)
        sequence_*: ratio (B, 1) = exp(sum_t d_t)             (the PRODUCT of token ratios)
        *_truncate: ratio = clamp(ratio, clip_min, clip_max)
        *_mask:     ratio = 0 where ratio < clip_min or ratio > clip_max (None: no bound on that side)
    The ratio multiplies the per-token loss; TRL never edits the completion mask, so the loss
    denominator is unchanged (``masked_policy_loss(normalize="total")``). Padding is zeroed with
    ``where``; -inf at padding gives no NaN (nor does TRL 1.16, whose ``nan_to_num`` zeroes the
    NaN that ``-inf * 0`` makes).

    Args:
      clip_min, clip_max: >= 0, finite or None; clip_min < clip_max when both are set (TRL's check).
      nan_policy: ``NAN_POLICIES``: "raise" (default: a NaN log-prob is a bug upstream) or
        "ratio_one" (TRL 1.16: ``nan_to_num(d, nan=0)``, the token gets ratio 1, TRL PR #6693).
      compute_dtype: "float32" (default) or "input" (TRL computes in the log-probs' dtype: the
        ratio then comes back in bfloat16 for bfloat16 log-probs, bit for bit with TRL).

    Returns float ratio (B, T) for token modes, (B, 1) for sequence modes.
    """
    check_choice("mode", mode, TRL_IS_MODES)
    check_choice("nan_policy", nan_policy, tuple(NAN_POLICIES))
    check_compute_dtype(compute_dtype)
    for name, v in (("clip_min", clip_min), ("clip_max", clip_max)):
        if v is not None:
            check_nonneg_finite(name, v)
    if clip_min is not None and clip_max is not None and not clip_min < clip_max:
        raise ValueError(f"clip_min ({clip_min}) must be less than clip_max ({clip_max})")
    if mode.endswith("truncate") and clip_min is None and clip_max is None:
        raise ValueError("clip_min and clip_max cannot both be None for a truncate mode")
    was_numpy = not isinstance(log_prob, torch.Tensor)
    if nan_policy == "ratio_one":
        log_prob, rollout_log_prob = _nan_to_ratio_one(log_prob, rollout_log_prob, compute_dtype)
    lr, valid, _m, _ = prepare_inputs(log_prob, rollout_log_prob, response_mask, compute_dtype)
    d = lr.sum(dim=-1, keepdim=True) if mode.startswith("sequence") else lr
    ratio = torch.exp(d)
    if mode.endswith("truncate"):
        ratio = torch.clamp(ratio, min=clip_min, max=clip_max)
    else:
        lo = -math.inf if clip_min is None else clip_min
        hi = math.inf if clip_max is None else clip_max
        ratio = ratio.masked_fill((ratio < lo) | (ratio > hi), 0.0)
    return to_output(ratio, was_numpy)


def vllm_is_ratio_metrics(
    ratio, response_mask, mode: str = "sequence_mask", prefix: str = "sampling/importance_sampling_ratio/"
) -> dict:
    """TRL's ``sampling/importance_sampling_ratio/{min,mean,max}`` of a ratio from
    ``vllm_importance_sampling_ratio(..., mode)`` (after truncation/masking: masked entries count as 0).

    Token modes ((B, T) ratio): over the valid tokens; sequence modes ((B, 1)): over every row,
    empty rows included (as TRL). No entry: all three are 0.0 (as TRL).
    """
    check_choice("mode", mode, TRL_IS_MODES)
    r, _ = as_float_tensor(ratio, "ratio", "input")
    m, _ = as_tensor(response_mask, "response_mask")
    sequence = mode.startswith("sequence")
    want = (m.shape[0], 1) if sequence else tuple(m.shape)
    if m.ndim != 2 or tuple(r.shape) != want:
        raise ValueError(f"ratio must have shape {want} for mode {mode!r}, got {tuple(r.shape)}")
    flat = r.flatten() if sequence else r[valid_positions(m)]
    if flat.numel() == 0:
        return {f"{prefix}min": 0.0, f"{prefix}mean": 0.0, f"{prefix}max": 0.0}
    stats = {"min": flat.min(), "mean": flat.mean(), "max": flat.max()}
    return {f"{prefix}{k}": v.item() for k, v in stats.items()}


def off_policy_sequence_mask(
    advantages, log_prob, rollout_log_prob, response_mask, threshold: float, *, compute_dtype: str = "float32"
):
    """TRL ``get_off_policy_mask`` (DeepSeek-V3.2 Off-Policy Sequence Masking); -> (B, 1) keep.

        keep_i = A_i >= 0  or  (1/max(T_i,1)) sum_t (rollout_log_prob - log_prob) <= threshold
    (the mean k1, which can be negative). Returned in ``response_mask``'s dtype, as TRL
    (1 = keep, 0 = drop; bool for a bool mask). ``compute_dtype="input"``: TRL's arithmetic in the
    log-probs' dtype (bit for bit for bfloat16); the default computes half precision in float32.
    """
    check_nonneg_finite("threshold", threshold)
    lr, valid, m, was_numpy = prepare_inputs(log_prob, rollout_log_prob, response_mask, compute_dtype)
    a, _ = as_float_tensor(advantages, "advantages")
    a = a.reshape(-1)
    if a.shape[0] != lr.shape[0]:
        raise ValueError(f"advantages has {a.shape[0]} entries but log_prob has {lr.shape[0]} rows")
    if torch.isnan(a).any():
        raise ValueError("advantages contains NaN")
    # TRL's sum of (rollout - log_prob) * mask runs in the promoted dtype (bf16 log-probs with a float32
    # mask: float32), then divides by the mask's own row sum clamped at 1.0
    avg_k1 = (-lr).to(torch.promote_types(lr.dtype, m.dtype)).sum(dim=-1) / m.sum(dim=-1).clamp(min=1.0)
    keep = (a >= 0) | (avg_k1 <= threshold)
    return to_output(keep.unsqueeze(-1).to(m.dtype), was_numpy)
