"""Trust Region Masking (docs/theory.md section 7): keep whole sequences whose divergence is small.

``trm_mask`` is the paper's TRM-Max / TRM-Avg / both, from the sample estimators k2/k3 of the
clamped log rho (verl-compatible) or from the exact token KL when full logits were kept. Its
acceptance metrics (``acceptance_metrics``, ``fraction``) are shared with the method registry.
Inputs (B, T) as in `trm_bounds.masks.inputs`; numpy in, numpy out.
"""

from __future__ import annotations

import torch

from .estimators import row_stat, token_divergence
from .inputs import (
    as_float_tensor,
    check_choice,
    check_same_shape_2d,
    check_threshold,
    first_index,
    prepare_inputs,
    to_output,
)
from .inputs import compute_dtype as promoted_dtype
from .verl import clamp_log_ratio, rollout_rejection_mask, verl_token_estimators

__all__ = ["TRM_MODES", "MAX_ESTIMATORS", "AVG_ESTIMATORS", "trm_mask", "acceptance_metrics", "fraction"]

TRM_MODES: tuple[str, ...] = ("max", "avg", "max+avg")
MAX_ESTIMATORS: dict[str, str] = {
    "k2": "1/2 (log rho)^2 (symmetric; verl seq_max_k2)",
    "k3": "rho - 1 - log rho (verl seq_max_k3)",
    "abs_log": "|log rho| (v1 writing; threshold tau equals k2 with tau^2/2)",
}
AVG_ESTIMATORS: dict[str, str] = {
    "k3": "rho - 1 - log rho, unbiased for KL(roll||theta), >= 0 (verl seq_mean_k3)",
    "k2": "1/2 (log rho)^2 (verl seq_mean_k2)",
    "k1": "-log rho, unbiased but can be negative (upper threshold only here)",
}


def trm_mask(
    log_prob,
    rollout_log_prob,
    response_mask,
    *,
    mode: str = "max",
    max_threshold: float | None = None,
    avg_threshold: float | None = None,
    max_estimator: str = "k2",
    avg_estimator: str = "k3",
    exact_kl=None,
    return_metrics: bool = True,
    verl_aliases: bool = True,
    compute_dtype: str = "float32",
):
    """Trust Region Masking (docs/theory.md section 7): keep whole sequences whose divergence is small.

        TRM-Max:  M_i = 1[ max_{t <= T_i} D_t <= max_threshold ]
        TRM-Avg:  M_i = 1[ (1/T_i) sum_{t <= T_i} D'_t <= avg_threshold ]
        max+avg:  both
    D_t is the exact token KL(pi_roll || pi_theta)(c_t) when ``exact_kl`` is given (full logits),
    else the sample estimator ``max_estimator`` (default k2) / ``avg_estimator`` (default k3) of the
    clamped log rho (clamp +-SAFETY_BOUND, as verl; no decision changes below k2 = 200). T_i is
    the row's number of valid tokens; a row with none is kept vacuously (its mask is all 0 anyway).

    Equivalences: mode="max" with k2 and threshold d is verl ``rollout_rs="seq_max_k2"`` with d,
    bit for bit in the same dtype; mode="avg" with k3 is verl "seq_mean_k3" except that k3 is
    computed accurately here (verl's float32 ``exp(x) - 1 - x`` is off by ~1e-7 per token).

    Args:
      log_prob, rollout_log_prob: (B, T) float (half precision computed in float32).
      response_mask: (B, T) 0/1 of any dtype.
      mode: "max" | "avg" | "max+avg"; the thresholds it uses are required (>= 0, finite).
      exact_kl: optional (B, T) exact token KL (>= 0, +inf allowed) at each sampled context.
      return_metrics: if False, metrics is {} (no host syncs).
      verl_aliases: add verl's ``rollout_rs_*`` keys for the equivalent option (sample-based only).
      compute_dtype: "float32" (default: half precision computed in float32, k3 accurate) or
        "input" (the inputs' dtype and verl's arithmetic ``0.5*lr**2``, ``exp(lr)-1-lr``: the max
        rule then equals verl's ``seq_max_k2`` bit for bit for bfloat16 inputs too).

    Returns:
      (mask (B, T) = response_mask * seq_keep in response_mask's dtype, seq_keep (B,) bool, metrics).
    """
    check_choice("mode", mode, TRM_MODES)
    use_max, use_avg = mode in ("max", "max+avg"), mode in ("avg", "max+avg")
    d_max = check_threshold("max_threshold", max_threshold) if use_max else None
    d_avg = check_threshold("avg_threshold", avg_threshold) if use_avg else None
    check_choice("max_estimator", max_estimator, tuple(MAX_ESTIMATORS))
    check_choice("avg_estimator", avg_estimator, tuple(AVG_ESTIMATORS))
    lr, valid, m, was_numpy = prepare_inputs(log_prob, rollout_log_prob, response_mask, compute_dtype)
    dtype = lr.dtype if compute_dtype == "input" else promoted_dtype(lr)
    lr = lr.to(dtype)
    if exact_kl is not None:
        kl, _ = as_float_tensor(exact_kl, "exact_kl")
        check_same_shape_2d(lr, "log_prob", exact_kl=kl)
        bad = torch.isnan(kl) & valid  # +inf is a valid KL (pi_theta = 0 where pi_roll > 0)
        if bad.any():
            raise ValueError(f"exact_kl contains NaN at a valid position {first_index(bad)}")
        bad = (kl < 0) & valid
        if bad.any():
            raise ValueError(f"exact_kl must be >= 0, got {kl[bad].min().item():g} at {first_index(bad)}")
        kl = torch.where(valid, kl.to(torch.float64 if dtype == torch.float64 else kl.dtype), 0.0)
        tok_max = tok_avg = kl
        name_max = name_avg = "exact_kl"
    else:
        lr_safe = clamp_log_ratio(lr)
        est = _verl_estimator if compute_dtype == "input" else token_divergence
        tok_max = est(lr_safe, max_estimator) if use_max else None
        tok_avg = est(lr_safe, avg_estimator) if use_avg else None
        name_max, name_avg = max_estimator, avg_estimator
    keep = torch.ones(lr.shape[0], dtype=torch.bool, device=lr.device)
    seq_max = seq_avg = None
    if use_max:
        seq_max = row_stat(tok_max, valid, "max")
        keep_max = seq_max <= d_max
        keep = keep & keep_max
    if use_avg:
        seq_avg = row_stat(tok_avg, valid, "mean")
        keep_avg = seq_avg <= d_avg
        keep = keep & keep_avg
    mask = torch.where(keep.unsqueeze(-1), m, torch.zeros((), dtype=m.dtype))
    metrics: dict[str, float] = {}
    if return_metrics:
        nonempty = valid.any(dim=-1)
        metrics.update(acceptance_metrics("trm", keep, valid, nonempty))
        if use_max:
            metrics.update(_stat_metrics(f"trm/max_{name_max}", seq_max, nonempty))
            metrics["trm/seq_masked_fraction_max"] = fraction(~keep_max & nonempty, nonempty)
        if use_avg:
            metrics.update(_stat_metrics(f"trm/avg_{name_avg}", seq_avg, nonempty))
            metrics["trm/seq_masked_fraction_avg"] = fraction(~keep_avg & nonempty, nonempty)
        metrics.update(_logp_metrics(lr, valid, nonempty))
        if verl_aliases and exact_kl is not None:
            pass  # verl has no exact-KL option: no aliases
        elif verl_aliases and valid.any():
            opts, ths = [], []
            if use_max and max_estimator in ("k2", "k3") and d_max > 0:
                opts.append(f"seq_max_{max_estimator}")
                ths.append(repr(d_max))
            if use_avg and avg_estimator in ("k2", "k3") and d_avg > 0:
                opts.append(f"seq_mean_{avg_estimator}")
                ths.append(repr(d_avg))
            if opts:
                _, rs = rollout_rejection_mask(
                    lr, m, ",".join(opts), ",".join(ths), compute_dtype=compute_dtype
                )
                metrics.update(rs)
    return to_output(mask, was_numpy), to_output(keep, was_numpy), metrics


