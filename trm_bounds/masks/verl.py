"""verl, re-implemented exactly: rejection masks, rollout IS weights, off-policy metrics.

Bit-for-bit twins of verl's ``compute_rollout_rejection_mask``, ``compute_rollout_correction_weights``
and ``compute_offpolicy_metrics`` (verl-project/verl at 1dda039b; ECOSYSTEM.md sections 1 and 4).
Conventions (verl's; docs/formats.md "Sequence masks"):
- ``log_ratio = log_prob - rollout_log_prob = log rho_t`` with ``rho_t = pi_theta / pi_roll``, (B, T);
  ``response_mask`` (B, T) of 0/1; masks come back in ``response_mask``'s dtype, numpy in numpy out.
- verl clamps log rho to [-SAFETY_BOUND, SAFETY_BOUND] before k1/k2/k3 and exp; its masked means
  divide by ``mask.sum() + 1e-8``. Both are part of the compatibility contract and kept on purpose,
  so that masks match bit for bit and metrics to float rounding.
- ``compute_dtype="float32"`` (default) computes half-precision inputs in float32 (accurate);
  ``compute_dtype="input"`` keeps verl's own dtype, so bfloat16 inputs give verl's bf16 masks,
  weights (bf16 when the mask is bf16/integer/bool, as verl) and metrics bit for bit.
- ``metrics_prefix``: verl's trainer logs these keys under ``"rollout_corr/"``
  (``rollout_correction`` uses that prefix by default, the single functions none, as verl).
- ``VERL_PRESETS`` / ``verl_preset``: the ``RolloutCorrectionConfig`` presets of verl 0.9.1 as the
  equivalent options; ``rollout_correction(..., preset=...)`` runs one end to end.
Input rules: `trm_bounds.masks.inputs`.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch

from .inputs import (
    as_float_tensor,
    as_tensor,
    check_choice,
    check_compute_dtype,
    check_same_shape_2d,
    check_values,
    first_index,
    to_output,
    valid_positions,
)

__all__ = [
    "SAFETY_BOUND",
    "VERL_RS_OPTIONS",
    "VERL_PRESETS",
    "clamp_log_ratio",
    "verl_token_estimators",
    "rollout_rejection_mask",
    "rollout_is_weights",
    "offpolicy_metrics",
    "verl_preset",
    "rollout_correction",
]

SAFETY_BOUND: float = 20.0  # verl clamps log rho to [-20, 20] before k1/k2/k3 and exp
VERL_RS_OPTIONS: tuple[str, ...] = (
    "token_k1",
    "token_k2",
    "token_k3",
    "seq_sum_k1",
    "seq_sum_k2",
    "seq_sum_k3",
    "seq_mean_k1",
    "seq_mean_k2",
    "seq_mean_k3",
    "seq_max_k2",
    "seq_max_k3",
)  # verl has no seq_max_k1


def clamp_log_ratio(log_ratio: torch.Tensor) -> torch.Tensor:
    """verl's safety clamp: clamp(log rho, -SAFETY_BOUND, SAFETY_BOUND); (B, T) -> (B, T)."""
    return torch.clamp(log_ratio, min=-SAFETY_BOUND, max=SAFETY_BOUND)


def verl_token_estimators(lr_safe: torch.Tensor) -> dict[str, torch.Tensor]:
    """verl's per-token k1/k2/k3 of the clamped log rho, in its dtype (compatibility contract):

    k1 = -lr,  k2 = 0.5 * lr**2,  k3 = exp(lr) - 1 - lr      (B, T) each
    """
    return {"k1": -lr_safe, "k2": 0.5 * lr_safe**2, "k3": torch.exp(lr_safe) - 1.0 - lr_safe}


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    if not isinstance(prefix, str):
        raise ValueError(f"metrics_prefix must be a string, got {prefix!r}")
    return {f"{prefix}{k}": v for k, v in metrics.items()} if prefix else metrics


def _log_ratio_input(log_ratio, response_mask, compute_dtype="float32"):
    """Validated (log_ratio (B, T), response_mask tensor, valid (B, T) bool, was_numpy); NaN refused."""
    check_compute_dtype(compute_dtype)
    lr, was_numpy = as_float_tensor(log_ratio, "log_ratio", compute_dtype)
    m, _ = as_tensor(response_mask, "response_mask")
    check_same_shape_2d(lr, "log_ratio", response_mask=m)
    valid = valid_positions(m)
    bad = torch.isnan(lr) & valid
    if bad.any():
        raise ValueError(f"log_ratio contains NaN at a valid position {first_index(bad)}")
    return lr, m, valid, was_numpy


