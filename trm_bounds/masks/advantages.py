"""Group-relative advantages over the samples a mask keeps (GRPO / Dr. GRPO / constant baseline).

A rejected sample contributes nothing to the loss, and it must not shift its group's baseline
either: verl PR #6375 found rejected samples leaking into GRPO group means. ``group_advantages``
recomputes each group's mean (and std) over the kept members only; rejected samples get A = 0.
"""

from __future__ import annotations

import torch

from .inputs import as_float_tensor, as_tensor, check_choice, to_output, valid_positions

__all__ = ["ADVANTAGE_KINDS", "group_advantages"]

ADVANTAGE_KINDS: dict[str, str] = {
    "grpo": "(R - mean_g) / (std_g + eps), unbiased std over the kept members of the group",
    "drgrpo": "R - mean_g (Dr. GRPO: no std division)",
    "baseline": "R - b for a constant b (no group statistics)",
}


def group_advantages(
    rewards, group_id, keep=None, kind: str = "grpo", *, baseline: float = 0.0, eps: float = 1e-6
):
    """Per-sample advantages from rewards R (B,), group ids (B,) and a keep flag (B,).

        K_g = {i : group_id_i = g, keep_i},  n_g = |K_g|,  mean_g = (1/n_g) sum_{i in K_g} R_i
        std_g = sqrt( sum_{i in K_g} (R_i - mean_g)^2 / (n_g - 1) )   (0 when n_g = 1)
        grpo:     A_i = (R_i - mean_g) / (std_g + eps)
        drgrpo:   A_i = R_i - mean_g
        baseline: A_i = R_i - baseline
    for kept i; A_i = 0 for rejected i. A group with one kept member gets A = 0 (no baseline is
    left to compare with; verl's compute_grpo_outcome_advantage uses mean 0, std 1 there, A = R).
    ``keep=None`` keeps everything (the usual GRPO advantages). Groups need not be contiguous.

    Returns A (B,) in the rewards' float dtype (numpy in, numpy out).
    """
    check_choice("kind", kind, tuple(ADVANTAGE_KINDS))
    R, was_numpy = as_float_tensor(rewards, "rewards")
    if R.ndim != 1:
        raise ValueError(f"rewards must have shape (B,), got {tuple(R.shape)}")
    if not torch.isfinite(R).all():
        raise ValueError("rewards must be finite")
    g, _ = as_tensor(group_id, "group_id")
    if tuple(g.shape) != tuple(R.shape) or g.is_floating_point() or g.dtype == torch.bool:
        raise ValueError(f"group_id must be an integer array of shape {tuple(R.shape)}")
    if keep is None:
        k = torch.ones_like(R, dtype=torch.bool)
    else:
        k_t, _ = as_tensor(keep, "keep")
        if tuple(k_t.shape) != tuple(R.shape):
            raise ValueError(f"keep must have shape {tuple(R.shape)}, got {tuple(k_t.shape)}")
        k = valid_positions(k_t)
    if kind == "baseline":
        return to_output(torch.where(k, R - baseline, torch.zeros((), dtype=R.dtype)), was_numpy)
    _, inv = torch.unique(g, return_inverse=True)
    n_groups = int(inv.max()) + 1 if inv.numel() else 0
    kf = k.to(R.dtype)
    n = torch.zeros(n_groups, dtype=R.dtype).index_add_(0, inv, kf)
    mean = torch.zeros(n_groups, dtype=R.dtype).index_add_(0, inv, R * kf) / n.clamp_min(1)
    centred = torch.where(k, R - mean[inv], torch.zeros((), dtype=R.dtype))
    if kind == "drgrpo":
        return to_output(centred, was_numpy)
    ss = torch.zeros(n_groups, dtype=R.dtype).index_add_(0, inv, centred**2)
    std = torch.where(n > 1, torch.sqrt(ss / (n - 1).clamp_min(1)), torch.zeros((), dtype=R.dtype))
    return to_output(centred / (std[inv] + eps), was_numpy)
