"""TRL, re-implemented exactly: vLLM importance-sampling ratios and off-policy sequence masking.

Twins of TRL GRPOTrainer's ``vllm_importance_sampling_mode`` correction and of its
``get_off_policy_mask`` (DeepSeek-V3.2 Off-Policy Sequence Masking, OPSM); ECOSYSTEM.md section 2.
Inputs (B, T) as in `trm_bounds.masks.inputs`: ``log_prob``, ``rollout_log_prob`` of the sampled
tokens and a 0/1 ``response_mask``; numpy in, numpy out. TRL never edits the completion mask: its
ratios multiply the per-token loss, whose denominator stays the whole batch.
"""

from __future__ import annotations

import math

import torch

from .._validate import check_nonneg_finite
from .inputs import as_float_tensor, check_choice, prepare_inputs, to_output

__all__ = ["TRL_IS_MODES", "vllm_importance_sampling_ratio", "off_policy_sequence_mask"]

TRL_IS_MODES: tuple[str, ...] = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def vllm_importance_sampling_ratio(
    log_prob,
    rollout_log_prob,
    response_mask,
    mode: str = "sequence_mask",
    clip_min: float | None = None,
    clip_max: float | None = 3.0,
):
    """TRL GRPOTrainer's vLLM importance-sampling correction (``vllm_importance_sampling_mode``).

        d_t = (log_prob - rollout_log_prob) * mask            (log rho, no clamp)
        token_*:    ratio (B, T) = exp(d_t)
        sequence_*: ratio (B, 1) = exp(sum_t d_t)             (the PRODUCT of token ratios)
        *_truncate: ratio = clamp(ratio, clip_min, clip_max)
        *_mask:     ratio = 0 where ratio < clip_min or ratio > clip_max (None: no bound on that side)
    The ratio multiplies the per-token loss; TRL never edits the completion mask, so the loss
    denominator is unchanged (``masked_policy_loss(normalize="total")``). Padding is zeroed with
    ``where`` rather than multiplied, so padding that holds -inf gives no NaN (TRL would).

    Returns float ratio (B, T) for token modes, (B, 1) for sequence modes.
    """
    check_choice("mode", mode, TRL_IS_MODES)
    for name, v in (("clip_min", clip_min), ("clip_max", clip_max)):
        if v is not None:
            check_nonneg_finite(name, v)
    if mode.endswith("truncate") and clip_min is None and clip_max is None:
        raise ValueError("clip_min and clip_max cannot both be None for a truncate mode")
    lr, valid, _m, was_numpy = prepare_inputs(log_prob, rollout_log_prob, response_mask)
    d = lr.sum(dim=-1, keepdim=True) if mode.startswith("sequence") else lr
    ratio = torch.exp(d)
    if mode.endswith("truncate"):
        ratio = torch.clamp(ratio, min=clip_min, max=clip_max)
    else:
        lo = -math.inf if clip_min is None else clip_min
        hi = math.inf if clip_max is None else clip_max
        ratio = ratio.masked_fill((ratio < lo) | (ratio > hi), 0.0)
    return to_output(ratio, was_numpy)


def off_policy_sequence_mask(advantages, log_prob, rollout_log_prob, response_mask, threshold: float):
    """TRL ``get_off_policy_mask`` (DeepSeek-V3.2 Off-Policy Sequence Masking); -> (B, 1) bool.

        keep_i = A_i >= 0  or  (1/max(T_i,1)) sum_t (rollout_log_prob - log_prob) <= threshold
    (the mean k1, which can be negative).
    """
    check_nonneg_finite("threshold", threshold)
    lr, valid, _m, was_numpy = prepare_inputs(log_prob, rollout_log_prob, response_mask)
    a, _ = as_float_tensor(advantages, "advantages")
    a = a.reshape(-1)
    if a.shape[0] != lr.shape[0]:
        raise ValueError(f"advantages has {a.shape[0]} entries but log_prob has {lr.shape[0]} rows")
    if torch.isnan(a).any():
        raise ValueError("advantages contains NaN")
    avg_k1 = (-lr).sum(dim=-1) / valid.sum(dim=-1).clamp_min(1).to(lr.dtype)
    keep = (a >= 0) | (avg_k1 <= threshold)
    return to_output(keep.unsqueeze(-1), was_numpy)