def _require_valid_token(valid: torch.Tensor) -> None:
    if not valid.any():
        raise ValueError("response_mask must contain at least one valid token (1)")


# --------------------------------------------------------------------------- masked reductions
def _vsum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """verl masked_sum: sum(where(mask, values, 0) * mask); NaN outside the mask is ignored."""
    s = torch.where(mask.bool(), values, 0.0) * mask
    return s.sum() if dim is None else s.sum(dim=dim)


def _vmean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """verl masked_mean: masked_sum / (mask.sum() + 1e-8), the 1e-8 in mask.sum()'s dtype (contract)."""
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return _vsum(values, mask, dim) / (count + 1e-8)


# --------------------------------------------------------------------------- verl: rejection mask
def _parse_rs_options(rollout_rs: Any) -> list[str]:
    if not isinstance(rollout_rs, str) or not rollout_rs.strip():
        raise ValueError("rollout_rs must be a non-empty string (comma separated for several options)")
    options: list[str] = []
    for opt in (o.strip() for o in rollout_rs.split(",")):
        if not opt:
            continue
        if opt not in VERL_RS_OPTIONS:
            raise ValueError(f"rollout_rs option {opt!r} is not one of {', '.join(VERL_RS_OPTIONS)}")
        if opt not in options:  # deduplicated, original order kept
            options.append(opt)
    if not options:
        raise ValueError("rollout_rs must contain at least one option")
    return options


def _parse_float(spec: str, option: str) -> float:
    try:
        return float(spec)
    except ValueError:
        raise ValueError(f"rollout_rs_threshold {spec!r} for option {option!r} is not a number") from None


def _parse_rs_thresholds(options: list[str], spec: Any) -> dict[str, tuple[float | None, float]]:
    """verl's grammar: one entry broadcast to every option, or one per option (comma separated).

    k1 options take "lower_upper" or a single upper u (lower = 1/u); others a single upper.
    Every value must be > 0. Returns {option: (lower or None, upper)}.
    """
    if spec is None:
        raise ValueError("rollout_rs_threshold must be provided for rejection sampling")
    if isinstance(spec, bool) or not isinstance(spec, (str, Real)):
        raise ValueError(f"rollout_rs_threshold must be a string or a number, got {spec!r}")
    raw = [str(float(spec))] if isinstance(spec, Real) else [p.strip() for p in spec.split(",") if p.strip()]
    if not raw:
        raise ValueError("rollout_rs_threshold must contain at least one threshold value")
    if len(raw) not in (1, len(options)):
        raise ValueError(
            f"rollout_rs_threshold has {len(raw)} entries; expected 1 (shared) "
            f"or {len(options)} (one per option)"
        )
    raw = raw * len(options) if len(raw) == 1 else raw
    out: dict[str, tuple[float | None, float]] = {}
    for opt, s in zip(options, raw):
        if opt.endswith("k1"):
            if "_" in s:
                lo_s, up_s = s.split("_", 1)
            else:
                up_s, lo_s = s, str(1.0 / _parse_float(s, opt))
            lo, up = _parse_float(lo_s, opt), _parse_float(up_s, opt)
            if not (lo > 0 and up > 0):
                raise ValueError(f"rollout_rs_threshold for option {opt!r} must be positive, got {s!r}")
            out[opt] = (lo, up)
        else:
            if "_" in s:
                raise ValueError(
                    f"rollout_rs_threshold for option {opt!r} takes a single upper bound "
                    f"without '_', got {s!r}"
                )
            up = _parse_float(s, opt)
            if not up > 0:
                raise ValueError(f"rollout_rs_threshold for option {opt!r} must be positive, got {s!r}")
            out[opt] = (None, up)
    return out


