"""Sequence masks on (B, T) per-token log-probs: TRM and its relatives, verl/TRL compatible.

Conventions (verl's; INTERFACES.md "Sequence masks", ECOSYSTEM.md section 4):
- ``log_prob``, ``rollout_log_prob``: (B, T) log pi_theta(y_t | c_t) and log pi_roll(y_t | c_t) of the
  sampled tokens; ``response_mask``: (B, T) of 0/1 (any dtype), zeros after the end of each response.
- ``log_ratio = log_prob - rollout_log_prob = log rho_t`` with ``rho_t = pi_theta / pi_roll``.
- Sample estimators of KL(pi_roll || pi_theta) at c_t (THEORY.md section 7):
  ``k1 = -log rho``, ``k2 = 1/2 (log rho)^2``, ``k3 = rho - 1 - log rho``.
- Masks come back in ``response_mask``'s dtype; numpy in gives numpy out.

Three families live here:
1. Exact re-implementations of verl (``rollout_rejection_mask``, ``rollout_is_weights``,
   ``offpolicy_metrics``) and TRL (``vllm_importance_sampling_ratio``, ``off_policy_sequence_mask``):
   their clamps (``SAFETY_BOUND``) and their ``+ 1e-8`` in masked means are part of the compatibility
   contract and are kept on purpose, so that masks match bit for bit and metrics to float rounding.
2. ``trm_mask``: the paper's TRM-Max / TRM-Avg / both, from k2/k3 or from exact token KL.
3. ``sequence_mask(method, ...)``: one registry (``METHODS``) for every sequence/token rule a trainer
   calls (TRM variants, LN-TRM, SER, geometric mask, token mask, IcePop, sequence TIS/MIS, token IS),
   and ``masked_policy_loss`` with verl's four aggregation modes and ``normalize="total"|"kept"``.

Input rules: float16/bfloat16 are computed in float32; float32 stays float32 (what trainers have)
and float64 stays float64. NaN or +inf at a valid position (``response_mask = 1``) raises
``ValueError`` naming the argument; values at padding are ignored (padding may hold anything).
``-inf`` in ``rollout_log_prob`` at a valid position is refused (the rollout cannot sample a token
of probability 0, and ``-inf - -inf`` would be NaN); ``-inf`` in ``log_prob`` means pi_theta gives the
sampled token probability 0: log rho = -inf, clamped to -SAFETY_BOUND like verl, so every
threshold below k2 = 200 rejects that sequence.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
import torch

from . import divergences
from ._validate import check_nonneg_finite

__all__ = [
    "SAFETY_BOUND",
    "VERL_RS_OPTIONS",
    "TRL_IS_MODES",
    "TRM_MODES",
    "MAX_ESTIMATORS",
    "AVG_ESTIMATORS",
    "LOSS_AGG_MODES",
    "NORMALIZE_CHOICES",
    "METHODS",
    "MaskResult",
    "token_divergence",
    "sequence_stat",
    "rollout_rejection_mask",
    "rollout_is_weights",
    "offpolicy_metrics",
    "vllm_importance_sampling_ratio",
    "off_policy_sequence_mask",
    "trm_mask",
    "sequence_mask",
    "masked_policy_loss",
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
TRL_IS_MODES: tuple[str, ...] = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")
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
LOSS_AGG_MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
)
NORMALIZE_CHOICES: dict[str, str] = {
    "total": "divide by the whole batch (TRM paper, TRL, OpenRLHF, NeMo-RL)",
    "kept": "divide by what survives the mask (verl's default)",
}


# --------------------------------------------------------------------------- input handling
def _tensor(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    """(detached tensor, was_numpy). Masks are not differentiable: inputs are detached."""
    if isinstance(x, torch.Tensor):
        return x.detach(), False
    try:
        a = np.asarray(x)
        return torch.from_numpy(np.ascontiguousarray(a)), True
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}") from exc


def _float_tensor(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    """Floating tensor; float16/bfloat16 promoted to float32 (never computed in half precision)."""
    t, was_numpy = _tensor(x, name)
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point array, got dtype {t.dtype}")
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t, was_numpy


def _check_2d_same(ref: torch.Tensor, ref_name: str, **others: torch.Tensor) -> None:
    if ref.ndim != 2:
        raise ValueError(f"{ref_name} must have shape (B, T), got {tuple(ref.shape)}")
    for name, t in others.items():
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(f"{name} has shape {tuple(t.shape)} but {ref_name} has {tuple(ref.shape)}")


def _valid_of(mask: torch.Tensor) -> torch.Tensor:
    """Boolean (B, T) of valid positions; refuses anything but 0/1."""
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point() and torch.isnan(mask).any():
        raise ValueError("response_mask contains NaN")
    if ((mask != 0) & (mask != 1)).any():
        raise ValueError("response_mask must hold only 0 and 1")
    return mask != 0


def _first_index(bad: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.nonzero(bad)[0])


def _check_values(name: str, t: torch.Tensor, valid: torch.Tensor, *, allow_neg_inf: bool) -> None:
    """NaN / +inf (and -inf unless allowed) at valid positions raise ValueError naming `name`."""
    bad = torch.isnan(t) & valid
    if bad.any():
        raise ValueError(f"{name} contains NaN at a valid position {_first_index(bad)}")
    bad = (t == math.inf) & valid
    if bad.any():
        raise ValueError(f"{name} contains +inf at a valid position {_first_index(bad)}")
    if not allow_neg_inf:
        bad = (t == -math.inf) & valid
        if bad.any():
            raise ValueError(
                f"{name} contains -inf at a valid position {_first_index(bad)}: a sampled token "
                "cannot have rollout probability 0"
            )


def _check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _out(t: torch.Tensor, was_numpy: bool):
    return t.cpu().numpy() if was_numpy else t


def _prepare(log_prob, rollout_log_prob, response_mask):
    """Validated (log_ratio (B,T) with 0 at padding, valid bool (B,T), mask, was_numpy)."""
    lp, was_numpy = _float_tensor(log_prob, "log_prob")
    rlp, _ = _float_tensor(rollout_log_prob, "rollout_log_prob")
    m, _ = _tensor(response_mask, "response_mask")
    _check_2d_same(lp, "log_prob", rollout_log_prob=rlp, response_mask=m)
    valid = _valid_of(m)
    _check_values("log_prob", lp, valid, allow_neg_inf=True)
    _check_values("rollout_log_prob", rlp, valid, allow_neg_inf=False)
    dtype = torch.promote_types(lp.dtype, rlp.dtype)
    lr = torch.where(valid, lp.to(dtype) - rlp.to(dtype), torch.zeros((), dtype=dtype))
    return lr, valid, m, was_numpy


# --------------------------------------------------------------------------- verl's masked reductions
def _vsum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """verl masked_sum: sum(where(mask, values, 0) * mask); NaN outside the mask is ignored."""
    s = torch.where(mask.bool(), values, 0.0) * mask
    return s.sum() if dim is None else s.sum(dim=dim)


def _vmean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """verl masked_mean: masked_sum / (mask.sum() + 1e-8), the 1e-8 in mask.sum()'s dtype (contract)."""
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return _vsum(values, mask, dim) / (count + 1e-8)


