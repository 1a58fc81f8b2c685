"""One registry of sequence/token rules a trainer calls: ``METHODS`` and ``sequence_mask``.

Every rule (TRM variants, LN-TRM, SER, geometric mask, token mask, IcePop, sequence TIS/MIS,
token IS, none) maps validated (B, T) inputs to (sequence keep, token keep, IS weights, metrics);
``sequence_mask(method, ...)`` validates once, applies the rule and returns a ``MaskResult``.
A new rule is one ``_m_<name>`` function and one ``METHODS`` line. Inputs (B, T) as in
`trm_bounds.masks.inputs`; numpy in, numpy out.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from .._validate import check_nonneg_finite
from ..bounds import ln_trm_weights
from .estimators import row_stat
from .inputs import check_threshold, compute_dtype, prepare_inputs, split_log_ratio, to_output
from .trm import acceptance_metrics, fraction, trm_mask
from .verl import clamp_log_ratio

__all__ = ["MaskResult", "METHODS", "sequence_mask"]


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
    """rho = exp(log rho) after verl's safety clamp (no overflow to inf)."""
    return torch.exp(clamp_log_ratio(lr))


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
    d = check_threshold("delta_ser", delta_ser)
    score = row_stat((_rho(c.lr) - 1.0).abs(), c.valid, "mean")
    return score <= d, None, None, {}


def _m_ln_trm(c: _Ctx, *, delta_w, delta, eps=None, version="v3"):
    """LN-TRM: keep iff W_i / Z(T_i) <= delta_w, W_i = sum_t |rho_t - 1| w_t, weights for the row's T_i."""
    d_w = check_threshold("delta_w", delta_w)
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
    return _ratio_range(c, row_stat(c.lr, c.valid, "mean"), low, high), None, None, {}


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
    return None, None, _rho(c.lr).clamp(max=check_threshold("clip", clip)), {}


def _m_seq_tis(c: _Ctx, *, clip):
    """Sequence TIS (verl rollout_is="sequence"): weight min(exp(clamp(sum_t log rho_t, +-20)), clip)."""
    w = _rho(c.lr.sum(dim=-1)).clamp(max=check_threshold("clip", clip))
    return None, None, w.unsqueeze(-1).expand_as(c.lr), {}


def _m_seq_mis(c: _Ctx, *, high, low=None):
    """Sequence masked IS (TRL sequence_mask): keep iff low <= prod_t rho_t <= high; weight prod_t rho_t."""
    s = c.lr.sum(dim=-1)
    keep = _ratio_range(c, s, low, high)
    return keep, None, _rho(s).unsqueeze(-1).expand_as(c.lr), {}


def _m_rs_veto(c: _Ctx, *, tau):
    """slime's rs_veto_threshold: drop the sequence iff some valid token has rho_t < tau (one-sided)."""
    log_tau = _log_bound("tau", tau)
    min_lr = (
        c.lr.masked_fill(~c.valid, math.inf).amin(dim=-1)
        if c.lr.shape[-1]
        else torch.full(c.n.shape, math.inf, dtype=c.lr.dtype)
    )
    return min_lr >= log_tau, None, None, {}


def _trm(c: _Ctx, mode: str, **kw):
    lp, rlp = split_log_ratio(c.lr)  # c.lr already is log rho: as two log-probs <= 0 with that difference
    _, keep, metrics = trm_mask(lp, rlp, c.m, mode=mode, exact_kl=c.exact_kl, **kw)
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
    "rs-veto": (_m_rs_veto, ("tau",), "drop a sequence iff some rho_t < tau (slime rs_veto_threshold)"),
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
    lr, valid, m, was_numpy = prepare_inputs(log_prob, rollout_log_prob, response_mask)
    dtype = compute_dtype(lr)
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
    metrics = acceptance_metrics(method, row_keep, valid, nonempty)
    metrics[f"{method}/token_masked_fraction"] = fraction(valid & ~keep_tok, valid)
    metrics[f"{method}/weight_mean"] = float(w.double().sum() / valid.sum()) if valid.any() else 0.0
    metrics.update(extra)
    return MaskResult(
        to_output(mask, was_numpy), to_output(row_keep, was_numpy), to_output(w, was_numpy), metrics
    )