def rollout_rejection_mask(
    log_ratio,
    response_mask,
    rollout_rs: str = "token_k1",
    rollout_rs_threshold=None,
    *,
    compute_dtype: str = "float32",
    metrics_prefix: str = "",
):
    """verl's ``compute_rollout_rejection_mask``: hard trust-region mask from divergence estimators.

    For each option (comma-separated; ALL must pass), with lr = clamp(log rho, -20, 20):
        token_kX:    keep token t iff stat_t = kX(lr_t) passes
        seq_agg_kX:  keep sequence iff agg_{t valid} kX(lr_t) passes, agg in {sum, mean, max}
    k2/k3 pass iff stat <= upper (equality kept). k1 passes iff log(lower) <= stat <= log(upper);
    since k1 = -log rho, the bounds act on 1/rho (they agree with the docs' "lower <= rho <= upper"
    only for symmetric bounds lower = 1/upper; ECOSYSTEM.md 1.4). A row with no valid token has
    seq stat 0 and passes. k3 is verl's ``exp(lr) - 1 - lr`` (compatibility contract).

    Args:
      log_ratio: (B, T) log rho = old_log_prob - rollout_log_prob.
      response_mask: (B, T) 0/1 of any dtype; needs at least one 1 (verl raises otherwise).
      rollout_rs: e.g. "seq_max_k2" (TRM-Max), "seq_mean_k3" (TRM-Avg), "token_k1,seq_max_k2".
      rollout_rs_threshold: float, or string "u", "lo_up" (k1 only), or comma list, one per option.
      compute_dtype: "float32" (half precision computed in float32) or "input" (verl's own dtype:
        bit for bit with verl for bfloat16 inputs too).
      metrics_prefix: prepended to every key ("rollout_corr/" as verl's trainer logs them).

    Returns:
      (modified_response_mask (B, T) in response_mask's dtype, metrics) with verl's keys
      ``rollout_rs_<option>_{mean,max,min,fraction_high,fraction_low,std,seq_mean,seq_std,seq_max,
      seq_min,seq_max_deviation,seq_fraction_high[,seq_fraction_low (k1)],masked_fraction,
      seq_masked_fraction}``, ``rollout_rs_masked_fraction``, ``rollout_rs_seq_masked_fraction``.
    """
    options = _parse_rs_options(rollout_rs)
    thresholds = _parse_rs_thresholds(options, rollout_rs_threshold)
    lr, m, valid, was_numpy = _log_ratio_input(log_ratio, response_mask, compute_dtype)
    if lr.shape[0] == 0:
        return response_mask, {}
    _require_valid_token(valid)

    tok = verl_token_estimators(clamp_log_ratio(lr))
    seq_valid = m.sum(dim=-1) > 0
    combined = torch.ones_like(m, dtype=lr.dtype)
    metrics: dict[str, float] = {}
    for opt in options:
        level, est = opt.rsplit("_", 1)
        lower, upper = thresholds[opt]
        is_k1 = est == "k1"
        up = math.log(upper) if is_k1 else upper
        lo = math.log(lower) if is_k1 else 0.0
        values = tok[est]
        if level == "token":
            stat, seq_stat = values, None
            keep = (stat >= lo) & (stat <= up) if is_k1 else stat <= up
        else:
            agg = level.split("_")[1]
            if agg == "sum":
                seq_stat = _vsum(values, m, dim=-1)
            elif agg == "mean":
                seq_stat = _vmean(values, m, dim=-1)
            else:
                mx = values.masked_fill(~valid, -math.inf).max(dim=-1).values
                seq_stat = torch.where(mx == -math.inf, torch.zeros_like(mx), mx)
            seq_keep = (seq_stat >= lo) & (seq_stat <= up) if is_k1 else seq_stat <= up
            keep = seq_keep.unsqueeze(-1).expand_as(valid)
            stat = seq_stat.unsqueeze(-1).expand_as(m)
        keep_f = keep.to(dtype=lr.dtype)
        combined = combined * keep_f
        seq_kept = (~((~keep) & valid)).all(dim=-1)
        metrics.update(_rs_option_metrics(opt, stat, m, seq_valid, level == "token", seq_stat, up, lo, is_k1))
        metrics[f"rollout_rs_{opt}_masked_fraction"] = _vmean(1 - keep_f, m).item()
        sv = seq_valid.float()
        metrics[f"rollout_rs_{opt}_seq_masked_fraction"] = (
            (((1.0 - seq_kept.to(lr.dtype)) * sv).sum() / sv.sum()).item() if sv.sum() > 0 else 0.0
        )
    metrics["rollout_rs_masked_fraction"] = _vmean(1 - combined, m).item()
    final_keep = (combined > 0.5) & valid
    metrics["rollout_rs_seq_masked_fraction"] = (~final_keep & valid).any(dim=-1).float().mean().item()
    return to_output((m * combined).to(dtype=m.dtype), was_numpy), _prefixed(metrics, metrics_prefix)


