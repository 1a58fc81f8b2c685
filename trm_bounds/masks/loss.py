"""The policy-gradient loss under a mask: verl's four aggregation modes, two denominators.

``masked_policy_loss`` aggregates a (B, T) per-token loss over the tokens a mask keeps
(``trm_mask``'s ``seq_keep`` or a ``MaskResult``'s mask), dividing either by the whole batch
(the TRM paper, TRL, OpenRLHF, NeMo-RL) or by what survives the mask (verl's default).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .inputs import as_tensor, check_choice, check_same_shape_2d, valid_positions

__all__ = ["LOSS_AGG_MODES", "NORMALIZE_CHOICES", "masked_policy_loss"]

LOSS_AGG_MODES: tuple[str, ...] = (
    "token-mean",
    "token-sum",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
)
NORMALIZE_CHOICES: dict[str, str] = {
    "total": "divide by the whole batch (TRM paper, TRL, OpenRLHF, NeMo-RL)",
    "kept": "divide by what survives the mask (verl's default)",
}


def masked_policy_loss(
    loss_mat,
    response_mask,
    seq_keep=None,
    *,
    loss_agg_mode: str = "token-mean",
    normalize: str = "total",
    loss_scale_factor: float | None = None,
):
    """Aggregate a (B, T) per-token loss under a mask, with verl's modes and a choice of denominator.

    kept = response_mask * keep, keep = seq_keep (B,) broadcast over T, or a (B, T) token keep.
        token-mean:              sum_{b,t} loss*kept / N_tok
        token-sum:               sum_{b,t} loss*kept  (verl 0.9.1; no denominator, normalize is moot)
        seq-mean-token-sum:      sum_b (sum_t loss*kept) / N_seq
        seq-mean-token-mean:     sum_b (sum_t loss*kept / n_b) / N_seq
        seq-mean-token-sum-norm: sum_b (sum_t loss*kept) / N_seq / loss_scale_factor (default T)
    normalize="total" (TRM paper's 1/N, TRL, OpenRLHF, NeMo-RL): N_tok = sum response_mask,
        n_b = sum_t response_mask[b], N_seq = B (verl agg_loss with global_batch_size = B).
    normalize="kept" (verl default: the rejection edits response_mask): N_tok = sum kept,
        n_b = sum_t kept[b], N_seq = #rows with a kept token.
    A zero denominator gives loss 0 (an all-masked batch contributes no gradient) instead of NaN.
    ``loss_mat`` keeps its autograd graph; masked entries (even NaN) never reach the sum, and their
    gradient is 0. Build ``loss_mat`` from log-probs already replaced at padding (``torch.where(mask,
    log_prob, 0)`` BEFORE ``exp``): ``exp(NaN)``'s backward is NaN even under a zero upstream gradient.

    Returns a scalar tensor (numpy in: a float64 numpy scalar).
    """
    check_choice("loss_agg_mode", loss_agg_mode, LOSS_AGG_MODES)
    check_choice("normalize", normalize, tuple(NORMALIZE_CHOICES))
    was_numpy = not isinstance(loss_mat, torch.Tensor)
    loss = torch.from_numpy(np.asarray(loss_mat, dtype=np.float64)) if was_numpy else loss_mat
    if not loss.is_floating_point():
        raise ValueError(f"loss_mat must be a floating-point array, got dtype {loss.dtype}")
    m, _ = as_tensor(response_mask, "response_mask")
    check_same_shape_2d(loss, "loss_mat", response_mask=m)
    valid = valid_positions(m)
    if seq_keep is None:
        keep = torch.ones_like(valid)
    else:
        k, _ = as_tensor(seq_keep, "seq_keep")
        if tuple(k.shape) == (loss.shape[0],):
            keep = valid_positions(k).unsqueeze(-1).expand_as(valid)
        elif tuple(k.shape) == tuple(loss.shape):
            keep = valid_positions(k)
        else:
            raise ValueError(
                f"seq_keep must have shape ({loss.shape[0]},) or {tuple(loss.shape)}, got {tuple(k.shape)}"
            )
    kept = valid & keep
    if loss_scale_factor is not None:
        try:
            ok = math.isfinite(float(loss_scale_factor)) and float(loss_scale_factor) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"loss_scale_factor must be a finite number > 0, got {loss_scale_factor!r}")
    dtype = loss.dtype if loss.dtype in (torch.float32, torch.float64) else torch.float32
    x = torch.where(kept, loss.to(dtype), torch.zeros((), dtype=dtype))
    den_mask = valid if normalize == "total" else kept
    B, T = loss.shape
    if loss_agg_mode == "token-sum":
        out = x.sum()
    elif loss_agg_mode == "token-mean":
        out = x.sum() / den_mask.sum().clamp_min(1).to(dtype)
    else:
        row = x.sum(dim=-1)
        if loss_agg_mode == "seq-mean-token-mean":
            row = row / den_mask.sum(dim=-1).clamp_min(1).to(dtype)
        n_seq = B if normalize == "total" else int(kept.any(dim=-1).sum())
        out = row.sum() / max(n_seq, 1)
        if loss_agg_mode == "seq-mean-token-sum-norm":
            out = out / (T if loss_scale_factor is None else float(loss_scale_factor))
    return out.detach().numpy()[()] if was_numpy else out