# --------------------------------------------------------------------------- estimators
def token_divergence(log_ratio, estimator: str):
    """Per-token sample estimator of KL(pi_roll || pi_theta) from log rho; (B, T) -> (B, T).

        k1 = -log rho,  k2 = 1/2 (log rho)^2,  k3 = rho - 1 - log rho (accurate near rho = 1),
        abs_log = |log rho|

    No clamp here: callers that follow verl clamp log rho to +-SAFETY_BOUND first.
    k2/k1/abs_log keep the input dtype; k3 is computed in float64 (trm_bounds.divergences.k3).
    """
    t, was_numpy = _float_tensor(log_ratio, "log_ratio")
    _check_choice("estimator", estimator, ("k1", "k2", "k3", "abs_log"))
    if estimator == "abs_log":
        if torch.isnan(t).any():
            raise ValueError("log_ratio contains NaN")
        return _out(t.abs(), was_numpy)
    return _out(divergences.SAMPLE_ESTIMATORS[estimator](t, dtype=t.dtype), was_numpy)


def sequence_stat(values, response_mask, agg: str):
    """Per-sequence aggregate over valid tokens; (B, T), (B, T) -> (B,).

        max: max_{t valid} v_t;  mean: (1/T_i) sum_{t valid} v_t;  sum: sum_{t valid} v_t
    with T_i = sum_t response_mask[i, t]. A row with no valid token gives 0 (verl: it passes).
    """
    v, was_numpy = _float_tensor(values, "values")
    m, _ = _tensor(response_mask, "response_mask")
    _check_2d_same(v, "values", response_mask=m)
    _check_choice("agg", agg, ("max", "mean", "sum"))
    return _out(_seq_stat(v, _valid_of(m), agg), was_numpy)