def _rs_option_metrics(
    opt: str,
    stat: torch.Tensor,
    m: torch.Tensor,
    seq_valid: torch.Tensor,
    token_level: bool,
    seq_stat: torch.Tensor | None,
    up: float,
    lo: float,
    two_sided: bool,
) -> dict[str, float]:
    """verl's ``compute_rs_metrics`` for one option (keys ``rollout_rs_<opt>_*``)."""
    p = f"rollout_rs_{opt}"
    valid = m.bool()
    seq_values = seq_stat if seq_stat is not None else _vmean(stat, m, dim=-1)
    sv = seq_values[seq_valid]
    out = {f"{p}_mean": _vmean(stat, m).item()}
    if not token_level and sv.numel() > 0:
        out[f"{p}_max"] = sv.max().item()
        out[f"{p}_min"] = sv.min().item()
        out[f"{p}_fraction_high"] = (sv > up).float().mean().item()
        out[f"{p}_fraction_low"] = (sv < lo).float().mean().item() if two_sided else 0.0
    else:
        out[f"{p}_max"] = stat.masked_fill(~valid, -math.inf).max().item()
        out[f"{p}_min"] = stat.masked_fill(~valid, math.inf).min().item()
        out[f"{p}_fraction_high"] = _vmean((stat > up).float(), m).item()
        out[f"{p}_fraction_low"] = _vmean((stat < lo).float(), m).item() if two_sided else 0.0
    if m.sum() > 1:
        s = stat.clamp(min=lo if two_sided else 0.0, max=up)
        mean_c = _vmean(s, m)
        var = _vmean(s.square(), m) - mean_c.square()
        out[f"{p}_std"] = torch.sqrt(torch.clamp(var, min=0.0)).item()
    else:
        out[f"{p}_std"] = 0.0
    out[f"{p}_seq_mean"] = sv.mean().item()
    out[f"{p}_seq_std"] = sv.std().item() if sv.numel() > 1 else 0.0
    out[f"{p}_seq_max"] = sv.max().item()
    out[f"{p}_seq_min"] = sv.min().item()
    out[f"{p}_seq_max_deviation"] = (sv - 0.0).abs().max().item()
    out[f"{p}_seq_fraction_high"] = (sv > up).float().mean().item()
    if two_sided:
        out[f"{p}_seq_fraction_low"] = (sv < lo).float().mean().item()
    return out


# --------------------------------------------------------------------------- verl: IS weights
def _parse_is_threshold(spec: Any) -> tuple[float, float | None]:
    """verl: a number u (TIS, clamp at u) or "lo_up" (IcePop: zero outside [lo, up])."""
    if isinstance(spec, bool) or not isinstance(spec, (str, Real)):
        raise ValueError(f"rollout_is_threshold must be a number or a 'lower_upper' string, got {spec!r}")
    lower = None
    if isinstance(spec, str):
        s = spec.strip()
        try:
            if "_" in s:
                lo_s, up_s = s.split("_", 1)
                lower, upper = float(lo_s), float(up_s)
            else:
                upper = float(s)
        except ValueError:
            raise ValueError(f"rollout_is_threshold {spec!r} is not a number or 'lower_upper'") from None
    else:
        upper = float(spec)
    if not upper > 0:
        raise ValueError(f"rollout_is_threshold upper bound must be positive, got {upper}")
    if lower is not None and not 0 < lower <= upper:
        raise ValueError(f"rollout_is_threshold lower bound must be in (0, upper], got {lower}")
    return upper, lower