def _verl_estimator(lr_safe: torch.Tensor, estimator: str) -> torch.Tensor:
    """The estimator as verl computes it, in lr_safe's dtype ("input" mode); abs_log = |lr|."""
    return lr_safe.abs() if estimator == "abs_log" else verl_token_estimators(lr_safe)[estimator]


def fraction(num: torch.Tensor, den: torch.Tensor) -> float:
    """sum(num) / sum(den) for boolean tensors (num a subset of den); 0.0 when den has no True."""
    d = int(den.sum())
    return float(num.sum()) / d if d else 0.0


def acceptance_metrics(prefix: str, keep: torch.Tensor, valid: torch.Tensor, nonempty: torch.Tensor) -> dict:
    """Acceptance over non-empty rows (1.0 when there are none), masked fractions, counts."""
    rejected = ~keep & nonempty
    tok_rejected = valid & ~keep.unsqueeze(-1)
    n_seq = int(nonempty.sum())
    return {
        f"{prefix}/acceptance": 1.0 - fraction(rejected, nonempty),
        f"{prefix}/seq_masked_fraction": fraction(rejected, nonempty),
        f"{prefix}/token_masked_fraction": fraction(tok_rejected, valid),
        f"{prefix}/num_seqs": float(n_seq),
        f"{prefix}/num_tokens": float(valid.sum()),
    }


def _stat_metrics(prefix: str, seq_stat: torch.Tensor, nonempty: torch.Tensor) -> dict:
    v = seq_stat[nonempty]
    if v.numel() == 0:
        return {f"{prefix}_seq_max": 0.0, f"{prefix}_seq_mean": 0.0}
    return {f"{prefix}_seq_max": v.max().item(), f"{prefix}_seq_mean": v.double().mean().item()}


def _logp_metrics(lr: torch.Tensor, valid: torch.Tensor, nonempty: torch.Tensor) -> dict:
    """TRL's |log_prob - rollout_log_prob| mean/max over valid tokens, and the paper's log-ppl gap

    (1/N) sum_i |mean_t log pi_theta - mean_t log pi_roll| over the N non-empty rows.
    """
    if not valid.any():
        return {
            "sampling/sampling_logp_difference/mean": 0.0,
            "sampling/sampling_logp_difference/max": 0.0,
            "trm/log_ppl_gap": 0.0,
        }
    a = lr.abs()
    gap = (lr.sum(dim=-1) / valid.sum(dim=-1).clamp_min(1).to(lr.dtype)).abs()
    return {
        "sampling/sampling_logp_difference/mean": (a.double().sum() / valid.sum()).item(),
        "sampling/sampling_logp_difference/max": a.masked_fill(~valid, 0.0).max().item(),
        "trm/log_ppl_gap": gap[nonempty].double().mean().item(),
    }