def _seq_stat(v: torch.Tensor, valid: torch.Tensor, agg: str) -> torch.Tensor:
    if agg == "max":
        mx = v.masked_fill(~valid, -math.inf).amax(dim=-1)
        return torch.where(valid.any(dim=-1), mx, torch.zeros((), dtype=v.dtype))
    s = torch.where(valid, v, torch.zeros((), dtype=v.dtype)).sum(dim=-1)
    if agg == "sum":
        return s
    return s / valid.sum(dim=-1).clamp_min(1).to(v.dtype)


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


def rollout_rejection_mask(log_ratio, response_mask, rollout_rs: str = "token_k1", rollout_rs_threshold=None):
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

    Returns:
      (modified_response_mask (B, T) in response_mask's dtype, metrics) with verl's keys
      ``rollout_rs_<option>_{mean,max,min,fraction_high,fraction_low,std,seq_mean,seq_std,seq_max,
      seq_min,seq_max_deviation,seq_fraction_high[,seq_fraction_low (k1)],masked_fraction,
      seq_masked_fraction}``, ``rollout_rs_masked_fraction``, ``rollout_rs_seq_masked_fraction``.
    """
    options = _parse_rs_options(rollout_rs)
    thresholds = _parse_rs_thresholds(options, rollout_rs_threshold)
    lr, was_numpy = _float_tensor(log_ratio, "log_ratio")
    m, _ = _tensor(response_mask, "response_mask")
    _check_2d_same(lr, "log_ratio", response_mask=m)
    if lr.shape[0] == 0:
        return response_mask, {}
    valid = _valid_of(m)
    bad = torch.isnan(lr) & valid
    if bad.any():
        raise ValueError(f"log_ratio contains NaN at a valid position {_first_index(bad)}")
    if not valid.any():
        raise ValueError("response_mask must contain at least one valid token (1)")

    lr_safe = torch.clamp(lr, min=-SAFETY_BOUND, max=SAFETY_BOUND)
    tok = {"k1": -lr_safe, "k2": 0.5 * lr_safe**2, "k3": torch.exp(lr_safe) - 1.0 - lr_safe}
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
    return _out((m * combined).to(dtype=m.dtype), was_numpy), metrics


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
):
    """verl's ``compute_rollout_correction_weights`` (TIS, IcePop, batch normalisation).

        token:    w_t = exp(clamp(log rho_t, +-20))
        sequence: w_t = exp(clamp(sum_{s valid} log rho_s, +-20)) for every t of the row
    then w *= response_mask; TIS (threshold u): w = min(w, u); IcePop ("lo_up"): w = w 1[lo <= w <= up].
    Batch normalisation divides by the masked mean weight (token: over tokens; sequence: over
    non-empty rows) when that mean exceeds 1e-8. Weights are detached.

    Returns (weights (B, T), metrics with verl's keys ``rollout_is_*``).
    """
    _check_choice("rollout_is", rollout_is, ("token", "sequence"))
    upper, lower = _parse_is_threshold(rollout_is_threshold)
    lr, was_numpy = _float_tensor(log_ratio, "log_ratio")
    m, _ = _tensor(response_mask, "response_mask")
    _check_2d_same(lr, "log_ratio", response_mask=m)
    valid = _valid_of(m)
    bad = torch.isnan(lr) & valid
    if bad.any():
        raise ValueError(f"log_ratio contains NaN at a valid position {_first_index(bad)}")
    if not valid.any():
        raise ValueError("response_mask must contain at least one valid token (1)")
    if rollout_is == "token":
        lr_metrics = lr
        raw = torch.exp(torch.clamp(lr, min=-SAFETY_BOUND, max=SAFETY_BOUND))
    else:
        lr_metrics = _vsum(lr, m, dim=-1).unsqueeze(-1)
        raw = torch.exp(torch.clamp(lr_metrics, min=-SAFETY_BOUND, max=SAFETY_BOUND)).expand_as(lr)
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
    return _out(w, was_numpy), metrics


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
    out["rollout_is_eff_sample_size"] = 1.0 / _vmean(normalized.square(), m).item()
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
def offpolicy_metrics(log_prob, rollout_log_prob, response_mask) -> dict[str, float]:
    """verl's ``compute_offpolicy_metrics`` (13 keys, no prefix); per-row means include empty rows as 0.

    training_ppl = mean_b exp(-mean_t log_prob);  training_log_ppl = mean_b(-mean_t log_prob)
    kl = masked_mean(rollout - train) (k1);  k3_kl = masked_mean(rho - log rho - 1), unclamped
    rollout_ppl, rollout_log_ppl likewise; log_ppl_diff_b = mean_t rollout - mean_t train:
    log_ppl_diff (mean), log_ppl_abs_diff (mean |.|), log_ppl_diff_max, _min; ppl_ratio = mean exp(.)
    chi2_token = masked_mean(exp(2 clamp(log rho))) - 1; chi2_seq = mean_b exp(2 clamp(sum log rho)) - 1
    """
    lp, _ = _float_tensor(log_prob, "log_prob")
    m, _ = _tensor(response_mask, "response_mask")
    _check_2d_same(lp, "log_prob", response_mask=m)
    valid = _valid_of(m)
    _check_values("log_prob", lp, valid, allow_neg_inf=False)
    if not valid.any():
        raise ValueError("response_mask must contain at least one valid token (1)")
    mean_train = _vmean(lp, m, dim=-1)
    out = {
        "training_ppl": torch.exp(-mean_train).mean().item(),
        "training_log_ppl": (-mean_train).mean().item(),
    }
    if rollout_log_prob is None:
        return out
    rlp, _ = _float_tensor(rollout_log_prob, "rollout_log_prob")
    _check_2d_same(lp, "log_prob", rollout_log_prob=rlp)
    _check_values("rollout_log_prob", rlp, valid, allow_neg_inf=False)
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
    rho = torch.exp(torch.clamp(lr, min=-SAFETY_BOUND, max=SAFETY_BOUND))
    out["chi2_token"] = (_vmean(rho.square(), m) - 1.0).item()
    lsum = torch.clamp(_vsum(lr, m, dim=-1), min=-SAFETY_BOUND, max=SAFETY_BOUND)
    out["chi2_seq"] = (torch.exp(2.0 * lsum).mean() - 1.0).item()
    return out


# --------------------------------------------------------------------------- TRL
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
    _check_choice("mode", mode, TRL_IS_MODES)
    for name, v in (("clip_min", clip_min), ("clip_max", clip_max)):
        if v is not None:
            check_nonneg_finite(name, v)
    if mode.endswith("truncate") and clip_min is None and clip_max is None:
        raise ValueError("clip_min and clip_max cannot both be None for a truncate mode")
    lr, valid, _m, was_numpy = _prepare(log_prob, rollout_log_prob, response_mask)
    d = lr.sum(dim=-1, keepdim=True) if mode.startswith("sequence") else lr
    ratio = torch.exp(d)
    if mode.endswith("truncate"):
        ratio = torch.clamp(ratio, min=clip_min, max=clip_max)
    else:
        lo = -math.inf if clip_min is None else clip_min
        hi = math.inf if clip_max is None else clip_max
        ratio = ratio.masked_fill((ratio < lo) | (ratio > hi), 0.0)
    return _out(ratio, was_numpy)


def off_policy_sequence_mask(advantages, log_prob, rollout_log_prob, response_mask, threshold: float):
    """TRL ``get_off_policy_mask`` (DeepSeek-V3.2 Off-Policy Sequence Masking); -> (B, 1) bool.

        keep_i = A_i >= 0  or  (1/max(T_i,1)) sum_t (rollout_log_prob - log_prob) <= threshold
    (the mean k1, which can be negative).
    """
    check_nonneg_finite("threshold", threshold)
    lr, valid, _m, was_numpy = _prepare(log_prob, rollout_log_prob, response_mask)
    a, _ = _float_tensor(advantages, "advantages")
    a = a.reshape(-1)
    if a.shape[0] != lr.shape[0]:
        raise ValueError(f"advantages has {a.shape[0]} entries but log_prob has {lr.shape[0]} rows")
    if torch.isnan(a).any():
        raise ValueError("advantages contains NaN")
    avg_k1 = (-lr).sum(dim=-1) / valid.sum(dim=-1).clamp_min(1).to(lr.dtype)
    keep = (a >= 0) | (avg_k1 <= threshold)
    return _out(keep.unsqueeze(-1), was_numpy)


# --------------------------------------------------------------------------- TRM
def _check_threshold(name: str, value) -> float:
    if value is None:
        raise ValueError(f"{name} is required")
    return float(check_nonneg_finite(name, value))


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


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
):
    """Trust Region Masking (THEORY.md section 7): keep whole sequences whose divergence is small.

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

    Returns:
      (mask (B, T) = response_mask * seq_keep in response_mask's dtype, seq_keep (B,) bool, metrics).
    """
    _check_choice("mode", mode, TRM_MODES)
    use_max, use_avg = mode in ("max", "max+avg"), mode in ("avg", "max+avg")
    d_max = _check_threshold("max_threshold", max_threshold) if use_max else None
    d_avg = _check_threshold("avg_threshold", avg_threshold) if use_avg else None
    _check_choice("max_estimator", max_estimator, tuple(MAX_ESTIMATORS))
    _check_choice("avg_estimator", avg_estimator, tuple(AVG_ESTIMATORS))
    lr, valid, m, was_numpy = _prepare(log_prob, rollout_log_prob, response_mask)
    dtype = _compute_dtype(lr)
    lr = lr.to(dtype)
    if exact_kl is not None:
        kl, _ = _float_tensor(exact_kl, "exact_kl")
        _check_2d_same(lr, "log_prob", exact_kl=kl)
        bad = torch.isnan(kl) & valid  # +inf is a valid KL (pi_theta = 0 where pi_roll > 0)
        if bad.any():
            raise ValueError(f"exact_kl contains NaN at a valid position {_first_index(bad)}")
        bad = (kl < 0) & valid
        if bad.any():
            raise ValueError(f"exact_kl must be >= 0, got {kl[bad].min().item():g} at {_first_index(bad)}")
        kl = torch.where(valid, kl.to(torch.float64 if dtype == torch.float64 else kl.dtype), 0.0)
        tok_max = tok_avg = kl
        name_max = name_avg = "exact_kl"
    else:
        lr_safe = torch.clamp(lr, min=-SAFETY_BOUND, max=SAFETY_BOUND)
        tok_max = token_divergence(lr_safe, max_estimator) if use_max else None
        tok_avg = token_divergence(lr_safe, avg_estimator) if use_avg else None
        name_max, name_avg = max_estimator, avg_estimator
    keep = torch.ones(lr.shape[0], dtype=torch.bool, device=lr.device)
    seq_max = seq_avg = None
    if use_max:
        seq_max = _seq_stat(tok_max, valid, "max")
        keep_max = seq_max <= d_max
        keep = keep & keep_max
    if use_avg:
        seq_avg = _seq_stat(tok_avg, valid, "mean")
        keep_avg = seq_avg <= d_avg
        keep = keep & keep_avg
    mask = torch.where(keep.unsqueeze(-1), m, torch.zeros((), dtype=m.dtype))
    metrics: dict[str, float] = {}
    if return_metrics:
        nonempty = valid.any(dim=-1)
        metrics.update(_keep_metrics("trm", keep, valid, nonempty))
        if use_max:
            metrics.update(_stat_metrics(f"trm/max_{name_max}", seq_max, nonempty))
            metrics["trm/seq_masked_fraction_max"] = _frac(~keep_max & nonempty, nonempty)
        if use_avg:
            metrics.update(_stat_metrics(f"trm/avg_{name_avg}", seq_avg, nonempty))
            metrics["trm/seq_masked_fraction_avg"] = _frac(~keep_avg & nonempty, nonempty)
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
                _, rs = rollout_rejection_mask(lr, m, ",".join(opts), ",".join(ths))
                metrics.update(rs)
    return _out(mask, was_numpy), _out(keep, was_numpy), metrics


def _frac(num: torch.Tensor, den: torch.Tensor) -> float:
    d = int(den.sum())
    return float(num.sum()) / d if d else 0.0


def _keep_metrics(prefix: str, keep: torch.Tensor, valid: torch.Tensor, nonempty: torch.Tensor) -> dict:
    """Acceptance over non-empty rows (1.0 when there are none), masked fractions, counts."""
    rejected = ~keep & nonempty
    tok_rejected = valid & ~keep.unsqueeze(-1)
    n_seq = int(nonempty.sum())
    return {
        f"{prefix}/acceptance": 1.0 - _frac(rejected, nonempty),
        f"{prefix}/seq_masked_fraction": _frac(rejected, nonempty),
        f"{prefix}/token_masked_fraction": _frac(tok_rejected, valid),
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


# --------------------------------------------------------------------------- the method registry
class MaskResult(NamedTuple):
    """What a trainer needs from one masking/weighting rule.

    mask: (B, T) tokens that enter the loss, in response_mask's dtype.
    seq_keep: (B,) bool, True iff no valid token of the row was removed (empty rows: True).
    weights: (B, T) detached per-token factor for the loss (1 where the rule does no IS), 0 at padding.
    metrics: {name: float}.
    """

    mask: Any
    seq_keep: Any
    weights: Any
    metrics: dict


class _Ctx(NamedTuple):
    lr: torch.Tensor  # (B, T) log rho, 0 at padding, compute dtype
    valid: torch.Tensor  # (B, T) bool
    n: torch.Tensor  # (B,) int64 valid tokens per row
    m: torch.Tensor  # (B, T) response_mask as given
    exact_kl: Any  # (B, T) exact token KL or None


def _rho(lr: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp(lr, min=-SAFETY_BOUND, max=SAFETY_BOUND))


def _log_bound(name: str, v) -> float:
    """log of a positive ratio bound (None -> +-inf handled by caller)."""
    x = float(check_nonneg_finite(name, v))
    return math.log(x) if x > 0 else -math.inf


def _ratio_range(c: _Ctx, log_x: torch.Tensor, low, high) -> torch.Tensor:
    lo = -math.inf if low is None else _log_bound("low", low)
    hi = math.inf if high is None else _log_bound("high", high)
    if low is None and high is None:
        raise ValueError("low and high cannot both be None")
    if lo > hi:
        raise ValueError(f"low must be <= high, got low={low} high={high}")
    return (log_x >= lo) & (log_x <= hi)


def _m_none(c: _Ctx, **p):
    return None, None, None, {}


def _m_ser(c: _Ctx, *, delta_ser):
    """SER: keep iff (1/T_i) sum_t |rho_t - 1| <= delta_ser."""
    d = _check_threshold("delta_ser", delta_ser)
    score = _seq_stat((_rho(c.lr) - 1.0).abs(), c.valid, "mean")
    return score <= d, None, None, {}


def _m_ln_trm(c: _Ctx, *, delta_w, delta, eps=None, version="v3"):
    """LN-TRM: keep iff W_i / Z(T_i) <= delta_w, W_i = sum_t |rho_t - 1| w_t, weights for the row's T_i."""
    from .bounds import ln_trm_weights  # noqa: PLC0415 - bounds is numpy-only; imported where used

    d_w = _check_threshold("delta_w", delta_w)
    t_max = int(c.n.max()) if c.n.numel() else 0
    if t_max == 0:
        return torch.ones_like(c.n, dtype=torch.bool), None, None, {}
    # ln_trm_weights(t_max)[k] = f(t_max - 1 - k) with f(m) = min(1, m eps, sqrt(m delta / 2)), m = T_i - t
    f = np.ascontiguousarray(ln_trm_weights(t_max, eps, delta, version)[::-1])  # f[m], m = 0..t_max-1
    f_t = torch.from_numpy(f).to(c.lr.device)
    Z = torch.cat([torch.zeros(1, dtype=f_t.dtype), torch.cumsum(f_t, 0)])  # Z[T] = sum_{m<T} f(m)
    t_rank = torch.cumsum(c.valid.to(torch.int64), dim=-1)  # t of each valid token (1-based)
    m_idx = (c.n.unsqueeze(-1) - t_rank).clamp(0, t_max - 1)
    w = torch.where(c.valid, f_t[m_idx], 0.0)
    W = ((_rho(c.lr).to(torch.float64) - 1.0).abs() * w).sum(dim=-1)
    z = Z[c.n]
    score = torch.where(z > 0, W / torch.where(z > 0, z, 1.0), 0.0)  # T_i = 1: w = 0, W = 0
    return score <= d_w, None, None, {}


def _m_geo_mask(c: _Ctx, *, low=None, high=None):
    """Geometric-mean mask: keep iff low <= exp((1/T_i) sum_t log rho_t) <= high."""
    return _ratio_range(c, _seq_stat(c.lr, c.valid, "mean"), low, high), None, None, {}


def _m_token_mask(c: _Ctx, *, low=None, high=None):
    """Token mask: drop token t iff rho_t outside [low, high] (verl token_k1 with symmetric bounds)."""
    keep_tok = _ratio_range(c, c.lr, low, high) | ~c.valid
    return None, keep_tok, None, {}


def _m_icepop(c: _Ctx, *, low=None, high=None):
    """IcePop: weight rho_t 1[low <= rho_t <= high]; the mask (and denominator) is unchanged."""
    inside = _ratio_range(c, c.lr, low, high)
    return None, None, torch.where(inside, _rho(c.lr), 0.0), {}


def _m_token_is(c: _Ctx):
    """Plain token IS: weight rho_t = exp(clamp(log rho_t, +-20))."""
    return None, None, _rho(c.lr), {}


def _m_token_tis(c: _Ctx, *, clip):
    """Token TIS: weight min(rho_t, clip)."""
    return None, None, _rho(c.lr).clamp(max=_check_threshold("clip", clip)), {}


def _m_seq_tis(c: _Ctx, *, clip):
    """Sequence TIS (verl rollout_is="sequence"): weight min(exp(clamp(sum_t log rho_t, +-20)), clip)."""
    w = _rho(c.lr.sum(dim=-1)).clamp(max=_check_threshold("clip", clip))
    return None, None, w.unsqueeze(-1).expand_as(c.lr), {}


def _m_seq_mis(c: _Ctx, *, high, low=None):
    """Sequence masked IS (TRL sequence_mask): keep iff low <= prod_t rho_t <= high; weight prod_t rho_t."""
    s = c.lr.sum(dim=-1)
    keep = _ratio_range(c, s, low, high)
    return keep, None, _rho(s).unsqueeze(-1).expand_as(c.lr), {}


def _trm(c: _Ctx, mode: str, **kw):
    zeros = torch.zeros_like(c.lr)  # c.lr already is log rho: pass it as log_prob against 0
    _, keep, metrics = trm_mask(c.lr, zeros, c.m, mode=mode, exact_kl=c.exact_kl, **kw)
    return keep, None, None, metrics


def _m_trm_max(c: _Ctx, *, delta, estimator="k2"):
    """TRM-Max: keep iff max_t D_t <= delta (D = k2 by default, exact KL when given)."""
    return _trm(c, "max", max_threshold=delta, max_estimator=estimator)


def _m_trm_avg(c: _Ctx, *, delta_avg, estimator="k3"):
    """TRM-Avg: keep iff mean_t D_t <= delta_avg (D = k3 by default, exact KL when given)."""
    return _trm(c, "avg", avg_threshold=delta_avg, avg_estimator=estimator)


def _m_trm_both(c: _Ctx, *, delta, delta_avg, max_estimator="k2", avg_estimator="k3"):
    """TRM-Max and TRM-Avg both."""
    return _trm(
        c,
        "max+avg",
        max_threshold=delta,
        avg_threshold=delta_avg,
        max_estimator=max_estimator,
        avg_estimator=avg_estimator,
    )


METHODS: dict[str, tuple[Callable, tuple[str, ...], str]] = {
    "none": (_m_none, (), "keep every token, no IS (on-policy baseline)"),
    "trm-max": (_m_trm_max, ("delta", "estimator"), "TRM-Max: max_t k2 (or exact KL) <= delta"),
    "trm-avg": (_m_trm_avg, ("delta_avg", "estimator"), "TRM-Avg: mean_t k3 (or exact KL) <= delta_avg"),
    "trm-max+avg": (
        _m_trm_both,
        ("delta", "delta_avg", "max_estimator", "avg_estimator"),
        "TRM-Max and TRM-Avg both",
    ),
    "ln-trm": (_m_ln_trm, ("delta_w", "delta", "eps", "version"), "LN-TRM: W/Z(T_i) <= delta_w (v2/v3)"),
    "ser": (_m_ser, ("delta_ser",), "SER: mean_t |rho_t - 1| <= delta_ser"),
    "geo-mask": (_m_geo_mask, ("low", "high"), "geometric mean of rho in [low, high] (SkyRL/OpenRLHF)"),
    "token-mask": (_m_token_mask, ("low", "high"), "drop tokens with rho_t outside [low, high]"),
    "icepop": (_m_icepop, ("low", "high"), "weight rho_t 1[low <= rho_t <= high], mask unchanged"),
    "token-is": (_m_token_is, (), "weight rho_t (plain token IS)"),
    "token-tis": (_m_token_tis, ("clip",), "weight min(rho_t, clip)"),
    "seq-tis": (_m_seq_tis, ("clip",), "weight min(prod_t rho_t, clip) (verl sequence TIS)"),
    "seq-mis": (_m_seq_mis, ("high", "low"), "keep iff prod_t rho_t in [low, high], weight prod rho (TRL)"),
}


def sequence_mask(
    method: str, log_prob, rollout_log_prob, response_mask, *, exact_kl=None, **params
) -> MaskResult:
    """Every sequence/token rule behind one name (``METHODS`` lists them with their parameters).

    TRM methods forward to ``trm_mask`` (``delta`` = max threshold, ``delta_avg`` = avg threshold,
    ``estimator`` / ``max_estimator`` / ``avg_estimator``, ``exact_kl``). Others take the parameters
    listed in ``METHODS[method][1]``; an unknown parameter raises ValueError naming it.

    Returns MaskResult(mask (B,T) in response_mask's dtype, seq_keep (B,) bool, weights (B,T) float,
    metrics with keys ``<method>/acceptance``, ``<method>/seq_masked_fraction``,
    ``<method>/token_masked_fraction``, ``<method>/weight_mean`` (plus trm_mask's keys for TRM).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    _fn, allowed, _doc = METHODS[method]
    unknown = set(params) - set(allowed)
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]} is not a parameter of method {method!r}; it takes {allowed}")
    required = [
        p.name
        for p in inspect.signature(_fn).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in params
    ]
    if required:
        raise ValueError(f"{required[0]} is required for method {method!r}")
    lr, valid, m, was_numpy = _prepare(log_prob, rollout_log_prob, response_mask)
    dtype = _compute_dtype(lr)
    lr = lr.to(dtype)
    if exact_kl is not None and not method.startswith("trm-"):
        raise ValueError(f"exact_kl is only used by the TRM methods, not by {method!r}")
    c = _Ctx(lr, valid, valid.sum(dim=-1), m, exact_kl)
    seq_keep, tok_keep, weights, extra = _fn(c, **params)
    B = lr.shape[0]
    keep_tok = torch.ones_like(valid) if tok_keep is None else tok_keep
    if seq_keep is not None:
        keep_tok = keep_tok & seq_keep.unsqueeze(-1)
    row_keep = (keep_tok | ~valid).all(dim=-1) if B else torch.ones(0, dtype=torch.bool)
    mask = torch.where(keep_tok, m, torch.zeros((), dtype=m.dtype))
    w = torch.ones_like(lr) if weights is None else weights.to(dtype)
    w = torch.where(keep_tok & valid, w, torch.zeros((), dtype=dtype))
    nonempty = valid.any(dim=-1)
    metrics = _keep_metrics(method, row_keep, valid, nonempty)
    metrics[f"{method}/token_masked_fraction"] = _frac(valid & ~keep_tok, valid)
    metrics[f"{method}/weight_mean"] = float(w.double().sum() / valid.sum()) if valid.any() else 0.0
    metrics.update(extra)
    return MaskResult(_out(mask, was_numpy), _out(row_keep, was_numpy), _out(w, was_numpy), metrics)


# --------------------------------------------------------------------------- loss
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
        seq-mean-token-sum:      sum_b (sum_t loss*kept) / N_seq
        seq-mean-token-mean:     sum_b (sum_t loss*kept / n_b) / N_seq
        seq-mean-token-sum-norm: sum_b (sum_t loss*kept) / N_seq / loss_scale_factor (default T)
    normalize="total" (TRM paper's 1/N, TRL, OpenRLHF, NeMo-RL): N_tok = sum response_mask,
        n_b = sum_t response_mask[b], N_seq = B (verl agg_loss with global_batch_size = B).
    normalize="kept" (verl default: the rejection edits response_mask): N_tok = sum kept,
        n_b = sum_t kept[b], N_seq = #rows with a kept token.
    A zero denominator gives loss 0 (an all-masked batch contributes no gradient) instead of NaN.
    ``loss_mat`` keeps its autograd graph; masked entries (even NaN) never reach the sum.

    Returns a scalar tensor (numpy in: a float64 numpy scalar).
    """
    _check_choice("loss_agg_mode", loss_agg_mode, LOSS_AGG_MODES)
    _check_choice("normalize", normalize, tuple(NORMALIZE_CHOICES))
    was_numpy = not isinstance(loss_mat, torch.Tensor)
    loss = torch.from_numpy(np.asarray(loss_mat, dtype=np.float64)) if was_numpy else loss_mat
    if not loss.is_floating_point():
        raise ValueError(f"loss_mat must be a floating-point array, got dtype {loss.dtype}")
    m, _ = _tensor(response_mask, "response_mask")
    _check_2d_same(loss, "loss_mat", response_mask=m)
    valid = _valid_of(m)
    if seq_keep is None:
        keep = torch.ones_like(valid)
    else:
        k, _ = _tensor(seq_keep, "seq_keep")
        if tuple(k.shape) == (loss.shape[0],):
            keep = _valid_of(k).unsqueeze(-1).expand_as(valid)
        elif tuple(k.shape) == tuple(loss.shape):
            keep = _valid_of(k)
        else:
            raise ValueError(
                f"seq_keep must have shape ({loss.shape[0]},) or {tuple(loss.shape)}, got {tuple(k.shape)}"
            )
    kept = valid & keep
    if loss_scale_factor is not None and not float(loss_scale_factor) > 0:
        raise ValueError(f"loss_scale_factor must be > 0, got {loss_scale_factor}")
    dtype = loss.dtype if loss.dtype in (torch.float32, torch.float64) else torch.float32
    x = torch.where(kept, loss.to(dtype), torch.zeros((), dtype=dtype))
    den_mask = valid if normalize == "total" else kept
    B, T = loss.shape
    if loss_agg_mode == "token-mean":
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