def rollout_is_weights(
    log_ratio,
    response_mask,
    rollout_is: str = "token",
    rollout_is_threshold=2.0,
    rollout_is_batch_normalize: bool = False,
    *,
    compute_dtype: str = "float32",
    metrics_prefix: str = "",
):
    """verl's ``compute_rollout_correction_weights`` (TIS, IcePop, batch normalisation).

        token:    w_t = exp(clamp(log rho_t, +-20))
        sequence: w_t = exp(clamp(sum_{s valid} log rho_s, +-20)) for every t of the row
    then w *= response_mask; TIS (threshold u): w = min(w, u); IcePop ("lo_up"): w = w 1[lo <= w <= up].
    Batch normalisation divides by the masked mean weight (token: over tokens; sequence: over
    non-empty rows) when that mean exceeds 1e-8. Weights are detached.

    ``rollout_is_eff_sample_size`` = 1 / masked_mean((w / mean w)^2) over the weights clamped to
    [0, upper]; when every weight is 0 (IcePop rejected every token) it is 0.0 here, where verl
    0.9.1 divides by zero (verl issue #7559).
    ``compute_dtype`` as in ``rollout_rejection_mask``: with "input" the weights come back in verl's
    dtype (bfloat16 for bfloat16 log-ratios and a bool/integer/bf16 mask); with "float32" in float32.

    Returns (weights (B, T), metrics with verl's keys ``rollout_is_*``).
    """
    check_choice("rollout_is", rollout_is, ("token", "sequence"))
    upper, lower = _parse_is_threshold(rollout_is_threshold)
    lr, m, valid, was_numpy = _log_ratio_input(log_ratio, response_mask, compute_dtype)
    _require_valid_token(valid)
    if rollout_is == "token":
        lr_metrics = lr
        raw = torch.exp(clamp_log_ratio(lr))
    else:
        lr_metrics = _vsum(lr, m, dim=-1).unsqueeze(-1)
        raw = torch.exp(clamp_log_ratio(lr_metrics)).expand_as(lr)
    raw = torch.where(valid, raw, torch.zeros((), dtype=raw.dtype)) * m  # padding NaN never leaks
    if lower is None:
        w = raw.clamp(max=upper)
    else:
        w = torch.where((raw >= lower) & (raw <= upper), raw, torch.zeros_like(raw))
    metrics = _is_metrics(w, raw, lr_metrics, m, rollout_is, upper, lower)
    if lower is not None:
        oob = (raw < lower) | (raw > upper)
        metrics["rollout_is_oob_ratio"] = _vmean(oob.float(), m).item()
    if rollout_is_batch_normalize:
        if rollout_is == "token":
            mean_w = _vmean(w, m)
        else:
            seq_w = _vmean(w, m, dim=-1)
            seq_mask = (m.sum(dim=-1) > 0).to(dtype=w.dtype)
            mean_w = (seq_w * seq_mask).sum() / seq_mask.sum().clamp_min(1e-8)
        if mean_w > 1e-8:
            w = w / mean_w
            metrics["rollout_is_batch_norm_factor"] = mean_w.item()
        else:
            metrics["rollout_is_batch_norm_factor"] = 1.0
    return to_output(w, was_numpy), _prefixed(metrics, metrics_prefix)


def _is_metrics(w, raw, lr_metrics, m, rollout_is, upper, lower) -> dict[str, float]:
    """verl's ``compute_is_metrics``."""
    lower = 1.0 / upper if lower is None else lower
    valid = m.bool()
    out: dict[str, float] = {}
    if rollout_is == "sequence":
        out["rollout_is_max"] = torch.exp(torch.clamp(lr_metrics.max(), max=SAFETY_BOUND)).item()
        out["rollout_is_min"] = torch.exp(lr_metrics.min()).item()
        out["rollout_is_mean"] = _vmean(w, m).item()
        log_up = torch.log(torch.tensor(upper))
        log_lo = torch.log(torch.tensor(lower))
        out["rollout_is_ratio_fraction_high"] = (lr_metrics > log_up).float().mean().item()
        out["rollout_is_ratio_fraction_low"] = (lr_metrics < log_lo).float().mean().item()
    else:
        out["rollout_is_mean"] = _vmean(w, m).item()
        out["rollout_is_ratio_fraction_high"] = _vmean((raw > upper).float(), m).item()
        out["rollout_is_ratio_fraction_low"] = _vmean((raw < lower).float(), m).item()
        out["rollout_is_max"] = w.masked_fill(~valid, -math.inf).max().item()
        out["rollout_is_min"] = w.masked_fill(~valid, math.inf).min().item()
    wc = w.clamp(min=0.0, max=upper)
    if m.sum() > 1:
        mean_c = _vmean(wc, m)
        var = _vmean(wc.square(), m) - mean_c.square()
        out["rollout_is_std"] = torch.sqrt(torch.clamp(var, min=0.0)).item()
    else:
        out["rollout_is_std"] = 0.0
    normalized = wc / (_vmean(wc, m) + 1e-8)
    second_moment = _vmean(normalized.square(), m).item()
    # every weight 0 (IcePop rejected all): no sample carries weight, ESS 0 (verl divides by zero)
    out["rollout_is_eff_sample_size"] = 1.0 / second_moment if second_moment > 0 else 0.0
    seq_w = _vmean(w, m, dim=-1)
    out["rollout_is_seq_mean"] = seq_w.mean().item()
    out["rollout_is_seq_std"] = seq_w.std().item() if seq_w.numel() > 1 else 0.0
    out["rollout_is_seq_max"] = seq_w.max().item()
    out["rollout_is_seq_min"] = seq_w.min().item()
    out["rollout_is_seq_max_deviation"] = (seq_w - 1.0).abs().max().item()
    raw_seq = _vmean(raw, m, dim=-1)
    out["rollout_is_seq_fraction_high"] = (raw_seq > upper).float().mean().item()
    out["rollout_is_seq_fraction_low"] = (raw_seq < lower).float().mean().item()
    return out


# --------------------------------------------------------------------------- verl: off-policy metrics
def offpolicy_metrics(
    log_prob, rollout_log_prob, response_mask, *, compute_dtype: str = "float32", metrics_prefix: str = ""
) -> dict[str, float]:
    """verl's ``compute_offpolicy_metrics`` (13 keys, no prefix); per-row means include empty rows as 0.

    training_ppl = mean_b exp(-mean_t log_prob);  training_log_ppl = mean_b(-mean_t log_prob)
    kl = masked_mean(rollout - train) (k1);  k3_kl = masked_mean(rho - log rho - 1), unclamped
    rollout_ppl, rollout_log_ppl likewise; log_ppl_diff_b = mean_t rollout - mean_t train:
    log_ppl_diff (mean), log_ppl_abs_diff (mean |.|), log_ppl_diff_max, _min; ppl_ratio = mean exp(.)
    chi2_token = masked_mean(exp(2 clamp(log rho))) - 1; chi2_seq = mean_b exp(2 clamp(sum log rho)) - 1
    ``compute_dtype`` and ``metrics_prefix`` as in ``rollout_rejection_mask``.
    """
    check_compute_dtype(compute_dtype)
    lp, _ = as_float_tensor(log_prob, "log_prob", compute_dtype)
    m, _ = as_tensor(response_mask, "response_mask")
    check_same_shape_2d(lp, "log_prob", response_mask=m)
    valid = valid_positions(m)
    check_values("log_prob", lp, valid, allow_neg_inf=False)
    _require_valid_token(valid)
    mean_train = _vmean(lp, m, dim=-1)
    out = {
        "training_ppl": torch.exp(-mean_train).mean().item(),
        "training_log_ppl": (-mean_train).mean().item(),
    }
    if rollout_log_prob is None:
        return _prefixed(out, metrics_prefix)
    rlp, _ = as_float_tensor(rollout_log_prob, "rollout_log_prob", compute_dtype)
    check_same_shape_2d(lp, "log_prob", rollout_log_prob=rlp)
    check_values("rollout_log_prob", rlp, valid, allow_neg_inf=False)
    out["kl"] = _vmean(rlp - lp, m).item()
    lr = lp - rlp
    out["k3_kl"] = _vmean(torch.exp(lr) - lr - 1, m).item()
    mean_roll = _vmean(rlp, m, dim=-1)
    out["rollout_ppl"] = torch.exp(-mean_roll).mean().item()
    out["rollout_log_ppl"] = (-mean_roll).mean().item()
    diff = mean_roll - mean_train
    out["log_ppl_diff"] = diff.mean().item()
    out["log_ppl_abs_diff"] = diff.abs().mean().item()
    out["log_ppl_diff_max"] = diff.max().item()
    out["log_ppl_diff_min"] = diff.min().item()
    out["ppl_ratio"] = torch.exp(diff).mean().item()
    rho = torch.exp(clamp_log_ratio(lr))
    out["chi2_token"] = (_vmean(rho.square(), m) - 1.0).item()
    lsum = clamp_log_ratio(_vsum(lr, m, dim=-1))
    out["chi2_seq"] = (torch.exp(2.0 * lsum).mean() - 1.0).item()
    return _prefixed(out, metrics_prefix)


# --------------------------------------------------------------------------- verl: presets
# RolloutCorrectionConfig presets of verl 0.9.1 (verl/trainer/config/algorithm.py): name ->
# (parameters with their defaults, fields as a function of them). Fields not set keep the
# dataclass defaults: rollout_is_threshold 2.0, rollout_is_batch_normalize False, loss_type ppo_clip.
_GEO = "0.999_1.001"


def _fields(
    rollout_is=None, is_threshold=2.0, rollout_rs=None, rs_threshold=None, bypass=False, loss="ppo_clip"
):
    return {
        "rollout_is": rollout_is,
        "rollout_is_threshold": is_threshold,
        "rollout_is_batch_normalize": False,
        "rollout_rs": rollout_rs,
        "rollout_rs_threshold": rs_threshold,
        "bypass_mode": bypass,
        "loss_type": loss,
    }


VERL_PRESETS: dict[str, tuple[dict[str, Any], Any]] = {
    "disabled": ({}, lambda: _fields()),
    "decoupled_token_is": ({"threshold": 2.0}, lambda threshold: _fields("token", threshold)),
    "decoupled_seq_is": ({"threshold": 2.0}, lambda threshold: _fields("sequence", threshold)),
    "decoupled_token_icepop": (
        {"threshold": 5.0, "threshold_lower": 0.5},
        lambda threshold, threshold_lower: _fields("token", f"{threshold_lower}_{threshold}"),
    ),
    "decoupled_seq_is_rs": (
        {"is_threshold": 2.0, "rs_threshold": "0.5_2.0"},
        lambda is_threshold, rs_threshold: _fields("sequence", is_threshold, "seq_sum_k1", rs_threshold),
    ),
    "decoupled_geo_rs": (
        {"rs_threshold": _GEO},
        lambda rs_threshold: _fields(None, 2.0, "seq_mean_k1", rs_threshold),
    ),
    "decoupled_geo_rs_seq_tis": (
        {"is_threshold": 2.0, "rs_threshold": _GEO},
        lambda is_threshold, rs_threshold: _fields("sequence", is_threshold, "seq_mean_k1", rs_threshold),
    ),
    "decoupled_geo_rs_token_tis": (
        {"is_threshold": 2.0, "rs_threshold": _GEO},
        lambda is_threshold, rs_threshold: _fields("token", is_threshold, "seq_mean_k1", rs_threshold),
    ),
    "decoupled_k3_rs": (
        {"rs_threshold": 0.01},
        lambda rs_threshold: _fields(None, 2.0, "seq_mean_k3", rs_threshold),
    ),
    "decoupled_k3_rs_seq_tis": (
        {"is_threshold": 2.0, "rs_threshold": 0.01},
        lambda is_threshold, rs_threshold: _fields("sequence", is_threshold, "seq_mean_k3", rs_threshold),
    ),
    "decoupled_k3_rs_token_tis": (
        {"is_threshold": 2.0, "rs_threshold": 0.01},
        lambda is_threshold, rs_threshold: _fields("token", is_threshold, "seq_mean_k3", rs_threshold),
    ),
    "bypass_ppo_clip": ({}, lambda: _fields(bypass=True)),
    "bypass_ppo_clip_geo_rs": (
        {"rs_threshold": _GEO},
        lambda rs_threshold: _fields(None, 2.0, "seq_mean_k1", rs_threshold, True),
    ),
    "bypass_ppo_clip_k3_rs": (
        {"rs_threshold": 0.01},
        lambda rs_threshold: _fields(None, 2.0, "seq_mean_k3", rs_threshold, True),
    ),
    "bypass_pg_is": (
        {"threshold": 2.0},
        lambda threshold: _fields("sequence", threshold, bypass=True, loss="reinforce"),
    ),
    "bypass_pg_token_icepop": (
        {"threshold": 5.0, "threshold_lower": 0.5},
        lambda threshold, threshold_lower: _fields(
            "token", f"{threshold_lower}_{threshold}", bypass=True, loss="reinforce"
        ),
    ),
    "bypass_pg_geo_rs": (
        {"rs_threshold": _GEO},
        lambda rs_threshold: _fields(None, 2.0, "seq_mean_k1", rs_threshold, True, "reinforce"),
    ),
    "bypass_pg_geo_rs_seq_tis": (
        {"is_threshold": 2.0, "rs_threshold": _GEO},
        lambda is_threshold, rs_threshold: _fields(
            "sequence", is_threshold, "seq_mean_k1", rs_threshold, True, "reinforce"
        ),
    ),
    "bypass_pg_geo_rs_token_tis": (
        {"is_threshold": 2.0, "rs_threshold": _GEO},
        lambda is_threshold, rs_threshold: _fields(
            "token", is_threshold, "seq_mean_k1", rs_threshold, True, "reinforce"
        ),
    ),
}


def verl_preset(name: str, **params) -> dict[str, Any]:
    """The options of verl's ``RolloutCorrectionConfig.<name>(**params)`` preset (verl 0.9.1).

    Returns {rollout_is, rollout_is_threshold, rollout_is_batch_normalize, rollout_rs,
    rollout_rs_threshold, bypass_mode, loss_type}. ``bypass_mode`` and ``loss_type`` are not a
    mask or weight question: bypass means "compute the mask from the current policy's log-probs"
    (pass those as ``log_prob``; verl sets pi_old := pi_roll and recomputes the mask inside the loss
    under no_grad), and loss_type picks the loss (``ppo_clip`` folds the ratio into PPO and applies
    no IS weights; ``reinforce`` multiplies the weights into -A log pi).
    """
    check_choice("preset", name, tuple(VERL_PRESETS))
    defaults, make = VERL_PRESETS[name]
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(
            f"{sorted(unknown)[0]} is not a parameter of preset {name!r}; it takes {tuple(defaults)}"
        )
    return make(**{**defaults, **params})


def rollout_correction(
    log_prob,
    rollout_log_prob,
    response_mask,
    *,
    preset: str | None = None,
    rollout_is: str | None = None,
    rollout_is_threshold=2.0,
    rollout_is_batch_normalize: bool = False,
    rollout_rs: str | None = None,
    rollout_rs_threshold=None,
    compute_dtype: str = "float32",
    metrics_prefix: str = "rollout_corr/",
):
    """verl's ``compute_rollout_correction_and_rejection_mask``: IS weights, rejection, diagnostics.

        log rho = log_prob - rollout_log_prob
        weights = rollout_is_weights(log rho, ...) if rollout_is else None
        mask    = rollout_rejection_mask(log rho, ...) if rollout_rs else response_mask
        metrics = IS metrics + RS metrics + offpolicy_metrics, keys prefixed ``metrics_prefix``
    ``preset`` (a ``VERL_PRESETS`` name, its default parameters) replaces the five options; its
    bypass_mode / loss_type are not applied here (see ``verl_preset``).

    Returns (weights (B, T) or None, modified response_mask (B, T) in its dtype, metrics).
    """
    if preset is not None:
        p = verl_preset(preset)
        rollout_is, rollout_is_threshold = p["rollout_is"], p["rollout_is_threshold"]
        rollout_is_batch_normalize = p["rollout_is_batch_normalize"]
        rollout_rs, rollout_rs_threshold = p["rollout_rs"], p["rollout_rs_threshold"]
    check_compute_dtype(compute_dtype)
    lp, was_numpy = as_float_tensor(log_prob, "log_prob", compute_dtype)
    rlp, _ = as_float_tensor(rollout_log_prob, "rollout_log_prob", compute_dtype)
    m, _ = as_tensor(response_mask, "response_mask")
    check_same_shape_2d(lp, "log_prob", rollout_log_prob=rlp, response_mask=m)
    _require_valid_token(valid_positions(m))
    log_ratio = lp - rlp
    metrics: dict[str, float] = {}
    weights = None
    if rollout_is is not None and rollout_is_threshold is not None:
        weights, w_metrics = rollout_is_weights(
            log_ratio,
            m,
            rollout_is,
            rollout_is_threshold,
            rollout_is_batch_normalize,
            compute_dtype=compute_dtype,
        )
        metrics.update(w_metrics)
        weights = to_output(weights, was_numpy)
    mask = m.clone()
    if rollout_rs is not None:
        if rollout_rs_threshold is None:
            raise ValueError("rollout_rs_threshold must be provided when rollout_rs is set")
        mask, rs_metrics = rollout_rejection_mask(
            log_ratio, m, rollout_rs, rollout_rs_threshold, compute_dtype=compute_dtype
        )
        metrics.update(rs_metrics)
    metrics.update(offpolicy_metrics(lp, rlp, m, compute_dtype=compute_dtype))
    return weights, to_output(mask, was_numpy), _prefixed(metrics, metrics_prefix)
